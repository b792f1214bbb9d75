"""Change requests: a change to a campaign that needs a second person's approval.

A campaign with `changes_need_approval` turns content changes (edits,
imports, reverts, scheduled changes, and the ingest API's writes by tokens
that need approval) into requests; ccadmin/approvals/ applies one when
someone else approves it, through the same path as a direct change.
"""

from __future__ import annotations

from sqlalchemy import Index

from ccadmin.extensions import db
from ccadmin.models.types import BigId, JsonDoc, utcnow

STATUS_OPEN = "open"
STATUS_APPLIED = "applied"
STATUS_REJECTED = "rejected"
STATUS_WITHDRAWN = "withdrawn"
STATUSES = (STATUS_OPEN, STATUS_APPLIED, STATUS_REJECTED, STATUS_WITHDRAWN)

# What a request changes. `entries`: edits, creates, deletes and restores of
# one or more entries (the admin's forms, the ingest API's writes and
# batches); `schedule`: a scheduled change to create; `change_set`: a
# previewed import, revert, rollback or roll forward to apply.
KIND_ENTRIES = "entries"
KIND_SCHEDULE = "schedule"
KIND_CHANGE_SET = "change_set"
KINDS = (KIND_ENTRIES, KIND_SCHEDULE, KIND_CHANGE_SET)


class ChangeRequest(db.Model):
    """One proposed change to a campaign's content, its diff, and who decided it."""

    __tablename__ = "change_request"

    id = db.Column(BigId, primary_key=True)
    campaign_id = db.Column(BigId, db.ForeignKey("campaign.id", ondelete="CASCADE"), nullable=False)
    kind = db.Column(db.String(16), nullable=False)
    title = db.Column(db.String(200), nullable=False)
    status = db.Column(db.String(16), nullable=False, default=STATUS_OPEN)
    # Per entry: {"user_id", "action", "base_version", "before", "fields"} with
    # the entry's version and fields when the request was made (or last
    # refreshed): approval applies only while every entry is still there.
    changes = db.Column(JsonDoc, nullable=False, default=list)
    # A schedule's {"run_at", "clear_fields"}; a change set's {"mode",
    # "run_at", "counts", "sample"} (its preview when the request was made).
    details = db.Column(JsonDoc, nullable=False, default=dict)
    content_import_id = db.Column(
        BigId, db.ForeignKey("content_import.id", ondelete="SET NULL"), nullable=True
    )
    requested_by = db.Column(db.String(254), nullable=False)
    # "admin", or "api:<token name>" for a request made through /manage/v1.
    via = db.Column(db.String(220), nullable=False, default="admin")
    requested_at = db.Column(db.DateTime(timezone=True), nullable=False, default=utcnow)
    refreshed_at = db.Column(db.DateTime(timezone=True), nullable=True)
    decided_by = db.Column(db.String(254), nullable=True)
    decided_at = db.Column(db.DateTime(timezone=True), nullable=True)
    # What the approval did: {"versions": {user_id: version}}, {"scheduled_change_id": n}...
    result = db.Column(JsonDoc, nullable=True)

    campaign = db.relationship("Campaign", lazy="joined")
    content_import = db.relationship("ContentImport")
    comments = db.relationship(
        "ChangeRequestComment",
        order_by="ChangeRequestComment.id",
        cascade="all, delete-orphan",
        lazy="selectin",
    )

    __table_args__ = (
        Index("ix_change_request_status_requested_at", "status", "requested_at"),
        Index("ix_change_request_campaign", "campaign_id", "id"),
    )

    @property
    def is_open(self) -> bool:
        return self.status == STATUS_OPEN

    @property
    def entry_count(self) -> int:
        """Entries the request changes (a change set's: new, changed and deleted rows)."""
        if self.kind != KIND_CHANGE_SET:
            return len(self.changes or [])
        counts = (self.details or {}).get("counts", {})
        return sum(counts.get(outcome, 0) for outcome in ("new", "changed", "deleted"))


class ChangeRequestComment(db.Model):
    """A comment on a change request (the reason of a rejection is one too)."""

    __tablename__ = "change_request_comment"

    id = db.Column(BigId, primary_key=True)
    change_request_id = db.Column(
        BigId, db.ForeignKey("change_request.id", ondelete="CASCADE"), nullable=False, index=True
    )
    author = db.Column(db.String(254), nullable=False)
    body = db.Column(db.Text, nullable=False)
    created_at = db.Column(db.DateTime(timezone=True), nullable=False, default=utcnow)
