"""``OrderbookEnv``: a Gymnasium environment over replayed markets and the simulated exchange.

An episode is one market of one recorded session (a :class:`~domain.market_tape.MarketTape`),
from its first snapshot to its resolution; an episode never spans two markets. At each step the
agent sees the observation of row ``i`` (``domain.features``: built from data at or before that
row's time), picks one of five actions (``domain.actions``), and the environment

1. places the decoded order against the book of row ``i`` (crossing fills happen now),
2. moves to row ``i + 1``, letting the trades printed in between fill a resting order,
3. on the last row, settles the market through the ledger when the recording has its result,
4. values the account at row ``i + 1``'s mark and pays the reward of
   :class:`~domain.rewards.RewardFunction` on the change.

Actions that are illegal at the moment (see :meth:`action_masks`) do nothing, as HOLD does,
and are counted in ``info``. The observation never names a market: one model trades them all.
Episodes are drawn with the environment's seeded generator; ``reset(options={"episode": k})``
picks tape ``k`` instead (evaluation walks the tapes that way).

``info`` carries ``portfolio_value`` (micro-dollars) and ``action_mask`` at reset and every step,
and on the last step ``episode_summary`` (:meth:`domain.rewards.EpisodeSummary.as_dict`),
``action_counts``, ``illegal_actions`` and ``orders_placed``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from adapters.simulated_exchange import SimulatedExchange
from domain.actions import ACTION_COUNT, ActionConfig, ActionDecoder
from domain.features import (
    FEATURE_BOUND,
    MARKET_FEATURE_COUNT,
    OBSERVATION_SIZE,
    write_order_features,
    write_portfolio_features,
)
from domain.fees import FeeSchedule
from domain.ledger import Ledger
from domain.market_tape import MarketTape
from domain.orders import OrderSide
from domain.rewards import EpisodeStats, RewardFunction
from domain.values import MONEY_SCALE, ONE_DOLLAR

DEFAULT_INITIAL_CASH = 100 * MONEY_SCALE  # $100


class OrderbookEnv(gym.Env[np.ndarray, np.int64]):
    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        tapes: Sequence[MarketTape],
        *,
        actions: ActionConfig | None = None,
        fees: FeeSchedule | None = None,
        reward: RewardFunction | None = None,
        initial_cash: int = DEFAULT_INITIAL_CASH,
        render_mode: str | None = None,
    ) -> None:
        if not tapes:
            raise ValueError("OrderbookEnv needs at least one market tape to replay")
        if render_mode is not None:
            raise ValueError(f"OrderbookEnv renders nothing; render_mode must be None, got {render_mode!r}")
        if isinstance(initial_cash, bool) or not isinstance(initial_cash, int) or initial_cash <= 0:
            raise ValueError(f"initial_cash must be a positive integer of micro-dollars, got {initial_cash!r}")
        self.tapes = tuple(tapes)
        self.action_config = actions or ActionConfig()
        self.fees = fees or FeeSchedule.kalshi_standard()
        self.reward_function = reward or RewardFunction()
        self.initial_cash = initial_cash
        self.render_mode = render_mode
        self.decoder = ActionDecoder(self.action_config, self.fees)
        self.observation_space = spaces.Box(-FEATURE_BOUND, FEATURE_BOUND, (OBSERVATION_SIZE,), np.float32)
        self.action_space = spaces.Discrete(ACTION_COUNT)
        self._observation = np.zeros(OBSERVATION_SIZE, dtype=np.float32)
        self._mask = np.ones(ACTION_COUNT, dtype=bool)
        self._tape: MarketTape | None = None

    @property
    def episode_count(self) -> int:
        return len(self.tapes)

    # -- gymnasium API ----------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if options and "episode" in options:
            episode = int(options["episode"])
            if not 0 <= episode < len(self.tapes):
                raise ValueError(f"episode must be in 0..{len(self.tapes) - 1}, got {options['episode']!r}")
        else:
            episode = int(self.np_random.integers(len(self.tapes)))
        tape = self._tape = self.tapes[episode]
        self._episode = episode
        self._ticker = tape.ticker
        # Plain lists for the per-step reads: indexing a list is several times cheaper than numpy.
        self._times = tape.times.tolist()
        self._yes_bid = tape.bid_prices[:, 0, 0].tolist()
        self._no_bid = tape.bid_prices[:, 1, 0].tolist()
        self._marks = tape.marks.tolist()
        self._offsets = tape.trade_offsets.tolist()
        self._trade_prices = tape.trade_prices.tolist()
        self._trade_counts = tape.trade_counts.tolist()
        self._last_row = tape.steps - 1
        self._row = 0
        self._ledger = Ledger(self.initial_cash)
        self._exchange = SimulatedExchange(self._ledger, self.fees)
        self._stats = EpisodeStats(self.initial_cash)
        self._value = self.initial_cash
        self._order_row = 0
        self._orders_placed = 0
        self._action_counts = [0] * ACTION_COUNT
        self._illegal = 0
        self._update_mask()
        info = {
            "episode": episode,
            "steps": self._last_row,
            "portfolio_value": self._value,
            "action_mask": self._mask.copy(),
        }
        return self._observe(), info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._tape is None:
            raise RuntimeError("call reset() before step()")
        if self._row >= self._last_row:
            raise RuntimeError("the episode has ended; call reset()")
        action = int(action)
        if not 0 <= action < ACTION_COUNT:
            raise ValueError(f"action must be in 0..{ACTION_COUNT - 1}, got {action}")
        self._action_counts[action] += 1
        stats = self._stats
        exchange = self._exchange
        ticker = self._ticker
        row = self._row
        legal = bool(self._mask[action])
        if not legal:
            self._illegal += 1
        elif action:
            self._place(action, row)

        row += 1
        self._row = row
        start, stop = self._offsets[row], self._offsets[row + 1]
        if start < stop and exchange.resting_order(ticker) is not None:
            time_ms = self._times[row]
            for trade in range(start, stop):
                execution = exchange.on_trade(ticker, self._trade_prices[trade], self._trade_counts[trade], time_ms)
                if execution is not None:
                    stats.record_fill(execution.fill.fee)
                    if execution.closed:
                        stats.record_closed_trade(execution.realized_pnl)
                    if exchange.resting_order(ticker) is None:
                        break

        ended = row == self._last_row
        terminated = ended and self._tape.result is not None
        if terminated:
            settlement = exchange.settle(ticker, self._tape.result)
            if settlement.closed:
                stats.record_closed_trade(settlement.realized_pnl)
        position = self._ledger.position(ticker)
        value = self._ledger.cash + position.market_value(self._marks[row])
        reward = self.reward_function.reward(value - self._value, position.quantity)
        self._value = value
        stats.record_step(value)

        self._update_mask()
        info: dict[str, Any] = {
            "portfolio_value": value,
            "position": position.quantity,
            "illegal_action": not legal,
            "action_mask": self._mask.copy(),
        }
        if ended:
            info["episode_summary"] = stats.summary().as_dict()
            info["action_counts"] = list(self._action_counts)
            info["illegal_actions"] = self._illegal
            info["orders_placed"] = self._orders_placed
        return self._observe(), reward, terminated, ended and not terminated, info

    def action_masks(self) -> np.ndarray:
        """The actions legal now (the name sb3-contrib's maskable algorithms look for)."""
        return self._mask.copy()

    # -- internals --------------------------------------------------------------------------
    def _place(self, action: int, row: int) -> None:
        yes_bid, no_bid = self._yes_bid[row], self._no_bid[row]
        self._orders_placed += 1
        request = self.decoder.decode(
            action,
            ticker=self._ticker,
            yes_bid=yes_bid,
            yes_ask=ONE_DOLLAR - no_bid if no_bid >= 0 else -1,
            position=self._ledger.quantity(self._ticker),
            client_order_id=f"agent-{self._orders_placed}",
        )
        if request is None:  # unreachable for a legal action; kept as a guard, not a path
            raise RuntimeError(f"legal action {action} decoded to no order at row {row}")
        tape = self._tape
        assert tape is not None
        outcome = self._exchange.submit(
            request, yes_bids=tape.bids(row, 0), no_bids=tape.bids(row, 1), ts_ms=self._times[row]
        )
        if outcome.reason is not None:
            raise RuntimeError(f"the exchange refused a legal action {action}: {outcome.reason}")
        self._order_row = row
        for execution in outcome.executions:
            self._stats.record_fill(execution.fill.fee)
            if execution.closed:
                self._stats.record_closed_trade(execution.realized_pnl)

    def _update_mask(self) -> None:
        row = self._row
        if row >= self._last_row:
            self._mask[:] = False
            self._mask[0] = True
            return
        no_bid = self._no_bid[row]
        self.decoder.mask(
            self._mask,
            yes_bid=self._yes_bid[row],
            yes_ask=ONE_DOLLAR - no_bid if no_bid >= 0 else -1,
            position=self._ledger.quantity(self._ticker),
            buying_power=self._exchange.buying_power(self._ticker),
        )

    def _observe(self) -> np.ndarray:
        assert self._tape is not None
        row = self._row
        out = self._observation
        out[:MARKET_FEATURE_COUNT] = self._tape.features[row]
        mark = self._marks[row]
        position = self._ledger.position(self._ticker)
        write_portfolio_features(
            out,
            quantity=position.quantity,
            cost_basis=position.cost_basis,
            market_value=position.market_value(mark),
            cash=self._ledger.cash,
            initial_cash=self.initial_cash,
            max_position=self.action_config.max_position,
        )
        order = self._exchange.resting_order(self._ticker)
        write_order_features(
            out,
            is_bid=None if order is None else order.side is OrderSide.BID,
            price=0 if order is None else order.price,
            remaining=0 if order is None else order.remaining,
            age_steps=row - self._order_row,
            mark=mark,
            order_size=self.action_config.order_size,
        )
        return out.copy()
