"""Switch a campaign back to the state it had at a chosen time, as a change set.

The state at time T of an entry changed since is the state just before its
first change after T: the `before` snapshot of that change's audit event, or
the `before_*` of its change-set row. Those changes are merged in time order,
staged with the first per user kept, and compared with the content now; the
result is previewed and applied like an import (and can be rolled back).
Bulk seeding keeps no per-entry history, so seeded changes are not reverted.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from sqlalchemy import delete, func, select

from ccadmin.extensions import db
from ccadmin.imports import bulk, staging
from ccadmin.models import AuditEvent, Campaign, ContentEntry, ContentImport, ImportRow
from ccadmin.models.imports import (
    KIND_REVERT,
    OUTCOME_INVALID,
    STATUS_APPLIED,
    STATUS_FAILED,
    STATUS_READY,
    STATUS_ROLLED_BACK,
    STATUS_VALIDATING,
    WRITING_OUTCOMES,
)

CHUNK = 5_000
row_table = ImportRow.__table__


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _audit_targets(campaign_id: int, since: datetime) -> Iterator[tuple[datetime, str, Any]]:
    """(time, user_id, state before) of single edits after `since`, oldest first."""
    last_id = 0
    while True:
        events = db.session.execute(
            select(AuditEvent.id, AuditEvent.at, AuditEvent.target_id, AuditEvent.before)
            .where(
                AuditEvent.target_type == "content_entry",
                AuditEvent.at > since,
                AuditEvent.id > last_id,
            )
            .order_by(AuditEvent.id)
            .limit(CHUNK)
        ).all()
        if not events:
            return
        last_id = events[-1].id
        entry_ids = {int(event.target_id) for event in events if (event.target_id or "").isdigit()}
        owners = dict(
            db.session.execute(
                select(ContentEntry.id, ContentEntry.user_id).where(
                    ContentEntry.id.in_(entry_ids), ContentEntry.campaign_id == campaign_id
                )
            ).all()
        )
        for event in events:
            target = event.target_id or ""
            user_id = owners.get(int(target)) if target.isdigit() else None
            if user_id is not None:
                yield _aware(event.at), user_id, event.before


def _change_set_targets(campaign_id: int, since: datetime) -> Iterator[tuple[datetime, str, Any]]:
    """(time, user_id, state before) of change-set rows applied after `since`."""
    change_sets = db.session.execute(
        select(ContentImport.id, ContentImport.applied_at, ContentImport.applied_through_line)
        .where(
            ContentImport.campaign_id == campaign_id,
            ContentImport.applied_at > since,
            ContentImport.status.in_((STATUS_APPLIED, STATUS_FAILED, STATUS_ROLLED_BACK)),
        )
        .order_by(ContentImport.applied_at)
    ).all()
    for change_set in change_sets:
        last_line = 0
        while True:
            rows = db.session.execute(
                select(
                    row_table.c.line,
                    row_table.c.user_id,
                    row_table.c.before_version,
                    row_table.c.before_fields,
                    row_table.c.before_deleted,
                )
                .where(
                    row_table.c.import_id == change_set.id,
                    row_table.c.outcome.in_(WRITING_OUTCOMES),
                    row_table.c.line > last_line,
                    row_table.c.line <= change_set.applied_through_line,
                )
                .order_by(row_table.c.line)
                .limit(CHUNK)
            ).all()
            if not rows:
                break
            last_line = rows[-1].line
            for row in rows:
                before = None
                if row.before_version is not None:
                    before = {
                        "fields": row.before_fields,
                        "deleted": bool(row.before_deleted),
                        "version": row.before_version,
                    }
                yield _aware(change_set.applied_at), row.user_id, before


def create_revert(campaign: Campaign, since: datetime, actor: str) -> ContentImport:
    """Stage the campaign's content as it was at `since`, with its preview."""
    revert = ContentImport(
        kind=KIND_REVERT,
        campaign_id=campaign.id,
        filename=f"state at {since:%Y-%m-%d %H:%M} UTC",
        status=STATUS_VALIDATING,
        created_by=actor,
        report={},
        batch_event_ids=[],
    )
    db.session.add(revert)
    db.session.flush()
    changes = heapq.merge(
        _audit_targets(campaign.id, since),
        _change_set_targets(campaign.id, since),
        key=lambda change: change[0],
    )
    line = 0
    while chunk := list(islice(changes, CHUNK)):
        rows = []
        for _at, user_id, before in chunk:
            line += 1
            absent = before is None or before.get("deleted")
            rows.append(
                {
                    "import_id": revert.id,
                    "line": line,
                    "user_id": user_id,
                    "fields": None if absent else before.get("fields") or {},
                    "delete": bool(absent),
                    "outcome": OUTCOME_INVALID,
                }
            )
        bulk.insert_import_rows(rows)
    # Keep each user's earliest change only: its `before` is the state at `since`.
    earlier = row_table.alias("earlier")
    db.session.execute(
        delete(row_table).where(
            row_table.c.import_id == revert.id,
            row_table.c.line
            > select(func.min(earlier.c.line))
            .where(earlier.c.import_id == revert.id, earlier.c.user_id == row_table.c.user_id)
            .scalar_subquery(),
        )
    )
    _compare(revert)
    staging.apply_counts(revert, staging.count_outcomes(revert.id))
    revert.report = {"file_errors": [], "invalid": [], "diffs": revert.report.get("diffs", [])}
    revert.status = STATUS_READY
    db.session.commit()
    return revert


def _compare(revert: ContentImport) -> None:
    """Outcome and state now of every staged row, plus a sample of diffs."""
    diffs: list[dict[str, Any]] = []
    last_line = 0
    while True:
        rows = db.session.execute(
            select(row_table)
            .where(row_table.c.import_id == revert.id, row_table.c.line > last_line)
            .order_by(row_table.c.line)
            .limit(CHUNK)
        ).all()
        if not rows:
            break
        last_line = rows[-1].line
        current = staging.current_entries(revert.campaign_id, [row.user_id for row in rows])
        updates = []
        gone: list[int] = []
        for row in rows:
            entry = current.get(row.user_id)
            live = entry is not None and not entry.deleted
            if row.delete and not live:
                # Absent then and absent now (created and deleted since): no
                # entry to change, so not counted at all, not even as unchanged.
                gone.append(row.line)
                continue
            if row.delete:
                outcome = "deleted"
            elif not live:
                outcome = "new"
            else:
                outcome = "unchanged" if entry.fields == row.fields else "changed"
            if outcome != "unchanged" and len(diffs) < staging.REPORT_DIFFS:
                now = entry.fields if live else {}
                diffs.append(
                    {
                        "line": row.line,
                        "user_id": row.user_id,
                        "changes": staging.field_changes(
                            now or {}, {} if row.delete else row.fields or {}
                        ),
                    }
                )
            updates.append(
                {
                    "at_line": row.line,
                    "new_outcome": outcome,
                    "new_before_version": None if entry is None else entry.version,
                    "new_before_fields": None if entry is None else entry.fields,
                    "new_before_deleted": None if entry is None else bool(entry.deleted),
                }
            )
        staging.update_rows(revert.id, updates)
        if gone:
            db.session.execute(
                delete(row_table).where(
                    row_table.c.import_id == revert.id, row_table.c.line.in_(gone)
                )
            )
    revert.report = {"diffs": diffs}
