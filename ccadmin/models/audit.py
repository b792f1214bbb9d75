"""Audit events: who changed what, when, from where. Append-only."""

from __future__ import annotations

from sqlalchemy import Index

from ccadmin.extensions import db
from ccadmin.models.types import BigId, JsonDoc, utcnow


class AuditEvent(db.Model):
    """One action by one actor, with the state before and after."""

    __tablename__ = "audit_event"

    id = db.Column(BigId, primary_key=True)
    at = db.Column(db.DateTime(timezone=True), nullable=False, default=utcnow)
    actor = db.Column(db.String(200), nullable=False)
    action = db.Column(db.String(64), nullable=False)
    target_type = db.Column(db.String(64), nullable=False)
    target_id = db.Column(db.String(200), nullable=True)
    before = db.Column(JsonDoc, nullable=True)
    after = db.Column(JsonDoc, nullable=True)
    client_ip = db.Column(db.String(64), nullable=True)

    __table_args__ = (
        Index("ix_audit_event_at", "at"),
        Index("ix_audit_event_target", "target_type", "target_id"),
    )
