"""State of the parts behind the endpoint: publishing (outbox, set-aside entries, RQ), Redis,
API processes."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import redis
from rq import Queue, Worker
from rq.job import Job
from rq.registry import FailedJobRegistry
from sqlalchemy import func, select

from ccadmin import keys
from ccadmin.extensions import db
from ccadmin.metrics import buckets
from ccadmin.metrics.buckets import Tally
from ccadmin.models import Campaign, ContentEntry, OutboxEvent, PublishFailure

# An API process that has not flushed for this long is shown as gone.
PROCESS_ALIVE_SECONDS = 5.0
FAILED_JOBS_SHOWN = 20
SET_ASIDE_SHOWN = 20
_ERROR_LINES = 3


def _age(moment: datetime | None) -> float | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(max(0.0, time.time() - moment.timestamp()), 1)


def outbox_backlog() -> dict[str, Any]:
    """Unpublished outbox events, the oldest one's age, and those failing (with the newest error).

    Failures are counted from the database, not Redis: a full Redis refuses
    every write, a failure counter's too.
    """
    unpublished = OutboxEvent.published_at.is_(None)
    count, oldest, failing = db.session.execute(
        select(
            func.count(),
            func.min(OutboxEvent.created_at),
            func.count(OutboxEvent.last_error),
        ).where(unpublished)
    ).one()
    last_error = db.session.execute(
        select(OutboxEvent.last_error)
        .where(unpublished, OutboxEvent.last_error.is_not(None))
        .order_by(OutboxEvent.id.desc())
        .limit(1)
    ).scalar()
    db.session.rollback()
    return {
        "unpublished": count,
        "oldest_seconds": _age(oldest),
        "failing": failing,
        "last_error": last_error,
    }


def failed_jobs(connection: redis.Redis) -> list[dict[str, Any]]:
    """The newest failed worker jobs (rebuild chunks, imports) with the end of their error."""
    job_ids = [
        job_id
        for name in keys.WORKER_QUEUES
        for job_id in FailedJobRegistry(name, connection=connection).get_job_ids(
            0, FAILED_JOBS_SHOWN - 1, desc=True
        )
    ]
    rows = []
    for job_id, job in zip(job_ids, Job.fetch_many(job_ids, connection=connection), strict=True):
        if job is None:
            continue
        result = job.latest_result()
        error = (result.exc_string or "") if result is not None else ""
        rows.append(
            {
                "id": job_id,
                "call": job.get_call_string(),
                "ended_seconds": _age(job.ended_at),
                "error": "\n".join(error.strip().splitlines()[-_ERROR_LINES:]),
            }
        )
    rows.sort(key=lambda row: row["ended_seconds"] if row["ended_seconds"] is not None else 0)
    return rows[:FAILED_JOBS_SHOWN]


def rq_state(connection: redis.Redis) -> dict[str, Any]:
    """Jobs waiting and failed on the worker queues, and the workers that are alive."""
    workers = [
        {
            "name": worker.name,
            "state": worker.get_state(),
            "heartbeat_seconds": _age(worker.last_heartbeat),
        }
        for worker in Worker.all(connection=connection)
    ]
    return {
        "queue_depth": sum(Queue(name, connection=connection).count for name in keys.WORKER_QUEUES),
        "failed_count": sum(
            FailedJobRegistry(name, connection=connection).count for name in keys.WORKER_QUEUES
        ),
        "failed_jobs": failed_jobs(connection),
        "workers": sorted(workers, key=lambda worker: worker["name"]),
    }


def set_aside_entries() -> dict[str, Any]:
    """Entry versions that could not be published (publish_failure), newest first."""
    count = db.session.execute(select(func.count()).select_from(PublishFailure)).scalar_one()
    rows = db.session.execute(
        select(
            PublishFailure.content_entry_id,
            PublishFailure.version,
            PublishFailure.error,
            PublishFailure.failed_at,
            ContentEntry.user_id,
            Campaign.slug,
        )
        .join(ContentEntry, ContentEntry.id == PublishFailure.content_entry_id)
        .join(Campaign, Campaign.id == ContentEntry.campaign_id)
        .order_by(PublishFailure.failed_at.desc())
        .limit(SET_ASIDE_SHOWN)
    ).all()
    db.session.rollback()
    return {
        "set_aside_count": count,
        "set_aside": [
            {
                "entry_id": row.content_entry_id,
                "campaign": row.slug,
                # Shown as a person would type it: a lone surrogate as its escape.
                "user_id": row.user_id.encode("utf-8", "backslashreplace").decode("utf-8"),
                "version": row.version,
                "error": row.error,
                "failed_seconds": _age(row.failed_at),
            }
            for row in rows
        ],
    }


def write_counts(connection: redis.Redis) -> dict[str, int]:
    """Entry writes the workers applied, stale ones they refused (older versions),
    and ingest writes superseded by a newer event time from their source.

    Stale writes are normal after retries and replays; a steady climb means
    jobs are arriving out of order or running twice. Superseded writes are a
    sending tool's late retries, acknowledged and not applied.
    """
    raw = connection.hmget(
        keys.STATS, keys.STAT_WRITES, keys.STAT_STALE_WRITES, keys.STAT_SUPERSEDED_WRITES
    )
    writes, stale, superseded = (int(value) if value else 0 for value in raw)
    return {"writes": writes, "stale_writes": stale, "superseded_writes": superseded}


def redis_state(connection: redis.Redis) -> dict[str, Any]:
    """Memory used against the limit, keys, clients, and the ready marker.

    On a cluster, the sums over the primaries (each one's limit applies to
    its own shard; the page shows the total).
    """
    memory = _info(connection, "memory")
    clients = _info(connection, "clients")
    return {
        "used_memory": sum(reply.get("used_memory", 0) for reply in memory),
        "maxmemory": sum(reply.get("maxmemory", 0) for reply in memory),
        "maxmemory_policy": memory[0].get("maxmemory_policy"),
        "keys": connection.dbsize(),
        "connected_clients": sum(reply.get("connected_clients", 0) for reply in clients),
        "ready": bool(connection.exists(keys.READY)),
    }


def _info(connection: redis.Redis, section: str) -> list[dict[str, Any]]:
    """One INFO section per server: the primaries of a cluster, else the one Redis."""
    if isinstance(connection, redis.RedisCluster):
        return list(connection.info(section, target_nodes=connection.PRIMARIES).values())
    return [connection.info(section)]


def api_processes(
    connection: redis.Redis, minute: Tally, now: float | None = None
) -> list[dict[str, Any]]:
    """API processes that flushed in the last hour, with last minute's requests."""
    now = time.time() if now is None else now
    rows = []
    for member, seen in connection.zrange(keys.METRIC_PROCESSES, 0, -1, withscores=True):
        name = member.decode("utf-8")
        host, _, pid = name.rpartition(buckets.METRIC_FIELD_SEPARATOR)
        rows.append(
            {
                "process": name,
                "host": host,
                "pid": pid,
                "seen_seconds": round(max(0.0, now - seen), 1),
                "alive": now - seen <= PROCESS_ALIVE_SECONDS,
                "requests_last_minute": minute.processes.get(name, 0),
            }
        )
    rows.sort(key=lambda row: (not row["alive"], -row["requests_last_minute"], row["process"]))
    return rows
