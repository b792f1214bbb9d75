"""`/metrics` on the admin's web process: the publishing pipeline for Prometheus.

Read at scrape time from where the state lives (the database, Redis, RQ), so
any number of web processes answer the same; only the ingest API's request
counter is this process's own. Off unless CCADMIN_METRICS_TOKEN is set, and
then only for `Authorization: Bearer <that token>`: the numbers name queues,
campaigns' backlogs and error counts, which are not for the public.
Every part that cannot be read (Redis or the database down) is left out and
said by `ccadmin_redis_up` / `ccadmin_database_up`, so the scrape still works.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import redis
from flask import Blueprint, Flask, current_app, request
from prometheus_client import (
    CollectorRegistry,
    Counter,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from rq import Queue, Worker
from rq.registry import FailedJobRegistry
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.wrappers import Response

from ccadmin import keys
from ccadmin.extensions import db
from ccadmin.metrics import system
from ccadmin.metrics.buckets import LAG_BOUNDS
from ccadmin.models import ContentImport
from ccadmin.models.imports import STATUS_APPLIED, STATUS_FAILED, STATUS_ROLLED_BACK
from ccadmin.publishing import rebuild_plan, reconcile_status
from ccadmin.redis_client import get_redis, get_store

log = logging.getLogger(__name__)

bp = Blueprint("prometheus", __name__)
_REGISTRY = "ccadmin_metrics_registry"
_INGEST = "ccadmin_ingest_requests"
# Imports whose rows are still being staged or applied.
_FINAL = (STATUS_APPLIED, STATUS_FAILED, STATUS_ROLLED_BACK)


class PipelineCollector:
    """Gauges and counters of the publishing pipeline, read when scraped."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        with self.app.app_context():
            yield from self._database()
            yield from self._redis()

    def _database(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("ccadmin_database_up", "1 when the database answered this scrape.")
        try:
            backlog = system.outbox_backlog()
            set_aside = system.set_aside_entries()["set_aside_count"]
            imports = _imports()
        except SQLAlchemyError as error:
            db.session.rollback()
            log.warning("metrics: the database is unavailable: %s", error)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield _gauge(
            "ccadmin_outbox_pending_events",
            "Outbox events not yet published to Redis.",
            backlog["unpublished"],
        )
        yield _gauge(
            "ccadmin_outbox_oldest_pending_age_seconds",
            "Age of the oldest unpublished outbox event (0 when none).",
            backlog["oldest_seconds"] or 0,
        )
        yield _gauge(
            "ccadmin_outbox_failing_events",
            "Unpublished outbox events whose last attempt failed.",
            backlog["failing"],
        )
        yield _gauge(
            "ccadmin_publish_set_aside_entries",
            "Entry versions set aside because they could not be published.",
            set_aside,
        )
        rows = GaugeMetricFamily(
            "ccadmin_import_rows",
            "Rows of the imports in progress: staged (validated) and applied (written).",
            labels=["state"],
        )
        rows.add_metric(["staged"], imports["staged"])
        rows.add_metric(["applied"], imports["applied"])
        yield rows
        by_status = GaugeMetricFamily(
            "ccadmin_imports", "Change sets (imports, reverts) by status.", labels=["status"]
        )
        for status, count in sorted(imports["by_status"].items()):
            by_status.add_metric([status], count)
        yield by_status

    def _redis(self) -> Iterator[Metric]:
        settings = current_app.config["CCADMIN_SETTINGS"]
        up = GaugeMetricFamily("ccadmin_redis_up", "1 when Redis answered this scrape.")
        try:
            store = get_store(settings)
            queues = get_redis(settings)
            found = list(_from_redis(store, queues))
        except (redis.RedisError, OSError) as error:
            log.warning("metrics: Redis is unavailable: %s", error)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from found


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation)
    family.add_metric([], value)
    return family


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation)
    family.add_metric([], value)
    return family


def _imports() -> dict[str, Any]:
    by_status = dict(
        db.session.execute(
            select(ContentImport.status, func.count()).group_by(ContentImport.status)
        ).all()
    )
    staged, applied = db.session.execute(
        select(
            func.coalesce(func.sum(ContentImport.total_rows), 0),
            func.coalesce(func.sum(ContentImport.written_rows), 0),
        ).where(ContentImport.status.not_in(_FINAL))
    ).one()
    db.session.rollback()
    return {"by_status": by_status, "staged": staged, "applied": applied}


