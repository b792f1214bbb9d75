"""The sweeper: a thread in every worker process that keeps Redis whole and bulk jobs going.

Outbox events need no sweeping: the drainers (workers/drain.py) poll for
whatever is unpublished.


Every couple of seconds one process in the cluster (the holder of
keys.SWEEPER_LOCK) starts a full rebuild when the ready marker is gone
(docs/operations.md) and keeps it going (chunk jobs lost with a worker are enqueued
again, a stalled rebuild is resumed from its plan), forgets set-aside
entry versions that a later one replaced, re-enqueues the staging of
stored import bodies whose job was lost or died with its worker (staging
is idempotent), opens the change request of an API import staged for
approval whose worker stopped first, deletes import bodies
that never arrived whole (uploads.ABANDONED_AFTER), drops `Idempotency-Key`
answers older than a day, and runs reconcile every
RECONCILE_INTERVAL and right after Redis restarted (a new INFO run_id: an
append-only file can lose its last second of writes) (docs/operations.md). A second
thread keeps the RQ worker's heartbeat going even while a sweep runs a long
reconcile.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from datetime import timedelta

import redis
from flask import Flask
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, ScheduledJobRegistry
from rq.utils import utcparse
from rq.worker import BaseWorker
from sqlalchemy import delete, inspect, select

from ccadmin import keys
from ccadmin.approvals import workflow
from ccadmin.extensions import db
from ccadmin.imports import uploads
from ccadmin.models import ContentEntry, OutboxEvent, PublishFailure
from ccadmin.models.idempotency import forget_expired
from ccadmin.models.types import utcnow
from ccadmin.publishing import rebuild_plan
from workers import redis_writes
from workers.publish import queue_connection, redis_connection
from workers.rebuild import (
    RECONCILE_INTERVAL,
    RebuildInProgress,
    enqueue_chunks,
    reconcile,
    resume_rebuild,
    start_rebuild,
)

log = logging.getLogger(__name__)

SWEEP_INTERVAL = 2.0
# Idempotency-Key answers are kept a day: dropping the expired ones every ten
# minutes is plenty, and spares the database a write every sweep.
FORGET_INTERVAL = 600.0
SWEEPER_LOCK_TTL = 10
# A stored import body whose staging job has not started for this long has
# lost it (after-commit enqueues take milliseconds).
STALE_AFTER = 3.0
# A retry scheduled this far in the past has no scheduler to run it.
OVERDUE_RETRY = 60.0
SWEEP_BATCH = 1_000
_WAITING = {JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.READY_TO_ENQUEUE}


def worker_is_dead(connection: redis.Redis, worker_name: str | None) -> bool:
    """True when an RQ worker is gone, shut down, or silent for keys.WORKER_SILENCE_SECONDS;
    a worker on this host is also dead as soon as its process is gone."""
    if not worker_name:
        return True
    worker_key = BaseWorker.redis_worker_namespace_prefix + worker_name
    last_heartbeat, death, hostname, pid = connection.hmget(
        worker_key, "last_heartbeat", "death", "hostname", "pid"
    )
    if death is not None or last_heartbeat is None:
        return True
    if hostname is not None and pid and hostname.decode() == socket.gethostname():
        if not process_alive(int(pid)):
            return True
    silence = utcnow() - utcparse(last_heartbeat.decode())
    return silence.total_seconds() > keys.WORKER_SILENCE_SECONDS


def process_alive(pid: int) -> bool:
    """True while a process with this id exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def needs_enqueue(connection: redis.Redis, job: Job | None) -> bool:
    """Whether an unpublished event's job can no longer be counted on to run."""
    if job is None:
        return True
    status = job.get_status(refresh=False)
    if status in _WAITING:
        return False
    if status == JobStatus.STARTED:
        return worker_is_dead(connection, job.worker_name)
    if status == JobStatus.SCHEDULED:
        registry = ScheduledJobRegistry(job.origin, connection=connection)
        try:
            scheduled_at = registry.get_scheduled_time(job)
        except NoSuchJobError:  # no longer in the registry: nothing will run it
            return True
        return (utcnow() - scheduled_at).total_seconds() > OVERDUE_RETRY
    # Failed (retries exhausted), stopped, canceled, or finished without
    # marking the event: run it again, publishing is idempotent.
    return True


