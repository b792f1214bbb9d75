"""Applying imports with a real worker: valid rows only, progress, all-or-nothing, rollback."""

from __future__ import annotations

import json

import pytest
from common.import_support import (
    IMPORTS,
    SCHEMA,
    apply,
    entries,
    latest_import,
    roll_back,
    staged_by_worker,
    upload,
    upload_and_stage,
)
from common.publishing_support import make_campaign, save_entry, stored_entry
from common.support import confirmation, csrf_token, login, wait_until
from sqlalchemy import func, select, update

from ccadmin.extensions import db
from ccadmin.imports import applying
from ccadmin.models import AuditEvent, ContentImport, ImportRow, OutboxEvent
from ccadmin.models.outbox import KIND_CONTENT

WORKER = ["-m", "workers"]
TIMEOUT = 30.0


@pytest.fixture
def campaign(app):
    campaign = make_campaign("spring", field_schema=SCHEMA)
    for user_id in ("1", "2", "3", "4"):
        save_entry(campaign, user_id, f"old {user_id}")
    return campaign


@pytest.fixture
def editor(client, make_user, campaign):
    make_user("ed@example.com", role="editor")
    login(client, "ed@example.com")
    return client


def status(client, import_id: int) -> dict:
    # Requests share the test's session: let them see the worker's commits.
    db.session.expire_all()
    return client.get(f"{IMPORTS}{import_id}/status").get_json()


def live_message(redis_client, user_id: str) -> tuple[int, str | None] | None:
    """(version, message) Redis serves, message None for a tombstone."""
    stored = stored_entry(redis_client, "spring", user_id)
    if stored is None:
        return None
    version, body = stored
    return version, json.loads(body)["message"] if body else None


def test_valid_rows_only_applies_exactly_the_valid_rows(editor, campaign, redis_client, spawn):
    spawn(WORKER)
    upload(
        editor,
        campaign.id,
        "spring.csv",
        b"user_id,message\n1,new one\n2,old 2\n9,brand new\n10,\n11,far far too long for this\n",
    )
    content_import = staged_by_worker()
    assert (content_import.invalid_rows, content_import.status) == (2, "ready")
    assert apply(editor, content_import.id, "valid_only").status_code == 302

    state = wait_until(lambda: (s := status(editor, content_import.id))["live"] and s, TIMEOUT)
    assert state["status"] == "applied"
    assert state["percent"] == 100
    assert (state["done"], state["total"]) == (3, 3)
    assert (state["written"], state["batches"], state["published_batches"]) == (2, 1, 1)
    page = editor.get(f"{IMPORTS}{content_import.id}/").get_data(as_text=True)
    assert ">100%</div>" in page and 'data-running="false"' in page

    stored = entries(campaign.id)
    assert set(stored) == {"1", "2", "3", "4", "9"}
    assert (stored["1"].version, stored["1"].fields) == (2, {"message": "new one"})
    assert stored["1"].updated_by == "ed@example.com"
    assert (stored["2"].version, stored["9"].version) == (1, 1)
    assert wait_until(lambda: live_message(redis_client, "1") == (2, "new one"), TIMEOUT)
    assert live_message(redis_client, "9") == (1, "brand new")
    assert live_message(redis_client, "2") == (1, "old 2")
    assert live_message(redis_client, "10") is None and live_message(redis_client, "11") is None
    (audit,) = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "import")).all()
    assert audit.actor == "ed@example.com"
    assert (audit.after["new"], audit.after["changed"], audit.after["invalid"]) == (1, 1, 2)


