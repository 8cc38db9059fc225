"""The local Kalshi exchange: Kalshi's WebSocket API v2 on 127.0.0.1 over SYNTHETIC order flow,
for tests and demos (Kalshi itself cannot be reached from here). Faults can be injected."""

from adapters.local_exchange.faults import Fault, FaultKind, FaultSyntaxError, parse_fault
from adapters.local_exchange.server import ExchangeConfig, LocalExchange, legacy_problems

__all__ = [
    "ExchangeConfig",
    "Fault",
    "FaultKind",
    "FaultSyntaxError",
    "LocalExchange",
    "legacy_problems",
    "parse_fault",
]
