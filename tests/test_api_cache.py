"""The API's in-process cache: worker announcements keep it correct, nothing older wins."""

from __future__ import annotations

import http.client
import json
import threading

from common import api_support
from common.api_support import ENV_KEY, call, mark_ready, publish_campaign
from common.support import free_port, wait_until

from ccadmin import keys, payload
from ccadmin.api.cache import EntryCache
from ccadmin.api.entry_changes import SUBSCRIBER_NAME
from workers import redis_writes as worker_store

store = api_support.store
start_api = api_support.start_api

AUTH = {"X-API-Key": ENV_KEY}
KEY = keys.entry_key("promo", "1")


def publish(client, version: int, user_id: str = "1") -> None:
    """An entry write through the worker's compare-and-set script (which announces it)."""
    body = payload.render_payload("promo", user_id, version, {"message": f"v{version}"})
    assert worker_store.write_entry(client, keys.entry_key("promo", user_id), version, body)


def bypass_write(client, version: int) -> None:
    """A write no worker announces: only a process that asks Redis can see it."""
    body = payload.render_payload("promo", "1", version, {"message": f"unannounced v{version}"})
    client.hset(KEY, mapping={keys.ENTRY_VERSION_FIELD: version, keys.ENTRY_BODY_FIELD: body})


def served_version(port: int, user_id: str = "1") -> int:
    answer = call(port, f"/data?user_id={user_id}", headers=AUTH)
    assert answer.status == 200, answer.body
    return answer.json()["version"]


def channel(client) -> str:
    return keys.entry_changes_channel(int(client.connection_pool.connection_kwargs.get("db", 0)))


def subscribers(client) -> int:
    return dict(client.pubsub_numsub(channel(client))).get(channel(client).encode(), 0)


def start_promo(client, spawn_api, processes: int = 1) -> int:
    publish_campaign(client, "promo", default_fields={"message": "Hi"}, serve_at_data=True)
    publish(client, 1)
    mark_ready(client)
    port = spawn_api(processes)
    wait_until(lambda: subscribers(client) == processes)
    return port


def api_spawner(spawn):
    def start(processes: int) -> int:
        port = free_port()
        spawn(
            ["-m", "ccadmin.api"],
            env={"API_PORT": str(port), "API_PROCESSES": str(processes), "API_HOST": "127.0.0.1"},
            ready_url=f"http://127.0.0.1:{port}/healthz",
        )
        return port

    return start


def warm(port: int, version: int, requests: int = 200) -> None:
    """Enough fresh connections that every process has read (and cached) the entry."""
    for _ in range(requests):
        assert served_version(port) == version


def test_a_publish_is_visible_on_the_next_request_from_every_process(store, spawn):
    port = start_promo(store, api_spawner(spawn), processes=2)
    warm(port, 1)
    # Served from memory: a write nobody announces stays invisible...
    bypass_write(store, 2)
    assert {served_version(port) for _ in range(40)} == {1}

    # ...while every announced write shows on the very next request, whichever
    # process answers it (fresh connections land on either).
    for version in range(3, 13):
        publish(store, version)
        for _ in range(6):
            assert served_version(port) == version


def test_versions_never_go_back_while_writes_race_reads(store, spawn):
    port = start_promo(store, api_spawner(spawn), processes=2)
    last_version = 150
    writing_done = threading.Event()
    seen: dict[int, list[int]] = {}
    failures: list[BaseException] = []

    def read(reader: int) -> None:
        # One keep-alive connection per reader: a caller's connection stays
        # with one process, which must never go back a version.
        versions = seen.setdefault(reader, [])
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

        def version() -> int:
            connection.request("GET", "/data?user_id=1", headers=AUTH)
            return json.loads(connection.getresponse().read())["version"]

        try:
            while not writing_done.is_set():
                versions.append(version())
            versions.append(version())
        except BaseException as error:  # reported by the main thread
            failures.append(error)
        finally:
            connection.close()

    readers = [threading.Thread(target=read, args=(number,)) for number in range(6)]
    for reader in readers:
        reader.start()
    try:
        for version in range(2, last_version + 1):
            publish(store, version)
    finally:
        writing_done.set()
        for reader in readers:
            reader.join()
    assert not failures, failures
    for versions in seen.values():
        assert versions == sorted(versions), "a reader saw a version go back"
        assert versions[-1] == last_version
    assert sum(len(versions) for versions in seen.values()) > 40


def test_a_broken_subscription_drops_the_cache(store, spawn):
    port = start_promo(store, api_spawner(spawn))
    warm(port, 1, requests=3)
    bypass_write(store, 2)
    assert served_version(port) == 1  # cached

    killed = 0
    for client in store.client_list(_type="pubsub"):
        if client["name"] == SUBSCRIBER_NAME:
            killed += store.client_kill_filter(_id=client["id"])
    assert killed == 1

    # Announcements may have been lost: the cache is dropped, Redis answers
    # (as soon as the kill reaches the process: a loaded machine may take a moment).
    wait_until(lambda: served_version(port) == 2, timeout=2)
    wait_until(lambda: subscribers(store) == 1)
    assert served_version(port) == 2
    publish(store, 3)
    assert served_version(port) == 3


