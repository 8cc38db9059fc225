"""SYNTHETIC market data: a seeded generator of binary-market order flow, and a feed over it."""