def clear_superseded_failures() -> int:
    """Forget set-aside entry versions that a later version of the entry replaced.

    A later version was either published or set aside in its turn (which
    replaces the row), so what is left here is what still needs a person.
    """
    superseded = (
        select(PublishFailure.content_entry_id)
        .join(ContentEntry, ContentEntry.id == PublishFailure.content_entry_id)
        .where(ContentEntry.version > PublishFailure.version)
    )
    cleared = db.session.execute(
        delete(PublishFailure).where(PublishFailure.content_entry_id.in_(superseded))
    ).rowcount
    db.session.commit()
    return cleared


def requeue_ingests(connection: redis.Redis, older_than: float = STALE_AFTER) -> list[int]:
    """Enqueue the staging of every stored import body whose job is lost or died."""
    waiting = uploads.waiting_ingests(older_than, SWEEP_BATCH)
    if not waiting:
        db.session.rollback()
        return []
    failed = FailedJobRegistry(keys.IMPORT_QUEUE, connection=connection)
    due = []
    for content_import in waiting:
        # The list is a snapshot: staging may have finished since, and the
        # marketer's apply enqueued under the same job id. Locking the row
        # while it still waits makes the job's status read below current, and
        # keeps a re-enqueue from replacing a job queued after it.
        if not uploads.hold_waiting(content_import.id):
            db.session.rollback()
            continue
        job = Job.fetch_many([content_import.job_id], connection=connection)[0]
        if needs_enqueue(connection, job):
            failed.remove(content_import.job_id)
            if uploads.enqueue_ingest(content_import, connection):
                due.append(content_import.id)
        db.session.commit()
    if due:
        log.info("re-enqueued the staging of imports %s", due)
    return due


def open_missing_requests(older_than: float = STALE_AFTER) -> list[int]:
    """Open the change request of API imports staged for approval whose worker stopped
    before opening it; the ids of the imports."""
    waiting = workflow.staged_without_request(timedelta(seconds=older_than), SWEEP_BATCH)
    db.session.rollback()
    opened = [item.id for item in waiting if workflow.ask_for_staged(item) is not None]
    if opened:
        log.info("opened the change requests of staged imports %s", opened)
    return opened


def drop_abandoned_uploads(older_than: float = uploads.ABANDONED_AFTER) -> list[int]:
    """Delete imports whose body stopped arriving (a web process died mid-upload)."""
    dropped = uploads.delete_abandoned(older_than, SWEEP_BATCH)
    if dropped:
        log.warning("deleted imports whose upload never finished: %s", dropped)
    return dropped


def database_ready() -> bool:
    """True once migrations have created the tables the worker reads."""
    return inspect(db.engine).has_table(OutboxEvent.__tablename__)


def ensure_ready(connection: redis.Redis) -> dict | None:
    """Keep a full rebuild in progress going, or start one if the ready marker is missing.

    Returns the progress of the rebuild this call started, else None. A
    rebuild in progress gets its lost chunks enqueued again, and is resumed
    if its lock expired (rebuild.resume_rebuild).
    """
    if not database_ready():
        return None
    plan = rebuild_plan.read_plan(connection)
    if plan is not None and not plan.finished:
        if resume_rebuild(connection, plan):
            requeue_rebuild_chunks(queue_connection(), plan)
        return None
    if connection.exists(keys.READY):
        return None
    log.warning("Redis has no ready marker: starting a full rebuild")
    try:
        return start_rebuild()
    except RebuildInProgress:
        log.info("a full rebuild is already running elsewhere")
        return None


