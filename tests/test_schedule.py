"""Scheduled changes and imports go live at their time (a real worker with its scheduler);
cancelled ones never do. And the coverage check of a list of user ids."""

from __future__ import annotations

import io
import time
from datetime import UTC, datetime, timedelta

import pytest
from common.import_support import IMPORTS, apply, latest_import, staged_by_worker, upload
from common.publishing_support import delete_entry, make_campaign, save_entry, stored_entry
from common.support import csrf_token, login, wait_until
from sqlalchemy import select

from ccadmin import keys
from ccadmin.extensions import db
from ccadmin.imports import coverage
from ccadmin.models import ContentEntry, ScheduledChange

TIMEOUT = 30.0


@pytest.fixture
def campaign(app):
    campaign = make_campaign("spring")
    save_entry(campaign, "1", "now")
    return campaign


@pytest.fixture
def editor(client, make_user, campaign):
    make_user("ed@example.com", role="editor")
    login(client, "ed@example.com")
    return client


def tools(campaign) -> str:
    return f"/admin/campaign-tools/{campaign.id}/"


def in_seconds(seconds: float) -> tuple[datetime, str]:
    moment = datetime.now(UTC) + timedelta(seconds=seconds)
    return moment, moment.strftime("%Y-%m-%dT%H:%M:%S")


def schedule(client, campaign, user_id: str, message: str, run_at: str):
    return client.post(
        f"{tools(campaign)}schedule",
        data={
            "user_id": user_id,
            "field_message": message,
            "run_at": run_at,
            "csrf_token": csrf_token(client, tools(campaign)),
        },
    )


def message_of(user_id: str) -> str | None:
    db.session.expire_all()
    entry = db.session.scalars(select(ContentEntry).where(ContentEntry.user_id == user_id)).first()
    return None if entry is None else entry.fields["message"]


def test_a_scheduled_change_goes_live_at_its_time(editor, campaign, redis_client, spawn):
    spawn(["-m", "workers"])
    moment, run_at = in_seconds(4)
    assert schedule(editor, campaign, "1", "later", run_at).status_code == 302
    assert schedule(editor, campaign, "2", "new later", run_at).status_code == 302
    page = editor.get(tools(campaign)).get_data(as_text=True)
    assert page.count('class="scheduled-change"') == 2
    assert message_of("1") == "now" and message_of("2") is None

    wait_until(lambda: message_of("1") == "later", TIMEOUT)
    assert datetime.now(UTC) >= moment.replace(microsecond=0)
    wait_until(lambda: message_of("2") == "new later", TIMEOUT)
    live = wait_until(
        lambda: (s := stored_entry(redis_client, "spring", "1")) and s[0] == 2 and s, TIMEOUT
    )
    assert b'"later"' in live[1]
    change = db.session.scalars(select(ScheduledChange).where(ScheduledChange.user_id == "1")).one()
    assert change.status == "done"
    db.session.expire_all()
    entry = db.session.scalars(select(ContentEntry).where(ContentEntry.user_id == "1")).one()
    assert entry.updated_by == "ed@example.com"
    assert 'class="scheduled-change"' not in editor.get(tools(campaign)).get_data(as_text=True)


def test_a_cancelled_change_never_goes_live(editor, campaign, redis_client, spawn):
    spawn(["-m", "workers"])
    _, run_at = in_seconds(3)
    schedule(editor, campaign, "1", "never", run_at)
    change = db.session.scalars(select(ScheduledChange)).one()
    url = f"{tools(campaign)}cancel/{change.id}"
    response = editor.post(url, data={"csrf_token": csrf_token(editor, tools(campaign))})
    assert response.status_code == 302
    time.sleep(6)  # well past its time, with the worker's scheduler running
    db.session.expire_all()
    assert db.session.get(ScheduledChange, change.id).status == "cancelled"
    assert message_of("1") == "now"
    assert stored_entry(redis_client, "spring", "1")[0] == 1


def test_a_scheduled_import_applies_at_its_time_and_can_be_cancelled(
    editor, campaign, redis_client, spawn
):
    spawn(["-m", "workers"])
    upload(editor, campaign.id, "a.csv", b"user_id,message\n1,imported later\n")
    first = staged_by_worker()
    upload(editor, campaign.id, "b.csv", b"user_id,message\n5,never imported\n")
    second = staged_by_worker()
    _, run_at = in_seconds(4)
    assert apply(editor, first.id, run_at=run_at).status_code == 302
    assert apply(editor, second.id, run_at=run_at).status_code == 302
    assert latest_import().status == "scheduled"
    page = editor.get(tools(campaign)).get_data(as_text=True)
    assert page.count('class="scheduled-import"') == 2
    url = f"{IMPORTS}{second.id}/"
    editor.post(f"{url}cancel", data={"csrf_token": csrf_token(editor, url)})
    wait_until(lambda: message_of("1") == "imported later", TIMEOUT)
    time.sleep(2)
    db.session.expire_all()
    assert db.session.get(type(second), second.id).status == "ready"
    assert message_of("5") is None


def test_schedule_refuses_past_times_and_invalid_fields(editor, campaign):
    _, past = in_seconds(-60)
    page = schedule(editor, campaign, "1", "late", past).get_data(as_text=True)
    assert "The time is in the past" in page
    _, run_at = in_seconds(600)
    page = schedule(editor, campaign, "1", "x" * 200, run_at).get_data(as_text=True)
    assert "Too long: 200 characters, at most 140." in page
    assert db.session.scalars(select(ScheduledChange)).first() is None


