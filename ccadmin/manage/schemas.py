"""JSON Schemas of the ingest API, and their validation (jsonschema, draft 2020-12).

These dicts are the single source: request bodies are checked against them
here, and openapi.py puts the very same objects into the OpenAPI document, so
the document cannot drift from what the code accepts. Per-campaign field
limits are checked afterwards by content_schema.validate_fields, the
admin's own rules.
"""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator

from ccadmin.content.schema import MAX_FIELD_LENGTH, MAX_FIELDS, printable
from ccadmin.models.campaign import FALLBACK_POLICIES
from ccadmin.models.content import USER_ID_MAX_LENGTH

MAX_BATCH_ROWS = 10_000
# Each error lists at most this many problems; enough to fix a request.
MAX_REPORTED_ERRORS = 1_000

FIELD_VALUE = {
    "type": "string",
    "maxLength": MAX_FIELD_LENGTH,
    "description": "Text; an unpaired surrogate (e.g. the escape `\\ud800`) is refused.",
}
FIELDS = {
    "type": "object",
    "description": (
        "The entry's content fields by name. Which fields exist, which are required and "
        "how long each may be is the campaign's own schema: read it with "
        "`GET /manage/v1/campaigns/{slug}` (`fields`). A body that breaks it is a 422 "
        "naming each field."
    ),
    "additionalProperties": FIELD_VALUE,
    "maxProperties": MAX_FIELDS,
}
ENTRY_PUT = {
    "type": "object",
    "description": "The entry's complete fields; fields left out are removed.",
    "properties": {"fields": FIELDS},
    "required": ["fields"],
    "additionalProperties": False,
}
ENTRY_PATCH = {
    "type": "object",
    "description": "Fields to change; `null` removes an optional field, others are kept.",
    "properties": {
        "fields": {
            "type": "object",
            "additionalProperties": {"type": ["string", "null"], "maxLength": MAX_FIELD_LENGTH},
            "maxProperties": MAX_FIELDS,
        }
    },
    "required": ["fields"],
    "additionalProperties": False,
}
# One row of a batch or an NDJSON import: the same shape as a line of an import file.
BATCH_ROW = {
    "type": "object",
    "description": (
        "`user_id` plus the fields to set; fields left out keep their current values, "
        '`null` or `""` removes an optional field.'
    ),
    "properties": {
        "user_id": {
            "type": ["string", "integer"],
            "description": f"1-{USER_ID_MAX_LENGTH} characters.",
        },
        "$event_time": {
            "type": "string",
            "format": "date-time",
            "description": (
                "When the source produced this row (RFC 3339 with its offset); overrides the "
                "`Event-Time` header. Not a field: no field name starts with `$`."
            ),
        },
    },
    "required": ["user_id"],
    "additionalProperties": {"type": ["string", "null"], "maxLength": MAX_FIELD_LENGTH},
    "maxProperties": MAX_FIELDS + 1,
}
BATCH = {
    "type": "array",
    "items": BATCH_ROW,
    "minItems": 1,
    "maxItems": MAX_BATCH_ROWS,
}
ENTRY = {
    "type": "object",
    "properties": {
        "campaign": {"type": "string"},
        "user_id": {"type": "string"},
        "fields": {"type": "object", "additionalProperties": {"type": "string"}},
        "version": {"type": "integer", "minimum": 1},
        "updated_at": {"type": "string", "format": "date-time"},
        "updated_by": {"type": ["string", "null"]},
        "superseded": {
            "type": "boolean",
            "description": (
                "Present (true) when the write carried an event time older than one its "
                "source already applied: nothing changed, and this is the entry as it stands."
            ),
        },
        "deleted": {"type": "boolean", "description": "With `superseded`: the entry is deleted."},
    },
    "required": ["campaign", "user_id", "fields", "version", "updated_at", "updated_by"],
}
CAMPAIGN_FIELD = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "max_length": {"type": "integer"}},
    "required": ["name", "max_length"],
}
CAMPAIGN = {
    "type": "object",
    "properties": {
        "slug": {"type": "string"},
        "name": {"type": "string"},
        "active": {"type": "boolean"},
        "public": {"type": "boolean"},
        "is_default": {"type": "boolean"},
        "fields": {"type": "array", "items": CAMPAIGN_FIELD},
        "fallback_policy": {"type": "string", "enum": list(FALLBACK_POLICIES)},
        "default_fields": {"type": "object", "additionalProperties": {"type": "string"}},
        "max_age": {"type": "integer"},
        "version": {"type": "integer"},
        "counts": {
            "type": "object",
            "description": "Entries with content (an estimate above 100,000 on PostgreSQL).",
            "properties": {"entries": {"type": "integer"}, "estimated": {"type": "boolean"}},
            "required": ["entries", "estimated"],
        },
    },
    "required": ["slug", "name", "active", "fields", "fallback_policy", "default_fields"],
}
CAMPAIGN_LIST = {
    "type": "object",
    "properties": {"campaigns": {"type": "array", "items": CAMPAIGN}},
    "required": ["campaigns"],
}
ROW_ERROR = {
    "type": "object",
    "properties": {
        "index": {"type": "integer", "description": "Position of the row in the body, from 0."},
        "user_id": {"type": ["string", "null"]},
        "errors": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "required": ["index", "errors"],
}
ROW_RESULT = {
    "type": "object",
    "description": "What happened to one row of the body.",
    "properties": {
        "index": {"type": "integer", "description": "Position of the row in the body, from 0."},
        "user_id": {"type": ["string", "null"]},
        "status": {
            "type": "string",
            "enum": ["created", "updated", "unchanged", "superseded", "invalid"],
        },
        "version": {
            "type": ["integer", "null"],
            "description": "The entry's version after the batch (not for invalid rows).",
        },
        "errors": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "Invalid rows: the problems by field.",
        },
    },
    "required": ["index", "user_id", "status"],
}
# Any JSON value is an event the endpoint answers for (an event it cannot use is
# `ignored` or `invalid` in its result), so these describe without constraining.
EVENT = {
    "description": (
        "A Segment / RudderStack event, as the tool sends it. `identify` (with `traits`, "
        "or `context.traits`) and `track` (with `properties`) set fields for `userId`; "
        "other types, events without `userId` and events carrying none of the mapped "
        "values are ignored; `timestamp` orders it."
    ),
    "properties": {
        "type": {
            "description": "`identify` or `track`; others are ignored.",
            "examples": ["identify"],
        },
        "userId": {"description": "The user the content is for (a string or a number)."},
        "event": {"description": "A track event's name (see the `event` parameter)."},
        "traits": {"description": "An identify's values, by name."},
        "properties": {"description": "A track's values, by name."},
        "context": {"description": "`context.traits` is read when `traits` lacks a value."},
        "timestamp": {"description": "When it happened (RFC 3339): its event time."},
    },
}
EVENTS = {
    "type": ["object", "array"],
    "description": (
        'One event, an array of events, or `{"batch": [events]}`; at most 10,000 events.'
    ),
    "items": EVENT,
    "maxItems": MAX_BATCH_ROWS,
}
EVENT_RESULT = {
    "type": "object",
    "description": "What happened to one event of the body.",
    "properties": {
        "index": {"type": "integer", "description": "Position of the event, from 0."},
        "user_id": {"type": ["string", "null"]},
        "status": {
            "type": "string",
            "enum": ["created", "updated", "unchanged", "superseded", "ignored", "invalid"],
        },
        "version": {"type": ["integer", "null"]},
        "reason": {"type": "string", "description": "Why an event was ignored."},
        "errors": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "required": ["index", "user_id", "status"],
}
EVENTS_RESULT = {
    "type": "object",
    "properties": {
        "events": {"type": "integer"},
        "created": {"type": "integer"},
        "updated": {"type": "integer"},
        "unchanged": {"type": "integer"},
        "superseded": {"type": "integer"},
        "ignored": {"type": "integer"},
        "invalid": {"type": "integer"},
        "import_id": {"type": ["integer", "null"]},
        "results": {"type": "array", "items": EVENT_RESULT},
    },
    "required": [
        "events",
        "created",
        "updated",
        "unchanged",
        "superseded",
        "ignored",
        "invalid",
        "results",
    ],
}
BATCH_RESULT = {
    "type": "object",
    "properties": {
        "import_id": {"type": ["integer", "null"]},
        "rows": {"type": "integer"},
        "created": {"type": "integer"},
        "updated": {"type": "integer"},
        "unchanged": {"type": "integer"},
        "superseded": {"type": "integer"},
        "invalid": {"type": "integer"},
        "errors": {"type": "array", "items": ROW_ERROR},
        "results": {"type": "array", "items": ROW_RESULT},
    },
    "required": [
        "rows",
        "created",
        "updated",
        "unchanged",
        "superseded",
        "invalid",
        "errors",
        "results",
    ],
}
IMPORT_STATE = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "campaign": {"type": "string"},
        "status": {"type": "string"},
        "mode": {"type": "string", "enum": ["all_or_nothing", "valid_only"]},
        "rows": {
            "type": "object",
            "description": "Rows of the body by outcome.",
            "additionalProperties": {"type": "integer"},
        },
        "progress": {
            "type": "object",
            "properties": {
                "done": {"type": "integer"},
                "total": {"type": "integer"},
                "percent": {"type": "integer"},
                "written": {"type": "integer"},
                "live": {"type": "boolean"},
            },
        },
        "errors": {
            "type": "object",
            "properties": {
                "file": {"type": "array", "items": {"type": "string"}},
                "rows": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "line": {"type": "integer"},
                            "user_id": {"type": ["string", "null"]},
                            "reason": {"type": ["string", "null"]},
                        },
                    },
                },
                "apply": {"type": ["string", "null"]},
            },
        },
        "change_request": {
            "type": ["object", "null"],
            "description": (
                "With a token that needs approval: the change request the staged import "
                "waits as (null until it is staged)."
            ),
            "properties": {
                "id": {"type": "integer"},
                "status": {"type": "string"},
                "url": {"type": "string"},
            },
        },
    },
    "required": ["id", "campaign", "status", "rows", "progress", "errors"],
}
ERROR = {
    "type": "object",
    "properties": {
        "error": {"type": "string", "description": "A stable code, e.g. `validation_failed`."},
        "message": {"type": "string", "description": "What went wrong, for a person."},
        "details": {
            "type": "object",
            "description": "Per-field messages (`fields`, `user_id`) or per-row ones (`rows`).",
        },
    },
    "required": ["error", "message"],
}

