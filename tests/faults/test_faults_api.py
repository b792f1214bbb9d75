"""Redis faults seen by the API: down while serving (case 3), restarted empty (case 4)."""

from __future__ import annotations

import http.client
import json
import time
from concurrent.futures import ThreadPoolExecutor

from common.api_support import ENV_KEY, mark_ready, publish_campaign, publish_entry
from common.fault_support import wait_ready
from common.publishing_support import make_campaign, save_entry
from common.support import wait_until

from ccadmin import keys
from ccadmin.content.seed import seed_content

AUTH = {"X-API-Key": ENV_KEY}
# The caller gives up after 2 s: an answer later than that is a failure.
CALLER_TIMEOUT = 2.0


def timed_get(port: int, path: str) -> tuple[int, dict[str, str], bytes, float]:
    """GET on a fresh connection with the caller's timeout: status, headers, body, seconds."""
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=CALLER_TIMEOUT)
    try:
        connection.request("GET", path, headers=AUTH)
        response = connection.getresponse()
        body = response.read()
        headers = {name.lower(): value for name, value in response.getheaders()}
        return response.status, headers, body, time.monotonic() - started
    finally:
        connection.close()


def test_redis_down_while_serving(private_redis, processes):
    """Case 3: a frozen Redis: seen entries stale, others a fast 503, then recovery."""
    client = private_redis.start()
    publish_campaign(client, "promo", default_fields={"message": "Hi"}, serve_at_data=True)
    mark_ready(client)
    seen = publish_entry(client, "promo", "1", 1, {"message": "Seen before"})
    for user_id in range(2, 42):
        publish_entry(client, "promo", str(user_id), 1, {"message": "never read"})
    _, port = processes.api()
    assert timed_get(port, "/data?user_id=1")[2] == seen

    # SIGSTOP: connections stay open and nothing answers, the worst kind of down.
    private_redis.pause()
    paused_at = time.monotonic()
    # The in-process cache answers until the config poll misses Redis (its
    # copy is current: nothing can be written to a frozen Redis); from then
    # on the same copy is served as a last-known one, marked.
    wait_until(lambda: timed_get(port, "/data?user_id=1")[1].get("x-content-stale"), 5)
    slowest = 0.0
    with ThreadPoolExecutor(max_workers=20) as pool:
        for _burst in range(3):
            paths = ["/data?user_id=1"] * 10 + [f"/data?user_id={n}" for n in range(2, 42)]
            for path, (status, headers, body, seconds) in zip(
                paths, pool.map(lambda path: timed_get(port, path), paths), strict=True
            ):
                slowest = max(slowest, seconds)
                if path == "/data?user_id=1":
                    assert (status, body, headers.get("x-content-stale")) == (200, seen, "1")
                else:
                    assert status == 503
                    assert json.loads(body)["error"] == "redis_unavailable"
                    assert headers["retry-after"]
                    assert headers["content-type"].startswith("application/json")
    assert timed_get(port, "/readyz")[0] == 503
    assert timed_get(port, "/healthz")[0] == 200
    outage = time.monotonic() - paused_at

    private_redis.resume()
    resumed_at = time.monotonic()

    def recovered() -> bool:
        status, headers, body, _ = timed_get(port, "/data?user_id=2")
        return status == 200 and "x-content-stale" not in headers

    wait_until(recovered, timeout=10)
    recovery = time.monotonic() - resumed_at
    # Every serving thread is free again: a burst wider than the pool is all fresh 200s.
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda n: timed_get(port, f"/data?user_id={n}"), range(2, 42)))
    assert all(
        status == 200 and "x-content-stale" not in headers for status, headers, _, _ in answers
    )
    assert timed_get(port, "/readyz")[0] == 200
    print(
        f"case 3: 150 requests during a {outage:.1f} s freeze, slowest {slowest * 1000:.0f} ms, "
        f"recovered {recovery:.2f} s after Redis resumed"
    )


