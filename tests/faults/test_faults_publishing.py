"""Publishing faults: a save failing at commit (case 7), versions published out of order
(case 8), an event published twice and a crash between the Redis write and the outbox
update (case 9)."""

from __future__ import annotations

import signal
import time

import pytest
from common.fault_support import (
    COMMIT_FAILURES,
    CommitFailure,
    MarkPublishedBlocked,
    admin_save,
    database_dialect,
    differences,
    redis_dump,
    redis_entries,
    unpublished,
    wait_ready,
)
from common.manage_support import bearer, make_token
from common.publishing_support import make_campaign, publish_events, publish_pending, save_entry
from common.support import login, wait_until
from sqlalchemy import func, select, update

from ccadmin import keys
from ccadmin.content.seed import seed_content
from ccadmin.extensions import db
from ccadmin.models import ContentEntry, OutboxEvent
from workers import redis_writes
from workers.publish import entry_chunks, write_rows

# What the marketer may see of a failed save; none of the database's own words.
LEAKS = (
    "SELECT",
    "INSERT",
    "UPDATE",
    "COMMIT",
    "Traceback",
    "sqlalchemy",
    "psycopg2",
    "sqlite3",
    "fault_commit",
    "refused by the database",
    "terminating connection",
)
ENTRIES = 500


def outbox_count() -> int:
    count = db.session.execute(select(func.count()).select_from(OutboxEvent)).scalar()
    db.session.rollback()
    return count


@pytest.fixture(params=COMMIT_FAILURES[database_dialect()])
def commit_failure(request, fault_app):
    failure = CommitFailure(db.engine, request.param)
    yield failure
    db.session.rollback()
    failure.remove()


def test_save_failing_at_commit_leaves_no_trace(
    fault_app, private_redis, make_user, commit_failure
):
    """Case 7: the commit fails in the database: a plain message, and nothing published."""
    client = private_redis.start()
    campaign = make_campaign()
    save_entry(campaign, "1", "live before")
    publish_pending()
    client.delete(keys.PUBLISH_WAKE)
    make_user("ed@example.com", role="editor")
    browser = fault_app.test_client()
    login(browser, "ed@example.com")
    entry_id = db.session.scalar(select(ContentEntry.id))
    db.session.rollback()
    before = redis_dump(client)
    events = outbox_count()

    commit_failure.install()
    for user_id, existing in (("1", entry_id), ("2", None)):
        saved = admin_save(browser, campaign.id, user_id, "never saved", existing)
        text = saved.get_data(as_text=True)
        if commit_failure.kind == "connection lost":
            # The database is gone: the app's 503 page, which says to retry.
            assert saved.status_code == 503
            assert "Database unavailable" in text
            assert saved.headers["Retry-After"]
        else:
            # The form again, with its input kept and a plain message over it.
            assert saved.status_code == 200
            assert "Nothing was saved" in text
            assert "already has content" not in text
        for leak in LEAKS:
            assert leak not in text, leak
    assert outbox_count() == events
    assert not client.exists(keys.PUBLISH_WAKE)
    assert redis_dump(client) == before
    assert db.session.execute(select(ContentEntry.user_id, ContentEntry.version)).all() == [
        ("1", 1)
    ]
    db.session.rollback()
    print(
        f"case 7 ({commit_failure.kind}): 2 saves refused at commit, 0 outbox events, "
        "no wake-up, Redis unchanged"
    )


def test_an_ingest_write_failing_at_commit_answers_in_json(fault_app, commit_failure):
    """The same failures through /manage/v1: the API's JSON error, never an HTML page."""
    make_campaign()
    secret = make_token()
    events = outbox_count()
    commit_failure.install()
    answer = fault_app.test_client().put(
        "/manage/v1/campaigns/spring/content/7",
        json={"fields": {"message": "never saved"}},
        headers=bearer(secret, **{"Idempotency-Key": "retry-me"}),
    )
    assert answer.content_type == "application/json", answer.get_data(as_text=True)[:300]
    assert answer.status_code in (409, 500, 503)
    if commit_failure.kind == "connection lost":
        assert answer.status_code == 503 and answer.json["error"] == "database_unavailable"
        assert answer.headers["Retry-After"]
    assert outbox_count() == events
    db.session.rollback()


def publish_event(event_id: int) -> dict:
    """Publish one event here as a drainer would (no worker runs in case 8)."""
    summary = publish_events([event_id])
    db.session.rollback()
    return summary


def latest_event_id() -> int:
    event_id = db.session.scalar(select(func.max(OutboxEvent.id)))
    db.session.rollback()
    return event_id


