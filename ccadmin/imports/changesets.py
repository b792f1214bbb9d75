"""Starting, scheduling, cancelling and undoing change sets (the parts the admin calls).

The apply itself runs in the worker: "workers.imports.apply_import" on
keys.IMPORT_QUEUE, carrying the change set's id (ccadmin never imports workers).
"""

from __future__ import annotations

import logging
from datetime import datetime

import redis
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job
from sqlalchemy import case, func, insert, literal, or_, select, update

from ccadmin import keys
from ccadmin.extensions import db
from ccadmin.imports import staging
from ccadmin.models import Campaign, ContentImport, ImportRow
from ccadmin.models.imports import (
    KIND_IMPORT,
    KIND_LABELS,
    KIND_ROLL_FORWARD,
    KIND_ROLLBACK,
    MODE_ALL,
    MODE_VALID_ONLY,
    OUTCOME_CHANGED,
    OUTCOME_DELETED,
    OUTCOME_NEW,
    STATUS_APPLIED,
    STATUS_APPLYING,
    STATUS_FAILED,
    STATUS_QUEUED,
    STATUS_READY,
    STATUS_SCHEDULED,
    STATUS_VALIDATING,
    UNDO_KINDS,
    WRITING_OUTCOMES,
)

log = logging.getLogger(__name__)

# A million rows take a couple of minutes; the timeout only stops a stuck job.
APPLY_JOB_TIMEOUT = 3600
# Finished jobs (and their progress) stay readable by the page for a day.
JOB_RESULT_TTL = 86_400

row_table = ImportRow.__table__


class ChangeSetError(ValueError):
    """The change set cannot do what was asked; the message says why."""


def import_queue(connection: redis.Redis) -> Queue:
    """The RQ queue of bulk jobs."""
    return Queue(keys.IMPORT_QUEUE, connection=connection)


def hold(import_id: int, statuses: tuple[str, ...]) -> bool:
    """Lock a change set's row until the caller's commit, if its status is one of
    `statuses`; False (nothing locked) otherwise.

    An update rather than SELECT ... FOR UPDATE, so SQLite takes its write
    lock too.
    """
    held = db.session.execute(
        update(ContentImport)
        .where(ContentImport.id == import_id, ContentImport.status.in_(statuses))
        .values(status=ContentImport.status)
        .execution_options(synchronize_session=False)
    )
    return held.rowcount == 1


def new_import(
    campaign: Campaign, filename: str, actor: str, status: str = STATUS_VALIDATING
) -> ContentImport:
    """A committed import row, before its file is read."""
    content_import = ContentImport(
        kind=KIND_IMPORT,
        campaign_id=campaign.id,
        filename=filename[:255],
        status=status,
        created_by=actor,
        report={},
        batch_event_ids=[],
    )
    db.session.add(content_import)
    db.session.commit()
    return content_import


def _enqueue(content_import: ContentImport, connection: redis.Redis, run_at: datetime | None):
    queue = import_queue(connection)
    options = {
        "job_id": content_import.job_id,
        "job_timeout": APPLY_JOB_TIMEOUT,
        "result_ttl": JOB_RESULT_TTL,
        "failure_ttl": JOB_RESULT_TTL,
    }
    if run_at is None:
        return queue.enqueue(keys.JOB_APPLY_IMPORT, content_import.id, **options)
    return queue.enqueue_at(run_at, keys.JOB_APPLY_IMPORT, content_import.id, **options)


def check_applicable(content_import: ContentImport, mode: str) -> None:
    """Refuse (ChangeSetError) a change set that cannot be applied in `mode`."""
    if content_import.status != STATUS_READY:
        raise ChangeSetError(f"This change set is {content_import.status}; it cannot be applied.")
    if mode not in (MODE_ALL, MODE_VALID_ONLY):
        raise ChangeSetError("Choose all-or-nothing or valid rows only.")
    if mode == MODE_ALL and content_import.invalid_rows:
        raise ChangeSetError(
            f"{content_import.invalid_rows} rows are invalid, so all-or-nothing applies "
            "nothing. Fix the file and upload it again, or choose valid rows only."
        )


def mark_queued(
    content_import: ContentImport, mode: str, actor: str, run_at: datetime | None = None
) -> None:
    """Check a previewed change set can be applied in `mode`; mark it queued (committed).

    The caller runs or enqueues the apply: start_apply enqueues it, the
    worker's import job (which staged the body itself) runs it at once.
    """
    check_applicable(content_import, mode)
    content_import.mode = mode
    content_import.applied_by = actor
    content_import.status = STATUS_SCHEDULED if run_at else STATUS_QUEUED
    content_import.scheduled_at = run_at
    db.session.commit()


def start_apply(
    content_import: ContentImport,
    mode: str,
    actor: str,
    connection: redis.Redis,
    run_at: datetime | None = None,
) -> None:
    """Queue (or schedule) a previewed change set; refuses what cannot be applied."""
    mark_queued(content_import, mode, actor, run_at)
    try:
        _enqueue(content_import, connection, run_at)
    except (redis.RedisError, OSError) as error:
        log.warning("could not enqueue change set %s: %s", content_import.id, error)
        content_import.status = STATUS_READY
        content_import.scheduled_at = None
        db.session.commit()
        raise ChangeSetError(
            "The job queue is unreachable; nothing was applied. Try again."
        ) from error


