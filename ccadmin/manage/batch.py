"""Many entries in one request: validated whole, applied in one transaction.

A batch is a change set of the import pipeline, applied on the spot: rows are
checked against the entries they change with the same rules as an import file
and an admin edit, staged as the importer's stager stages checked rows,
written by applying.apply_batch (one outbox event for the batch) and recorded
by applying.finish (one audit event, the entry histories), all before one
commit. Any invalid row means nothing is written,
unless `?partial=true`, which writes the valid rows and reports the others.
Rows that carry an event time older than their source already applied are
acknowledged as superseded and not written (ccadmin/publishing/event_times.py).
The answer has a result per row; the events endpoint writes through the same
`write_rows`.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from typing import Any, NamedTuple

from flask import jsonify
from sqlalchemy import select
from werkzeug.wrappers import Response

from ccadmin.approvals import workflow
from ccadmin.content.schema import nested_deeper_than, printable, user_id_error, validate_fields
from ccadmin.extensions import db
from ccadmin.imports import applying, bulk, staging
from ccadmin.imports.parsing import USER_ID_COLUMN
from ccadmin.manage import approval, ordering, schemas, token_auth
from ccadmin.manage.campaigns import campaign_for, connection_test
from ccadmin.manage.errors import ApiError
from ccadmin.manage.routes import (
    operation,
    parse_json,
    query_flag,
    read_body,
    require_media_type,
    too_deep,
)
from ccadmin.models import Campaign, ContentEntry, ContentImport
from ccadmin.models.imports import (
    KIND_IMPORT,
    MODE_ALL,
    MODE_VALID_ONLY,
    OUTCOME_CHANGED,
    OUTCOME_NEW,
    OUTCOME_UNCHANGED,
    STATUS_APPLYING,
)
from ccadmin.models.types import one_of, utcnow
from ccadmin.publishing import event_times

entry_columns = ContentEntry.__table__.c
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
    refuse_too_many(len(rows), "rows per batch; use the imports endpoint for more")
    return rows


def refuse_too_many(count: int, what: str) -> None:
    """413 past MAX_BATCH_ROWS rows or events in one request."""
    if count > schemas.MAX_BATCH_ROWS:
        raise ApiError(
            413,
            "too_many_rows",
            f"At most {schemas.MAX_BATCH_ROWS} {what}.",
            {"rows": count, "limit": schemas.MAX_BATCH_ROWS},
        )


def _user_id(row: dict[str, Any]) -> str:
    value = row[USER_ID_COLUMN]
    return str(value).strip() if not isinstance(value, bool) else ""


class CheckedRows(NamedTuple):
    """A batch's rows after the checks: problems by index, and for each valid
    row its user id, its merged and validated fields and the entry it was
    checked against (what the stager needs, so nothing is read or checked twice),
    and the event time of the rows that carry one."""

    errors: dict[int, dict[str, str]]
    valid: dict[int, tuple[str, dict[str, str], Any]]
    times: dict[int, datetime]


def take_event_times(
    rows: list[Any], default: datetime | None
) -> tuple[dict[int, datetime], dict[int, dict[str, str]]]:
    """Each row's `$event_time` (removed from the row), else the header's time.

    The events endpoint's folded rows carry it as a datetime already.
    """
    found: dict[int, datetime] = {}
    errors: dict[int, dict[str, str]] = {}
    for index, row in enumerate(rows):
        raw = row.pop(ordering.ROW_KEY, None) if type(row) is dict else None
        if raw is None:
            if default is not None:
                found[index] = default
            continue
        if isinstance(raw, datetime):
            found[index] = raw
            continue
        try:
            found[index] = event_times.parse_event_time(raw if type(raw) is str else "")
        except ValueError:
            errors[index] = {ordering.ROW_KEY: event_times.EVENT_TIME_FORMAT}
    return found, errors


def check_rows(campaign: Campaign, rows: list[Any], default_time: datetime | None) -> CheckedRows:
    """Event time, shape, user id, duplicates, then the campaign's field rules, row by row.

    Fields a row leaves out keep the entry's current values, exactly as in
    an import file, so the field check runs on the merged values.
    """
    times, errors = take_event_times(rows, default_time)
    valid: dict[int, tuple[str, dict[str, str], Any]] = {}
    for index, row in enumerate(rows):
        if index in errors:
            continue
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
    return CheckedRows(errors, valid, times)


def supersede(campaign: Campaign, checked: CheckedRows) -> set[int]:
    """Advance the event times of the valid timed rows; the indexes that are
    superseded leave `checked.valid` (they are acknowledged, not written)."""
    timed = {
        checked.valid[index][0]: at for index, at in checked.times.items() if index in checked.valid
    }
    if not timed:
        return set()
    allowed = event_times.advance(campaign.id, ordering.source(), timed)
    late = {
        index
        for index in checked.times
        if index in checked.valid and checked.valid[index][0] not in allowed
    }
    for index in late:
        del checked.valid[index]
    return late


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


def apply_rows(
    campaign: Campaign, checked: CheckedRows, partial: bool
) -> tuple[ContentImport, dict[int, str]]:
    """Stage and apply the valid rows as one change set (no commit); their outcomes by index."""
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
    indexes = sorted(checked.valid)
    rows = [stager.checked(index + 1, *checked.valid[index]) for index in indexes]
    for start in range(0, len(rows), staging.STAGE_CHUNK):
        bulk.insert_import_rows(rows[start : start + staging.STAGE_CHUNK])
    staged = applying.rows_to_apply(content_import.id)
    applying.apply_batch(content_import, staged, actor)
    content_import.applied_through_line = staged[-1].line
    return content_import, {index: row["outcome"] for index, row in zip(indexes, rows, strict=True)}


def entry_versions(campaign_id: int, user_ids: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for start in range(0, len(user_ids), staging.STAGE_CHUNK):
        chunk = user_ids[start : start + staging.STAGE_CHUNK]
        found.update(
            db.session.execute(
                select(entry_columns.user_id, entry_columns.version).where(
                    entry_columns.campaign_id == campaign_id, one_of(entry_columns.user_id, chunk)
                )
            ).all()
        )
    return found


STATUS_BY_OUTCOME = {
    OUTCOME_NEW: "created",
    OUTCOME_CHANGED: "updated",
    OUTCOME_UNCHANGED: "unchanged",
}


def write_rows(
    campaign: Campaign, rows: list[Any], partial: bool, default_time: datetime | None
) -> dict[str, Any]:
    """Check, order by event time, apply and commit rows; the answer's document.

    Every row gets a result in `results`, in the body's order: `created`,
    `updated`, `unchanged`, `superseded` (an older event time than its source
    already applied: acknowledged, not written) or `invalid` (with its errors,
    only with `partial`; otherwise any invalid row is a 422 and nothing is written).
    """
    checked = check_rows(campaign, rows, default_time)
    errors = checked.errors
    if errors and not partial:
        raise ApiError(
            422,
            "validation_failed",
            f"{len(errors)} of {len(rows)} rows are invalid; nothing was written.",
            {"rows": error_list(rows, errors)},
        )
    late = supersede(campaign, checked)
    if checked.valid and approval.needed(campaign):
        ask_approval(campaign, rows, checked, len(late))
    outcomes: dict[int, str] = {}
    content_import = None
    if checked.valid:
        content_import, outcomes = apply_rows(campaign, checked, partial)
    user_ids = {index: user_id for index, (user_id, _, _) in checked.valid.items()}
    user_ids.update({index: _user_id(rows[index]) for index in late})
    versions = entry_versions(campaign.id, list(user_ids.values()))
    if content_import is not None:
        applying.finish(content_import, token_auth.actor())
    event_times.count_superseded(len(late))
    statuses = {index: STATUS_BY_OUTCOME[outcome] for index, outcome in outcomes.items()}
    statuses.update({index: "superseded" for index in late})
    counts = Counter(statuses.values())
    results = []
    for index, row in enumerate(rows):
        if index in errors:
            user_id = printable(_user_id(row)) if _has_user_id(row) else None
            results.append(
                {"index": index, "user_id": user_id, "status": "invalid", "errors": errors[index]}
            )
        else:
            user_id = user_ids[index]
            results.append(
                {
                    "index": index,
                    "user_id": user_id,
                    "status": statuses[index],
                    "version": versions.get(user_id),
                }
            )
    return {
        "import_id": None if content_import is None else content_import.id,
        "rows": len(rows),
        "created": counts["created"],
        "updated": counts["updated"],
        "unchanged": counts["unchanged"],
        "superseded": counts["superseded"],
        "invalid": len(errors),
        "errors": error_list(rows, errors),
        "results": results,
    }


def ask_approval(campaign: Campaign, rows: list[Any], checked: CheckedRows, late: int) -> None:
    """The valid rows that change something become one change request (202)."""
    changes = []
    for index in sorted(checked.valid):
        user_id, clean, entry = checked.valid[index]
        live = entry is not None and not entry.deleted
        if live and entry.fields == clean:
            continue
        changes.append(workflow.EntryChange(user_id, "update" if live else "create", clean))
    if changes:
        approval.ask(
            campaign,
            changes,
            invalid=len(checked.errors),
            superseded=late,
            errors=error_list(rows, checked.errors),
        )


connection_test("/campaigns/<slug>/content:batch", "head_batch")


@operation(
    "/campaigns/<slug>/content:batch",
    "POST",
    summary="Create or change up to 10,000 entries in one transaction",
    description=(
        "A JSON array of rows, or NDJSON (one row per line). Rows are checked whole first; "
        "any invalid row means nothing is written (422 listing every invalid row by its "
        "index), unless `partial=true`: then the valid rows are written and the answer has "
        "a result per row. Rows equal to the entry are left alone. A row may carry "
        "`$event_time` (else the `Event-Time` header applies): rows older than what the "
        "token's source already applied are `superseded`. An empty body is a connection "
        "test: 200 with nothing written."
    ),
    scope="write",
    body=schemas.BATCH,
    body_types=BATCH_TYPES,
    body_required=False,
    body_limit=MAX_BATCH_BYTES,
    query=[PARTIAL],
    headers=[ordering.EVENT_TIME],
    responses={
        200: ("Applied; counts and a result per row", "BatchResult"),
        202: ("Waiting for approval as a change request; poll `Location`", "ChangeRequest"),
    },
    response_headers={202: ["Location"]},
)
def batch_entries(slug: str) -> Response:
    campaign = campaign_for(slug, write=True)
    partial = query_flag("partial")
    raw = read_body(MAX_BATCH_BYTES)
    if not raw.strip():
        rows: list[Any] = []
    else:
        rows = parse_rows(require_media_type(BATCH_TYPES), raw)
    response = jsonify(write_rows(campaign, rows, partial, ordering.request_event_time()))
    response.headers["Cache-Control"] = "no-store"
    return response
