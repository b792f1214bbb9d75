"""Helpers for the ingest API tests: tokens made as the admin makes them, bearer headers."""

from __future__ import annotations

from ccadmin.extensions import db
from ccadmin.models import ManagementToken
from ccadmin.models.credentials import hash_secret
from ccadmin.models.management_tokens import SCOPE_WRITE, new_token_secret

SCHEMA = [{"name": "message", "max_length": 20}, {"name": "cta", "max_length": 10}]


def make_token(
    name: str = "crm-sync",
    scope: str = SCOPE_WRITE,
    campaigns: list[str] | None = None,
    needs_approval: bool = False,
) -> str:
    """A committed token; returns its secret."""
    secret = new_token_secret()
    db.session.add(
        ManagementToken(
            name=name,
            prefix=secret[:12],
            secret_hash=hash_secret(secret),
            scope=scope,
            campaigns=campaigns,
            needs_approval=needs_approval,
        )
    )
    db.session.commit()
    return secret


def bearer(secret: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}", **extra}