def published(event_id: int) -> bool:
    published_at = db.session.scalar(
        select(OutboxEvent.published_at).where(OutboxEvent.id == event_id)
    )
    db.session.rollback()
    return published_at is not None


def test_version_2_published_before_version_1(fault_app, private_redis):
    """Case 8: a drainer reads version 1, version 2 is published, then version 1's write
    arrives: Redis keeps version 2 and counts every refused write as stale."""
    client = private_redis.start()
    user_ids = [str(number) for number in range(1, ENTRIES + 1)]
    seed_content("spring", ENTRIES)
    version_1 = latest_event_id()
    slugs = {db.session.scalar(select(ContentEntry.campaign_id)): "spring"}
    # What a drainer read of version 1 from the database, before it stalled.
    read_for_version_1 = list(entry_chunks(ContentEntry.last_event_id == version_1))
    db.session.rollback()
    seed_content("spring", ENTRIES)
    version_2 = latest_event_id()

    assert publish_event(version_2)["written"] == ENTRIES
    live = redis_entries(client, "spring", user_ids)
    assert {entry[0] for entry in live.values()} == {2}
    late = redis_writes.WriteCounts()
    for rows in read_for_version_1:
        late.add(write_rows(client, slugs, rows))
    assert (late.written, late.stale) == (0, ENTRIES)
    # Version 1's event, published last: its entries moved on to version 2, it writes nothing.
    assert publish_event(version_1)["written"] == 0

    assert redis_entries(client, "spring", user_ids) == live
    assert not differences(client, "spring")
    assert published(version_1) and published(version_2)
    assert redis_writes.stats(client) == {
        keys.STAT_WRITES: ENTRIES,
        keys.STAT_STALE_WRITES: ENTRIES,
    }
    print(
        f"case 8: {ENTRIES} version-1 writes after version 2: 0 applied, "
        f"{ENTRIES} counted stale, 0 entries went back"
    )


def test_event_published_twice_and_crash_before_marking_done_change_nothing(
    fault_app, private_redis, processes
):
    """Case 9: a published event taken again (its mark lost), then a worker killed after
    its Redis writes and before the outbox update; the replays leave every entry as it
    was, no write applied."""
    client = private_redis.start()
    user_ids = [str(number) for number in range(1, ENTRIES + 1)]
    victim = processes.worker()
    wait_ready(client)
    seed_content("spring", ENTRIES)
    first = latest_event_id()
    wait_until(lambda: not differences(client, "spring") and not unpublished(), timeout=20)

    live = redis_entries(client, "spring", user_ids)
    counted = redis_writes.stats(client)
    db.session.execute(update(OutboxEvent).where(OutboxEvent.id == first).values(published_at=None))
    db.session.commit()
    wait_until(lambda: published(first), timeout=20, interval=0.1)
    assert redis_writes.stats(client) == {
        keys.STAT_WRITES: counted[keys.STAT_WRITES],
        keys.STAT_STALE_WRITES: counted.get(keys.STAT_STALE_WRITES, 0) + ENTRIES,
    }
    assert db.session.get(OutboxEvent, first).attempts == 2
    db.session.rollback()
    assert redis_entries(client, "spring", user_ids) == live

    # Freeze the worker so mark_published is blocked before it can take the event;
    # it then writes Redis and blocks in mark_published, where it is killed.
    victim.signal(signal.SIGSTOP)
    seed_content("spring", ENTRIES)
    second = latest_event_id()
    blocked = MarkPublishedBlocked(db.engine)
    try:
        victim.signal(signal.SIGCONT)
        wait_until(lambda: not differences(client, "spring"), timeout=20)
        victim.kill()
    finally:
        blocked.release()
    killed_at = time.monotonic()
    assert not published(second)
    live = redis_entries(client, "spring", user_ids)
    assert {entry[0] for entry in live.values()} == {2}
    counted = redis_writes.stats(client)

    processes.worker()
    wait_until(lambda: published(second), timeout=30, interval=0.2)
    recovery = time.monotonic() - killed_at
    assert redis_entries(client, "spring", user_ids) == live
    assert redis_writes.stats(client) == {
        keys.STAT_WRITES: counted[keys.STAT_WRITES],
        keys.STAT_STALE_WRITES: counted[keys.STAT_STALE_WRITES] + ENTRIES,
    }
    print(
        f"case 9: republish of a done event and replay after a kill before the outbox "
        f"update: 0 of {ENTRIES} entries changed, 0 writes applied, {2 * ENTRIES} counted "
        f"stale; event done {recovery:.1f} s after the kill"
    )
