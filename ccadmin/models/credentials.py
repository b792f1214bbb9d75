"""What an API key and a management token share: a named secret stored as its hash.

Only the SHA-256 of a secret and its first characters (to recognise it in a
list) are kept; the secret itself is shown once, when it is created.
"""

from __future__ import annotations

import hashlib
import secrets

from ccadmin.extensions import db
from ccadmin.models.types import BigId, JsonDoc, utcnow


def hash_secret(secret: str) -> str:
    """SHA-256 hex of a secret; secrets are random and long, so no slow hash is
    needed, and the API can check a key with one hash per request."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_secret(prefix: str) -> str:
    """A fresh secret: a prefix that says what it is for, plus 32 random bytes."""
    return prefix + secrets.token_urlsafe(32)


class Credential:
    """Columns and checks common to the secrets callers present."""

    id = db.Column(BigId, primary_key=True)
    name = db.Column(db.String(200), nullable=False)
    prefix = db.Column(db.String(16), nullable=False)
    secret_hash = db.Column(db.String(64), nullable=False, unique=True)
    # List of campaign slugs the secret may use; NULL means every campaign.
    campaigns = db.Column(JsonDoc, nullable=True)
    created_at = db.Column(db.DateTime(timezone=True), nullable=False, default=utcnow)
    revoked_at = db.Column(db.DateTime(timezone=True), nullable=True)
    last_used_at = db.Column(db.DateTime(timezone=True), nullable=True)

    def allows(self, campaign_slug: str) -> bool:
        """True when the secret may be used for this campaign."""
        return self.campaigns is None or campaign_slug in self.campaigns

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"
