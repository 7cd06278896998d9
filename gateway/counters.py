"""Counters and latency histograms: plain data, no I/O, safe to read from another thread.

Counter names are ``snake_case`` with an optional label after a dot
(``errors.MALFORMED``); the Prometheus exporter turns the part after the dot into a label.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from typing import Final


class Counters:
    """Monotonic event counters plus gauges, keyed by name."""

    def __init__(self) -> None:
        self._counts: defaultdict[str, int] = defaultdict(int)
        self._gauges: dict[str, int] = {}

    def inc(self, name: str, n: int = 1) -> None:
        self._counts[name] += n

    def set_gauge(self, name: str, value: int) -> None:
        self._gauges[name] = value

    def get(self, name: str) -> int:
        return self._counts.get(name, self._gauges.get(name, 0))

    def snapshot(self) -> dict[str, int]:
        """Counters and gauges together; gauge names end in ``_now`` by convention."""
        out = dict(self._counts)
        out.update(self._gauges)
        return out

    def counter_names(self) -> list[str]:
        return list(self._counts)

    def gauge_names(self) -> list[str]:
        return list(self._gauges)


# Bucket upper bounds in microseconds: 1 us .. ~60 s, 8 buckets per power of two.
_BOUNDS: Final[list[float]] = [2 ** (i / 8) for i in range(0, 8 * 26)]


class LatencyHistogram:
    """Log-bucketed histogram of durations in microseconds (about 9 % resolution)."""

    def __init__(self) -> None:
        self._buckets = [0] * (len(_BOUNDS) + 1)
        self.count = 0
        self.total_us = 0.0

    def record_us(self, us: float) -> None:
        self._buckets[bisect.bisect_left(_BOUNDS, us)] += 1
        self.count += 1
        self.total_us += us

    def merge(self, other: LatencyHistogram) -> None:
        for i, n in enumerate(other._buckets):
            self._buckets[i] += n
        self.count += other.count
        self.total_us += other.total_us

    def percentile_us(self, q: float) -> float:
        """Upper bound of the bucket holding the ``q`` quantile (0 < q <= 1); 0 if empty."""
        if self.count == 0:
            return 0.0
        rank = max(1, int(q * self.count + 0.999999))
        seen = 0
        for i, n in enumerate(self._buckets):
            seen += n
            if seen >= rank:
                return _BOUNDS[i] if i < len(_BOUNDS) else float("inf")
        return float("inf")  # pragma: no cover

    def mean_us(self) -> float:
        return self.total_us / self.count if self.count else 0.0


__all__ = ["Counters", "LatencyHistogram"]
