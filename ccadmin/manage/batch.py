"""Many entries in one request: validated whole, applied in one transaction.

A batch is a change set of the import pipeline, applied on the spot: rows are
checked against the entries they change with the same rules as an import file
and an admin edit, staged as the importer's stager stages checked rows,
written by applying.apply_batch (one outbox event for the batch) and recorded
by applying.finish (one audit event, the entry histories), all before one
commit. Any invalid row means nothing is written,
unless `?partial=true`, which writes the valid rows and reports the others.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, NamedTuple

from flask import jsonify
from werkzeug.wrappers import Response

from ccadmin.content.schema import nested_deeper_than, printable, user_id_error, validate_fields
from ccadmin.extensions import db
from ccadmin.imports import applying, bulk, staging
from ccadmin.imports.parsing import USER_ID_COLUMN
from ccadmin.manage import schemas, token_auth
from ccadmin.manage.campaigns import campaign_for
from ccadmin.manage.errors import ApiError
from ccadmin.manage.routes import (
    operation,
    parse_json,
    query_flag,
    read_body,
    require_media_type,
    too_deep,
)
from ccadmin.models import Campaign, ContentImport
from ccadmin.models.imports import (
    KIND_IMPORT,
    MODE_ALL,
    MODE_VALID_ONLY,
    OUTCOME_CHANGED,
    OUTCOME_NEW,
    OUTCOME_UNCHANGED,
    STATUS_APPLYING,
)
from ccadmin.models.types import utcnow

NDJSON_TYPES = ("application/x-ndjson", "application/jsonl")
BATCH_TYPES = ("application/json", *NDJSON_TYPES)
# 10,000 rows of a few fields each; a row near the field limits makes a
# smaller batch, which is what the streamed import is for.
MAX_BATCH_BYTES = 32 * 1024 * 1024
PARTIAL = {
    "name": "partial",
    "in": "query",
    "required": False,
    "schema": {"type": "boolean", "default": False},
    "description": "Write the valid rows even if some are invalid (default: all or nothing).",
}


def parse_rows(media_type: str, raw: bytes) -> list[Any]:
    """The body's rows: a JSON array, or one JSON object per line."""
    if media_type == "application/json":
        rows = parse_json(raw, schemas.nesting(schemas.BATCH))
        if not isinstance(rows, list):
            raise ApiError(
                422,
                "validation_failed",
                "The body must be a JSON array of rows.",
                {"body": {"body": "Must be array."}},
            )
    else:
        rows = []
        row_depth = schemas.nesting(schemas.BATCH_ROW)
        for number, line in enumerate(raw.split(b"\n"), start=1):
            if not line.strip():
                continue
            if nested_deeper_than(line, row_depth):
                raise ApiError(
                    422,
                    "validation_failed",
                    f"Line {number} of the body is nested deeper than a row allows.",
                    {"rows": [{"index": len(rows), "errors": {"body": too_deep(row_depth)}}]},
                )
            try:
                rows.append(json.loads(line.decode("utf-8")))
            except ValueError:
                raise ApiError(
                    400, "invalid_json", f"Line {number} of the body is not a JSON object."
                ) from None
    if not rows:
        raise ApiError(422, "validation_failed", "The batch has no rows.", {"body": {}})
    if len(rows) > schemas.MAX_BATCH_ROWS:
        raise ApiError(
            413,
            "too_many_rows",
            f"At most {schemas.MAX_BATCH_ROWS} rows per batch; use the imports endpoint for more.",
            {"rows": len(rows), "limit": schemas.MAX_BATCH_ROWS},
        )
    return rows


def _user_id(row: dict[str, Any]) -> str:
    value = row[USER_ID_COLUMN]
    return str(value).strip() if not isinstance(value, bool) else ""


class CheckedRows(NamedTuple):
    """A batch's rows after the checks: problems by index, and for each valid
    row its user id, its merged and validated fields and the entry it was
    checked against (what the stager needs, so nothing is read or checked twice)."""

    errors: dict[int, dict[str, str]]
    valid: dict[int, tuple[str, dict[str, str], Any]]


