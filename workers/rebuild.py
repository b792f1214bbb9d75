"""Full rebuild of Redis from the database (the ready marker), and reconcile.

`rebuild_all()` writes everything the API reads and then sets keys.READY, so
an empty Redis is never mistaken for "no content" (DESIGN 5.5). `reconcile()`
compares database versions with Redis and repairs the difference (DESIGN 5.6).
Both are run by the sweeper and by `flask publish --all` / `flask reconcile`.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import Counter
from typing import Any

import redis
from sqlalchemy import Row, func, select, update

from ccadmin import keys
from ccadmin.extensions import db
from ccadmin.models import OutboxEvent
from ccadmin.models.types import utcnow
from workers import store
from workers.publish import (
    ENTRY_COLUMNS,
    campaign_slugs,
    content_columns,
    entry_chunks,
    entry_write,
    publish_api_keys,
    publish_campaigns,
    redis_connection,
    write_rows,
)

log = logging.getLogger(__name__)

# The lock outlives a stalled rebuild by this long; it is extended per chunk.
REBUILD_LOCK_TTL = 120
REBUILD_CHUNK = 10_000
RECONCILE_CHUNK = 2_000
PROGRESS_EVERY = 5.0


class RebuildInProgress(RuntimeError):
    """Another process holds the rebuild lock."""


def rebuild_all() -> dict[str, Any]:
    """Write every key, entry and config from the database, then set READY."""
    connection = redis_connection()
    token = uuid.uuid4().hex
    if not connection.set(keys.REBUILD_LOCK, token, nx=True, ex=REBUILD_LOCK_TTL):
        raise RebuildInProgress("a full rebuild is already running")
    try:
        return _rebuild(connection, token)
    finally:
        store.release_lock(connection, keys.REBUILD_LOCK, token)


def _rebuild(connection: redis.Redis, token: str) -> dict[str, Any]:
    started = time.monotonic()
    snapshot = store.next_snapshot(connection)
    # Events up to here are covered by what this rebuild reads next; later
    # ones are published by their own jobs.
    max_event_id = db.session.execute(select(func.max(OutboxEvent.id))).scalar() or 0
    log.info("full rebuild started (outbox events up to %s)", max_event_id)
    api_keys = publish_api_keys(connection, snapshot)
    publish_campaigns(connection, snapshot)
    slugs = campaign_slugs()
    counts = store.WriteCounts()
    entries = 0
    last_report = time.monotonic()
    for rows in entry_chunks(chunk_size=REBUILD_CHUNK):
        counts.add(write_rows(connection, slugs, rows))
        entries += len(rows)
        if not store.extend_lock(connection, keys.REBUILD_LOCK, token, REBUILD_LOCK_TTL):
            raise RebuildInProgress("the rebuild lock expired and was taken by another process")
        if time.monotonic() - last_report >= PROGRESS_EVERY:
            last_report = time.monotonic()
            log.info("full rebuild: %s entries written so far", entries)
    db.session.execute(
        update(OutboxEvent)
        .where(OutboxEvent.id <= max_event_id, OutboxEvent.published_at.is_(None))
        .values(published_at=utcnow(), attempts=OutboxEvent.attempts + 1, last_error=None)
    )
    db.session.commit()
    seconds = round(time.monotonic() - started, 3)
    report = {
        "built_at": utcnow().isoformat(),
        "entries": entries,
        "written": counts.written,
        "stale": counts.stale,
        "campaigns": len(slugs),
        "api_keys": api_keys,
        "max_event_id": max_event_id,
        "seconds": seconds,
    }
    store.mark_ready(connection, json.dumps(report))
    log.info("full rebuild done: %s", report)
    return report


def reconcile(reason: str = "on demand") -> dict[str, int]:
    """Repair every Redis entry and config that differs from the database.

    The report is also stored under keys.RECONCILE_REPORT for the admin.
    """
    connection = redis_connection()
    started = time.monotonic()
    snapshot = store.next_snapshot(connection)
    report: Counter[str] = Counter()
    report["campaign_configs_written"] = publish_campaigns(connection, snapshot)
    publish_api_keys(connection, snapshot)
    slugs = campaign_slugs()
    # One walk in primary-key order: a per-campaign filter would make every
    # keyset page scan the campaign's index and sort.
    for rows in entry_chunks(chunk_size=RECONCILE_CHUNK):
        _reconcile_rows(connection, slugs, rows, report)
    for campaign_id, slug in sorted(slugs.items()):
        _remove_orphans(connection, campaign_id, slug, report)
    published = {slug.decode() for slug in connection.hkeys(keys.CAMPAIGNS)}
    for slug in sorted(published - set(slugs.values())):
        _remove_orphans(connection, None, slug, report)
    report["repaired"] = sum(
        report[name] for name in ("missing", "outdated", "wrong_kind", "ahead", "orphans")
    )
    result = {name: report[name] for name in sorted(report)}
    log.info("reconcile (%s): %s", reason, result)
    store_report(connection, reason, result, time.monotonic() - started)
    return result


def store_report(
    connection: redis.Redis, reason: str, counts: dict[str, int], seconds: float
) -> None:
    """Keep the last reconcile's report where the admin home page reads it."""
    report = {
        "finished_at": utcnow().isoformat(),
        "reason": reason,
        "seconds": round(seconds, 3),
        "counts": counts,
    }
    connection.set(keys.RECONCILE_REPORT, json.dumps(report))


