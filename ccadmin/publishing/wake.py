"""Waking the drainers: one Redis round trip after a commit, whatever it wrote.

A wake-up is a list of at most one item per lane: a burst of a thousand
saves leaves one pending wake-up, not a thousand jobs. Which lane an event
goes to is decided here, by its size, so the web wakes only the drainers
that have work: single edits and small batches the fresh lane, import
batches the bulk lane (workers/drain.py). Drainers block on their list
(`wait_for_wake`) and poll the outbox when it stays quiet, so a wake-up lost
with Redis only delays a change by one poll, never loses it.
"""

from __future__ import annotations

from collections.abc import Iterable

import redis

from ccadmin import keys

# What an outbox event keeps of a refused wake-up (the admin shows it).
_ERROR_MAX_LENGTH = 500
# Content events of more entries than this (import batches) are bulk work.
FRESH_LANE_MAX_ENTRIES = 1_000
LANE_FRESH = "fresh"
LANE_BULK = "bulk"
WAKE_KEYS = {LANE_FRESH: keys.PUBLISH_WAKE, LANE_BULK: keys.PUBLISH_WAKE_BULK}


def lane_for(entry_count: int) -> str:
    """The lane that publishes an event of this many entries (configs and keys count 0)."""
    return LANE_BULK if entry_count > FRESH_LANE_MAX_ENTRIES else LANE_FRESH


def wake_drainers(connection: redis.Redis, lanes: Iterable[str] = (LANE_FRESH,)) -> None:
    """Leave one pending wake-up for each lane's drainers (raises if Redis refuses)."""
    pipe = connection.pipeline(transaction=False)
    for lane in sorted(lanes):
        pipe.lpush(WAKE_KEYS[lane], 1)
        pipe.ltrim(WAKE_KEYS[lane], 0, 0)
    pipe.execute()


def wait_for_wake(connection: redis.Redis, lane: str, timeout: float) -> bool:
    """Block until a wake-up for `lane` arrives (True) or `timeout` seconds pass (False)."""
    return connection.blpop([WAKE_KEYS[lane]], timeout=timeout) is not None


def redis_is_full(error: BaseException) -> bool:
    """Redis at its maxmemory: refused before a command runs (OutOfMemoryError), or
    inside a Lua script whose write it refused (a ResponseError naming -OOM)."""
    if isinstance(error, redis.exceptions.OutOfMemoryError):
        return True
    return isinstance(error, redis.ResponseError) and "OOM command not allowed" in str(error)


def wake_failure_reason(error: BaseException) -> str:
    """One line for the marketer and the operator: what Redis said, named plainly."""
    if redis_is_full(error):
        cause = "Redis is full"
    elif isinstance(error, (redis.ConnectionError, redis.TimeoutError, OSError)):
        cause = "Redis is unreachable"
    else:
        cause = "Redis refused the wake-up"
    return f"{cause}: {type(error).__name__}: {error}"[:_ERROR_MAX_LENGTH]
