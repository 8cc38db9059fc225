"""``OrderbookEnv``: a Gymnasium environment over replayed markets and the simulated exchange.

An episode is one market of one recorded session (a :class:`~domain.market_tape.MarketTape`),
from its first snapshot to its scheduled close -- where trading stops, as it does for the live
actor -- or its resolution if that comes first (or there is no recorded close); an episode never
spans two markets. The market's result, recorded later or not, settles the position at the end.
At each step the
agent sees the observation of row ``i`` (``domain.features``: built from data at or before that
row's time), picks an action of its action space (``domain.actions``: the five-action
``single-size`` space or the 21-action ``sized`` one, per :class:`~domain.actions.ActionConfig`),
and the environment

1. sends the decoded order to the simulated exchange at row ``i``'s time, with a cancel of the
   market's open order first (one order per market: a new decision replaces the old one; an
   order the same as the open one -- side, price and size -- leaves it alone, keeping its place
   in the queue, as any execution layer would),
2. replays the market to row ``i + 1``: the order takes effect after the exchange's latency
   against the book as it stands then (crossing fills), rests in its level's queue, and the
   market log in between fills it or not (:mod:`adapters.simulated_exchange`),
3. on the last row, settles the market through the ledger when the recording has its result
   (orders still open there are cancelled: the market has closed),
4. values the account at row ``i + 1``'s mark and pays the reward of
   :class:`~domain.rewards.RewardFunction` on the change.

Actions that are illegal at the moment (see :meth:`action_masks`) do nothing, as HOLD does,
and are counted in ``info``. A legal order can still be refused when it takes effect (the
position or cash changed while it travelled); those are counted too. The observation never
names a market: one model trades them all. How the exchange fills (latency, queue model,
consumed-liquidity refill) is its :class:`~adapters.simulated_exchange.ExchangeConfig`, the
``exchange`` argument; the rules are carried out by the compiled exchange
(:mod:`adapters.simulated_exchange.compiled`) whenever it supports the configuration -- the
risk-averse queue model -- and by the reference :class:`SimulatedExchange` otherwise, with the
same results (``compiled=True``/``False`` forces one). Episodes are drawn with the
environment's seeded generator (which also seeds the exchange's); ``reset(options={"episode":
k})`` picks tape ``k`` instead (evaluation walks the tapes that way).

The observation is assembled by :class:`domain.features.ObservationBuilder` from the tape's
precomputed market rows -- the same builder, fed the same way, as the live actor's
(``application.observation``). ``info`` carries ``portfolio_value`` (micro-dollars) and
``action_mask`` at reset and every step, ``order`` (the :class:`~domain.orders.Order` the step
sent, None if none) and ``fills`` (its :class:`~domain.orders.Fill` list) unless
``step_details=False`` -- training reads neither, and turning them off saves ~13% of a step (the
exchange books fills from their terms, building no Fill) -- and on the last step ``episode_summary``
(:meth:`domain.rewards.EpisodeSummary.as_dict`), ``action_counts`` (indexed like
``decoder.action_names``), ``illegal_actions``, ``orders_placed`` and ``orders_rejected``. The
observation's order block describes the market's latest open order, pending or resting.
"""

from __future__ import annotations

import bisect
import random
import weakref
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from adapters.simulated_exchange import ExchangeConfig, ReplayedMarket, SimulatedExchange
from adapters.simulated_exchange.compiled import CompiledExchange, CompiledMarket, check_supported, supports
from domain.actions import ActionConfig, ActionDecoder
from domain.features import FEATURE_BOUND, OBSERVATION_SIZE, ObservationBuilder
from domain.fees import FeeSchedule
from domain.ledger import Ledger
from domain.market_tape import MarketTape
from domain.orders import Order, OrderRequest, OrderSide
from domain.rewards import EpisodeStats, RewardFunction
from domain.values import MONEY_SCALE, ONE_DOLLAR

DEFAULT_INITIAL_CASH = 100 * MONEY_SCALE  # $100
_BID = OrderSide.BID
_MASK_CACHE_SIZE = 1 << 16


