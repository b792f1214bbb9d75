"""The API process on Redis Cluster and on a primary with a read replica, over real servers.

Everything is written with the worker's own functions (workers/redis_writes.py) and
read through `python -m ccadmin.api` over HTTP; the cluster comes from
cluster_support, the primary and replica are redis-server processes started here.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from common import api_support, cluster_support
from common.api_support import ENV_KEY, call
from common.cluster_support import NO_BINARY, redis_server_binary
from common.support import free_port, wait_until

from ccadmin import keys, payload
from ccadmin.api.entry_changes import SUBSCRIBER_NAME
from workers import redis_writes as worker_store

AUTH = {"X-API-Key": ENV_KEY}
# An admin-managed key, published to API_KEYS (in the {cfg} transaction).
ADMIN_KEY = "cluster-admin-key"
# Node timeout of the cluster whose primary is killed: long enough that the
# checks see the cluster still up with one node dead, short enough for a test.
FAILOVER_NODE_TIMEOUT_MS = 5000

# Shared fixtures, bound here so pytest finds them in this module.
start_api = api_support.start_api
redis_cluster = cluster_support.redis_cluster
cluster_client = cluster_support.cluster_client


# -- writing the store as the worker does ------------------------------------------


def publish_campaign(
    client, slug: str, *, fallback: str = "default", serve_at_data: bool = False
) -> None:
    """A campaign's config (and, if asked, `/data` pointing at it) via the worker's scripts."""
    config_json = payload.campaign_config(
        slug=slug,
        version=1,
        active=True,
        public=False,
        fallback=fallback,
        max_age=60,
        default_fields={"message": "Hello"},
    )
    assert worker_store.write_campaign(client, slug, 1, config_json)
    if serve_at_data:
        assert worker_store.write_default_campaign(client, worker_store.next_snapshot(client), slug)


def publish_admin_key(client) -> None:
    digest = hashlib.sha256(ADMIN_KEY.encode()).hexdigest()
    document = json.dumps({"name": "cluster", "campaigns": None})
    assert worker_store.write_api_keys(
        client, worker_store.next_snapshot(client), {digest: document}
    )


def publish_entries(client, slug: str, versions: dict[str, int]) -> dict[str, bytes]:
    """Write (and announce) each user's body at its version; returns the bodies."""
    bodies = {
        user_id: payload.render_payload(
            slug, user_id, version, {"message": f"{user_id} v{version}"}
        )
        for user_id, version in versions.items()
    }
    writes = [
        worker_store.EntryWrite(keys.entry_key(slug, user_id), versions[user_id], body)
        for user_id, body in bodies.items()
    ]
    assert worker_store.write_entries(client, writes).written == len(writes)
    return bodies


def delete_entry(client, slug: str, user_id: str, version: int) -> None:
    assert worker_store.write_entry(client, keys.entry_key(slug, user_id), version, b"")


def mark_ready(client) -> None:
    worker_store.mark_ready(client, json.dumps({"entries": "test"}))


def content(port: int, user_id: str, slug: str = "promo"):
    return call(port, f"/v1/{slug}?user_id={user_id}", headers=AUTH)


# -- Redis Cluster -----------------------------------------------------------------


def users_on_every_primary(cluster, client, slug: str) -> dict[int, str]:
    """One user id per primary (by port), checked with CLUSTER KEYSLOT on the nodes themselves."""
    found: dict[int, str] = {}
    candidate = 0
    while len(found) < cluster_support.PRIMARY_COUNT:
        user_id = f"u{candidate}"
        candidate += 1
        key = keys.entry_key(slug, user_id)
        port = cluster.primary_of_slot(client.keyslot(key))
        if port in found:
            continue
        owner = cluster.node_client(port)
        try:
            assert owner.execute_command("CLUSTER", "KEYSLOT", key) == client.keyslot(key)
        finally:
            owner.close()
        assert client.get_node_from_key(key).port == port
        found[port] = user_id
    return found


def cluster_env(cluster) -> dict[str, str]:
    return {"REDIS_CLUSTER_URLS": ",".join(cluster.urls)}


