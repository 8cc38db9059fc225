"""A small latency histogram for the hot path: a list increment per sample, no allocation.

Durations in nanoseconds fall in log-linear buckets: exact below 16 ns, then 8 buckets per power
of two, so a quantile is off by at most one bucket width (12.5 % of the value). Quantiles report
the bucket's upper bound (never optimistic), capped at the largest sample seen.
"""

from __future__ import annotations

_EXACT = 16  # values below this have a bucket each
_SUB_BITS = 3  # 8 sub-buckets per power of two
_SUB = 1 << _SUB_BITS
_BUCKETS = _EXACT + 64 * _SUB


def _bucket(ns: int) -> int:
    if ns < _EXACT:
        return ns if ns > 0 else 0
    bits = ns.bit_length()  # >= 5
    return _EXACT + (bits - 5) * _SUB + ((ns >> (bits - 1 - _SUB_BITS)) & (_SUB - 1))


def _upper_bound(bucket: int) -> int:
    if bucket < _EXACT:
        return bucket
    octave, sub = divmod(bucket - _EXACT, _SUB)
    shift = octave + 5 - 1 - _SUB_BITS
    return ((_SUB + sub + 1) << shift) - 1


class LatencyHistogram:
    __slots__ = ("_counts", "count", "max_ns", "total_ns")

    def __init__(self) -> None:
        self._counts = [0] * _BUCKETS
        self.count = 0
        self.max_ns = 0
        self.total_ns = 0

    def record(self, ns: int) -> None:
        # _bucket, inlined: this runs once per book message.
        if ns < _EXACT:
            bucket = ns if ns > 0 else 0
        else:
            bits = ns.bit_length()
            bucket = _EXACT + (bits - 5) * _SUB + ((ns >> (bits - 1 - _SUB_BITS)) & (_SUB - 1))
        self._counts[bucket] += 1
        self.count += 1
        self.total_ns += ns
        if ns > self.max_ns:
            self.max_ns = ns

    def quantile_ns(self, q: float) -> int | None:
        """The ``q`` quantile (0 < q <= 1), or None before the first sample."""
        if not 0 < q <= 1:
            raise ValueError(f"quantile must be in (0, 1], got {q!r}")
        if not self.count:
            return None
        rank = q * self.count
        seen = 0
        for bucket, count in enumerate(self._counts):
            seen += count
            if seen >= rank:
                return min(_upper_bound(bucket), self.max_ns)
        return self.max_ns

    def quantile_us(self, q: float) -> float | None:
        ns = self.quantile_ns(q)
        return None if ns is None else ns / 1000

    def summary_us(self) -> dict[str, float | int | None]:
        """count, p50, p99, max and mean in microseconds, for status pages and logs."""
        return {
            "count": self.count,
            "p50_us": self.quantile_us(0.5),
            "p99_us": self.quantile_us(0.99),
            "max_us": self.max_ns / 1000 if self.count else None,
            "mean_us": self.total_ns / self.count / 1000 if self.count else None,
        }
