"""The Connected Content API over real waitress and real Redis: bodies, headers, input."""

from __future__ import annotations

import json

import pytest
from common import api_support
from common.api_support import (
    ENV_KEY,
    call,
    delete_entry,
    mark_ready,
    publish_campaign,
    publish_entry,
)
from common.support import wait_until

from ccadmin import keys

AUTH = {"X-API-Key": ENV_KEY}


# Shared fixtures, bound here so pytest finds them in this module.
store = api_support.store
start_api = api_support.start_api


@pytest.fixture
def promo(store):
    """A ready store with campaign `promo` (served at /data) and user 42's content."""
    publish_campaign(
        store, "promo", version=2, max_age=120, default_fields={"message": "Hi"}, serve_at_data=True
    )
    body = publish_entry(store, "promo", "42", 3, {"message": "Your code is SPRING"})
    mark_ready(store)
    return body


def test_serves_the_stored_body_with_its_headers(promo, start_api):
    port = start_api()
    for path in ("/v1/promo?user_id=42", "/data?user_id=42"):
        answer = call(port, path, headers=AUTH)
        assert answer.status == 200
        assert answer.body == promo
        assert answer.json() == {
            "user_id": "42",
            "campaign": "promo",
            "has_content": True,
            "version": 3,
            "message": "Your code is SPRING",
        }
        assert answer.header("Content-Type") == "application/json; charset=utf-8"
        assert answer.header("Content-Length") == str(len(promo))
        assert answer.header("Cache-Control") == "private, max-age=120"
        assert answer.header("ETag") == '"1-promo-3"'
        assert answer.header("X-Content-Type-Options") == "nosniff"
        assert answer.header("X-Content-Stale") is None
        assert answer.header("Server") is None


def test_head_sends_the_headers_without_the_body(promo, start_api):
    port = start_api()
    answer = call(port, "/data?user_id=42", method="HEAD", headers=AUTH)
    assert answer.status == 200
    assert answer.body == b""
    assert answer.header("Content-Length") == str(len(promo))
    assert answer.header("ETag") == '"1-promo-3"'


def test_post_takes_the_user_id_from_a_form_or_json_body(promo, start_api):
    port = start_api()
    form = {**AUTH, "Content-Type": "application/x-www-form-urlencoded"}
    as_json = {**AUTH, "Content-Type": "application/json"}

    assert call(port, "/data", "POST", form, b"user_id=42&other=x").body == promo
    assert call(port, "/data", "POST", as_json, b'{"user_id": "42"}').body == promo
    assert call(port, "/data", "POST", as_json, b'{"user_id": 42}').body == promo
    # A caller that keeps the user id in the URL and posts nothing else.
    assert call(port, "/data?user_id=42", "POST", AUTH, b"").body == promo

    bad_json = call(port, "/data", "POST", as_json, b'{"user_id": "42"')
    assert (bad_json.status, bad_json.json()["error"]) == (400, "invalid_json")
    not_an_object = call(port, "/data", "POST", as_json, b'["42"]')
    assert (not_an_object.status, not_an_object.json()["error"]) == (400, "invalid_json")
    twice = call(port, "/data", "POST", as_json, b'{"user_id": "42", "user_id": "43"}')
    assert (twice.status, twice.json()["error"]) == (400, "invalid_user_id")
    in_url_and_body = call(port, "/data?user_id=42", "POST", form, b"user_id=42")
    assert (in_url_and_body.status, in_url_and_body.json()["error"]) == (400, "invalid_user_id")
    too_big = call(port, "/data", "POST", form, b"user_id=42&pad=" + b"x" * 5000)
    assert (too_big.status, too_big.json()["error"]) == (413, "body_too_large")
    plain = call(port, "/data", "POST", {**AUTH, "Content-Type": "text/plain"}, b"42")
    assert (plain.status, plain.json()["error"]) == (415, "unsupported_media_type")


def test_etag_and_if_none_match(promo, store, start_api):
    port = start_api()
    answer = call(port, "/data?user_id=42", headers={**AUTH, "If-None-Match": '"1-promo-3"'})
    assert answer.status == 304
    assert answer.body == b""
    assert answer.header("ETag") == '"1-promo-3"'
    weak = call(port, "/data?user_id=42", headers={**AUTH, "If-None-Match": 'W/"1-promo-3"'})
    assert weak.status == 304
    other = call(port, "/data?user_id=42", headers={**AUTH, "If-None-Match": '"1-promo-2"'})
    assert other.status == 200

    newer = publish_entry(store, "promo", "42", 4, {"message": "Changed"})
    changed = call(port, "/data?user_id=42", headers={**AUTH, "If-None-Match": '"1-promo-3"'})
    assert changed.status == 200
    assert changed.body == newer
    assert changed.header("ETag") == '"1-promo-4"'


INVALID_QUERIES = [
    "",
    "?user_id=",
    "?other=1",
    "?user_id=" + "a" * 129,
    "?user_id=%01",
    "?user_id=%00",
    "?user_id=a%09b",
    "?user_id=a%7Fb",
    "?user_id=a%C2%85b",  # U+0085, a C1 control
    "?user_id=%FF",  # not UTF-8
    "?user_id=%C3",  # truncated UTF-8
    "?user_id=1&user_id=2",
    "?user_id=1&user%5Fid=2",
]