def test_an_import_apply_with_a_past_time_keeps_the_typed_time(editor, campaign, spawn):
    spawn(["-m", "workers"])
    upload(editor, campaign.id, "a.csv", b"user_id,message\n1,imported later\n")
    staged = staged_by_worker()
    _, past = in_seconds(-60)
    url = f"{IMPORTS}{staged.id}/"
    response = editor.post(
        f"{url}apply",
        data={"mode": "all_or_nothing", "run_at": past, "csrf_token": csrf_token(editor, url)},
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "The time is in the past" in page
    assert f'value="{past}"' in page
    assert latest_import().status == "ready"


def test_viewers_cannot_schedule(client, make_user, campaign):
    make_user("vi@example.com", role="viewer")
    login(client, "vi@example.com")
    page = client.get(tools(campaign)).get_data(as_text=True)
    assert 'id="schedule-form"' not in page
    _, run_at = in_seconds(600)
    assert schedule(client, campaign, "1", "sneaky", run_at).status_code == 403


def test_coverage_counts_live_content_and_fallbacks(editor, campaign, redis_client, spawn):
    spawn(["-m", "workers"])
    save_entry(campaign, "2", "two")
    save_entry(campaign, "3", "three")
    delete_entry(campaign, "3")
    wait_until(lambda: (s := stored_entry(redis_client, "spring", "3")) and s[0] == 2, TIMEOUT)
    wait_until(lambda: stored_entry(redis_client, "spring", "2"), TIMEOUT)
    ids = b"user_id,segment\n1,a\n2,b\n3,c\n4,d\n" + b"x" * 200 + b",e\n"
    response = editor.post(
        f"{tools(campaign)}coverage",
        data={
            "file": (io.BytesIO(ids), "ids.csv"),
            "csrf_token": csrf_token(editor, tools(campaign)),
        },
        content_type="multipart/form-data",
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert 'id="coverage-checked">4<' in page
    assert 'id="coverage-live">2<' in page
    assert 'id="coverage-fallback">2<' in page  # 3 was deleted, 4 never had content
    assert 'id="coverage-invalid">1<' in page
    assert "<code>3</code> <code>4</code>" in page
    plain = editor.post(
        f"{tools(campaign)}coverage",
        data={
            "file": (io.BytesIO(b"1\n2\n9\n"), "ids.txt"),
            "csrf_token": csrf_token(editor, tools(campaign)),
        },
        content_type="multipart/form-data",
    ).get_data(as_text=True)
    assert 'id="coverage-live">2<' in plain and 'id="coverage-fallback">1<' in plain
    # Pasted ids work the same, and the page keeps them.
    pasted = editor.post(
        f"{tools(campaign)}coverage",
        data={"ids": "1, 2\n9 =cmd", "csrf_token": csrf_token(editor, tools(campaign))},
    ).get_data(as_text=True)
    assert 'id="coverage-live">2<' in pasted and 'id="coverage-fallback">2<' in pasted
    assert ">1, 2\n9 =cmd</textarea>" in pasted
    # The ids without content, as CSV (a formula-like id made inert).
    download = editor.post(
        f"{tools(campaign)}coverage",
        data={
            "ids": "1\n2\n3\n4\n=cmd",
            "download": "1",
            "csrf_token": csrf_token(editor, tools(campaign)),
        },
    )
    assert download.headers["Content-Disposition"].endswith('spring-without-content.csv"')
    assert download.get_data(as_text=True).splitlines() == ["user_id", "3", "4", "'=cmd"]


def test_a_long_coverage_list_is_checked_by_a_worker_with_progress(
    editor, campaign, redis_client, spawn, monkeypatch
):
    monkeypatch.setattr(coverage, "INLINE_LIMIT", 3)
    spawn(["-m", "workers"])
    save_entry(campaign, "2", "two")
    for user_id in ("1", "2"):
        wait_until(lambda user_id=user_id: stored_entry(redis_client, "spring", user_id), TIMEOUT)
    response = editor.post(
        f"{tools(campaign)}coverage",
        data={"ids": "1\n2\n3\n4\n=cmd", "csrf_token": csrf_token(editor, tools(campaign))},
    )
    assert response.status_code == 302
    page_url = response.headers["Location"]
    page = wait_until(
        lambda: (
            'id="coverage-result"' in (text := editor.get(page_url).get_data(as_text=True)) and text
        ),
        TIMEOUT,
    )
    assert 'id="coverage-live">2<' in page and 'id="coverage-fallback">3<' in page
    download = editor.get(f"{page_url}.csv")
    assert download.get_data(as_text=True).splitlines() == ["user_id", "3", "4", "'=cmd"]
    assert editor.get(f"{tools(campaign)}coverage/not-a-token").status_code == 404
    assert editor.get(f"{tools(campaign)}coverage/{'0' * 24}").status_code == 404


def test_blank_lines_never_end_a_stashed_list_early(app, redis_client, monkeypatch):
    monkeypatch.setattr(coverage, "STASH_CHUNK", 2)
    token, count = coverage.stash(redis_client, iter(["a", "", "", "", "b", "c"]))
    assert count == 3
    assert list(coverage.stashed(redis_client, keys.coverage_ids_key(token))) == ["a", "b", "c"]
