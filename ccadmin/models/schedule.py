"""Content changes saved now and published at a chosen time."""

from __future__ import annotations

from sqlalchemy import Index

from ccadmin.extensions import db
from ccadmin.models.types import BigId, JsonDoc, utcnow

STATUS_PENDING = "pending"
STATUS_DONE = "done"
STATUS_CANCELLED = "cancelled"
STATUS_FAILED = "failed"


class ScheduledChange(db.Model):
    """Fields to set and to clear for one user of one campaign, applied at `run_at`.

    Fields it does not name keep the value the entry has when the change runs.
    """

    __tablename__ = "scheduled_change"

    id = db.Column(BigId, primary_key=True)
    campaign_id = db.Column(
        BigId, db.ForeignKey("campaign.id", ondelete="RESTRICT"), nullable=False
    )
    user_id = db.Column(db.String(128), nullable=False)
    # {name: value}: the fields this change sets.
    fields = db.Column(JsonDoc, nullable=False)
    # [name, ...]: the optional fields this change empties.
    clear_fields = db.Column(JsonDoc, nullable=False, default=list)
    run_at = db.Column(db.DateTime(timezone=True), nullable=False)
    status = db.Column(db.String(16), nullable=False, default=STATUS_PENDING)
    created_by = db.Column(db.String(200), nullable=False)
    created_at = db.Column(db.DateTime(timezone=True), nullable=False, default=utcnow)
    done_at = db.Column(db.DateTime(timezone=True), nullable=True)
    cancelled_by = db.Column(db.String(200), nullable=True)
    error = db.Column(db.Text, nullable=True)

    campaign = db.relationship("Campaign", lazy="joined")

    __table_args__ = (Index("ix_scheduled_change_status_run_at", "status", "run_at"),)

    @property
    def job_id(self) -> str:
        """The RQ job id that applies this change at its time."""
        return f"scheduled-change-{self.id}"
