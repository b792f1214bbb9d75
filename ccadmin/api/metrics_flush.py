"""Copies one API process's counts to Redis once a second (the live dashboard's source).

A daemon thread wakes at each whole second, takes the difference between the
counters' totals and what it took last time, and adds that delta with HINCRBY
to the metrics buckets of that second at every resolution (keys.py), in ONE
MULTI/EXEC pipeline. HINCRBY sums, so any number of processes on any number of
hosts add up. If Redis is down the deltas wait in memory (bounded) and go out
with the next flush that works: an outage loses nothing shorter than
MAX_PENDING_SECONDS, and a request never waits on this thread. The counts go
to the content store's writable side: the cluster, or REDIS_URL (the primary
when the API reads replicas).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import Counter

import redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException
from redis.retry import Retry

from ccadmin import keys
from ccadmin.api import host_counts
from ccadmin.api.counters import (
    AUTH_FAILURES,
    BYTES,
    FALLBACKS,
    LATENCY,
    LATENCY_SUM,
    NOT_MODIFIED,
    REQUESTS,
    STALE,
    TIMEOUTS,
    Counters,
    Key,
)
from ccadmin.config import Settings
from ccadmin.metrics import buckets
from ccadmin.metrics.buckets import add_to_buckets
from ccadmin.redis_client import cluster_client

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 1.0
# Flush just after the second turns, so a bucket is complete soon after it ends.
FLUSH_OFFSET = 0.02
# Seconds of counts kept while Redis is unreachable; older ones are dropped.
MAX_PENDING_SECONDS = 900
# Seconds of backlog sent per flush once Redis is back: keeps each pipeline
# small while the backlog drains (a 15-minute outage catches up in 15 s).
CATCH_UP_SECONDS = 60
# The Redis client's budget per flush; it runs off the request path.
FLUSH_TIMEOUT = 1.0
# A process that has not flushed for this long is dropped from the alive set.
FORGET_PROCESS_SECONDS = 3600

_SEP = buckets.METRIC_FIELD_SEPARATOR
_SIMPLE_FAMILIES = {
    FALLBACKS: buckets.METRIC_FALLBACKS,
    STALE: buckets.METRIC_STALE,
    NOT_MODIFIED: buckets.METRIC_NOT_MODIFIED,
    AUTH_FAILURES: buckets.METRIC_AUTH_FAILURES,
    BYTES: buckets.METRIC_BYTES,
    TIMEOUTS: buckets.METRIC_TIMEOUTS,
}


def process_name(host: str | None = None, pid: int | None = None) -> str:
    """How this process is named in the buckets: "host|pid"."""
    return f"{host or socket.gethostname()}{_SEP}{pid or os.getpid()}"


def bucket_fields(delta: Counter[Key], process: str) -> Counter[str]:
    """Redis hash fields for one second's counts (see ccadmin/metrics/buckets.py)."""
    fields: Counter[str] = Counter()
    latency_sums: Counter[str] = Counter()
    requests = 0
    for key, value in delta.items():
        family, campaign = key[0], key[1]
        if family == REQUESTS:
            fields[f"{buckets.METRIC_REQUESTS}{_SEP}{campaign}{_SEP}{key[2]}"] += value
            requests += value
        elif family == LATENCY:
            fields[f"{buckets.METRIC_LATENCY}{_SEP}{campaign}{_SEP}{key[3]}"] += value
        elif family == LATENCY_SUM:
            latency_sums[campaign] += value
        elif family in _SIMPLE_FAMILIES:
            fields[f"{_SIMPLE_FAMILIES[family]}{_SEP}{campaign}"] += value
    for campaign, seconds in latency_sums.items():
        fields[f"{buckets.METRIC_LATENCY_SUM}{_SEP}{campaign}"] += round(seconds * 1_000_000)
    if requests:
        fields[f"{buckets.METRIC_PROCESS}{_SEP}{process}"] += requests
    return Counter({field: int(value) for field, value in fields.items() if value})


class MetricsFlusher(threading.Thread):
    """The daemon thread that moves one process's counts into Redis every second."""

    def __init__(
        self,
        counters: Counters,
        settings: Settings,
        client: redis.Redis | redis.RedisCluster | None = None,
    ) -> None:
        super().__init__(name="metrics-flusher", daemon=True)
        self.counters = counters
        self.settings = settings
        # Connected at the first flush: a cluster client contacts the nodes
        # when it is made, and the API must start while they are down.
        self.client = client
        self.process = process_name()
        self._last: Counter[Key] = Counter()
        self._shared = False
        self.pending: dict[int, Counter[str]] = {}
        self._failing = False

    def run(self) -> None:
        while True:
            now = time.time()
            time.sleep(FLUSH_INTERVAL - now % FLUSH_INTERVAL + FLUSH_OFFSET)
            try:
                self.collect(int(time.time()) - 1)
                self.flush()
            except Exception:
                log.exception("metrics flush failed")

    def collect(self, second: int) -> None:
        """File the counts since the last collect under `second`, and share the totals
        with the host's other API processes."""
        totals = self.counters.totals()
        delta = totals - self._last
        if delta or not self._shared:
            # An idle process's file stays as it is.
            host_counts.publish(self.settings, totals)
            self._shared = True
        self._last = totals
        fields = bucket_fields(delta, self.process)
        if fields:
            self.pending.setdefault(second, Counter()).update(fields)
        while len(self.pending) > MAX_PENDING_SECONDS:
            del self.pending[min(self.pending)]

    def final(self) -> None:
        """The counts of a process that stops: shared, and sent if Redis answers."""
        try:
            self.collect(int(time.time()))
            self.flush()
        except Exception:
            log.exception("last metrics flush failed")

    def flush(self) -> bool:
        """Send the oldest pending seconds and the alive mark in one pipeline."""
        batch = {second: self.pending[second] for second in sorted(self.pending)}
        batch = dict(list(batch.items())[:CATCH_UP_SECONDS])
        now = time.time()
        try:
            if self.client is None:
                self.client = _connect(self.settings)
            pipe = self.client.pipeline(transaction=True)
            add_to_buckets(pipe, batch)
            pipe.zadd(keys.METRIC_PROCESSES, {self.process: now})
            pipe.zremrangebyscore(keys.METRIC_PROCESSES, "-inf", now - FORGET_PROCESS_SECONDS)
            pipe.execute()
        except (redis.RedisError, RedisClusterException) as error:
            if not self._failing:
                log.warning("metrics flush to Redis failed (%s); keeping the counts", error)
            self._failing = True
            return False
        if self._failing:
            log.info("metrics flush to Redis works again")
            self._failing = False
        for second in batch:
            del self.pending[second]
        return True


def _connect(settings: Settings) -> redis.Redis | redis.RedisCluster:
    """The content store's writable side: the cluster, else REDIS_URL (never a replica).

    A client of its own: the flusher must never take a serving thread's
    connection, and a Redis that is down costs it one timeout per second.
    """
    if settings.redis_cluster_urls:
        # Counts wait in memory for the next flush: retrying inside one costs time.
        return cluster_client(
            settings.redis_cluster_urls,
            retry=Retry(NoBackoff(), 0),
            socket_timeout=FLUSH_TIMEOUT,
            socket_connect_timeout=FLUSH_TIMEOUT,
        )
    # With read replicas, REDIS_URL is their primary: replicas refuse writes.
    return redis.Redis.from_url(
        settings.effective_redis_url,
        socket_timeout=FLUSH_TIMEOUT,
        socket_connect_timeout=FLUSH_TIMEOUT,
        retry=Retry(NoBackoff(), 0),
    )