@pytest.fixture
def cluster_store(redis_cluster, cluster_client):
    """A built store on the shared cluster: `promo` at /data, `strict` answering 404s."""
    publish_campaign(cluster_client, "promo", serve_at_data=True)
    publish_campaign(cluster_client, "strict", fallback="not_found")
    publish_admin_key(cluster_client)
    users = users_on_every_primary(redis_cluster, cluster_client, "promo")
    bodies = publish_entries(cluster_client, "promo", {user_id: 1 for user_id in users.values()})
    mark_ready(cluster_client)
    return users, bodies


def test_cluster_serves_entries_from_every_primary(
    redis_cluster, cluster_client, cluster_store, start_api
):
    users, bodies = cluster_store
    assert sorted(users) == sorted(int(url.rsplit(":", 1)[1]) for url in redis_cluster.primary_urls)
    port = start_api(cluster_env(redis_cluster))

    for user_id in users.values():
        for path in (f"/v1/promo?user_id={user_id}", f"/data?user_id={user_id}"):
            answer = call(port, path, headers={"X-API-Key": ADMIN_KEY})
            assert answer.status == 200
            assert answer.body == bodies[user_id]
            assert answer.header("ETag") == '"1-promo-1"'
            assert answer.header("X-Content-Stale") is None
    assert call(port, "/readyz").status == 200
    # The API's metrics go to the cluster too (REDIS_URL is another Redis here).
    assert wait_until(lambda: cluster_client.exists(keys.METRIC_PROCESSES))


def test_cluster_answers_fallbacks_and_404s(
    redis_cluster, cluster_client, cluster_store, start_api
):
    users, _ = cluster_store
    deleted = next(iter(users.values()))
    delete_entry(cluster_client, "promo", deleted, 2)
    port = start_api(cluster_env(redis_cluster))

    for user_id in ("nobody", deleted):
        answer = content(port, user_id)
        assert answer.status == 200
        assert answer.json() == {
            "user_id": user_id,
            "campaign": "promo",
            "has_content": False,
            "version": 1,
            "message": "Hello",
        }
    strict = content(port, "nobody", slug="strict")
    assert (strict.status, strict.json()["error"]) == (404, "no_content")
    unknown = content(port, "nobody", slug="unknown")
    assert (unknown.status, unknown.json()["error"]) == (404, "campaign_not_found")


def test_cluster_answers_503_until_the_ready_marker(redis_cluster, cluster_client, start_api):
    publish_campaign(cluster_client, "promo")
    bodies = publish_entries(cluster_client, "promo", {"42": 1})
    port = start_api(cluster_env(redis_cluster))

    missing = content(port, "nobody")
    assert (missing.status, missing.json()["error"]) == (503, "not_ready")
    assert missing.header("Retry-After") == "5"
    assert call(port, "/readyz").status == 503
    # Content that is there is served; only "no content" needs a complete build.
    assert content(port, "42").body == bodies["42"]

    mark_ready(cluster_client)
    assert wait_until(lambda: content(port, "nobody").status == 200)
    assert call(port, "/readyz").status == 200


def test_cluster_serves_each_update_at_once(
    redis_cluster, cluster_client, cluster_store, start_api
):
    users, bodies = cluster_store
    port = start_api(cluster_env(redis_cluster))
    for user_id in users.values():
        for _ in range(3):  # read often: a cache, if there were one, would hold the entry now
            assert content(port, user_id).body == bodies[user_id]

    updated = publish_entries(cluster_client, "promo", {user_id: 2 for user_id in users.values()})
    created = publish_entries(cluster_client, "promo", {"newcomer": 1})

    # No cache on a cluster: the very next request reads the write.
    for user_id in users.values():
        answer = content(port, user_id)
        assert (answer.body, answer.header("ETag")) == (updated[user_id], '"1-promo-2"')
    assert content(port, "newcomer").body == created["newcomer"]
    publish_campaign(cluster_client, "later")
    later = publish_entries(cluster_client, "later", {"7": 1})
    assert wait_until(lambda: content(port, "7", slug="later").body == later["7"])


