"""Streamed imports: a CSV or NDJSON body of any size, through the admin's import pipeline.

The body is copied to a file in bounded chunks as it arrives (never held in
memory), then staged by staging.stage_file exactly as an uploaded file is:
every row validated, diffed and written to `import_row` with COPY on
PostgreSQL, in bounded transactions. The apply is the admin's apply job
(changesets.start_apply, run by the worker in batches, each batch published
after its commit); `GET .../imports/<id>` reports its status and progress.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from flask import current_app, jsonify, request, url_for
from sqlalchemy import delete, select
from werkzeug.wrappers import Response

from ccadmin.admin.imports import import_state, redis_connection
from ccadmin.extensions import db
from ccadmin.imports import changesets, staging
from ccadmin.imports.parsing import FORMAT_CSV, FORMAT_JSONL
from ccadmin.manage import auth
from ccadmin.manage.campaigns import campaign_for
from ccadmin.manage.errors import ApiError
from ccadmin.manage.routes import operation, query_flag, require_media_type
from ccadmin.models import ContentImport, ImportRow
from ccadmin.models.imports import MODE_ALL, MODE_VALID_ONLY, STATUS_INVALID

log = logging.getLogger(__name__)

FORMATS = {
    "text/csv": FORMAT_CSV,
    "application/x-ndjson": FORMAT_JSONL,
    "application/jsonl": FORMAT_JSONL,
}
UPLOAD_FOLDER = "imports"
CHUNK_BYTES = 1024 * 1024
# Rows listed in an error report (the admin's preview shows the same first ones).
REPORTED_ROWS = staging.REPORT_INVALID
PARTIAL = {
    "name": "partial",
    "in": "query",
    "required": False,
    "schema": {"type": "boolean", "default": False},
    "description": "Apply the valid rows even if some are invalid (default: all or nothing).",
}
ROW_BODY = {
    "type": "string",
    "description": (
        "CSV with a header naming `user_id` and field columns, or NDJSON with one object "
        "per line (`user_id` plus fields). Fields left out keep their current values."
    ),
}


def _save_body(path: Path) -> int:
    """Copy the request body to `path` in chunks; the number of bytes written."""
    # No limit of its own (None would mean the app's); the rows are checked one by one.
    request.max_content_length = sys.maxsize
    written = 0
    stream = request.stream
    with path.open("wb") as target:
        while chunk := stream.read(CHUNK_BYTES):
            target.write(chunk)
            written += len(chunk)
    return written


def state_document(content_import: ContentImport) -> dict[str, Any]:
    """Status, rows by outcome, progress and the error report of one import."""
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
        },
        "errors": {
            "file": list(report.get("file_errors", [])),
            "rows": [
                {"line": row["line"], "user_id": row.get("user_id"), "reason": row.get("reason")}
                for row in report.get("invalid", [])
            ],
            "apply": content_import.error,
        },
    }


def _answer(content_import: ContentImport, status: int) -> Response:
    response = jsonify(state_document(content_import))
    response.status_code = status
    response.headers["Location"] = url_for(
        ".get_import", slug=content_import.campaign.slug, import_id=content_import.id
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def _stage(content_import: ContentImport, path: Path, file_format: str) -> ContentImport:
    try:
        return staging.stage_file(content_import, path, file_format)
    except Exception:
        log.exception("import %s could not be staged", content_import.id)
        db.session.rollback()
        db.session.execute(delete(ImportRow).where(ImportRow.import_id == content_import.id))
        failed = db.session.get(ContentImport, content_import.id)
        failed.status = STATUS_INVALID
        failed.report = {"file_errors": ["The body could not be processed."], "invalid": []}
        db.session.commit()
        return failed


@operation(
    "/campaigns/<slug>/imports",
    "POST",
    summary="Import a CSV or NDJSON body of any size, applied by the worker",
    description=(
        "The body is streamed to disk and every row is validated before anything is "
        "written; then the worker applies it in batches, each live after its commit. "
        "Poll the import's address (the `Location` header) for progress."
    ),
    scope="write",
    body=ROW_BODY,
    body_types=tuple(FORMATS),
    query=[PARTIAL],
    responses={
        202: ("Validated and queued; poll `Location` for progress", "ImportState"),
        422: ("The body or some rows are invalid; nothing will be applied", "ImportState"),
        503: ("The job queue is unreachable; nothing will be applied", "Error"),
    },
    response_headers={202: ["Location"], 422: ["Location"]},
)
def create_import(slug: str) -> Response:
    campaign = campaign_for(slug, write=True)
    mode = MODE_VALID_ONLY if query_flag("partial") else MODE_ALL
    file_format = FORMATS[require_media_type(tuple(FORMATS))]
    actor = auth.actor()
    extension = "csv" if file_format == FORMAT_CSV else "ndjson"
    content_import = changesets.new_import(campaign, f"API import.{extension}", actor)
    folder = Path(current_app.instance_path) / UPLOAD_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{content_import.id}-api.{extension}"
    try:
        try:
            _save_body(path)
        except Exception:
            # The client went away mid-body (or the disk is full): nothing to keep.
            db.session.rollback()
            db.session.delete(db.session.get(ContentImport, content_import.id))
            db.session.commit()
            raise
        content_import = _stage(content_import, path, file_format)
    finally:
        path.unlink(missing_ok=True)
    if content_import.status == STATUS_INVALID:
        return _answer(content_import, 422)
    if mode == MODE_ALL and content_import.invalid_rows:
        # Left previewed: the admin can still apply its valid rows, or discard it.
        return _answer(content_import, 422)
    try:
        changesets.start_apply(content_import, mode, actor, redis_connection())
    except changesets.ChangeSetError as error:
        raise ApiError(
            503, "queue_unavailable", str(error), headers={"Retry-After": "30"}
        ) from None
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
