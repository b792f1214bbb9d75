"""User ids in the ingest API's addresses, over a real server: every id round-trips exactly.

The WSGI path arrives decoded, so `a%2Fb` and `a/b` are the same id; repeated
or leading slashes belong to the id, and bytes that are not UTF-8 are refused
rather than stored as a replacement character.
"""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

import pytest
from common.manage_support import SCHEMA, bearer, make_token
from common.publishing_support import make_campaign
from common.support import start_admin

BASE = "/manage/v1/campaigns/spring/content/"


@pytest.fixture
def web(app, spawn) -> tuple[str, int, str]:
    make_campaign("spring", field_schema=SCHEMA)
    token = make_token()
    address = urlsplit(start_admin(spawn))
    return address.hostname, address.port, token


def call(web, method: str, path: str, body: dict | None = None) -> tuple[int, str, dict]:
    host, port, token = web
    connection = http.client.HTTPConnection(host, port, timeout=10)
    headers = bearer(token, **{"Content-Type": "application/json"})
    payload = json.dumps(body).encode() if body is not None else None
    connection.request(method, path, body=payload, headers=headers)
    response = connection.getresponse()
    raw = response.read()
    connection.close()
    return response.status, response.getheader("Content-Type", ""), json.loads(raw or b"{}")


@pytest.mark.parametrize(
    ("sent", "read_back", "user_id"),
    [
        ("a%2Fb", "a/b", "a/b"),
        ("a/b", "a%2Fb", "a/b"),
        ("x%2F%2Fy", "x//y", "x//y"),
        ("%2Flead", "%2Flead", "/lead"),
        ("trail%2F", "trail/", "trail/"),
        ("caf%C3%A9%20ol%C3%A9", "caf%C3%A9 ol%C3%A9".replace(" ", "%20"), "café olé"),
    ],
)
def test_ids_with_slashes_round_trip(web, sent, read_back, user_id):
    status, kind, created = call(web, "PUT", BASE + sent, {"fields": {"message": "Hi"}})
    assert (status, kind, created["user_id"]) == (201, "application/json", user_id)
    status, _, read = call(web, "GET", BASE + read_back)
    assert (status, read["user_id"], read["version"]) == (200, user_id, 1)
    status, _, _ = call(web, "DELETE", BASE + sent)
    assert status == 204


def test_an_id_that_is_not_utf8_is_refused_not_replaced(web):
    status, kind, refused = call(web, "PUT", BASE + "caf%E9", {"fields": {"message": "Hi"}})
    assert (status, kind, refused["error"]) == (422, "application/json", "validation_failed")
    status, _, _ = call(web, "GET", BASE + "caf%EF%BF%BD")
    assert status == 404


def test_routing_errors_answer_in_json(web):
    for path in (f"/manage/v1/campaigns/spring/imports/{10**40}", "/manage/v1/nowhere"):
        status, kind, body = call(web, "GET", path)
        assert (status, kind, body["error"]) == (404, "application/json", "not_found")
