"""`flask seed`: bulk rows through the outbox, published like any edit."""

from __future__ import annotations

import json

from common.publishing_support import stored_entry
from sqlalchemy import func, select

from ccadmin import keys, payload
from ccadmin.content.seed import MESSAGE_LENGTH, demo_messages, random_messages
from ccadmin.extensions import db
from ccadmin.models import AuditEvent, Campaign, ContentEntry, OutboxEvent


def entries(slug: str = "default") -> list[ContentEntry]:
    return list(
        db.session.execute(
            select(ContentEntry)
            .join(Campaign)
            .where(Campaign.slug == slug)
            .order_by(ContentEntry.id)
        ).scalars()
    )


def test_random_messages_have_the_default_length_and_differ():
    messages = random_messages(50)
    assert {len(message) for message in messages} == {MESSAGE_LENGTH}
    assert len(set(messages)) == 50


def test_demo_messages_read_like_a_campaign_and_fit_the_default_field():
    messages = demo_messages(999_990, 20)
    assert messages[0].startswith("Hi ") and "Code SPRING999990" in messages[0]
    assert len(set(messages)) == 20
    assert max(len(message) for message in messages) <= MESSAGE_LENGTH


def test_seed_creates_rows_outbox_events_and_publishes_every_entry(app, redis_client):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["seed", "--users", "500", "--batch-size", "200"])
    assert result.exit_code == 0, result.output
    assert "Seeded 500 users" in result.output

    campaign = db.session.execute(select(Campaign)).scalar_one()
    assert (campaign.slug, campaign.is_default) == ("default", True)
    seeded = entries()
    assert [entry.user_id for entry in seeded] == [str(n) for n in range(1, 501)]
    assert {entry.version for entry in seeded} == {1}
    assert seeded[41].fields["message"] == demo_messages(42, 1)[0]
    content_events = (
        db.session.execute(
            select(OutboxEvent).where(OutboxEvent.kind == "content").order_by(OutboxEvent.id)
        )
        .scalars()
        .all()
    )
    assert [event.entry_count for event in content_events] == [200, 200, 100]
    assert {entry.last_event_id for entry in seeded} == {event.id for event in content_events}
    assert (
        db.session.execute(
            select(func.count(AuditEvent.id)).where(AuditEvent.action == "seed")
        ).scalar()
        == 3
    )

    result = runner.invoke(args=["publish", "--all"])
    assert result.exit_code == 0, result.output
    assert json.loads(redis_client.get(keys.READY))["entries"] == 500
    for entry in seeded:
        body = payload.render_payload("default", entry.user_id, 1, entry.fields)
        assert stored_entry(redis_client, "default", entry.user_id) == (1, body)
    assert redis_client.get(keys.DEFAULT_CAMPAIGN) == b"default"


def test_reseed_gives_existing_users_a_new_version(app, redis_client):
    runner = app.test_cli_runner()
    assert runner.invoke(args=["seed", "--users", "30"]).exit_code == 0
    first = {entry.user_id: entry.fields["message"] for entry in entries()}
    db.session.expire_all()
    result = runner.invoke(args=["seed", "--users", "40", "--batch-size", "25"])
    assert result.exit_code == 0, result.output
    reseeded = entries()
    versions = {entry.user_id: entry.version for entry in reseeded}
    assert len(reseeded) == 40
    assert {versions[str(n)] for n in range(1, 31)} == {2}
    assert {versions[str(n)] for n in range(31, 41)} == {1}
    # The same demo content again, as a new version of each user seeded before.
    assert all(entry.fields["message"] == first[entry.user_id] for entry in reseeded[:30])


def test_seeding_another_campaign_keeps_the_default(app):
    runner = app.test_cli_runner()
    assert runner.invoke(args=["seed", "--users", "3", "--campaign", "default"]).exit_code == 0
    result = runner.invoke(args=["seed", "--users", "3", "--campaign", "summer-sale"])
    assert result.exit_code == 0, result.output
    defaults = (
        db.session.execute(select(Campaign.slug).where(Campaign.is_default.is_(True)))
        .scalars()
        .all()
    )
    assert defaults == ["default"]
    assert len(entries("summer-sale")) == 3


def test_seed_refuses_an_invalid_slug(app):
    result = app.test_cli_runner().invoke(args=["seed", "--users", "3", "--campaign", "Bad Slug"])
    assert result.exit_code != 0
    assert "not a valid campaign slug" in result.output
    assert db.session.execute(select(func.count(Campaign.id))).scalar() == 0
