"""Redis full: `maxmemory` reached under the `noeviction` policy (case 13)."""

from __future__ import annotations

import time

import pytest
import redis
from common.api_support import ENV_KEY, call
from common.fault_support import admin_save, differences, wait_ready
from common.publishing_support import make_campaign, save_entry
from common.support import login, wait_until
from sqlalchemy import select

from ccadmin.extensions import db
from ccadmin.models import ContentEntry, OutboxEvent

AUTH = {"X-API-Key": ENV_KEY}
MAXMEMORY = 16 * 1024 * 1024
FILLER = b"x" * 100_000
# Redis's refusal as the admin shows it (HTML-escaped).
OOM = "Redis is full: OutOfMemoryError: "


def fill(client: redis.Redis) -> int:
    """Write filler keys until Redis refuses writes for good; how many it took.

    The first refusal comes a hair under the limit (the refused command's own
    buffer tipped it over), where small writes still squeeze in. Setting the
    limit 1 MB under what is now used holds Redis past it, as content that
    outgrew its plan does.
    """
    for number in range(10 * MAXMEMORY // len(FILLER)):
        try:
            client.set(f"filler:{number}", FILLER)
        except redis.exceptions.OutOfMemoryError:
            used = client.info("memory")["used_memory"]
            client.config_set("maxmemory", used - 1024 * 1024)
            with pytest.raises(redis.exceptions.OutOfMemoryError):
                client.set("probe", "1")
            return number
    raise AssertionError("Redis never refused a write")


def failing_count(browser) -> tuple[int, str | None]:
    """What the live metrics page reports: events failing to publish, the newest error."""
    answer = browser.get("/admin/metrics/data?range=5m")
    assert answer.status_code == 200, answer.get_data(as_text=True)
    publishing = answer.get_json()["publishing"]
    return publishing["failing"], publishing["last_error"]


def test_full_redis_fails_publishing_loudly_and_keeps_reads_working(
    fault_app, private_redis, processes, make_user
):
    """Case 13: a save while Redis is full under noeviction.

    Expected: the save is kept in the database; its publish fails with
    Redis's OOM error, named in the save's flash ("Redis is full") and shown
    in the content list ("publish failing" and the error) and on the live
    metrics page, whose "failing to publish" count goes from 0 to 1; the API
    keeps answering 200 with the last published version. Once Redis has room
    (maxmemory raised) the change goes live by itself and the count is back
    to 0: nothing lost.
    """
    client = private_redis.start(
        False, "--maxmemory", str(MAXMEMORY), "--maxmemory-policy", "noeviction"
    )
    worker = processes.worker()
    wait_ready(client)
    campaign = make_campaign()
    for number in range(1, 4):
        save_entry(campaign, str(number), f"before {number}")
    wait_until(lambda: not differences(client, "spring"), timeout=20)
    _, port = processes.api()
    assert call(port, "/data?user_id=1", headers=AUTH).json()["version"] == 1
    make_user("ed@example.com", role="editor")
    browser = fault_app.test_client()
    login(browser, "ed@example.com")
    assert failing_count(browser) == (0, None)

    filler_keys = fill(client)
    entry_id = db.session.scalar(select(ContentEntry.id).where(ContentEntry.user_id == "1"))
    db.session.rollback()
    saved = admin_save(browser, campaign.id, "1", "saved while Redis is full", entry_id)
    assert saved.status_code == 302
    flashed = browser.get(saved.headers["Location"]).get_data(as_text=True)
    assert "Saved. Publish pending: Redis is full;" in flashed

    entry = db.session.get(ContentEntry, entry_id)
    assert entry.version == 2 and entry.fields["message"] == "saved while Redis is full"
    event = db.session.get(OutboxEvent, entry.last_event_id)
    assert event.published_at is None
    # Refused before the script ran (OutOfMemoryError) or inside it (-OOM): both named so.
    assert event.last_error.startswith("Redis is full: ")
    db.session.rollback()
    listing = browser.get(f"/admin/content/?search={entry.user_id}").get_data(as_text=True)
    assert "publish failing" in listing and OOM in listing
    failing, last_error = failing_count(browser)
    assert failing == 1 and "command not allowed when used memory" in last_error
    assert "Failing to publish" in browser.get("/admin/metrics/").get_data(as_text=True)

    answers = [call(port, f"/data?user_id={1 + number % 3}", headers=AUTH) for number in range(60)]
    assert {answer.status for answer in answers} == {200}
    assert {answer.json()["version"] for answer in answers} == {1}

    client.config_set("maxmemory", 4 * MAXMEMORY)
    room_at = time.monotonic()
    wait_until(
        lambda: call(port, "/data?user_id=1", headers=AUTH).json()["version"] == 2,
        timeout=30,
        interval=0.2,
    )
    recovery = time.monotonic() - room_at
    assert differences(client, "spring") == {}
    assert failing_count(browser) == (0, None)
    assert worker.alive()
    print(
        f"case 13: Redis full after {filler_keys} filler keys; the save kept, publish failing "
        f"with OOM (1 event counted), 60 of 60 API reads 200; live {recovery:.1f} s after "
        "maxmemory was raised, 0 lost"
    )
