"""The Gymnasium environment over replayed markets, registered as ``KalshiFlow/Orderbook-v0``.

``gymnasium.make("KalshiFlow/Orderbook-v0", tapes=...)`` after importing this package.
"""

import gymnasium

from adapters.gym_env.orderbook_env import DEFAULT_INITIAL_CASH, OrderbookEnv

ENV_ID = "KalshiFlow/Orderbook-v0"

if ENV_ID not in gymnasium.registry:
    gymnasium.register(id=ENV_ID, entry_point="adapters.gym_env.orderbook_env:OrderbookEnv")

__all__ = ["DEFAULT_INITIAL_CASH", "ENV_ID", "OrderbookEnv"]
