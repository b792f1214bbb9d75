"""Publishing invariants: the outbox, the wake-up and the drainers, run in this process."""

from __future__ import annotations

import dataclasses
import json
import threading

import pytest
import redis
from common.publishing_support import (
    ACTOR,
    delete_entry,
    make_campaign,
    publish_events,
    publish_pending,
    save_entry,
    stored_entry,
)
from common.support import free_port, wait_until
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from ccadmin import keys, payload, publishing
from ccadmin.extensions import db
from ccadmin.metrics import system
from ccadmin.models import ApiKey, Campaign, ContentEntry, OutboxEvent, PublishFailure
from ccadmin.models.credentials import hash_secret
from ccadmin.models.types import utcnow
from ccadmin.publishing.wake import redis_is_full, wake_failure_reason
from workers import redis_writes
from workers.drain import FRESH, Drainer, claim, drain_batch
from workers.publish import config_json
from workers.sweeper import Sweeper, clear_superseded_failures, ensure_ready


def publish_event(event_id: int) -> dict:
    """Publish one event as a drainer would, and see what it committed."""
    summary = publish_events([event_id])
    db.session.rollback()
    return summary


def test_change_and_outbox_event_commit_together(app, redis_client):
    campaign = make_campaign()
    outbox_event = save_entry(campaign, "42", "Hi there")
    entry = db.session.execute(select(ContentEntry)).scalar_one()
    assert entry.version == 1
    assert entry.last_event_id == outbox_event.id
    assert (outbox_event.kind, outbox_event.content_entry_id, outbox_event.version) == (
        "content",
        entry.id,
        1,
    )
    # One wake-up, however many saves.
    save_entry(campaign, "43", "Hi again")
    assert redis_client.lrange(keys.PUBLISH_WAKE, 0, -1) == [b"1"]


def test_failing_commit_leaves_no_outbox_row_no_wake_up_and_no_redis_change(app, redis_client):
    campaign = make_campaign()
    save_entry(campaign, "7", "first")
    events_before = db.session.execute(select(func.count(OutboxEvent.id))).scalar()
    redis_client.delete(keys.PUBLISH_WAKE)
    redis_before = sorted(redis_client.keys(keys.entry_key_pattern("*")))

    entry = ContentEntry(campaign_id=campaign.id, user_id="8", fields={"message": "new"})
    publishing.record_content_change(entry, ACTOR, "create", None)
    # A second row for user 7 in the same transaction: the commit fails.
    db.session.add(ContentEntry(campaign_id=campaign.id, user_id="7", fields={"message": "x"}))
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()

    assert db.session.execute(select(func.count(OutboxEvent.id))).scalar() == events_before
    assert (
        db.session.execute(select(ContentEntry.id).where(ContentEntry.user_id == "8")).first()
        is None
    )
    assert not redis_client.exists(keys.PUBLISH_WAKE)
    assert sorted(redis_client.keys(keys.entry_key_pattern("*"))) == redis_before


def test_publish_event_writes_exactly_the_rendered_body(app, redis_client):
    campaign = make_campaign()
    outbox_event = save_entry(campaign, "42", "Hello, Zoë")
    summary = publish_event(outbox_event.id)
    assert summary["written"] == 1
    expected = payload.render_payload("spring", "42", 1, {"message": "Hello, Zoë"})
    assert stored_entry(redis_client, "spring", "42") == (1, expected)
    assert json.loads(expected)["message"] == "Hello, Zoë"
    db.session.refresh(outbox_event)
    assert outbox_event.published_at is not None
    assert outbox_event.attempts == 1


def test_publishing_twice_gives_the_same_state(app, redis_client):
    campaign = make_campaign()
    outbox_event = save_entry(campaign, "42", "once")
    publish_event(outbox_event.id)
    first = redis_client.hgetall(keys.entry_key("spring", "42"))
    # Published events are not claimed again ...
    assert publish_event(outbox_event.id) == {"events": 0}
    # ... and a batch that wrote Redis but died before its commit is re-driven harmlessly.
    db.session.execute(
        text("UPDATE outbox_event SET published_at = NULL WHERE id = :id"), {"id": outbox_event.id}
    )
    db.session.commit()
    summary = publish_event(outbox_event.id)
    assert (summary["written"], summary["stale"]) == (0, 1)
    assert redis_client.hgetall(keys.entry_key("spring", "42")) == first


