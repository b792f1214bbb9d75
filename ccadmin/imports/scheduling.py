"""Content changes saved now and applied by the worker at a chosen time.

A scheduled change is a row in `scheduled_change` plus an RQ job enqueued at
its time ("workers.imports.apply_scheduled_change", carrying the row's id) on
keys.IMPORT_QUEUE; the worker's scheduler moves it to the queue when due. The
row's status is what counts: a cancelled change finds itself cancelled and
does nothing, even if its job could not be removed from Redis.

A change names the fields it sets and the fields it clears; every other field
keeps the value the entry has when the change runs, so an edit made between
scheduling and running is not lost.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import redis
from sqlalchemy import select

from ccadmin import keys, publishing
from ccadmin.content.schema import REQUIRED_FIELD, user_id_error, validate_fields
from ccadmin.extensions import db
from ccadmin.imports import staging
from ccadmin.imports.changesets import ChangeSetError, delete_scheduled_job, import_queue
from ccadmin.models import Campaign, ContentEntry, ScheduledChange
from ccadmin.models.schedule import (
    STATUS_CANCELLED,
    STATUS_DONE,
    STATUS_FAILED,
    STATUS_PENDING,
)
from ccadmin.models.types import utcnow

log = logging.getLogger(__name__)

JOB_TTL = 86_400
# A change that could not be applied stays listed on the tools page this long.
FAILURES_SHOWN_FOR = timedelta(days=7)


class ScheduleProblem(ChangeSetError):
    """The change cannot be scheduled; `errors` says why, by form input."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{name}: {message}" for name, message in errors.items()))
        self.errors = errors


def merged_fields(
    current: Mapping[str, str], values: Mapping[str, str], clear: Iterable[str]
) -> dict[str, str]:
    """The entry's fields once a change has set `values` and emptied `clear`."""
    merged = {**current, **values}
    for name in clear:
        merged.pop(name, None)
    return merged


def current_fields(campaign_id: int, user_id: str, lock: bool = False) -> dict[str, str]:
    """The user's fields now ({} without content); `lock` holds the row until commit."""
    query = select(ContentEntry).where(
        ContentEntry.campaign_id == campaign_id, ContentEntry.user_id == user_id
    )
    if lock:
        query = query.with_for_update(of=ContentEntry)
    entry = db.session.scalars(query).first()
    return {} if entry is None or entry.deleted else dict(entry.fields or {})


def check_change(
    campaign: Campaign, user_id: str, values: Mapping[str, str], clear: Iterable[str]
) -> tuple[dict[str, str], list[str]]:
    """The clean fields to set and the fields to clear; ScheduleProblem if not acceptable."""
    problem = user_id_error(user_id)
    if problem:
        raise ScheduleProblem({"user_id": problem})
    names = set(campaign.field_names)
    clear_list = sorted(set(clear))
    errors = {
        name: "Not a field of this campaign."
        for name in [*values, *clear_list]
        if name not in names
    }
    if REQUIRED_FIELD in clear_list:
        errors[REQUIRED_FIELD] = "A message is required; it cannot be cleared."
    for name in clear_list:
        if values.get(name, "").strip():
            errors[name] = 'Both a new value and "clear": choose one.'
    if errors:
        raise ScheduleProblem(errors)
    clean, errors = validate_fields(campaign.field_schema, values, require_message=False)
    if errors:
        raise ScheduleProblem(errors)
    if not clean and not clear_list:
        raise ScheduleProblem(
            {"fields": 'Nothing to change: type a new value, or tick "clear", for a field.'}
        )
    merged = merged_fields(current_fields(campaign.id, user_id), clean, clear_list)
    _, errors = validate_fields(campaign.field_schema, merged)
    if errors:
        raise ScheduleProblem(errors)
    return clean, clear_list


def schedule_change(
    campaign: Campaign,
    user_id: str,
    values: Mapping[str, str],
    clear: Iterable[str],
    run_at: datetime,
    actor: str,
    connection: redis.Redis,
) -> ScheduledChange:
    """Check the change now, store it, and enqueue its job at `run_at`.

    Only the fields in `values` (set) and `clear` (emptied) change when it
    runs; blank values are not part of the change.
    """
    clean, clear_list = check_change(campaign, user_id, values, clear)
    change = ScheduledChange(
        campaign_id=campaign.id,
        user_id=user_id,
        fields=clean,
        clear_fields=clear_list,
        run_at=run_at,
        created_by=actor,
    )
    db.session.add(change)
    db.session.commit()
    try:
        import_queue(connection).enqueue_at(
            run_at,
            keys.JOB_APPLY_SCHEDULED_CHANGE,
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


def recent_failures(campaign_id: int) -> list[ScheduledChange]:
    """The campaign's changes that could not be applied lately, newest first."""
    return list(
        db.session.scalars(
            select(ScheduledChange)
            .where(
                ScheduledChange.campaign_id == campaign_id,
                ScheduledChange.status == STATUS_FAILED,
                ScheduledChange.done_at >= utcnow() - FAILURES_SHOWN_FOR,
            )
            .order_by(ScheduledChange.done_at.desc())
        )
    )


@dataclass(frozen=True)
class FieldDiff:
    """One field a scheduled change touches: its value now and after (None: cleared)."""

    field: str
    old: str | None
    new: str | None


def change_diffs(campaign_id: int, changes: list[ScheduledChange]) -> dict[int, list[FieldDiff]]:
    """change id -> what it will change, against each entry's fields now."""
    users = list({change.user_id for change in changes})
    current = staging.current_entries(campaign_id, users)
    diffs = {}
    for change in changes:
        entry = current.get(change.user_id)
        fields = {} if entry is None or entry.deleted else entry.fields or {}
        diffs[change.id] = [
            *(FieldDiff(name, fields.get(name), value) for name, value in change.fields.items()),
            *(FieldDiff(name, fields.get(name), None) for name in change.clear_fields or []),
        ]
    return diffs


def apply_scheduled_change(change_id: int) -> dict[str, object]:
    """Apply one due change as a normal edit by whoever scheduled it (the worker's job).

    The change is merged into the entry's fields as they are now (the entry
    locked until commit), and the result is checked against the schema again:
    the schema or the entry may have changed since the change was scheduled.
    """
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
    now = {} if entry is None or entry.deleted else dict(entry.fields or {})
    merged = merged_fields(now, change.fields, change.clear_fields or [])
    clean, errors = validate_fields(change.campaign.field_schema, merged)
    change.done_at = utcnow()
    if errors:
        change.status = STATUS_FAILED
        change.error = "; ".join(f"{name}: {message}" for name, message in errors.items())
        db.session.commit()
        log.warning("scheduled change %s not applied: %s", change_id, change.error)
        return {"change_id": change_id, "failed": change.error}
    if entry is None:
        entry = ContentEntry(campaign_id=change.campaign_id, user_id=change.user_id)
    action = "create" if before is None or before["deleted"] else "update"
    entry.fields = clean
    publishing.record_content_change(
        entry, change.created_by, action, before, via=f"scheduled change #{change.id}"
    )
    change.status = STATUS_DONE
    db.session.commit()
    return {"change_id": change_id, "version": entry.version}
