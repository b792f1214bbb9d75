"""Campaigns: which content fields exist and what users without content get."""

from __future__ import annotations

import re

from sqlalchemy import Index, text

from ccadmin.extensions import db
from ccadmin.models.types import BigId, JsonDoc, utcnow

SLUG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
FALLBACK_DEFAULT = "default"
FALLBACK_NOT_FOUND = "not_found"
FALLBACK_POLICIES = (FALLBACK_DEFAULT, FALLBACK_NOT_FOUND)
DEFAULT_FIELD_SCHEMA = [{"name": "message", "max_length": 140}]


class Campaign(db.Model):
    """One Connected Content campaign, served at `/v1/<slug>` (and `/data` if default)."""

    __tablename__ = "campaign"

    id = db.Column(BigId, primary_key=True)
    slug = db.Column(db.String(63), nullable=False, unique=True)
    name = db.Column(db.String(200), nullable=False)
    # [{"name": "message", "max_length": 140}, ...]: the fields every entry has.
    field_schema = db.Column(JsonDoc, nullable=False, default=lambda: list(DEFAULT_FIELD_SCHEMA))
    fallback_policy = db.Column(db.String(16), nullable=False, default=FALLBACK_DEFAULT)
    default_fields = db.Column(JsonDoc, nullable=False, default=dict)
    max_age = db.Column(db.Integer, nullable=False, default=60)
    public = db.Column(db.Boolean, nullable=False, default=False)
    active = db.Column(db.Boolean, nullable=False, default=True)
    is_default = db.Column(db.Boolean, nullable=False, default=False)
    # Editors' content changes become change requests that someone else
    # approves (ccadmin/approvals/); admins' changes to the campaign do not.
    changes_need_approval = db.Column(
        db.Boolean, nullable=False, default=False, server_default=db.false()
    )
    # +1 on every change, so the published config never goes back in time.
    version = db.Column(db.Integer, nullable=False, default=1)
    created_at = db.Column(db.DateTime(timezone=True), nullable=False, default=utcnow)
    updated_at = db.Column(db.DateTime(timezone=True), nullable=False, default=utcnow)

    __table_args__ = (
        # At most one campaign is the one `/data` serves.
        Index(
            "uq_campaign_single_default",
            "is_default",
            unique=True,
            postgresql_where=text("is_default"),
            sqlite_where=text("is_default"),
        ),
    )

    @property
    def field_names(self) -> list[str]:
        return [field["name"] for field in self.field_schema or []]

    def __str__(self) -> str:
        return f"{self.name} ({self.slug})"
