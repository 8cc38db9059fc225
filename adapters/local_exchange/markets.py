"""The exchange's markets: one order book per market, the truth every client's book is judged by.

Every market event the exchange makes public goes through :meth:`ExchangeMarkets.publish`,
which first applies it to the book and then hands it to the listeners (the connections). A
listener therefore always sees an event *after* the book holds it, so a snapshot taken from
the book at any moment is consistent with the deltas that follow it.

Beside the book each market keeps what Kalshi's ``ticker`` channel reports: the last trade
price, the traded volume and the top of book. A :class:`TickerUpdate` goes out with an event
that changed any of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import attrs

from domain.events import BookDelta, BookSnapshot, MarketEvent, MarketResolved, PublicTrade
from domain.orderbook import NO_PRICE, OrderBook
from domain.values import ONE_DOLLAR, Side


@attrs.frozen
class TickerUpdate:
    """What the ``ticker`` channel reports after an event. Prices in price units, volume in
    count units; an empty side reads as a bid of $0 / an ask of $1, as Kalshi shows it."""

    ticker: str
    ts_ms: int
    last_price: int
    yes_bid: int
    yes_ask: int
    volume: int


class UnknownMarket(LookupError):
    pass


@attrs.define(eq=False)
class MarketState:
    """One market on the exchange."""

    ticker: str
    book: OrderBook
    last_price: int = 0  # of the last trade, YES side; 0 before the first
    volume: int = 0
    result: Side | None = None  # set when the market resolves
    last_ts_ms: int = 0
    _top: tuple[int, int] = (0, ONE_DOLLAR)  # (yes bid, yes ask) last reported on the ticker

    def top_of_book(self) -> tuple[int, int]:
        yes_bid, yes_ask = self.book.yes_bid, self.book.yes_ask
        return (0 if yes_bid == NO_PRICE else yes_bid, ONE_DOLLAR if yes_ask == NO_PRICE else yes_ask)

    def ticker_update(self, ts_ms: int) -> TickerUpdate:
        yes_bid, yes_ask = self._top = self.top_of_book()
        return TickerUpdate(self.ticker, ts_ms, self.last_price, yes_bid, yes_ask, self.volume)

    def apply(self, event: MarketEvent) -> TickerUpdate | None:
        """Apply ``event``; returns the ticker update it causes, if any."""
        self.last_ts_ms = event.ts_ms
        if isinstance(event, BookDelta):
            self.book.apply_delta(event.side, event.price, event.delta)
        elif isinstance(event, PublicTrade):
            self.last_price = event.yes_price
            self.volume += event.count
            return self.ticker_update(event.ts_ms)
        elif isinstance(event, BookSnapshot):
            self.book.apply_snapshot(event.yes, event.no)
        elif isinstance(event, MarketResolved):
            self.result = event.result
            return None
        else:
            raise TypeError(f"not a market event: {type(event).__name__}")
        if self.top_of_book() != self._top:
            return self.ticker_update(event.ts_ms)
        return None


Listener = Callable[[MarketEvent, "TickerUpdate | None"], None]


class ExchangeMarkets:
    """Every market of the exchange and who listens to their events."""

    def __init__(self, tickers: Iterable[str]) -> None:
        self._markets = {ticker: MarketState(ticker, OrderBook(ticker)) for ticker in tickers}
        self._listeners: list[Listener] = []
        self.published = 0

    @property
    def tickers(self) -> tuple[str, ...]:
        return tuple(self._markets)

    def __contains__(self, ticker: object) -> bool:
        return ticker in self._markets

    def market(self, ticker: str) -> MarketState:
        try:
            return self._markets[ticker]
        except KeyError:
            raise UnknownMarket(f"no market {ticker!r} on this exchange") from None

    def book(self, ticker: str) -> OrderBook:
        """A copy of the exchange's current book of ``ticker``."""
        return self.market(ticker).book.copy()

    def snapshot(self, ticker: str) -> BookSnapshot:
        """The current book as a snapshot event (``seq``/``sid`` are the wire's business)."""
        market = self.market(ticker)
        book = market.book
        return BookSnapshot(ticker, None, market.last_ts_ms, book.levels(Side.YES), book.levels(Side.NO))

    def ticker_state(self, ticker: str) -> TickerUpdate:
        market = self.market(ticker)
        yes_bid, yes_ask = market.top_of_book()
        return TickerUpdate(ticker, market.last_ts_ms, market.last_price, yes_bid, yes_ask, market.volume)

    # -- publishing --------------------------------------------------------------------------
    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def publish(self, event: MarketEvent) -> None:
        """Make ``event`` true on the exchange, then tell every listener."""
        update = self.market(event.ticker).apply(event)
        self.published += 1
        for listener in tuple(self._listeners):  # a listener may leave while we iterate
            listener(event, update)
