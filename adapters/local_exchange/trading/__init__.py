"""The local exchange's trading side: accounts, the matching engine over the synthetic books,
rate limits and Kalshi's REST trade API (V2)."""
