"""The publish job: one outbox event's change, read from the database now, into Redis.

`publish_event(event_id)` is enqueued by ccadmin/publishing.py after commit
(as "workers.publish.publish_event"). It always publishes the current database
state, never a copy carried by the job, and every write is a compare-and-set,
so a job that runs twice, late, or after a newer one leaves Redis correct.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import redis
from flask import current_app
from sqlalchemy import Row, func, select, update

from ccadmin import keys, payload
from ccadmin.extensions import db
from ccadmin.metrics.lag import lag_seconds, record_publish_lag
from ccadmin.models import ApiKey, Campaign, ContentEntry, OutboxEvent
from ccadmin.models.outbox import KIND_API_KEYS, KIND_CAMPAIGN, KIND_CONTENT
from ccadmin.models.types import utcnow
from ccadmin.redis_client import get_redis, get_store
from workers import store

log = logging.getLogger(__name__)

# Rows read per query when walking entries (keyset pagination on id).
ENTRY_CHUNK = 5_000
_ERROR_MAX_LENGTH = 2_000

content_columns = ContentEntry.__table__.c
ENTRY_COLUMNS = (
    content_columns.id,
    content_columns.campaign_id,
    content_columns.user_id,
    content_columns.version,
    content_columns.deleted,
    content_columns.fields,
)


def redis_connection() -> redis.Redis:
    """The content store of the current app (a Redis Cluster client when configured)."""
    return get_store(current_app.config["CCADMIN_SETTINGS"])


def queue_connection() -> redis.Redis:
    """The Redis of RQ's queues and workers."""
    return get_redis(current_app.config["CCADMIN_SETTINGS"])


def campaign_slugs() -> dict[int, str]:
    """Campaign id -> slug, for keying entries without a join per row."""
    rows = db.session.execute(select(Campaign.id, Campaign.slug))
    return {campaign_id: slug for campaign_id, slug in rows}


def entry_write(slug: str, row: Row) -> store.EntryWrite:
    """The Redis write for one entry row: its rendered body, or a tombstone."""
    _id, _campaign_id, user_id, version, deleted, fields = row
    body = b"" if deleted else payload.render_payload(slug, user_id, version, fields or {})
    return store.EntryWrite(keys.entry_key(slug, user_id), version, body)


def entry_chunks(*conditions: Any, chunk_size: int = ENTRY_CHUNK) -> Iterator[list[Row]]:
    """Entry rows matching `conditions`, in id order, one chunk per query."""
    last_id = 0
    while True:
        rows = db.session.execute(
            select(*ENTRY_COLUMNS)
            .where(*conditions, content_columns.id > last_id)
            .order_by(content_columns.id)
            .limit(chunk_size)
        ).all()
        if not rows:
            return
        yield rows
        last_id = rows[-1].id


def write_rows(
    connection: redis.Redis, slugs: dict[int, str], rows: list[Row]
) -> store.WriteCounts:
    """Compare-and-set the entries of one chunk of rows."""
    writes = (entry_write(slugs[row.campaign_id], row) for row in rows)
    return store.write_entries(connection, writes)


def publish_entries(connection: redis.Redis, *conditions: Any) -> store.WriteCounts:
    """Publish every entry matching `conditions`, chunk by chunk."""
    slugs = campaign_slugs()
    counts = store.WriteCounts()
    for rows in entry_chunks(*conditions):
        counts.add(write_rows(connection, slugs, rows))
    return counts


def config_json(campaign: Campaign) -> str:
    """The campaign's config as the API reads it."""
    return payload.campaign_config(
        slug=campaign.slug,
        version=campaign.version,
        active=campaign.active,
        public=campaign.public,
        fallback=campaign.fallback_policy,
        max_age=campaign.max_age,
        default_fields=dict(campaign.default_fields or {}),
    )


