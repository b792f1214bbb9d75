"""Content changes saved now and applied by the worker at a chosen time.

A scheduled change is a row in `scheduled_change` plus an RQ job enqueued at
its time ("workers.imports.apply_scheduled_change", carrying the row's id) on
keys.IMPORT_QUEUE; the worker's scheduler moves it to the queue when due. The
row's status is what counts: a cancelled change finds itself cancelled and
does nothing, even if its job could not be removed from Redis.
"""

from __future__ import annotations

import logging
from datetime import datetime

import redis
from sqlalchemy import select

from ccadmin import publishing
from ccadmin.content_schema import user_id_error, validate_fields
from ccadmin.extensions import db
from ccadmin.imports.changesets import ChangeSetError, delete_scheduled_job, import_queue
from ccadmin.models import Campaign, ContentEntry, ScheduledChange
from ccadmin.models.schedule import STATUS_CANCELLED, STATUS_DONE, STATUS_PENDING
from ccadmin.models.types import utcnow

log = logging.getLogger(__name__)

SCHEDULED_JOB = "workers.imports.apply_scheduled_change"
JOB_TTL = 86_400


def schedule_change(
    campaign: Campaign,
    user_id: str,
    values: dict[str, str],
    run_at: datetime,
    actor: str,
    connection: redis.Redis,
) -> ScheduledChange:
    """Validate the fields now, store the change, and enqueue its job at `run_at`."""
    problem = user_id_error(user_id)
    if problem:
        raise ChangeSetError(f"user_id: {problem}")
    clean, errors = validate_fields(campaign.field_schema, values)
    if errors:
        name, message = next(iter(errors.items()))
        raise ChangeSetError(f"{name}: {message}")
    change = ScheduledChange(
        campaign_id=campaign.id, user_id=user_id, fields=clean, run_at=run_at, created_by=actor
    )
    db.session.add(change)
    db.session.commit()
    try:
        import_queue(connection).enqueue_at(
            run_at,
            SCHEDULED_JOB,
            change.id,
            job_id=change.job_id,
            result_ttl=JOB_TTL,
            failure_ttl=JOB_TTL,
        )
    except (redis.RedisError, OSError) as error:
        db.session.delete(change)
        db.session.commit()
        raise ChangeSetError("The job queue is unreachable; nothing was scheduled.") from error
    return change


def cancel_change(change: ScheduledChange, actor: str, connection: redis.Redis) -> None:
    """Cancel a pending change; it will never be applied."""
    if change.status != STATUS_PENDING:
        raise ChangeSetError(f"This change is {change.status}; it cannot be cancelled.")
    change.status = STATUS_CANCELLED
    change.cancelled_by = actor
    change.done_at = utcnow()
    db.session.commit()
    delete_scheduled_job(change.job_id, connection)


def pending_changes(campaign_id: int) -> list[ScheduledChange]:
    """The campaign's changes still to be applied, soonest first."""
    return list(
        db.session.scalars(
            select(ScheduledChange)
            .where(
                ScheduledChange.campaign_id == campaign_id,
                ScheduledChange.status == STATUS_PENDING,
            )
            .order_by(ScheduledChange.run_at)
        )
    )


def apply_scheduled_change(change_id: int) -> dict[str, object]:
    """Apply one due change as a normal edit by whoever scheduled it (the worker's job)."""
    # FOR UPDATE OF the row itself: the eager campaign join may not be locked.
    change = db.session.get(ScheduledChange, change_id, with_for_update={"of": ScheduledChange})
    if change is None or change.status != STATUS_PENDING:
        db.session.rollback()
        return {"change_id": change_id, "skipped": None if change is None else change.status}
    entry = db.session.scalars(
        select(ContentEntry)
        .where(
            ContentEntry.campaign_id == change.campaign_id,
            ContentEntry.user_id == change.user_id,
        )
        .with_for_update(of=ContentEntry)
    ).first()
    before = None if entry is None else publishing.entry_snapshot(entry)
    if entry is None:
        entry = ContentEntry(campaign_id=change.campaign_id, user_id=change.user_id)
    action = "create" if before is None or before["deleted"] else "update"
    entry.fields = dict(change.fields)
    publishing.record_content_change(entry, change.created_by, action, before)
    change.status = STATUS_DONE
    change.done_at = utcnow()
    db.session.commit()
    return {"change_id": change_id, "version": entry.version}