def test_older_version_published_late_never_wins(app, redis_client):
    campaign = make_campaign()
    first_event = save_entry(campaign, "42", "version one")
    second_event = save_entry(campaign, "42", "version two")
    publish_event(second_event.id)
    version_two = payload.render_payload("spring", "42", 2, {"message": "version two"})
    assert stored_entry(redis_client, "spring", "42") == (2, version_two)

    # The first job runs late: the entry no longer points at its event.
    publish_event(first_event.id)
    # A job that read version 1 before the edit and writes only now.
    version_one = payload.render_payload("spring", "42", 1, {"message": "version one"})
    assert not redis_writes.write_entry(
        redis_client, keys.entry_key("spring", "42"), 1, version_one
    )

    assert stored_entry(redis_client, "spring", "42") == (2, version_two)
    assert redis_writes.stats(redis_client)[keys.STAT_STALE_WRITES] >= 1


def test_delete_publishes_a_tombstone(app, redis_client):
    campaign = make_campaign()
    publish_event(save_entry(campaign, "42", "soon gone").id)
    publish_event(delete_entry(campaign, "42").id)
    assert stored_entry(redis_client, "spring", "42") == (2, b"")


def test_campaign_event_publishes_config_and_default_pointer(app, redis_client):
    campaign = make_campaign()
    outbox_event = db.session.execute(
        select(OutboxEvent).where(OutboxEvent.kind == "campaign")
    ).scalar_one()
    publish_event(outbox_event.id)
    assert redis_client.hget(keys.CAMPAIGNS, "spring").decode() == config_json(campaign)
    assert redis_client.get(keys.DEFAULT_CAMPAIGN) == b"spring"
    config_version = int(redis_client.get(keys.CONFIG_VERSION))

    campaign.is_default = False
    campaign.active = False
    campaign.version += 1
    change = publishing.record_campaign_change(campaign.id)
    db.session.commit()
    publish_event(change.id)
    stored = json.loads(redis_client.hget(keys.CAMPAIGNS, "spring"))
    assert (stored["version"], stored["active"]) == (2, False)
    assert redis_client.get(keys.DEFAULT_CAMPAIGN) is None
    assert int(redis_client.get(keys.CONFIG_VERSION)) > config_version


def test_api_keys_event_publishes_the_key_set(app, redis_client):
    keep = ApiKey(name="braze", prefix="cc_keep", secret_hash=hash_secret("cc_keep-secret"))
    revoke = ApiKey(
        name="old", prefix="cc_old", secret_hash=hash_secret("cc_old-secret"), campaigns=["spring"]
    )
    db.session.add_all([keep, revoke])
    created = publishing.record_api_keys_change()
    db.session.commit()
    publish_event(created.id)
    published = {
        name.decode(): json.loads(value)
        for name, value in redis_client.hgetall(keys.API_KEYS).items()
    }
    assert published == {
        hash_secret("cc_keep-secret"): {"name": "braze", "campaigns": None},
        hash_secret("cc_old-secret"): {"name": "old", "campaigns": ["spring"]},
    }

    revoke.revoked_at = utcnow()
    revoked = publishing.record_api_keys_change()
    db.session.commit()
    publish_event(revoked.id)
    assert list(redis_client.hkeys(keys.API_KEYS)) == [hash_secret("cc_keep-secret").encode()]


