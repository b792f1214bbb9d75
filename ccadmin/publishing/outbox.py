"""Recording changes in the outbox (in the transaction), and waking the drainers after commit.

Every change that must reach Redis goes through `record_*` here, inside the
same database transaction as the change itself. After the commit, the
session hook wakes the drainers once (ccadmin/publishing/wake.py); if Redis
is down the save still stands, the events keep the reason, and the drainers
publish them when they next poll.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from flask import Flask, current_app, flash, has_request_context, request
from sqlalchemy import event, update
from sqlalchemy.orm import Session

from ccadmin.extensions import db
from ccadmin.models import ContentEntry, OutboxEvent
from ccadmin.models.outbox import KIND_API_KEYS, KIND_CAMPAIGN, KIND_CONTENT
from ccadmin.models.types import utcnow
from ccadmin.publishing.audit import AUDIT_VIA, entry_snapshot, record_audit
from ccadmin.publishing.wake import LANE_FRESH, lane_for, wake_drainers, wake_failure_reason
from ccadmin.redis_client import get_redis

log = logging.getLogger(__name__)

_PENDING = "ccadmin_outbox_pending"
_LANES = "ccadmin_outbox_lanes"


def init_app(app: Flask) -> None:
    """Install the after-commit hook once per process."""
    if not event.contains(Session, "after_commit", _after_commit):
        event.listen(Session, "after_commit", _after_commit)
        event.listen(Session, "after_soft_rollback", _after_rollback)


def wake_or_reason(event_ids: list[int], lanes: set[str]) -> str | None:
    """Wake the lanes' drainers for these committed events; None, or why Redis refused.

    The reason is also kept as the events' `last_error`, so the admin can say
    why a change is not live yet.
    """
    try:
        wake_drainers(get_redis(current_app.config["CCADMIN_SETTINGS"]), lanes)
    except (redis.RedisError, OSError) as error:
        log.warning("publish pending for outbox events %s: %s", event_ids[:20], error)
        reason = wake_failure_reason(error)
        _record_wake_failure(event_ids, reason)
        return reason
    return None


def _record_wake_failure(event_ids: list[int], reason: str) -> None:
    # Its own connection and transaction: this runs after the caller's commit.
    try:
        with db.engine.begin() as connection:
            connection.execute(
                update(OutboxEvent)
                .where(OutboxEvent.id.in_(event_ids), OutboxEvent.published_at.is_(None))
                .values(last_error=reason)
            )
    except Exception:
        log.exception("could not record the wake-up failure of outbox events %s", event_ids)


def _after_commit(session: Session) -> None:
    event_ids = session.info.pop(_PENDING, None)
    lanes = session.info.pop(_LANES, None) or {LANE_FRESH}
    if not event_ids:
        return
    reason = wake_or_reason(sorted(event_ids), lanes)
    # The ingest API (blueprint "manage") has no session to flash into: a
    # flash there would only set a cookie on a token-authenticated answer.
    if reason is not None and has_request_context() and request.blueprint != "manage":
        # The marketer gets the cause ("Redis is full"); Redis's own words are for operators.
        cause = reason.split(":", 1)[0]
        flash(
            f"Saved. Publish pending: {cause}; the change will go live automatically "
            "once Redis accepts it.",
            "warning",
        )


def _after_rollback(session: Session, previous_transaction: Any) -> None:
    # Only the outermost rollback discards the events; a savepoint's does not.
    if previous_transaction.parent is None:
        session.info.pop(_PENDING, None)
        session.info.pop(_LANES, None)


def pending_wake(event_id: int, lane: str = LANE_FRESH) -> None:
    """Wake the lane's drainers for this event once the session's transaction commits."""
    db.session.info.setdefault(_PENDING, set()).add(event_id)
    db.session.info.setdefault(_LANES, set()).add(lane)


def _new_event(wake: bool = True, **values: Any) -> OutboxEvent:
    outbox_event = OutboxEvent(**values)
    db.session.add(outbox_event)
    db.session.flush()
    if wake:
        pending_wake(outbox_event.id, lane_for(values.get("entry_count") or 0))
    return outbox_event


def record_content_change(
    content_entry: ContentEntry,
    actor: str,
    action: str,
    before: dict | None,
    via: str | None = None,
) -> OutboxEvent:
    """Bump the entry's version and write its outbox and audit events (no commit).

    `action` is `create`, `update` or `delete`; a delete keeps the row as a
    tombstone version so an older publish can never bring it back. `via`
    names what made the change for `actor` (a scheduled change), for the
    audit log.
    """
    if before is None:
        content_entry.version = 1
    else:
        content_entry.version = before["version"] + 1
    db.session.add(content_entry)
    db.session.flush()
    content_entry.deleted = action == "delete"
    content_entry.updated_at = utcnow()
    content_entry.updated_by = actor
    outbox_event = _new_event(
        kind=KIND_CONTENT,
        campaign_id=content_entry.campaign_id,
        content_entry_id=content_entry.id,
        version=content_entry.version,
        entry_count=1,
    )
    content_entry.last_event_id = outbox_event.id
    after = entry_snapshot(content_entry)
    if via:
        after[AUDIT_VIA] = via
    record_audit(actor, action, "content_entry", content_entry.id, before, after)
    return outbox_event


def record_content_batch(campaign_id: int, entry_count: int, wake: bool = True) -> OutboxEvent:
    """One outbox event for a bulk write; the caller points entries at its id.

    `wake=False` leaves it to the drainers' next poll.
    """
    return _new_event(wake, kind=KIND_CONTENT, campaign_id=campaign_id, entry_count=entry_count)


def record_campaign_change(campaign_id: int) -> OutboxEvent:
    """Publish a campaign's config (and which campaign `/data` serves)."""
    return _new_event(kind=KIND_CAMPAIGN, campaign_id=campaign_id)


def record_api_keys_change() -> OutboxEvent:
    """Publish the whole set of valid API keys."""
    return _new_event(kind=KIND_API_KEYS)
