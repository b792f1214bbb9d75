"""API keys the caller presents to the Connected Content endpoint."""

from __future__ import annotations

import hashlib
import secrets

from ccadmin.extensions import db
from ccadmin.models.types import BigId, JsonDoc, utcnow

KEY_PREFIX = "cc_"


def hash_secret(secret: str) -> str:
    """SHA-256 hex of a key; keys are random and long, so no slow hash is needed,
    and the API can check a key with one hash per request."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_secret() -> str:
    """A fresh key: a recognisable prefix plus 32 random bytes."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


class ApiKey(db.Model):
    """A key for the endpoint; only its hash and a short prefix are stored."""

    __tablename__ = "api_key"

    id = db.Column(BigId, primary_key=True)
    name = db.Column(db.String(200), nullable=False)
    prefix = db.Column(db.String(16), nullable=False)
    secret_hash = db.Column(db.String(64), nullable=False, unique=True)
    # List of campaign slugs this key may read; NULL means every campaign.
    campaigns = db.Column(JsonDoc, nullable=True)
    created_at = db.Column(db.DateTime(timezone=True), nullable=False, default=utcnow)
    revoked_at = db.Column(db.DateTime(timezone=True), nullable=True)
    last_used_at = db.Column(db.DateTime(timezone=True), nullable=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"