def test_redis_restarted_empty(fault_app, private_redis, processes):
    """Case 4: 503 (never 404, never a fallback) until the automatic rebuild, then 200s."""
    client = private_redis.start()
    workers = [processes.worker(), processes.worker()]
    wait_ready(client)
    make_campaign("spring")
    seed_content("spring", 3_000)
    wait_until(lambda: client.exists(keys.entry_key("spring", "3000")), timeout=30)
    _, port = processes.api()
    assert timed_get(port, "/data?user_id=1")[0] == 200

    private_redis.kill()
    client = private_redis.start()
    restarted_at = time.monotonic()
    answers: dict[str, list[int]] = {"seen": [], "unseen": [], "no content": []}
    while True:
        ready = timed_get(port, "/readyz")[0] == 200
        for label, user_id in (("seen", "1"), ("unseen", "2500"), ("no content", "nobody")):
            status, headers, body, _ = timed_get(port, f"/data?user_id={user_id}")
            answers[label].append(status)
            assert status in (200, 503), (label, status, body)
            if status == 503:
                assert json.loads(body)["error"] in ("not_ready", "redis_unavailable")
                assert headers["retry-after"]
                continue
            document = json.loads(body)
            if label == "no content":
                # A fallback only from a store that a full build made ready.
                assert client.exists(keys.READY)
                assert document["has_content"] is False
            else:
                assert document["has_content"] is True
        if ready and all(statuses[-1] == 200 for statuses in answers.values()):
            break
        assert time.monotonic() - restarted_at < 30, answers
        time.sleep(0.05)
    recovery = time.monotonic() - restarted_at
    assert 503 in answers["unseen"] and 503 in answers["no content"]
    fresh = timed_get(port, "/data?user_id=2500")
    assert "x-content-stale" not in fresh[1]
    assert json.loads(fresh[2])["version"] == 1
    # One rebuild at a time: the lock let exactly one worker rebuild per empty start.
    rebuilds = sum(worker.log().count("full rebuild started") for worker in workers)
    assert rebuilds == 2  # the first start, and the restart
    print(
        f"case 4: {sum(map(len, answers.values()))} answers while rebuilding "
        f"(503s: {sum(s.count(503) for s in answers.values())}, 404s: 0), "
        f"ready and serving {recovery:.1f} s after the empty restart"
    )


def test_redis_back_from_an_older_state_never_goes_back_in_time(
    fault_app, private_redis, processes
):
    """Case 10: Redis restarted from an append-only file missing its last writes.

    Users already served version 2 are never served version 1 again, and any
    answer Redis gives before the worker has reconciled it says it may be stale.
    """
    client = private_redis.start(appendonly=True)
    processes.worker()
    wait_ready(client)
    campaign = make_campaign("spring")
    seed_content("spring", 600)
    wait_until(lambda: client.exists(keys.entry_key("spring", "600")), timeout=30)
    wait_until(lambda: client.exists(keys.REDIS_RUN_ID), timeout=30)
    append_only_file = private_redis.folder / "appendonly.aof"
    kept = append_only_file.stat().st_size
    seed_content("spring", 300)  # users 1..300 get version 2
    save_entry(campaign, "newcomer", "Created in the writes the file loses")
    wait_until(lambda: client.exists(keys.entry_key("spring", "newcomer")), timeout=30)
    wait_until(lambda: int(client.hget(keys.entry_key("spring", "300"), "v") or 0) == 2, timeout=30)
    _, port = processes.api()
    watched = [str(user_id) for user_id in range(1, 300, 25)]
    for user_id in watched:
        assert json.loads(timed_get(port, f"/data?user_id={user_id}")[2])["version"] == 2

    private_redis.kill()
    with open(append_only_file, "r+b") as aof:
        aof.truncate(kept)
    client = private_redis.start(appendonly=True)
    restarted_at = time.monotonic()
    went_back, unmarked, emptied = [], 0, 0
    while True:
        reconciled = client.get(keys.REDIS_RUN_ID) == client.info("server")["run_id"].encode()
        for user_id in [*watched, "450", "newcomer"]:
            status, headers, body, _ = timed_get(port, f"/data?user_id={user_id}")
            if status != 200:
                # A lost entry is a 503 until repaired, never a 404.
                assert status == 503, (user_id, status)
                continue
            if not json.loads(body)["has_content"]:
                emptied += 1
                continue
            version = json.loads(body)["version"]
            if user_id in watched and version < 2:
                went_back.append(user_id)
            if not reconciled and "x-content-stale" not in headers:
                unmarked += 1
        if reconciled:
            break
        assert time.monotonic() - restarted_at < 60
        time.sleep(0.05)
    assert went_back == []
    assert unmarked == 0
    assert emptied == 0
    # The API notices the reconcile at its next poll.
    fresh = wait_until(
        lambda: (
            "x-content-stale" not in (answer := timed_get(port, "/data?user_id=1"))[1] and answer
        ),
        timeout=5,
    )
    assert json.loads(fresh[2])["version"] == 2
    print(
        f"case 10: restart from an older file: 0 answers went back in time, all marked "
        f"stale until reconciled {time.monotonic() - restarted_at:.1f} s after it"
    )
