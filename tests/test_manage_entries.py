"""The ingest API's single-entry endpoints: upsert, versions, ETags, errors, audit, publishing."""

from __future__ import annotations

import pytest
from common.manage_support import SCHEMA, bearer, make_token
from common.publishing_support import make_campaign
from sqlalchemy import select

from ccadmin import keys
from ccadmin.extensions import db
from ccadmin.models import AuditEvent, ContentEntry, OutboxEvent

URL = "/manage/v1/campaigns/spring/content/42"


@pytest.fixture
def token(app) -> str:
    make_campaign("spring", field_schema=SCHEMA)
    return make_token()


def put(client, token: str, fields: dict, url: str = URL, **headers: str):
    return client.put(url, json={"fields": fields}, headers=bearer(token, **headers))


def test_put_creates_then_replaces_and_repeats_are_no_ops(client, token):
    created = put(client, token, {"message": "Hi", "cta": "Go"})
    assert created.status_code == 201
    assert created.json["version"] == 1 and created.json["fields"] == {"message": "Hi", "cta": "Go"}
    assert created.headers["ETag"] == '"1"'
    assert created.headers["Location"].endswith("/campaigns/spring/content/42")
    again = put(client, token, {"message": "Hi", "cta": "Go"})
    assert again.status_code == 200 and again.json["version"] == 1
    replaced = put(client, token, {"message": "Bye"})
    assert replaced.status_code == 200 and replaced.json["version"] == 2
    assert replaced.json["fields"] == {"message": "Bye"}
    read = client.get(URL, headers=bearer(token))
    assert read.status_code == 200 and read.json["version"] == 2 and read.headers["ETag"] == '"2"'
    # Two versions, two outbox events, two audit events naming the token.
    assert db.session.scalar(select(db.func.count()).select_from(OutboxEvent)) == 3  # + campaign
    audits = db.session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
    assert [(a.actor, a.action) for a in audits] == [
        ("token:crm-sync", "create"),
        ("token:crm-sync", "update"),
    ]
    entry = db.session.scalars(select(ContentEntry)).one()
    assert entry.updated_by == "token:crm-sync"


def test_if_match_gives_optimistic_concurrency(client, token):
    put(client, token, {"message": "One"})
    stale = put(client, token, {"message": "Two"}, **{"If-Match": '"0"'})
    assert stale.status_code == 412
    assert stale.json["error"] == "precondition_failed"
    assert stale.json["details"] == {"current_version": 1}
    fresh = put(client, token, {"message": "Two"}, **{"If-Match": '"1"'})
    assert fresh.status_code == 200 and fresh.json["version"] == 2
    create_only = put(client, token, {"message": "x"}, **{"If-None-Match": "*"})
    assert create_only.status_code == 412
    missing = put(
        client, token, {"message": "x"}, url=URL.replace("42", "43"), **{"If-Match": '"1"'}
    )
    assert missing.status_code == 412


def test_patch_changes_some_fields_and_null_removes_one(client, token):
    put(client, token, {"message": "Hi", "cta": "Go"})
    patched = client.patch(URL, json={"fields": {"cta": None}}, headers=bearer(token))
    assert patched.status_code == 200
    assert patched.json["fields"] == {"message": "Hi"} and patched.json["version"] == 2
    missing = client.patch(
        URL.replace("42", "nobody"), json={"fields": {"cta": "x"}}, headers=bearer(token)
    )
    assert missing.status_code == 404 and missing.json["error"] == "entry_not_found"
    stale = client.patch(
        URL, json={"fields": {"cta": "x"}}, headers=bearer(token, **{"If-Match": '"1"'})
    )
    assert stale.status_code == 412


def test_delete_leaves_a_tombstone_and_put_revives_it(client, token):
    put(client, token, {"message": "Hi"})
    deleted = client.delete(URL, headers=bearer(token))
    assert deleted.status_code == 204 and deleted.headers["ETag"] == '"2"'
    assert client.get(URL, headers=bearer(token)).status_code == 404
    assert client.delete(URL, headers=bearer(token)).status_code == 404
    revived = put(client, token, {"message": "Back"})
    assert revived.status_code == 201 and revived.json["version"] == 3


