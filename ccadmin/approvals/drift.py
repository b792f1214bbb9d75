"""What moved since a change request was made: its entries' versions now, and the rows of
a change set whose entry changed after they were staged.

A request stores the version of each entry it was made against (a change
set's rows store theirs); anything different now is a conflict, and a refresh
takes the diff again from here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, select

from ccadmin.extensions import db
from ccadmin.imports import staging
from ccadmin.imports.applying import recheck
from ccadmin.models import ContentEntry, ContentImport, ImportRow
from ccadmin.models.imports import OUTCOME_INVALID, WRITING_OUTCOMES
from ccadmin.models.types import one_of

# Rows of a change set shown on its request.
SAMPLE_ROWS = 20
# Rows of a change set rechecked per statement when it is refreshed.
REFRESH_BATCH = 1_000

row_table = ImportRow.__table__
entry_columns = ContentEntry.__table__.c


def entry_states(campaign_id: int, user_ids: list[str], lock: bool = False) -> dict[str, Any]:
    """user_id -> (version, deleted, fields) of the users' rows (tombstones included)."""
    query = select(
        entry_columns.user_id, entry_columns.version, entry_columns.deleted, entry_columns.fields
    ).where(entry_columns.campaign_id == campaign_id, one_of(entry_columns.user_id, user_ids))
    if lock:
        query = query.with_for_update()
    return {row.user_id: row for row in db.session.execute(query)}


def version_of(state: Any) -> int:
    """An entry's version from entry_states (0: the user has no row)."""
    return 0 if state is None else state.version


def _drifted(content_import: ContentImport):
    joined = row_table.outerjoin(
        ContentEntry.__table__,
        and_(
            entry_columns.campaign_id == content_import.campaign_id,
            entry_columns.user_id == row_table.c.user_id,
        ),
    )
    moved = func.coalesce(entry_columns.version, 0) != func.coalesce(row_table.c.before_version, 0)
    return joined, and_(
        row_table.c.import_id == content_import.id,
        row_table.c.outcome != OUTCOME_INVALID,
        moved,
    )


def drifted_users(content_import: ContentImport, limit: int) -> list[str]:
    """Users of the change set whose entry moved since its rows were staged (or rechecked)."""
    joined, condition = _drifted(content_import)
    rows = db.session.execute(
        select(row_table.c.user_id).select_from(joined).where(condition).limit(limit)
    )
    return [row.user_id for row in rows]


def recheck_drifted(content_import: ContentImport) -> None:
    """Outcomes and states before, again, of rows whose entry moved since they were staged."""
    joined, condition = _drifted(content_import)
    while True:
        drifted = db.session.execute(
            select(
                row_table.c.line,
                row_table.c.user_id,
                row_table.c.delete,
                row_table.c.expect_version,
            )
            .select_from(joined)
            .where(condition)
            .order_by(row_table.c.line)
            .limit(REFRESH_BATCH)
        ).all()
        if not drifted:
            break
        staging.update_rows(content_import.id, recheck(content_import, drifted))
    staging.apply_counts(content_import, staging.count_outcomes(content_import.id))


def change_set_summary(
    content_import: ContentImport, mode: str, run_at: datetime | None
) -> dict[str, Any]:
    """A change set request's details: how it applies, its counts and its first rows."""
    return {
        "mode": mode,
        "run_at": run_at.isoformat() if run_at else None,
        "counts": {
            "new": content_import.new_rows,
            "changed": content_import.changed_rows,
            "deleted": content_import.deleted_rows,
            "unchanged": content_import.unchanged_rows,
            "invalid": content_import.invalid_rows,
        },
        "sample": _sample(content_import.id),
    }


def _sample(import_id: int) -> list[dict[str, Any]]:
    rows = db.session.execute(
        select(
            row_table.c.user_id,
            row_table.c.outcome,
            row_table.c.fields,
            row_table.c.before_fields,
            row_table.c.before_deleted,
        )
        .where(row_table.c.import_id == import_id, row_table.c.outcome.in_(WRITING_OUTCOMES))
        .order_by(row_table.c.line)
        .limit(SAMPLE_ROWS)
    )
    return [
        {
            "user_id": row.user_id,
            "outcome": row.outcome,
            "before": None
            if row.before_deleted or row.before_fields is None
            else row.before_fields,
            "fields": row.fields,
        }
        for row in rows
    ]
