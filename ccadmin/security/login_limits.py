"""Failed-login limits per account and per client address, counted in Redis.

A fixed window per counter: the first failure starts it, each failure adds
one, and at the limit further attempts are refused without checking the
password until the window expires. Only failures count, so a marketer who
logs in correctly is never slowed down, and a success clears the account's
counter (not the address's, or an attacker could reset it with an account
of their own). An admin can unlock an account early from the Users page,
which shows each lock and when it ends.

Redis down: the counters cannot be read. Logging in stays possible (fail
open, with a warning in the log): a Redis restart must not lock marketers
out, and each guess still costs a full scrypt check.
"""

from __future__ import annotations

import logging

import redis
from flask import current_app

from ccadmin import keys
from ccadmin.redis_client import get_redis

log = logging.getLogger(__name__)

# One person mistyping gets 5 tries per quarter hour; an office behind one
# address gets 50 failures between all its people.
ACCOUNT_LIMIT = 5
ADDRESS_LIMIT = 50
WINDOW_SECONDS = 15 * 60

ACCOUNT = "account"
ADDRESS = "address"


def _counters(email: str, address: str) -> list[tuple[str, int]]:
    return [
        (keys.login_failures_key(ACCOUNT, email.strip().lower()), ACCOUNT_LIMIT),
        (keys.login_failures_key(ADDRESS, address), ADDRESS_LIMIT),
    ]


def _redis() -> redis.Redis:
    return get_redis(current_app.config["CCADMIN_SETTINGS"])


def blocked_for(email: str, address: str) -> int | None:
    """Seconds until this account and address may try again; None when neither is blocked."""
    counters = _counters(email, address)
    try:
        pipe = _redis().pipeline(transaction=False)
        for key, _ in counters:
            pipe.get(key)
            pipe.ttl(key)
        answers = pipe.execute()
    except redis.RedisError as error:
        log.warning("login limits not checked, Redis unavailable: %s", error)
        return None
    waits = [
        max(int(ttl), 1)
        for (_, limit), value, ttl in zip(counters, answers[::2], answers[1::2], strict=True)
        if int(value or 0) >= limit
    ]
    return max(waits) if waits else None


def account_locks(emails: list[str]) -> dict[str, int]:
    """Seconds left on the lock of each of these accounts that is locked (one round trip)."""
    if not emails:
        return {}
    keys_ = [keys.login_failures_key(ACCOUNT, email.strip().lower()) for email in emails]
    try:
        pipe = _redis().pipeline(transaction=False)
        for key in keys_:
            pipe.get(key)
            pipe.ttl(key)
        answers = pipe.execute()
    except redis.RedisError as error:
        log.warning("login locks not read, Redis unavailable: %s", error)
        return {}
    return {
        email: max(int(ttl), 1)
        for email, value, ttl in zip(emails, answers[::2], answers[1::2], strict=True)
        if int(value or 0) >= ACCOUNT_LIMIT
    }


def unlock(email: str) -> None:
    """Clear the account's failures (an admin's unlock); the address counter stays."""
    _redis().delete(keys.login_failures_key(ACCOUNT, email.strip().lower()))


def record_failure(email: str, address: str) -> None:
    """Count one failed attempt against the account and the address."""
    try:
        pipe = _redis().pipeline()
        for key, _ in _counters(email, address):
            # The window starts at the first failure and is not extended by
            # later ones (INCR keeps the TTL that SET NX gave the key).
            pipe.set(key, 0, ex=WINDOW_SECONDS, nx=True)
            pipe.incr(key)
        pipe.execute()
    except redis.RedisError as error:
        log.warning("failed login not counted, Redis unavailable: %s", error)


def record_success(email: str) -> None:
    """A correct password clears the account's counter."""
    try:
        _redis().delete(keys.login_failures_key(ACCOUNT, email.strip().lower()))
    except redis.RedisError as error:
        log.warning("login counter not cleared, Redis unavailable: %s", error)