CHANGE_REQUEST = {
    "type": "object",
    "description": (
        "A change that waits for a person's approval (a campaign whose changes need "
        "approval, written with a token that needs it)."
    ),
    "properties": {
        "id": {"type": "integer"},
        "campaign": {"type": "string"},
        "kind": {"type": "string", "enum": ["entries", "schedule", "change_set"]},
        "title": {"type": "string"},
        "status": {"type": "string", "enum": ["open", "applied", "rejected", "withdrawn"]},
        "entries": {"type": "integer", "description": "Entries the request changes."},
        "requested_by": {"type": "string"},
        "requested_at": {"type": "string", "format": "date-time"},
        "decided_by": {"type": ["string", "null"]},
        "decided_at": {"type": ["string", "null"], "format": "date-time"},
        "result": {"type": ["object", "null"]},
        "url": {"type": "string", "description": "This document's address, to poll."},
        "review_url": {"type": "string", "description": "Its page in the admin."},
    },
    "required": ["id", "campaign", "kind", "title", "status", "url", "review_url"],
}

COMPONENTS = {
    "EntryPut": ENTRY_PUT,
    "EntryPatch": ENTRY_PATCH,
    "BatchRow": BATCH_ROW,
    "Entry": ENTRY,
    "Campaign": CAMPAIGN,
    "CampaignList": CAMPAIGN_LIST,
    "RowError": ROW_ERROR,
    "RowResult": ROW_RESULT,
    "BatchResult": BATCH_RESULT,
    "EventResult": EVENT_RESULT,
    "EventsResult": EVENTS_RESULT,
    "ImportState": IMPORT_STATE,
    "ChangeRequest": CHANGE_REQUEST,
    "Error": ERROR,
}

