"""Percentiles from fixed-bucket histograms (the API's latency, the worker's publish lag)."""

from __future__ import annotations

from collections.abc import Sequence


def percentile(counts: Sequence[int], bounds: Sequence[float], quantile: float) -> float | None:
    """The `quantile` (0-1) of a histogram, None when it is empty.

    `counts[i]` is the number of observations in (bounds[i-1], bounds[i]];
    the last count, one past the bounds, holds everything slower. Within a
    bucket the value is interpolated linearly, as Prometheus's
    histogram_quantile() does; the overflow bucket answers its lower edge,
    the largest value the histogram can name.
    """
    total = sum(counts)
    if total <= 0:
        return None
    rank = quantile * total
    below = 0
    for index, count in enumerate(counts):
        if count > 0 and below + count >= rank:
            if index >= len(bounds):
                return bounds[-1]
            lower = bounds[index - 1] if index else 0.0
            return lower + (bounds[index] - lower) * max(0.0, rank - below) / count
        below += count
    return bounds[-1]


def count_above(counts: Sequence[int], bounds: Sequence[float], limit: float) -> int:
    """Observations above `limit`, which must be one of the bounds."""
    return sum(counts[bounds.index(limit) + 1 :])
