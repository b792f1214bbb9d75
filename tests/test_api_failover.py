"""The API when Redis is empty, not ready or down: 503s, last-known copies, recovery."""

from __future__ import annotations

import redis
from common import api_support
from common.api_support import ENV_KEY, call, mark_ready, publish_campaign, publish_entry
from common.support import wait_until

store = api_support.store
start_api = api_support.start_api

AUTH = {"X-API-Key": ENV_KEY}


def test_not_ready_store_answers_503_never_a_fallback(store, start_api):
    publish_campaign(store, "promo", default_fields={"message": "Hi"}, serve_at_data=True)
    stored = publish_entry(store, "promo", "1", 1, {"message": "Content"})
    port = start_api()

    # Content that is there is served; a miss cannot be told from "not yet built".
    assert call(port, "/data?user_id=1", headers=AUTH).body == stored
    missing = call(port, "/data?user_id=2", headers=AUTH)
    assert missing.status == 503
    assert missing.json()["error"] == "not_ready"
    assert missing.header("Retry-After")
    assert call(port, "/readyz").status == 503

    mark_ready(store)
    fallback = call(port, "/data?user_id=2", headers=AUTH)
    assert fallback.status == 200
    assert fallback.json()["has_content"] is False
    assert call(port, "/readyz").status == 200


def test_an_empty_store_answers_503(store, start_api):
    port = start_api()
    for path in ("/data?user_id=1", "/v1/promo?user_id=1"):
        answer = call(port, path, headers=AUTH)
        assert answer.status == 503
        assert answer.json()["error"] == "not_ready"
        assert answer.header("Retry-After")


def publish_promo(client: redis.Redis, message: str, version: int) -> bytes:
    publish_campaign(client, "promo", default_fields={"message": "Hi"}, serve_at_data=True)
    mark_ready(client)
    return publish_entry(client, "promo", "1", version, {"message": message})


def test_redis_down_serves_last_known_copies_then_recovers(private_redis, start_api):
    client = private_redis.start()
    first = publish_promo(client, "Before the outage", 1)
    port = start_api({"REDIS_URL": private_redis.url})
    fresh = call(port, "/data?user_id=1", headers=AUTH)
    assert fresh.body == first

    private_redis.kill()
    stale = call(port, "/data?user_id=1", headers=AUTH)
    assert stale.status == 200
    assert stale.body == first
    assert stale.header("X-Content-Stale") == "1"
    assert stale.header("ETag") == fresh.header("ETag")
    unseen = call(port, "/data?user_id=2", headers=AUTH)
    assert unseen.status == 503
    assert unseen.json()["error"] == "redis_unavailable"
    assert unseen.header("Retry-After")
    assert unseen.header("Content-Type") == "application/json; charset=utf-8"
    assert call(port, "/readyz").status == 503
    assert call(port, "/healthz").status == 200

    # Redis comes back empty: still no 404 and no fallback, until it is rebuilt.
    client = private_redis.start()
    wait_until(lambda: call(port, "/readyz").json().get("error") == "not_ready", 5)
    empty = call(port, "/data?user_id=2", headers=AUTH)
    assert (empty.status, empty.json()["error"]) == (503, "not_ready")
    assert call(port, "/data?user_id=1", headers=AUTH).header("X-Content-Stale") == "1"

    second = publish_promo(client, "After the outage", 2)
    wait_until(lambda: call(port, "/data?user_id=1", headers=AUTH).body == second, 5)
    recovered = call(port, "/data?user_id=1", headers=AUTH)
    assert recovered.status == 200
    assert recovered.header("X-Content-Stale") is None
    assert call(port, "/readyz").status == 200
    assert call(port, "/data?user_id=2", headers=AUTH).json()["has_content"] is False


def test_metrics_count_stale_answers(private_redis, start_api):
    client = private_redis.start()
    publish_promo(client, "Counted", 1)
    port = start_api({"REDIS_URL": private_redis.url})
    assert call(port, "/data?user_id=1", headers=AUTH).status == 200
    private_redis.kill()
    assert call(port, "/data?user_id=1", headers=AUTH).header("X-Content-Stale") == "1"
    assert call(port, "/data?user_id=3", headers=AUTH).status == 503

    metrics = call(port, "/metrics").body.decode()
    assert api_support.metric_value(metrics, 'ccadmin_api_stale_total{campaign="promo"}') == 1
    requests_503 = 'ccadmin_api_requests_total{campaign="promo",status="503"}'
    assert api_support.metric_value(metrics, requests_503) == 1
