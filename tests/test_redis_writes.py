"""The Lua compare-and-set writes: nothing older wins, repeats are no-ops, refusals counted."""

from __future__ import annotations

import json

from ccadmin import keys, payload
from workers import redis_writes

KEY = keys.entry_key("spring", "42")


def entry(redis_client, key: str = KEY) -> tuple[int, bytes]:
    version, body = redis_client.hmget(key, keys.ENTRY_VERSION_FIELD, keys.ENTRY_BODY_FIELD)
    return int(version), body


def test_newer_version_wins(app, redis_client):
    assert redis_writes.write_entry(redis_client, KEY, 1, b'{"v":1}')
    assert redis_writes.write_entry(redis_client, KEY, 3, b'{"v":3}')
    assert entry(redis_client) == (3, b'{"v":3}')
    assert redis_writes.stats(redis_client) == {keys.STAT_WRITES: 2}


def test_older_or_equal_version_is_a_counted_no_op(app, redis_client):
    redis_writes.write_entry(redis_client, KEY, 5, b"five")
    assert not redis_writes.write_entry(redis_client, KEY, 4, b"four")
    assert not redis_writes.write_entry(redis_client, KEY, 5, b"other five")
    assert entry(redis_client) == (5, b"five")
    assert redis_writes.stats(redis_client)[keys.STAT_STALE_WRITES] == 2


def test_same_write_twice_gives_the_same_state(app, redis_client):
    redis_writes.write_entry(redis_client, KEY, 2, b"two")
    first = redis_client.hgetall(KEY)
    redis_writes.write_entry(redis_client, KEY, 2, b"two")
    assert redis_client.hgetall(KEY) == first


def test_tombstone_blocks_an_older_write(app, redis_client):
    redis_writes.write_entry(redis_client, KEY, 1, b"created")
    redis_writes.write_entry(redis_client, KEY, 3, b"")
    assert not redis_writes.write_entry(redis_client, KEY, 2, b"edited")
    assert entry(redis_client) == (3, b"")


def test_bulk_write_spans_script_calls_and_pipelines(app, redis_client):
    count = redis_writes.ENTRIES_PER_CALL * redis_writes.CALLS_PER_PIPELINE + 7
    writes = [
        redis_writes.EntryWrite(keys.entry_key("bulk", str(n)), 2, b"x%d" % n) for n in range(count)
    ]
    counts = redis_writes.write_entries(redis_client, writes)
    assert (counts.written, counts.stale) == (count, 0)
    older = [redis_writes.EntryWrite(write.key, 1, b"old") for write in writes]
    counts = redis_writes.write_entries(redis_client, older)
    assert (counts.written, counts.stale) == (0, count)
    assert entry(redis_client, keys.entry_key("bulk", str(count - 1))) == (2, b"x%d" % (count - 1))


def config(version: int, active: bool = True) -> str:
    return payload.campaign_config(
        slug="spring",
        version=version,
        active=active,
        public=False,
        fallback="default",
        max_age=60,
        default_fields={"message": ""},
    )


def test_campaign_config_compare_and_set_bumps_config_version(app, redis_client):
    assert redis_writes.write_campaign(redis_client, "spring", 2, config(2))
    assert redis_client.get(keys.CONFIG_VERSION) == b"1"
    assert not redis_writes.write_campaign(redis_client, "spring", 1, config(1, active=False))
    assert not redis_writes.write_campaign(redis_client, "spring", 2, config(2, active=False))
    stored = json.loads(redis_client.hget(keys.CAMPAIGNS, "spring"))
    assert (stored["version"], stored["active"]) == (2, True)
    assert redis_client.get(keys.CONFIG_VERSION) == b"1"
    assert redis_writes.write_campaign(redis_client, "spring", 3, config(3, active=False))
    assert json.loads(redis_client.hget(keys.CAMPAIGNS, "spring"))["active"] is False
    assert redis_client.get(keys.CONFIG_VERSION) == b"2"
    assert redis_writes.remove_campaigns(redis_client, ["spring"]) == 1
    assert not redis_client.hexists(keys.CAMPAIGNS, "spring")
    assert redis_client.get(keys.CONFIG_VERSION) == b"3"


def test_snapshot_values_never_go_back_to_an_earlier_read(app, redis_client):
    earlier = redis_writes.next_snapshot(redis_client)
    later = redis_writes.next_snapshot(redis_client)
    assert later > earlier
    assert redis_writes.write_api_keys(redis_client, later, {"hash-b": '{"name":"b"}'})
    assert not redis_writes.write_api_keys(redis_client, earlier, {"hash-a": '{"name":"a"}'})
    assert redis_client.hgetall(keys.API_KEYS) == {b"hash-b": b'{"name":"b"}'}
    assert redis_writes.write_default_campaign(redis_client, later, "spring")
    assert not redis_writes.write_default_campaign(redis_client, earlier, None)
    assert redis_client.get(keys.DEFAULT_CAMPAIGN) == b"spring"
    newest = redis_writes.next_snapshot(redis_client)
    assert redis_writes.write_default_campaign(redis_client, newest, None)
    assert redis_writes.write_api_keys(redis_client, newest, {})
    assert not redis_client.exists(keys.DEFAULT_CAMPAIGN, keys.API_KEYS)
    assert redis_client.get(keys.CONFIG_VERSION) == b"4"


def test_repair_only_replaces_what_it_observed(app, redis_client):
    redis_writes.write_entry(redis_client, KEY, 4, b"four")
    assert not redis_writes.repair_entry(
        redis_client, KEY, 3, redis_writes.EntryWrite(KEY, 3, b"three")
    )
    assert entry(redis_client) == (4, b"four")
    assert redis_writes.repair_entry(redis_client, KEY, 4, redis_writes.EntryWrite(KEY, 4, b""))
    assert entry(redis_client) == (4, b"")
    assert redis_writes.repair_entry(redis_client, KEY, 4, None)
    assert not redis_client.exists(KEY)


def test_lock_is_held_by_one_token_at_a_time(app, redis_client):
    assert redis_writes.take_lock(redis_client, keys.SWEEPER_LOCK, "one", 10)
    assert not redis_writes.take_lock(redis_client, keys.SWEEPER_LOCK, "two", 10)
    assert redis_writes.take_lock(redis_client, keys.SWEEPER_LOCK, "one", 10)
    assert not redis_writes.release_lock(redis_client, keys.SWEEPER_LOCK, "two")
    assert redis_writes.release_lock(redis_client, keys.SWEEPER_LOCK, "one")
    assert redis_writes.take_lock(redis_client, keys.SWEEPER_LOCK, "two", 10)
