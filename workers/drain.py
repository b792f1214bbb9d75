"""The drainers: threads in every worker process that publish pending outbox events in batches.

A drainer claims a batch of unpublished events (on PostgreSQL with
`FOR UPDATE SKIP LOCKED`, so drainers in any number of processes never take
the same event), reads the entries pointing at them in one query, writes
them to Redis in one pipelined compare-and-set round trip, marks the events
published in one statement and commits. A crash before the commit releases
the claim: the events are taken again, and the compare-and-set makes the
second write a no-op where the first got through.

Two lanes, so a fresh edit never waits behind bulk work:
- `fresh`: single edits, small batches, campaign configs, API keys;
- `bulk`: import batches and other events of many entries, one at a time.
Each blocks on its lane's wake-up from the web (ccadmin/publishing/wake.py)
and polls every POLL_SECONDS when nothing wakes it.
Rebuilds and imports run as RQ jobs in the worker's main thread, beside both.

Nothing here depends on RQ's scheduler: a failed batch is retried by the
same loop after a back-off, and the loop outlives Redis and database outages.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from flask import Flask
from sqlalchemy import ColumnElement, Row, and_, func, or_, select, update

from ccadmin import keys
from ccadmin.extensions import db
from ccadmin.metrics.lag import lag_seconds, record_publish_lags
from ccadmin.models import OutboxEvent
from ccadmin.models.outbox import KIND_API_KEYS, KIND_CAMPAIGN, KIND_CONTENT
from ccadmin.models.types import one_of, utcnow
from ccadmin.publishing.wake import (
    FRESH_LANE_MAX_ENTRIES,
    LANE_BULK,
    LANE_FRESH,
    redis_is_full,
    wait_for_wake,
    wake_drainers,
    wake_failure_reason,
)
from workers import redis_writes
from workers.publish import (
    content_columns,
    publish_api_keys,
    publish_campaigns,
    publish_entries,
    redis_connection,
)

log = logging.getLogger(__name__)

# Events claimed at once by the fresh lane: one database read and one Redis
# round trip of a few hundred entries, well under 100 ms.
FRESH_BATCH = 500
# How long a drainer waits for a wake-up before it looks at the outbox anyway.
POLL_SECONDS = 1.0
# Pauses after consecutive failed batches (Redis or the database away).
BACKOFF_SECONDS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0)
# On a database without SKIP LOCKED, the lane's lock outlives a dead holder by this long.
DRAIN_LOCK_TTL = 10
_ERROR_MAX_LENGTH = 2_000


@dataclass(frozen=True)
class Lane:
    """Which pending events a drainer takes (wake.lane_for's split), and how many at once."""

    name: str
    condition: ColumnElement[bool]
    batch: int


_is_bulk = and_(OutboxEvent.kind == KIND_CONTENT, OutboxEvent.entry_count > FRESH_LANE_MAX_ENTRIES)
FRESH = Lane(LANE_FRESH, or_(OutboxEvent.kind != KIND_CONTENT, ~_is_bulk), FRESH_BATCH)
BULK = Lane(LANE_BULK, _is_bulk, 1)
LANES = (FRESH, BULK)


def skip_locked() -> bool:
    """Whether the database can claim rows with FOR UPDATE SKIP LOCKED."""
    return db.engine.dialect.name == "postgresql"


def claim(condition: ColumnElement[bool], limit: int) -> list[Row]:
    """Lock up to `limit` unpublished events that no other drainer holds, oldest first."""
    query = (
        select(OutboxEvent.id, OutboxEvent.kind, OutboxEvent.campaign_id, OutboxEvent.created_at)
        .where(OutboxEvent.published_at.is_(None), condition)
        .order_by(OutboxEvent.id)
        .limit(limit)
    )
    if skip_locked():
        query = query.with_for_update(skip_locked=True)
    return db.session.execute(query).all()


def publish_claimed(connection: redis.Redis, events: list[Row]) -> dict[str, Any]:
    """Write what the claimed events changed: their entries, campaign configs, the key set."""
    summary: dict[str, Any] = {"events": len(events)}
    content_ids = [event.id for event in events if event.kind == KIND_CONTENT]
    campaign_ids = sorted({event.campaign_id for event in events if event.kind == KIND_CAMPAIGN})
    if campaign_ids or any(event.kind == KIND_API_KEYS for event in events):
        # Taken before the reads below, so what they write is at least as new
        # as the number it is written with (see keys.SNAPSHOT_SEQUENCE).
        snapshot = redis_writes.next_snapshot(connection)
        for campaign_id in campaign_ids:
            publish_campaigns(connection, snapshot, campaign_id)
        if any(event.kind == KIND_API_KEYS for event in events):
            summary["keys"] = publish_api_keys(connection, snapshot)
    if content_ids:
        counts = publish_entries(connection, one_of(content_columns.last_event_id, content_ids))
        summary.update(written=counts.written, stale=counts.stale)
    unknown = {event.kind for event in events} - {KIND_CONTENT, KIND_CAMPAIGN, KIND_API_KEYS}
    if unknown:
        log.error("outbox events of unknown kinds %s marked published unwritten", unknown)
    return summary


def mark_published(event_ids: list[int]) -> None:
    """Record that these events reached Redis (no commit: the claim's transaction does)."""
    db.session.execute(
        update(OutboxEvent)
        .where(OutboxEvent.id.in_(event_ids))
        .values(
            published_at=func.coalesce(OutboxEvent.published_at, utcnow()),
            attempts=OutboxEvent.attempts + 1,
            last_error=None,
        )
    )


def _failure_text(error: BaseException) -> str:
    """What the admin shows for a failed publish: a full Redis named as the web says it."""
    if redis_is_full(error):
        return wake_failure_reason(error)
    return f"{type(error).__name__}: {error}"[:_ERROR_MAX_LENGTH]


def record_failure(event_ids: list[int], error: BaseException) -> None:
    """Keep the error on the events for the admin; never hides the original error."""
    db.session.rollback()
    try:
        db.session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.id.in_(event_ids), OutboxEvent.published_at.is_(None))
            .values(
                attempts=OutboxEvent.attempts + 1,
                last_error=_failure_text(error),
            )
        )
        db.session.commit()
    except Exception:
        db.session.rollback()
        log.warning("could not record the failure of outbox events %s", event_ids[:20])