def cancel_schedule(content_import: ContentImport, connection: redis.Redis) -> None:
    """Take a scheduled change set off the schedule; it goes back to previewed."""
    if content_import.status != STATUS_SCHEDULED:
        raise ChangeSetError("Only a scheduled change set can be cancelled.")
    # The status is what the job checks, so a job left behind in Redis
    # (unreachable now) finds nothing to do when it runs.
    content_import.status = STATUS_READY
    content_import.scheduled_at = None
    db.session.commit()
    delete_scheduled_job(content_import.job_id, connection)


def delete_scheduled_job(job_id: str, connection: redis.Redis) -> None:
    """Drop a scheduled job from Redis; one left behind finds nothing to do when it runs."""
    try:
        Job.fetch(job_id, connection=connection).delete()
    except NoSuchJobError:
        pass
    except (redis.RedisError, OSError) as error:
        log.warning("scheduled job %s left in Redis: %s", job_id, error)


def check_undoable(source: ContentImport, stalled: bool = False) -> None:
    """Refuse (ChangeSetError) a change set that cannot be rolled back now."""
    allowed = STATUS_APPLYING if stalled else STATUS_APPLIED
    if source.status != allowed or source.rolled_back_by_id:
        raise ChangeSetError("Only an applied change set that was not rolled back can be.")


def create_rollback(
    source: ContentImport, actor: str, automatic: bool = False, stalled: bool = False
) -> ContentImport:
    """A change set restoring every entry `source` wrote to its state before.

    Undoing a rollback is a roll forward: it re-applies what the rollback undid.

    Each row only writes if the entry still has the version `source` gave it;
    entries edited since are left alone (counted as conflicts). `stalled`
    undoes the committed part of an apply whose worker died.
    """
    if not automatic:
        check_undoable(source, stalled)
    if stalled:
        source.status = STATUS_FAILED
        source.error = "the worker applying it stopped; what it wrote was rolled back"
    kind = KIND_ROLL_FORWARD if source.kind == KIND_ROLLBACK else KIND_ROLLBACK
    rollback = ContentImport(
        kind=kind,
        campaign_id=source.campaign_id,
        source_import_id=source.id,
        filename=f"{KIND_LABELS[kind]} of #{source.id}",
        status=STATUS_QUEUED if automatic else STATUS_READY,
        mode=MODE_ALL,
        created_by=actor,
        applied_by=actor,
        report={},
        batch_event_ids=[],
    )
    db.session.add(rollback)
    db.session.flush()
    was_absent = or_(row_table.c.before_version.is_(None), row_table.c.before_deleted.is_(True))
    wrote_version = func.coalesce(row_table.c.before_version, 0) + 1
    db.session.execute(
        insert(row_table).from_select(
            [
                "import_id",
                "line",
                "user_id",
                "fields",
                "delete",
                "outcome",
                "expect_version",
                "before_version",
                "before_fields",
                "before_deleted",
            ],
            select(
                literal(rollback.id, row_table.c.import_id.type),
                row_table.c.line,
                row_table.c.user_id,
                row_table.c.before_fields,
                was_absent,
                # Restoring an entry `source` deleted brings it back: new.
                case(
                    (was_absent, OUTCOME_DELETED),
                    (row_table.c.delete.is_(True), OUTCOME_NEW),
                    else_=OUTCOME_CHANGED,
                ),
                wrote_version,
                wrote_version,
                row_table.c.fields,
                row_table.c.delete,
            ).where(
                row_table.c.import_id == source.id,
                row_table.c.outcome.in_(WRITING_OUTCOMES),
                row_table.c.line <= source.applied_through_line,
            ),
        )
    )
    staging.apply_counts(rollback, staging.count_outcomes(rollback.id))
    rollback.report = {"file_errors": [], "invalid": [], "diffs": []}
    source.rolled_back_by_id = rollback.id
    db.session.commit()
    return rollback


def forget_undo(undo: ContentImport) -> None:
    """A rollback (or roll forward) discarded before it ran: its source can be undone again."""
    if undo.kind not in UNDO_KINDS or undo.source_import_id is None:
        return
    source = db.session.get(ContentImport, undo.source_import_id)
    if source is not None and source.rolled_back_by_id == undo.id:
        source.rolled_back_by_id = None


def rollback_size(source: ContentImport) -> int:
    """Entries a rollback of `source` would restore (those it wrote)."""
    return db.session.execute(
        select(func.count()).where(
            row_table.c.import_id == source.id,
            row_table.c.outcome.in_(WRITING_OUTCOMES),
            row_table.c.line <= source.applied_through_line,
        )
    ).scalar_one()


def queue_rollback(
    source: ContentImport, actor: str, connection: redis.Redis, stalled: bool = False
) -> ContentImport:
    """Build the rollback of `source` and queue it for the worker."""
    rollback = create_rollback(source, actor, stalled=stalled)
    start_apply(rollback, MODE_ALL, actor, connection)
    return rollback
