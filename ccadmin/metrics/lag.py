"""Publish lag (an outbox event's creation to its change being live), recorded by the worker.

Kept as a histogram in the same time buckets the API processes write, so the
dashboard reads both with one query per bucket, and as one cumulative
histogram (keys.PUBLISH_LAG_TOTALS) for Prometheus.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime

import redis

from ccadmin import keys
from ccadmin.metrics import buckets
from ccadmin.metrics.buckets import add_to_buckets, lag_bucket


def lag_seconds(created_at: datetime, now: float | None = None) -> float:
    """Seconds from `created_at` to now; naive times are UTC (what SQLite returns)."""
    if created_at.tzinfo is None:
        created_at = created_at.replace(tzinfo=UTC)
    return max(0.0, (time.time() if now is None else now) - created_at.timestamp())


def record_publish_lags(
    connection: redis.Redis, lags: list[float], now: float | None = None
) -> None:
    """Add applied events' lags to the current second's buckets and to the
    cumulative histogram Prometheus reads (one pipeline)."""
    if not lags:
        return
    second = int(time.time() if now is None else now)
    indexes = Counter(lag_bucket(lag) for lag in lags)
    fields = Counter(
        {
            f"{buckets.METRIC_PUBLISH_LAG}{buckets.METRIC_FIELD_SEPARATOR}{index}": count
            for index, count in indexes.items()
        }
    )
    pipe = connection.pipeline(transaction=True)
    add_to_buckets(pipe, {second: fields})
    for index, count in indexes.items():
        pipe.hincrby(keys.PUBLISH_LAG_TOTALS, str(index), count)
    pipe.hincrbyfloat(keys.PUBLISH_LAG_TOTALS, keys.PUBLISH_LAG_SUM, sum(lags))
    pipe.execute()
