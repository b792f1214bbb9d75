"""Opening, refreshing and deciding change requests.

A request records each entry's version when it was made. Approval checks
them again, under the entries' row locks: if anything changed since, it is a
conflict, and the request must be refreshed (its diff taken again against the
entries as they are now) before anyone can approve it. Nobody decides their
own request; the caller checks the role.

Functions that open or decide a request leave the commit to the caller,
except where the change they start commits itself (a schedule, a change set).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import redis
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from ccadmin import publishing
from ccadmin.approvals import drift
from ccadmin.content.schema import validate_fields
from ccadmin.extensions import db
from ccadmin.imports import changesets, scheduling
from ccadmin.models import (
    Campaign,
    ChangeRequest,
    ChangeRequestComment,
    ContentImport,
)
from ccadmin.models.change_requests import (
    KIND_CHANGE_SET,
    KIND_ENTRIES,
    KIND_SCHEDULE,
    STATUS_APPLIED,
    STATUS_OPEN,
    STATUS_REJECTED,
    STATUS_WITHDRAWN,
)
from ccadmin.models.imports import (
    STATUS_INVALID,
    STATUS_READY,
)
from ccadmin.models.types import utcnow
from ccadmin.publishing import entry_writes

ACTION_CREATE = "create"
ACTION_UPDATE = "update"
ACTION_DELETE = "delete"
ACTION_RESTORE = "restore"
# User ids named in a conflict.
NAMED_CONFLICTS = 5
# Open requests of one author compared with a new one, to spot a retried write.
RETRY_WINDOW = 20
COMMENT_MAX_LENGTH = 5_000
TITLE_MAX_LENGTH = 200


class ApprovalError(ValueError):
    """The request cannot do what was asked; the message says why."""


class Conflict(ApprovalError):
    """Entries changed since the request was made: it must be refreshed first."""


@dataclass(frozen=True)
class EntryChange:
    """One entry change as a form or the ingest API asks for it."""

    user_id: str
    action: str
    fields: Mapping[str, Any]


def needs_approval(campaign: Campaign) -> bool:
    """Whether content changes to this campaign wait for a second person."""
    return bool(campaign.changes_need_approval)


def _recorded(change: EntryChange, state: Any) -> dict[str, Any]:
    live = state is not None and not state.deleted
    fields = dict(state.fields) if change.action == ACTION_DELETE and live else dict(change.fields)
    return {
        "user_id": change.user_id,
        "action": change.action,
        "base_version": 0 if state is None else state.version,
        "before": dict(state.fields) if live else None,
        "fields": fields,
    }


def _title(changes: list[EntryChange]) -> str:
    if len(changes) == 1:
        change = changes[0]
        return f"{change.action.capitalize()} the entry of user {change.user_id}"[:TITLE_MAX_LENGTH]
    return f"Change {len(changes)} entries"


def _open(campaign: Campaign, kind: str, title: str, actor: str, via: str, **values: Any):
    change_request = ChangeRequest(
        campaign_id=campaign.id,
        kind=kind,
        title=title[:TITLE_MAX_LENGTH],
        status=STATUS_OPEN,
        requested_by=actor,
        via=via,
        requested_at=utcnow(),
        **values,
    )
    db.session.add(change_request)
    db.session.flush()
    _audit(change_request, actor, "request")
    return change_request


def _audit(change_request: ChangeRequest, actor: str, action: str, **extra: Any) -> None:
    publishing.record_audit(
        actor,
        action,
        "change_request",
        change_request.id,
        after={
            "title": change_request.title,
            "campaign_id": change_request.campaign_id,
            "kind": change_request.kind,
            "status": change_request.status,
            "requested_by": change_request.requested_by,
            **extra,
        },
    )


def open_entries(
    campaign: Campaign,
    changes: list[EntryChange],
    actor: str,
    via: str = "admin",
) -> ChangeRequest:
    """A request to write these entry changes (create, update, delete, restore)."""
    states = drift.entry_states(campaign.id, [change.user_id for change in changes])
    recorded = [_recorded(change, states.get(change.user_id)) for change in changes]
    return _open(campaign, KIND_ENTRIES, _title(changes), actor, via, changes=recorded, details={})


def same_open_request(
    campaign: Campaign, changes: list[EntryChange], actor: str
) -> ChangeRequest | None:
    """An open request by `actor` asking for exactly these changes: a retried write
    (a sending tool's timeout) finds its request rather than opening a second one."""
    wanted = [_asked(change.user_id, change.action, change.fields) for change in changes]
    recent = db.session.scalars(
        select(ChangeRequest)
        .where(
            ChangeRequest.campaign_id == campaign.id,
            ChangeRequest.kind == KIND_ENTRIES,
            ChangeRequest.status == STATUS_OPEN,
            ChangeRequest.requested_by == actor,
        )
        .order_by(ChangeRequest.id.desc())
        .limit(RETRY_WINDOW)
    )
    for candidate in recent:
        asked = [_asked(c["user_id"], c["action"], c["fields"]) for c in candidate.changes]
        if asked == wanted:
            return candidate
    return None


def _asked(user_id: str, action: str, fields: Mapping[str, Any]) -> tuple:
    # A delete records the fields it keeps in the tombstone; what was asked is the delete.
    return (user_id, action, {} if action == ACTION_DELETE else dict(fields))


def open_schedule(
    campaign: Campaign,
    user_id: str,
    values: Mapping[str, str],
    clear: Iterable[str],
    run_at: datetime,
    actor: str,
    via: str = "admin",
) -> ChangeRequest:
    """A request to schedule a change; checked now as scheduling it would be."""
    clean, clear_list = scheduling.check_change(campaign, user_id, values, clear)
    state = drift.entry_states(campaign.id, [user_id]).get(user_id)
    change = _recorded(EntryChange(user_id, ACTION_UPDATE, clean), state)
    return _open(
        campaign,
        KIND_SCHEDULE,
        f"Schedule a change to user {user_id} for {run_at:%Y-%m-%d %H:%M} UTC",
        actor,
        via,
        changes=[change],
        details={"run_at": run_at.isoformat(), "clear_fields": clear_list},
    )


def open_change_set(
    content_import: ContentImport,
    mode: str,
    run_at: datetime | None,
    actor: str,
    via: str = "admin",
) -> ChangeRequest:
    """A request to apply a previewed change set (import, revert, rollback, roll forward)."""
    check_change_set(content_import, mode)
    # The preview may be older than the request: take its diff against now.
    drift.recheck_drifted(content_import)
    when = f" at {run_at:%Y-%m-%d %H:%M} UTC" if run_at else ""
    return _open(
        content_import.campaign,
        KIND_CHANGE_SET,
        f"Apply {content_import.label} #{content_import.id}{when}",
        actor,
        via,
        changes=[],
        details=drift.change_set_summary(content_import, mode, run_at),
        content_import_id=content_import.id,
    )


def ask_for_staged(content_import: ContentImport) -> ChangeRequest | None:
    """Open the request for an import the ingest API staged for approval (commits).

    One that cannot be applied as asked (all or nothing, with invalid rows)
    is marked invalid with the reason, as its apply would have failed.
    """
    # The import's row locked first: the worker that staged it and the sweeper
    # may both get here, and only one opens the request.
    held = changesets.hold(content_import.id, (STATUS_READY,))
    asked = select(ChangeRequest.id).where(ChangeRequest.content_import_id == content_import.id)
    if not held or db.session.scalar(asked.limit(1)) is not None:
        db.session.rollback()
        return None
    try:
        change_request = open_change_set(
            content_import,
            content_import.mode,
            None,
            content_import.created_by,
            via=content_import.approval_via or "api",
        )
    except ValueError as error:
        content_import.status = STATUS_INVALID
        content_import.error = str(error)
        change_request = None
    db.session.commit()
    return change_request


def staged_without_request(older_than: timedelta, limit: int) -> list[ContentImport]:
    """Imports the ingest API staged for approval whose request was never opened (their
    worker stopped in between); a request decided since counts as opened."""
    asked = select(ChangeRequest.id).where(ChangeRequest.content_import_id == ContentImport.id)
    return list(
        db.session.scalars(
            select(ContentImport)
            .where(
                ContentImport.approval_via.is_not(None),
                ContentImport.status == STATUS_READY,
                ContentImport.received_at <= utcnow() - older_than,
                ~asked.exists(),
            )
            .order_by(ContentImport.id)
            .limit(limit)
        )
    )


def check_change_set(content_import: ContentImport, mode: str) -> None:
    """Refuse (ApprovalError, ChangeSetError) asking to apply what cannot be, or twice."""
    changesets.check_applicable(content_import, mode)
    waiting = pending_for_change_set(content_import.id)
    if waiting is not None:
        raise ApprovalError(
            f"Change request #{waiting.id} already asks to apply this {content_import.label}."
        )


def pending_for_change_set(import_id: int) -> ChangeRequest | None:
    """The open request to apply this change set, if there is one."""
    return db.session.scalars(
        select(ChangeRequest).where(
            ChangeRequest.content_import_id == import_id, ChangeRequest.status == STATUS_OPEN
        )
    ).first()


def conflicts(change_request: ChangeRequest, lock: bool = False) -> list[str]:
    """User ids whose entry changed since the request was made or refreshed."""
    if change_request.kind == KIND_CHANGE_SET:
        return drift.drifted_users(_change_set(change_request), NAMED_CONFLICTS)
    user_ids = [change["user_id"] for change in change_request.changes]
    states = drift.entry_states(change_request.campaign_id, user_ids, lock=lock)
    return [
        change["user_id"]
        for change in change_request.changes
        if drift.version_of(states.get(change["user_id"])) != change["base_version"]
    ]


def _change_set(change_request: ChangeRequest) -> ContentImport:
    if change_request.content_import is None:
        raise ApprovalError("The change set of this request was discarded.")
    return change_request.content_import


def _check_decider(change_request: ChangeRequest, decider: str) -> None:
    if not change_request.is_open:
        raise ApprovalError(f"This request is {change_request.status}; it cannot be decided.")
    if decider == change_request.requested_by:
        raise ApprovalError("Nobody approves or rejects their own request: ask someone else.")


def _conflict_message(user_ids: list[str]) -> str:
    named = ", ".join(user_ids[:NAMED_CONFLICTS])
    return (
        f"Entries changed since this request was made (users {named}). "
        "Refresh the request to see its diff against the entries as they are now, "
        "then decide."
    )


def approve(change_request: ChangeRequest, decider: str, connection: redis.Redis) -> None:
    """Apply the request as its author's change; Conflict if its entries moved (commits)."""
    _check_decider(change_request, decider)
    moved = conflicts(change_request, lock=True)
    if moved:
        db.session.rollback()
        raise Conflict(_conflict_message(moved))
    change_request.status = STATUS_APPLIED
    change_request.decided_by = decider
    change_request.decided_at = utcnow()
    _audit(change_request, decider, "approve")
    if change_request.kind == KIND_ENTRIES:
        try:
            change_request.result = {"versions": _write_entries(change_request)}
        except IntegrityError as error:
            # Another write created one of the entries while this one was checked.
            db.session.rollback()
            raise Conflict(_conflict_message(conflicts(change_request))) from error
        db.session.commit()
    elif change_request.kind == KIND_SCHEDULE:
        change_request.result = {"scheduled_change_id": _schedule(change_request, connection)}
        db.session.commit()
    else:
        _start_change_set(change_request, connection)


def _write_entries(change_request: ChangeRequest) -> dict[str, int]:
    campaign = change_request.campaign
    versions = {}
    for change in change_request.changes:
        before = entry_writes.lock_entry(campaign.id, change["user_id"])
        fields = change["fields"]
        if change["action"] != ACTION_DELETE:
            fields, errors = validate_fields(campaign.field_schema, fields)
            if errors:
                name, message = next(iter(errors.items()))
                db.session.rollback()
                raise ApprovalError(
                    f"User {change['user_id']}'s new fields no longer fit the campaign "
                    f"({name}: {message}); nothing was applied."
                )
        saved = entry_writes.write_entry(
            campaign.id,
            change["user_id"],
            fields,
            change_request.requested_by,
            change["action"],
            before,
        )
        versions[change["user_id"]] = saved.version
    return versions


def _schedule(change_request: ChangeRequest, connection: redis.Redis) -> int:
    change = change_request.changes[0]
    details = change_request.details
    try:
        scheduled = scheduling.schedule_change(
            change_request.campaign,
            change["user_id"],
            change["fields"],
            details["clear_fields"],
            datetime.fromisoformat(details["run_at"]),
            change_request.requested_by,
            connection,
        )
    except changesets.ChangeSetError as error:
        _reopen(change_request, error)
        raise ApprovalError(f"{error} The request stays open.") from error
    return scheduled.id


def _reopen(change_request: ChangeRequest, error: Exception) -> None:
    """Undo an approval whose change failed to start. Starting it may have committed the
    decision and its audit row, so the audit log then says it was undone, and why."""
    decider = change_request.decided_by
    db.session.rollback()
    reopened = db.session.get(ChangeRequest, change_request.id)
    if reopened.status != STATUS_OPEN:
        reopened.status, reopened.decided_by, reopened.decided_at = STATUS_OPEN, None, None
        reopened.result = None
        _audit(reopened, decider, "approval_undone", reason=str(error)[:500])
        db.session.commit()


def _start_change_set(change_request: ChangeRequest, connection: redis.Redis) -> None:
    content_import = _change_set(change_request)
    details = change_request.details
    run_at = datetime.fromisoformat(details["run_at"]) if details.get("run_at") else None
    change_request.result = {"content_import_id": content_import.id}
    try:
        changesets.start_apply(
            content_import, details["mode"], change_request.requested_by, connection, run_at
        )
    except changesets.ChangeSetError as error:
        _reopen(change_request, error)
        raise ApprovalError(f"{error} The request stays open.") from error


def reject(change_request: ChangeRequest, decider: str, reason: str) -> None:
    """Refuse the request with a reason, kept as its last comment (no commit)."""
    _check_decider(change_request, decider)
    reason = (reason or "").strip()
    if not reason:
        raise ApprovalError("Say why the request is rejected: its author reads it.")
    add_comment(change_request, decider, reason)
    change_request.status = STATUS_REJECTED
    change_request.decided_by = decider
    change_request.decided_at = utcnow()
    _audit(change_request, decider, "reject", reason=reason[:500])


def withdraw(change_request: ChangeRequest, actor: str) -> None:
    """The author takes back an open request (no commit)."""
    if not change_request.is_open:
        raise ApprovalError(f"This request is {change_request.status}; it cannot be withdrawn.")
    if actor != change_request.requested_by:
        raise ApprovalError("Only its author withdraws a request; reject it instead.")
    change_request.status = STATUS_WITHDRAWN
    change_request.decided_by = actor
    change_request.decided_at = utcnow()
    _audit(change_request, actor, "withdraw")


def refresh(change_request: ChangeRequest, actor: str) -> None:
    """Take the request's diff again against the entries as they are now (no commit)."""
    if not change_request.is_open:
        raise ApprovalError(f"This request is {change_request.status}; it cannot be refreshed.")
    if change_request.kind == KIND_CHANGE_SET:
        _refresh_change_set(change_request)
    else:
        change_request.changes = _rebased(change_request)
    change_request.refreshed_at = utcnow()
    _audit(change_request, actor, "refresh")


def _rebased(change_request: ChangeRequest) -> list[dict[str, Any]]:
    user_ids = [change["user_id"] for change in change_request.changes]
    states = drift.entry_states(change_request.campaign_id, user_ids)
    rebased = []
    for change in change_request.changes:
        state = states.get(change["user_id"])
        live = state is not None and not state.deleted
        action = change["action"]
        if action == ACTION_DELETE and not live:
            raise ApprovalError(
                f"User {change['user_id']} has no content to delete any more; withdraw or "
                "reject the request."
            )
        if action == ACTION_CREATE and live:
            action = ACTION_UPDATE
        elif action in (ACTION_UPDATE, ACTION_RESTORE) and not live:
            action = ACTION_CREATE
        fields = change["fields"] if action != ACTION_DELETE else {}
        rebased.append(_recorded(EntryChange(change["user_id"], action, fields), state))
    return rebased


def _refresh_change_set(change_request: ChangeRequest) -> None:
    content_import = _change_set(change_request)
    drift.recheck_drifted(content_import)
    details = change_request.details
    run_at = datetime.fromisoformat(details["run_at"]) if details.get("run_at") else None
    change_request.details = drift.change_set_summary(content_import, details["mode"], run_at)


def add_comment(change_request: ChangeRequest, author: str, body: str) -> ChangeRequestComment:
    """A comment on the request (no commit)."""
    body = (body or "").strip()
    if not body:
        raise ApprovalError("Write a comment first.")
    if len(body) > COMMENT_MAX_LENGTH:
        raise ApprovalError(
            f"A comment has at most {COMMENT_MAX_LENGTH} characters; this one has {len(body)}."
        )
    comment = ChangeRequestComment(
        change_request_id=change_request.id, author=author, body=body, created_at=utcnow()
    )
    db.session.add(comment)
    change_request.comments.append(comment)
    return comment


def open_for_review(reviewer: str) -> int:
    """Open requests someone other than their author can decide: the menu's badge."""
    return db.session.scalar(
        select(func.count()).where(
            ChangeRequest.status == STATUS_OPEN, ChangeRequest.requested_by != reviewer
        )
    )
