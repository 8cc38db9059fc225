"""Kalshi's REST error replies: HTTP status plus ``{"error": {"code", "message", "details"}}``."""

from __future__ import annotations

from typing import Any


class TradingError(Exception):
    """A request the exchange refuses, as Kalshi answers it."""

    def __init__(self, status: int, code: str, message: str, details: str | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            error["details"] = self.details
        return {"error": error}


def bad_request(message: str, details: str | None = None) -> TradingError:
    """A malformed request: a missing field, a number where a string belongs, an unknown value."""
    return TradingError(400, "invalid_parameters", message, details)


def not_found(message: str) -> TradingError:
    return TradingError(404, "not_found", message)


def invalid_price(message: str) -> TradingError:
    return TradingError(400, "invalid_price", message)


def insufficient_balance(message: str) -> TradingError:
    return TradingError(400, "insufficient_balance", message)


def post_only_cross(message: str) -> TradingError:
    return TradingError(400, "invalid_order", message, "post only cross")


def order_already_exists(client_order_id: str) -> TradingError:
    return TradingError(409, "order_already_exists", f"client_order_id {client_order_id!r} was already used")


def fill_or_kill_unfilled(message: str) -> TradingError:
    # Recorded on Kalshi: a fill-or-kill that cannot fill whole is a 409, not an order.
    return TradingError(409, "fill_or_kill_insufficient_resting_volume", message)


def market_closed(message: str) -> TradingError:
    return TradingError(400, "market_closed", message)