def test_validation_errors_name_each_field(client, token):
    too_long = put(client, token, {"message": "x" * 21, "nope": "y"})
    assert too_long.status_code == 422
    assert too_long.json["error"] == "validation_failed"
    assert set(too_long.json["details"]["fields"]) == {"message", "nope"}
    no_message = put(client, token, {"cta": "Go"})
    assert no_message.json["details"]["fields"] == {"message": "A message is required."}
    wrong_shape = client.put(URL, json={"fields": {"message": 5}}, headers=bearer(token))
    assert wrong_shape.status_code == 422
    assert wrong_shape.json["details"] == {"body": {"fields.message": "5 is not of type 'string'"}}
    bad_user = put(client, token, {"message": "Hi"}, url=URL.replace("42", "a\x01b"))
    assert bad_user.status_code == 422 and "user_id" in bad_user.json["details"]
    assert db.session.scalar(select(db.func.count()).select_from(ContentEntry)) == 0


def test_body_format_errors(client, token):
    as_form = client.put(URL, data="message=hi", headers=bearer(token))
    assert as_form.status_code == 415 and as_form.json["error"] == "unsupported_media_type"
    broken = client.put(
        URL, data=b"{not json", headers=bearer(token, **{"Content-Type": "application/json"})
    )
    assert broken.status_code == 400 and broken.json["error"] == "invalid_json"
    huge = client.put(
        URL,
        data=b'{"fields": {"message": "' + b"x" * (3 * 1024 * 1024) + b'"}}',
        headers=bearer(token, **{"Content-Type": "application/json"}),
    )
    assert huge.status_code == 413 and huge.json["error"] == "too_large"


def test_unknown_campaign_path_and_method(client, token):
    unknown = client.get("/manage/v1/campaigns/nope/content/1", headers=bearer(token))
    assert unknown.status_code == 404 and unknown.json["error"] == "campaign_not_found"
    nowhere = client.get("/manage/v1/nowhere", headers=bearer(token))
    assert nowhere.status_code == 404 and nowhere.json["error"] == "not_found"
    # An id past what the database holds fails routing after a route matched.
    too_big = client.get(f"/manage/v1/campaigns/spring/imports/{10**40}", headers=bearer(token))
    assert too_big.status_code == 404 and too_big.json["error"] == "not_found"
    wrong_method = client.post(URL, headers=bearer(token))
    assert wrong_method.status_code == 405 and wrong_method.json["error"] == "method_not_allowed"
    assert set(wrong_method.headers["Allow"].split(", ")) >= {"GET", "PUT", "PATCH", "DELETE"}
    # OPTIONS names exactly the path's own methods.
    for path, allowed in (
        ("/manage/v1/campaigns", "GET, HEAD, OPTIONS"),
        (URL, "DELETE, GET, PATCH, PUT, HEAD, OPTIONS"),
        ("/manage/v1/campaigns/spring/content:batch", "HEAD, POST, OPTIONS"),
    ):
        answer = client.options(path)
        assert (answer.status_code, answer.headers["Allow"]) == (204, allowed)


def test_a_put_is_published_to_redis(client, token, redis_client):
    from common.publishing_support import publish_pending, stored_entry

    redis_client.delete(keys.PUBLISH_WAKE)
    put(client, token, {"message": "Live"})
    assert redis_client.lrange(keys.PUBLISH_WAKE, 0, -1) == [b"1"]
    assert publish_pending() >= 1
    version, body = stored_entry(redis_client, "spring", "42")
    assert version == 1 and b'"message":"Live"' in body


JSON = {"Content-Type": "application/json"}
NOT_UNICODE = "Not valid Unicode text (an unpaired surrogate)."


def put_raw(client, token: str, body: bytes, url: str = URL):
    return client.put(url, data=body, headers=bearer(token, **JSON))


