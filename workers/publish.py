"""Publishing the database's current state to Redis: entries, campaign configs, API keys.

Shared by the drainers (workers/drain.py), the rebuild and reconcile. It
always publishes what the database holds now, never a copy carried by a job,
and every write is a compare-and-set, so running twice, late, or after a
newer write leaves Redis correct. An entry that cannot be rendered is set
aside (table publish_failure) and the rest goes on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import redis
from flask import current_app
from sqlalchemy import Row, Text, cast, delete, insert, select

from ccadmin import keys, payload
from ccadmin.extensions import db
from ccadmin.models import ApiKey, Campaign, ContentEntry, PublishFailure
from ccadmin.models.types import utcnow
from ccadmin.redis_client import get_redis, get_store
from workers import redis_writes

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
    # As text, decoded row by row in entry_write: a stored document the JSON
    # decoder refuses (nested too deep) must fail its own row, not the read.
    cast(content_columns.fields, Text).label("fields"),
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


def entry_write(slug: str, row: Row) -> redis_writes.EntryWrite:
    """The Redis write for one entry row: its rendered body, or a tombstone.

    Raises ValueError (UnicodeEncodeError among them) or RecursionError for a
    row whose fields cannot be decoded or whose key or body cannot be
    encoded; entry_writes sets such a row aside.
    """
    _id, _campaign_id, user_id, version, deleted, fields_json = row
    key = keys.entry_key(slug, user_id)
    key.encode("utf-8")
    if deleted:
        return redis_writes.EntryWrite(key, version, b"")
    fields = json.loads(fields_json) if fields_json else {}
    body = payload.render_payload(slug, user_id, version, fields or {})
    return redis_writes.EntryWrite(key, version, body)


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


def entry_writes(slugs: dict[int, str], rows: list[Row]) -> list[redis_writes.EntryWrite]:
    """The writes of a chunk of rows; a row that cannot be rendered is set aside, not fatal."""
    writes, failures = [], []
    for row in rows:
        try:
            writes.append(entry_write(slugs[row.campaign_id], row))
        except (ValueError, TypeError, RecursionError) as error:
            failures.append((row.id, row.version, f"{type(error).__name__}: {error}"))
    if failures:
        set_aside(failures)
    return writes


def set_aside(failures: list[tuple[int, int, str]]) -> None:
    """Record entry versions that cannot be published, so the rest of the batch goes on.

    Its own transaction: the caller's may hold row locks or a long read.
    """
    log.error(
        "set aside %s entries that cannot be published: %s",
        len(failures),
        [(entry_id, error[:200]) for entry_id, _version, error in failures[:5]],
    )
    entry_ids = [entry_id for entry_id, _version, _error in failures]
    with db.engine.begin() as connection:
        connection.execute(
            delete(PublishFailure).where(PublishFailure.content_entry_id.in_(entry_ids))
        )
        connection.execute(
            insert(PublishFailure),
            [
                {
                    "content_entry_id": entry_id,
                    "version": version,
                    "error": error[:_ERROR_MAX_LENGTH],
                    "failed_at": utcnow(),
                }
                for entry_id, version, error in failures
            ],
        )


def write_rows(
    connection: redis.Redis, slugs: dict[int, str], rows: list[Row]
) -> redis_writes.WriteCounts:
    """Compare-and-set the entries of one chunk of rows."""
    return redis_writes.write_entries(connection, entry_writes(slugs, rows))


def publish_entries(connection: redis.Redis, *conditions: Any) -> redis_writes.WriteCounts:
    """Publish every entry matching `conditions`, chunk by chunk."""
    slugs = campaign_slugs()
    counts = redis_writes.WriteCounts()
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
        written += redis_writes.write_campaign(
            connection, campaign.slug, campaign.version, config_json(campaign)
        )
    known = set(db.session.execute(select(Campaign.slug)).scalars())
    published = {slug.decode() for slug in connection.hkeys(keys.CAMPAIGNS)}
    redis_writes.remove_campaigns(connection, sorted(published - known))
    default_slug = db.session.execute(
        select(Campaign.slug).where(Campaign.is_default.is_(True))
    ).scalar()
    redis_writes.write_default_campaign(connection, snapshot, default_slug)
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
    redis_writes.write_api_keys(connection, snapshot, documents)
    return len(documents)
