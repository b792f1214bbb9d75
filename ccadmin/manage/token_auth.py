"""Management tokens: who is calling, what they may touch, how often.

A token arrives as `Authorization: Bearer ...`, or as HTTP Basic with the
token as the user name or the password (what some sending tools offer).

Tokens are looked up by the SHA-256 of the secret (they are long and random,
so no slow hash is needed), compared in the database by that digest. The
rate limit is a fixed window per token counted in Redis; with Redis down the
limit is not enforced (logged), as the login limits do: writes still go
through the database and the outbox, so a Redis restart must not stop them.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from datetime import timedelta

import redis
from flask import current_app, g, request
from sqlalchemy import select

from ccadmin import keys
from ccadmin.extensions import db
from ccadmin.manage.errors import ApiError
from ccadmin.models import Campaign, ManagementToken
from ccadmin.models.credentials import hash_secret
from ccadmin.models.management_tokens import SCOPE_WRITE, TOKEN_PREFIX
from ccadmin.models.types import utcnow
from ccadmin.redis_client import get_redis

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Signature"
SIGNATURE = {
    "name": SIGNATURE_HEADER,
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": (
        "Required when the token has a signing secret: the HMAC-SHA1 of the body keyed by "
        "that secret, in hex (what Segment's Webhooks destinations send)."
    ),
}
RATE_WINDOW_SECONDS = 60
# last_used_at is written at most this often per token, not on every request.
LAST_USED_RESOLUTION = timedelta(seconds=60)


def presented_secret() -> str | None:
    """The token from `Authorization` (Bearer, or Basic user name or password), or None."""
    authorization = request.authorization
    if authorization is None:
        return None
    if authorization.type == "bearer":
        return authorization.token or None
    if authorization.type == "basic":
        user, password = authorization.username or "", authorization.password or ""
        return user if user.startswith(TOKEN_PREFIX) or not password else password
    return None


def verify_signature(body: bytes) -> None:
    """With a signing secret on the token, the body's HMAC-SHA1 in `X-Signature` (Segment's
    scheme: hex, keyed by the shared secret) must match; else 401."""
    secret = token().signing_secret
    if secret is None:
        return
    expected = hmac.new(secret.encode("utf-8"), body, hashlib.sha1).hexdigest()
    presented = request.headers.get(SIGNATURE_HEADER, "").strip().lower()
    if not hmac.compare_digest(expected, presented):
        raise ApiError(
            401,
            "invalid_signature",
            f"The body's {SIGNATURE_HEADER} does not match this token's signing secret.",
        )


def authenticate() -> ManagementToken:
    """The calling token (401 if missing, unknown or revoked), rate limited (429).

    On a campaign's path the campaign is read in the same query (`campaign`),
    which saves every such request a database round trip.
    """
    secret = presented_secret()
    if secret is None:
        raise ApiError(
            401,
            "unauthorized",
            "Send a management token as `Authorization: Bearer`, or as the user name of "
            "HTTP Basic.",
        )
    query = select(ManagementToken).where(ManagementToken.secret_hash == hash_secret(secret))
    slug = (request.view_args or {}).get("slug")
    if slug is not None:
        query = query.add_columns(Campaign).outerjoin(Campaign, Campaign.slug == slug)
    row = db.session.execute(query).first()
    token = None if row is None else row[0]
    g.manage_campaign = None if row is None or slug is None else row[1]
    if token is None or token.revoked_at is not None:
        raise ApiError(401, "unauthorized", "This token is not valid (unknown or revoked).")
    check_rate(token)
    _touch(token)
    g.manage_token = token
    return token


def _touch(token: ManagementToken) -> None:
    now = utcnow()
    last = token.last_used_at
    if last is not None and last.tzinfo is None:
        last = last.replace(tzinfo=now.tzinfo)
    if last is None or now - last > LAST_USED_RESOLUTION:
        token.last_used_at = now
        db.session.commit()


def check_rate(token: ManagementToken) -> None:
    """Count this request in the token's window; 429 with Retry-After past the limit."""
    limit = current_app.config["CCADMIN_SETTINGS"].manage_rate_limit
    if not limit:
        return
    now = time.time()
    window = int(now // RATE_WINDOW_SECONDS) * RATE_WINDOW_SECONDS
    key = keys.manage_rate_key(token.id, window)
    try:
        pipe = get_redis(current_app.config["CCADMIN_SETTINGS"]).pipeline()
        # The window's key expires with it; INCR keeps the TTL that SET NX gave.
        pipe.set(key, 0, ex=RATE_WINDOW_SECONDS + 1, nx=True)
        pipe.incr(key)
        count = pipe.execute()[1]
    except (redis.RedisError, OSError) as error:
        log.warning("management rate limit not checked, Redis unavailable: %s", error)
        return
    if count > limit:
        retry_after = max(1, int(window + RATE_WINDOW_SECONDS - now + 0.999))
        raise ApiError(
            429,
            "rate_limited",
            f"At most {limit} requests a minute per token; retry after {retry_after} s.",
            {"limit": limit, "window_seconds": RATE_WINDOW_SECONDS},
            headers={"Retry-After": str(retry_after)},
        )


def token() -> ManagementToken:
    """The token of this request (set by authenticate)."""
    return g.manage_token


def campaign() -> Campaign | None:
    """The campaign named by this request's path, read with its token (None if none)."""
    return g.get("manage_campaign")


def actor() -> str:
    """The audit actor and `updated_by` of changes made with this token."""
    return f"token:{token().name}"


def require_campaign_scope(slug: str) -> None:
    """403 when the token is limited to other campaigns."""
    if not token().allows(slug):
        raise ApiError(403, "forbidden", "This token is not allowed to use this campaign.")


def require_write() -> None:
    """403 for a read-only token."""
    if token().scope != SCOPE_WRITE:
        raise ApiError(403, "forbidden", "This token is read-only.")
