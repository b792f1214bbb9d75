"""Event-time ordering on the ingest API: a late retry never puts older content live."""

from __future__ import annotations

import random

import pytest
from common.manage_support import SCHEMA, bearer, make_token
from common.publishing_support import make_campaign, save_entry
from common.support import login
from sqlalchemy import select

from ccadmin import keys
from ccadmin.extensions import db
from ccadmin.models import ContentEntry, EntrySourceTime, ManagementToken

ENTRY = "/manage/v1/campaigns/spring/content/{}"
BATCH = "/manage/v1/campaigns/spring/content:batch"


@pytest.fixture
def campaign(app):
    return make_campaign("spring", field_schema=SCHEMA)


@pytest.fixture
def token(campaign) -> str:
    return make_token()


def at(minute: int) -> str:
    return f"2026-12-07T10:{minute:02d}:00.000Z"


def stored(campaign, user_id: str) -> ContentEntry | None:
    db.session.expire_all()
    return db.session.scalars(
        select(ContentEntry).where(
            ContentEntry.campaign_id == campaign.id, ContentEntry.user_id == user_id
        )
    ).first()


def put(client, token, user_id, message, minute=None):
    headers = bearer(token) if minute is None else bearer(token, **{"Event-Time": at(minute)})
    return client.put(ENTRY.format(user_id), json={"fields": {"message": message}}, headers=headers)


def test_a_late_retry_is_acknowledged_and_changes_nothing(client, campaign, token, redis_client):
    assert put(client, token, "42", "newest", minute=5).status_code == 201
    late = put(client, token, "42", "older", minute=3)
    assert late.status_code == 200
    assert late.json["superseded"] is True
    assert late.json["fields"] == {"message": "newest"} and late.json["version"] == 1
    assert late.headers["ETag"] == '"1"'
    entry = stored(campaign, "42")
    assert entry.fields == {"message": "newest"} and entry.version == 1
    assert int(redis_client.hget(keys.STATS, keys.STAT_SUPERSEDED_WRITES)) == 1
    # An equal time is not older: it applies.
    assert put(client, token, "42", "same time", minute=5).status_code == 200
    assert stored(campaign, "42").fields == {"message": "same time"}


def test_the_live_metrics_page_counts_superseded_writes(app, client, campaign, token, make_user):
    for minute in (5, 1, 2):
        put(client, token, "42", f"m{minute}", minute=minute)
    make_user("viewer@example.com", role="viewer")
    admin = app.test_client()
    assert login(admin, "viewer@example.com").status_code == 302
    publishing = admin.get("/admin/metrics/data").get_json()["publishing"]
    assert publishing["superseded_writes"] == 2
    page = admin.get("/admin/metrics/").get_data(as_text=True)
    assert 'id="superseded-writes"' in page


def test_writes_without_a_time_are_not_ordered(client, campaign, token):
    assert put(client, token, "42", "timed", minute=5).status_code == 201
    assert put(client, token, "42", "untimed").json["fields"] == {"message": "untimed"}
    # The source's time stays: an older timed write is still late.
    assert put(client, token, "42", "older", minute=4).json["superseded"] is True
    # An admin-style save in between does not reset the order either.
    save_entry(campaign, "42", "by a marketer")
    assert put(client, token, "42", "older", minute=4).json["superseded"] is True
    assert stored(campaign, "42").fields == {"message": "by a marketer"}


def test_an_unchanged_write_still_moves_the_time_forward(client, campaign, token):
    put(client, token, "42", "same", minute=1)
    assert put(client, token, "42", "same", minute=9).status_code == 200
    # Without the recorded 10:09, this 10:05 write with other content would win.
    assert put(client, token, "42", "stale", minute=5).json["superseded"] is True


def test_patch_and_delete_are_ordered_too(client, campaign, token):
    put(client, token, "42", "first", minute=5)
    late_patch = client.patch(
        ENTRY.format("42"),
        json={"fields": {"cta": "Go"}},
        headers=bearer(token, **{"Event-Time": at(2)}),
    )
    assert late_patch.status_code == 200 and late_patch.json["superseded"] is True
    late_delete = client.delete(ENTRY.format("42"), headers=bearer(token, **{"Event-Time": at(4)}))
    assert late_delete.status_code == 200 and late_delete.json["superseded"] is True
    assert not stored(campaign, "42").deleted
    delete = client.delete(ENTRY.format("42"), headers=bearer(token, **{"Event-Time": at(8)}))
    assert delete.status_code == 204
    # A create older than the delete does not bring the entry back.
    late_create = put(client, token, "42", "resurrected", minute=6)
    assert late_create.json["superseded"] is True and late_create.json["deleted"] is True
    assert stored(campaign, "42").deleted