def test_rejects_invalid_user_ids(promo, start_api):
    port = start_api()
    for query in INVALID_QUERIES:
        answer = call(port, "/data" + query, headers=AUTH)
        assert answer.status == 400, query
        assert answer.header("Content-Type") == "application/json; charset=utf-8"
        assert answer.json()["error"] == "invalid_user_id", query
        assert answer.json()["message"]


def test_accepts_the_longest_and_non_ascii_user_ids(promo, start_api):
    port = start_api()
    longest = call(port, "/data?user_id=" + "a" * 128, headers=AUTH)
    assert longest.status == 200
    assert longest.json()["user_id"] == "a" * 128
    accented = call(port, "/data?user_id=" + "%C3%A9" * 128, headers=AUTH)
    assert accented.status == 200
    assert accented.json()["user_id"] == "é" * 128
    lone_surrogate = call(
        port,
        "/data",
        "POST",
        {**AUTH, "Content-Type": "application/json"},
        b'{"user_id": "\\ud800"}',
    )
    assert lone_surrogate.status == 400


def test_fallback_default_for_a_user_without_content(promo, start_api):
    port = start_api()
    answer = call(port, "/data?user_id=7", headers=AUTH)
    assert answer.status == 200
    assert answer.json() == {
        "user_id": "7",
        "campaign": "promo",
        "has_content": False,
        "version": 2,
        "message": "Hi",
    }
    assert answer.header("ETag") == '"1-promo-f2"'
    assert answer.header("Cache-Control") == "private, max-age=120"


def test_fallback_not_found_and_tombstones(store, start_api):
    publish_campaign(store, "strict", fallback="not_found", public=True)
    publish_campaign(store, "loose", default_fields={"message": "Default"}, public=True)
    publish_entry(store, "loose", "5", 1, {"message": "Was here"})
    delete_entry(store, "loose", "5", 2)
    mark_ready(store)
    port = start_api()

    missing = call(port, "/v1/strict?user_id=5")
    assert missing.status == 404
    assert missing.json()["error"] == "no_content"
    assert missing.header("Content-Type") == "application/json; charset=utf-8"

    deleted = call(port, "/v1/loose?user_id=5")
    assert deleted.status == 200
    assert deleted.json()["has_content"] is False
    assert deleted.json()["message"] == "Default"


def test_unknown_inactive_and_unrouted(store, start_api):
    publish_campaign(store, "paused", active=False, public=True)
    publish_campaign(store, "live", public=True)
    mark_ready(store)
    port = start_api()

    for path in (
        "/v1/nope?user_id=1",
        "/v1/paused?user_id=1",
        "/data?user_id=1",  # no campaign is served at /data
        "/v1/live/extra?user_id=1",
        "/v1/?user_id=1",
        "/data/?user_id=1",
        "/elsewhere",
    ):
        answer = call(port, path, headers=AUTH)
        assert answer.status == 404, path
        assert answer.header("Content-Type") == "application/json; charset=utf-8"
        assert set(answer.json()) == {"error", "message"}

    # Deactivating a live campaign takes effect without a restart.
    assert call(port, "/v1/live?user_id=1").status == 200
    publish_campaign(store, "live", version=2, active=False, public=True)
    wait_until(lambda: call(port, "/v1/live?user_id=1").status == 404, timeout=5)


def test_a_campaign_published_a_moment_ago_is_served_not_404(store, start_api):
    """The config poller's copy may lag; a 404 for a campaign is only given on the current one."""
    publish_campaign(store, "live", public=True)
    mark_ready(store)
    port = start_api()
    assert call(port, "/v1/live?user_id=1").status == 200  # config loaded

    for number in range(5):
        slug = f"fresh{number}"
        publish_campaign(store, slug, public=True)
        publish_entry(store, slug, "7", 1, {"message": f"New {number}"})
        answer = call(port, f"/v1/{slug}?user_id=7")
        assert answer.status == 200, answer.body
        assert answer.json()["message"] == f"New {number}"


def test_other_methods_get_405_with_allow(promo, start_api):
    port = start_api()
    for method in ("PUT", "DELETE", "PATCH", "OPTIONS"):
        answer = call(port, "/data?user_id=42", method=method, headers=AUTH)
        assert answer.status == 405
        assert answer.header("Allow") == "GET, HEAD, POST"
        assert answer.json()["error"] == "method_not_allowed"
    probe = call(port, "/healthz", method="POST", body=b"")
    assert probe.status == 405
    assert probe.header("Allow") == "GET, HEAD"


def test_health_and_readiness(promo, store, start_api):
    port = start_api()
    assert call(port, "/healthz").status == 200
    ready = call(port, "/readyz")
    assert ready.status == 200
    assert json.loads(ready.body) == {"status": "ready"}
    store.delete(keys.READY)
    not_ready = call(port, "/readyz")
    assert not_ready.status == 503
    assert not_ready.json()["error"] == "not_ready"
    assert not_ready.header("Retry-After")
