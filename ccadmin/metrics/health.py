"""The caller's view of the endpoint: would it black this host out right now?

The caller (Braze) stops calling a host for a minute when, within a minute,
more than 3,000 calls fail AND more than 90% of calls fail. The meter reads
the last 60 complete seconds across every campaign and process (the caller
judges the host, not a campaign).
"""

from __future__ import annotations

import time
from typing import Any

import redis

from ccadmin.metrics.series import FLUSH_GRACE, Tally, read_buckets

FAILURE_THRESHOLD = 3_000
ERROR_RATE_THRESHOLD = 0.90
GREEN, AMBER, RED = "green", "amber", "red"


def meter_state(failures: int, error_rate: float) -> str:
    """Red: both thresholds crossed (the caller stops calling). Amber: one of them,
    or both past half way. Green otherwise."""
    over_count = failures > FAILURE_THRESHOLD
    over_rate = error_rate > ERROR_RATE_THRESHOLD
    if over_count and over_rate:
        return RED
    if over_count or over_rate:
        return AMBER
    if failures > FAILURE_THRESHOLD / 2 and error_rate > ERROR_RATE_THRESHOLD / 2:
        return AMBER
    return GREEN


def last_minute(client: redis.Redis, now: float | None = None) -> Tally:
    """Everything counted in the last 60 complete seconds, all campaigns."""
    now = time.time() if now is None else now
    flushed_until = int(now - FLUSH_GRACE)
    total = Tally()
    for tally in read_buckets(client, 1, flushed_until - 60, flushed_until - 1):
        total.add(tally)
    return total


def unhealthy_host_meter(minute: Tally) -> dict[str, Any]:
    """Failures and error rate in the last minute against the caller's thresholds."""
    requests = minute.requests
    failures = minute.failures
    error_rate = failures / requests if requests else 0.0
    return {
        "failures": failures,
        "requests": requests,
        "error_rate": round(error_rate, 4),
        "failure_threshold": FAILURE_THRESHOLD,
        "error_rate_threshold": ERROR_RATE_THRESHOLD,
        "state": meter_state(failures, error_rate),
    }
