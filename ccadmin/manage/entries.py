"""One entry: read, idempotent upsert (PUT), partial change (PATCH), delete.

Every write is the admin's own: validate_fields against the campaign's
schema, then the entry's next version, outbox event and audit event (the
token as actor) in one transaction of a few statements
(publishing/entry_writes.py), published after commit. The entry's row is
locked while its version is compared with `If-Match`, so two writers cannot
both win against the same version.
"""

from __future__ import annotations

from typing import Any

from flask import jsonify, request, url_for
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from werkzeug.wrappers import Response

from ccadmin.approvals import workflow
from ccadmin.content.schema import user_id_error, validate_fields
from ccadmin.extensions import db
from ccadmin.manage import approval, ordering, schemas, token_auth
from ccadmin.manage.campaigns import campaign_for
from ccadmin.manage.errors import ApiError
from ccadmin.manage.routes import json_body, operation
from ccadmin.models import Campaign, ContentEntry
from ccadmin.publishing import entry_writes, event_times
from ccadmin.publishing.entry_writes import StoredEntry

RULE = "/campaigns/<slug>/content/<anytext:user_id>"
IF_MATCH = {
    "name": "If-Match",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": 'Only change the entry if its ETag (`"<version>"`) still matches; else 412.',
}
IF_NONE_MATCH = {
    "name": "If-None-Match",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "enum": ["*"]},
    "description": "`*`: only create; 412 if the user already has content.",
}


def entry_etag(entry: ContentEntry | StoredEntry) -> str:
    return f'"{entry.version}"'


def entry_document(entry: ContentEntry | StoredEntry, slug: str) -> dict[str, Any]:
    """What the API shows of an entry."""
    return {
        "campaign": slug,
        "user_id": entry.user_id,
        "fields": dict(entry.fields or {}),
        "version": entry.version,
        "updated_at": entry.updated_at.isoformat(),
        "updated_by": entry.updated_by,
    }


def entry_response(entry: ContentEntry | StoredEntry, slug: str, status: int = 200) -> Response:
    """The entry as JSON with its ETag; `slug` is the path's, so nothing is read after commit."""
    response = jsonify(entry_document(entry, slug))
    response.status_code = status
    response.headers["ETag"] = entry_etag(entry)
    response.headers["Cache-Control"] = "no-store"
    if status == 201:
        response.headers["Location"] = url_for(".get_entry", slug=slug, user_id=entry.user_id)
    return response


def checked_user_id(user_id: str) -> str:
    error = user_id_error(user_id)
    if error:
        raise ApiError(422, "validation_failed", f"user_id: {error}", {"user_id": error})
    return user_id


def find_entry(campaign: Campaign, user_id: str) -> ContentEntry | None:
    """The user's row in this campaign, tombstone or not."""
    query = select(ContentEntry).where(
        ContentEntry.campaign_id == campaign.id, ContentEntry.user_id == user_id
    )
    return db.session.scalars(query).first()


def _tags(header: str) -> set[str]:
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}


def check_preconditions(live: StoredEntry | None) -> None:
    """If-Match / If-None-Match against the entry as it is now (412 on a mismatch)."""
    if_match = request.headers.get("If-Match")
    if if_match is not None:
        tags = _tags(if_match)
        current = entry_etag(live) if live is not None else None
        if current is None or ("*" not in tags and current not in tags):
            raise ApiError(
                412,
                "precondition_failed",
                "The entry changed since you read it (or does not exist); read it and retry.",
                {"current_version": live.version if live is not None else None},
            )
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None and live is not None:
        tags = _tags(if_none_match)
        if "*" in tags or entry_etag(live) in tags:
            raise ApiError(
                412,
                "precondition_failed",
                "The user already has content in this campaign.",
                {"current_version": live.version},
            )


def checked_fields(campaign: Campaign, values: dict[str, Any]) -> dict[str, str]:
    clean, errors = validate_fields(campaign.field_schema, values)
    if errors:
        raise ApiError(
            422,
            "validation_failed",
            "Some fields do not fit the campaign's schema.",
            {"fields": errors},
        )
    return clean


def save_change(
    campaign: Campaign,
    user_id: str,
    fields: dict[str, Any],
    action: str,
    before: StoredEntry | None,
) -> StoredEntry:
    """Write the change (entry, outbox, audit) and commit: every single write's last step.

    Where the change needs approval, it becomes a change request (202)
    instead. A concurrent create raises IntegrityError.
    """
    if approval.needed(campaign):
        approval.ask(campaign, [workflow.EntryChange(user_id, action, fields)])
    saved = entry_writes.write_entry(
        campaign.id, user_id, fields, token_auth.actor(), action, before
    )
    db.session.commit()
    return saved


def commit_change(
    campaign: Campaign,
    user_id: str,
    fields: dict[str, Any],
    action: str,
    before: StoredEntry | None,
) -> StoredEntry:
    """save_change, with a concurrent create answered 409."""
    try:
        return save_change(campaign, user_id, fields, action, before)
    except IntegrityError:
        db.session.rollback()
        raise ApiError(
            409, "conflict", "Another request created this entry at the same moment; retry."
        ) from None


def superseded(campaign: Campaign, slug: str, user_id: str) -> Response | None:
    """The answer to a write older than what its source already applied, else None."""
    at = ordering.request_event_time()
    if at is None:
        return None
    # The time is recorded under the user id: it must be one an entry can have.
    if not ordering.is_superseded(campaign, checked_user_id(user_id), at):
        return None
    current = entry_writes.lock_entry(campaign.id, user_id)
    db.session.rollback()
    event_times.count_superseded(1)
    # 200, so the sending tool stops retrying; the entry as it stands.
    document = {"campaign": slug, "user_id": user_id, "version": None}
    if current is not None:
        document = {**entry_document(current, slug), "deleted": current.deleted}
    response = jsonify({**document, "superseded": True})
    response.headers["Cache-Control"] = "no-store"
    if current is not None:
        response.headers["ETag"] = entry_etag(current)
    return response


