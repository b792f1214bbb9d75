"""Metrics buckets in Redis -> time series and totals for one time range and campaign.

One pipeline of HGETALLs reads every bucket of the range at the range's
resolution (300 to 1,440 hashes), so a refresh costs the same whether Redis
holds a quiet hour or a day of 1 s buckets from many processes.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import redis

from ccadmin import keys
from ccadmin.metrics.buckets import (
    CALLER_TIMEOUT,
    LAG_BOUNDS,
    LATENCY_BOUNDS,
    PER_CAMPAIGN,
    Tally,
    parse_bucket,
)
from ccadmin.metrics.histogram import count_above, percentile

# A second's bucket is complete this long after the second ends (the
# flushers run just after each whole second).
FLUSH_GRACE = 0.5
STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx")


@dataclass(frozen=True)
class TimeRange:
    """A dashboard time range and the bucket resolution that draws it."""

    name: str
    label: str
    seconds: int
    resolution: int


RANGES = {
    time_range.name: time_range
    for time_range in (
        TimeRange("5m", "5 minutes", 300, 1),
        TimeRange("1h", "1 hour", 3600, 10),
        TimeRange("24h", "24 hours", 86_400, 60),
        TimeRange("14d", "14 days", 14 * 86_400, 3600),
    )
}
DEFAULT_RANGE = "5m"


def read_buckets(
    client: redis.Redis, resolution: int, first: int, last: int, campaign: str | None = None
) -> list[Tally]:
    """Tallies of buckets first..last (indexes) at one resolution, in one pipeline."""
    pipe = client.pipeline(transaction=False)
    for index in range(first, last + 1):
        pipe.hgetall(keys.metric_bucket_key(resolution, index))
    return [parse_bucket(raw, campaign) for raw in pipe.execute()]


def status_class(status: int) -> str:
    """ "2xx" for 200 and so on."""
    return f"{status // 100}xx"


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def campaign_ratios(tally: Tally) -> list[dict[str, Any]]:
    """Per campaign, by traffic: content hits, fallbacks and not-found answers.

    A hit is a 200 or 304 that was not a fallback body.
    """
    rows = []
    for slug, counts in tally.campaigns.items():
        rows.append(
            {
                "campaign": slug,
                "requests": counts["requests"],
                "hits": max(0, counts["answered"] - counts["fallbacks"]),
                "fallbacks": counts["fallbacks"],
                "not_found": counts["not_found"],
            }
        )
    rows.sort(key=lambda row: (-row["requests"], row["campaign"]))
    return rows


def read_range(
    client: redis.Redis,
    time_range: TimeRange,
    campaign: str | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """Series and totals for a range: what the dashboard's figures are drawn from."""
    now = time.time() if now is None else now
    resolution = time_range.resolution
    # Seconds before this one have been flushed by every live process.
    flushed_until = int(now - FLUSH_GRACE)
    last = (flushed_until - 1) // resolution
    first = last - time_range.seconds // resolution + 1
    tallies = read_buckets(client, resolution, first, last, campaign)
    total = Tally()
    times: list[int] = []
    rates: dict[str, list[float]] = {name: [] for name in STATUS_CLASSES}
    latency: dict[str, list[float | None]] = {"p50": [], "p95": [], "p99": []}
    lag: dict[str, list[float | None]] = {"p50": [], "p95": []}
    slow: list[int] = []
    failures: list[int] = []
    requests: list[int] = []
    for offset, tally in enumerate(tallies):
        start = (first + offset) * resolution
        covered = max(1, min(resolution, flushed_until - start))
        total.add(tally)
        times.append(start * 1000)
        by_class = Counter({name: 0 for name in STATUS_CLASSES})
        for status, number in tally.statuses.items():
            by_class[status_class(status)] += number
        for name in STATUS_CLASSES:
            rates[name].append(round(by_class[name] / covered, 3))
        for name, quantile in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
            latency[name].append(_ms(percentile(tally.latency, LATENCY_BOUNDS, quantile)))
        for name, quantile in (("p50", 0.5), ("p95", 0.95)):
            lag[name].append(percentile(tally.lag, LAG_BOUNDS, quantile))
        slow.append(count_above(tally.latency, LATENCY_BOUNDS, CALLER_TIMEOUT))
        failures.append(tally.failures)
        requests.append(tally.requests)
    per_minute, error_rate = rolling_minute(failures, requests, resolution)
    return {
        "range": time_range.name,
        "resolution": resolution,
        "campaign": campaign,
        "time": times,
        "rate": rates,
        "requests": requests,
        "latency_ms": latency,
        "slow": slow,
        "failures_per_minute": per_minute,
        "error_rate": error_rate,
        "lag_seconds": lag,
        "totals": totals(total),
        "campaigns": campaign_ratios(total),
    }


def rolling_minute(
    failures: list[int], requests: list[int], resolution: int
) -> tuple[list[float], list[float | None]]:
    """Failures in the minute ending at each bucket, and that minute's error rate.

    Buckets longer than a minute give the mean minute of the bucket.
    """
    if resolution > 60:
        scale = 60 / resolution
        return (
            [round(count * scale, 3) for count in failures],
            [round(f / r, 4) if r else None for f, r in zip(failures, requests, strict=True)],
        )
    window = 60 // resolution
    per_minute: list[float] = []
    rates: list[float | None] = []
    failed = answered = 0
    for index, (f, r) in enumerate(zip(failures, requests, strict=True)):
        failed += f
        answered += r
        if index >= window:
            failed -= failures[index - window]
            answered -= requests[index - window]
        per_minute.append(failed)
        rates.append(round(failed / answered, 4) if answered else None)
    return per_minute, rates


def totals(tally: Tally) -> dict[str, Any]:
    """The range's totals: requests by status, percentiles, counters."""
    return {
        "requests": tally.requests,
        "statuses": {str(status): n for status, n in sorted(tally.statuses.items())},
        "failures": tally.failures,
        "slow": count_above(tally.latency, LATENCY_BOUNDS, CALLER_TIMEOUT),
        "latency_ms": {
            name: _ms(percentile(tally.latency, LATENCY_BOUNDS, quantile))
            for name, quantile in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
        },
        "mean_latency_ms": (
            round(tally.latency_us / tally.requests / 1000, 3) if tally.requests else None
        ),
        "lag_seconds": {
            name: percentile(tally.lag, LAG_BOUNDS, quantile)
            for name, quantile in (("p50", 0.5), ("p95", 0.95))
        },
        "published": sum(tally.lag),
        **{name: tally.counters[name] for name in PER_CAMPAIGN.values()},
        "processes": dict(tally.processes.most_common()),
    }