def publish_campaigns(
    connection: redis.Redis, snapshot: int, campaign_id: int | None = None
) -> int:
    """Publish one campaign's config (all, with None) and which campaign `/data` serves.

    Configs of campaigns no longer in the database are removed; `snapshot`
    must have been taken before this reads the database.
    """
    query = select(Campaign)
    if campaign_id is not None:
        query = query.where(Campaign.id == campaign_id)
    written = 0
    for campaign in db.session.execute(query).scalars():
        written += store.write_campaign(
            connection, campaign.slug, campaign.version, config_json(campaign)
        )
    known = set(db.session.execute(select(Campaign.slug)).scalars())
    published = {slug.decode() for slug in connection.hkeys(keys.CAMPAIGNS)}
    store.remove_campaigns(connection, sorted(published - known))
    default_slug = db.session.execute(
        select(Campaign.slug).where(Campaign.is_default.is_(True))
    ).scalar()
    store.write_default_campaign(connection, snapshot, default_slug)
    return written


def api_key_documents() -> dict[str, str]:
    """sha256(secret) -> {"name", "campaigns"} JSON for every key not revoked."""
    rows = db.session.execute(
        select(ApiKey.secret_hash, ApiKey.name, ApiKey.campaigns).where(ApiKey.revoked_at.is_(None))
    ).all()
    return {
        row.secret_hash: json.dumps(
            {"name": row.name, "campaigns": row.campaigns},
            ensure_ascii=False,
            separators=(",", ":"),
        )
        for row in rows
    }


def publish_api_keys(connection: redis.Redis, snapshot: int) -> int:
    """Replace the published key set with the database's; returns how many keys."""
    documents = api_key_documents()
    store.write_api_keys(connection, snapshot, documents)
    return len(documents)


def publish_event(event_id: int) -> dict[str, Any]:
    """Publish one outbox event (the RQ job); re-raises so RQ's Retry applies."""
    connection = redis_connection()
    # Taken before any read, so this job's view of the database is at least
    # as new as the number it writes with (see keys.SNAPSHOT_SEQUENCE).
    snapshot = store.next_snapshot(connection)
    outbox_event = db.session.get(OutboxEvent, event_id)
    if outbox_event is None:
        log.warning("outbox event %s does not exist; nothing to publish", event_id)
        return {"event_id": event_id, "missing": True}
    kind, campaign_id = outbox_event.kind, outbox_event.campaign_id
    # Lag counts from the save to the first time it is live, not a re-run.
    first_publish = outbox_event.published_at is None
    created_at = outbox_event.created_at
    summary: dict[str, Any] = {"event_id": event_id, "kind": kind}
    try:
        if kind == KIND_CONTENT:
            counts = publish_entries(connection, content_columns.last_event_id == event_id)
            summary.update(written=counts.written, stale=counts.stale)
        elif kind == KIND_CAMPAIGN:
            summary["written"] = publish_campaigns(connection, snapshot, campaign_id)
        elif kind == KIND_API_KEYS:
            summary["keys"] = publish_api_keys(connection, snapshot)
        else:
            raise ValueError(f"outbox event {event_id} has unknown kind {kind!r}")
        mark_published([event_id])
    except Exception as error:
        record_failure(event_id, error)
        raise
    log.info("published outbox event %s: %s", event_id, summary)
    if first_publish:
        try:
            record_publish_lag(connection, lag_seconds(created_at))
        except redis.RedisError as error:
            log.warning("publish lag of outbox event %s not recorded: %s", event_id, error)
    return summary


def mark_published(event_ids: list[int]) -> None:
    """Record that these events reached Redis (keeps the first publish time)."""
    db.session.execute(
        update(OutboxEvent)
        .where(OutboxEvent.id.in_(event_ids))
        .values(
            published_at=func.coalesce(OutboxEvent.published_at, utcnow()),
            attempts=OutboxEvent.attempts + 1,
            last_error=None,
        )
    )
    db.session.commit()


def record_failure(event_id: int, error: BaseException) -> None:
    """Keep the error on the event for the admin; never hides the original error."""
    db.session.rollback()
    try:
        db.session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.id == event_id)
            .values(
                attempts=OutboxEvent.attempts + 1,
                last_error=f"{type(error).__name__}: {error}"[:_ERROR_MAX_LENGTH],
            )
        )
        db.session.commit()
    except Exception:
        db.session.rollback()
        log.exception("could not record the failure of outbox event %s", event_id)