def keep_unchanged(at_given: bool) -> None:
    """Nothing to write: still commit an advanced event time, so an older
    event with other content cannot win later."""
    if at_given:
        db.session.commit()
    else:
        db.session.rollback()


ACCEPTED = ("Waiting for approval as a change request; poll `Location`", "ChangeRequest")
COMMON = {
    422: (
        "Invalid body, user id or address (not UTF-8, an unpaired surrogate, nested too "
        "deep); `details` names each field",
        "Error",
    ),
}


@operation(
    RULE,
    "GET",
    summary="Read one user's entry",
    responses={200: ("The entry; its ETag is its version", "Entry")},
    response_headers={200: ["ETag"]},
)
def get_entry(slug: str, user_id: str) -> Response:
    campaign = campaign_for(slug)
    entry = find_entry(campaign, user_id)
    if entry is None or entry.deleted:
        raise ApiError(404, "entry_not_found", "This user has no content in this campaign.")
    return entry_response(entry, slug)


@operation(
    RULE,
    "PUT",
    summary="Create or replace one user's entry (idempotent)",
    description=(
        "Sets the entry's complete fields. Sending the same body again changes nothing "
        "(same version), so a retry is always safe."
    ),
    scope="write",
    body=schemas.ENTRY_PUT,
    headers=[IF_MATCH, IF_NONE_MATCH, ordering.EVENT_TIME],
    responses={
        200: ("Replaced, already equal (version unchanged), or superseded", "Entry"),
        201: ("Created", "Entry"),
        202: ACCEPTED,
        409: ("Created concurrently by another request; retry", "Error"),
        412: ("If-Match or If-None-Match did not hold", "Error"),
        **COMMON,
    },
    response_headers={200: ["ETag"], 201: ["ETag", "Location"], 202: ["Location"]},
    links={status: ["get_entry", "patch_entry", "delete_entry"] for status in (200, 201)},
)
def put_entry(slug: str, user_id: str) -> Response:
    campaign = campaign_for(slug, write=True)
    document = json_body(schemas.ENTRY_PUT)
    checked_user_id(user_id)
    clean = checked_fields(campaign, document["fields"])
    late = superseded(campaign, slug, user_id)
    if late is not None:
        return late
    stored = entry_writes.lock_entry(campaign.id, user_id)
    live = stored if stored is not None and not stored.deleted else None
    check_preconditions(live)
    if live is not None and live.fields == clean:
        keep_unchanged(ordering.HEADER in request.headers)
        return entry_response(live, slug)
    saved = commit_change(campaign, user_id, clean, "update" if live else "create", stored)
    return entry_response(saved, slug, 200 if live is not None else 201)


@operation(
    RULE,
    "PATCH",
    summary="Change some fields of one user's entry",
    scope="write",
    body=schemas.ENTRY_PATCH,
    body_types=("application/json", "application/merge-patch+json"),
    headers=[IF_MATCH, ordering.EVENT_TIME],
    responses={
        200: ("Changed, already equal, or superseded", "Entry"),
        202: ACCEPTED,
        412: ("If-Match did not hold", "Error"),
        **COMMON,
    },
    response_headers={200: ["ETag"], 202: ["Location"]},
)
def patch_entry(slug: str, user_id: str) -> Response:
    campaign = campaign_for(slug, write=True)
    document = json_body(schemas.ENTRY_PATCH, media_types=("application/merge-patch+json",))
    late = superseded(campaign, slug, user_id)
    if late is not None:
        return late
    entry = entry_writes.lock_entry(campaign.id, user_id)
    if entry is None or entry.deleted:
        raise ApiError(404, "entry_not_found", "This user has no content in this campaign.")
    check_preconditions(entry)
    merged = {**entry.fields, **document["fields"]}
    clean = checked_fields(
        campaign, {name: value for name, value in merged.items() if value is not None}
    )
    if clean == entry.fields:
        keep_unchanged(ordering.HEADER in request.headers)
        return entry_response(entry, slug)
    return entry_response(commit_change(campaign, user_id, clean, "update", entry), slug)


@operation(
    RULE,
    "DELETE",
    summary="Delete one user's entry",
    description="The entry becomes a tombstone version, so no older publish can bring it back.",
    scope="write",
    headers=[IF_MATCH, ordering.EVENT_TIME],
    responses={
        200: ("Superseded: a newer event from this source is applied; nothing changed", "Entry"),
        202: ACCEPTED,
        204: ("Deleted", None),
        412: ("If-Match did not hold", "Error"),
        422: ("A malformed Event-Time, or with one, an invalid user id", "Error"),
    },
    response_headers={202: ["Location"]},
)
def delete_entry(slug: str, user_id: str) -> Response:
    campaign = campaign_for(slug, write=True)
    late = superseded(campaign, slug, user_id)
    if late is not None:
        return late
    entry = entry_writes.lock_entry(campaign.id, user_id)
    if entry is None or entry.deleted:
        raise ApiError(404, "entry_not_found", "This user has no content in this campaign.")
    check_preconditions(entry)
    deleted = commit_change(campaign, user_id, entry.fields, "delete", entry)
    response = Response(status=204)
    response.headers["ETag"] = entry_etag(deleted)
    return response
