"""Real API processes flush their counts to real Redis; processes add up; outages wait."""

from __future__ import annotations

import os
import socket
import time

from common import api_support
from common.api_support import ENV_KEY, call, mark_ready, publish_campaign, publish_entry
from common.metrics_support import bucket_sums, requests_field
from common.support import wait_until
from prometheus_client.parser import text_string_to_metric_families

from ccadmin import keys
from ccadmin.metrics import buckets

store = api_support.store
start_api = api_support.start_api

AUTH = {"X-API-Key": ENV_KEY}
SEP = buckets.METRIC_FIELD_SEPARATOR


def _answering_pid(port: int) -> int:
    families = text_string_to_metric_families(call(port, "/metrics").body.decode())
    info = next(family for family in families if family.name == "ccadmin_api_info")
    return int(info.samples[0].labels["pid"])


def test_two_processes_flush_and_add_up(store, start_api):
    publish_campaign(store, "promo", default_fields={"message": "Hi"}, serve_at_data=True)
    publish_entry(store, "promo", "1", 1, {"message": "Hello"})
    mark_ready(store)
    started = time.time()
    first, second = start_api(), start_api()
    for _ in range(7):
        assert call(first, "/data?user_id=1", headers=AUTH).status == 200
    for _ in range(5):
        assert call(second, "/v1/promo?user_id=1", headers=AUTH).status == 200
    assert call(second, "/v1/promo?user_id=2", headers=AUTH).json()["has_content"] is False
    assert call(second, "/v1/promo?user_id=1", headers={"X-API-Key": "wrong"}).status == 401

    field_200 = requests_field("promo", 200)
    wait_until(lambda: bucket_sums(store, started)[field_200] == 13, timeout=10)
    seconds = bucket_sums(store, started)
    assert seconds[requests_field("promo", 401)] == 1
    assert seconds[f"{buckets.METRIC_FALLBACKS}{SEP}promo"] == 1
    assert seconds[f"{buckets.METRIC_AUTH_FAILURES}{SEP}promo"] == 1
    latency = f"{buckets.METRIC_LATENCY}{SEP}"
    assert sum(v for f, v in seconds.items() if f.startswith(latency)) == 14
    assert seconds[f"{buckets.METRIC_BYTES}{SEP}promo"] > 0
    # Each process says who it is and how much it answered.
    host = socket.gethostname()
    first_pid, second_pid = _answering_pid(first), _answering_pid(second)
    assert seconds[f"{buckets.METRIC_PROCESS}{SEP}{host}{SEP}{first_pid}"] == 7
    assert seconds[f"{buckets.METRIC_PROCESS}{SEP}{host}{SEP}{second_pid}"] == 7
    alive = {member.decode() for member in store.zrange(keys.METRIC_PROCESSES, 0, -1)}
    assert {f"{host}{SEP}{first_pid}", f"{host}{SEP}{second_pid}"} <= alive
    # Every resolution holds the same sums.
    for resolution in buckets.METRIC_RESOLUTIONS[1:]:
        coarse = bucket_sums(store, started, resolution)
        assert coarse[field_200] == 13
        assert coarse[requests_field("promo", 401)] == 1


def test_metrics_endpoint_parses_as_prometheus_text(store, start_api):
    publish_campaign(store, "promo", default_fields={"message": "Hi"}, serve_at_data=True)
    publish_entry(store, "promo", "1", 1, {"message": "Hello"})
    mark_ready(store)
    port = start_api()
    served = call(port, "/data?user_id=1", headers=AUTH)
    call(port, "/data?user_id=1", headers={**AUTH, "If-None-Match": served.header("ETag")})
    fallback = call(port, "/data?user_id=2", headers=AUTH)

    text = call(port, "/metrics").body.decode()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    histogram = families["ccadmin_api_request_duration_seconds"]
    assert histogram.type == "histogram"
    counts = {
        sample.labels["status"]: sample.value
        for sample in histogram.samples
        if sample.name.endswith("_count")
    }
    assert counts == {"200": 2, "304": 1}
    infinite = [
        sample.value
        for sample in histogram.samples
        if sample.name.endswith("_bucket") and sample.labels["le"] == "+Inf"
    ]
    assert sorted(infinite) == [1, 2]
    assert all(sample.value >= 0 for sample in histogram.samples if sample.name.endswith("_sum"))
    assert families["ccadmin_api_requests"].type == "counter"
    assert families["ccadmin_api_response_bytes"].samples[0].value == len(served.body) + len(
        fallback.body
    )
    assert families["ccadmin_api_not_modified"].samples[0].value == 1
    assert families["ccadmin_api_fallbacks"].samples[0].value == 1


def test_redis_down_during_flushes_keeps_the_counts(private_redis, start_api):
    client = private_redis.start()
    publish_campaign(client, "promo", default_fields={"message": "Hi"}, serve_at_data=True)
    mark_ready(client)
    publish_entry(client, "promo", "1", 1, {"message": "Hello"})
    started = time.time()
    port = start_api({"REDIS_URL": private_redis.url})
    assert call(port, "/data?user_id=1", headers=AUTH).status == 200
    wait_until(lambda: bucket_sums(client, started)[requests_field("promo", 200)] == 1)

    private_redis.kill()
    for _ in range(5):
        answer = call(port, "/data?user_id=1", headers=AUTH)
        assert answer.status == 200
        assert answer.header("X-Content-Stale") == "1"
    assert call(port, "/data?user_id=2", headers=AUTH).status == 503
    # Several flushes fail while Redis is gone.
    time.sleep(2.5)
    assert call(port, "/healthz").status == 200

    # Redis returns empty (no persistence): only what was counted while it
    # was down can arrive, and all of it does.
    client = private_redis.start()
    field_200 = requests_field("promo", 200)
    wait_until(lambda: bucket_sums(client, started)[field_200] == 5, timeout=10)
    sums = bucket_sums(client, started)
    assert sums[requests_field("promo", 503)] == 1
    assert sums[f"{buckets.METRIC_STALE}{SEP}promo"] == 5


def test_metrics_off_records_nothing(store, start_api):
    publish_campaign(store, "promo", public=True, serve_at_data=True)
    publish_entry(store, "promo", "1", 1, {"message": "Hello"})
    mark_ready(store)
    started = time.time()
    port = start_api({"API_METRICS": "0"})
    for _ in range(3):
        assert call(port, "/data?user_id=1").status == 200
    time.sleep(1.5)  # past a flush, had there been a flusher
    assert bucket_sums(store, started) == {}
    assert store.zcard(keys.METRIC_PROCESSES) == 0
    text = call(port, "/metrics").body.decode()
    assert f'pid="{os.getpid()}"' not in text
    assert "ccadmin_api_requests_total{" not in text
