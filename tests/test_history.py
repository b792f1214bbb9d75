"""An entry's versions on its page, and "restore this version" (audited, published)."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime

import pytest
from common.import_support import IMPORTS, apply, latest_import, staged_by_worker, upload
from common.publishing_support import delete_entry, make_campaign, save_entry, stored_entry
from common.support import csrf_token, login, wait_until
from sqlalchemy import select

from ccadmin.extensions import db
from ccadmin.models import AuditEvent, ContentEntry
from ccadmin.models.outbox import OutboxEvent


@pytest.fixture
def entry(app):
    campaign = make_campaign("spring")
    save_entry(campaign, "42", "first <b>words</b>")
    save_entry(campaign, "42", "second")
    save_entry(campaign, "42", "third")
    return db.session.scalars(select(ContentEntry)).one()


def details(client, entry_id: int) -> str:
    db.session.expire_all()
    return client.get(f"/admin/content/details/?id={entry_id}").get_data(as_text=True)


def restore(client, entry_id: int, version: int, token: str | None = None):
    url = f"/admin/content/details/?id={entry_id}"
    return client.post(
        "/admin/content/restore/",
        data={
            "id": str(entry_id),
            "version": str(version),
            "csrf_token": csrf_token(client, url) if token is None else token,
        },
    )


def test_the_entry_page_lists_versions_with_diffs(client, make_user, entry):
    make_user("vi@example.com", role="viewer")
    login(client, "vi@example.com")
    page = details(client, entry.id)
    assert [int(v) for v in re.findall(r'data-version="(\d+)"', page)] == [3, 2, 1]
    assert "<del>second</del>" in page and "<ins>third</ins>" in page
    # User data is escaped, never interpreted.
    assert "first &lt;b&gt;words&lt;/b&gt;" in page and "<b>words</b>" not in page
    assert "editor@example.com" in page
    assert "Restore this version" not in page  # viewers read only
    assert restore(client, entry.id, 1).status_code == 403


def test_restore_creates_a_new_version_that_goes_live(
    client, make_user, entry, redis_client, spawn
):
    spawn(["-m", "workers"])
    make_user("ed@example.com", role="editor")
    login(client, "ed@example.com")
    page = details(client, entry.id)
    assert page.count("Restore this version") == 2  # not for the current version
    response = restore(client, entry.id, 1)
    assert response.status_code == 302
    assert "Version 1 restored as version 4." in details(client, entry.id)

    db.session.expire_all()
    restored = db.session.get(ContentEntry, entry.id)
    assert (restored.version, restored.fields) == (4, {"message": "first <b>words</b>"})
    audit = db.session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())).first()
    assert (audit.action, audit.actor) == ("restore", "ed@example.com")
    assert (audit.before["version"], audit.after["version"]) == (3, 4)
    assert db.session.get(OutboxEvent, restored.last_event_id).version == 4
    stored = wait_until(
        lambda: (s := stored_entry(redis_client, "spring", "42")) and s[0] == 4 and s
    )
    assert json.loads(stored[1])["message"] == "first <b>words</b>"


def test_restore_needs_the_csrf_token_and_a_recorded_version(client, make_user, entry):
    make_user("ed@example.com", role="editor")
    login(client, "ed@example.com")
    assert restore(client, entry.id, 1, token="forged").status_code == 400
    response = restore(client, entry.id, 99)
    assert response.status_code == 302
    assert "not recorded" in details(client, entry.id)
    db.session.expire_all()
    assert db.session.get(ContentEntry, entry.id).version == 3


def test_import_versions_appear_in_the_history(client, make_user, entry, spawn):
    make_user("ed@example.com", role="editor")
    login(client, "ed@example.com")
    spawn(["-m", "workers"])
    upload(client, entry.campaign_id, "a.csv", b"user_id,message\n42,from the file\n")
    content_import = staged_by_worker()
    apply(client, content_import.id)

    def applied():
        db.session.expire_all()
        return latest_import().status == "applied"

    wait_until(applied, 30)
    page = details(client, entry.id)
    assert 'data-version="4"' in page
    assert f'href="{IMPORTS}{content_import.id}/"' in page
    assert "<del>third</del>" in page and "<ins>from the file</ins>" in page
    assert restore(client, entry.id, 3).status_code == 302
    db.session.expire_all()
    assert db.session.get(ContentEntry, entry.id).fields == {"message": "third"}
    assert restore(client, entry.id, 4).status_code == 302
    db.session.expire_all()
    restored = db.session.get(ContentEntry, entry.id)
    assert (restored.version, restored.fields) == (6, {"message": "from the file"})


def test_a_campaign_switches_back_to_its_state_at_a_time(
    client, make_user, app, redis_client, spawn
):
    spawn(["-m", "workers"])
    campaign = make_campaign("spring")
    save_entry(campaign, "a", "a before")
    save_entry(campaign, "c", "c before")
    save_entry(campaign, "d", "d untouched")
    time.sleep(1.2)
    moment = datetime.now(UTC).replace(microsecond=0)
    time.sleep(1.2)
    save_entry(campaign, "a", "a after")
    save_entry(campaign, "a", "a after again")
    save_entry(campaign, "b", "b created after")
    delete_entry(campaign, "c")
    make_user("ed@example.com", role="editor")
    login(client, "ed@example.com")
    upload(client, campaign.id, "a.csv", b"user_id,message\ne,imported after\nd,d untouched\n")
    apply(client, staged_by_worker().id)
    wait_until(lambda: db.session.expire_all() or latest_import().status == "applied", 30)

    tools = f"/admin/campaign-tools/{campaign.id}/"
    response = client.post(
        f"{tools}revert",
        data={"at": moment.strftime("%Y-%m-%dT%H:%M:%S"), "csrf_token": csrf_token(client, tools)},
    )
    assert response.status_code == 302
    revert = latest_import()
    assert revert.kind == "revert" and revert.status == "ready"
    assert (revert.changed_rows, revert.deleted_rows, revert.new_rows) == (1, 2, 1)
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "<del>a after again</del>" in page and "<ins>a before</ins>" in page
    assert f"Revert #{revert.id} of" in page and "<th>After revert</th>" in page
    assert "Discard this revert" in page and 'class="count-deleted">2<' in page
    for import_wording in ("<th>Line</th>", "After import", "invalid rows", "Discard this import"):
        assert import_wording not in page
    apply(client, revert.id)
    wait_until(lambda: db.session.expire_all() or latest_import().status == "applied", 30)

    entries = {e.user_id: e for e in db.session.scalars(select(ContentEntry))}
    assert entries["a"].fields == {"message": "a before"} and not entries["a"].deleted
    assert entries["b"].deleted and entries["e"].deleted
    assert entries["c"].fields == {"message": "c before"} and not entries["c"].deleted
    assert entries["d"].version == 1
    for user_id, message in (("a", "a before"), ("c", "c before"), ("b", None), ("e", None)):
        version = entries[user_id].version
        stored = wait_until(
            lambda u=user_id, v=version: (
                (s := stored_entry(redis_client, "spring", u)) and s[0] == v and s
            ),
            30,
        )
        assert (json.loads(stored[1])["message"] if stored[1] else None) == message
