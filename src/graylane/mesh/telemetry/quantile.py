"""`histogram_quantile` as Prometheus computes it, over cumulative `le` buckets."""

from __future__ import annotations

import math
from collections.abc import Iterable


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """Linear interpolation inside the bucket holding rank q*count (Prometheus semantics).

    >>> histogram_quantile(0.5, [(1, 0), (5, 10), (10, 10), (math.inf, 10)])
    3.0
    """
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None
    total = ordered[-1][1]
    rank = q * total
    prev_le, prev_count = 0.0, 0.0
    for le, count in ordered:
        if count >= rank:
            if math.isinf(le):
                return prev_le  # Prometheus returns the upper bound of the last finite bucket
            if count == prev_count:
                return le
            return prev_le + (le - prev_le) * (rank - prev_count) / (count - prev_count)
        prev_le, prev_count = le, count
    return prev_le
