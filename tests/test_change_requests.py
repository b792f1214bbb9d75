"""Four-eyes approval in the admin: entry changes on a campaign that needs approval wait as
change requests, and only someone else with the editor role applies them."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import redis
from common.import_support import (
    IMPORTS,
    apply,
    apply_refused,
    latest_import,
    upload_and_stage,
)
from common.publishing_support import make_campaign, save_fields
from common.security_support import audit_events
from common.support import FRESH_REQUEST_STATE, csrf_token, free_port, login, post_confirmed
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import select

from ccadmin.approvals import workflow
from ccadmin.extensions import db
from ccadmin.models import (
    ChangeRequest,
    ContentEntry,
    ContentImport,
    OutboxEvent,
    ScheduledChange,
)
from workers.imports import apply_import

SCHEMA = [{"name": "message", "max_length": 140}, {"name": "cta", "max_length": 20}]


@pytest.fixture
def campaign(app, make_user):
    # Several people's clients share the test's app context: no login cached in `g`.
    app.config[FRESH_REQUEST_STATE] = True
    for email, role in (
        ("ann@example.com", "editor"),
        ("bob@example.com", "editor"),
        ("vic@example.com", "viewer"),
    ):
        make_user(email, role=role)
    campaign = make_campaign("spring", field_schema=SCHEMA, changes_need_approval=True)
    save_fields(campaign, "42", {"message": "Hello", "cta": "Go"})
    return campaign


@pytest.fixture
def ann(app, campaign):
    client = app.test_client()
    login(client, "ann@example.com")
    return client


@pytest.fixture
def bob(app, campaign):
    client = app.test_client()
    login(client, "bob@example.com")
    return client


def entry(user_id: str = "42") -> ContentEntry | None:
    db.session.expire_all()
    return db.session.scalars(select(ContentEntry).where(ContentEntry.user_id == user_id)).first()


def edit(client, user_id: str = "42", **fields):
    url = f"/admin/content/edit/?id={entry(user_id).id}"
    data = {f"field_{name}": value for name, value in fields.items()}
    return client.post(url, data={**data, "csrf_token": csrf_token(client, url)})


def post(client, request_id: int, step: str, **data):
    page = f"/admin/change-requests/details/?id={request_id}"
    token = csrf_token(client, page)
    return client.post(
        f"/admin/change-requests/{request_id}/{step}", data={**data, "csrf_token": token}
    )


def the_request(request_id: int = 1) -> ChangeRequest:
    db.session.expire_all()
    return db.session.get(ChangeRequest, request_id)


def request_page(client, request_id: int) -> str:
    return client.get(f"/admin/change-requests/details/?id={request_id}").get_data(as_text=True)


def test_an_edit_becomes_a_request_that_someone_else_approves(ann, bob, redis_client):
    response = edit(ann, message="Hello again", cta="Go")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/admin/change-requests/details/?id=1")
    assert (entry().version, entry().fields["message"]) == (1, "Hello")  # not live yet
    page = request_page(ann, 1)
    assert "change request #1" in page and "<ins>Hello again</ins>" in page
    assert 'id="approve"' not in page and 'id="own-request"' in page
    assert audit_events("request")[-1].actor == "ann@example.com"

    # The author cannot approve it, even by posting the form.
    post(ann, 1, "approve")
    assert the_request().status == "open" and entry().version == 1
    assert "Nobody approves or rejects their own request" in request_page(ann, 1)

    assert post(bob, 1, "approve").status_code == 302
    saved = entry()
    assert (saved.version, saved.fields, saved.updated_by) == (
        2,
        {"message": "Hello again", "cta": "Go"},
        "ann@example.com",
    )
    # The same write as a direct save: an outbox event and the entry's audit row.
    assert db.session.get(OutboxEvent, saved.last_event_id).version == 2
    update = audit_events("update")[-1]
    assert (update.actor, update.after["version"]) == ("ann@example.com", 2)
    request_row = the_request()
    assert (request_row.status, request_row.decided_by) == ("applied", "bob@example.com")
    assert request_row.result == {"versions": {"42": 2}}
    approved = audit_events("approve")[-1]
    assert (approved.actor, approved.target_type, approved.target_id) == (
        "bob@example.com",
        "change_request",
        "1",
    )
    # Decided once: a second approval changes nothing.
    post(bob, 1, "approve")
    assert entry().version == 2


def test_a_viewer_cannot_approve(app, ann, campaign):
    edit(ann, message="Hello again", cta="Go")
    viewer = app.test_client()
    login(viewer, "vic@example.com")
    token = csrf_token(viewer, "/admin/change-requests/details/?id=1")
    refused = viewer.post("/admin/change-requests/1/approve", data={"csrf_token": token})
    assert refused.status_code == 403
    assert the_request().status == "open" and entry().version == 1
    assert audit_events("forbidden")[-1].actor == "vic@example.com"
    assert 'id="approve"' not in viewer.get("/admin/change-requests/details/?id=1").get_data(
        as_text=True
    )


def test_a_stale_request_must_be_refreshed_before_approval(ann, bob, campaign):
    edit(ann, message="Hello again", cta="Go")
    # The entry moves after the request was made (another approved change, an import...).
    save_fields(campaign, "42", {"message": "Changed meanwhile", "cta": "Shop"})
    page = request_page(bob, 1)
    assert 'id="request-conflict"' in page and "users 42" in page
    post(bob, 1, "approve")
    assert "Refresh the request" in request_page(bob, 1)
    assert the_request().status == "open" and entry().fields["message"] == "Changed meanwhile"

    post(bob, 1, "refresh")
    refreshed = the_request()
    assert refreshed.changes[0]["base_version"] == 2
    assert refreshed.changes[0]["before"] == {"message": "Changed meanwhile", "cta": "Shop"}
    page = request_page(bob, 1)
    assert "<del>Changed meanwhile</del>" in page and 'id="request-conflict"' not in page
    post(bob, 1, "approve")
    assert entry().fields == {"message": "Hello again", "cta": "Go"} and entry().version == 3


def test_a_rejection_needs_a_reason_and_applies_nothing(ann, bob):
    edit(ann, message="Typo", cta="Go")
    post(bob, 1, "reject", reason="  ")
    assert the_request().status == "open"
    post(bob, 1, "reject", reason="The message has a typo.")
    rejected = the_request()
    assert (rejected.status, rejected.decided_by) == ("rejected", "bob@example.com")
    assert [comment.body for comment in rejected.comments] == ["The message has a typo."]
    assert entry().version == 1
    assert audit_events("reject")[-1].after["reason"] == "The message has a typo."
    assert "The message has a typo." in request_page(ann, 1)


def test_only_the_author_withdraws_and_anyone_with_the_role_comments(ann, bob):
    edit(ann, message="Maybe", cta="Go")
    post(bob, 1, "comment", body="Is this for the spring send?")
    post(bob, 1, "withdraw")
    assert the_request().status == "open"
    post(ann, 1, "comment", body="Yes <b>it is</b>")
    page = request_page(bob, 1)
    assert "Yes &lt;b&gt;it is&lt;/b&gt;" in page  # escaped
    post(ann, 1, "withdraw")
    assert the_request().status == "withdrawn" and entry().version == 1
    assert [c.author for c in the_request().comments] == ["bob@example.com", "ann@example.com"]


def test_create_delete_and_restore_become_requests_too(ann, bob, campaign):
    url = "/admin/content/new/"
    created = ann.post(
        url,
        data={
            "campaign_id": str(campaign.id),
            "user_id": "7",
            "field_message": "New",
            "field_cta": "",
            "csrf_token": csrf_token(ann, url),
        },
    )
    assert created.headers["Location"].endswith("?id=1") and entry("7") is None
    token = csrf_token(ann, "/admin/content/")
    deleted = ann.post("/admin/content/delete/", data={"id": str(entry().id), "csrf_token": token})
    assert deleted.headers["Location"].endswith("?id=2") and not entry().deleted
    save_fields(campaign, "42", {"message": "Second", "cta": "Go"})
    details = f"/admin/content/details/?id={entry().id}"
    restored = ann.post(
        "/admin/content/restore/",
        data={"id": str(entry().id), "version": "1", "csrf_token": csrf_token(ann, details)},
    )
    assert restored.headers["Location"].endswith("?id=3")
    requests = db.session.scalars(select(ChangeRequest).order_by(ChangeRequest.id))
    assert [r.changes[0]["action"] for r in requests] == [
        "create",
        "delete",
        "restore",
    ]
    post(bob, 1, "approve")
    assert entry("7").fields == {"message": "New"}
    post(bob, 3, "approve")
    assert entry().fields == {"message": "Hello", "cta": "Go"} and entry().version == 3
    assert "Entries changed since" in request_page(bob, 2)  # the delete saw version 1
    post(bob, 2, "refresh")
    post(bob, 2, "approve")
    assert entry().deleted and entry().version == 4


def test_a_bulk_delete_on_such_a_campaign_is_refused_whole(ann):
    token = csrf_token(ann, "/admin/content/")
    response = ann.post(
        "/admin/content/action/",
        data={"action": "delete", "rowid": [str(entry().id)], "csrf_token": token},
        follow_redirects=True,
    )
    assert "need approval; nothing was deleted" in response.get_data(as_text=True)
    assert not entry().deleted and the_request() is None


def test_the_menu_counts_open_requests_for_reviewers_but_not_their_own(app, ann, bob):
    edit(ann, message="One", cta="Go")
    badge = re.compile(r'id="review-badge"[^>]*>(\d+)<')
    assert badge.search(bob.get("/admin/").get_data(as_text=True)).group(1) == "1"
    assert not badge.search(ann.get("/admin/").get_data(as_text=True))
    home = bob.get("/admin/").get_data(as_text=True)
    assert "1 change request</a> waiting for someone other than its author" in home
    listed = bob.get("/admin/change-requests/?flt0_0=open").get_data(as_text=True)
    assert "Update the entry of user 42" in listed


def test_campaigns_without_the_setting_save_directly(ann, campaign):
    campaign.changes_need_approval = False
    db.session.commit()
    edit(ann, message="Direct", cta="Go")
    assert entry().version == 2 and the_request() is None


CSV = b"user_id,message,cta\n42,Imported,Go\n7,New,Go\n"


def test_an_import_waits_for_approval_and_applies_through_the_worker_path(ann, bob, campaign):
    staged = upload_and_stage(ann, campaign.id, "spring.csv", CSV)
    response = apply(ann, staged.id)
    assert response.headers["Location"].endswith("/admin/change-requests/details/?id=1")
    asked = the_request()
    assert (asked.kind, asked.content_import_id) == ("change_set", staged.id)
    assert asked.details["counts"] == {
        "new": 1,
        "changed": 1,
        "deleted": 0,
        "unchanged": 0,
        "invalid": 0,
    }
    assert [row["user_id"] for row in asked.details["sample"]] == ["42", "7"]
    assert "<ins>Imported</ins>" in request_page(bob, 1)
    assert latest_import().status == "ready" and entry("7") is None
    detail = ann.get(f"{IMPORTS}{staged.id}/").get_data(as_text=True)
    assert 'id="pending-request"' in detail and 'id="apply-form"' not in detail
    # A second ask, or discarding it, is refused while the request is open.
    apply_refused(ann, staged.id)
    assert "already asks to apply" in ann.get(f"{IMPORTS}{staged.id}/").get_data(as_text=True)
    token = csrf_token(ann, f"{IMPORTS}{staged.id}/")
    ann.post(f"{IMPORTS}{staged.id}/discard", data={"csrf_token": token})
    assert latest_import() is not None

    post(bob, 1, "approve")
    assert latest_import().status == "queued" and the_request().status == "applied"
    apply_import(staged.id)
    assert entry("7").fields == {"message": "New", "cta": "Go"}
    assert (entry().fields["message"], entry().updated_by) == ("Imported", "ann@example.com")


def test_an_import_whose_entries_moved_is_refreshed_before_it_applies(ann, bob, campaign):
    staged = upload_and_stage(ann, campaign.id, "spring.csv", CSV)
    apply(ann, staged.id)
    save_fields(campaign, "7", {"message": "Created meanwhile", "cta": "Go"})
    post(bob, 1, "approve")
    assert "users 7" in request_page(bob, 1) and latest_import().status == "ready"
    post(bob, 1, "refresh")
    assert the_request().details["counts"]["changed"] == 2
    assert the_request().details["counts"]["new"] == 0
    post(bob, 1, "approve")
    apply_import(staged.id)
    assert entry("7").fields["message"] == "New"


def test_a_rollback_is_a_request_and_a_rejected_one_can_be_discarded(ann, bob, campaign):
    campaign.changes_need_approval = False
    db.session.commit()
    staged = upload_and_stage(ann, campaign.id, "spring.csv", CSV)
    apply(ann, staged.id)
    apply_import(staged.id)
    campaign.changes_need_approval = True
    db.session.commit()

    token = csrf_token(ann, f"{IMPORTS}{staged.id}/")
    response = post_confirmed(ann, f"{IMPORTS}{staged.id}/rollback", {"csrf_token": token})
    assert response.headers["Location"].endswith("/admin/change-requests/details/?id=1")
    rollback = latest_import()
    assert (rollback.kind, rollback.status) == ("rollback", "ready")
    assert the_request().content_import_id == rollback.id and entry("7") is not None
    post(bob, 1, "reject", reason="Keep the import.")
    token = csrf_token(ann, f"{IMPORTS}{rollback.id}/")
    ann.post(f"{IMPORTS}{rollback.id}/discard", data={"csrf_token": token})
    db.session.expire_all()
    assert db.session.get(ContentImport, rollback.id) is None
    # The import can be rolled back again later.
    assert db.session.get(ContentImport, staged.id).rolled_back_by_id is None


def test_a_scheduled_change_is_created_only_on_approval(ann, bob, campaign):
    run_at = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
    tools = f"/admin/campaign-tools/{campaign.id}/"
    response = ann.post(
        f"{tools}schedule",
        data={
            "user_id": "42",
            "field_message": "Tomorrow",
            "run_at": run_at,
            "csrf_token": csrf_token(ann, tools),
        },
    )
    assert response.headers["Location"].endswith("/admin/change-requests/details/?id=1")
    assert db.session.scalars(select(ScheduledChange)).first() is None
    assert "Tomorrow" in request_page(bob, 1)
    post(bob, 1, "approve")
    scheduled = db.session.scalars(select(ScheduledChange)).one()
    assert (scheduled.fields, scheduled.created_by) == ({"message": "Tomorrow"}, "ann@example.com")
    assert the_request().result == {"scheduled_change_id": scheduled.id}


def test_the_audit_log_names_each_step_and_who_took_it(ann, bob):
    edit(ann, message="Audited", cta="Go")
    post(bob, 1, "approve")
    page = bob.get("/admin/audit/").get_data(as_text=True)
    assert page.count("change request #1</a>: Update the entry of user 42") == 2
    steps = [
        (event.action, event.actor)
        for event in audit_events()
        if event.target_type == "change_request"
    ]
    assert steps == [("request", "ann@example.com"), ("approve", "bob@example.com")]


def test_an_approval_whose_change_cannot_be_queued_stays_open(ann, campaign):
    staged = upload_and_stage(ann, campaign.id, "spring.csv", CSV)
    apply(ann, staged.id)
    run_at = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
    tools = f"/admin/campaign-tools/{campaign.id}/"
    ann.post(
        f"{tools}schedule",
        data={
            "user_id": "42",
            "field_message": "Later",
            "run_at": run_at,
            "csrf_token": csrf_token(ann, tools),
        },
    )
    # The job queue is down (nothing listens there): nothing is applied, nothing is lost.
    unreachable = redis.Redis(host="127.0.0.1", port=free_port(), retry=Retry(NoBackoff(), 0))
    for request_id in (1, 2):
        with pytest.raises(workflow.ApprovalError, match="The request stays open"):
            workflow.approve(the_request(request_id), "bob@example.com", unreachable)
        reopened = the_request(request_id)
        assert (reopened.status, reopened.decided_by, reopened.result) == ("open", None, None)
    assert latest_import().status == "ready"
    assert db.session.scalars(select(ScheduledChange)).first() is None
    # The approvals that had committed say in the audit log that they were undone.
    undone = audit_events("approval_undone")
    assert [event.target_id for event in undone] == ["1", "2"]
    assert "unreachable" in undone[0].after["reason"]
