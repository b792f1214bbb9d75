"""Redis clients per process for the web app, the CLI and the workers.

Two roles: `get_redis` is the Redis RQ's queues and the admin's state live on
(REDIS_URL, or the embedded one); `get_store` is the content store the API
reads, which is the same Redis unless REDIS_CLUSTER_URLS puts it on a cluster.
"""

from __future__ import annotations

from functools import lru_cache

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.cluster import ClusterNode
from redis.retry import Retry

from ccadmin import embedded_redis
from ccadmin.config import Settings

# Short timeouts and one retry: a save must not hang when Redis is down, it
# must fall back to "publish pending" quickly (docs/operations.md). redis-py's
# default (10 retries) would hold a marketer's request for many seconds.
_TIMEOUTS = {"socket_timeout": 2.0, "socket_connect_timeout": 1.0}


def _retry(retries: int = 1) -> Retry:
    return Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.2), retries=retries)


@lru_cache(maxsize=8)
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, health_check_interval=30, retry=_retry(), **_TIMEOUTS)


@lru_cache(maxsize=4)
def _cluster(urls: tuple[str, ...]) -> redis.RedisCluster:
    return cluster_client(urls)


def cluster_client(
    urls: tuple[str, ...], retry: Retry | None = None, **options: object
) -> redis.RedisCluster:
    """A Redis Cluster client from seed node URLs (any reachable one will do).

    Retries cover a failover: a node that stops answering makes the client
    reload the slot map from the others and try again (three by default).
    """
    parsed = [redis.connection.parse_url(url) for url in urls]
    nodes = [ClusterNode(node["host"], node.get("port", 6379)) for node in parsed]
    settings: dict[str, object] = {
        name: parsed[0][name] for name in ("username", "password") if name in parsed[0]
    }
    if parsed[0].get("connection_class") is redis.SSLConnection:
        settings["ssl"] = True
    settings.update(_TIMEOUTS)
    settings.update(options)
    return redis.RedisCluster(startup_nodes=nodes, retry=retry or _retry(3), **settings)


def get_redis(settings: Settings) -> redis.Redis:
    """The queues' Redis, starting the embedded Redis first when it is the default."""
    if settings.embedded_redis:
        embedded_redis.ensure_running(settings.instance_path)
    return _client(settings.effective_redis_url)


def get_store(settings: Settings) -> redis.Redis:
    """The content store: the cluster when configured, else the queues' Redis."""
    if settings.redis_cluster_urls:
        return _cluster(settings.redis_cluster_urls)
    return get_redis(settings)