def entry_count() -> int:
    return db.session.scalar(select(db.func.count()).select_from(ContentEntry))


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (rb'{"fields": {"message": "\ud800"}}', "message"),
        (rb'{"fields": {"message": "Hi", "cta": "Go \udfff"}}', "cta"),
        (rb'{"fields": {"message": "Hi", "cta\udc00": "Go"}}', "cta\\udc00"),
    ],
)
def test_put_refuses_unpaired_surrogates_naming_the_field(client, token, body, field):
    refused = put_raw(client, token, body)
    assert refused.status_code == 422, refused.get_data(as_text=True)
    assert refused.json["error"] == "validation_failed"
    assert field in refused.json["details"]["fields"]
    refused.get_data().decode("utf-8")
    assert entry_count() == 0


def test_patch_refuses_unpaired_surrogates_and_keeps_the_entry(client, token):
    put(client, token, {"message": "Hi"})
    refused = client.patch(
        URL, data=rb'{"fields": {"cta": "\ud83d"}}', headers=bearer(token, **JSON)
    )
    assert refused.status_code == 422
    assert refused.json["details"]["fields"] == {"cta": NOT_UNICODE}
    db.session.expire_all()
    entry = db.session.scalars(select(ContentEntry)).one()
    assert entry.fields == {"message": "Hi"} and entry.version == 1


def test_a_surrogate_pair_escape_is_one_character_and_is_stored(client, token):
    stored = put_raw(client, token, rb'{"fields": {"message": "Hi \ud83d\ude00"}}')
    assert stored.status_code == 201 and stored.json["fields"] == {"message": "Hi 😀"}


def put_to_raw_path(client, token: str, path_bytes: bytes):
    """PUT with the path's bytes as a server passes them (the test client would re-encode)."""
    return client.put(
        URL,
        json={"fields": {"message": "Hi"}},
        headers=bearer(token),
        environ_overrides={"PATH_INFO": path_bytes.decode("latin-1")},
    )


def test_a_user_id_that_is_not_utf8_text_in_the_path_is_refused(client, token):
    refused = put_to_raw_path(client, token, b"/manage/v1/campaigns/spring/content/a\xed\xa0\x80")
    assert refused.status_code == 422 and refused.json["error"] == "validation_failed"
    assert refused.json["details"] == {"user_id": "Not valid UTF-8 text."}
    latin1 = put_to_raw_path(
        client, token, "/manage/v1/campaigns/spring/content/José".encode("latin-1")
    )
    assert latin1.status_code == 422 and "user_id" in latin1.json["details"]
    assert entry_count() == 0
    utf8 = put_to_raw_path(client, token, "/manage/v1/campaigns/spring/content/José".encode())
    assert utf8.status_code == 201 and utf8.json["user_id"] == "José"


def test_a_slug_that_is_not_utf8_text_in_the_path_is_refused(client, token):
    refused = put_to_raw_path(client, token, b"/manage/v1/campaigns/spr\xedng/content/42")
    assert refused.status_code == 422 and refused.json["details"] == {
        "slug": "Not valid UTF-8 text."
    }


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
@pytest.mark.parametrize("depth", [3, 1000, 100_000])
def test_deeply_nested_bodies_are_refused_without_a_server_error(client, token, method, depth):
    put(client, token, {"message": "Hi"})
    body = b'{"fields": {"message": ' + b"[" * depth + b"]" * depth + b"}}"
    refused = client.open(URL, method=method, data=body, headers=bearer(token, **JSON))
    assert refused.status_code == 422, refused.get_data(as_text=True)[:500]
    assert refused.json["error"] == "validation_failed"
    assert "nested" in refused.json["message"]
    db.session.expire_all()
    assert db.session.scalars(select(ContentEntry)).one().version == 1


def test_an_unclosed_deep_body_is_refused_without_a_server_error(client, token):
    refused = put_raw(client, token, b"[" * 50_000)
    assert refused.status_code == 422 and refused.json["error"] == "validation_failed"


def test_a_body_that_is_not_utf8_gets_a_json_error(client, token):
    latin1 = put_raw(client, token, '{"fields": {"message": "café"}}'.encode("latin-1"))
    assert latin1.status_code == 400 and latin1.json["error"] == "invalid_json"
    encoded_surrogate = put_raw(client, token, b'{"fields": {"message": "\xed\xa0\x80"}}')
    assert encoded_surrogate.status_code == 400
    assert encoded_surrogate.json["error"] == "invalid_json"
    assert entry_count() == 0