def test_sources_are_ordered_separately(client, campaign, token):
    other = make_token("warehouse")
    put(client, token, "42", "crm at 10:05", minute=5)
    # Another source's clock is not comparable: its 10:01 write applies.
    assert put(client, other, "42", "warehouse at 10:01", minute=1).status_code == 200
    assert stored(campaign, "42").fields == {"message": "warehouse at 10:01"}
    # Tokens that share a source (a rotation) are ordered together.
    rotated = make_token("crm-sync-2")
    db.session.execute(
        ManagementToken.__table__.update()
        .where(ManagementToken.name == "crm-sync-2")
        .values(source="crm-sync")
    )
    db.session.commit()
    assert put(client, rotated, "42", "crm at 10:03", minute=3).json["superseded"] is True


@pytest.mark.parametrize("value", ["yesterday", "2026-12-07T10:00:00", "2026-13-01T00:00:00Z", ""])
def test_a_malformed_event_time_is_a_422_naming_it(client, campaign, token, value):
    response = client.put(
        ENTRY.format("42"),
        json={"fields": {"message": "x"}},
        headers=bearer(token, **{"Event-Time": value}),
    )
    assert response.status_code == 422
    assert "Event-Time" in response.json["details"]["headers"]
    assert stored(campaign, "42") is None
    assert db.session.scalars(select(EntrySourceTime)).all() == []


def test_a_batch_answers_a_result_per_row(client, campaign, token):
    save_entry(campaign, "1", "Old")
    save_entry(campaign, "3", "Same")
    client.put(
        ENTRY.format("4"),
        json={"fields": {"message": "newer"}},
        headers=bearer(token, **{"Event-Time": at(30)}),
    )
    rows = [
        {"user_id": "1", "message": "New"},
        {"user_id": "2", "message": "x" * 21},
        {"user_id": "3", "message": "Same"},
        {"user_id": "4", "message": "late", "$event_time": at(10)},
        {"user_id": "5", "message": "Hi"},
        {"user_id": "6", "message": "bad time", "$event_time": "soon"},
    ]
    response = client.post(BATCH + "?partial=true", json=rows, headers=bearer(token))
    assert response.status_code == 200, response.json
    body = response.json
    assert [(r["index"], r["user_id"], r["status"]) for r in body["results"]] == [
        (0, "1", "updated"),
        (1, "2", "invalid"),
        (2, "3", "unchanged"),
        (3, "4", "superseded"),
        (4, "5", "created"),
        (5, "6", "invalid"),
    ]
    assert [r.get("version") for r in body["results"]] == [2, None, 1, 1, 1, None]
    assert "message" in body["results"][1]["errors"]
    assert "$event_time" in body["results"][5]["errors"]
    assert (body["created"], body["updated"], body["unchanged"]) == (1, 1, 1)
    assert (body["superseded"], body["invalid"]) == (1, 2)
    assert stored(campaign, "4").fields == {"message": "newer"}
    assert stored(campaign, "2") is None and stored(campaign, "6") is None


def test_the_event_time_header_orders_a_whole_batch(client, campaign, token):
    rows = [{"user_id": str(n), "message": "at 10:20"} for n in range(3)]
    headers = bearer(token, **{"Event-Time": at(20)})
    assert client.post(BATCH, json=rows, headers=headers).json["created"] == 3
    older = [{"user_id": str(n), "message": "at 10:10"} for n in range(3)]
    older[1]["$event_time"] = at(25)
    body = client.post(BATCH, json=older, headers=bearer(token, **{"Event-Time": at(10)})).json
    assert [r["status"] for r in body["results"]] == ["superseded", "updated", "superseded"]
    assert stored(campaign, "0").fields == {"message": "at 10:20"}
    assert stored(campaign, "1").fields == {"message": "at 10:10"}


def test_a_shuffled_replay_ends_with_the_newest_write_per_user(client, campaign, token):
    """Single writes and batches, sent in random order, as retries arrive."""
    rng = random.Random(7)
    users, writes_per_user = 30, 8
    events = [(user, minute) for user in range(users) for minute in range(writes_per_user)]
    rng.shuffle(events)
    for start in range(0, len(events), 40):
        chunk = events[start : start + 40]
        singles, batched = chunk[:10], chunk[10:]
        for user, minute in singles:
            assert put(client, token, str(user), f"m{minute}", minute=minute).status_code in (
                200,
                201,
            )
        # One batch per distinct user set: a batch names each user once.
        seen: dict[int, int] = {}
        for user, minute in batched:
            seen[user] = max(minute, seen.get(user, -1)) if user in seen else minute
        rows = [
            {"user_id": str(user), "message": f"m{minute}", "$event_time": at(minute)}
            for user, minute in seen.items()
        ]
        assert client.post(BATCH, json=rows, headers=bearer(token)).status_code == 200
    for user in range(users):
        assert stored(campaign, str(user)).fields == {"message": f"m{writes_per_user - 1}"}
