"""Publishing, reconcile and the store's scripts on a real Redis Cluster (3 primaries, 3 replicas).

The queues stay on the suite's single Redis (RQ needs one); the content store
is the cluster, as with REDIS_CLUSTER_URLS in production.
"""

from __future__ import annotations

import dataclasses
import json
import time

import pytest
from common.publishing_support import (
    delete_entry,
    make_campaign,
    publish_pending,
    save_entry,
    stored_entry,
)
from sqlalchemy import select

from ccadmin import keys, payload
from ccadmin.extensions import db
from ccadmin.models import ContentEntry
from ccadmin.redis_client import get_store
from workers import redis_writes
from workers.rebuild import reconcile
from workers.redis_writes import redis_run_id


@pytest.fixture
def on_cluster(app, redis_cluster, cluster_client):
    """The app's content store is the cluster (REDIS_CLUSTER_URLS); yields its client."""
    settings = app.config["CCADMIN_SETTINGS"]
    app.config["CCADMIN_SETTINGS"] = dataclasses.replace(
        settings, redis_cluster_urls=tuple(redis_cluster.urls)
    )
    yield get_store(app.config["CCADMIN_SETTINGS"])
    app.config["CCADMIN_SETTINGS"] = settings


def primary_of(client, key: str) -> str:
    return client.get_node_from_key(key).name


def test_drained_entries_spread_over_every_primary(app, redis_client, on_cluster):
    campaign = make_campaign("spring")
    for number in range(60):
        save_entry(campaign, str(number), f"Hello {number}")
    delete_entry(campaign, "7")
    publish_pending()

    rows = db.session.execute(select(ContentEntry)).scalars().all()
    assert len(rows) == 60
    for row in rows:
        version, body = stored_entry(on_cluster, "spring", row.user_id)
        assert version == row.version
        expected = payload.render_payload("spring", row.user_id, row.version, row.fields)
        assert body == (b"" if row.deleted else expected)
    nodes = {primary_of(on_cluster, keys.entry_key("spring", str(n))) for n in range(60)}
    assert len(nodes) == 3
    config = json.loads(on_cluster.hget(keys.CAMPAIGNS, "spring"))
    assert config["slug"] == "spring"
    assert on_cluster.get(keys.DEFAULT_CAMPAIGN) == b"spring"
    # Nothing of the store landed on the queues' Redis.
    assert redis_client.hget(keys.CAMPAIGNS, "spring") is None


def test_older_versions_are_refused_and_counted_across_tags(on_cluster):
    writes = [redis_writes.EntryWrite(keys.entry_key("c", str(n)), 5, b"five") for n in range(300)]
    assert redis_writes.write_entries(on_cluster, writes).written == 300
    older = [write._replace(version=4, body=b"four") for write in writes]
    counts = redis_writes.write_entries(on_cluster, older)
    assert (counts.written, counts.stale) == (0, 300)
    assert {stored_entry(on_cluster, "c", str(n)) for n in range(300)} == {(5, b"five")}
    assert redis_writes.stats(on_cluster) == {keys.STAT_WRITES: 300, keys.STAT_STALE_WRITES: 300}


def test_entry_states_come_back_in_the_order_asked(on_cluster):
    user_ids = [str(n) for n in range(250)]
    redis_writes.write_entries(
        on_cluster,
        [
            redis_writes.EntryWrite(keys.entry_key("c", user_id), int(user_id) + 1, b"x" * (n % 3))
            for n, user_id in enumerate(user_ids)
            if n % 5
        ],
    )
    states = redis_writes.entry_states(
        on_cluster, [keys.entry_key("c", u) for u in reversed(user_ids)]
    )
    expected = [(None, 0) if n % 5 == 0 else (n + 1, n % 3) for n in reversed(range(len(user_ids)))]
    assert states == expected


def test_a_write_is_announced_to_a_subscriber_on_another_node(redis_cluster, on_cluster):
    key = keys.entry_key("c", "announced")
    owner = on_cluster.get_node_from_key(key).port
    ports = [int(url.rsplit(":", 1)[1]) for url in redis_cluster.primary_urls]
    other = next(port for port in ports if port != owner)
    subscriber = redis_cluster.node_client(other).pubsub()
    subscriber.subscribe(redis_writes.changes_channel(on_cluster))
    assert subscriber.get_message(timeout=5)["type"] == "subscribe"
    try:
        redis_writes.write_entry(on_cluster, key, 3, b"three")
        message = None
        deadline = time.monotonic() + 5
        while message is None and time.monotonic() < deadline:
            message = subscriber.get_message(timeout=1)
        assert message is not None, "no announcement reached the other node"
        assert json.loads(message["data"]) == [key, 3]
    finally:
        subscriber.close()


def test_reconcile_repairs_drift_and_orphans_on_every_shard(app, redis_client, on_cluster):
    campaign = make_campaign("spring")
    for number in range(40):
        save_entry(campaign, str(number), f"Hello {number}")
    publish_pending()
    for number in range(0, 40, 4):
        on_cluster.delete(keys.entry_key("spring", str(number)))  # lost
    on_cluster.hset(keys.entry_key("spring", "1"), keys.ENTRY_VERSION_FIELD, 0)  # behind
    redis_writes.write_entry(on_cluster, keys.entry_key("spring", "ghost"), 1, b"{}")  # no row

    report = reconcile(reason="test")

    assert report["missing"] == 10
    assert report["outdated"] == 1
    assert report["orphans"] == 1
    assert stored_entry(on_cluster, "spring", "ghost") is None
    for number in range(40):
        assert stored_entry(on_cluster, "spring", str(number))[0] == 1
    assert reconcile(reason="again")["repaired"] == 0


def test_run_id_names_every_primary(on_cluster, redis_cluster):
    run_id = redis_run_id(on_cluster)
    assert len(run_id.split(",")) == 3
    assert redis_run_id(on_cluster) == run_id


def test_nodes_that_lost_their_scripts_get_them_again(on_cluster):
    """A restarted or added node has an empty script cache: the batch is loaded and re-run."""
    on_cluster.execute_command("SCRIPT FLUSH", target_nodes=on_cluster.ALL_NODES)
    writes = [redis_writes.EntryWrite(keys.entry_key("c", str(n)), 1, b"one") for n in range(50)]
    assert redis_writes.write_entries(on_cluster, writes).written == 50
    on_cluster.execute_command("SCRIPT FLUSH", target_nodes=on_cluster.ALL_NODES)
    assert redis_writes.write_campaign(on_cluster, "c", 1, '{"slug": "c", "version": 1}')
    assert {stored_entry(on_cluster, "c", str(n)) for n in range(50)} == {(1, b"one")}
