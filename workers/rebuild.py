"""Full rebuild of Redis from the database (the ready marker), and reconcile.

A full rebuild writes everything the API reads and then sets keys.READY, so
an empty Redis is never mistaken for "no content" (docs/operations.md). Whoever
starts it (the sweeper when READY is missing, or `flask publish --all`)
publishes the config, splits the entry table into ranges of ids and
enqueues one RQ job per range on keys.REBUILD_QUEUE, so every worker takes
part. A chunk job writes its range with the compare-and-set writes (a rerun,
or a publish job racing it, changes nothing), records the chunk done and
extends the lock; the job that records the last chunk finalizes. A chunk
lost with a dead worker is enqueued again by the sweeper; a rebuild whose
lock expired is resumed from its plan (ccadmin/publishing/rebuild_plan.py).

`reconcile()` compares database versions with Redis and repairs the
difference (docs/operations.md), run by the sweeper and by `flask reconcile`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import time
from collections import Counter
from typing import Any

import redis
from rq import Queue, get_current_job
from sqlalchemy import Row, func, select

from ccadmin import keys
from ccadmin.extensions import db
from ccadmin.models.types import one_of, utcnow
from ccadmin.publishing import rebuild_plan
from ccadmin.publishing.rebuild_plan import Plan, Recorded
from workers import redis_writes
from workers.publish import (
    ENTRY_COLUMNS,
    campaign_slugs,
    content_columns,
    entry_chunks,
    entry_write,
    publish_api_keys,
    publish_campaigns,
    queue_connection,
    redis_connection,
    write_rows,
)

log = logging.getLogger(__name__)

# The lock outlives a rebuild in which nothing progresses by this long; every
# page a chunk job writes extends it. Past it, the sweeper resumes the plan.
REBUILD_LOCK_TTL = 120
# Ids per chunk job: 200 jobs for 10 million entries, each a few seconds of
# work, so workers share the load evenly and a lost chunk costs little.
CHUNK_IDS = 50_000
# Rows per query inside a chunk (keyset pagination on id); one write batch,
# so on a cluster about 20 entries share each script call (redis_writes.CLUSTER_BATCH).
PAGE_ROWS = 20_000
# A chunk is seconds of work; this only bounds a job stuck on its database.
CHUNK_JOB_TIMEOUT = 1_800
RECONCILE_CHUNK = 2_000
# Seconds between periodic reconciles (keys.RECONCILE_LOCK is the schedule).
RECONCILE_INTERVAL = 600


class RebuildInProgress(RuntimeError):
    """Another process holds the rebuild lock."""


def start_rebuild(chunk_size: int = CHUNK_IDS) -> dict[str, Any]:
    """Plan a full rebuild and enqueue its chunk jobs; returns its progress().

    A table that fits in one chunk is written here and now: no job would
    finish it sooner.
    """
    connection = redis_connection()
    rebuild_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.urandom(3).hex()}"
    if not connection.set(keys.REBUILD_LOCK, rebuild_id, nx=True, ex=REBUILD_LOCK_TTL):
        raise RebuildInProgress("a full rebuild is already running")
    # The build writes what this Redis lost: only a restart from now on (a new
    # run_id when READY is back) calls for the sweeper's reconcile.
    connection.set(keys.REDIS_RUN_ID, redis_writes.redis_run_id(connection))
    try:
        plan = _plan(connection, rebuild_id, chunk_size)
    except BaseException:
        redis_writes.release_lock(connection, keys.REBUILD_LOCK, rebuild_id)
        raise
    log.info(
        "full rebuild started: %s (%s chunks of %s ids)",
        rebuild_id,
        plan.chunks,
        plan.chunk_size,
    )
    if plan.chunks == 0:
        finalize(connection, plan)
    elif plan.chunks == 1:
        rebuild_chunk(rebuild_id, 0)
    else:
        enqueue_chunks(queue_connection(), plan, range(plan.chunks))
    return progress(connection)


def _plan(connection: redis.Redis, rebuild_id: str, chunk_size: int) -> Plan:
    started_at = time.time()
    snapshot = redis_writes.next_snapshot(connection)
    api_keys = publish_api_keys(connection, snapshot)
    publish_campaigns(connection, snapshot)
    campaigns = len(campaign_slugs())
    first_id, last_id = db.session.execute(
        select(func.min(content_columns.id), func.max(content_columns.id))
    ).one()
    db.session.rollback()
    chunks = 0 if first_id is None else (last_id - first_id) // chunk_size + 1
    plan = Plan(
        rebuild_id=rebuild_id,
        first_id=first_id or 0,
        chunk_size=chunk_size,
        chunks=chunks,
        snapshot=snapshot,
        started_at=started_at,
        campaigns=campaigns,
        api_keys=api_keys,
    )
    if not rebuild_plan.write_plan(connection, plan, REBUILD_LOCK_TTL):
        raise RebuildInProgress("the rebuild lock expired while planning")
    return plan


def enqueue_chunks(connection: redis.Redis, plan: Plan, indexes: Any) -> int:
    """Enqueue the chunk jobs of `indexes` (job ids from the rebuild id and index)."""
    queue = Queue(keys.REBUILD_QUEUE, connection=connection)
    jobs = [
        Queue.prepare_data(
            keys.JOB_REBUILD_CHUNK,
            (plan.rebuild_id, index),
            job_id=rebuild_plan.chunk_job_id(plan.rebuild_id, index),
            timeout=CHUNK_JOB_TIMEOUT,
            description=f"full rebuild {plan.rebuild_id}: chunk {index + 1} of {plan.chunks}",
        )
        for index in indexes
    ]
    with connection.pipeline() as pipeline:
        queue.enqueue_many(jobs, pipeline=pipeline)
        pipeline.execute()
    return len(jobs)


def rebuild_chunk(rebuild_id: str, index: int) -> dict[str, Any]:
    """Write one chunk of entry ids (the RQ job); the last chunk done finalizes."""
    connection = redis_connection()
    plan = rebuild_plan.read_plan(connection)
    summary: dict[str, Any] = {"rebuild_id": rebuild_id, "chunk": index}
    if plan is None or plan.rebuild_id != rebuild_id or plan.finished:
        log.info("chunk %s of rebuild %s: rebuild finished or replaced", index, rebuild_id)
        return {**summary, "skipped": "not the current rebuild"}
    if rebuild_plan.is_done(connection, index):
        return {**summary, "skipped": "already done"}
    started = time.monotonic()
    low, high = plan.bounds(index)
    conditions = [content_columns.id >= low]
    if high is not None:
        conditions.append(content_columns.id < high)
    slugs = campaign_slugs()
    counts = redis_writes.WriteCounts()
    entries = 0
    for rows in entry_chunks(*conditions, chunk_size=PAGE_ROWS):
        if any(row.campaign_id not in slugs for row in rows):
            slugs = campaign_slugs()  # a campaign created since this job started
        counts.add(write_rows(connection, slugs, rows))
        entries += len(rows)
        if _replaced(connection, rebuild_id):
            log.warning("chunk %s of rebuild %s: a newer rebuild started", index, rebuild_id)
            return {**summary, "skipped": "a newer rebuild started"}
    db.session.rollback()
    record = {
        "worker": _worker_name(),
        "entries": entries,
        "seconds": round(time.monotonic() - started, 3),
    }
    recorded = rebuild_plan.record_chunk(
        connection, rebuild_id, index, record, counts.written, counts.stale, REBUILD_LOCK_TTL
    )
    log.info(
        "rebuild %s chunk %s/%s (ids %s-%s): %s entries, %s written: %s",
        rebuild_id,
        index + 1,
        plan.chunks,
        low,
        high or "",
        entries,
        counts.written,
        recorded.name.lower(),
    )
    if recorded is Recorded.LAST:
        finalize(connection, plan)
    return {**summary, **record, "written": counts.written, "recorded": recorded.name.lower()}


def _replaced(connection: redis.Redis, rebuild_id: str) -> bool:
    """Extend the lock if this rebuild holds it; True if a newer rebuild does.

    A lock that expired is left for the sweeper to take back (resume_rebuild):
    a job running again after the rebuild finished must not hold it.
    """
    if redis_writes.extend_lock(connection, keys.REBUILD_LOCK, rebuild_id, REBUILD_LOCK_TTL):
        return False
    holder = connection.get(keys.REBUILD_LOCK)
    return holder is not None and holder.decode() != rebuild_id


def _worker_name() -> str:
    job = get_current_job()
    if job is not None and job.worker_name:
        return job.worker_name
    return f"{socket.gethostname()}.{os.getpid()}"


def finalize(connection: redis.Redis, plan: Plan) -> dict[str, Any] | None:
    """Set READY with the rebuild's report, then mark the plan finished; None if a newer
    rebuild replaced the plan.

    Outbox events still pending are left to the drainers: an event whose
    transaction committed after a chunk read its entry is not in Redis yet,
    and marking it published here would lose it. Publishing the others again
    costs compare-and-set no-ops.

    Called by the one job that recorded the last chunk (rebuild_plan.Recorded.LAST).
    Every step is idempotent, so a finalizer that died is run again by the
    sweeper once the lock has expired. READY comes before `finished_at`: a
    sweeper never sees a finished plan without READY and starts another build.
    """
    if not redis_writes.take_lock(connection, keys.REBUILD_LOCK, plan.rebuild_id, REBUILD_LOCK_TTL):
        return None
    final = rebuild_plan.read_plan(connection)
    if final is None or final.rebuild_id != plan.rebuild_id or final.finished:
        return None
    finished_at = time.time()
    workers = {record["worker"] for record in rebuild_plan.done_chunks(connection).values()}
    report = {
        "built_at": utcnow().isoformat(),
        "rebuild_id": final.rebuild_id,
        "entries": final.entries,
        "written": final.written,
        "stale": final.stale,
        "campaigns": final.campaigns,
        "api_keys": final.api_keys,
        "chunks": final.chunks,
        "workers": len(workers),
        "seconds": round(finished_at - final.started_at, 3),
    }
    report_json = json.dumps(report)
    # Just built from the database: the next periodic reconcile is due an interval from now.
    connection.set(keys.RECONCILE_LOCK, final.rebuild_id, ex=RECONCILE_INTERVAL)
    redis_writes.mark_ready(connection, report_json)
    rebuild_plan.finish(connection, final.rebuild_id, finished_at, report_json)
    log.info("full rebuild done: %s", report)
    return report


def resume_rebuild(connection: redis.Redis, plan: Plan) -> bool:
    """Keep an unfinished plan going: take its lock back if it expired (nothing
    progressed for REBUILD_LOCK_TTL) and finalize it if every chunk is done.

    False when another rebuild holds the lock (it is replacing this plan) or
    the plan finished meanwhile.
    """
    holder = connection.get(keys.REBUILD_LOCK)
    if holder is not None:
        return holder.decode() == plan.rebuild_id
    if not connection.set(keys.REBUILD_LOCK, plan.rebuild_id, nx=True, ex=REBUILD_LOCK_TTL):
        return False
    current = rebuild_plan.read_plan(connection)
    if current is None or current.rebuild_id != plan.rebuild_id or current.finished:
        # It finished (which frees the lock) since `plan` was read.
        redis_writes.release_lock(connection, keys.REBUILD_LOCK, plan.rebuild_id)
        return False
    plan = current
    log.warning(
        "full rebuild %s stalled (%s of %s chunks done): resuming it from its plan",
        plan.rebuild_id,
        plan.chunks_done,
        plan.chunks,
    )
    if plan.chunks_done >= plan.chunks:
        finalize(connection, plan)
    return True


def progress(connection: redis.Redis) -> dict[str, Any]:
    """The current or last rebuild's plan and progress ({} if none); `finished` once
    it has set READY."""
    plan = rebuild_plan.read_plan(connection)
    return {} if plan is None else {**dataclasses.asdict(plan), "finished": plan.finished}


def reconcile(reason: str = "on demand") -> dict[str, int]:
    """Repair every Redis entry and config that differs from the database.

    The report is also stored under keys.RECONCILE_REPORT for the admin.
    """
    connection = redis_connection()
    started = time.monotonic()
    snapshot = redis_writes.next_snapshot(connection)
    report: Counter[str] = Counter()
    report["campaign_configs_written"] = publish_campaigns(connection, snapshot)
    publish_api_keys(connection, snapshot)
    slugs = campaign_slugs()
    # One walk in primary-key order: a per-campaign filter would make every
    # keyset page scan the campaign's index and sort.
    for rows in entry_chunks(chunk_size=RECONCILE_CHUNK):
        _reconcile_rows(connection, slugs, rows, report)
    for campaign_id, slug in sorted(slugs.items()):
        _remove_orphans(connection, campaign_id, slug, report)
    published = {slug.decode() for slug in connection.hkeys(keys.CAMPAIGNS)}
    for slug in sorted(published - set(slugs.values())):
        _remove_orphans(connection, None, slug, report)
    report["repaired"] = sum(
        report[name] for name in ("missing", "outdated", "wrong_kind", "ahead", "orphans")
    )
    result = {name: report[name] for name in sorted(report)}
    log.info("reconcile (%s): %s", reason, result)
    store_report(connection, reason, result, time.monotonic() - started)
    return result


def store_report(
    connection: redis.Redis, reason: str, counts: dict[str, int], seconds: float
) -> None:
    """Keep the last reconcile's report where the admin home page reads it."""
    report = {
        "finished_at": utcnow().isoformat(),
        "reason": reason,
        "seconds": round(seconds, 3),
        "counts": counts,
    }
    connection.set(keys.RECONCILE_REPORT, json.dumps(report))


