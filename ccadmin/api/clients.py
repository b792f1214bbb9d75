"""The API's Redis clients: fail-fast pools, the read replica, the packed hot-path HMGET.

Every client here times out after API_REDIS_TIMEOUT and never retries on a
single Redis: the breaker (breaker.py) and the last-known copies handle
failures, and a retry would only double the wait on a Redis that is down.
"""

from __future__ import annotations

import os
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ccadmin import keys
from ccadmin.config import Settings
from ccadmin.redis_client import cluster_client

# Extra pool connections beyond the serving threads: the config poller and
# readiness probes must not wait behind requests.
SPARE_CONNECTIONS = 2
# On Redis Cluster, attempts after a node failed, each on a reloaded slot map:
# one finds the promoted replica once a failover is done; more would only add
# timeouts while it is not, and the caller gives up after 2 s.
CLUSTER_RETRIES = 1
# The tail of the one command on the hot path, `HMGET key v b`, packed once:
# going through redis-py's command layer (argument checks, retry wrapper,
# pool checkout) cost more CPU than the rest of the request (docs/performance.md).
_HMGET_HEAD = b"*4\r\n$5\r\nHMGET\r\n"
_HMGET_FIELDS = b"".join(
    b"$%d\r\n%s\r\n" % (len(field), field)
    for field in (keys.ENTRY_VERSION_FIELD.encode(), keys.ENTRY_BODY_FIELD.encode())
)


def _pool(url: str, settings: Settings, **overrides: Any) -> redis.BlockingConnectionPool:
    """A pool for one Redis: fail fast, never retry, one connection per thread."""
    return redis.BlockingConnectionPool(
        **{**redis.connection.parse_url(url), **overrides},
        max_connections=settings.api_threads + SPARE_CONNECTIONS,
        # Waiting for a free connection counts against the same budget as a
        # Redis call; with one connection per thread it should never happen.
        timeout=settings.api_redis_timeout,
        socket_timeout=settings.api_redis_timeout,
        socket_connect_timeout=settings.api_redis_timeout,
        # A retry doubles the wait on a Redis that is down; the breaker and
        # the last-known copies handle failures instead.
        retry=Retry(NoBackoff(), 0),
    )


def connect(settings: Settings) -> redis.Redis | redis.RedisCluster:
    """The store's client for one process: the cluster when configured, else REDIS_URL.

    On a cluster this contacts the seed nodes at once (redis-py loads the slot
    map in the constructor) and raises RedisClusterException if none answers.
    """
    if settings.redis_cluster_urls:
        return cluster_client(
            settings.redis_cluster_urls,
            retry=Retry(NoBackoff(), CLUSTER_RETRIES),
            socket_timeout=settings.api_redis_timeout,
            socket_connect_timeout=settings.api_redis_timeout,
        )
    return redis.Redis(connection_pool=_pool(settings.effective_redis_url, settings))


def connect_replica(settings: Settings, primary: redis.Redis) -> redis.Redis:
    """This process's read replica: one of REDIS_READ_URLS, picked by pid.

    Processes of one host have consecutive pids, so they spread over the
    replicas. The database number is the primary's: a replica holds the
    primary's databases, whatever its URL says.
    """
    url = settings.redis_read_urls[os.getpid() % len(settings.redis_read_urls)]
    db = primary.connection_pool.connection_kwargs.get("db", 0)
    return redis.Redis(connection_pool=_pool(url, settings, db=db))


def client_address(client: redis.Redis) -> str:
    """host:port (or the socket path) of a client, for logs: never its password."""
    options = client.connection_pool.connection_kwargs
    return options.get("path") or f"{options.get('host')}:{options.get('port')}"


def own_connection(client: redis.Redis) -> Any:
    """A connection outside the client's pool, with the pool's settings."""
    pool = client.connection_pool
    return pool.connection_class(**pool.connection_kwargs)


def hmget_entry(connection: Any, key: str) -> list[bytes | None]:
    """`HMGET key v b` on a connection of one thread's own (with the pool's timeouts)."""
    encoded = key.encode("utf-8")
    command = [b"%s$%d\r\n%s\r\n%s" % (_HMGET_HEAD, len(encoded), encoded, _HMGET_FIELDS)]
    # A connection opened before a Redis restart fails on first use; one
    # reconnect tells a dead socket from a dead Redis, which would otherwise
    # trip the breaker for every thread after each restart.
    reused = connection._sock is not None
    while True:
        try:
            connection.send_packed_command(command, check_health=False)
            return connection.read_response()
        except redis.TimeoutError:
            connection.disconnect()
            raise
        except redis.ConnectionError:
            connection.disconnect()
            if not reused:
                raise
            reused = False
        except BaseException:
            # Whatever was half sent or half read must not reach the next request.
            connection.disconnect()
            raise
