"""One entry's change in a handful of SQL statements: the lean path of single writes.

The same rows as `outbox.record_content_change` (entry with version + 1, its
outbox event, an audit event) and the same wake-up after commit, written
with Core statements instead of ORM objects: no object loading, no flush
bookkeeping, nothing reloaded after the commit to build the answer. A write
locks the entry's row first (`lock_entry`), so the version it compares and
bumps cannot move under it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update

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
    values = {"fields": fields, "version": version, "deleted": deleted}
    values.update(updated_at=now, updated_by=actor)
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
        .values(
            kind=KIND_CONTENT,
            campaign_id=campaign_id,
            content_entry_id=entry_id,
            version=version,
            entry_count=1,
            created_at=now,
        )
        .returning(outbox_events.c.id)
    ).scalar_one()
    changes = {} if before is None else values
    db.session.execute(
        update(entries).where(entries.c.id == entry_id).values(**changes, last_event_id=event_id)
    )
    saved = StoredEntry(entry_id, user_id, fields, version, deleted, now, actor)
    db.session.execute(
        insert(audit_events).values(
            at=now,
            actor=actor,
            action=action,
            target_type="content_entry",
            target_id=str(entry_id),
            before=None if before is None else before.snapshot(),
            after=saved.snapshot(),
            client_ip=client_ip(),
        )
    )
    pending_wake(event_id)
    return saved