def test_api_starts_while_no_cluster_node_answers(start_api):
    # redis-py loads the slot map when a cluster client is made: the API must
    # still start (its probes answer) and give designed 503s, not crash.
    port = start_api({"REDIS_CLUSTER_URLS": f"redis://127.0.0.1:{free_port()}"})

    assert call(port, "/healthz").status == 200
    assert call(port, "/readyz").status == 503
    answer = content(port, "42")
    assert (answer.status, answer.json()["error"]) == (503, "redis_unavailable")
    assert answer.header("Retry-After") == "1"


@pytest.fixture
def slow_failover_cluster(tmp_path: Path) -> Iterator[cluster_support.LocalCluster]:
    """A cluster of the test's own whose nodes wait FAILOVER_NODE_TIMEOUT_MS before
    declaring a silent peer failed: the window in which only its slots are lost."""
    if redis_server_binary() is None:
        pytest.fail(NO_BINARY, pytrace=False)
    folder = tmp_path / "redis-cluster"
    with cluster_support.LocalCluster(folder, node_timeout_ms=FAILOVER_NODE_TIMEOUT_MS) as cluster:
        yield cluster


def flags_failed(node: redis.Redis, victim: int) -> bool:
    """Whether `node` has declared the node on port `victim` failed (it stays so until it
    rejoins): from then on, until a replica is promoted, Redis Cluster refuses every slot."""
    views = cluster_support.parse_cluster_nodes(node.execute_command("CLUSTER", "NODES").decode())
    return "fail" in views[victim].flags


def test_cluster_failover_costs_only_the_failed_nodes_entries(slow_failover_cluster, start_api):
    cluster = slow_failover_cluster
    client = cluster.client()
    publish_campaign(client, "promo")
    users = users_on_every_primary(cluster, client, "promo")
    bodies = publish_entries(client, "promo", {user_id: 1 for user_id in users.values()})
    mark_ready(client)
    port = start_api(cluster_env(cluster))
    for user_id in users.values():
        assert content(port, user_id).body == bodies[user_id]

    # Kill a primary holding neither the config nor the ready marker, if one does.
    config_nodes = {
        cluster.primary_of_slot(client.keyslot(key)) for key in (keys.READY, keys.CAMPAIGNS)
    }
    victim = next((node for node in users if node not in config_nodes), next(iter(users)))
    healthy = {node: cluster.node_client(node) for node in users if node != victim}
    cluster.kill_node(victim)
    isolated = []

    def check_once() -> None:
        for node, user_id in users.items():
            if node == victim:
                answer = content(port, user_id)
                if answer.status == 503:
                    assert answer.json()["error"] == "redis_unavailable"
                else:
                    # The entry itself, maybe a last-known copy: never a fallback or a 404.
                    assert (answer.status, answer.body) == (200, bodies[user_id])
                continue
            failed_before = flags_failed(healthy[node], victim)
            answer = content(port, user_id)
            if not failed_before and not flags_failed(healthy[node], victim):
                # The node still serves (the cluster has not declared the victim
                # failed): the dead node's errors must not cost its entries.
                assert (answer.status, answer.body) == (200, bodies[user_id])
                assert answer.header("X-Content-Stale") is None
                isolated.append(user_id)
            elif answer.status == 503:
                # Redis Cluster refuses every slot from the failure to the promotion.
                assert answer.json()["error"] == "redis_unavailable"
            else:
                assert (answer.status, answer.body) == (200, bodies[user_id])

    stop = threading.Event()
    problems: list[AssertionError] = []

    def keep_checking() -> None:
        while not stop.is_set():
            try:
                check_once()
            except AssertionError as problem:
                problems.append(problem)
                return

    checker = threading.Thread(target=keep_checking)
    checker.start()
    try:
        cluster.wait_for_failover(victim, timeout=60)
    finally:
        stop.set()
        checker.join(timeout=30)
    assert not problems
    assert isolated

    def served_fresh(user_id: str):
        answer = content(port, user_id)
        return answer.status == 200 and answer.header("X-Content-Stale") is None and answer

    # The promoted replica serves the failed node's entries again, the others too.
    for user_id in users.values():
        assert wait_until(lambda u=user_id: served_fresh(u), timeout=15).body == bodies[user_id]
    client.close()
    for node_client in healthy.values():
        node_client.close()


