"""In-process request counters for `/metrics`, lock-free on the hot path.

Each serving thread increments its own dict, so a request never waits on a
lock and no increment is lost; `/metrics` sums the per-thread dicts. The
counts belong to one process: a scrape sees the process that answered it
(the `pid` label on `ccadmin_api_info` says which).
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter

REQUESTS = "requests"
FALLBACKS = "fallbacks"
STALE = "stale"
NOT_MODIFIED = "not_modified"
AUTH_FAILURES = "auth_failures"

# Label for requests that name no known campaign: a slug can never start with
# "-", and unknown input must never become a label (unbounded series).
NO_CAMPAIGN = "-"

_FAMILIES = (
    (REQUESTS, "ccadmin_api_requests_total", "Content requests answered, by campaign and status."),
    (FALLBACKS, "ccadmin_api_fallbacks_total", "Fallback bodies served to users without content."),
    (STALE, "ccadmin_api_stale_total", "Last-known copies served while Redis was unusable."),
    (NOT_MODIFIED, "ccadmin_api_not_modified_total", "304 answers to If-None-Match."),
    (AUTH_FAILURES, "ccadmin_api_auth_failures_total", "Requests refused with 401 or 403."),
)


def _escape(label_value: str) -> str:
    return label_value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Counters:
    """Per-thread tallies keyed by (family, campaign[, status])."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._tables: list[dict[tuple[str, ...], int]] = []
        self._register_lock = threading.Lock()
        self.started_at = time.time()

    def _table(self) -> dict[tuple[str, ...], int]:
        try:
            return self._local.table
        except AttributeError:
            table: dict[tuple[str, ...], int] = {}
            with self._register_lock:
                self._tables.append(table)
            self._local.table = table
            return table

    def count(self, family: str, campaign: str, status: str = "") -> None:
        """Add one to a counter; called from the serving thread only."""
        table = self._table()
        key = (family, campaign, status)
        table[key] = table.get(key, 0) + 1

    def totals(self) -> Counter[tuple[str, ...]]:
        """Sum over every thread; a dict copy is atomic under the GIL."""
        with self._register_lock:
            tables = list(self._tables)
        total: Counter[tuple[str, ...]] = Counter()
        for table in tables:
            total.update(table.copy())
        return total

    def render(self) -> bytes:
        """Prometheus text exposition format (version 0.0.4)."""
        totals = self.totals()
        lines = [
            "# HELP ccadmin_api_info The process that answered this scrape.",
            "# TYPE ccadmin_api_info gauge",
            f'ccadmin_api_info{{pid="{os.getpid()}"}} 1',
            "# HELP ccadmin_api_start_time_seconds Start time of this process (Unix epoch).",
            "# TYPE ccadmin_api_start_time_seconds gauge",
            f"ccadmin_api_start_time_seconds {self.started_at:.3f}",
        ]
        for family, metric, help_text in _FAMILIES:
            lines.append(f"# HELP {metric} {help_text}")
            lines.append(f"# TYPE {metric} counter")
            for (name, campaign, status), value in sorted(totals.items()):
                if name != family:
                    continue
                labels = f'campaign="{_escape(campaign)}"'
                if status:
                    labels += f',status="{status}"'
                lines.append(f"{metric}{{{labels}}} {value}")
        return ("\n".join(lines) + "\n").encode("utf-8")
