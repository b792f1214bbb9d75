"""An entry's versions: who, when and what changed, from the audit log and change sets.

Single edits leave an audit event with the entry's state before and after;
imports, rollbacks and reverts leave one row per entry in `import_row` with
the state before and the fields written. Bulk seeding records neither, so an
entry's history can start above version 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from ccadmin.extensions import db
from ccadmin.imports.staging import field_changes
from ccadmin.models import AuditEvent, ContentEntry, ContentImport, ImportRow
from ccadmin.models.imports import WRITING_OUTCOMES

HISTORY_LIMIT = 200


@dataclass
class Version:
    """One version of an entry as it was written."""

    version: int
    at: datetime
    actor: str
    action: str
    fields: dict[str, Any]
    deleted: bool
    changes: list[dict[str, Any]] = field(default_factory=list)
    import_id: int | None = None


def _audit_versions(entry: ContentEntry) -> list[Version]:
    events = db.session.scalars(
        select(AuditEvent)
        .where(AuditEvent.target_type == "content_entry", AuditEvent.target_id == str(entry.id))
        .order_by(AuditEvent.id.desc())
        .limit(HISTORY_LIMIT)
    )
    versions = []
    for event in events:
        after = event.after or {}
        if "version" not in after:
            continue
        before = event.before or {}
        before_fields = {} if before.get("deleted") else before.get("fields") or {}
        fields = after.get("fields") or {}
        deleted = bool(after.get("deleted"))
        versions.append(
            Version(
                version=int(after["version"]),
                at=event.at,
                actor=event.actor,
                action=event.action,
                fields=fields,
                deleted=deleted,
                changes=field_changes(before_fields, {} if deleted else fields),
            )
        )
    return versions


def _change_set_versions(entry: ContentEntry) -> list[Version]:
    rows = db.session.execute(
        select(ImportRow, ContentImport)
        .join(ContentImport, ContentImport.id == ImportRow.import_id)
        .where(
            ContentImport.campaign_id == entry.campaign_id,
            ContentImport.applied_at.is_not(None),
            ImportRow.user_id == entry.user_id,
            ImportRow.outcome.in_(WRITING_OUTCOMES),
            ImportRow.line <= ContentImport.applied_through_line,
        )
        .order_by(ImportRow.import_id.desc())
        .limit(HISTORY_LIMIT)
    )
    versions = []
    for row, change_set in rows:
        before_fields = {} if row.before_deleted else row.before_fields or {}
        fields = (row.before_fields or {}) if row.delete else (row.fields or {})
        versions.append(
            Version(
                version=row.after_version,
                at=change_set.applied_at,
                actor=change_set.applied_by or change_set.created_by,
                action=change_set.kind,
                fields=fields,
                deleted=bool(row.delete),
                changes=field_changes(before_fields, {} if row.delete else fields),
                import_id=change_set.id,
            )
        )
    return versions


def entry_versions(entry: ContentEntry) -> list[Version]:
    """Known versions of one entry, newest first."""
    versions = {version.version: version for version in _change_set_versions(entry)}
    versions.update({version.version: version for version in _audit_versions(entry)})
    return sorted(versions.values(), key=lambda version: version.version, reverse=True)


def find_version(entry: ContentEntry, number: int) -> Version | None:
    """One version of an entry, if it is recorded."""
    return next((v for v in entry_versions(entry) if v.version == number), None)
