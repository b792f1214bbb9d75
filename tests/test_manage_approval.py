"""The ingest API on a campaign whose changes need approval: a token marked as needing it
gets 202 and a change request for every write, which a person decides in the admin."""

from __future__ import annotations

import pytest
from common.import_support import run_staging
from common.manage_support import SCHEMA, bearer, make_token
from common.publishing_support import make_campaign, save_fields
from sqlalchemy import select

from ccadmin.approvals import workflow
from ccadmin.extensions import db
from ccadmin.imports import uploads
from ccadmin.models import ChangeRequest, ContentEntry
from ccadmin.redis_client import get_redis
from workers.sweeper import open_missing_requests

BASE = "/manage/v1/campaigns/spring"


@pytest.fixture
def campaign(app):
    campaign = make_campaign("spring", field_schema=SCHEMA, changes_need_approval=True)
    save_fields(campaign, "42", {"message": "Hello"})
    return campaign


@pytest.fixture
def token(campaign) -> str:
    return make_token("crm-sync", needs_approval=True)


def entry(user_id: str = "42") -> ContentEntry | None:
    db.session.expire_all()
    return db.session.scalars(select(ContentEntry).where(ContentEntry.user_id == user_id)).first()


def requests_made() -> list[ChangeRequest]:
    db.session.expire_all()
    return list(db.session.scalars(select(ChangeRequest).order_by(ChangeRequest.id)))


def test_a_put_answers_202_with_the_request_to_poll(client, token, app):
    response = client.put(
        f"{BASE}/content/42", json={"fields": {"message": "Changed"}}, headers=bearer(token)
    )
    assert response.status_code == 202, response.json
    body = response.json
    assert response.headers["Location"] == "/manage/v1/change-requests/1" == body["url"]
    assert (body["status"], body["kind"], body["entries"]) == ("open", "entries", 1)
    assert body["review_url"].endswith("/admin/change-requests/details/?id=1")
    assert body["requested_by"] == "token:crm-sync"
    assert entry().fields == {"message": "Hello"}
    [asked] = requests_made()
    assert (asked.via, asked.changes[0]["action"]) == ("api:crm-sync", "update")

    # A person approves it in the admin; polling shows the version written.
    workflow.approve(asked, "reviewer@example.com", get_redis(app.config["CCADMIN_SETTINGS"]))
    polled = client.get(body["url"], headers=bearer(token)).json
    assert (polled["status"], polled["decided_by"]) == ("applied", "reviewer@example.com")
    assert polled["result"] == {"versions": {"42": 2}}
    assert (entry().fields, entry().updated_by) == ({"message": "Changed"}, "token:crm-sync")


def test_a_retried_write_gets_its_open_request_back(client, token):
    body = {"fields": {"message": "Changed"}}
    first = client.put(f"{BASE}/content/42", json=body, headers=bearer(token))
    again = client.put(f"{BASE}/content/42", json=body, headers=bearer(token))
    assert first.json["id"] == again.json["id"] == 1
    other = client.put(
        f"{BASE}/content/42", json={"fields": {"message": "Else"}}, headers=bearer(token)
    )
    assert other.json["id"] == 2 and len(requests_made()) == 2


def test_checks_still_come_first(client, token):
    invalid = client.put(
        f"{BASE}/content/42", json={"fields": {"message": ""}}, headers=bearer(token)
    )
    assert invalid.status_code == 422
    stale = client.put(
        f"{BASE}/content/42",
        json={"fields": {"message": "x"}},
        headers=bearer(token, **{"If-Match": '"7"'}),
    )
    assert stale.status_code == 412
    same = client.put(
        f"{BASE}/content/42", json={"fields": {"message": "Hello"}}, headers=bearer(token)
    )
    assert same.status_code == 200  # nothing to change, nothing to approve
    assert requests_made() == []


def test_patch_delete_batch_and_events_become_requests(client, token):
    assert (
        client.patch(
            f"{BASE}/content/42", json={"fields": {"message": "Patched"}}, headers=bearer(token)
        ).status_code
        == 202
    )
    assert client.delete(f"{BASE}/content/42", headers=bearer(token)).status_code == 202
    batch = client.post(
        f"{BASE}/content:batch?partial=true",
        json=[
            {"user_id": "42", "message": "Hello"},  # unchanged: not part of the request
            {"user_id": "7", "message": "New"},
            {"user_id": "8", "message": ""},
        ],
        headers=bearer(token),
    )
    assert batch.status_code == 202, batch.json
    assert (batch.json["entries"], batch.json["invalid"]) == (1, 1)
    events = client.post(
        f"{BASE}/events",
        json={"type": "identify", "userId": "9", "traits": {"message": "From an event"}},
        headers=bearer(token),
    )
    assert events.status_code == 202, events.json
    made = requests_made()
    assert [(r.changes[0]["user_id"], r.changes[0]["action"]) for r in made] == [
        ("42", "update"),
        ("42", "delete"),
        ("7", "create"),
        ("9", "create"),
    ]
    assert entry("7") is None and entry("9") is None and not entry().deleted


def test_a_token_without_the_flag_writes_directly(client, campaign):
    plain = make_token("plain")
    response = client.put(
        f"{BASE}/content/42", json={"fields": {"message": "Direct"}}, headers=bearer(plain)
    )
    assert response.status_code == 200 and entry().version == 2
    assert requests_made() == []


def test_an_import_is_staged_then_waits_as_a_request(client, token, app, campaign):
    save_fields(campaign, "43", {"message": "Same"})
    created = client.post(
        f"{BASE}/imports",
        data="user_id,message\n42,Imported\n7,New\n43,Same\n",
        headers=bearer(token, **{"Content-Type": "text/csv"}),
    )
    assert created.status_code == 202
    assert created.json["change_request"] is None
    run_staging(created.json["id"])
    state = client.get(created.headers["Location"], headers=bearer(token)).json
    assert state["status"] == "ready"
    assert state["change_request"] == {
        "id": 1,
        "status": "open",
        "url": "/manage/v1/change-requests/1",
    }
    [asked] = requests_made()
    assert asked.details["counts"]["new"] == 1 and asked.via == "api:crm-sync"
    polled = client.get(state["change_request"]["url"], headers=bearer(token)).json
    assert (polled["kind"], polled["entries"]) == ("change_set", 2)
    assert entry("7") is None


def test_another_campaigns_request_is_not_found(client, token, campaign):
    client.put(f"{BASE}/content/42", json={"fields": {"message": "x"}}, headers=bearer(token))
    make_campaign("autumn", is_default=False, field_schema=SCHEMA)
    other = make_token("autumn-only", campaigns=["autumn"])
    response = client.get("/manage/v1/change-requests/1", headers=bearer(other))
    assert response.status_code == 404 and response.json["error"] == "change_request_not_found"


def test_the_sweeper_opens_the_request_of_an_import_whose_worker_stopped(client, token):
    created = client.post(
        f"{BASE}/imports",
        data="user_id,message\n7,New\n",
        headers=bearer(token, **{"Content-Type": "text/csv"}),
    ).json
    # The worker staged it and stopped before opening its request.
    uploads.stage_upload(created["id"])
    assert requests_made() == []
    assert open_missing_requests(older_than=0) == [created["id"]]
    [asked] = requests_made()
    assert (asked.content_import_id, asked.via) == (created["id"], "api:crm-sync")
    assert open_missing_requests(older_than=0) == []
    # A decided request is not opened again.
    workflow.reject(asked, "reviewer@example.com", "Not this week.")
    db.session.commit()
    assert open_missing_requests(older_than=0) == [] and len(requests_made()) == 1
