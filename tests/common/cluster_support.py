"""pytest fixtures for a real Redis Cluster on loopback (devtools.local_cluster).

The cluster itself lives in the library so the benchmark can start one too;
the names tests use are re-exported here (`from cluster_support import LocalCluster`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from devtools.local_cluster import (
    HOST,
    NO_BINARY,
    NODE_TIMEOUT_MS,
    PRIMARY_COUNT,
    SLOT_COUNT,
    LocalCluster,
    LocalClusterError,
    NodeView,
    PortTakenError,
    RedisServerMissingError,
    parse_cluster_nodes,
    redis_server_binary,
)

__all__ = [
    "HOST",
    "NO_BINARY",
    "NODE_TIMEOUT_MS",
    "PRIMARY_COUNT",
    "SLOT_COUNT",
    "LocalCluster",
    "LocalClusterError",
    "NodeView",
    "PortTakenError",
    "RedisServerMissingError",
    "cluster_client",
    "parse_cluster_nodes",
    "private_redis_cluster",
    "redis_cluster",
    "redis_server_binary",
]


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """One cluster for the whole session; tests that break nodes use `private_redis_cluster`."""
    if redis_server_binary() is None:
        pytest.fail(NO_BINARY, pytrace=False)
    with LocalCluster(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster


@pytest.fixture
def private_redis_cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """A cluster of the test's own, which it may kill, stop and restart nodes of."""
    if redis_server_binary() is None:
        pytest.fail(NO_BINARY, pytrace=False)
    with LocalCluster(tmp_path / "redis-cluster") as cluster:
        yield cluster


@pytest.fixture
def cluster_client(redis_cluster: LocalCluster) -> Iterator[redis.RedisCluster]:
    """A client of the shared cluster, every primary emptied before and after the test."""
    redis_cluster.flushall()
    client = redis_cluster.client()
    yield client
    client.close()
    redis_cluster.flushall()
