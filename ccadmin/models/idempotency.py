"""Answers kept for `Idempotency-Key` retries on the ingest API's writes.

A row is claimed in the same transaction as the write it answers, so a key
either names a committed write or nothing; the answer is stored right after.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete

from ccadmin.extensions import db
from ccadmin.models.types import BigId, JsonDoc, utcnow

# How long a key (and its answer) is kept for retries.
KEEP_HOURS = 24


class IdempotentRequest(db.Model):
    """One token's request under one key: what it asked (a digest) and what it got."""

    __tablename__ = "idempotent_request"

    token_id = db.Column(
        BigId, db.ForeignKey("management_token.id", ondelete="CASCADE"), primary_key=True
    )
    key = db.Column(db.String(255), primary_key=True)
    # SHA-256 of the method, path, query, content type and (when kept) body.
    fingerprint = db.Column(db.String(64), nullable=False)
    created_at = db.Column(db.DateTime(timezone=True), nullable=False, default=utcnow, index=True)
    # The stored answer; NULL between the write's commit and the answer's.
    status = db.Column(db.Integer, nullable=True)
    headers = db.Column(JsonDoc, nullable=True)
    body = db.Column(db.LargeBinary, nullable=True)


def forget_expired() -> int:
    """Drop keys older than KEEP_HOURS (the sweeper's job); the number dropped."""
    oldest = utcnow() - timedelta(hours=KEEP_HOURS)
    dropped = db.session.execute(
        delete(IdempotentRequest).where(IdempotentRequest.created_at < oldest)
    ).rowcount
    db.session.commit()
    return dropped
