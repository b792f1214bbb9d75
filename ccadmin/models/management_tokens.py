"""Management tokens: what the customer's own systems present to the ingest API.

Distinct from API keys (which only read the Connected Content endpoint): a
token writes content, so it is scoped to campaigns and to read or write, and
it never leaves the database (the API process knows nothing of it).
"""

from __future__ import annotations

from ccadmin.extensions import db
from ccadmin.models.credentials import Credential, new_secret

TOKEN_PREFIX = "ccm_"
SCOPE_READ = "read"
SCOPE_WRITE = "write"
SCOPES = (SCOPE_READ, SCOPE_WRITE)


def new_token_secret() -> str:
    """A fresh token: a prefix that tells it apart from an API key, plus 32 random bytes."""
    return new_secret(TOKEN_PREFIX)


class ManagementToken(Credential, db.Model):
    """A bearer token for /manage/v1."""

    __tablename__ = "management_token"

    # `read` or `write` (write includes read).
    scope = db.Column(db.String(8), nullable=False, default=SCOPE_READ)
    created_by = db.Column(db.String(200), nullable=True)
    # Writes that carry an event time are ordered per entry and per source
    # (ccadmin/publishing/event_times.py); NULL means the token's name. Two
    # tokens of one sending system (a rotation) share a source.
    source = db.Column(db.String(200), nullable=True)
    # A sending tool's shared secret (Segment's): the events endpoint then
    # requires its HMAC of each body in `X-Signature`. Kept as given, since
    # checking an HMAC needs the key; never shown again.
    signing_secret = db.Column(db.String(200), nullable=True)

    # Writes to a campaign whose changes need approval become change requests
    # (202 with the request's URL) instead of going live.
    needs_approval = db.Column(db.Boolean, nullable=False, default=False, server_default=db.false())

    @property
    def can_write(self) -> bool:
        return self.scope == SCOPE_WRITE

    @property
    def event_source(self) -> str:
        return self.source or self.name
