"""Outbox events: written in the same transaction as the change they publish."""

from __future__ import annotations

from sqlalchemy import Index, text

from ccadmin.extensions import db
from ccadmin.models.types import BigId, utcnow

# What an event publishes: the entries pointing at it, one campaign's config
# (and the default pointer), or the API key set.
KIND_CONTENT = "content"
KIND_CAMPAIGN = "campaign"
KIND_API_KEYS = "api_keys"
EVENT_KINDS = (KIND_CONTENT, KIND_CAMPAIGN, KIND_API_KEYS)


class OutboxEvent(db.Model):
    """A change waiting to reach Redis; `published_at` is set once it has."""

    __tablename__ = "outbox_event"

    id = db.Column(BigId, primary_key=True)
    kind = db.Column(db.String(16), nullable=False)
    campaign_id = db.Column(BigId, nullable=True)
    # For single-entry events: which entry and version, for display and lag.
    content_entry_id = db.Column(BigId, nullable=True)
    version = db.Column(db.Integer, nullable=True)
    entry_count = db.Column(db.Integer, nullable=False, default=0)
    created_at = db.Column(db.DateTime(timezone=True), nullable=False, default=utcnow)
    published_at = db.Column(db.DateTime(timezone=True), nullable=True)
    attempts = db.Column(db.Integer, nullable=False, default=0)
    last_error = db.Column(db.Text, nullable=True)

    __table_args__ = (
        # The sweeper's query: only the (few) unpublished rows are indexed.
        Index(
            "ix_outbox_event_unpublished",
            "created_at",
            postgresql_where=text("published_at IS NULL"),
            sqlite_where=text("published_at IS NULL"),
        ),
    )


class PublishFailure(db.Model):
    """An entry version that could not be rendered for Redis, set aside so the rest goes on.

    The drainers, the rebuild and reconcile skip it and record it here; the
    live metrics page lists it. The row goes once a later version of the
    entry is published.
    """

    __tablename__ = "publish_failure"

    content_entry_id = db.Column(
        BigId, db.ForeignKey("content_entry.id", ondelete="CASCADE"), primary_key=True
    )
    version = db.Column(db.Integer, nullable=False)
    error = db.Column(db.Text, nullable=False)
    failed_at = db.Column(db.DateTime(timezone=True), nullable=False, default=utcnow)
