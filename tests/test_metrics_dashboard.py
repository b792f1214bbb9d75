"""The live metrics page and its JSON: exact numbers for known traffic, roles, requeue."""

from __future__ import annotations

import re
import time

import plotly
import pytest
from common import api_support
from common.api_support import ENV_KEY, call, mark_ready, publish_campaign, publish_entry
from common.support import csrf_token, login, wait_until
from rq import Queue, SimpleWorker
from rq.registry import FailedJobRegistry
from sqlalchemy import select

from ccadmin import keys
from ccadmin.extensions import db
from ccadmin.metrics import series
from ccadmin.models import AuditEvent
from workers.redis_writes import EntryWrite, write_entries

start_api = api_support.start_api

AUTH = {"X-API-Key": ENV_KEY}
DATA = "/admin/metrics/data"
FAILED_JOB = "failed-999999"
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\ssrc=)[^>]*>", re.IGNORECASE)


def as_role(client, make_user, role: str) -> None:
    make_user(f"{role}@example.com", role=role)
    assert login(client, f"{role}@example.com").status_code == 302


def dashboard(client, **params) -> dict:
    response = client.get(DATA, query_string=params)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def test_known_traffic_gives_exact_series(app, client, make_user, redis_client, start_api):
    publish_campaign(redis_client, "promo", default_fields={"message": "Hi"}, serve_at_data=True)
    publish_campaign(redis_client, "strict", fallback="not_found")
    for user_id in ("1", "2", "3"):
        publish_entry(redis_client, "promo", user_id, 1, {"message": "Hello"})
    mark_ready(redis_client)
    port = start_api()
    # 7 x 200 (5 content hits, 2 fallbacks), 4 x 404 (no content in a
    # not_found campaign), then 3 x 503 once the store is no longer ready.
    for user_id in ("1", "2", "3", "1", "2", "8", "9"):
        assert call(port, f"/data?user_id={user_id}", headers=AUTH).status == 200
    for user_id in ("1", "2", "3", "4"):
        assert call(port, f"/v1/strict?user_id={user_id}", headers=AUTH).status == 404
    redis_client.delete(keys.READY)
    for user_id in ("10", "11", "12"):
        assert call(port, f"/data?user_id={user_id}", headers=AUTH).status == 503

    as_role(client, make_user, "viewer")
    wait_until(lambda: dashboard(client)["series"]["totals"]["requests"] == 14, timeout=10)
    document = dashboard(client)
    traffic = document["series"]
    assert traffic["range"] == "5m" and traffic["resolution"] == 1
    assert len(traffic["time"]) == 300
    totals = traffic["totals"]
    assert totals["statuses"] == {"200": 7, "404": 4, "503": 3}
    assert totals["failures"] == 3
    assert totals["fallbacks"] == 2
    assert totals["slow"] == 0
    # 1 s buckets: each rate is that second's count.
    assert sum(traffic["rate"]["2xx"]) == 7
    assert sum(traffic["rate"]["4xx"]) == 4
    assert sum(traffic["rate"]["5xx"]) == 3
    assert sum(traffic["rate"]["3xx"]) == 0
    assert sum(traffic["requests"]) == 14
    assert max(traffic["failures_per_minute"]) == 3
    assert traffic["campaigns"] == [
        {"campaign": "promo", "requests": 10, "hits": 5, "fallbacks": 2, "not_found": 0},
        {"campaign": "strict", "requests": 4, "hits": 0, "fallbacks": 0, "not_found": 4},
    ]
    assert document["meter"] == {
        "failures": 3,
        "requests": 14,
        "error_rate": round(3 / 14, 4),
        "failure_threshold": 3000,
        "error_rate_threshold": 0.9,
        "state": "green",
    }
    assert document["redis"]["ready"] is False
    assert {"promo", "strict"} <= set(document["campaign_options"])
    alive = [row for row in document["processes"] if row["alive"]]
    assert [row["requests_last_minute"] for row in alive] == [14]
    assert set(document["figures"]) == {
        "requests",
        "latency",
        "meter",
        "top-campaigns",
        "content-ratio",
        "lag",
        "processes",
        "redis-memory",
    }
    requests_figure = document["figures"]["requests"]
    assert sum(sum(trace["y"]) for trace in requests_figure["data"]) == 14

    # The campaign filter keeps one campaign's counts.
    strict = dashboard(client, campaign="strict")["series"]
    assert strict["totals"]["statuses"] == {"404": 4}
    # Every range reads its own resolution and finds the same totals.
    for name, time_range in series.RANGES.items():
        wide = dashboard(client, range=name)["series"]
        assert wide["resolution"] == time_range.resolution
        assert len(wide["time"]) == time_range.seconds // time_range.resolution
        assert wide["totals"]["statuses"] == {"200": 7, "404": 4, "503": 3}, name


def test_publish_lag_is_recorded_and_shown(app, client, make_user, redis_client):
    from datetime import UTC, datetime, timedelta

    from ccadmin.metrics.lag import lag_seconds, record_publish_lags

    created = datetime.now(UTC) - timedelta(seconds=0.3)
    record_publish_lags(redis_client, [lag_seconds(created)])
    record_publish_lags(redis_client, [0.3])
    as_role(client, make_user, "viewer")
    wait_until(lambda: dashboard(client)["series"]["totals"]["published"] == 2)
    lag = dashboard(client)["series"]["totals"]["lag_seconds"]
    # Both fall in the (0.25 s, 0.315 s] bucket.
    assert 0.25 < lag["p50"] <= 0.315
    assert 0.25 < lag["p95"] <= 0.315