class _TapeRows:
    """What a step reads from a tape, as plain lists (indexing a list is several times cheaper
    than indexing numpy), built once per tape (:meth:`of`) and shared by its episodes and by
    every environment copy in the process: training runs 16 copies over the same tapes, and
    building these costs ~30 ms a tape. Read-only once built (each episode's exchange keeps its
    own cursors), and holding no reference to the tape, so the cache lets a dropped tape go. The
    exchange's view of the market is built the first time an episode asks for it: the compiled
    one (:class:`CompiledMarket`) or the reference one (:class:`ReplayedMarket`)."""

    __slots__ = ("times", "yes_bid", "yes_ask", "marks", "features", "close_row", "last_row", "_market", "_compiled")

    def __init__(self, tape: MarketTape) -> None:
        self.times: list[int] = tape.times.tolist()
        # The first row at or past the scheduled close: no decision is made there or later, as
        # live. The episode ends there, or at the tape's end -- after one row at least: a tape
        # recorded after its market closed gives one step where only HOLD is legal.
        end = len(self.times) - 1
        self.close_row = end if tape.close_ms is None else min(bisect.bisect_left(self.times, tape.close_ms), end)
        self.last_row = max(1, self.close_row)
        self.yes_bid: list[int] = tape.bid_prices[:, 0, 0].tolist()
        self.yes_ask: list[int] = [ONE_DOLLAR - no if no >= 0 else -1 for no in tape.bid_prices[:, 1, 0].tolist()]
        self.marks: list[int] = tape.marks.tolist()
        self.features = tape.features  # float32 rows, copied into the observation as they are
        self._market: ReplayedMarket | None = None
        self._compiled: CompiledMarket | None = None

    @classmethod
    def of(cls, tape: MarketTape) -> _TapeRows:
        rows = _SHARED_ROWS.get(tape)
        if rows is None:
            rows = _SHARED_ROWS[tape] = cls(tape)
        return rows

    def market(self, tape: MarketTape) -> ReplayedMarket:
        if self._market is None:
            self._market = ReplayedMarket(tape)
        return self._market

    def compiled_market(self, tape: MarketTape) -> CompiledMarket:
        if self._compiled is None:
            self._compiled = CompiledMarket(tape)
        return self._compiled