def test_a_drainer_publishes_an_event_whose_wake_up_failed(app, redis_client):
    campaign = make_campaign()
    settings = app.config["CCADMIN_SETTINGS"]
    app.config["CCADMIN_SETTINGS"] = dataclasses.replace(
        settings, redis_url=f"redis://127.0.0.1:{free_port()}/0"
    )
    try:
        outbox_event = save_entry(campaign, "42", "queue was down")
    finally:
        app.config["CCADMIN_SETTINGS"] = settings
    db.session.refresh(outbox_event)
    assert outbox_event.last_error.startswith("Redis is unreachable")
    assert stored_entry(redis_client, "spring", "42") is None

    # Nothing wakes it: the drainer's poll finds the event.
    drainer = Drainer(app, FRESH, lambda: redis_client, poll_seconds=0.2)
    drainer.start()
    try:
        wait_until(lambda: stored_entry(redis_client, "spring", "42") is not None)
    finally:
        drainer.stop()
        drainer.join(5)
    assert not drainer.is_alive()
    db.session.rollback()
    published = db.session.get(OutboxEvent, outbox_event.id)
    assert published.published_at is not None and published.last_error is None


def test_a_batch_that_fails_keeps_its_events_and_the_next_drain_publishes_them(app, redis_client):
    campaign = make_campaign()
    events = [save_entry(campaign, str(user), f"hello {user}").id for user in range(5)]
    unreachable = type(redis_client).from_url(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(redis.ConnectionError):
        drain_batch(unreachable, FRESH.condition, FRESH.batch)
    failed = db.session.execute(
        select(OutboxEvent.published_at, OutboxEvent.attempts, OutboxEvent.last_error).where(
            OutboxEvent.id.in_(events)
        )
    ).all()
    assert all(row.published_at is None and row.attempts == 1 for row in failed)
    assert all("ConnectionError" in row.last_error for row in failed)

    publish_pending()
    assert [stored_entry(redis_client, "spring", str(user))[0] for user in range(5)] == [1] * 5


def test_two_drainers_never_claim_the_same_event(app, redis_client):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("claims that skip locked rows need PostgreSQL (SQLite: one drainer a lane)")
    campaign = make_campaign()
    publish_pending()
    events = sorted(save_entry(campaign, str(user), "hi").id for user in range(10))
    held = [row.id for row in claim(FRESH.condition, 4)]  # locked until this session ends
    taken: list[int] = []

    def other_drainer() -> None:
        with app.app_context():
            taken.extend(row.id for row in claim(FRESH.condition, 100))
            db.session.rollback()

    thread = threading.Thread(target=other_drainer)
    thread.start()
    thread.join(10)
    assert held == events[:4]
    assert taken == events[4:]
    db.session.rollback()


def test_missing_ready_marker_makes_the_sweeper_rebuild(app, redis_client):
    campaign = make_campaign()
    save_entry(campaign, "1", "one")
    save_entry(campaign, "2", "two")
    delete_entry(campaign, "2")
    redis_client.flushdb()
    assert ensure_ready(redis_client)["entries"] == 2
    ready = json.loads(redis_client.get(keys.READY))
    assert (ready["entries"], ready["campaigns"]) == (2, 1)
    assert stored_entry(redis_client, "spring", "1")[0] == 1
    assert stored_entry(redis_client, "spring", "2") == (2, b"")
    assert redis_client.get(keys.DEFAULT_CAMPAIGN) == b"spring"
    # Pending events are left to the drainers; publishing them again changes nothing.
    before = redis_client.hgetall(keys.entry_key("spring", "1"))
    assert publish_pending() == 4
    assert redis_client.hgetall(keys.entry_key("spring", "1")) == before
    assert ensure_ready(redis_client) is None  # ready: nothing to do

    redis_client.delete(keys.READY)
    Sweeper(app).sweep()
    assert redis_client.exists(keys.READY)
    assert db.session.execute(select(Campaign.slug)).scalar_one() == "spring"


def store_poison(entry_id: int) -> None:
    """Put fields no publish can render straight into the database, as a bad write could."""
    deep = '{"message": ' + "[" * 3_000 + "]" * 3_000 + "}"
    cast = "CAST(:fields AS jsonb)" if db.engine.dialect.name == "postgresql" else ":fields"
    db.session.execute(
        text(f"UPDATE content_entry SET fields = {cast} WHERE id = :id"),
        {"fields": deep, "id": entry_id},
    )
    db.session.commit()


def test_a_row_that_cannot_be_published_is_set_aside_and_the_batch_goes_on(app, redis_client):
    campaign = make_campaign()
    publish_pending()
    events = [save_entry(campaign, str(user), f"hello {user}") for user in range(1, 6)]
    poison = events[2].content_entry_id
    store_poison(poison)

    publish_pending()
    live = [stored_entry(redis_client, "spring", str(user)) is not None for user in range(1, 6)]
    assert live == [True, True, False, True, True]
    failure = db.session.get(PublishFailure, poison)
    assert failure.version == 1 and failure.error.startswith("RecursionError")
    assert (
        db.session.execute(
            select(func.count()).where(OutboxEvent.published_at.is_(None))
        ).scalar_one()
        == 0
    )
    assert system.set_aside_entries()["set_aside"][0]["user_id"] == "3"

    # A good save replaces the bad version; the sweeper forgets the failure.
    db.session.execute(
        text("UPDATE content_entry SET fields = :fields WHERE id = :id"),
        {"fields": '{"message": "repaired"}', "id": poison},
    )
    db.session.commit()
    save_entry(campaign, "3", "fixed")
    publish_pending()
    assert stored_entry(redis_client, "spring", "3")[0] == 2
    assert clear_superseded_failures() == 1
    assert db.session.get(PublishFailure, poison) is None


def test_a_rebuild_sets_a_bad_row_aside_and_still_becomes_ready(app, redis_client):
    campaign = make_campaign()
    for user in range(1, 4):
        save_entry(campaign, str(user), f"hello {user}")
    entry_ids = db.session.scalars(select(ContentEntry.id).order_by(ContentEntry.id)).all()
    store_poison(entry_ids[0])
    redis_client.flushdb()

    assert ensure_ready(redis_client)["entries"] == 3
    assert redis_client.exists(keys.READY)
    assert stored_entry(redis_client, "spring", "1") is None
    assert stored_entry(redis_client, "spring", "2")[0] == 1
    assert db.session.get(PublishFailure, entry_ids[0]) is not None


def test_text_that_cannot_be_encoded_is_set_aside(app, redis_client):
    if db.engine.dialect.name == "postgresql":
        pytest.skip("PostgreSQL refuses to store text that is not UTF-8")
    campaign = make_campaign()
    save_entry(campaign, "1", "one")
    save_entry(campaign, "2", "two")
    entry_id = db.session.scalars(select(ContentEntry.id).order_by(ContentEntry.id)).first()
    db.session.execute(
        text("UPDATE content_entry SET fields = :fields WHERE id = :id"),
        {"fields": '{"message": "\\ud800"}', "id": entry_id},
    )
    db.session.commit()
    publish_pending()
    assert db.session.get(PublishFailure, entry_id).error.startswith("UnicodeEncodeError")
    assert stored_entry(redis_client, "spring", "2")[0] == 1


def test_each_commit_wakes_only_the_lane_of_its_events(app, redis_client):
    campaign = make_campaign()
    redis_client.delete(keys.PUBLISH_WAKE, keys.PUBLISH_WAKE_BULK)
    publishing.record_content_batch(campaign.id, 5_000)
    db.session.commit()
    assert redis_client.lrange(keys.PUBLISH_WAKE_BULK, 0, -1) == [b"1"]
    assert not redis_client.exists(keys.PUBLISH_WAKE)
    save_entry(campaign, "42", "a single edit")
    assert redis_client.lrange(keys.PUBLISH_WAKE, 0, -1) == [b"1"]


@pytest.mark.parametrize(
    "error",
    [
        redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
        # A write refused inside the entry script: Redis answers the script with -OOM.
        redis.ResponseError(
            "@user_script:9: @user_script: 9: -OOM command not allowed when used memory > "
            "'maxmemory'."
        ),
    ],
)
def test_a_full_redis_is_named_so_however_it_refuses(error):
    assert redis_is_full(error)
    assert wake_failure_reason(error).startswith("Redis is full: ")
    assert not redis_is_full(redis.ResponseError("WRONGTYPE Operation against a key"))
