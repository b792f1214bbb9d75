"""One Redis client per process for the web app, the CLI and the workers."""

from __future__ import annotations

from functools import lru_cache

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from ccadmin import embedded_redis
from ccadmin.config import Settings


@lru_cache(maxsize=8)
def _client(url: str) -> redis.Redis:
    # Short timeouts and one retry: a save must not hang when Redis is down, it
    # must fall back to "publish pending" quickly (DESIGN 5.2). redis-py's
    # default (10 retries) would hold a marketer's request for many seconds.
    return redis.Redis.from_url(
        url,
        socket_timeout=2.0,
        socket_connect_timeout=1.0,
        health_check_interval=30,
        retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.2), retries=1),
    )


def get_redis(settings: Settings) -> redis.Redis:
    """The shared client, starting the embedded Redis first when it is the default."""
    if settings.embedded_redis:
        embedded_redis.ensure_running(settings.instance_path)
    return _client(settings.effective_redis_url)
