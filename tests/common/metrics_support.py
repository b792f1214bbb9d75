"""Reading the live metrics buckets back from Redis, for the metrics tests."""

from __future__ import annotations

import time
from collections import Counter

from ccadmin import keys
from ccadmin.metrics import buckets


def bucket_sums(client, since: float, resolution: int = 1) -> Counter[str]:
    """Every field summed over the buckets of one resolution from `since` to now."""
    first = int(since) // resolution - 1
    last = int(time.time()) // resolution + 1
    pipe = client.pipeline(transaction=False)
    for index in range(first, last + 1):
        pipe.hgetall(keys.metric_bucket_key(resolution, index))
    total: Counter[str] = Counter()
    for raw in pipe.execute():
        total.update({field.decode(): int(value) for field, value in raw.items()})
    return total


def requests_field(campaign: str, status: int) -> str:
    """The bucket field counting one campaign's answers with one status."""
    sep = buckets.METRIC_FIELD_SEPARATOR
    return f"{buckets.METRIC_REQUESTS}{sep}{campaign}{sep}{status}"
