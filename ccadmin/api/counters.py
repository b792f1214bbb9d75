"""In-process request counters and latency histogram, lock-free on the hot path.

Each serving thread increments its own dict, so a request never waits on a
lock and no increment is lost; readers (`/metrics`, the flusher that copies
the counts to Redis once a second) sum the per-thread dicts. The counts are
cumulative; a scrape renders the sum over the host's processes on the port
(host_counts.py), and the `pid` label on `ccadmin_api_info` names the one
that answered.
"""

from __future__ import annotations

import os
import threading
import time
from bisect import bisect_left
from collections import Counter

from ccadmin.metrics.buckets import (
    CALLER_TIMEOUT,
    FAILURE_STATUSES,
    LATENCY_BOUNDS,
)

REQUESTS = "requests"
FALLBACKS = "fallbacks"
STALE = "stale"
NOT_MODIFIED = "not_modified"
AUTH_FAILURES = "auth_failures"
BYTES = "bytes"
TIMEOUTS = "timeouts"
LATENCY = "latency"
LATENCY_SUM = "latency_sum"

_FAMILIES = (
    (REQUESTS, "ccadmin_api_requests_total", "Content requests answered, by campaign and status."),
    (FALLBACKS, "ccadmin_api_fallbacks_total", "Fallback bodies served to users without content."),
    (STALE, "ccadmin_api_stale_total", "Last-known copies served while Redis was unusable."),
    (NOT_MODIFIED, "ccadmin_api_not_modified_total", "304 answers to If-None-Match."),
    (AUTH_FAILURES, "ccadmin_api_auth_failures_total", "Requests refused with 401 or 403."),
    (BYTES, "ccadmin_api_response_bytes_total", "Response body bytes sent, by campaign."),
    (
        TIMEOUTS,
        "ccadmin_api_slow_responses_total",
        "Answers slower than the caller's 2 s timeout (statuses other than failures).",
    ),
)
_HISTOGRAM = "ccadmin_api_request_duration_seconds"

Key = tuple[str, ...] | tuple[str, str, int] | tuple[str, str, int, int]


def _escape(label_value: str) -> str:
    return label_value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


class Counters:
    """Per-thread tallies: (family, campaign[, status[, bucket]]) -> count."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._tables: list[dict[Key, float]] = []
        self._register_lock = threading.Lock()
        self.started_at = time.time()

    def _table(self) -> dict[Key, float]:
        try:
            return self._local.table
        except AttributeError:
            table: dict[Key, float] = {}
            with self._register_lock:
                self._tables.append(table)
            self._local.table = table
            return table

    def count(self, family: str, campaign: str) -> None:
        """Add one to a per-campaign counter; called from the serving thread only."""
        table = self._table()
        key = (family, campaign)
        table[key] = table.get(key, 0) + 1

    def observe(self, campaign: str, status: int, body_bytes: int, seconds: float) -> None:
        """Count one answered content request: status, latency, bytes."""
        table = self._table()
        key: Key = (REQUESTS, campaign, status)
        table[key] = table.get(key, 0) + 1
        key = (LATENCY, campaign, status, bisect_left(LATENCY_BOUNDS, seconds))
        table[key] = table.get(key, 0) + 1
        key = (LATENCY_SUM, campaign, status)
        table[key] = table.get(key, 0.0) + seconds
        if body_bytes:
            key = (BYTES, campaign)
            table[key] = table.get(key, 0) + body_bytes
        if seconds > CALLER_TIMEOUT and status not in FAILURE_STATUSES:
            key = (TIMEOUTS, campaign)
            table[key] = table.get(key, 0) + 1

    def totals(self) -> Counter[Key]:
        """Sum over every thread; a dict copy is atomic under the GIL."""
        with self._register_lock:
            tables = list(self._tables)
        total: Counter[Key] = Counter()
        for table in tables:
            total.update(table.copy())
        return total

    def render(self, totals: Counter[Key]) -> bytes:
        """`totals` in the Prometheus text exposition format (version 0.0.4)."""
        lines = [
            "# HELP ccadmin_api_info The process that answered this scrape.",
            "# TYPE ccadmin_api_info gauge",
            f'ccadmin_api_info{{pid="{os.getpid()}"}} 1',
            "# HELP ccadmin_api_start_time_seconds Start time of this process (Unix epoch).",
            "# TYPE ccadmin_api_start_time_seconds gauge",
            f"ccadmin_api_start_time_seconds {self.started_at:.3f}",
        ]
        by_family: dict[str, list[tuple[Key, float]]] = {}
        for key, value in totals.items():
            by_family.setdefault(key[0], []).append((key, value))
        for family, metric, help_text in _FAMILIES:
            lines.append(f"# HELP {metric} {help_text}")
            lines.append(f"# TYPE {metric} counter")
            for key, value in sorted(by_family.get(family, ())):
                labels = f'campaign="{_escape(key[1])}"'
                if len(key) > 2:
                    labels += f',status="{key[2]}"'
                lines.append(f"{metric}{{{labels}}} {_number(value)}")
        lines.extend(self._render_histogram(by_family))
        return ("\n".join(lines) + "\n").encode("utf-8")

    def _render_histogram(self, by_family: dict[str, list[tuple[Key, float]]]) -> list[str]:
        buckets: dict[tuple[str, int], list[float]] = {}
        for (_, campaign, status, index), value in by_family.get(LATENCY, ()):
            counts = buckets.setdefault((campaign, status), [0] * (len(LATENCY_BOUNDS) + 1))
            counts[index] += value
        sums = {(key[1], key[2]): value for key, value in by_family.get(LATENCY_SUM, ())}
        lines = [
            f"# HELP {_HISTOGRAM} Time from receiving a content request to returning its body.",
            f"# TYPE {_HISTOGRAM} histogram",
        ]
        for (campaign, status), counts in sorted(buckets.items()):
            labels = f'campaign="{_escape(campaign)}",status="{status}"'
            cumulative = 0
            for bound, count in zip((*LATENCY_BOUNDS, None), counts, strict=True):
                cumulative += count
                le = "+Inf" if bound is None else repr(bound)
                lines.append(f'{_HISTOGRAM}_bucket{{{labels},le="{le}"}} {cumulative}')
            lines.append(f"{_HISTOGRAM}_sum{{{labels}}} {sums.get((campaign, status), 0.0)!r}")
            lines.append(f"{_HISTOGRAM}_count{{{labels}}} {cumulative}")
        return lines


class DisabledCounters(Counters):
    """`API_METRICS=0`: the same interface, recording nothing."""

    def count(self, family: str, campaign: str) -> None:
        """Recording is off."""

    def observe(self, campaign: str, status: int, body_bytes: int, seconds: float) -> None:
        """Recording is off."""