@pytest.mark.parametrize("role", ["viewer", "editor", "admin"])
def test_every_role_may_view(app, client, make_user, role):
    as_role(client, make_user, role)
    page = client.get("/admin/metrics/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert f"/vendor/plotly-{plotly.__version__}.min.js" in html
    assert "/static/dashboards/live.js" in html
    assert 'id="fig-requests"' in html
    # No inline script (a CSP without unsafe-inline must not break the page).
    assert not INLINE_SCRIPT.search(html)
    assert client.get(DATA).status_code == 200
    assert client.get(DATA, query_string={"range": "1y"}).status_code == 400


def test_anonymous_users_are_sent_to_login(app, client):
    assert "/login" in client.get("/admin/metrics/").headers["Location"]
    assert client.get(DATA).status_code in (302, 401)


def test_plotly_js_is_served_from_the_package(app, client):
    response = client.get(f"/vendor/plotly-{plotly.__version__}.min.js")
    assert response.status_code == 200
    assert response.mimetype == "text/javascript"
    assert response.cache_control.max_age == 365 * 86_400
    assert b"plotly.js" in response.get_data()[:500]
    response.close()


@pytest.fixture(params=keys.WORKER_QUEUES)
def failed_queue(request) -> str:
    """Each queue a worker takes jobs from."""
    return request.param


@pytest.fixture
def failed_job(app, redis_client, failed_queue) -> str:
    """A job that failed in a real RQ worker taking every worker queue."""
    queue = Queue(failed_queue, connection=redis_client)
    queue.enqueue("math.sqrt", -1, job_id=FAILED_JOB)
    queues = [Queue(name, connection=redis_client) for name in keys.WORKER_QUEUES]
    SimpleWorker(queues, connection=redis_client).work(burst=True)
    registry = FailedJobRegistry(failed_queue, connection=redis_client)
    assert registry.get_job_ids() == [FAILED_JOB]
    return FAILED_JOB


def test_applied_and_stale_entry_writes_are_counted(client, make_user, redis_client):
    """The worker's compare-and-set counters: a replayed older version counts as stale."""
    newer = [EntryWrite(keys.entry_key("promo", str(n)), 2, b"{}") for n in range(5)]
    older = [EntryWrite(keys.entry_key("promo", str(n)), 1, b"{}") for n in range(3)]
    write_entries(redis_client, newer)
    write_entries(redis_client, older)
    as_role(client, make_user, "viewer")
    publishing = dashboard(client)["publishing"]
    assert (publishing["writes"], publishing["stale_writes"]) == (5, 3)


def test_failed_jobs_are_listed_with_their_error(client, make_user, failed_job):
    as_role(client, make_user, "viewer")
    publishing = dashboard(client)["publishing"]
    assert publishing["failed_count"] == 1
    (job,) = publishing["failed_jobs"]
    assert job["id"] == failed_job
    assert "ValueError: math domain error" in job["error"]


@pytest.mark.parametrize("role", ["viewer", "editor"])
def test_only_an_admin_may_requeue(client, make_user, redis_client, failed_queue, failed_job, role):
    as_role(client, make_user, role)
    token = csrf_token(client, "/admin/content/")
    response = client.post(f"/admin/metrics/requeue/{failed_job}", data={"csrf_token": token})
    assert response.status_code == 403
    registry = FailedJobRegistry(failed_queue, connection=redis_client)
    assert registry.get_job_ids() == [failed_job]


def test_admin_requeues_on_the_jobs_own_queue_with_csrf_and_it_is_audited(
    client, make_user, redis_client, failed_queue, failed_job
):
    as_role(client, make_user, "admin")
    url = f"/admin/metrics/requeue/{failed_job}"
    registry = FailedJobRegistry(failed_queue, connection=redis_client)
    queues = {name: Queue(name, connection=redis_client) for name in keys.WORKER_QUEUES}

    assert client.post(url).status_code == 400  # no CSRF token
    assert registry.get_job_ids() == [failed_job]

    page = client.get("/admin/metrics/").get_data(as_text=True)
    assert 'data-can-requeue="1"' in page
    token = csrf_token(client, "/admin/content/")
    response = client.post(url, data={"csrf_token": token})
    assert response.status_code == 302
    assert registry.get_job_ids() == []
    assert {name: queue.get_job_ids() for name, queue in queues.items()} == {
        name: [failed_job] if name == failed_queue else [] for name in keys.WORKER_QUEUES
    }
    audit = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "requeue")).one()
    assert (audit.actor, audit.target_type, audit.target_id) == (
        "admin@example.com",
        "rq_job",
        failed_job,
    )


def test_viewer_page_offers_no_requeue(client, make_user):
    as_role(client, make_user, "viewer")
    assert 'data-can-requeue="0"' in client.get("/admin/metrics/").get_data(as_text=True)


def test_redis_state_and_backlog(client, make_user, redis_client):
    as_role(client, make_user, "viewer")
    mark_ready(redis_client)
    document = dashboard(client)
    assert document["redis"]["ready"] is True
    assert document["redis"]["keys"] == redis_client.dbsize()
    assert document["redis"]["used_memory"] > 0
    assert document["publishing"]["unpublished"] == 0
    assert document["publishing"]["queue_depth"] == 0
    assert time.time() - document["generated_at"] < 60