def test_a_rebuild_flush_drops_every_entry(store, spawn):
    port = start_promo(store, api_spawner(spawn))
    warm(port, 1, requests=3)
    # A database restored from a backup: Redis is rebuilt with a lower
    # version, which no per-entry announcement could make win.
    store.delete(KEY)
    assert worker_store.write_entry(
        store, KEY, 1, payload.render_payload("promo", "1", 1, {"message": "restored"})
    )
    worker_store.mark_ready(store, json.dumps({"entries": 1}))
    assert call(port, "/data?user_id=1", headers=AUTH).json()["message"] == "restored"


def test_losing_the_ready_marker_drops_the_cache(store, spawn):
    port = start_promo(store, api_spawner(spawn))
    warm(port, 1, requests=3)
    store.delete(keys.READY)
    store.delete(KEY)
    # Not found in a store without the marker: 503, never the cached copy as
    # fresh content nor a fallback.
    answer = wait_until(
        lambda: (
            (found := call(port, "/data?user_id=1", headers=AUTH)).header("X-Content-Stale")
            and found
        )
    )
    assert answer.json()["version"] == 1
    assert call(port, "/data?user_id=2", headers=AUTH).status == 503


def test_fallbacks_are_cached_and_invalidated_too(store, spawn):
    port = start_promo(store, api_spawner(spawn))
    for _ in range(3):
        answer = call(port, "/data?user_id=7", headers=AUTH)
        assert answer.json()["has_content"] is False
    publish(store, 1, user_id="7")
    # Without the invalidation the cached fallback would be served for good.
    # (How soon the next request sees a publish is the subject of other tests;
    # here a loaded machine may deliver the announcement a moment late.)
    answer = wait_until(
        lambda: (
            (found := call(port, "/data?user_id=7", headers=AUTH)).json()["has_content"] and found
        ),
        timeout=2,
    )
    assert answer.json()["version"] == 1


def test_a_zero_size_cache_still_serves(store, start_api):
    publish_campaign(store, "promo", default_fields={"message": "Hi"}, serve_at_data=True)
    publish(store, 1)
    mark_ready(store)
    port = start_api({"API_CACHE_SIZE": "0"})
    assert served_version(port) == 1
    publish(store, 2)
    assert served_version(port) == 2
    assert subscribers(store) == 0


# -- the cache's own rules, without a server -------------------------------------


def live_cache(capacity: int = 10) -> EntryCache:
    cache = EntryCache(capacity)
    cache.attach(-1)
    cache.set_ready(True)
    return cache


def test_a_lookup_older_than_an_announcement_is_not_kept_as_valid():
    cache = live_cache()
    ticket = cache.ticket()  # a lookup starts and reads version 1 from Redis...
    cache.apply([("k", 2)])  # ...while version 2 is written and announced
    cache.fill("k", 1, b"one", ticket)
    assert cache.get("k") is None  # not served from memory: the next request asks Redis
    assert cache.last_known("k") == (1, b"one")
    cache.fill("k", 2, b"two", cache.ticket())
    assert cache.get("k") == (2, b"two")
    cache.fill("k", 1, b"one", cache.ticket())  # a late reader never moves it back
    assert cache.get("k") == (2, b"two")


def test_announcements_only_invalidate_older_records():
    cache = live_cache()
    cache.fill("k", 3, b"three", cache.ticket())
    cache.apply([("k", 3)])  # its own announcement, arriving late
    assert cache.get("k") == (3, b"three")
    cache.apply([("k", 4)])
    assert cache.get("k") is None
    assert cache.last_known("k") == (3, b"three")  # still the copy for an outage
    cache.apply([("k", 0)])  # repaired: whatever is held goes
    assert cache.last_known("k") is None


def test_losing_the_subscription_invalidates_but_keeps_copies():
    cache = live_cache()
    cache.fill("k", 1, b"one", cache.ticket())
    ticket = cache.ticket()
    cache.detach()
    assert cache.get("k") is None
    assert cache.last_known("k") == (1, b"one")
    cache.attach(-1)
    cache.fill("j", 1, b"one", ticket)  # read before the break: not trusted
    assert cache.get("j") is None
    cache.fill("k", 1, b"one", cache.ticket())
    assert cache.get("k") == (1, b"one")


def test_the_cache_is_bounded():
    cache = live_cache(capacity=3)
    for number in range(5):
        cache.fill(f"k{number}", 1, b"x", cache.ticket())
    assert len(cache) == 3
    assert cache.last_known("k0") is None
    assert cache.get("k4") == (1, b"x")
