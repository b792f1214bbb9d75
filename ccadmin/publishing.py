"""Recording changes in the outbox (in the transaction) and enqueueing after commit.

Every change that must reach Redis goes through `record_*` here, inside the
same database transaction as the change itself (DESIGN 5.1). After a commit,
the session hook enqueues one publish job per new outbox event; if Redis is
down the save still stands and the sweeper publishes it later (DESIGN 5.2).
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from flask import Flask, current_app, flash, has_request_context, request
from rq import Queue, Retry
from sqlalchemy import event, update
from sqlalchemy.orm import Session

from ccadmin import keys
from ccadmin.extensions import db
from ccadmin.models import AuditEvent, ContentEntry, OutboxEvent
from ccadmin.models.outbox import KIND_API_KEYS, KIND_CAMPAIGN, KIND_CONTENT
from ccadmin.models.types import utcnow
from ccadmin.redis_client import get_redis

log = logging.getLogger(__name__)

PUBLISH_JOB = "workers.publish.publish_event"
# Transient Redis or database hiccups are retried by RQ before the sweeper
# has to step in.
PUBLISH_RETRY = Retry(max=3, interval=[1, 3, 10])
# The job timeout is the PUBLISH_JOB_TIMEOUT setting (config.Settings.publish_job_timeout).
_PENDING = "ccadmin_outbox_pending"
# What an outbox event keeps of a refused enqueue (the admin shows it).
_ERROR_MAX_LENGTH = 500


def init_app(app: Flask) -> None:
    """Install the after-commit hook once per process."""
    if not event.contains(Session, "after_commit", _after_commit):
        event.listen(Session, "after_commit", _after_commit)
        event.listen(Session, "after_soft_rollback", _after_rollback)


def publish_queue(connection: redis.Redis) -> Queue:
    """The RQ queue publish jobs go to."""
    return Queue(keys.PUBLISH_QUEUE, connection=connection)


def enqueue_publish(event_ids: list[int], connection: redis.Redis | None = None) -> bool:
    """Enqueue one job per outbox event; False (and nothing raised) if Redis refuses."""
    return enqueue_or_reason(event_ids, connection) is None


def enqueue_or_reason(event_ids: list[int], connection: redis.Redis | None = None) -> str | None:
    """Enqueue one job per outbox event; None, or why Redis refused (down, or full).

    The reason is also kept as the events' `last_error`, so the admin can say
    why a change is not live.
    """
    if not event_ids:
        return None
    settings = current_app.config["CCADMIN_SETTINGS"]
    try:
        connection = connection or get_redis(settings)
        queue = publish_queue(connection)
        for event_id in event_ids:
            queue.enqueue(
                PUBLISH_JOB,
                event_id,
                job_id=f"publish-{event_id}",
                retry=PUBLISH_RETRY,
                job_timeout=settings.publish_job_timeout,
            )
    except (redis.RedisError, OSError) as error:
        log.warning("publish pending for outbox events %s: %s", event_ids, error)
        reason = enqueue_failure_reason(error)
        _record_enqueue_failure(event_ids, reason)
        return reason
    return None


def enqueue_failure_reason(error: BaseException) -> str:
    """One line for the marketer and the operator: what Redis said, named plainly."""
    if isinstance(error, redis.exceptions.OutOfMemoryError):
        cause = "Redis is full"
    elif isinstance(error, (redis.ConnectionError, redis.TimeoutError, OSError)):
        cause = "Redis is unreachable"
    else:
        cause = "Redis refused the job"
    return f"{cause}: {type(error).__name__}: {error}"[:_ERROR_MAX_LENGTH]


def _record_enqueue_failure(event_ids: list[int], reason: str) -> None:
    # Its own connection and transaction: this runs after the caller's commit.
    try:
        with db.engine.begin() as connection:
            connection.execute(
                update(OutboxEvent)
                .where(OutboxEvent.id.in_(event_ids), OutboxEvent.published_at.is_(None))
                .values(last_error=reason)
            )
    except Exception:
        log.exception("could not record the enqueue failure of outbox events %s", event_ids)


def _after_commit(session: Session) -> None:
    event_ids = session.info.pop(_PENDING, None)
    if not event_ids:
        return
    reason = enqueue_or_reason(sorted(event_ids))
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


def _new_event(enqueue: bool = True, **values: Any) -> OutboxEvent:
    outbox_event = OutboxEvent(**values)
    db.session.add(outbox_event)
    db.session.flush()
    if enqueue:
        db.session.info.setdefault(_PENDING, set()).add(outbox_event.id)
    return outbox_event


def client_ip() -> str | None:
    """The requesting address, for the audit log (None outside a request)."""
    return request.remote_addr if has_request_context() else None


def record_audit(
    actor: str,
    action: str,
    target_type: str,
    target_id: Any,
    before: dict | None = None,
    after: dict | None = None,
) -> AuditEvent:
    """Append an audit event to the current transaction."""
    audit_event = AuditEvent(
        actor=actor,
        action=action,
        target_type=target_type,
        target_id=None if target_id is None else str(target_id),
        before=before,
        after=after,
        client_ip=client_ip(),
    )
    db.session.add(audit_event)
    return audit_event


def entry_snapshot(content_entry: ContentEntry) -> dict:
    """What the audit log keeps of an entry."""
    return {
        "user_id": content_entry.user_id,
        "fields": dict(content_entry.fields or {}),
        "version": content_entry.version,
        "deleted": bool(content_entry.deleted),
    }


def record_content_change(
    content_entry: ContentEntry, actor: str, action: str, before: dict | None
) -> OutboxEvent:
    """Bump the entry's version and write its outbox and audit events (no commit).

    `action` is `create`, `update` or `delete`; a delete keeps the row as a
    tombstone version so an older publish can never bring it back.
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
    record_audit(
        actor, action, "content_entry", content_entry.id, before, entry_snapshot(content_entry)
    )
    return outbox_event


def record_content_batch(campaign_id: int, entry_count: int, enqueue: bool = True) -> OutboxEvent:
    """One outbox event for a bulk write; the caller points entries at its id.

    `enqueue=False` is for a worker job that publishes the event itself right
    after its commit; should it not, the sweeper enqueues it as for any event.
    """
    return _new_event(enqueue, kind=KIND_CONTENT, campaign_id=campaign_id, entry_count=entry_count)


def record_campaign_change(campaign_id: int) -> OutboxEvent:
    """Publish a campaign's config (and which campaign `/data` serves)."""
    return _new_event(kind=KIND_CAMPAIGN, campaign_id=campaign_id)


def record_api_keys_change() -> OutboxEvent:
    """Publish the whole set of valid API keys."""
    return _new_event(kind=KIND_API_KEYS)
