"""Histogram math and the in-process counters: known inputs give known outputs."""

from __future__ import annotations

import time
from collections import Counter

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ccadmin import keys
from ccadmin.api.counters import FALLBACKS, Counters, DisabledCounters
from ccadmin.api.metrics_flush import bucket_fields
from ccadmin.metrics import buckets
from ccadmin.metrics.buckets import LATENCY_BOUNDS, add_to_buckets, latency_bucket, parse_bucket
from ccadmin.metrics.health import AMBER, GREEN, RED, meter_state
from ccadmin.metrics.histogram import count_above, percentile
from ccadmin.metrics.series import rolling_minute


def test_bounds_span_1_ms_to_5_s_with_the_callers_cutoff_as_an_edge():
    assert LATENCY_BOUNDS[0] == 0.001
    assert LATENCY_BOUNDS[-1] == 5.0
    assert 2.0 in LATENCY_BOUNDS
    assert list(LATENCY_BOUNDS) == sorted(set(LATENCY_BOUNDS))
    # No bucket is wider than 28% of its lower edge: percentiles stay close.
    for lower, upper in zip(LATENCY_BOUNDS, LATENCY_BOUNDS[1:], strict=False):
        assert upper / lower <= 1.28


@pytest.mark.parametrize(
    ("seconds", "index"),
    [
        (0.0002, 0),
        (0.001, 0),
        (0.0010001, 1),
        (0.002, 3),
        (2.0, LATENCY_BOUNDS.index(2.0)),
        (2.0001, LATENCY_BOUNDS.index(2.0) + 1),
        (5.0, len(LATENCY_BOUNDS) - 1),
        (7.0, len(LATENCY_BOUNDS)),
    ],
)
def test_a_duration_lands_in_the_bucket_whose_upper_bound_holds_it(seconds, index):
    assert latency_bucket(seconds) == index


def test_percentiles_interpolate_within_the_bucket():
    bounds = (1.0, 2.0, 4.0)
    # 10 in (0, 1], 80 in (1, 2], 10 in (2, 4], none slower.
    counts = [10, 80, 10, 0]
    assert percentile(counts, bounds, 0.5) == pytest.approx(1.5)
    assert percentile(counts, bounds, 0.1) == pytest.approx(1.0)
    assert percentile(counts, bounds, 0.95) == pytest.approx(3.0)
    assert percentile(counts, bounds, 0.05) == pytest.approx(0.5)
    assert percentile([0, 0, 0, 0], bounds, 0.5) is None
    # The overflow bucket can only say "at least the last bound".
    assert percentile([0, 0, 1, 9], bounds, 0.99) == 4.0
    assert count_above(counts, bounds, 2.0) == 10


def test_percentiles_of_observed_latencies():
    counters = Counters()
    for _ in range(90):
        counters.observe("promo", 200, 100, 0.0009)
    for _ in range(9):
        counters.observe("promo", 200, 100, 0.03)
    counters.observe("promo", 200, 100, 3.0)
    histogram = [0] * (len(LATENCY_BOUNDS) + 1)
    for key, value in counters.totals().items():
        if key[0] == "latency":
            histogram[key[3]] += value
    assert sum(histogram) == 100
    # p50 falls in the first bucket (0, 1 ms]: half way into 90 counts.
    assert percentile(histogram, LATENCY_BOUNDS, 0.5) == pytest.approx(0.001 * 50 / 90)
    # p95: the 95th of 100 is the 5th of the 9 in (25 ms, 31.5 ms].
    assert percentile(histogram, LATENCY_BOUNDS, 0.95) == pytest.approx(0.025 + 0.0065 * 5 / 9)
    # p99 is the 99th: the last of the 9.
    assert percentile(histogram, LATENCY_BOUNDS, 0.99) == pytest.approx(0.0315)
    assert count_above(histogram, LATENCY_BOUNDS, 2.0) == 1


def test_counts_become_bucket_fields_and_parse_back():
    counters = Counters()
    counters.observe("promo", 200, 120, 0.0015)
    counters.observe("promo", 200, 120, 0.0015)
    counters.observe("promo", 404, 60, 0.0005)
    counters.observe("promo", 503, 60, 0.0005)
    counters.observe("other", 200, 10, 2.5)  # slower than the caller waits
    counters.count(FALLBACKS, "promo")
    fields = bucket_fields(counters.totals(), "host-a|42")
    sep = buckets.METRIC_FIELD_SEPARATOR
    assert fields[f"r{sep}promo{sep}200"] == 2
    assert fields[f"b{sep}promo"] == 360
    assert fields[f"x{sep}other"] == 1
    assert fields[f"p{sep}host-a|42"] == 5
    assert fields[f"t{sep}promo"] == 4000
    raw = {field.encode(): str(value).encode() for field, value in fields.items()}

    everything = parse_bucket(raw)
    assert everything.statuses == Counter({200: 3, 404: 1, 503: 1})
    assert everything.failures == 2  # the 503 and the answer past 2 s
    assert everything.processes == Counter({"host-a|42": 5})
    promo = parse_bucket(raw, "promo")
    assert promo.requests == 4
    assert promo.campaigns["promo"] == Counter(
        {"requests": 4, "answered": 2, "not_found": 1, "fallbacks": 1}
    )
    assert promo.latency_us == 4000


