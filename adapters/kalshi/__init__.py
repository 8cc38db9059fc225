"""Kalshi adapter: wire parsing (both eras), wire building, request signing."""