def requeue_rebuild_chunks(connection: redis.Redis, plan: rebuild_plan.Plan) -> list[int]:
    """Enqueue every chunk of an unfinished rebuild that is not done and whose job is lost."""
    store_connection = redis_connection()
    done = rebuild_plan.done_chunks(store_connection)
    pending = [index for index in range(plan.chunks) if index not in done]
    if not pending:
        return []
    job_ids = [rebuild_plan.chunk_job_id(plan.rebuild_id, index) for index in pending]
    jobs = Job.fetch_many(job_ids, connection=connection)
    lost = [
        index for index, job in zip(pending, jobs, strict=True) if needs_enqueue(connection, job)
    ]
    # A job that finished since the chunks were read has recorded its chunk.
    done = rebuild_plan.done_chunks(store_connection)
    due = [index for index in lost if index not in done]
    if not due:
        return []
    failed = FailedJobRegistry(keys.REBUILD_QUEUE, connection=connection)
    for index in due:
        failed.remove(rebuild_plan.chunk_job_id(plan.rebuild_id, index))
    enqueue_chunks(connection, plan, due)
    log.info(
        "re-enqueued %s lost chunks of full rebuild %s: %s", len(due), plan.rebuild_id, due[:20]
    )
    return due


class Sweeper(threading.Thread):
    """The sweeper loop, one per worker process; one process at a time does the work."""

    def __init__(
        self, app: Flask, worker: BaseWorker | None = None, interval: float = SWEEP_INTERVAL
    ):
        super().__init__(name="sweeper", daemon=True)
        self.app = app
        self.worker = worker
        self.interval = interval
        self.token = uuid.uuid4().hex
        self.next_forget = 0.0
        self.stopping = threading.Event()
        self._heartbeat = threading.Thread(target=self._beat, name="heartbeat", daemon=True)

    def start(self) -> None:
        """Start the sweep loop and the heartbeat thread."""
        super().start()
        self._heartbeat.start()

    def stop(self) -> None:
        """Finish the current sweep and stop; gives the lock back."""
        self.stopping.set()

    def _beat(self) -> None:
        while not self.stopping.is_set():
            try:
                with self.app.app_context():
                    self.heartbeat(queue_connection())
            except Exception:
                log.exception("heartbeat failed")
            self.stopping.wait(keys.WORKER_HEARTBEAT_SECONDS)

    def heartbeat(self, connection: redis.Redis) -> None:
        """Say this process is alive (see worker_is_dead): the job runs in the main thread.

        Only once RQ has registered the worker: a hash written before that
        would make RQ refuse to start.
        """
        worker = self.worker
        if worker is not None and connection.exists(worker.key):
            worker.heartbeat()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                with self.app.app_context():
                    self.sweep()
            except Exception:
                log.exception("sweep failed; retrying in %s s", self.interval)
            self.stopping.wait(self.interval)
        try:
            with self.app.app_context():
                redis_writes.release_lock(redis_connection(), keys.SWEEPER_LOCK, self.token)
        except redis.RedisError:
            pass

    def sweep(self) -> None:
        """One round, if this process holds the lock: readiness, lost jobs, reconcile."""
        connection = redis_connection()
        if not redis_writes.take_lock(connection, keys.SWEEPER_LOCK, self.token, SWEEPER_LOCK_TTL):
            return
        run_id = redis_writes.redis_run_id(connection)
        # A rebuild records the run_id it builds and, when done, schedules the
        # next reconcile itself (workers/rebuild.py).
        ensure_ready(connection)
        clear_superseded_failures()
        requeue_ingests(queue_connection())
        open_missing_requests()
        drop_abandoned_uploads()
        if time.monotonic() >= self.next_forget:
            forget_expired()
            self.next_forget = time.monotonic() + FORGET_INTERVAL
        if not connection.exists(keys.READY):
            return
        seen_run_id = connection.get(keys.REDIS_RUN_ID)
        if seen_run_id is None or seen_run_id.decode() != run_id:
            log.warning("Redis restarted (run_id %s): reconciling now", run_id)
            reconcile(reason="Redis restarted")
            connection.set(keys.REDIS_RUN_ID, run_id)
            connection.set(keys.RECONCILE_LOCK, self.token, ex=RECONCILE_INTERVAL)
        elif connection.set(keys.RECONCILE_LOCK, self.token, nx=True, ex=RECONCILE_INTERVAL):
            reconcile(reason="periodic")
