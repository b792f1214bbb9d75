"""Content entries: what one user receives from one campaign."""

from __future__ import annotations

from sqlalchemy import Index, UniqueConstraint, text

from ccadmin.extensions import db
from ccadmin.models.types import BigId, JsonDoc, utcnow

USER_ID_MAX_LENGTH = 128


class ContentEntry(db.Model):
    """Per-user fields of one campaign; `version` grows by one on every change."""

    __tablename__ = "content_entry"

    id = db.Column(BigId, primary_key=True)
    campaign_id = db.Column(
        BigId, db.ForeignKey("campaign.id", ondelete="RESTRICT"), nullable=False
    )
    user_id = db.Column(db.String(USER_ID_MAX_LENGTH), nullable=False)
    fields = db.Column(JsonDoc, nullable=False, default=dict)
    version = db.Column(db.Integer, nullable=False, default=1)
    # A delete is a tombstone version, so an older publish cannot resurrect it.
    deleted = db.Column(db.Boolean, nullable=False, default=False)
    updated_at = db.Column(db.DateTime(timezone=True), nullable=False, default=utcnow)
    updated_by = db.Column(db.String(200), nullable=True)
    # The outbox event that carries this entry's latest change; the worker
    # publishes an event by selecting the entries that still point at it.
    last_event_id = db.Column(BigId, nullable=True)

    campaign = db.relationship("Campaign", lazy="joined")

    __table_args__ = (
        UniqueConstraint("campaign_id", "user_id", name="uq_content_entry_campaign_user"),
        Index("ix_content_entry_user_id", "user_id"),
        Index("ix_content_entry_last_event_id", "last_event_id"),
        # The admin list's sorts (the latest change first by default) and its author
        # filter, paged by keyset (id breaks ties).
        Index("ix_content_entry_updated", "updated_at", "id"),
        Index("ix_content_entry_version", "version", "id"),
        Index("ix_content_entry_updated_by", "updated_by", "updated_at", "id"),
        # Word search in the field values (ccadmin/admin/content_list.py), PostgreSQL only.
        Index(
            "ix_content_entry_field_words",
            text("to_tsvector('simple'::regconfig, fields)"),
            postgresql_using="gin",
        ).ddl_if(dialect="postgresql"),
    )

    def __str__(self) -> str:
        return f"{self.user_id} @ {self.campaign.slug if self.campaign else self.campaign_id}"


class EntrySourceTime(db.Model):
    """The newest event time applied to an entry from one source (event-time ordering).

    A write carrying an older time from the same source is superseded; see
    ccadmin/publishing/event_times.py.
    """

    __tablename__ = "entry_source_time"

    campaign_id = db.Column(
        BigId, db.ForeignKey("campaign.id", ondelete="CASCADE"), primary_key=True
    )
    user_id = db.Column(db.String(USER_ID_MAX_LENGTH), primary_key=True)
    source = db.Column(db.String(200), primary_key=True)
    event_time = db.Column(db.DateTime(timezone=True), nullable=False)
