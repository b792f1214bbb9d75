"""Segment and RudderStack events on /events: mapping, folding, ordering, signatures."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest
from common.manage_support import SCHEMA, bearer, make_token
from common.publishing_support import make_campaign
from sqlalchemy import select

from ccadmin.extensions import db
from ccadmin.models import AuditEvent, ContentEntry, ManagementToken

URL = "/manage/v1/campaigns/spring/events"


@pytest.fixture
def campaign(app):
    return make_campaign("spring", field_schema=SCHEMA)


@pytest.fixture
def token(campaign) -> str:
    return make_token("segment")


def identify(user_id, minute: int, **traits):
    return {
        "type": "identify",
        "userId": user_id,
        "traits": traits,
        "timestamp": f"2026-12-07T10:{minute:02d}:00.000Z",
        "messageId": f"m-{user_id}-{minute}",
    }


def fields(campaign) -> dict[str, dict]:
    db.session.expire_all()
    return {
        entry.user_id: entry.fields
        for entry in db.session.scalars(
            select(ContentEntry).where(ContentEntry.campaign_id == campaign.id)
        )
    }


def test_identify_and_track_set_fields_of_their_own_name(client, campaign, token):
    events = [
        identify("1", 1, message="Hello", email="a@example.com"),
        {
            "type": "track",
            "event": "Offer Chosen",
            "userId": 2,
            "properties": {"message": "Deal", "cta": "Buy"},
            "timestamp": "2026-12-07T10:01:00Z",
        },
        {"type": "page", "userId": "3", "properties": {"message": "x"}},
        {"type": "identify", "anonymousId": "anon", "traits": {"message": "x"}},
        identify("4", 1, email="only-unmapped@example.com"),
    ]
    response = client.post(URL, json=events, headers=bearer(token))
    assert response.status_code == 200, response.json
    body = response.json
    assert [r["status"] for r in body["results"]] == [
        "created",
        "created",
        "ignored",
        "ignored",
        "ignored",
    ]
    assert body["results"][2]["reason"] == "'page' events are not used"
    assert body["results"][3]["reason"] == "no userId"
    assert (body["events"], body["created"], body["ignored"]) == (5, 2, 3)
    assert fields(campaign) == {"1": {"message": "Hello"}, "2": {"message": "Deal", "cta": "Buy"}}


def test_context_traits_numbers_and_a_custom_map(client, campaign, token):
    event = {
        "type": "identify",
        "userId": "7",
        "context": {"traits": {"message": "From context"}},
        "traits": {"offer": {"code": 42}},
        "timestamp": "2026-12-07T10:00:00Z",
    }
    response = client.post(URL + "?map=cta:traits.offer.code", json=event, headers=bearer(token))
    assert response.json["results"][0]["status"] == "created"
    assert fields(campaign)["7"] == {"message": "From context", "cta": "42"}
    bad_map = client.post(URL + "?map=nope:traits.x", json=event, headers=bearer(token))
    assert bad_map.status_code == 422 and "map" in bad_map.json["details"]


def test_track_events_can_be_limited_by_name(client, campaign, token):
    events = [
        {"type": "track", "event": "Viewed", "userId": "1", "properties": {"message": "a"}},
        {"type": "track", "event": "Chosen", "userId": "2", "properties": {"message": "b"}},
    ]
    body = client.post(URL + "?event=Chosen", json=events, headers=bearer(token)).json
    assert [r["status"] for r in body["results"]] == ["ignored", "created"]


def test_events_for_one_user_fold_oldest_first(client, campaign, token):
    events = [
        identify("1", 5, message="newest"),
        identify("1", 2, message="oldest", cta="Go"),
        identify("1", 3, message="middle"),
    ]
    body = client.post(URL, json=events, headers=bearer(token)).json
    assert [r["status"] for r in body["results"]] == ["created"] * 3
    assert fields(campaign)["1"] == {"message": "newest", "cta": "Go"}
    # A later request with an event older than 10:05: superseded, its fields too.
    late = client.post(URL, json=[identify("1", 4, cta="Old")], headers=bearer(token)).json
    assert late["results"][0]["status"] == "superseded" and late["superseded"] == 1
    # Mixed: the older event is dropped before folding, the newer one applies.
    mixed = [identify("1", 4, cta="Older"), identify("1", 6, message="six")]
    body = client.post(URL, json=mixed, headers=bearer(token)).json
    assert [r["status"] for r in body["results"]] == ["superseded", "updated"]
    assert fields(campaign)["1"] == {"message": "six", "cta": "Go"}


def test_one_bad_event_fails_only_itself(client, campaign, token):
    events = [identify(str(n), 1, message=f"m{n}") for n in range(50)]
    events[17]["traits"]["message"] = "x" * 21
    events[30]["timestamp"] = "not a time"
    events[40]["traits"]["message"] = {"nested": "object"}
    events[45] = "not an event"
    body = client.post(URL, json={"batch": events}, headers=bearer(token)).json
    invalid = {r["index"]: r["errors"] for r in body["results"] if r["status"] == "invalid"}
    assert set(invalid) == {17, 30, 40, 45}
    assert "message" in invalid[17] and "timestamp" in invalid[30]
    assert invalid[40] == {"message": "Not text: an object or a list."}
    assert body["created"] == 46 and len(fields(campaign)) == 46


def test_connection_tests_head_and_an_empty_post(client, campaign, token):
    assert client.head(URL, headers=bearer(token)).status_code == 200
    assert client.head(URL).status_code == 401
    empty = client.post(URL, data=b"", headers=bearer(token))
    assert empty.status_code == 200 and empty.json["events"] == 0
    batch = "/manage/v1/campaigns/spring/content:batch"
    assert client.head(batch, headers=bearer(token)).status_code == 200
    empty_batch = client.post(batch, data=b"", headers=bearer(token))
    assert empty_batch.status_code == 200 and empty_batch.json["rows"] == 0
    options = client.options(URL, headers=bearer(token))
    assert options.headers["Allow"] == "HEAD, POST, OPTIONS"


def test_the_token_can_be_sent_as_basic_credentials(client, campaign, token):
    as_user = base64.b64encode(f"{token}:".encode()).decode()
    as_password = base64.b64encode(f"rudder:{token}".encode()).decode()
    for credentials in (as_user, as_password):
        response = client.post(
            URL,
            json=identify("1", 1, message="hi"),
            headers={"Authorization": f"Basic {credentials}"},
        )
        assert response.status_code == 200, response.json
    wrong = base64.b64encode(b"ccm_wrong:").decode()
    response = client.post(URL, json=[], headers={"Authorization": f"Basic {wrong}"})
    assert response.status_code == 401


def test_a_signed_token_needs_segments_signature(client, campaign, token):
    db.session.execute(
        ManagementToken.__table__.update()
        .where(ManagementToken.name == "segment")
        .values(signing_secret="shared-secret")
    )
    db.session.commit()
    body = json.dumps(identify("1", 1, message="signed")).encode()
    signature = hmac.new(b"shared-secret", body, hashlib.sha1).hexdigest()
    headers = bearer(token, **{"Content-Type": "application/json"})
    unsigned = client.post(URL, data=body, headers=headers)
    assert unsigned.status_code == 401 and unsigned.json["error"] == "invalid_signature"
    forged = client.post(URL, data=body, headers={**headers, "X-Signature": "0" * 40})
    assert forged.status_code == 401
    tampered = body.replace(b"signed", b"forged")
    moved = client.post(URL, data=tampered, headers={**headers, "X-Signature": signature})
    assert moved.status_code == 401
    assert fields(campaign) == {}
    good = client.post(URL, data=body, headers={**headers, "X-Signature": signature})
    assert good.status_code == 200 and fields(campaign) == {"1": {"message": "signed"}}


def test_a_single_event_is_written_like_a_patch(client, campaign, token):
    """One event a request (Segment classic, RudderStack): no change set, a single write."""
    first = client.post(URL, json=identify("9", 1, message="Hi", cta="Go"), headers=bearer(token))
    assert first.json["results"][0] == {
        "index": 0,
        "user_id": "9",
        "status": "created",
        "version": 1,
    }
    assert first.json["import_id"] is None
    # Traits it leaves out keep their values; the same values again change nothing.
    partial = client.post(URL, json=identify("9", 2, message="Hello"), headers=bearer(token))
    assert partial.json["results"][0]["status"] == "updated"
    assert fields(campaign)["9"] == {"message": "Hello", "cta": "Go"}
    same = client.post(URL, json=identify("9", 3, message="Hello"), headers=bearer(token))
    assert same.json["results"][0] == {
        "index": 0,
        "user_id": "9",
        "status": "unchanged",
        "version": 2,
    }
    # Its time was still recorded: an older event with other content is late.
    late = client.post(URL, json=identify("9", 2, cta="Old"), headers=bearer(token))
    assert late.json["results"][0]["status"] == "superseded"
    too_long = client.post(URL, json=identify("9", 4, message="x" * 21), headers=bearer(token))
    assert too_long.status_code == 200
    assert "message" in too_long.json["results"][0]["errors"]
    audit = db.session.scalars(
        select(AuditEvent.action).where(AuditEvent.actor == "token:segment")
    ).all()
    assert sorted(audit) == ["create", "update"]