def check_rows(campaign: Campaign, rows: list[Any]) -> CheckedRows:
    """Shape, user id, duplicates, then the campaign's field rules, row by row.

    Fields a row leaves out keep the entry's current values, exactly as in
    an import file, so the field check runs on the merged values.
    """
    errors: dict[int, dict[str, str]] = {}
    valid: dict[int, tuple[str, dict[str, str], Any]] = {}
    for index, row in enumerate(rows):
        problems = not schemas.is_plain_batch_row(row) and schemas.validate(schemas.BATCH_ROW, row)
        if problems:
            errors[index] = problems
            continue
        message = user_id_error(_user_id(row))
        if message:
            errors[index] = {USER_ID_COLUMN: message}
    shaped = {index: _user_id(row) for index, row in enumerate(rows) if index not in errors}
    counts = Counter(shaped.values())
    current = {}
    wanted = [user_id for user_id, count in counts.items() if count == 1]
    for start in range(0, len(wanted), staging.STAGE_CHUNK):
        current.update(
            staging.current_entries(campaign.id, wanted[start : start + staging.STAGE_CHUNK])
        )
    names = set(campaign.field_names)
    for index, user_id in shaped.items():
        if counts[user_id] > 1:
            errors[index] = {USER_ID_COLUMN: f"{user_id!r} appears more than once in the batch."}
            continue
        entry = current.get(user_id)
        base = (
            {name: value for name, value in (entry.fields or {}).items() if name in names}
            if entry is not None and not entry.deleted
            else {}
        )
        values = {name: value for name, value in rows[index].items() if name != USER_ID_COLUMN}
        texts = {name: "" if value is None else value for name, value in values.items()}
        clean, problems = validate_fields(campaign.field_schema, {**base, **texts})
        if problems:
            errors[index] = problems
        else:
            valid[index] = (user_id, clean, entry)
    return CheckedRows(errors, valid)


def error_list(rows: list[Any], errors: dict[int, dict[str, str]]) -> list[dict[str, Any]]:
    shown = sorted(errors)[: schemas.MAX_REPORTED_ERRORS]
    return [
        {
            "index": index,
            "user_id": printable(_user_id(rows[index])) if _has_user_id(rows[index]) else None,
            "errors": errors[index],
        }
        for index in shown
    ]


def _has_user_id(row: Any) -> bool:
    return isinstance(row, dict) and isinstance(row.get(USER_ID_COLUMN), str | int)


def apply_rows(campaign: Campaign, checked: CheckedRows, partial: bool):
    """Stage and apply the valid rows as one change set; commits once, at the end."""
    actor = token_auth.actor()
    content_import = ContentImport(
        kind=KIND_IMPORT,
        campaign_id=campaign.id,
        filename="API batch",
        status=STATUS_APPLYING,
        mode=MODE_VALID_ONLY if partial else MODE_ALL,
        created_by=actor,
        applied_by=actor,
        applied_at=utcnow(),
        report={"file_errors": [], "invalid": [], "diffs": []},
        batch_event_ids=[],
    )
    db.session.add(content_import)
    db.session.flush()
    stager = staging.Stager(content_import)
    rows = [
        stager.checked(index + 1, user_id, clean, entry)
        for index, (user_id, clean, entry) in sorted(checked.valid.items())
    ]
    for start in range(0, len(rows), staging.STAGE_CHUNK):
        bulk.insert_import_rows(rows[start : start + staging.STAGE_CHUNK])
    counts = Counter(row["outcome"] for row in rows)
    staged = applying.rows_to_apply(content_import.id)
    applying.apply_batch(content_import, staged, actor)
    content_import.applied_through_line = staged[-1].line
    applying.finish(content_import, actor)
    return content_import, counts


@operation(
    "/campaigns/<slug>/content:batch",
    "POST",
    summary="Create or change up to 10,000 entries in one transaction",
    description=(
        "A JSON array of rows, or NDJSON (one row per line). Rows are checked whole first; "
        "any invalid row means nothing is written (422 listing every invalid row by its "
        "index), unless `partial=true`. Rows equal to the entry are left alone."
    ),
    scope="write",
    body=schemas.BATCH,
    body_types=BATCH_TYPES,
    body_limit=MAX_BATCH_BYTES,
    query=[PARTIAL],
    responses={200: ("Applied; counts and any skipped rows", "BatchResult")},
)
def batch_entries(slug: str) -> Response:
    campaign = campaign_for(slug, write=True)
    partial = query_flag("partial")
    media_type = require_media_type(BATCH_TYPES)
    rows = parse_rows(media_type, read_body(MAX_BATCH_BYTES))
    checked = check_rows(campaign, rows)
    errors = checked.errors
    if errors and not partial:
        raise ApiError(
            422,
            "validation_failed",
            f"{len(errors)} of {len(rows)} rows are invalid; nothing was written.",
            {"rows": error_list(rows, errors)},
        )
    result: dict[str, Any] = {
        "import_id": None,
        "rows": len(rows),
        "created": 0,
        "updated": 0,
        "unchanged": 0,
        "invalid": len(errors),
        "errors": error_list(rows, errors),
    }
    if checked.valid:
        content_import, counts = apply_rows(campaign, checked, partial)
        result.update(
            import_id=content_import.id,
            created=counts.get(OUTCOME_NEW, 0),
            updated=counts.get(OUTCOME_CHANGED, 0),
            unchanged=counts.get(OUTCOME_UNCHANGED, 0),
        )
    response = jsonify(result)
    response.headers["Cache-Control"] = "no-store"
    return response
