"""Apply a staged change set to the content, in transactions of bounded size.

Each batch is one transaction: the entries (locked, re-checked against what
the preview saw), one outbox event pointing at them, and the batch's mark on
the change set (`applied_through_line`); after its commit the batch is
published by the workers' bulk-lane drainers, which its commit wakes, while
the apply goes on with the next batch.
One audit event records the whole change set when it completes.

All-or-nothing across many transactions: the file was validated whole before
anything is written, so a batch fails only for outside reasons (database
gone, killed worker). When one does, the batches already committed are undone
at once by a rollback change set built from the rows' `before_*` columns:
each touched entry gets a new version holding its previous fields (or a
tombstone if it did not exist), published normally. Between the failure and
the undo, the committed part may be served for a few seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from rq.exceptions import ShutDownImminentException
from sqlalchemy import bindparam, func, select, text

from ccadmin import publishing
from ccadmin.extensions import db
from ccadmin.imports import bulk, staging
from ccadmin.imports.changesets import create_rollback
from ccadmin.models import ContentEntry, ContentImport, ImportRow
from ccadmin.models.imports import (
    OUTCOME_CHANGED,
    OUTCOME_CONFLICT,
    OUTCOME_DELETED,
    OUTCOME_INVALID,
    OUTCOME_NEW,
    OUTCOME_UNCHANGED,
    STATUS_APPLIED,
    STATUS_APPLYING,
    STATUS_FAILED,
    STATUS_QUEUED,
    STATUS_ROLLED_BACK,
    STATUS_SCHEDULED,
    UNDO_KINDS,
    WRITING_OUTCOMES,
)
from ccadmin.models.types import one_of, utcnow

log = logging.getLogger(__name__)

APPLY_BATCH = 10_000
ANALYZE_AFTER = 100_000
_ERROR_MAX = 2_000

row_table = ImportRow.__table__
content_columns = ContentEntry.__table__.c
# The batch's writing rows, from the staged table into content (same SQL on
# PostgreSQL and SQLite). A deletion keeps the entry's fields in its tombstone.
_UPSERT_FROM_ROWS = text(
    """
INSERT INTO content_entry
    (campaign_id, user_id, fields, version, deleted, updated_at, updated_by, last_event_id)
SELECT :campaign_id, user_id, COALESCE(fields, before_fields), 1, "delete", :now, :actor, :event_id
FROM import_row
WHERE import_id = :import_id AND line >= :first_line AND line <= :last_line
    AND outcome IN ('new', 'changed', 'deleted')
ON CONFLICT (campaign_id, user_id) DO UPDATE SET
    fields = CASE WHEN excluded.deleted THEN content_entry.fields ELSE excluded.fields END,
    version = content_entry.version + 1,
    deleted = excluded.deleted,
    updated_at = excluded.updated_at,
    updated_by = excluded.updated_by,
    last_event_id = excluded.last_event_id