# -- a primary with a read replica ------------------------------------------------------


@dataclass
class Replicated:
    """A primary and its replica, each a redis-server of this test."""

    primary_url: str
    replica_url: str
    primary: redis.Redis
    replica: redis.Redis
    processes: dict[str, subprocess.Popen]

    def kill(self, role: str) -> None:
        self.processes[role].send_signal(signal.SIGKILL)
        self.processes[role].wait(timeout=10)

    def replica_link(self) -> bytes:
        """The replica's link state as ROLE reports it (b"connected" when it follows)."""
        return self.replica.execute_command("ROLE")[3]

    def api_env(self) -> dict[str, str]:
        return {"REDIS_URL": self.primary_url, "REDIS_READ_URLS": self.replica_url}


def _redis_server(binary: str, folder: Path, port: int, *extra: str) -> subprocess.Popen:
    folder.mkdir(parents=True)
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    command += ["--appendonly", "no", "--dir", str(folder), "--repl-diskless-sync-delay", "0"]
    with open(folder / "console.log", "ab") as console:
        return subprocess.Popen(
            [*command, *extra], stdout=console, stderr=subprocess.STDOUT, start_new_session=True
        )


@pytest.fixture
def replicated(tmp_path: Path) -> Iterator[Replicated]:
    """A primary and one replica following it (synced before the test starts)."""
    binary = redis_server_binary()
    if binary is None:
        pytest.fail(NO_BINARY, pytrace=False)
    primary_port, replica_port = free_port(), free_port()
    processes = {"primary": _redis_server(binary, tmp_path / "primary", primary_port)}
    processes["replica"] = _redis_server(
        binary, tmp_path / "replica", replica_port, "--replicaof", "127.0.0.1", str(primary_port)
    )
    pair = Replicated(
        primary_url=f"redis://127.0.0.1:{primary_port}/0",
        replica_url=f"redis://127.0.0.1:{replica_port}/0",
        primary=redis.Redis(port=primary_port, socket_timeout=5),
        replica=redis.Redis(port=replica_port, socket_timeout=5),
        processes=processes,
    )

    def following() -> bool:
        try:
            return pair.replica_link() == b"connected"
        except redis.RedisError:
            return False

    try:
        wait_until(following, timeout=30)
        yield pair
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)
        pair.primary.close()
        pair.replica.close()


def built_on_primary(pair: Replicated) -> dict[str, bytes]:
    """`promo` at /data with user 42's content, on the primary; waits for the replica."""
    publish_campaign(pair.primary, "promo", serve_at_data=True)
    bodies = publish_entries(pair.primary, "promo", {"42": 1})
    mark_ready(pair.primary)
    wait_until(lambda: pair.replica.exists(keys.READY))
    return bodies


def hmget_calls(client: redis.Redis) -> int:
    return client.info("commandstats").get("cmdstat_hmget", {}).get("calls", 0)


def subscribers(client: redis.Redis) -> list[str]:
    return [entry["name"] for entry in client.client_list(_type="pubsub")]


def test_replica_serves_what_the_primary_holds(replicated, start_api):
    bodies = built_on_primary(replicated)
    port = start_api(replicated.api_env())
    wait_until(lambda: SUBSCRIBER_NAME in subscribers(replicated.replica))
    before = hmget_calls(replicated.replica), hmget_calls(replicated.primary)

    answer = content(port, "42")
    assert (answer.status, answer.body) == (200, bodies["42"])
    assert call(port, "/data?user_id=42", headers=AUTH).body == bodies["42"]
    assert call(port, "/readyz").status == 200

    # Read from the replica; the primary saw none of it. The cache listens there too.
    assert hmget_calls(replicated.replica) > before[0]
    assert hmget_calls(replicated.primary) == before[1]
    assert SUBSCRIBER_NAME not in subscribers(replicated.primary)

    # A write on the primary reaches the API through the replica (and its announcement).
    updated = publish_entries(replicated.primary, "promo", {"42": 2})
    assert wait_until(lambda: content(port, "42").body == updated["42"])
    # Metrics are writes: they go to the primary (a replica refuses them).
    assert wait_until(lambda: replicated.primary.exists(keys.METRIC_PROCESSES))


