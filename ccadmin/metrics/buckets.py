"""The live metrics' bucket format, shared by the writers (every API process, the
worker's publish lag) and the reader (the admin's live page).

Each writer adds its counts of a second with HINCRBY into one hash per time
bucket and resolution (keys.metric_bucket_key), so processes on any number of
hosts sum up. A field is a METRIC_* prefix joined with "|" to its labels.
Plain Python and redis only: the API's hot path imports it.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache

import redis

from ccadmin import keys

METRIC_RESOLUTIONS = (1, 10, 60, 3600)
# Seconds each resolution is kept: 24 h at 1 s and 10 s, 14 days at 1 min and 1 h.
METRIC_RETENTION = {1: 86_400, 10: 86_400, 60: 14 * 86_400, 3600: 14 * 86_400}
METRIC_FIELD_SEPARATOR = "|"
METRIC_REQUESTS = "r"  # r|campaign|status: requests answered
METRIC_LATENCY = "l"  # l|campaign|bucket index: latency histogram (non-cumulative)
METRIC_LATENCY_SUM = "t"  # t|campaign: latency sum in microseconds
METRIC_FALLBACKS = "f"  # f|campaign: fallback bodies served
METRIC_STALE = "s"  # s|campaign: last-known copies served
METRIC_NOT_MODIFIED = "n"  # n|campaign: 304s
METRIC_AUTH_FAILURES = "a"  # a|campaign: 401s and 403s
METRIC_BYTES = "b"  # b|campaign: body bytes sent
# x|campaign: answers slower than the caller's timeout (a connection-level
# failure for the caller) whose status is not already a failure status.
METRIC_TIMEOUTS = "x"
METRIC_PROCESS = "p"  # p|host|pid: requests answered by one API process
METRIC_PUBLISH_LAG = "g"  # g|bucket index: outbox event created -> live in Redis

# Ten steps per decade (the R10 series), at most 25% apart.
_R10 = (1.0, 1.25, 1.6, 2.0, 2.5, 3.15, 4.0, 5.0, 6.3, 8.0)
# Label for requests that name no known campaign: a slug can never start with
# "-", and unknown input must never become a label (unbounded series).
NO_CAMPAIGN = "-"

# Upper bounds (seconds) of the latency buckets: the R10 series, ten per
# decade (steps of 25% at most), from 1 ms to 5 s, so p50/p95/p99 are known
# within a bucket's width and the caller's 2 s cutoff is a bucket edge.
# Bucket i counts answers taking at most LATENCY_BOUNDS[i] and more than the
# bound before it; index len(LATENCY_BOUNDS) counts everything slower.
LATENCY_BOUNDS: tuple[float, ...] = tuple(
    round(step * decade, 6) for decade in (0.001, 0.01, 0.1, 1.0) for step in _R10
)[:-2]
# The caller gives up after this long: a slower answer is a failure to it.
CALLER_TIMEOUT = 2.0
# Statuses the caller counts as failures towards blacking out a host.
FAILURE_STATUSES = frozenset({408, 429, 502, 503, 504, 529})
# Upper bounds (seconds) of the lag buckets: ten per decade from 10 ms to
# 10 minutes; the last bucket counts everything slower.
LAG_BOUNDS: tuple[float, ...] = tuple(
    round(step * decade, 6) for decade in (0.01, 0.1, 1.0, 10.0, 100.0) for step in _R10
)[:-1]


def latency_bucket(seconds: float) -> int:
    """Index of the latency bucket a duration falls in."""
    return bisect_left(LATENCY_BOUNDS, seconds)


def lag_bucket(seconds: float) -> int:
    """Index of the publish-lag bucket a lag falls in."""
    return bisect_left(LAG_BOUNDS, seconds)


def add_to_buckets(pipe: redis.client.Pipeline, seconds: dict[int, Counter[str]]) -> None:
    """HINCRBY each second's fields into its bucket at every resolution, with expiry.

    Seconds that share a coarser bucket are summed first, so a catch-up after
    an outage writes each minute or hour bucket once.
    """
    buckets: dict[tuple[int, int], Counter[str]] = {}
    for second, fields in seconds.items():
        for resolution in METRIC_RESOLUTIONS:
            index = second // resolution
            buckets.setdefault((resolution, index), Counter()).update(fields)
    for (resolution, index), fields in buckets.items():
        key = keys.metric_bucket_key(resolution, index)
        for name, value in fields.items():
            pipe.hincrby(key, name, value)
        pipe.expireat(key, (index + 1) * resolution + METRIC_RETENTION[resolution])


_SEP = METRIC_FIELD_SEPARATOR
PER_CAMPAIGN = {
    METRIC_FALLBACKS: "fallbacks",
    METRIC_STALE: "stale",
    METRIC_NOT_MODIFIED: "not_modified",
    METRIC_AUTH_FAILURES: "auth_failures",
    METRIC_BYTES: "bytes",
    METRIC_TIMEOUTS: "timeouts",
}


@dataclass
class Tally:
    """Everything counted in one bucket (or a sum of buckets)."""

    statuses: Counter[int] = field(default_factory=Counter)
    latency: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS) + 1))
    latency_us: int = 0
    lag: list[int] = field(default_factory=lambda: [0] * (len(LAG_BOUNDS) + 1))
    counters: Counter[str] = field(default_factory=Counter)
    campaigns: dict[str, Counter[str]] = field(default_factory=dict)
    processes: Counter[str] = field(default_factory=Counter)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def failures(self) -> int:
        """What the caller counts as failed: failure statuses and answers past its timeout."""
        failed = sum(self.statuses[status] for status in FAILURE_STATUSES)
        return failed + self.counters["timeouts"]

    def add(self, other: Tally) -> None:
        """Sum `other` into this tally."""
        self.statuses.update(other.statuses)
        self.latency = [a + b for a, b in zip(self.latency, other.latency, strict=True)]
        self.latency_us += other.latency_us
        self.lag = [a + b for a, b in zip(self.lag, other.lag, strict=True)]
        self.counters.update(other.counters)
        for campaign, counts in other.campaigns.items():
            self.campaigns.setdefault(campaign, Counter()).update(counts)
        self.processes.update(other.processes)


@lru_cache(maxsize=65_536)
def _field(raw_field: bytes) -> tuple[str, str, int]:
    """(kind, label, number) of a bucket field, number being a status or bucket index.

    The same few hundred field names repeat in every bucket of a range, so
    each is split once per process.
    """
    kind, _, rest = raw_field.decode("utf-8").partition(_SEP)
    if kind == METRIC_PUBLISH_LAG:
        return kind, "", min(int(rest), len(LAG_BOUNDS))
    if kind == METRIC_PROCESS:
        return kind, rest, 0
    label, _, number = rest.partition(_SEP)
    if kind == METRIC_LATENCY:
        return kind, label, min(int(number), len(LATENCY_BOUNDS))
    return kind, label, int(number) if number else 0


def parse_bucket(raw: dict[bytes, bytes], campaign: str | None = None) -> Tally:
    """A Tally from one bucket hash; `campaign` keeps only that campaign's counts.

    Publish lag and per-process counts belong to no campaign and are always kept.
    """
    tally = Tally()
    campaigns = tally.campaigns
    for raw_field, raw_value in raw.items():
        kind, label, number = _field(raw_field)
        value = int(raw_value)
        if kind == METRIC_LATENCY:
            if campaign is None or label == campaign:
                tally.latency[number] += value
        elif kind == METRIC_PUBLISH_LAG:
            tally.lag[number] += value
        elif kind == METRIC_PROCESS:
            tally.processes[label] += value
        elif campaign is not None and label != campaign:
            continue
        elif kind == METRIC_REQUESTS:
            tally.statuses[number] += value
            counts = campaigns.get(label)
            if counts is None:
                counts = campaigns[label] = Counter()
            counts["requests"] += value
            if number in (200, 304):
                counts["answered"] += value
            elif number == 404:
                counts["not_found"] += value
        elif kind == METRIC_LATENCY_SUM:
            tally.latency_us += value
        elif kind in PER_CAMPAIGN:
            tally.counters[PER_CAMPAIGN[kind]] += value
            if kind == METRIC_FALLBACKS:
                counts = campaigns.get(label)
                if counts is None:
                    counts = campaigns[label] = Counter()
                counts["fallbacks"] += value
    return tally