def test_rolling_back_an_import_restores_the_previous_versions(
    editor, campaign, redis_client, spawn
):
    spawn(WORKER)
    upload(editor, campaign.id, "a.csv", b"user_id,message\n1,imported\n9,created\n")
    content_import = staged_by_worker()
    apply(editor, content_import.id)
    wait_until(lambda: status(editor, content_import.id)["live"], TIMEOUT)
    save_entry(campaign, "9", "edited after")  # v2: edited since, so left alone

    url = f"{IMPORTS}{content_import.id}/"
    assert roll_back(editor, content_import.id).status_code == 302
    rollback = latest_import()
    assert (rollback.kind, rollback.source_import_id) == ("rollback", content_import.id)
    wait_until(lambda: status(editor, rollback.id)["live"], TIMEOUT)
    db.session.expire_all()
    assert db.session.get(ContentImport, content_import.id).status == "rolled_back"
    assert db.session.get(ContentImport, rollback.id).changed_rows == 1
    stored = entries(campaign.id)
    assert (stored["1"].version, stored["1"].fields) == (3, {"message": "old 1"})
    assert (stored["9"].version, stored["9"].deleted) == (2, False)
    assert wait_until(lambda: live_message(redis_client, "1") == (3, "old 1"), TIMEOUT)
    assert live_message(redis_client, "9") == (2, "edited after")
    # Rolled back once: the page offers no second rollback.
    assert 'id="rollback"' not in editor.get(url).get_data(as_text=True)


def test_a_rollback_asks_first_and_can_be_rolled_forward(editor, campaign, redis_client, spawn):
    spawn(WORKER)
    upload(editor, campaign.id, "a.csv", b"user_id,message\n1,imported\n2,imported\n9,created\n")
    content_import = staged_by_worker()
    apply(editor, content_import.id)
    wait_until(lambda: status(editor, content_import.id)["live"], TIMEOUT)
    url = f"{IMPORTS}{content_import.id}/"

    # The first POST only asks, with the number of entries; nothing happens.
    first = editor.post(f"{url}rollback", data={"csrf_token": csrf_token(editor, url)})
    page = first.get_data(as_text=True)
    assert first.status_code == 200
    assert "This restores 3 entries of spring" in page
    assert '<input type="hidden" name="confirm" value="3">' in page
    # A confirmation for another count asks again.
    stale = editor.post(
        f"{url}rollback", data={"csrf_token": csrf_token(editor, url), "confirm": "2"}
    )
    assert 'id="confirm-stale"' in stale.get_data(as_text=True)
    assert latest_import().id == content_import.id
    assert entries(campaign.id)["1"].fields == {"message": "imported"}

    assert roll_back(editor, content_import.id).status_code == 302
    rollback = latest_import()
    wait_until(lambda: status(editor, rollback.id)["live"], TIMEOUT)
    assert entries(campaign.id)["1"].fields == {"message": "old 1"}
    assert entries(campaign.id)["9"].deleted
    save_entry(campaign, "2", "edited after the rollback")  # left alone by the roll forward

    rollback_page = editor.get(f"{IMPORTS}{rollback.id}/").get_data(as_text=True)
    assert "Roll forward: re-apply what this rollback undid" in rollback_page
    asked = confirmation(
        editor.post(
            f"{IMPORTS}{rollback.id}/rollback",
            data={"csrf_token": csrf_token(editor, f"{IMPORTS}{rollback.id}/")},
        )
    )
    assert ("confirm", "3") in asked[1]
    assert roll_back(editor, rollback.id).status_code == 302
    forward = latest_import()
    assert (forward.kind, forward.source_import_id) == ("roll_forward", rollback.id)
    # Entry 9, deleted by the rollback, comes back: counted as new, not changed.
    assert (forward.new_rows, forward.changed_rows, forward.deleted_rows) == (1, 2, 0)
    wait_until(lambda: status(editor, forward.id)["live"], TIMEOUT)
    stored = entries(campaign.id)
    assert stored["1"].fields == {"message": "imported"} and stored["1"].version == 4
    assert stored["9"].fields == {"message": "created"} and not stored["9"].deleted
    assert stored["2"].fields == {"message": "edited after the rollback"}
    db.session.expire_all()
    assert db.session.get(ContentImport, rollback.id).status == "rolled_back"
    audit = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "roll_forward")).one()
    assert (audit.after["written"], audit.after["conflicts"]) == (2, 1)
    assert wait_until(lambda: live_message(redis_client, "9") == (3, "created"), TIMEOUT)
    # The roll forward can itself be rolled back.
    assert "Roll back this roll forward" in editor.get(f"{IMPORTS}{forward.id}/").get_data(
        as_text=True
    )


def sabotage(import_id: int, line: int) -> None:
    """A staged row the database refuses to write (no user id): a failure mid-apply."""
    db.session.execute(
        update(ImportRow)
        .where(ImportRow.import_id == import_id, ImportRow.line == line)
        .values(user_id=None)
    )
    db.session.commit()


