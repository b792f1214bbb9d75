"""Streamed imports: a CSV or NDJSON body of any size, staged and applied by the worker.

The request only stores the body, in ~1 MB chunks committed as they arrive
(uploads.store_body: never held in memory, and in the database because web
and worker share no disk on a platform), enqueues the import's job and
answers 202 at once. The worker stages the body exactly as an uploaded file
is staged (every row validated, diffed and written to `import_row`), then
runs the admin's apply (batches, each published after its commit) when every
row is valid or `?partial=true` was asked. `GET .../imports/<id>` reports
each step.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from flask import jsonify, request, url_for
from sqlalchemy import select
from werkzeug.wrappers import Response

from ccadmin.extensions import db
from ccadmin.imports import changesets, staging, uploads
from ccadmin.imports.parsing import FORMAT_CSV, FORMAT_JSONL
from ccadmin.imports.progress import import_state, redis_connection
from ccadmin.manage import approval, token_auth
from ccadmin.manage.campaigns import campaign_for
from ccadmin.manage.errors import ApiError
from ccadmin.manage.routes import operation, query_flag, require_media_type
from ccadmin.models import ChangeRequest, ContentImport
from ccadmin.models.imports import MODE_ALL, MODE_VALID_ONLY, STATUS_RECEIVING

log = logging.getLogger(__name__)

FORMATS = {
    "text/csv": FORMAT_CSV,
    "application/x-ndjson": FORMAT_JSONL,
    "application/jsonl": FORMAT_JSONL,
}
# Rows listed in an error report (the admin's preview shows the same first ones).
REPORTED_ROWS = staging.REPORT_INVALID
PARTIAL = {
    "name": "partial",
    "in": "query",
    "required": False,
    "schema": {"type": "boolean", "default": False},
    "description": "Apply the valid rows even if some are invalid (default: all or nothing).",
}
# No `type`: any bytes are stored as they arrive; the rows are checked afterwards
# and the import's state reports what was wrong (status `invalid` or `ready`).
ROW_BODY = {
    "description": (
        "CSV with a header naming `user_id` and field columns, or NDJSON with one object "
        "per line (`user_id` plus fields). Fields left out keep their current values. "
        "The body is stored first and checked afterwards: poll the import for the result."
    ),
}


def state_document(content_import: ContentImport) -> dict[str, Any]:
    """Status, rows by outcome, progress and the error report of one import."""
    # import_state: before the apply, the percent is how much of the body the
    # worker has staged; then, how much of the apply is done.
    state = import_state(content_import)
    report = content_import.report or {}
    return {
        "id": content_import.id,
        "campaign": content_import.campaign.slug,
        "status": content_import.status,
        "mode": content_import.mode,
        "rows": {
            "total": content_import.total_rows,
            "new": content_import.new_rows,
            "changed": content_import.changed_rows,
            "unchanged": content_import.unchanged_rows,
            "invalid": content_import.invalid_rows,
        },
        "progress": {
            "done": state["done"],
            "total": state["total"],
            "percent": state["percent"],
            "written": state["written"],
            "live": state["live"],
            "received_bytes": state["received_bytes"],
            "staged_rows": state["staged_rows"],
            "staged_bytes": state["staged_bytes"],
        },
        "errors": {
            "file": list(report.get("file_errors", [])),
            "rows": [
                {"line": row["line"], "user_id": row.get("user_id"), "reason": row.get("reason")}
                for row in report.get("invalid", [])
            ],
            "apply": content_import.error,
        },
        "change_request": _change_request(content_import),
    }


def _change_request(content_import: ContentImport) -> dict[str, Any] | None:
    """The request an import made with a token that needs approval waits as, once staged."""
    if not content_import.approval_via:
        return None
    change_request = db.session.scalars(
        select(ChangeRequest)
        .where(ChangeRequest.content_import_id == content_import.id)
        .order_by(ChangeRequest.id.desc())
    ).first()
    if change_request is None:
        return None
    return {
        "id": change_request.id,
        "status": change_request.status,
        "url": approval.location(change_request),
    }


def _answer(content_import: ContentImport, status: int) -> Response:
    response = jsonify(state_document(content_import))
    response.status_code = status
    response.headers["Location"] = url_for(
        ".get_import", slug=content_import.campaign.slug, import_id=content_import.id
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@operation(
    "/campaigns/<slug>/imports",
    "POST",
    summary="Import a CSV or NDJSON body of any size, staged and applied by the worker",
    description=(
        "The body is stored as it streams in and the answer comes as soon as it is "
        "stored whole. The worker then validates every row before anything is "
        "written and applies the import in batches, each live after its commit. "
        "Poll the import's address (the `Location` header) for its status and progress."
    ),
    scope="write",
    body=ROW_BODY,
    body_types=tuple(FORMATS),
    body_limit=None,
    query=[PARTIAL],
    responses={
        202: ("Stored and queued; poll `Location` for status and progress", "ImportState"),
    },
    response_headers={202: ["Location"]},
    links={202: ["get_import"]},
    link_parameters={"import_id": "$response.body#/id"},
)
def create_import(slug: str) -> Response:
    campaign = campaign_for(slug, write=True)
    mode = MODE_VALID_ONLY if query_flag("partial") else MODE_ALL
    file_format = FORMATS[require_media_type(tuple(FORMATS))]
    extension = "csv" if file_format == FORMAT_CSV else "ndjson"
    content_import = changesets.new_import(
        campaign, f"API import.{extension}", token_auth.actor(), status=STATUS_RECEIVING
    )
    content_import.mode = mode
    content_import.upload_format = file_format
    content_import.upload_bytes = 0
    if approval.needed(campaign):
        # Staged, then waiting as a change request instead of applied.
        content_import.approval_via = approval.via()
    content_import.apply_when_staged = content_import.approval_via is None
    db.session.commit()
    # No limit of its own (None would mean the app's); the rows are checked one by one.
    request.max_content_length = sys.maxsize
    try:
        uploads.store_body(content_import, request.stream)
    except Exception:
        # The client went away mid-body (or the database did): nothing to keep.
        uploads.discard(content_import.id)
        raise
    uploads.mark_received(content_import)
    # Unreachable Redis: the body is stored and marked received; the sweeper queues it.
    uploads.enqueue_ingest(content_import, redis_connection())
    return _answer(content_import, 202)


@operation(
    "/campaigns/<slug>/imports/<int:import_id>",
    "GET",
    summary="An import's status, progress and error report",
    responses={200: ("The import", "ImportState")},
)
def get_import(slug: str, import_id: int) -> Response:
    campaign = campaign_for(slug)
    content_import = db.session.scalars(
        select(ContentImport).where(
            ContentImport.id == import_id, ContentImport.campaign_id == campaign.id
        )
    ).first()
    if content_import is None:
        raise ApiError(404, "import_not_found", "This campaign has no import with this id.")
    response = jsonify(state_document(content_import))
    response.headers["Cache-Control"] = "no-store"
    return response
