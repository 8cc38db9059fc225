"""What an order gateway raises when the exchange says no, in the domain's words.

Every adapter behind :class:`~domain.ports.OrderGateway` turns its venue's refusals into these
classes, keeping the venue's own text: ``str(error)`` reads like
``insufficient_balance: order needs $5.20, balance $3.00 (HTTP 400)``. A strategy catches
:class:`OrderRejected` for "the exchange refused this request" and the subclasses it can act on
(wait out a :class:`RateLimited`, pick a fresh id after :class:`DuplicateClientOrderId`).

:class:`ExchangeUnavailable` is different in kind: the exchange did not answer, so whether a
request took effect is unknown until the caller looks (the REST gateway does that itself for
order creation, by client order id).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

_Item = TypeVar("_Item")
_Result = TypeVar("_Result")


class GatewayError(Exception):
    """Something an order gateway could not do. ``message`` is the venue's own text."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: str | None = None,
        http_status: int | None = None,
    ) -> None:
        self.message = message
        self.code = code
        self.details = details
        self.http_status = http_status
        super().__init__(self._describe())

    def _describe(self) -> str:
        text = f"{self.code}: {self.message}" if self.code else self.message
        if self.details and self.details not in text:
            text += f" ({self.details})"
        if self.http_status is not None:
            text += f" (HTTP {self.http_status})"
        return text


class ExchangeUnavailable(GatewayError):
    """The exchange did not answer (timeouts, connection errors, 5xx) after every retry.
    A request sent may or may not have taken effect."""


class OrderRejected(GatewayError):
    """The exchange refused the request; nothing changed on the exchange because of it."""


class InvalidOrder(OrderRejected):
    """An order the exchange will not take as written (bad field, bad count, reduce-only with
    nothing to reduce, a fill-or-kill that cannot fill...)."""


class InvalidPrice(InvalidOrder):
    """A price off the market's tick grid or outside $0..$1."""


class PostOnlyCross(InvalidOrder):
    """A post-only order that would have crossed the book (and so taken liquidity)."""


class InsufficientBalance(OrderRejected):
    """The account cannot pay for the order in full."""


class DuplicateClientOrderId(OrderRejected):
    """The client order id was used before (Kalshi refuses it even for a cancelled order)."""


class OrderNotFound(OrderRejected):
    """No such order, or no longer open (already cancelled or executed): nothing to cancel or amend."""


class MarketNotFound(OrderRejected):
    """No such market, or it does not trade."""


class AuthenticationFailed(OrderRejected):
    """The exchange refused the request's credentials (key, signature, clock)."""


class RateLimited(OrderRejected):
    """Too many requests. ``retry_after_s`` is how long the exchange asked us to wait (None when
    it did not say)."""

    def __init__(self, message: str, *, retry_after_s: float | None = None, **context: object) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(message, **context)  # type: ignore[arg-type]


async def one_at_a_time(
    request: Callable[[_Item], Awaitable[_Result]], items: Sequence[_Item]
) -> list[_Result | OrderRejected]:
    """A batch carried out as single requests, in order: each one's result, or the refusal it
    met -- what the port's batch calls return, for a gateway without a batched endpoint."""
    results: list[_Result | OrderRejected] = []
    for item in items:
        try:
            results.append(await request(item))
        except OrderRejected as error:
            results.append(error)
    return results