def staged_import(editor, campaign, content: bytes, worker: bool = False) -> ContentImport:
    """An uploaded file, staged (by the running worker, or here), marked queued."""
    if worker:
        upload(editor, campaign.id, "a.csv", content)
        content_import = staged_by_worker()
    else:
        content_import = upload_and_stage(editor, campaign.id, "a.csv", content)
    content_import.status, content_import.applied_by = "queued", "ed@example.com"
    db.session.commit()
    return content_import


def content_events() -> int:
    return db.session.execute(
        select(func.count()).where(OutboxEvent.kind == KIND_CONTENT)
    ).scalar_one()


def test_failure_in_the_first_batch_changes_nothing(editor, campaign):
    before = content_events()
    content_import = staged_import(
        editor, campaign, b"user_id,message\n1,changed\n9,created\n2,changed\n"
    )
    sabotage(content_import.id, 3)
    result = applying.apply_change_set(content_import.id, batch_size=2)
    assert result["status"] == "failed" and "rollback" not in result
    db.session.expire_all()
    error = db.session.get(ContentImport, content_import.id).error
    assert "writing the rows after line 0 failed" in error
    assert "content_entry" not in error  # no SQL or values in what the page shows
    assert content_events() == before
    assert {user: entry.version for user, entry in entries(campaign.id).items()} == {
        "1": 1,
        "2": 1,
        "3": 1,
        "4": 1,
    }


def test_failure_midway_undoes_the_committed_batches(editor, campaign, redis_client, spawn):
    spawn(WORKER)
    wait_until(lambda: live_message(redis_client, "4") == (1, "old 4"), TIMEOUT)
    content_import = staged_import(
        editor,
        campaign,
        b"user_id,message\n9,created\n1,changed\n2,changed\n3,changed\n4,changed\n10,x\n",
        worker=True,
    )
    sabotage(content_import.id, 7)  # user 10, in the third batch of two
    result = applying.apply_change_set(content_import.id, batch_size=2)
    assert result["status"] == "failed"
    assert result["rollback"]["status"] == "applied"

    db.session.expire_all()
    failed = db.session.get(ContentImport, content_import.id)
    assert failed.status == "failed" and failed.applied_through_line == 5
    page = editor.get(f"{IMPORTS}{failed.id}/").get_data(as_text=True)
    assert "The apply stopped" in page
    stored = entries(campaign.id)
    assert {user: entry.fields["message"] for user, entry in stored.items()} == {
        "1": "old 1",
        "2": "old 2",
        "3": "old 3",
        "4": "old 4",
        "9": "created",
    }
    assert stored["9"].deleted and stored["9"].version == 2
    assert [stored[user].version for user in ("1", "2", "3", "4")] == [3, 3, 3, 1]
    # What the endpoint serves is what it served before the import.
    assert wait_until(lambda: live_message(redis_client, "9") == (2, None), TIMEOUT)
    for user_id, version in (("1", 3), ("2", 3), ("3", 3), ("4", 1)):
        assert wait_until(
            lambda u=user_id, v=version: live_message(redis_client, u) == (v, f"old {u}"),
            TIMEOUT,
        )


def test_an_apply_whose_worker_died_can_be_resumed(editor, campaign, redis_client, spawn):
    content_import = upload_and_stage(
        editor, campaign.id, "a.csv", b"user_id,message\n1,resumed\n9,also resumed\n"
    )
    # What a worker killed mid-apply leaves: applying, and no job to finish it.
    content_import.status, content_import.applied_by = "applying", "ed@example.com"
    db.session.commit()
    url = f"{IMPORTS}{content_import.id}/"
    assert status(editor, content_import.id)["stalled"] is True
    assert 'id="stalled"' in editor.get(url).get_data(as_text=True)
    spawn(WORKER)
    assert (
        editor.post(f"{url}resume", data={"csrf_token": csrf_token(editor, url)}).status_code == 302
    )
    state = wait_until(lambda: (s := status(editor, content_import.id))["live"] and s, TIMEOUT)
    assert (state["status"], state["written"], state["stalled"]) == ("applied", 2, False)
    assert wait_until(lambda: live_message(redis_client, "9") == (1, "also resumed"), TIMEOUT)
