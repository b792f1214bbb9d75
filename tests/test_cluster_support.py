"""The local Redis Cluster acts like a real one: slots, transactions, scripts, pub/sub, failover."""

from __future__ import annotations

import pytest
import redis
from common.cluster_support import LocalCluster
from common.support import wait_until

COPY_BOTH = """
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[1])
return redis.call('MGET', KEYS[1], KEYS[2])
"""


def test_three_primaries_each_with_one_replica_cover_every_slot(redis_cluster):
    views = redis_cluster.view()
    primaries = {view.node_id: port for port, view in views.items() if view.slots}
    replicas = {port: view.primary_id for port, view in views.items() if "slave" in view.flags}

    assert len(primaries) == 3
    assert sorted(replicas.values()) == sorted(primaries)
    assert set().union(*(views[port].slots for port in primaries.values())) == set(range(16384))
    assert sorted(redis_cluster.primary_urls + redis_cluster.replica_urls) == sorted(
        redis_cluster.urls
    )


def test_hash_tagged_keys_share_a_slot_and_a_transaction(redis_cluster, cluster_client):
    profile, version = "{user:42}:profile", "{user:42}:version"
    slot = cluster_client.keyslot(profile)
    owner = redis_cluster.node_client(redis_cluster.primary_of_slot(slot))
    assert owner.execute_command("CLUSTER", "KEYSLOT", version) == slot

    transaction = cluster_client.pipeline(transaction=True)
    transaction.set(profile, "hello")
    transaction.incr(version)
    transaction.incr(version)
    transaction.get(profile)

    # Cluster transactions return raw replies: SET gives b"OK" where a plain client gives True.
    assert transaction.execute() == [b"OK", 1, 2, b"hello"]
    assert owner.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 2
    assert owner.mget(profile, version) == [b"hello", b"2"]


def test_a_transaction_across_two_slots_is_refused(cluster_client):
    transaction = cluster_client.pipeline(transaction=True)
    transaction.set("{user:1}:profile", "a")
    transaction.set("{user:2}:profile", "b")

    with pytest.raises(redis.exceptions.CrossSlotTransactionError):
        transaction.execute()
    assert cluster_client.exists("{user:1}:profile", "{user:2}:profile") == 0


def test_a_script_runs_on_one_hash_tag_and_fails_crossslot_on_two(redis_cluster, cluster_client):
    copy_both = cluster_client.register_script(COPY_BOTH)
    assert copy_both(keys=["{user:7}:a", "{user:7}:b"], args=["v1"]) == [b"v1", b"v1"]

    # redis-py refuses before sending; the server refuses the same call on its own.
    split = ["{user:7}:c", "{user:8}:c"]
    with pytest.raises(redis.exceptions.RedisClusterException, match="same key slot"):
        copy_both(keys=split, args=["v2"])
    owner = redis_cluster.primary_of_slot(cluster_client.keyslot(split[0]))
    node = redis_cluster.node_client(owner)
    with pytest.raises(redis.exceptions.ClusterCrossSlotError):
        copy_both(keys=split, args=["v2"], client=node)
    assert cluster_client.exists(*split) == 0


def test_publish_on_one_node_reaches_a_subscriber_on_another(redis_cluster):
    views = redis_cluster.view()
    # A replica listens; a primary it does not replicate publishes, so only the bus links them.
    listener_port, listener = next((port, v) for port, v in views.items() if v.primary_id)
    publisher_port = next(
        port for port, view in views.items() if view.slots and view.node_id != listener.primary_id
    )
    subscription = redis_cluster.node_client(listener_port).pubsub()
    subscription.subscribe("campaign-updates")
    # Publish only once the listener's node has registered the subscription.
    confirmed = wait_until(lambda: subscription.get_message(timeout=0.1), timeout=5)
    assert confirmed["type"] == "subscribe"

    redis_cluster.node_client(publisher_port).publish("campaign-updates", "promo v2")
    message = wait_until(lambda: subscription.get_message(timeout=0.1), timeout=5)

    assert (message["type"], message["channel"], message["data"]) == (
        "message",
        b"campaign-updates",
        b"promo v2",
    )
    subscription.close()


def _write_acknowledged_by_replica(cluster: LocalCluster, key: str, value: str) -> int:
    """Write `key` and wait until the replica has it; return the primary's port."""
    client = cluster.client()
    client.set(key, value)
    primary = cluster.primary_of_slot(client.keyslot(key))
    assert cluster.node_client(primary).wait(1, 1000) == 1
    client.close()
    return primary


def test_killed_primary_fails_over_keeping_replicated_writes(private_redis_cluster):
    cluster = private_redis_cluster
    client = cluster.client()
    primary = _write_acknowledged_by_replica(cluster, "{entry:1}:payload", "before")
    replica = cluster.replica_of(primary)

    cluster.kill_node(primary)
    promoted = cluster.wait_for_failover(primary, timeout=20)

    assert promoted == replica
    survivor = cluster.node_client(promoted)
    assert survivor.get("{entry:1}:payload") == b"before"
    assert survivor.set("{entry:1}:payload", "after")
    # A client that knew the old topology finds the new primary by itself.
    assert client.get("{entry:1}:payload") == b"after"
    assert cluster.url(primary) not in cluster.primary_urls

    cluster.restart_node(primary)

    assert cluster.replica_of(promoted) == primary
    assert cluster.url(primary) in cluster.replica_urls
    assert survivor.set("{entry:1}:payload", "rejoined")
    assert survivor.wait(1, 1000) == 1
    client.close()


def test_stopped_primary_fails_over_and_restarts_as_its_replica(private_redis_cluster):
    cluster = private_redis_cluster
    primary = _write_acknowledged_by_replica(cluster, "{entry:2}:payload", "kept")

    cluster.stop_node(primary)
    promoted = cluster.wait_for_failover(primary, timeout=20)
    cluster.restart_node(primary)

    assert cluster.view()[primary].primary_id == cluster.view()[promoted].node_id
    with cluster.client() as client:
        assert client.get("{entry:2}:payload") == b"kept"
