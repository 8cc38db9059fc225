"""The simulated exchange: fills for orders placed against replayed markets."""

from adapters.simulated_exchange.exchange import Execution, OrderOutcome, Settlement, SimulatedExchange

__all__ = ["Execution", "OrderOutcome", "Settlement", "SimulatedExchange"]
