"""Publish lag (an outbox event's creation to its change being live), recorded by the worker.

Kept as a histogram in the same time buckets the API processes write, so the
dashboard reads both with one query per bucket.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import Counter
from datetime import UTC, datetime

import redis

from ccadmin import keys
from ccadmin.api.metrics_flush import add_to_buckets

# Upper bounds (seconds) of the lag buckets: ten per decade from 10 ms to
# 10 minutes; the last bucket counts everything slower.
_R10 = (1.0, 1.25, 1.6, 2.0, 2.5, 3.15, 4.0, 5.0, 6.3, 8.0)
LAG_BOUNDS: tuple[float, ...] = tuple(
    round(step * decade, 6) for decade in (0.01, 0.1, 1.0, 10.0, 100.0) for step in _R10
)[:-1]


def lag_seconds(created_at: datetime, now: float | None = None) -> float:
    """Seconds from `created_at` to now; naive times are UTC (what SQLite returns)."""
    if created_at.tzinfo is None:
        created_at = created_at.replace(tzinfo=UTC)
    return max(0.0, (time.time() if now is None else now) - created_at.timestamp())


def record_publish_lags(
    connection: redis.Redis, lags: list[float], now: float | None = None
) -> None:
    """Add applied events' lags to the current second's buckets (one pipeline)."""
    if not lags:
        return
    second = int(time.time() if now is None else now)
    fields = Counter(
        f"{keys.METRIC_PUBLISH_LAG}{keys.METRIC_FIELD_SEPARATOR}{bisect_left(LAG_BOUNDS, lag)}"
        for lag in lags
    )
    pipe = connection.pipeline(transaction=True)
    add_to_buckets(pipe, {second: fields})
    pipe.execute()