"""
).bindparams(bindparam("now", type_=ContentEntry.__table__.c.updated_at.type))
Progress = Callable[[int, int], None]


def _outcome(row: Any, entry: Any) -> str:
    if row.expect_version is not None and (entry is None or entry.version != row.expect_version):
        return OUTCOME_CONFLICT
    live = entry is not None and not entry.deleted
    if row.delete:
        return OUTCOME_DELETED if live else OUTCOME_UNCHANGED
    if not live:
        return OUTCOME_NEW
    return OUTCOME_UNCHANGED if entry.fields == row.fields else OUTCOME_CHANGED


def _entry_versions(campaign_id: int, user_ids: list[str]) -> dict[str, int]:
    """user_id -> version of existing entries, locked until the batch commits."""
    rows = db.session.execute(
        select(content_columns.user_id, content_columns.version)
        .where(
            content_columns.campaign_id == campaign_id, one_of(content_columns.user_id, user_ids)
        )
        .with_for_update()
    )
    return dict(rows.all())


def recheck(content_import: ContentImport, drifted: list[Any]) -> list[dict[str, Any]]:
    """Outcome and state before of rows whose entry changed since the preview."""
    entries = staging.current_entries(
        content_import.campaign_id, [row.user_id for row in drifted], lock=True
    )
    staged = dict(
        db.session.execute(
            select(row_table.c.line, row_table.c.fields).where(
                row_table.c.import_id == content_import.id,
                one_of(row_table.c.line, [row.line for row in drifted]),
            )
        ).all()
    )
    corrections = []
    for row in drifted:
        entry = entries.get(row.user_id)
        target = SimpleNamespace(
            expect_version=row.expect_version, delete=row.delete, fields=staged.get(row.line)
        )
        corrections.append(
            {
                "at_line": row.line,
                "new_outcome": _outcome(target, entry),
                "new_before_version": None if entry is None else entry.version,
                "new_before_fields": None if entry is None else entry.fields,
                "new_before_deleted": None if entry is None else bool(entry.deleted),
            }
        )
    return corrections


def rows_to_apply(import_id: int, after_line: int = 0, limit: int | None = None) -> list[Any]:
    """The valid staged rows past `after_line`, in line order: what apply_batch takes."""
    query = (
        select(
            row_table.c.line,
            row_table.c.user_id,
            row_table.c.delete,
            row_table.c.outcome,
            row_table.c.expect_version,
            row_table.c.before_version,
        )
        .where(
            row_table.c.import_id == import_id,
            row_table.c.outcome != OUTCOME_INVALID,
            row_table.c.line > after_line,
        )
        .order_by(row_table.c.line)
    )
    return db.session.execute(query if limit is None else query.limit(limit)).all()


def apply_batch(content_import: ContentImport, rows: list[Any], actor: str) -> int | None:
    """Write one batch of rows (no commit); returns its outbox event id, if it wrote any.

    The preview recorded each entry's version; only entries whose version
    moved since are compared again, so the usual batch moves no field values
    through Python: the entries are written from the staged rows in SQL.
    """
    versions = _entry_versions(content_import.campaign_id, [row.user_id for row in rows])
    drifted = [row for row in rows if versions.get(row.user_id) != row.before_version]
    corrections = recheck(content_import, drifted) if drifted else []
    staging.update_rows(content_import.id, corrections)
    outcomes = {row.line: row.outcome for row in rows}
    outcomes.update({change["at_line"]: change["new_outcome"] for change in corrections})
    writes = sum(1 for outcome in outcomes.values() if outcome in WRITING_OUTCOMES)
    if not writes:
        return None
    outbox_event = publishing.record_content_batch(content_import.campaign_id, writes)
    db.session.execute(
        _UPSERT_FROM_ROWS,
        {
            "campaign_id": content_import.campaign_id,
            "import_id": content_import.id,
            "first_line": rows[0].line,
            "last_line": rows[-1].line,
            "now": utcnow(),
            "actor": actor,
            "event_id": outbox_event.id,
        },
    )
    content_import.batch_event_ids = [*content_import.batch_event_ids, outbox_event.id]
    content_import.written_rows += writes
    return outbox_event.id


def pending_rows(content_import: ContentImport) -> int:
    """Rows of the change set an apply still has to look at."""
    return db.session.execute(
        select(func.count()).where(
            row_table.c.import_id == content_import.id,
            row_table.c.outcome != OUTCOME_INVALID,
            row_table.c.line > content_import.applied_through_line,
        )
    ).scalar_one()


def apply_change_set(
    import_id: int,
    progress: Progress | None = None,
    batch_size: int = APPLY_BATCH,
) -> dict[str, Any]:
    """Apply a queued or scheduled change set; undo it whole if a batch fails.

    Each batch's commit wakes the drainers, so a batch goes live while the
    next one is written, not after the whole apply.
    """
    content_import = db.session.get(ContentImport, import_id)
    if content_import is None or content_import.status not in (STATUS_QUEUED, STATUS_SCHEDULED):
        status = None if content_import is None else content_import.status
        log.info("change set %s is %s; nothing to apply", import_id, status)
        return {"import_id": import_id, "skipped": status}
    actor = content_import.applied_by or content_import.created_by
    content_import.status = STATUS_APPLYING
    content_import.applied_at = content_import.applied_at or utcnow()
    content_import.error = None
    db.session.commit()
    total = pending_rows(content_import)
    done = 0
    if progress is not None:
        progress(done, total)
    try:
        while True:
            rows = rows_to_apply(import_id, content_import.applied_through_line, batch_size)
            if not rows:
                break
            apply_batch(content_import, rows, actor)
            content_import.applied_through_line = rows[-1].line
            db.session.commit()
            done += len(rows)
            if progress is not None:
                progress(done, total)
        finish(content_import, actor)
    except ShutDownImminentException:
        # The worker is being stopped (a deploy): leave the committed batches
        # and the status as they are; the page offers to resume or roll back.
        db.session.rollback()
        raise
    except Exception as error:
        db.session.rollback()
        log.exception("change set %s failed after line %s", import_id, _through(import_id))
        return fail(import_id, error, actor)
    return {
        "import_id": import_id,
        "status": content_import.status,
        "written": content_import.written_rows,
    }


def _through(import_id: int) -> int:
    return db.session.get(ContentImport, import_id).applied_through_line


def finish(content_import: ContentImport, actor: str) -> None:
    """Final counts, the one audit event, and the undone change set's new status."""
    staging.apply_counts(content_import, staging.count_outcomes(content_import.id))
    content_import.status = STATUS_APPLIED
    content_import.finished_at = utcnow()
    if content_import.kind in UNDO_KINDS and content_import.source_import_id:
        source = db.session.get(ContentImport, content_import.source_import_id)
        if source is not None and source.status == STATUS_APPLIED:
            source.status = STATUS_ROLLED_BACK
    if bulk.postgresql() and content_import.written_rows >= ANALYZE_AFTER:
        # As after seeding: the planner must know the table grew.
        db.session.execute(text("ANALYZE content_entry"))
    publishing.record_audit(
        actor,
        content_import.kind,
        "campaign",
        content_import.campaign_id,
        None,
        {
            "import_id": content_import.id,
            "source_import_id": content_import.source_import_id,
            "filename": content_import.filename,
            "written": content_import.written_rows,
            "new": content_import.new_rows,
            "changed": content_import.changed_rows,
            "deleted": content_import.deleted_rows,
            "unchanged": content_import.unchanged_rows,
            "invalid": content_import.invalid_rows,
            "conflicts": _conflicts(content_import.id),
        },
    )
    db.session.commit()


def _conflicts(import_id: int) -> int:
    return db.session.execute(
        select(func.count()).where(
            row_table.c.import_id == import_id, row_table.c.outcome == OUTCOME_CONFLICT
        )
    ).scalar_one()


def fail(import_id: int, error: BaseException, actor: str) -> dict[str, Any]:
    """Mark a change set failed and undo the batches it committed."""
    content_import = db.session.get(ContentImport, import_id)
    content_import.status = STATUS_FAILED
    content_import.finished_at = utcnow()
    # Shown in the admin: the kind of failure only; SQL and values stay in the log.
    content_import.error = (
        f"writing the rows after line {content_import.applied_through_line} failed "
        f"({type(error).__name__}); the worker log has the details"
    )[:_ERROR_MAX]
    db.session.commit()
    summary: dict[str, Any] = {"import_id": import_id, "status": STATUS_FAILED}
    if content_import.kind in UNDO_KINDS or content_import.applied_through_line == 0:
        # An undo is never undone by itself: it can be run again (its rows check versions).
        return summary
    undo = create_rollback(content_import, actor, automatic=True)
    summary["rollback"] = apply_change_set(undo.id)
    return summary