_SHARED_ROWS: weakref.WeakKeyDictionary[MarketTape, _TapeRows] = weakref.WeakKeyDictionary()


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
        exchange: ExchangeConfig | None = None,
        compiled: bool | None = None,
        step_details: bool = True,
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
        self.exchange_config = exchange or ExchangeConfig()
        # The compiled exchange when it carries out this configuration; the reference otherwise.
        self._compiled = compiled if compiled is not None else supports(self.exchange_config)
        if self._compiled:
            check_supported(self.exchange_config)
        self.step_details = step_details
        self.render_mode = render_mode
        self.decoder = ActionDecoder(self.action_config, self.fees)
        self.observation_builder = ObservationBuilder(
            initial_cash=initial_cash,
            max_position=self.action_config.max_position,
            order_size=self.action_config.order_sizes[-1],
        )
        self.observation_space = spaces.Box(-FEATURE_BOUND, FEATURE_BOUND, (OBSERVATION_SIZE,), np.float32)
        self.action_space = spaces.Discrete(self.decoder.action_count)
        self._action_count = self.decoder.action_count
        self._hold_only = (True,) + (False,) * (self._action_count - 1)
        self._legal: tuple[bool, ...] = self._hold_only
        self._hold_only_array = _frozen_mask(self._hold_only)
        self._mask_array = self._hold_only_array  # self._legal as an array, for info
        self._masks: dict[tuple[int, ...], tuple[tuple[bool, ...], np.ndarray]] = {}  # see _update_mask
        self._ample_buying_power = self.decoder.ample_buying_power
        self._tape: MarketTape | None = None

    @property
    def episode_count(self) -> int:
        return len(self.tapes)

    @property
    def ledger(self) -> Ledger:
        """The account of the current episode (read it; the environment books into it)."""
        return self._ledger

    @property
    def open_order(self) -> Order | None:
        """The market's latest open order, pending or resting: the one the observation describes."""
        return self._exchange.latest_order(self._ticker)

    @property
    def buying_power(self) -> int:
        """Cash an order in the episode's market may use (what the action mask checks against)."""
        return self._exchange.buying_power(self._ticker)

    @property
    def order_age(self) -> int:
        """Steps since the latest order was sent (what the observation's ``order_age`` measures)."""
        return self._row - self._order_row

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
        rows = _TapeRows.of(tape)
        self._times, self._yes_bid, self._yes_ask = rows.times, rows.yes_bid, rows.yes_ask
        self._marks, self._features = rows.marks, rows.features
        self._last_row, self._close_row = rows.last_row, rows.close_row
        self._row = 0
        self._ledger = Ledger(self.initial_cash)
        # The exchange draws from its own generator (the probabilistic queue model), seeded here;
        # drawn either way, so the episodes a seed picks do not depend on which exchange runs them.
        rng = random.Random(int(self.np_random.integers(2**63)))
        self._exchange: SimulatedExchange | CompiledExchange
        if self._compiled:
            self._exchange = CompiledExchange(self._ledger, self.fees, config=self.exchange_config)
            self._exchange.open_market(rows.compiled_market(tape))
        else:
            self._exchange = SimulatedExchange(self._ledger, self.fees, config=self.exchange_config, rng=rng)
            self._exchange.open_market(rows.market(tape))
        self._stats = EpisodeStats(self.initial_cash)
        self._value = self.initial_cash
        self._order_row = 0
        self._orders_placed = 0
        self._action_counts = [0] * self._action_count
        self._illegal = 0
        self._update_mask(0, 0, 0)  # a new account: no position, no order
        info = {
            "episode": episode,
            "steps": self._last_row,
            "portfolio_value": self._value,
            "action_mask": self._mask_array.copy(),
        }
        return self._observe(0, self._marks[0], 0, 0, 0, self._ledger.cash, None), info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._tape is None:
            raise RuntimeError("call reset() before step()")
        if self._row >= self._last_row:
            raise RuntimeError("the episode has ended; call reset()")
        action = int(action)
        if not 0 <= action < self._action_count:
            raise ValueError(f"action must be in 0..{self._action_count - 1}, got {action}")
        self._action_counts[action] += 1
        stats = self._stats
        exchange = self._exchange
        ticker = self._ticker
        row = self._row
        legal = self._legal[action]
        sent = None
        if not legal:
            self._illegal += 1
        elif action:
            sent = self._place(action, row)

        row += 1
        self._row = row
        if self.step_details:
            fills = []
            for execution in exchange.advance(ticker, row):
                fills.append(execution.fill)
                stats.record_fill(execution.fill.fee)
                if execution.closed:
                    stats.record_closed_trade(execution.realized_pnl)
        else:
            for fee, closed, realized in exchange.advance_booking(ticker, row):
                stats.record_fill(fee)
                if closed:
                    stats.record_closed_trade(realized)

        ended = row == self._last_row
        terminated = ended and self._tape.result is not None
        if terminated:
            settlement = exchange.settle(ticker, self._tape.result)
            if settlement.closed:
                stats.record_closed_trade(settlement.realized_pnl)
        position = self._ledger.find_position(ticker)
        mark = self._marks[row]
        if position is None:
            quantity = cost_basis = market_value = 0
        else:
            quantity, cost_basis = position.quantity, position.cost_basis
            market_value = position.market_value(mark) if quantity else 0
        cash = self._ledger.cash
        value = cash + market_value
        reward = self.reward_function.reward(value - self._value, quantity)
        self._value = value
        stats.record_step(value)

        order = exchange.latest_order(ticker)
        self._update_mask(quantity, *self._open_remaining(order))
        info: dict[str, Any] = {
            "portfolio_value": value,
            "position": quantity,
            "illegal_action": not legal,
            "action_mask": self._mask_array.copy(),
        }
        if self.step_details:
            info["order"] = sent  # the order this step sent (None: held, or kept the working one)
            info["fills"] = fills  # this step's fills, of any order
        if ended:
            info["episode_summary"] = stats.summary().as_dict()
            info["action_counts"] = list(self._action_counts)
            info["illegal_actions"] = self._illegal
            info["orders_placed"] = self._orders_placed
            info["orders_rejected"] = len(exchange.rejections)
        observation = self._observe(row, mark, quantity, cost_basis, market_value, cash, order)
        return observation, reward, terminated, ended and not terminated, info

    def action_masks(self) -> np.ndarray:
        """The actions legal now (the name sb3-contrib's maskable algorithms look for)."""
        return self._mask_array.copy()

    def decode(self, action: int) -> OrderRequest | None:
        """The order ``action`` would place now (None: HOLD or not possible), from the current
        row's top of book, the market's position and its open orders (sized so the position limit
        holds if they fill first; the latest itself when the action would place exactly it)."""
        row = self._row
        latest = self._exchange.latest_order(self._ticker)
        open_bids, open_asks = self._open_remaining(latest)
        return self.decoder.decode(
            action,
            ticker=self._ticker,
            yes_bid=self._yes_bid[row],
            yes_ask=self._yes_ask[row],
            position=self._ledger.quantity(self._ticker),
            client_order_id=f"agent-{self._orders_placed + 1}",
            working=None if latest is None else (latest.side, latest.price, latest.remaining),
            open_bids=open_bids,
            open_asks=open_asks,
        )

    # -- internals --------------------------------------------------------------------------
    def _place(self, action: int, row: int) -> Order | None:
        request = self.decode(action)
        if request is None:  # unreachable for a legal action; kept as a guard, not a path
            raise RuntimeError(f"legal action {action} decoded to no order at row {row}")
        exchange, now = self._exchange, self._times[row]
        working = exchange.latest_order(self._ticker)
        if working is not None:
            if working.side is request.side and working.price == request.price and working.remaining == request.count:
                return None  # already working: sending it again would only lose its place in the queue
        self._orders_placed += 1
        # One order per market: the new one replaces whatever is open (cancelled as it is sent).
        order = exchange.submit(request, ts_ms=now, replacing=working is not None)
        self._order_row = row
        return order

    def _open_remaining(self, latest: Order | None) -> tuple[int, int]:
        """What the market's open orders have left to fill, bids and asks (count units): orders a
        new one replaces may fill while their cancels travel. ``latest``: the latest of them."""
        if latest is None:
            return 0, 0
        bids = asks = 0
        for order in self._exchange.open_orders(self._ticker):
            if order.side is _BID:
                bids += order.remaining
            else:
                asks += order.remaining
        return bids, asks

    def _update_mask(self, position: int, open_bids: int, open_asks: int) -> None:
        """The legal actions at the current row, for the market's ``position`` and what its
        open orders have left to fill (count units)."""
        row = self._row
        if row >= self._close_row:  # the episode's end, or a market that has closed
            self._legal, self._mask_array = self._hold_only, self._hold_only_array
            return
        buying_power = self._exchange.buying_power(self._ticker)
        # Above the decoder's ample buying power every order is affordable: the mask no longer
        # depends on the exact amount, so one cache entry serves every such amount.
        key = (
            self._yes_bid[row], self._yes_ask[row], position, min(buying_power, self._ample_buying_power),
            open_bids, open_asks,
        )  # fmt: skip
        entry = self._masks.get(key)
        if entry is None:  # the same book, position and cash recur step after step: decide once
            if len(self._masks) >= _MASK_CACHE_SIZE:
                self._masks.clear()
            legal = tuple(
                self.decoder.legal_actions(
                    yes_bid=key[0], yes_ask=key[1], position=position, buying_power=key[3],
                    open_bids=open_bids, open_asks=open_asks,
                )  # fmt: skip
            )
            entry = self._masks[key] = (legal, _frozen_mask(legal))
        self._legal, self._mask_array = entry

    def _observe(
        self, row: int, mark: int, quantity: int, cost_basis: int, market_value: int, cash: int, order: Order | None
    ) -> np.ndarray:
        """The observation of row ``row``: the account's numbers (as the ledger's position gives
        them, what the builder's ``observe_account`` reads off it) and the market's latest order."""
        features = self._features[row]
        if order is None:
            return self.observation_builder.observe(
                features, mark, quantity, cost_basis, market_value, cash, None, 0, 0, 0
            )
        return self.observation_builder.observe(
            features, mark, quantity, cost_basis, market_value, cash,
            order.side is _BID, order.price, order.remaining, row - self._order_row,
        )  # fmt: skip


def _frozen_mask(legal: tuple[bool, ...]) -> np.ndarray:
    """``legal`` as a read-only array (a view of immutable bytes; about half the cost of
    ``np.array`` on a tuple): cached per mask, handed out as copies."""
    return np.frombuffer(bytes(legal), dtype=bool)
