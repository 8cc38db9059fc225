"""Kalshi adapter: wire parsing (both eras), wire building, request signing, and the live
market-data feed over WebSocket (``ws_client`` connects, ``market_data`` keeps books in sequence)."""
