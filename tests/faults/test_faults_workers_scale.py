"""Workers scale out: several processes drain one outbox, each event published once."""

from __future__ import annotations

from common.fault_support import database_dialect, differences, unpublished, wait_ready
from common.publishing_support import make_campaign, save_entry
from common.support import wait_until

from ccadmin import keys
from workers import redis_writes

SAVES = 120


def test_two_workers_drain_one_backlog_without_double_work(fault_app, private_redis, processes):
    client = private_redis.start()
    campaign = make_campaign("spring")
    # Each drainer logs the events it published (DEBUG).
    workers = [processes.worker({"LOG_LEVEL": "DEBUG"}) for _ in range(2)]
    wait_ready(client)
    wait_until(lambda: not unpublished(), timeout=30)
    before = redis_writes.stats(client)

    for number in range(SAVES):
        save_entry(campaign, str(number), f"message {number}")
    wait_until(lambda: not differences(client, "spring") and not unpublished(), timeout=60)

    after = redis_writes.stats(client)
    assert after[keys.STAT_WRITES] - before.get(keys.STAT_WRITES, 0) == SAVES
    # No event was published twice: a second write would have been refused as stale.
    assert after.get(keys.STAT_STALE_WRITES, 0) == before.get(keys.STAT_STALE_WRITES, 0)
    if database_dialect() == "postgresql":
        # SKIP LOCKED lets both drain at once (on SQLite one lane lock takes turns).
        drained = [worker.log().count(" published outbox events ") for worker in workers]
        assert all(drained), drained
        print(f"{SAVES} saves live, 0 stale writes; batches per worker: {drained}")
