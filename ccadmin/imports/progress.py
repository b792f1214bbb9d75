"""An import's progress as the admin page and the ingest API report it, and its apply job.

The apply runs in the worker (keys.JOB_APPLY_IMPORT); its job in Redis carries
the progress (`meta`), and the outbox says which of its batches are live.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import redis
from flask import current_app
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from sqlalchemy import func, select

from ccadmin.extensions import db
from ccadmin.models import ContentImport, OutboxEvent
from ccadmin.models.imports import STATUS_APPLIED, STATUS_APPLYING, STATUS_RECEIVED, STATUS_STAGING
from ccadmin.redis_client import get_redis

# Stored whole and waiting for the worker, or being staged by it: the page polls.
STAGING_STATUSES = (STATUS_RECEIVED, STATUS_STAGING)
# Job states after which a job will not run again by itself.
_DEAD_JOB_STATES = {JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED}
# What `<input type="datetime-local">` sends, with and without seconds.
RUN_AT_FORMATS = ("%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M")


def redis_connection() -> redis.Redis:
    """The web process's Redis client."""
    return get_redis(current_app.config["CCADMIN_SETTINGS"])


def parse_run_at(raw: str | None, future: bool = True) -> datetime | None:
    """A `datetime-local` value, read as UTC; None when empty.

    `future` (scheduling) refuses times already past; otherwise (going back
    to a past state) times still to come are refused.
    """
    if not raw or not raw.strip():
        return None
    moment = None
    for pattern in RUN_AT_FORMATS:
        try:
            moment = datetime.strptime(raw.strip(), pattern).replace(tzinfo=UTC)
            break
        except ValueError:
            continue
    if moment is None:
        raise ValueError("Enter the time as YYYY-MM-DD HH:MM (UTC).")
    if future and moment <= datetime.now(UTC):
        raise ValueError("The time is in the past; choose a later one.")
    if not future and moment >= datetime.now(UTC):
        raise ValueError("The time is still to come; choose a past one.")
    return moment


def apply_job(content_import: ContentImport) -> Job | None:
    """The change set's apply job, if Redis still knows it."""
    try:
        return Job.fetch(content_import.job_id, connection=redis_connection())
    except (NoSuchJobError, redis.RedisError, OSError):
        return None


def job_stalled(content_import: ContentImport, job: Job | None) -> bool:
    """True when an apply in progress has no job left to finish it (a killed worker)."""
    if content_import.status != STATUS_APPLYING:
        return False
    if job is None:
        return True
    return job.get_status(refresh=False) in _DEAD_JOB_STATES


def import_state(content_import: ContentImport) -> dict[str, Any]:
    """What the page's progress bar shows: status, rows staged or applied, batches live."""
    job = apply_job(content_import)
    progress = job.meta.get("progress") if job is not None else None
    staging = content_import.status in STAGING_STATUSES
    staged = (job.meta.get("staging") if job is not None and staging else None) or {}
    received = content_import.upload_bytes or 0
    if content_import.status == STATUS_APPLIED:
        percent = 100
    elif staging:
        # How much of the stored file the worker has read; 100 only once staged.
        percent = min(99, 100 * staged.get("bytes", 0) // received) if received else 0
    elif progress and progress.get("total"):
        percent = int(100 * progress["done"] / progress["total"])
    else:
        percent = 0
    event_ids = list(content_import.batch_event_ids or [])
    published = 0
    if event_ids:
        published = db.session.execute(
            select(func.count()).where(
                OutboxEvent.id.in_(event_ids), OutboxEvent.published_at.is_not(None)
            )
        ).scalar_one()
    return {
        "id": content_import.id,
        "status": content_import.status,
        "percent": percent,
        "done": (progress or {}).get("done", 0),
        "total": (progress or {}).get("total", 0),
        "written": content_import.written_rows,
        "batches": len(event_ids),
        "published_batches": published,
        "live": content_import.status == STATUS_APPLIED and published == len(event_ids),
        "error": content_import.error,
        "stalled": job_stalled(content_import, job),
        "staging": staging,
        "received_bytes": received,
        "staged_rows": staged.get("rows", 0),
        "staged_bytes": staged.get("bytes", 0),
    }
