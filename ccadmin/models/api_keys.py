"""API keys the caller presents to the Connected Content endpoint."""

from __future__ import annotations

from ccadmin.extensions import db
from ccadmin.models.credentials import Credential, new_secret

KEY_PREFIX = "cc_"


def new_key_secret() -> str:
    """A fresh key, recognisable by its prefix."""
    return new_secret(KEY_PREFIX)


class ApiKey(Credential, db.Model):
    """A key for the endpoint; the workers publish its hash and campaigns to Redis."""

    __tablename__ = "api_key"