def test_a_lagging_replica_never_turns_into_empty_messages(replicated, start_api):
    bodies = built_on_primary(replicated)
    port = start_api(replicated.api_env())
    assert content(port, "42").body == bodies["42"]

    # The replica stops applying the primary's stream, yet answers reads and
    # still reports its link as connected: it lags without knowing it.
    replicated.replica.execute_command("CLIENT", "PAUSE", 60_000, "WRITE")
    try:
        newer = publish_entries(replicated.primary, "promo", {"42": 2, "7": 1})
        publish_campaign(replicated.primary, "later")
        later = publish_entries(replicated.primary, "later", {"7": 1})
        assert replicated.replica.hmget(keys.entry_key("promo", "7"), "v", "b") == [None, None]
        assert not replicated.replica.hexists(keys.CAMPAIGNS, "later")
        assert replicated.replica_link() == b"connected"

        # User 7 exists only on the primary: confirmed there, not a fallback.
        answer = content(port, "7")
        assert (answer.status, answer.body) == (200, newer["7"])
        assert answer.json()["has_content"] is True
        # Content the replica has is answered by the replica (the older version
        # here): the request above was the confirmation, not a read of the primary.
        assert content(port, "42").body == bodies["42"]
        # No content anywhere: the primary confirms, and the fallback is right.
        nobody = content(port, "nobody")
        assert (nobody.status, nobody.json()["has_content"]) == (200, False)
        # A campaign the replica does not know yet: found on the primary, not a 404.
        assert content(port, "7", slug="later").body == later["7"]
    finally:
        replicated.replica.execute_command("CLIENT", "UNPAUSE")
    assert wait_until(lambda: content(port, "42").body == newer["42"])


def test_a_replica_that_stops_following_is_not_read(replicated, start_api):
    bodies = built_on_primary(replicated)
    port = start_api(replicated.api_env())
    assert content(port, "42").body == bodies["42"]

    replicated.replica.execute_command("REPLICAOF", "NO", "ONE")
    updated = publish_entries(replicated.primary, "promo", {"42": 2})
    assert replicated.replica.hget(keys.entry_key("promo", "42"), "v") == b"1"

    # Detached, the replica would serve version 1 for ever: the API reads the primary.
    assert wait_until(lambda: content(port, "42").body == updated["42"])


def test_the_primary_answers_while_the_replica_is_down(replicated, start_api):
    bodies = built_on_primary(replicated)
    port = start_api(replicated.api_env())
    assert content(port, "42").body == bodies["42"]

    replicated.kill("replica")
    updated = publish_entries(replicated.primary, "promo", {"42": 2})
    assert wait_until(lambda: content(port, "42").body == updated["42"])
    for _ in range(5):
        answer = content(port, "42")
        assert (answer.status, answer.body) == (200, updated["42"])
        assert answer.header("X-Content-Stale") is None
    nobody = content(port, "nobody")
    assert (nobody.status, nobody.json()["has_content"]) == (200, False)
    assert call(port, "/readyz").status == 200


def test_with_the_primary_down_the_replica_answers_only_what_it_holds(replicated, start_api):
    bodies = built_on_primary(replicated)
    port = start_api(replicated.api_env())
    assert content(port, "42").body == bodies["42"]

    replicated.kill("primary")
    wait_until(lambda: replicated.replica_link() != b"connected")
    # Content the replica holds, marked stale once the API sees the replica
    # cut off from the primary; "no content" cannot be confirmed: 503.
    assert wait_until(lambda: content(port, "42").header("X-Content-Stale") == "1")
    assert content(port, "42").body == bodies["42"]
    nobody = content(port, "nobody")
    assert (nobody.status, nobody.json()["error"]) == (503, "redis_unavailable")
