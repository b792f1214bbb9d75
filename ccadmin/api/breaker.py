"""The circuit breaker around every Redis call the API makes.

A Redis that is down must cost one timeout per BREAKER_SECONDS, not one per
request: after a failure, calls skip it until one call probes it again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import redis
from redis.exceptions import ClusterError, RedisClusterException

log = logging.getLogger(__name__)

# After a connection error or timeout, requests skip Redis for this long (one
# request probes when it ends). Short enough to recover fast, long enough
# that a hung Redis cannot tie up every thread in timeouts.
BREAKER_SECONDS = 0.75
# Errors that mean a node does not answer: its breaker trips. (A cluster that
# cannot be reached at all, or a slot no node serves, is not a RedisError.)
_DOWN_ERRORS = (redis.ConnectionError, redis.TimeoutError, ClusterError, RedisClusterException)


class RedisUnavailable(Exception):
    """Redis did not answer (down, timing out, or the breaker is open)."""


class Breaker:
    """Skips one Redis for BREAKER_SECONDS after it failed; then one call probes it."""

    def __init__(self, name: str, meanwhile: str) -> None:
        self.name = name
        # What answers while it is down, for the log line.
        self.meanwhile = meanwhile
        self._retry_at = 0.0
        self._tripped = False

    def call(self, command: Callable[..., Any], *args: Any, probe: bool = False) -> Any:
        """`command(*args)`, or RedisUnavailable when it fails or failed moments ago.

        `probe` calls even while the breaker is open (the config poller's
        calls double as the probe).
        """
        if not probe:
            now = time.monotonic()
            if now < self._retry_at:
                raise RedisUnavailable(f"{self.name} failed moments ago; not retrying yet")
            if self._tripped:
                # This request probes; the others keep skipping until it is done.
                self._retry_at = now + BREAKER_SECONDS
        try:
            result = command(*args)
        except _DOWN_ERRORS as exc:
            if not self._tripped:
                log.warning("%s unreachable (%s); %s", self.name, exc, self.meanwhile)
            self._tripped = True
            self._retry_at = time.monotonic() + BREAKER_SECONDS
            raise RedisUnavailable(str(exc)) from exc
        except redis.RedisError as exc:
            raise RedisUnavailable(str(exc)) from exc
        if self._tripped:
            self._tripped = False
            self._retry_at = 0.0
            log.info("%s answers again", self.name)
        return result