def _reconcile_rows(
    connection: redis.Redis, slugs: dict[int, str], rows: list[Row], report: Counter[str]
) -> None:
    entry_keys = [keys.entry_key(slugs[row.campaign_id], row.user_id) for row in rows]
    states = store.entry_states(connection, entry_keys)
    report["entries_checked"] += len(rows)
    for row, (stored, body_length) in zip(rows, states, strict=True):
        if stored is None:
            problem = "missing"
        elif stored < row.version:
            problem = "outdated"
        elif stored > row.version:
            # Usually a change committed after this chunk was read and already
            # published; only a database that went back in time stays behind.
            row = _current_row(row.id) or row
            if stored <= row.version:
                continue
            problem = "ahead"
        elif bool(row.deleted) != (body_length == 0):
            problem = "wrong_kind"
        else:
            continue
        slug = slugs[row.campaign_id]
        key = keys.entry_key(slug, row.user_id)
        if store.repair_entry(connection, key, stored, entry_write(slug, row)):
            report[problem] += 1


def _current_row(entry_id: int) -> Row | None:
    return db.session.execute(select(*ENTRY_COLUMNS).where(content_columns.id == entry_id)).first()


def _remove_orphans(
    connection: redis.Redis, campaign_id: int | None, slug: str, report: Counter[str]
) -> None:
    """Delete Redis entries of `slug` that have no database row."""
    batch: list[str] = []
    for raw_key in connection.scan_iter(match=keys.entry_key_pattern(slug), count=1000):
        batch.append(raw_key.decode())
        if len(batch) >= RECONCILE_CHUNK:
            _remove_orphan_batch(connection, campaign_id, batch, report)
            batch = []
    if batch:
        _remove_orphan_batch(connection, campaign_id, batch, report)


def _remove_orphan_batch(
    connection: redis.Redis,
    campaign_id: int | None,
    redis_keys: list[str],
    report: Counter[str],
) -> None:
    user_ids = [keys.entry_user_id(key) for key in redis_keys]
    known: set[str] = set()
    if campaign_id is not None:
        known = set(
            db.session.execute(
                select(content_columns.user_id).where(
                    content_columns.campaign_id == campaign_id,
                    content_columns.user_id.in_(user_ids),
                )
            ).scalars()
        )
    for key, user_id in zip(redis_keys, user_ids, strict=True):
        if user_id in known:
            continue
        raw_version = connection.hget(key, keys.ENTRY_VERSION_FIELD)
        stored = None if raw_version is None else int(raw_version)
        if stored is not None and store.repair_entry(connection, key, stored, None):
            report["orphans"] += 1
