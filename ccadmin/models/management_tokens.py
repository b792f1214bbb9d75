"""Management tokens: what the customer's own systems present to the ingest API.

Distinct from API keys (which only read the Connected Content endpoint): a
token writes content, so it is scoped to campaigns and to read or write, and
it never leaves the database (the API process knows nothing of it).
"""

from __future__ import annotations

import secrets

from ccadmin.extensions import db
from ccadmin.models.types import BigId, JsonDoc, utcnow

TOKEN_PREFIX = "ccm_"
SCOPE_READ = "read"
SCOPE_WRITE = "write"
SCOPES = (SCOPE_READ, SCOPE_WRITE)


def new_token_secret() -> str:
    """A fresh token: a prefix that tells it apart from an API key, plus 32 random bytes."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


class ManagementToken(db.Model):
    """A bearer token for /manage/v1; only its SHA-256 and a short prefix are stored."""

    __tablename__ = "management_token"

    id = db.Column(BigId, primary_key=True)
    name = db.Column(db.String(200), nullable=False)
    prefix = db.Column(db.String(16), nullable=False)
    secret_hash = db.Column(db.String(64), nullable=False, unique=True)
    # `read` or `write` (write includes read).
    scope = db.Column(db.String(8), nullable=False, default=SCOPE_READ)
    # List of campaign slugs the token may use; NULL means every campaign.
    campaigns = db.Column(JsonDoc, nullable=True)
    created_at = db.Column(db.DateTime(timezone=True), nullable=False, default=utcnow)
    created_by = db.Column(db.String(200), nullable=True)
    revoked_at = db.Column(db.DateTime(timezone=True), nullable=True)
    last_used_at = db.Column(db.DateTime(timezone=True), nullable=True)

    @property
    def can_write(self) -> bool:
        return self.scope == SCOPE_WRITE

    def allows(self, campaign_slug: str) -> bool:
        """True when the token may touch this campaign."""
        return self.campaigns is None or campaign_slug in self.campaigns

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"
