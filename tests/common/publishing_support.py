"""Changes made the way the admin makes them: models plus publishing.record_*, committed."""

from __future__ import annotations

from sqlalchemy import select

from ccadmin import keys, publishing
from ccadmin.extensions import db
from ccadmin.models import Campaign, ContentEntry, OutboxEvent

ACTOR = "editor@example.com"


def make_campaign(slug: str = "spring", is_default: bool = True, **values) -> Campaign:
    """A committed campaign with its outbox event."""
    campaign = Campaign(
        slug=slug,
        name=slug.title(),
        default_fields={"message": "Hello"},
        is_default=is_default,
        **values,
    )
    db.session.add(campaign)
    db.session.flush()
    publishing.record_campaign_change(campaign.id)
    db.session.commit()
    return campaign


def save_entry(campaign: Campaign, user_id: str, message: str) -> OutboxEvent:
    """Create or edit one entry's message and commit; returns its outbox event."""
    return save_fields(campaign, user_id, {"message": message})


def save_fields(campaign: Campaign, user_id: str, fields: dict[str, str]) -> OutboxEvent:
    """Create or edit one entry with exactly these fields, as an admin edit does, and commit."""
    entry = db.session.execute(
        select(ContentEntry).where(
            ContentEntry.campaign_id == campaign.id, ContentEntry.user_id == user_id
        )
    ).scalar()
    before = None if entry is None else publishing.entry_snapshot(entry)
    if entry is None:
        entry = ContentEntry(campaign_id=campaign.id, user_id=user_id)
    entry.fields = dict(fields)
    outbox_event = publishing.record_content_change(
        entry, ACTOR, "create" if before is None else "update", before
    )
    db.session.commit()
    return outbox_event


def delete_entry(campaign: Campaign, user_id: str) -> OutboxEvent:
    """Soft-delete one entry (a tombstone version) and commit."""
    entry = db.session.execute(
        select(ContentEntry).where(
            ContentEntry.campaign_id == campaign.id, ContentEntry.user_id == user_id
        )
    ).scalar_one()
    outbox_event = publishing.record_content_change(
        entry, ACTOR, "delete", publishing.entry_snapshot(entry)
    )
    db.session.commit()
    return outbox_event


def stored_entry(redis_client, slug: str, user_id: str) -> tuple[int, bytes] | None:
    """(version, body) Redis holds for one user, or None."""
    version, body = redis_client.hmget(
        keys.entry_key(slug, user_id), keys.ENTRY_VERSION_FIELD, keys.ENTRY_BODY_FIELD
    )
    return None if version is None else (int(version), body)


def publish_pending() -> int:
    """Publish every pending outbox event as the drainers do; returns how many."""
    from workers.drain import LANES, drain_batch
    from workers.publish import redis_connection

    published = 0
    for lane in LANES:
        while events := drain_batch(redis_connection(), lane.condition, lane.batch)["events"]:
            published += events
    db.session.rollback()
    return published


def publish_events(event_ids: list[int]) -> dict:
    """Publish these events as a drainer would (unless one holds them); what it did."""
    from workers.drain import drain_batch
    from workers.publish import redis_connection

    return drain_batch(redis_connection(), OutboxEvent.id.in_(event_ids), len(event_ids))