def _from_redis(store: redis.Redis, queues: redis.Redis) -> Iterator[Metric]:
    stats = system.write_counts(store)
    yield _counter(
        "ccadmin_publish_writes", "Entry writes the workers applied in Redis.", stats["writes"]
    )
    yield _counter(
        "ccadmin_publish_stale_writes",
        "Entry writes refused because Redis held the same or a newer version.",
        stats["stale_writes"],
    )
    yield _counter(
        "ccadmin_ingest_superseded_writes",
        "Ingest writes acknowledged but not applied: older than their source's newest.",
        stats["superseded_writes"],
    )
    yield _lag_histogram(store)
    state = system.redis_state(store)
    yield _gauge(
        "ccadmin_redis_ready",
        "1 when Redis holds a full build (the ready marker).",
        int(state["ready"]),
    )
    yield _gauge("ccadmin_redis_used_memory_bytes", "Memory Redis uses.", state["used_memory"])
    yield _gauge(
        "ccadmin_redis_max_memory_bytes", "Redis's memory limit (0: none).", state["maxmemory"]
    )
    now = time.time()
    yield _gauge(
        "ccadmin_api_processes",
        "API processes that flushed their counts in the last 5 seconds, on every host.",
        store.zcount(keys.METRIC_PROCESSES, now - system.PROCESS_ALIVE_SECONDS, "+inf"),
    )
    depth = GaugeMetricFamily("ccadmin_queue_jobs", "Jobs waiting on a queue.", labels=["queue"])
    failed = GaugeMetricFamily(
        "ccadmin_queue_failed_jobs", "Failed jobs kept on a queue.", labels=["queue"]
    )
    for name in keys.WORKER_QUEUES:
        depth.add_metric([name], Queue(name, connection=queues).count)
        failed.add_metric([name], FailedJobRegistry(name, connection=queues).count)
    yield depth
    yield failed
    yield _gauge(
        "ccadmin_workers",
        "Worker processes alive: a heartbeat to RQ within the last 10 seconds.",
        sum(
            1
            for worker in Worker.all(connection=queues)
            if worker.last_heartbeat is not None
            and time.time() - _epoch(worker.last_heartbeat) <= keys.WORKER_SILENCE_SECONDS
        ),
    )
    yield from _rebuild(store)


def _epoch(moment: datetime) -> float:
    """RQ's naive UTC datetimes as Unix time."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _lag_histogram(store: redis.Redis) -> HistogramMetricFamily:
    raw = store.hgetall(keys.PUBLISH_LAG_TOTALS)
    totals = {key.decode(): value for key, value in raw.items()}
    cumulative = 0
    buckets = []
    for index, bound in enumerate((*LAG_BOUNDS, float("inf"))):
        cumulative += int(totals.get(str(index), 0))
        buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
    family = HistogramMetricFamily(
        "ccadmin_publish_lag_seconds",
        "Save-to-live: an outbox event's creation to its change being live in Redis.",
    )
    family.add_metric([], buckets, float(totals.get(keys.PUBLISH_LAG_SUM, 0)))
    return family


def _rebuild(store: redis.Redis) -> Iterator[Metric]:
    try:
        plan = rebuild_plan.read_plan(store)
    except (KeyError, ValueError):
        plan = None  # a plan half written by a rebuild of an older release
    running = plan is not None and plan.finished_at is None
    yield _gauge("ccadmin_rebuild_running", "1 while a full rebuild of Redis runs.", int(running))
    chunks = GaugeMetricFamily(
        "ccadmin_rebuild_chunks", "The last full rebuild's chunks.", labels=["state"]
    )
    chunks.add_metric(["done"], 0 if plan is None else plan.chunks_done)
    chunks.add_metric(["total"], 0 if plan is None else plan.chunks)
    yield chunks
    report = reconcile_status.last_reconcile_report()
    finished = GaugeMetricFamily(
        "ccadmin_reconcile_last_finished_timestamp_seconds",
        "When the last reconcile of Redis against the database finished (Unix time; 0: never).",
    )
    repaired = GaugeMetricFamily(
        "ccadmin_reconcile_last_repaired_entries",
        "Entries the last reconcile found missing, outdated or orphaned in Redis, and fixed.",
    )
    finished.add_metric(
        [], 0 if report is None else datetime.fromisoformat(report["finished_at"]).timestamp()
    )
    repaired.add_metric([], 0 if report is None else report["counts"].get("repaired", 0))
    yield finished
    yield repaired


def count_ingest_request(response: Response) -> Response:
    """After every /manage/v1 request: its method and status."""
    if request.blueprint == "manage":
        current_app.extensions[_INGEST].labels(request.method, str(response.status_code)).inc()
    return response


@bp.get("/metrics")
def metrics() -> Response:
    token = current_app.config["CCADMIN_SETTINGS"].metrics_token
    presented = request.headers.get("Authorization", "")
    if token is None or not hmac.compare_digest(presented.encode(), f"Bearer {token}".encode()):
        # The same answer whether the endpoint is off or the token wrong.
        return Response("not found\n", status=404, mimetype="text/plain")
    body = generate_latest(current_app.extensions[_REGISTRY])
    response = Response(body)
    # The format every Prometheus version reads, as the API's /metrics answers.
    response.headers["Content-Type"] = CONTENT_TYPE_PLAIN_0_0_4
    response.headers["Cache-Control"] = "no-store"
    return response


def init_app(app: Flask) -> None:
    """A registry per app (tests build many apps), the collector, the ingest counter."""
    # No `_created` series beside each counter: Prometheus does not need them.
    disable_created_metrics()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PipelineCollector(app))
    app.extensions[_REGISTRY] = registry
    app.extensions[_INGEST] = Counter(
        "ccadmin_ingest_requests",
        "Ingest API (/manage/v1) requests answered by this web process, by method and status.",
        ["method", "status"],
        registry=registry,
    )
    app.after_request(count_ingest_request)
    app.register_blueprint(bp)
