"""The audit trail: who changed what, written in the transaction of the change."""

from __future__ import annotations

from typing import Any

from flask import has_request_context, request

from ccadmin.extensions import db
from ccadmin.models import AuditEvent, ContentEntry

# The key of an audit row's `after` naming what made a change on its actor's
# behalf (a scheduled change), shown by the audit log.
AUDIT_VIA = "via"


def client_ip() -> str | None:
    """The requesting address, for the audit log (None outside a request)."""
    return request.remote_addr if has_request_context() else None


def record_audit(
    actor: str,
    action: str,
    target_type: str,
    target_id: Any,
    before: dict | None = None,
    after: dict | None = None,
) -> AuditEvent:
    """Append an audit event to the current transaction."""
    audit_event = AuditEvent(
        actor=actor,
        action=action,
        target_type=target_type,
        target_id=None if target_id is None else str(target_id),
        before=before,
        after=after,
        client_ip=client_ip(),
    )
    db.session.add(audit_event)
    return audit_event


def entry_snapshot(content_entry: ContentEntry) -> dict:
    """What the audit log keeps of an entry."""
    return {
        "user_id": content_entry.user_id,
        "fields": dict(content_entry.fields or {}),
        "version": content_entry.version,
        "deleted": bool(content_entry.deleted),
    }
