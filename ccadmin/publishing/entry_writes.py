"""One entry's change in a handful of SQL statements: the lean path of single writes.

The same rows as `outbox.record_content_change` (entry with version + 1, its
outbox event, an audit event) and the same wake-up after commit, written
with Core statements instead of ORM objects: no object loading, no flush
bookkeeping, nothing reloaded after the commit to build the answer; on
PostgreSQL the three rows are one statement. A write locks the entry's row
first (`lock_entry`), so the version it compares and bumps cannot move under
it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import String, cast, func, insert, literal, select, update

from ccadmin.extensions import db
from ccadmin.models import AuditEvent, ContentEntry, OutboxEvent
from ccadmin.models.outbox import KIND_CONTENT
from ccadmin.models.types import utcnow
from ccadmin.publishing.audit import client_ip
from ccadmin.publishing.outbox import pending_wake

entries = ContentEntry.__table__
outbox_events = OutboxEvent.__table__
audit_events = AuditEvent.__table__


@dataclass(frozen=True)
class StoredEntry:
    """An entry as the database holds it (live or a tombstone)."""

    id: int
    user_id: str
    fields: dict[str, Any]
    version: int
    deleted: bool
    updated_at: datetime
    updated_by: str | None

    def snapshot(self) -> dict[str, Any]:
        """What the audit log keeps of it (as publishing.entry_snapshot)."""
        return {
            "user_id": self.user_id,
            "fields": dict(self.fields),
            "version": self.version,
            "deleted": self.deleted,
        }


def lock_entry(campaign_id: int, user_id: str) -> StoredEntry | None:
    """The user's row in the campaign, locked until the transaction ends; None if none."""
    row = db.session.execute(
        select(
            entries.c.id,
            entries.c.user_id,
            entries.c.fields,
            entries.c.version,
            entries.c.deleted,
            entries.c.updated_at,
            entries.c.updated_by,
        )
        .where(entries.c.campaign_id == campaign_id, entries.c.user_id == user_id)
        .with_for_update()
    ).first()
    return None if row is None else StoredEntry(**row._mapping)


def write_entry(
    campaign_id: int,
    user_id: str,
    fields: dict[str, Any],
    actor: str,
    action: str,
    before: StoredEntry | None,
) -> StoredEntry:
    """Write the entry's next version, its outbox event and audit event (no commit).

    `before` is the locked row (None: create). `action` is `create`, `update`
    or `delete`; a delete keeps the fields under a tombstone version.
    """
    now = utcnow()
    version = 1 if before is None else before.version + 1
    deleted = action == "delete"
    saved = StoredEntry(0, user_id, fields, version, deleted, now, actor)
    values = {"fields": fields, "version": version, "deleted": deleted}
    values.update(updated_at=now, updated_by=actor)
    write = _write_in_one_statement if db.engine.dialect.name == "postgresql" else _write
    entry_id, event_id = write(campaign_id, user_id, values, action, before, saved)
    pending_wake(event_id)
    return replace(saved, id=entry_id)


def _audit_values(action: str, before: StoredEntry | None, saved: StoredEntry) -> dict[str, Any]:
    return {
        "at": saved.updated_at,
        "actor": saved.updated_by,
        "action": action,
        "target_type": "content_entry",
        "before": None if before is None else before.snapshot(),
        "after": saved.snapshot(),
        "client_ip": client_ip(),
    }


def _event_values(campaign_id: int, saved: StoredEntry) -> dict[str, Any]:
    return {
        "kind": KIND_CONTENT,
        "campaign_id": campaign_id,
        "version": saved.version,
        "entry_count": 1,
        "created_at": saved.updated_at,
        "attempts": 0,
    }


def _write(
    campaign_id: int,
    user_id: str,
    values: dict[str, Any],
    action: str,
    before: StoredEntry | None,
    saved: StoredEntry,
) -> tuple[int, int]:
    """Entry, outbox event and audit event in four statements (any database)."""
    if before is None:
        entry_id = db.session.execute(
            insert(entries)
            .values(campaign_id=campaign_id, user_id=user_id, **values)
            .returning(entries.c.id)
        ).scalar_one()
    else:
        entry_id = before.id
    event_id = db.session.execute(
        insert(outbox_events)
        .values(content_entry_id=entry_id, **_event_values(campaign_id, saved))
        .returning(outbox_events.c.id)
    ).scalar_one()
    changes = {} if before is None else values
    db.session.execute(
        update(entries).where(entries.c.id == entry_id).values(**changes, last_event_id=event_id)
    )
    db.session.execute(
        insert(audit_events).values(target_id=str(entry_id), **_audit_values(action, before, saved))
    )
    return entry_id, event_id


def _write_in_one_statement(
    campaign_id: int,
    user_id: str,
    values: dict[str, Any],
    action: str,
    before: StoredEntry | None,
    saved: StoredEntry,
) -> tuple[int, int]:
    """The same rows in one statement on PostgreSQL: data-modifying WITH clauses.

    The outbox event's id is drawn from its sequence inside the entry's own
    write, so the entry points at its event without a second update.
    """
    next_event_id = func.nextval(func.pg_get_serial_sequence(outbox_events.name, "id"))
    if before is None:
        written = insert(entries).values(campaign_id=campaign_id, user_id=user_id, **values)
    else:
        written = update(entries).where(entries.c.id == before.id).values(**values)
    written_cte = (
        written.values(last_event_id=next_event_id)
        .returning(entries.c.id, entries.c.last_event_id)
        .cte("written")
    )
    event = _event_values(campaign_id, saved)
    event_cte = (
        insert(outbox_events)
        .from_select(
            ["id", "content_entry_id", *event],
            select(
                written_cte.c.last_event_id,
                written_cte.c.id,
                *(literal(value, outbox_events.c[name].type) for name, value in event.items()),
            ),
        )
        .cte("event")
    )
    audit = _audit_values(action, before, saved)
    audit_cte = (
        insert(audit_events)
        .from_select(
            ["target_id", *audit],
            select(
                cast(written_cte.c.id, String),
                *(literal(value, audit_events.c[name].type) for name, value in audit.items()),
            ),
        )
        .cte("audit")
    )
    row = db.session.execute(
        select(written_cte.c.id, written_cte.c.last_event_id).add_cte(event_cte, audit_cte)
    ).one()
    return row.id, row.last_event_id
