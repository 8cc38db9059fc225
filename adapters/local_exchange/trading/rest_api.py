"""Kalshi's REST trade API (V2) under ``/trade-api/v2``, as kalshi-protocol.md describes it.

Portfolio endpoints need a signed request (the same check and the same 401 bodies as the
WebSocket handshake; the path is signed without its query) and answer for the key's account.
``/markets/{ticker}`` (the market: open, close and expiration times from the synthetic
market's configuration, status, result once resolved), ``/markets/{ticker}/orderbook`` and
``/exchange/status`` are public. Signed requests are
rate-limited per key (:mod:`adapters.local_exchange.trading.rate_limit`): reads and writes
cost 10 tokens, a cancel 2, a batch 10 (or 2) per order in it. Every refusal is
``{"error": {"code", "message", "details"?}}`` with Kalshi's code.

Lists come newest first. A cursor is the position of the last item of the page, so pages stay
put while new orders and fills arrive; an empty cursor means the last page.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import orjson
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from adapters.kalshi.auth import MAX_SKEW_MS, AuthRejected, verify_request
from adapters.local_exchange.trading import errors
from adapters.local_exchange.trading.accounts import Account, AccountFill, AccountOrder
from adapters.local_exchange.trading.formats import dollars, fill_fields, per_count, rfc3339
from adapters.local_exchange.trading.matching import MatchingEngine
from adapters.local_exchange.trading.order_requests import amend_params, create_params, require_object
from adapters.local_exchange.trading.rate_limit import CANCEL_COST, DEFAULT_COST, RateLimited, RateLimiter
from domain.orders import OrderStatus
from domain.values import LADDER_SIZE, MONEY_PER_CENT, ONE_DOLLAR, format_count, format_price

REST_PATH = "/trade-api/v2"
MAX_BATCH = 20
DEFAULT_PAGE = 100
MAX_PAGE = 1000
READ, WRITE = "read", "write"

T = TypeVar("T")
Handler = Callable[[Request], Awaitable[tuple[int, Any]]]


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def _json(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json", headers=headers)


# -- shapes -----------------------------------------------------------------------------------
def order_json(order: AccountOrder) -> dict[str, Any]:
    o = order.order
    maker_filled = o.filled - order.taker_filled
    return {
        "order_id": o.order_id,
        "client_order_id": o.client_order_id,
        "ticker": o.ticker,
        "side": o.side.value,
        "status": o.status.value,
        "time_in_force": o.time_in_force.value,
        "price": format_price(o.price),
        "yes_price_dollars": format_price(o.price),
        "no_price_dollars": format_price(ONE_DOLLAR - o.price),
        "initial_count_fp": format_count(o.count),
        "fill_count_fp": format_count(o.filled),
        "remaining_count_fp": format_count(o.remaining),
        "taker_fill_count_fp": format_count(order.taker_filled),
        "maker_fill_count_fp": format_count(maker_filled),
        "taker_fees_dollars": dollars(order.taker_fees),
        "maker_fees_dollars": dollars(order.maker_fees),
        "average_fill_price": format_price(per_count(order.fill_notional, o.filled)),
        "post_only": order.post_only,
        "reduce_only": order.reduce_only,
        "self_trade_prevention_type": order.self_trade_prevention,
        "created_time": rfc3339(o.created_ms),
        "created_ts_ms": o.created_ms,
        "last_update_time": rfc3339(order.last_update_ms),
        "last_update_ts_ms": order.last_update_ms,
    }


def market_json(engine: MatchingEngine, ticker: str) -> dict[str, Any]:
    """``GET /markets/{ticker}``'s ``market``: the synthetic market closes, expires and resolves
    at once, at its configured expiry; ``result`` is empty until then."""
    config = engine.flow.simulation(ticker).config
    state = engine.markets.market(ticker)
    yes_bid, yes_ask = state.top_of_book()
    if state.result is not None:
        status = "finalized"
    elif engine.is_open(ticker):
        status = "active"
    else:
        status = "closed"  # the run ended before the market resolved
    return {
        "ticker": ticker,
        "market_type": "binary",
        "status": status,
        "open_time": rfc3339(config.start_ms),
        "close_time": rfc3339(config.expiry_ms),
        "expiration_time": rfc3339(config.expiry_ms),
        "latest_expiration_time": rfc3339(config.expiry_ms),
        "result": "" if state.result is None else state.result.name.lower(),
        "price_level_structure": config.tick_structure,
        "yes_bid_dollars": format_price(yes_bid),
        "yes_ask_dollars": format_price(yes_ask),
        "last_price_dollars": format_price(state.last_price),
        "volume_fp": format_count(state.volume),
    }


def create_reply(order: AccountOrder) -> dict[str, Any]:
    o = order.order
    return {
        "order_id": o.order_id,
        "client_order_id": o.client_order_id,
        "status": o.status.value,
        "fill_count": format_count(o.filled),
        "remaining_count": format_count(o.remaining),
        "average_fill_price": format_price(per_count(order.fill_notional, o.filled)),
        "average_fee_paid": format_price(per_count(order.taker_fees + order.maker_fees, o.filled)),
        "ts_ms": order.last_update_ms,
    }


def fill_json(fill: AccountFill) -> dict[str, Any]:
    fields = fill_fields(fill)
    return {
        "fill_id": fields["trade_id"],
        **fields,
        "ticker": fields["market_ticker"],
        "fee_cost": dollars(fill.fill.fee),
        "created_time": rfc3339(fill.fill.ts_ms),
    }


# -- query parameters -------------------------------------------------------------------------
def _whole(request: Request, name: str, default: int | None = None, low: int = 0, high: int | None = None) -> int | None:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    if not text.isdigit():
        raise errors.bad_request(f"{name} must be a whole number, got {text!r}")
    value = int(text)
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise errors.bad_request(f"{name} must be {bounds}, got {value}")
    return value


def _page(request: Request, items: Sequence[T], key: str) -> dict[str, Any]:
    """``items`` oldest first -> one page, newest first, under ``key``, with the next cursor."""
    limit = _whole(request, "limit", DEFAULT_PAGE, 1, MAX_PAGE)
    before = _whole(request, "cursor", len(items), 0)
    assert limit is not None and before is not None
    start = max(0, min(before, len(items)) - limit)
    chosen = list(reversed(items[start : min(before, len(items))]))
    return {key: chosen, "cursor": str(start) if start > 0 else ""}


def _in_time(ts_ms: int, min_ts: int | None, max_ts: int | None) -> bool:
    seconds = ts_ms // 1000
    return (min_ts is None or seconds >= min_ts) and (max_ts is None or seconds <= max_ts)


class TradingApi:
    """The REST routes of one exchange: accounts by API key, one matching engine."""

    def __init__(
        self,
        engine: MatchingEngine,
        api_keys: Mapping[str, rsa.RSAPublicKey],
        limiter: RateLimiter,
        *,
        max_clock_skew_ms: int = MAX_SKEW_MS,
        clock_ms: Callable[[], int] = _wall_clock_ms,
    ) -> None:
        self.engine = engine
        self.api_keys = dict(api_keys)
        self.limiter = limiter
        self.max_clock_skew_ms = max_clock_skew_ms
        self._clock_ms = clock_ms

    def routes(self) -> list[BaseRoute]:
        orders = f"{REST_PATH}/portfolio/events/orders"
        return [
            Route(orders, self._wrap(self.create_order), methods=["POST"]),
            Route(f"{orders}/batched", self._wrap(self.batch_create), methods=["POST"]),
            Route(f"{orders}/batched", self._wrap(self.batch_cancel), methods=["DELETE"]),
            Route(f"{orders}/{{order_id}}", self._wrap(self.cancel_order), methods=["DELETE"]),
            Route(f"{orders}/{{order_id}}/amend", self._wrap(self.amend_order), methods=["POST"]),
            Route(f"{REST_PATH}/portfolio/orders", self._wrap(self.list_orders), methods=["GET"]),
            Route(f"{REST_PATH}/portfolio/orders/{{order_id}}", self._wrap(self.get_order), methods=["GET"]),
            Route(
                f"{REST_PATH}/portfolio/orders/{{order_id}}/queue_position",
                self._wrap(self.queue_position),
                methods=["GET"],
            ),
            Route(f"{REST_PATH}/portfolio/positions", self._wrap(self.positions), methods=["GET"]),
            Route(f"{REST_PATH}/portfolio/fills", self._wrap(self.fills), methods=["GET"]),
            Route(f"{REST_PATH}/portfolio/balance", self._wrap(self.balance), methods=["GET"]),
            Route(f"{REST_PATH}/markets/{{ticker}}", self._wrap(self.market), methods=["GET"]),
            Route(f"{REST_PATH}/markets/{{ticker}}/orderbook", self._wrap(self.orderbook), methods=["GET"]),
            Route(f"{REST_PATH}/exchange/status", self._wrap(self.exchange_status), methods=["GET"]),
        ]

    # -- plumbing ------------------------------------------------------------------------------
    def _wrap(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                status, payload = await handler(request)
            except AuthRejected as rejected:
                return _json(rejected.http_status, rejected.body())
            except RateLimited as limited:
                return _json(429, limited.body(), {"Retry-After": limited.retry_after_header})
            except errors.TradingError as error:
                return _json(error.status, error.body())
            return _json(status, payload)

        return endpoint

    def _account(self, request: Request, kind: str, cost: int = DEFAULT_COST) -> Account:
        """The signed request's account, after charging ``cost`` tokens of ``kind``."""
        key_id = verify_request(
            request.headers,
            request.method,
            request.scope["path"],
            self.api_keys,
            self._clock_ms(),
            self.max_clock_skew_ms,
        )
        self.limiter.charge(key_id, kind, cost)
        return self.engine.accounts[key_id]

    async def _body(self, request: Request) -> Any:
        raw = await request.body()
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise errors.bad_request("the request body is not JSON") from None

    def _order(self, account: Account, order_id: str) -> AccountOrder:
        order = account.orders.get(order_id)
        if order is None:
            raise errors.not_found(f"order {order_id!r} not found")
        return order

    # -- orders --------------------------------------------------------------------------------
    async def create_order(self, request: Request) -> tuple[int, Any]:
        account = self._account(request, WRITE)
        order, _fills = self.engine.create(account, create_params(await self._body(request)))
        return 201, create_reply(order)

    async def cancel_order(self, request: Request) -> tuple[int, Any]:
        account = self._account(request, WRITE, CANCEL_COST)
        order, reduced = self.engine.cancel(account, request.path_params["order_id"])
        return 200, {"order_id": order.order_id, "reduced_by": format_count(reduced), "ts_ms": order.last_update_ms}

    async def amend_order(self, request: Request) -> tuple[int, Any]:
        account = self._account(request, WRITE)
        params = amend_params(await self._body(request))
        old, order, _fills = self.engine.amend(account, request.path_params["order_id"], params)
        return 200, {"old_order": order_json(old), "order": order_json(order), "ts_ms": order.last_update_ms}

    async def batch_create(self, request: Request) -> tuple[int, Any]:
        body = require_object(await self._body(request))
        items = self._batch(body.get("orders"), "orders")
        account = self._account(request, WRITE, DEFAULT_COST * len(items))
        results = []
        for item in items:
            client_order_id = item.get("client_order_id") if isinstance(item, dict) else None
            try:
                order, _fills = self.engine.create(account, create_params(item))
            except errors.TradingError as error:
                results.append({"client_order_id": client_order_id, "order": None, "error": error.body()["error"]})
            else:
                results.append({"client_order_id": order.order.client_order_id, "order": create_reply(order), "error": None})
        return 201, {"orders": results}

    async def batch_cancel(self, request: Request) -> tuple[int, Any]:
        body = require_object(await self._body(request))
        if "ids" in body:  # the older spelling: a list of order ids
            ids = self._batch(body.get("ids"), "ids")
        else:
            orders = self._batch(body.get("orders"), "orders")
            ids = [item.get("order_id") if isinstance(item, dict) else None for item in orders]
        account = self._account(request, WRITE, CANCEL_COST * len(ids))
        results = []
        for order_id in ids:
            try:
                if not isinstance(order_id, str):
                    raise errors.bad_request(f"order_id must be a string, got {order_id!r}")
                order, reduced = self.engine.cancel(account, order_id)
            except errors.TradingError as error:
                results.append({"order_id": order_id, "reduced_by": None, "error": error.body()["error"]})
            else:
                results.append(
                    {"order_id": order.order_id, "reduced_by": format_count(reduced), "ts_ms": order.last_update_ms, "error": None}
                )
        return 200, {"orders": results}

    @staticmethod
    def _batch(items: Any, name: str) -> list[Any]:
        if not isinstance(items, list) or not items:
            raise errors.bad_request(f"{name} must be a non-empty list")
        if len(items) > MAX_BATCH:
            raise errors.bad_request(f"a batch holds at most {MAX_BATCH} {name}, got {len(items)}")
        return items

    # -- reads ---------------------------------------------------------------------------------
    async def list_orders(self, request: Request) -> tuple[int, Any]:
        account = self._account(request, READ)
        status = request.query_params.get("status")
        statuses = {OrderStatus.RESTING.value, OrderStatus.CANCELED.value, OrderStatus.EXECUTED.value}
        if status is not None and status not in statuses:
            raise errors.bad_request(f"status must be one of {', '.join(sorted(statuses))}, got {status!r}")
        ticker = request.query_params.get("ticker")
        min_ts, max_ts = _whole(request, "min_ts"), _whole(request, "max_ts")
        chosen = [
            order
            for order in account.orders.values()
            if (status is None or order.order.status.value == status)
            and (ticker is None or order.ticker == ticker)
            and _in_time(order.order.created_ms, min_ts, max_ts)
        ]
        page = _page(request, chosen, "orders")
        page["orders"] = [order_json(order) for order in page["orders"]]
        return 200, page

    async def get_order(self, request: Request) -> tuple[int, Any]:
        account = self._account(request, READ)
        return 200, {"order": order_json(self._order(account, request.path_params["order_id"]))}

    async def queue_position(self, request: Request) -> tuple[int, Any]:
        account = self._account(request, READ)
        order = self._order(account, request.path_params["order_id"])
        return 200, {"queue_position_fp": format_count(self.engine.queue_position(order))}

    async def positions(self, request: Request) -> tuple[int, Any]:
        account = self._account(request, READ)
        ticker = request.query_params.get("ticker")
        resting: dict[str, int] = {}
        for order in account.open_orders():
            resting[order.ticker] = resting.get(order.ticker, 0) + 1
        positions = [
            {
                "ticker": position.ticker,
                "position_fp": format_count(position.quantity),
                "market_exposure_dollars": dollars(position.cost_basis),
                "realized_pnl_dollars": dollars(position.realized_pnl),
                "fees_paid_dollars": dollars(position.fees_paid),
                "resting_orders_count": resting.get(position.ticker, 0),
                "settlement_result": None if position.settled is None else position.settled.name.lower(),
            }
            for position in account.ledger.positions.values()
            if ticker is None or position.ticker == ticker
        ]
        return 200, {"market_positions": positions, "event_positions": [], "cursor": ""}

    async def fills(self, request: Request) -> tuple[int, Any]:
        account = self._account(request, READ)
        ticker = request.query_params.get("ticker")
        order_id = request.query_params.get("order_id")
        min_ts, max_ts = _whole(request, "min_ts"), _whole(request, "max_ts")
        chosen = [
            fill
            for fill in account.fills
            if (ticker is None or fill.fill.ticker == ticker)
            and (order_id is None or fill.fill.order_id == order_id)
            and _in_time(fill.fill.ts_ms, min_ts, max_ts)
        ]
        page = _page(request, chosen, "fills")
        page["fills"] = [fill_json(fill) for fill in page["fills"]]
        return 200, page

    async def balance(self, request: Request) -> tuple[int, Any]:
        account = self._account(request, READ)
        cash = account.ledger.cash
        return 200, {"balance": cash // MONEY_PER_CENT, "balance_dollars": dollars(cash), "updated_ts": self._clock_ms()}

    # -- public --------------------------------------------------------------------------------
    async def market(self, request: Request) -> tuple[int, Any]:
        ticker = request.path_params["ticker"]
        if ticker not in self.engine.markets:
            raise errors.not_found(f"market {ticker!r} not found")
        return 200, {"market": market_json(self.engine, ticker)}

    async def orderbook(self, request: Request) -> tuple[int, Any]:
        ticker = request.path_params["ticker"]
        if ticker not in self.engine.markets:
            raise errors.not_found(f"market {ticker!r} not found")
        depth = _whole(request, "depth", 0, 0, 100)
        book = self.engine.markets.market(ticker).book
        sides = {}
        for name, side in (("yes_dollars", 0), ("no_dollars", 1)):
            best_first = book.depth(side, depth or LADDER_SIZE)
            sides[name] = [[format_price(price), format_count(count)] for price, count in reversed(best_first)]
        return 200, {"orderbook_fp": sides}

    async def exchange_status(self, _request: Request) -> tuple[int, Any]:
        return 200, {"exchange_active": True, "trading_active": self.engine.is_trading()}