def test_disabled_counters_record_nothing():
    counters = DisabledCounters()
    counters.observe("promo", 200, 100, 0.001)
    counters.count(FALLBACKS, "promo")
    assert counters.totals() == Counter()


def test_rendered_counters_parse_as_prometheus_text():
    counters = Counters()
    counters.observe("promo", 200, 100, 0.0015)
    counters.observe("promo", 200, 100, 0.3)
    counters.observe('we"ird', 404, 10, 0.0001)
    families = {
        family.name: family
        for family in text_string_to_metric_families(counters.render(counters.totals()).decode())
    }
    histogram = families["ccadmin_api_request_duration_seconds"]
    assert histogram.type == "histogram"
    samples = {
        (sample.name, sample.labels.get("campaign"), sample.labels.get("le")): sample.value
        for sample in histogram.samples
        if sample.labels.get("status") == "200"
    }
    name = "ccadmin_api_request_duration_seconds"
    assert samples[(f"{name}_bucket", "promo", "0.001")] == 0
    assert samples[(f"{name}_bucket", "promo", "0.0016")] == 1
    assert samples[(f"{name}_bucket", "promo", "0.315")] == 2
    assert samples[(f"{name}_bucket", "promo", "+Inf")] == 2
    assert samples[(f"{name}_count", "promo", None)] == 2
    assert samples[(f"{name}_sum", "promo", None)] == pytest.approx(0.3015)
    requests = families["ccadmin_api_requests"]
    assert {(s.labels["campaign"], s.labels["status"], s.value) for s in requests.samples} == {
        ("promo", "200", 2),
        ('we"ird', "404", 1),
    }


def test_rolling_minute_failures_and_error_rate():
    failures = [0, 5, 5, 0, 0, 0, 0, 10]
    requests = [10, 10, 10, 10, 0, 0, 0, 10]
    per_minute, rates = rolling_minute(failures, requests, 10)
    # Six 10 s buckets make a minute.
    assert per_minute == [0, 5, 10, 10, 10, 10, 10, 15]
    assert rates[2] == pytest.approx(10 / 30, abs=1e-4)
    assert rates[7] == pytest.approx(15 / 30)
    hourly, hourly_rates = rolling_minute([600], [1200], 3600)
    assert hourly == [10.0]
    assert hourly_rates == [0.5]


@pytest.mark.parametrize(
    ("failures", "error_rate", "state"),
    [
        (0, 0.0, GREEN),
        (3001, 0.91, RED),
        (3000, 0.95, AMBER),
        (5000, 0.5, AMBER),
        (1600, 0.5, AMBER),
        (1600, 0.4, GREEN),
        (100, 0.2, GREEN),
    ],
)
def test_meter_state(failures, error_rate, state):
    assert meter_state(failures, error_rate) == state


def test_catch_up_sums_seconds_into_coarser_buckets(redis_client):
    redis_client.flushdb()
    # Two seconds at the start of a recent hour: one minute, one hour bucket.
    hour = int(time.time()) // 3600 - 1
    first = hour * 3600
    pipe = redis_client.pipeline(transaction=True)
    add_to_buckets(
        pipe, {first: Counter({"r|promo|200": 2}), first + 1: Counter({"r|promo|200": 3})}
    )
    pipe.execute()
    assert redis_client.hgetall(keys.metric_bucket_key(1, first)) == {b"r|promo|200": b"2"}
    assert redis_client.hgetall(keys.metric_bucket_key(60, hour * 60)) == {b"r|promo|200": b"5"}
    assert redis_client.hgetall(keys.metric_bucket_key(3600, hour)) == {b"r|promo|200": b"5"}
    # Each bucket expires its retention after its own end.
    second_ttl = redis_client.ttl(keys.metric_bucket_key(1, first))
    minute_ttl = redis_client.ttl(keys.metric_bucket_key(60, hour * 60))
    assert abs(second_ttl - (first + 1 + 86_400 - time.time())) <= 2
    assert abs(minute_ttl - (first + 60 + 14 * 86_400 - time.time())) <= 2
    redis_client.flushdb()
