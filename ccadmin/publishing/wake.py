"""Waking the drainers: one Redis round trip after a commit, whatever it wrote.

The wake-up is a list of at most one item (keys.PUBLISH_WAKE): a burst of a
thousand saves leaves one pending wake-up, not a thousand jobs. Drainers
block on it (`wait_for_wake`) and poll the outbox when it stays quiet, so a
wake-up lost with Redis only delays a change by one poll, never loses it.
"""

from __future__ import annotations

import redis

from ccadmin import keys

# What an outbox event keeps of a refused wake-up (the admin shows it).
_ERROR_MAX_LENGTH = 500


def wake_drainers(connection: redis.Redis) -> None:
    """Leave one pending wake-up for the drainers (raises if Redis refuses)."""
    pipe = connection.pipeline(transaction=False)
    pipe.lpush(keys.PUBLISH_WAKE, 1)
    pipe.ltrim(keys.PUBLISH_WAKE, 0, 0)
    pipe.execute()


def wait_for_wake(connection: redis.Redis, timeout: float) -> bool:
    """Block until a wake-up arrives (True) or `timeout` seconds pass (False)."""
    return connection.blpop([keys.PUBLISH_WAKE], timeout=timeout) is not None


def wake_failure_reason(error: BaseException) -> str:
    """One line for the marketer and the operator: what Redis said, named plainly."""
    if isinstance(error, redis.exceptions.OutOfMemoryError):
        cause = "Redis is full"
    elif isinstance(error, (redis.ConnectionError, redis.TimeoutError, OSError)):
        cause = "Redis is unreachable"
    else:
        cause = "Redis refused the wake-up"
    return f"{cause}: {type(error).__name__}: {error}"[:_ERROR_MAX_LENGTH]