_VALIDATORS: dict[int, Draft202012Validator] = {}


def nesting(schema: dict[str, Any]) -> int:
    """How many levels of arrays and objects a document valid against `schema` can have."""
    kinds = schema.get("type")
    if not {"object", "array"} & set(kinds if isinstance(kinds, list) else [kinds]):
        return 0
    children = list(schema.get("properties", {}).values())
    children += [schema[key] for key in ("additionalProperties", "items") if key in schema]
    return 1 + max((nesting(child) for child in children if isinstance(child, dict)), default=0)


def _validator(schema: dict[str, Any]) -> Draft202012Validator:
    # The schemas are module constants: one compiled validator each.
    validator = _VALIDATORS.get(id(schema))
    if validator is None:
        validator = _VALIDATORS[id(schema)] = Draft202012Validator(schema)
    return validator


def is_plain_batch_row(row: Any) -> bool:
    """True for a row that BATCH_ROW certainly accepts, checked without jsonschema.

    The common row (a user id and text fields) is checked here in a few
    microseconds; anything else, valid or not, goes through `validate`, which
    gives the same verdict and the messages.
    """
    if type(row) is not dict or len(row) > MAX_FIELDS + 1:
        return False
    user_id = row.get("user_id")
    if type(user_id) not in (str, int):
        return False
    return all(
        value is None or (type(value) is str and len(value) <= MAX_FIELD_LENGTH)
        for name, value in row.items()
        if name != "user_id"
    )


def validate(schema: dict[str, Any], value: Any) -> dict[str, str]:
    """Problems of `value` against `schema`, by dotted path ("body" is the whole body)."""
    errors: dict[str, str] = {}
    for error in _validator(schema).iter_errors(value):
        path = printable(".".join(str(part) for part in error.absolute_path)) or "body"
        errors.setdefault(path, error.message)
        if len(errors) >= MAX_REPORTED_ERRORS:
            break
    return errors