def _reconcile_rows(
    connection: redis.Redis, slugs: dict[int, str], rows: list[Row], report: Counter[str]
) -> None:
    entry_keys = [keys.entry_key(slugs[row.campaign_id], row.user_id) for row in rows]
    states = redis_writes.entry_states(connection, entry_keys)
    report["entries_checked"] += len(rows)
    for row, (stored, body_length) in zip(rows, states, strict=True):
        if stored is None:
            problem = "missing"
        elif stored < row.version:
            problem = "outdated"
        elif stored > row.version:
            # Usually a change committed after this chunk was read and already
            # published; only a database that went back in time stays behind.
            row = _current_row(row.id) or row
            if stored <= row.version:
                continue
            problem = "ahead"
        elif bool(row.deleted) != (body_length == 0):
            problem = "wrong_kind"
        else:
            continue
        slug = slugs[row.campaign_id]
        key = keys.entry_key(slug, row.user_id)
        if redis_writes.repair_entry(connection, key, stored, entry_write(slug, row)):
            report[problem] += 1


def _current_row(entry_id: int) -> Row | None:
    return db.session.execute(select(*ENTRY_COLUMNS).where(content_columns.id == entry_id)).first()


def _remove_orphans(
    connection: redis.Redis, campaign_id: int | None, slug: str, report: Counter[str]
) -> None:
    """Delete Redis entries of `slug` that have no database row."""
    batch: list[str] = []
    for raw_key in connection.scan_iter(match=keys.entry_key_pattern(slug), count=1000):
        batch.append(raw_key.decode())
        if len(batch) >= RECONCILE_CHUNK:
            _remove_orphan_batch(connection, campaign_id, batch, report)
            batch = []
    if batch:
        _remove_orphan_batch(connection, campaign_id, batch, report)


def _remove_orphan_batch(
    connection: redis.Redis,
    campaign_id: int | None,
    redis_keys: list[str],
    report: Counter[str],
) -> None:
    user_ids = [keys.entry_user_id(key) for key in redis_keys]
    known: set[str] = set()
    if campaign_id is not None:
        known = set(
            db.session.execute(
                select(content_columns.user_id).where(
                    content_columns.campaign_id == campaign_id,
                    one_of(content_columns.user_id, user_ids),
                )
            ).scalars()
        )
    for key, user_id in zip(redis_keys, user_ids, strict=True):
        if user_id in known:
            continue
        raw_version = connection.hget(key, keys.ENTRY_VERSION_FIELD)
        stored = None if raw_version is None else int(raw_version)
        if stored is not None and redis_writes.repair_entry(connection, key, stored, None):
            report["orphans"] += 1
