"""One connection's subscriptions: Kalshi's commands in, the messages they cause out.

No I/O here: :class:`ConnectionSubscriptions` turns a command frame, or a market event, into a
list of :class:`Send` (a message to queue) and :class:`Forget` (drop what is still queued for a
sid) instructions, in the order the connection must carry them out.

Kalshi's rules, as kalshi-protocol.md gives them:

* ``subscribe`` opens one sid per channel (sids count from 1 per connection) and acknowledges
  each with ``subscribed``. Channels: ``orderbook_delta`` (needs markets), ``trade``,
  ``ticker`` and the private ``fill`` (the connection's account's executions; every market
  when none are named).
* A ``client_order_id`` on a delta is shown only to the account that owns the order.
* On an ``orderbook_delta`` sid the book of each market is sent first as an
  ``orderbook_snapshot``, then every change as an ``orderbook_delta``. ``seq`` counts per sid
  from 1, shared by the sid's markets. ``get_snapshot`` and ``add_markets`` send snapshots that
  continue the count (whether Kalshi restarts it is unknown; continuing never shows a gap).
* ``trade`` and ``ticker`` messages carry no ``seq``.
* Book messages leave here unnumbered: the connection numbers them with
  :meth:`Subscription.take_seq` as it queues them (where the ``skip-seq`` fault acts), so a
  batch of snapshots and a skipped number never disagree.
* A refused command changes nothing and is answered by one ``error`` with Kalshi's code.
* ``use_yes_price`` sends NO levels as YES-ask prices ($1 - NO bid), under the same keys.
* Book messages carry ``market_id`` in both eras: clients written in the legacy era read it
  from every snapshot.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Union

import attrs
import orjson

from adapters.kalshi import wire
from adapters.kalshi.parsing import WsErrorCode
from adapters.local_exchange.markets import ExchangeMarkets, TickerUpdate
from adapters.local_exchange.messages import fill_message, ticker_message
from adapters.local_exchange.trading.accounts import AccountFill
from domain.events import BookDelta, BookSnapshot, MarketEvent, PublicTrade
from domain.values import ONE_DOLLAR, Side

ORDERBOOK = "orderbook_delta"
TRADE = "trade"
TICKER = "ticker"
FILL = "fill"
CHANNELS: tuple[str, ...] = (ORDERBOOK, TRADE, TICKER, FILL)

# uuid5 per message would be most of a delta's cost: the ids are few, remember them.
_market_id = functools.lru_cache(maxsize=4096)(wire.market_id_for)

ADD_MARKETS = "add_markets"
DELETE_MARKETS = "delete_markets"
GET_SNAPSHOT = "get_snapshot"
ACTIONS: tuple[str, ...] = (ADD_MARKETS, DELETE_MARKETS, GET_SNAPSHOT)


@attrs.frozen
class Send:
    """Queue ``message``. Book messages (snapshots and deltas) are what faults count."""

    message: wire.Message
    sid: int | None = None
    ticker: str | None = None
    is_book: bool = False


@attrs.frozen
class Forget:
    """Drop what is still queued for ``sid`` (only for ``tickers``, when given)."""

    sid: int
    tickers: frozenset[str] | None = None


Instruction = Union[Send, Forget]


@attrs.define(eq=False)
class Subscription:
    sid: int
    channel: str
    markets: dict[str, None] | None  # an ordered set; None: every market
    use_yes_price: bool = False
    seq: int = 0  # the last seq sent (orderbook_delta only)

    def take_seq(self, skip: bool = False) -> int:
        """The seq of the next book message (``skip``: leave a gap of one before it)."""
        self.seq += 2 if skip else 1
        return self.seq

    def covers(self, ticker: str) -> bool:
        return self.markets is None or ticker in self.markets

    @property
    def market_tickers(self) -> list[str]:
        return [] if self.markets is None else list(self.markets)


class CommandRefused(Exception):
    def __init__(self, code: WsErrorCode, text: str) -> None:
        super().__init__(f"{code.name}: {text}")
        self.code = code
        self.text = text


class ConnectionSubscriptions:
    def __init__(
        self,
        markets: ExchangeMarkets,
        era: wire.Era = "current",
        owns_client_order: Callable[[str], bool] = lambda _client_order_id: False,
    ) -> None:
        self.markets = markets
        self.era = era
        self.owns_client_order = owns_client_order
        self._subscriptions: dict[int, Subscription] = {}
        self._by_channel: dict[str, list[Subscription]] = {channel: [] for channel in CHANNELS}
        self._sids = itertools.count(1)
        self._commands: Mapping[str, Callable[[int | None, Any], list[Instruction]]] = {
            "subscribe": self._subscribe,
            "unsubscribe": self._unsubscribe,
            "update_subscription": self._update_subscription,
            "list_subscriptions": self._list_subscriptions,
        }

    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        return tuple(self._subscriptions.values())

    def get(self, sid: int) -> Subscription | None:
        return self._subscriptions.get(sid)

    # -- market data ---------------------------------------------------------------------------
    def market_event(self, event: MarketEvent, update: TickerUpdate | None) -> list[Instruction]:
        """The messages ``event`` (already applied to the exchange's book) causes here."""
        out: list[Instruction] = []
        ticker = event.ticker
        kind = type(event)
        if kind is BookDelta or kind is BookSnapshot:
            for sub in self._by_channel[ORDERBOOK]:
                if sub.covers(ticker):
                    out.append(self._book_message(sub, event))  # type: ignore[arg-type]
        elif kind is PublicTrade:
            for sub in self._by_channel[TRADE]:
                if sub.covers(ticker):
                    message = wire.trade_message(event, sub.sid, None, self.era)  # type: ignore[arg-type]
                    out.append(Send(message, sub.sid, ticker))
        if update is not None:
            for sub in self._by_channel[TICKER]:
                if sub.covers(ticker):
                    out.append(Send(ticker_message(update, sub.sid, self.era), sub.sid, ticker))
        return out

    def fill_event(self, fill: AccountFill) -> list[Instruction]:
        """The messages one of the account's fills causes here."""
        ticker = fill.fill.ticker
        return [Send(fill_message(fill, sub.sid), sub.sid, ticker) for sub in self._by_channel[FILL] if sub.covers(ticker)]

    def _book_message(self, sub: Subscription, event: BookSnapshot | BookDelta) -> Send:
        """Unnumbered (seq 0): see the module docstring."""
        if isinstance(event, BookDelta):
            if event.client_order_id is not None and not self.owns_client_order(event.client_order_id):
                event = attrs.evolve(event, client_order_id=None)
            if sub.use_yes_price and event.side == Side.NO:
                event = attrs.evolve(event, price=ONE_DOLLAR - event.price)
            message = wire.delta_message(event, sub.sid, 0, self.era, _market_id(event.ticker))
        else:
            if sub.use_yes_price:
                event = attrs.evolve(event, no=tuple((ONE_DOLLAR - price, count) for price, count in event.no))
            message = wire.snapshot_message(event, sub.sid, 0, self.era, _market_id(event.ticker))
        return Send(message, sub.sid, event.ticker, is_book=True)

    def _snapshots(self, sub: Subscription, tickers: Sequence[str]) -> list[Instruction]:
        return [self._book_message(sub, self.markets.snapshot(ticker)) for ticker in tickers]

    # -- what the connection does to a subscription ----------------------------------------------
    def drop(self, sid: int) -> Subscription | None:
        """Forget ``sid`` (its buffer overflowed); returns it, or None if it was already gone."""
        sub = self._subscriptions.pop(sid, None)
        if sub is not None:
            self._by_channel[sub.channel].remove(sub)
        return sub

    # -- commands ------------------------------------------------------------------------------
    def handle_command(self, frame: str | bytes) -> list[Instruction]:
        """A client's command frame -> what to send back (and forget)."""
        try:
            command = orjson.loads(frame)
        except orjson.JSONDecodeError:
            return [_error(None, WsErrorCode.UNABLE_TO_PROCESS, "Unable to process message: the frame is not JSON")]
        if not isinstance(command, dict):
            text = "Unable to process message: a command is a JSON object"
            return [_error(None, WsErrorCode.UNABLE_TO_PROCESS, text)]
        command_id = command.get("id")
        if command_id is not None and command_id.__class__ is not int:
            return [_error(None, WsErrorCode.INVALID_PARAMETER, f"id must be an integer, got {command_id!r}")]
        name = command.get("cmd")
        handler = self._commands.get(name) if isinstance(name, str) else None
        if handler is None:
            known = ", ".join(self._commands)
            return [_error(command_id, WsErrorCode.UNKNOWN_COMMAND, f"Unknown command {name!r}; one of {known}")]
        try:
            return handler(command_id, command.get("params"))
        except CommandRefused as refused:
            return [_error(command_id, refused.code, refused.text)]

    def _subscribe(self, command_id: int | None, params: Any) -> list[Instruction]:
        params = _params(params)
        channels = params.get("channels")
        if not channels:
            raise CommandRefused(WsErrorCode.CHANNELS_REQUIRED, "Channels required: params.channels lists them")
        if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
            raise CommandRefused(WsErrorCode.INVALID_PARAMETER, "params.channels must be a list of channel names")
        unknown = [c for c in channels if c not in CHANNELS]
        if unknown:
            raise CommandRefused(
                WsErrorCode.UNKNOWN_CHANNEL, f"Unknown channel {unknown[0]!r}; this exchange has {', '.join(CHANNELS)}"
            )
        tickers = self._tickers(params)
        use_yes_price = params.get("use_yes_price", False)
        if not isinstance(use_yes_price, bool):
            raise CommandRefused(
                WsErrorCode.INVALID_PARAMETER, f"use_yes_price must be true or false, got {use_yes_price!r}"
            )
        if ORDERBOOK in channels and not tickers:
            raise CommandRefused(
                WsErrorCode.MARKET_TICKER_REQUIRED, "Market ticker required: orderbook_delta needs market_ticker(s)"
            )
        out: list[Instruction] = []
        for channel in dict.fromkeys(channels):
            sub = Subscription(
                next(self._sids),
                channel,
                dict.fromkeys(tickers) if tickers else None,
                use_yes_price=use_yes_price and channel == ORDERBOOK,
            )
            self._subscriptions[sub.sid] = sub
            self._by_channel[channel].append(sub)
            out.append(Send(wire.subscribed_message(command_id, channel, sub.sid)))
            if channel == ORDERBOOK:
                out.extend(self._snapshots(sub, tickers))
        return out

    def _unsubscribe(self, command_id: int | None, params: Any) -> list[Instruction]:
        sids = _sids(_params(params))
        for sid in sids:
            self._known(sid)
        out: list[Instruction] = []
        for sid in dict.fromkeys(sids):
            self.drop(sid)
            out.append(Forget(sid))
            out.append(Send(wire.unsubscribed_message(command_id, sid)))
        return out

    def _update_subscription(self, command_id: int | None, params: Any) -> list[Instruction]:
        params = _params(params)
        if params.get("sids") is None and params.get("sid") is not None:
            params = {**params, "sids": [params["sid"]]}  # a lone ``sid`` is accepted too
        sids = _sids(params)
        if len(sids) != 1:
            raise CommandRefused(
                WsErrorCode.EXACTLY_ONE_SID_REQUIRED,
                f"Exactly one sid required by update_subscription, got {len(sids)}",
            )
        sub = self._known(sids[0])
        action = params.get("action")
        if action is None:
            raise CommandRefused(WsErrorCode.ACTION_REQUIRED, f"Action required: one of {', '.join(ACTIONS)}")
        if action not in ACTIONS:
            raise CommandRefused(
                WsErrorCode.UNSUPPORTED_ACTION, f"Unsupported action {action!r}; one of {', '.join(ACTIONS)}"
            )
        tickers = self._tickers(params)
        if action == GET_SNAPSHOT:
            return self._get_snapshot(command_id, sub, tickers)
        if not tickers:
            raise CommandRefused(
                WsErrorCode.MARKET_TICKER_REQUIRED, f"Market ticker required: {action} names the markets"
            )
        if sub.markets is None:
            raise CommandRefused(
                WsErrorCode.UNSUPPORTED_ACTION, f"{action}: {sub.channel} sid {sub.sid} already covers every market"
            )
        out: list[Instruction] = []
        if action == ADD_MARKETS:
            added = [ticker for ticker in tickers if ticker not in sub.markets]
            sub.markets.update(dict.fromkeys(added))
            out.append(Send(self._ok(command_id, sub)))
            if sub.channel == ORDERBOOK:
                out.extend(self._snapshots(sub, added))
        else:
            for ticker in tickers:
                sub.markets.pop(ticker, None)
            out.append(Forget(sub.sid, frozenset(tickers)))
            out.append(Send(self._ok(command_id, sub)))
        return out

    def _get_snapshot(self, command_id: int | None, sub: Subscription, tickers: list[str]) -> list[Instruction]:
        if sub.channel != ORDERBOOK:
            raise CommandRefused(
                WsErrorCode.UNSUPPORTED_ACTION,
                f"get_snapshot applies to orderbook_delta; sid {sub.sid} is {sub.channel}",
            )
        outside = [ticker for ticker in tickers if not sub.covers(ticker)]
        if outside:
            raise CommandRefused(
                WsErrorCode.INVALID_PARAMETER,
                f"get_snapshot: {outside[0]!r} is not in sid {sub.sid}; add_markets first",
            )
        out: list[Instruction] = [Send(self._ok(command_id, sub))]
        out.extend(self._snapshots(sub, tickers or sub.market_tickers))
        return out

    def _list_subscriptions(self, command_id: int | None, _params: Any) -> list[Instruction]:
        listed = [(sub.channel, sub.sid) for sub in self._subscriptions.values()]
        return [Send(wire.list_subscriptions_message(command_id, listed))]

    # -- parameters ----------------------------------------------------------------------------
    def _ok(self, command_id: int | None, sub: Subscription) -> wire.Message:
        seq = sub.seq if sub.channel == ORDERBOOK else None
        return wire.ok_message(command_id, sub.sid, seq, sub.market_tickers)

    def _known(self, sid: int) -> Subscription:
        sub = self._subscriptions.get(sid)
        if sub is None:
            raise CommandRefused(WsErrorCode.UNKNOWN_SID, f"Unknown sid {sid}")
        return sub

    def _tickers(self, params: Mapping[str, Any]) -> list[str]:
        """``market_ticker`` and ``market_tickers`` together, each once, all known here."""
        tickers: list[str] = []
        one = params.get("market_ticker")
        if one is not None:
            if not isinstance(one, str):
                raise CommandRefused(WsErrorCode.INVALID_PARAMETER, f"market_ticker must be text, got {one!r}")
            tickers.append(one)
        many = params.get("market_tickers")
        if many is not None:
            if not isinstance(many, list) or not all(isinstance(t, str) for t in many):
                raise CommandRefused(WsErrorCode.INVALID_PARAMETER, "market_tickers must be a list of tickers")
            tickers.extend(many)
        for ticker in tickers:
            if ticker not in self.markets:
                raise CommandRefused(WsErrorCode.MARKET_NOT_FOUND, f"Market not found: {ticker!r}")
        return list(dict.fromkeys(tickers))


def _params(params: Any) -> Mapping[str, Any]:
    if not params:
        raise CommandRefused(WsErrorCode.PARAMS_REQUIRED, "Params required")
    if not isinstance(params, dict):
        raise CommandRefused(WsErrorCode.INVALID_PARAMETER, "params must be a JSON object")
    return params


def _sids(params: Mapping[str, Any]) -> list[int]:
    sids = params.get("sids")
    if not sids:
        raise CommandRefused(WsErrorCode.SIDS_REQUIRED, "Sids required: params.sids lists them")
    if not isinstance(sids, list) or not all(sid.__class__ is int for sid in sids):
        raise CommandRefused(WsErrorCode.INVALID_PARAMETER, "params.sids must be a list of integers")
    return sids


def _error(command_id: int | None, code: WsErrorCode, text: str) -> Send:
    return Send(wire.error_message(command_id, code, text))
