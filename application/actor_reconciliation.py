"""The actor's reconciliation: its account and open orders held to the exchange's.

:meth:`Reconciliation.reconcile` runs every ``reconcile_interval_s``, and sooner when the actor
asks (a create got no answer, a market closed). In order: the open orders are synced
(:meth:`~application.actor_orders.OrderDesk.sync`), the fee corrections the fill stream reported
are booked, a market we hold that the exchange no longer holds because it resolved is booked as a
settlement (the :class:`MarketCatalog`'s ``result``: $1 per winning contract, logged -- never
adopted as a difference), and then the positions and cash are compared. A difference seen twice
in a row (once could be a fill still on its way) is logged and the exchange's number adopted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from application.actor_account import Mismatch, TradingAccount
from application.actor_config import ActorCounters
from application.actor_orders import OrderDesk
from domain.gateway_errors import GatewayError
from domain.ports import MarketCatalog, OrderGateway
from domain.values import format_count, format_money

log = logging.getLogger(__name__)


class Reconciliation:
    """``on_settled`` is told each market whose settlement was booked: no more decisions there."""

    def __init__(
        self,
        *,
        gateway: OrderGateway,
        markets: MarketCatalog,
        orders: OrderDesk,
        counters: ActorCounters,
        on_settled: Callable[[str], None],
    ) -> None:
        self._gateway = gateway
        self._markets = markets
        self._orders = orders
        self._counters = counters
        self._on_settled = on_settled
        self._unconfirmed: set[Mismatch] = set()  # differences seen once: adopted if seen again

    async def reconcile(self, account: TradingAccount, *, adopt_at_once: bool = False) -> list[Mismatch]:
        """Compare ``account`` and the open orders with the exchange's; adopt the exchange's
        numbers where they differ twice in a row (at once with ``adopt_at_once``). Returns the
        mismatches adopted."""
        await self._orders.sync()
        for correction in self._gateway.fee_corrections():
            account.apply_fee_correction(correction)
        positions = await self._gateway.positions()
        await self._book_settlements(account, positions)
        balance = await self._gateway.balance()
        mismatches = account.differences(positions, balance)
        adopted = mismatches if adopt_at_once else [item for item in mismatches if item in self._unconfirmed]
        self._unconfirmed = set(mismatches) - set(adopted)
        self._counters.reconciliations += 1
        if adopted:
            log.warning(
                "actor: the exchange differs from the local account; adopting the exchange's numbers: %s",
                "; ".join(item.describe() for item in adopted),
            )
            account.adopt(adopted)
            self._counters.mismatches_adopted += len(adopted)
        return adopted

    async def _book_settlements(self, account: TradingAccount, exchange_positions: dict[str, int]) -> None:
        """Book the payout of every market we hold that the exchange no longer holds because it
        has resolved (its ``result``, from the market catalog): an explicit settlement in the
        account, logged -- not a difference adopted from the exchange."""
        for ticker, quantity in account.positions().items():
            if ticker in exchange_positions or ticker in account.settled:
                continue
            try:
                info = await self._markets.market(ticker)
            except GatewayError as error:
                log.warning("actor: cannot ask whether %s has resolved: %s", ticker, error)
                continue
            if info.result is None:
                continue  # not resolved: a plain difference, for the reconciliation to judge
            payout = account.settle(ticker, info.result)
            self._on_settled(ticker)
            self._counters.settlements += 1
            log.warning(
                "actor: %s resolved %s; booked the settlement of %s contracts: $%s paid out",
                ticker, info.result.name, format_count(quantity), format_money(payout, 4),
            )  # fmt: skip
