"""The simulated exchange: Kalshi's limit orders, filled against replayed markets."""

from adapters.simulated_exchange.exchange import (
    DEFAULT_LATENCY_MS,
    ExchangeConfig,
    ExchangeError,
    Execution,
    Rejection,
    Settlement,
    SimulatedExchange,
)
from adapters.simulated_exchange.fill_probe import SimulatedFillProbe
from adapters.simulated_exchange.gateway import SimulatedOrderGateway
from adapters.simulated_exchange.queue_models import (
    QUEUE_MODEL_NAMES,
    LogProbability,
    PowerProbability,
    ProbabilisticQueueModel,
    QueueModel,
    QueuePosition,
    RiskAverseQueueModel,
    queue_model_named,
)
from adapters.simulated_exchange.replayed_market import ReplayedMarket

__all__ = [
    "DEFAULT_LATENCY_MS",
    "QUEUE_MODEL_NAMES",
    "ExchangeConfig",
    "ExchangeError",
    "Execution",
    "LogProbability",
    "PowerProbability",
    "ProbabilisticQueueModel",
    "QueueModel",
    "QueuePosition",
    "Rejection",
    "ReplayedMarket",
    "RiskAverseQueueModel",
    "Settlement",
    "SimulatedExchange",
    "SimulatedFillProbe",
    "SimulatedOrderGateway",
    "queue_model_named",
]