def drain_batch(
    connection: redis.Redis, condition: ColumnElement[bool], limit: int
) -> dict[str, Any]:
    """Claim, publish and mark one batch; returns what it did (`events`: how many).

    On failure the claim is released, the events keep the error, and the
    error is raised for the caller to back off.
    """
    events = claim(condition, limit)
    if not events:
        db.session.rollback()
        return {"events": 0}
    event_ids = [event.id for event in events]
    try:
        summary = publish_claimed(connection, events)
        mark_published(event_ids)
        db.session.commit()
    except Exception as error:
        record_failure(event_ids, error)
        raise
    log.debug("published outbox events %s..%s: %s", event_ids[0], event_ids[-1], summary)
    try:
        record_publish_lags(connection, [lag_seconds(event.created_at) for event in events])
    except redis.RedisError as error:
        log.warning("publish lag of %s events not recorded: %s", len(events), error)
    return summary


class Drainer(threading.Thread):
    """One lane's drain loop; never exits on an outage, only when stopped."""

    def __init__(
        self,
        app: Flask,
        lane: Lane,
        wake_connection: Callable[[], redis.Redis],
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        super().__init__(name=f"drain-{lane.name}", daemon=True)
        self.app = app
        self.lane = lane
        self.wake_connection = wake_connection
        self.poll_seconds = poll_seconds
        self.token = uuid.uuid4().hex
        self.stopping = threading.Event()
        self.failures = 0

    def stop(self) -> None:
        """Finish the batch in progress and stop."""
        self.stopping.set()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                with self.app.app_context():
                    self.drain()
                self.failures = 0
            except Exception as error:
                pause = BACKOFF_SECONDS[min(self.failures, len(BACKOFF_SECONDS) - 1)]
                self.failures += 1
                log.warning(
                    "%s lane: publishing failed (%s: %s); retrying in %s s",
                    self.lane.name,
                    type(error).__name__,
                    error,
                    pause,
                )
                self.stopping.wait(pause)
                continue
            self.wait()
        with contextlib.suppress(Exception), self.app.app_context():
            redis_writes.release_lock(redis_connection(), self._lock_name, self.token)

    def drain(self) -> None:
        """Publish batches until the lane is empty."""
        connection = redis_connection()
        while not self.stopping.is_set():
            if not skip_locked() and not self._hold_lock(connection):
                return
            summary = drain_batch(connection, self.lane.condition, self.lane.batch)
            if summary["events"] < self.lane.batch:
                return
            # More is waiting: let a drainer in another process help.
            wake_drainers(self.wake_connection(), (self.lane.name,))

    @property
    def _lock_name(self) -> str:
        return f"{keys.DRAIN_LOCK}:{self.lane.name}"

    def _hold_lock(self, connection: redis.Redis) -> bool:
        name = self._lock_name
        return redis_writes.take_lock(
            connection, name, self.token, DRAIN_LOCK_TTL
        ) or redis_writes.extend_lock(connection, name, self.token, DRAIN_LOCK_TTL)

    def wait(self) -> None:
        """Until woken, or the poll interval passes; an outage here is retried like any."""
        try:
            wait_for_wake(self.wake_connection(), self.lane.name, self.poll_seconds)
        except (redis.RedisError, OSError) as error:
            log.warning("%s lane: cannot wait for wake-ups (%s); polling", self.lane.name, error)
            self.stopping.wait(self.poll_seconds)


def start_drainers(app: Flask, wake_connection: Callable[[], redis.Redis]) -> list[Drainer]:
    """One drainer per lane in this process."""
    drainers = [Drainer(app, lane, wake_connection) for lane in LANES]
    for drainer in drainers:
        drainer.start()
    return drainers


def stop_drainers(drainers: list[Drainer], timeout: float) -> None:
    """Stop every drainer, waiting up to `timeout` seconds in all for the batches in progress."""
    for drainer in drainers:
        drainer.stop()
    deadline = time.monotonic() + timeout
    for drainer in drainers:
        drainer.join(max(0.0, deadline - time.monotonic()))
