"""Segment and RudderStack events, as those tools send them, applied like batch rows.

`POST /campaigns/<slug>/events` takes one event (Segment's classic Webhooks,
RudderStack's Webhook destination), a JSON array of events (Segment's
Webhooks (Actions) with batching, up to 4,000) or `{"batch": [...]}`. An
`identify` sets fields from its `traits` (or `context.traits`), a `track`
from its `properties`: by default a campaign field takes the trait or
property of its own name; `?map=field:path` reads it from elsewhere (a dotted
path such as `traits.offer.text`), and `?event=Name` limits which `track`
events apply. Other event types, events without a `userId` and events that
carry none of the mapped values are acknowledged as `ignored`.

Each event's `timestamp` is its event time (event_times.py). Several events
for one user in one request are folded, oldest first, into one row: fields a
later event sets win. Events older than what the token's source already
applied are dropped before folding, so an older event's fields never ride
along with a newer one. One row (a single event, as Segment's classic
webhooks and RudderStack send) is written like a single `PATCH`; more go
through the batch's path (`batch.write_rows`, valid rows applied). Every
event gets a result.

Answers are 200 with a result per event, so neither tool retries a request
for one bad event (they retry 5xx, 408 and 429, and drop other 4xx).
`HEAD` and an empty `POST` answer 200 for connection tests (Census).
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from typing import Any, NamedTuple

from flask import jsonify, request
from sqlalchemy.exc import IntegrityError
from werkzeug.wrappers import Response

from ccadmin.content.schema import user_id_error, validate_fields
from ccadmin.extensions import db
from ccadmin.imports.parsing import USER_ID_COLUMN
from ccadmin.manage import entries, ordering, schemas, token_auth
from ccadmin.manage.batch import MAX_BATCH_BYTES, refuse_too_many, write_rows
from ccadmin.manage.campaigns import campaign_for, connection_test
from ccadmin.manage.errors import ApiError
from ccadmin.manage.routes import operation, parse_json, read_body, require_media_type
from ccadmin.models import Campaign
from ccadmin.publishing import entry_writes, event_times

RULE = "/campaigns/<slug>/events"
# Where each event type keeps the values it sets, in the order they are tried.
VALUE_PLACES = {"identify": ("traits", "context.traits"), "track": ("properties",)}
# An event is an object inside an array inside a `batch` object; its context,
# traits and properties nest a few levels more.
MAX_DEPTH = 16
MAP = {
    "name": "map",
    "in": "query",
    "required": False,
    "schema": {"type": "array", "items": {"type": "string"}},
    "style": "form",
    "explode": True,
    "description": (
        "`field:path`, repeatable: the campaign field `field` takes the value at the dotted "
        "`path` of the event (e.g. `message:traits.offer_text`). Unmapped fields take the "
        "trait (identify) or property (track) of their own name."
    ),
}
EVENT = {
    "name": "event",
    "in": "query",
    "required": False,
    "schema": {"type": "array", "items": {"type": "string"}},
    "style": "form",
    "explode": True,
    "description": "Repeatable: only `track` events of these names apply; others are ignored.",
}


class Parsed(NamedTuple):
    """One event after reading: its user, the values it sets, its time; or why not."""

    status: str | None  # None: to apply; else "ignored" or "invalid"
    user_id: str | None
    values: dict[str, str | None]
    at: datetime | None
    problem: dict[str, str] | str | None


Paths = dict[str, dict[str, list[tuple[str, ...]]]]


def field_paths(campaign: Campaign) -> Paths:
    """Per event type, each field's paths to try in order; 422 for a bad `map`."""
    names = campaign.field_names
    paths: dict[str, tuple[str, ...] | None] = dict.fromkeys(names)
    for item in request.args.getlist("map"):
        field, _, path = item.partition(":")
        if field not in paths or not path.strip():
            raise ApiError(
                422,
                "validation_failed",
                f"`map` takes field:path with one of the campaign's fields ({', '.join(names)}).",
                {"map": item[:200]},
            )
        paths[field] = tuple(path.strip().split("."))
    return {
        kind: {
            field: [path] if path else [(*place.split("."), field) for place in places]
            for field, path in paths.items()
        }
        for kind, places in VALUE_PLACES.items()
    }


def _at_path(event: dict[str, Any], path: tuple[str, ...]) -> tuple[bool, Any]:
    value: Any = event
    for step in path:
        if not isinstance(value, dict) or step not in value:
            return False, None
        value = value[step]
    return True, value


def _as_text(value: Any) -> str | None:
    """Traits and properties are often numbers or booleans: kept as their JSON text."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    raise ValueError("an object or a list")


def read_event(event: Any, paths: Paths, tracked: set[str]) -> Parsed:
    if not isinstance(event, dict):
        return Parsed("invalid", None, {}, None, {"event": "An event is a JSON object."})
    kind = event.get("type")
    if kind not in VALUE_PLACES:
        return Parsed("ignored", None, {}, None, f"{str(kind)[:40]!r} events are not used")
    if kind == "track" and tracked and event.get("event") not in tracked:
        return Parsed("ignored", None, {}, None, "a track event not named in `event`")
    user_id = event.get("userId")
    if isinstance(user_id, bool) or not isinstance(user_id, str | int) or str(user_id) == "":
        return Parsed("ignored", None, {}, None, "no userId")
    user_id = str(user_id)
    problems: dict[str, str] = {}
    raw_time = event.get("timestamp") or event.get("originalTimestamp")
    at = None
    if raw_time is not None:
        try:
            at = event_times.parse_event_time(raw_time if isinstance(raw_time, str) else "")
        except ValueError:
            problems["timestamp"] = event_times.EVENT_TIME_FORMAT
    values: dict[str, str | None] = {}
    for field, candidates in paths[kind].items():
        for candidate in candidates:
            found, value = _at_path(event, candidate)
            if found:
                try:
                    values[field] = _as_text(value)
                except ValueError as error:
                    problems[field] = f"Not text: {error}."
                break
    if problems:
        return Parsed("invalid", user_id, {}, None, problems)
    if not values:
        return Parsed("ignored", user_id, {}, None, "none of the mapped values")
    return Parsed(None, user_id, values, at, None)


def events_of(document: Any) -> list[Any]:
    if isinstance(document, dict) and isinstance(document.get("batch"), list):
        events = document["batch"]
    elif isinstance(document, dict):
        events = [document]
    elif isinstance(document, list):
        events = document
    else:
        raise ApiError(
            422,
            "validation_failed",
            'The body must be an event, an array of events or {"batch": [...]}.',
            {"body": {"body": "Must be object or array."}},
        )
    refuse_too_many(len(events), "events per request")
    return events


def fold(
    campaign: Campaign, parsed: list[Parsed]
) -> tuple[list[dict[str, Any]], dict[int, int], set[int]]:
    """One row per user from the events to apply: the rows, each event's row
    index, and the events already superseded by what the source applied."""
    by_user: dict[str, list[int]] = {}
    for index, event in enumerate(parsed):
        if event.status is None:
            by_user.setdefault(event.user_id, []).append(index)
    # A user's only event is judged under lock by the batch; several are
    # sorted against what is recorded first, so no late one is folded in.
    several = [user_id for user_id, indexes in by_user.items() if len(indexes) > 1]
    applied = event_times.recorded(campaign.id, ordering.source(), several) if several else {}
    rows: list[dict[str, Any]] = []
    row_of: dict[int, int] = {}
    late: set[int] = set()
    for user_id, indexes in by_user.items():
        newest_applied = applied.get(user_id)
        current = [
            index
            for index in indexes
            if newest_applied is None
            or parsed[index].at is None
            or parsed[index].at >= newest_applied
        ]
        late.update(set(indexes) - set(current))
        if not current:
            continue
        # Oldest first (untimed events in the order they came), so later values win.
        current.sort(key=lambda index: (parsed[index].at is not None, parsed[index].at or 0))
        row: dict[str, Any] = {USER_ID_COLUMN: user_id}
        for index in current:
            row.update(parsed[index].values)
            row_of[index] = len(rows)
        times = [parsed[index].at for index in current if parsed[index].at is not None]
        if times:
            row[ordering.ROW_KEY] = max(times)
        rows.append(row)
    return rows, row_of, late


def _empty_answer() -> dict[str, Any]:
    return {
        "events": 0,
        "created": 0,
        "updated": 0,
        "unchanged": 0,
        "superseded": 0,
        "ignored": 0,
        "invalid": 0,
        "import_id": None,
        "results": [],
    }


def write_one(campaign: Campaign, row: dict[str, Any]) -> dict[str, Any]:
    """One user's row the way a single write goes (a few statements, no change set):
    what Segment's classic webhooks and RudderStack send, one event a request.

    Two requests creating the same user at once: the second one's insert
    fails on the unique key, and it runs again as an update.
    """
    try:
        return _write_one(campaign, dict(row))
    except IntegrityError:
        db.session.rollback()
        return _write_one(campaign, dict(row))


def _write_one(campaign: Campaign, row: dict[str, Any]) -> dict[str, Any]:
    user_id = row.pop(USER_ID_COLUMN)
    at = row.pop(ordering.ROW_KEY, None)
    error = user_id_error(user_id)
    if error:
        return {"status": "invalid", "errors": {USER_ID_COLUMN: error}}
    if at is not None and ordering.is_superseded(campaign, user_id, at):
        current = entry_writes.lock_entry(campaign.id, user_id)
        db.session.rollback()
        event_times.count_superseded(1)
        return {"status": "superseded", "version": None if current is None else current.version}
    stored = entry_writes.lock_entry(campaign.id, user_id)
    live = stored if stored is not None and not stored.deleted else None
    names = set(campaign.field_names)
    base = {name: value for name, value in live.fields.items() if name in names} if live else {}
    texts = {name: "" if value is None else value for name, value in row.items()}
    clean, problems = validate_fields(campaign.field_schema, {**base, **texts})
    if problems:
        db.session.rollback()
        return {"status": "invalid", "errors": problems}
    if live is not None and clean == live.fields:
        # Still commit a time that moved forward, as a PUT does.
        db.session.commit()
        return {"status": "unchanged", "version": live.version}
    action = "update" if live is not None else "create"
    saved = entries.save_change(campaign, user_id, clean, action, stored)
    return {"status": "created" if live is None else "updated", "version": saved.version}


def apply_events(campaign: Campaign, events: list[Any]) -> dict[str, Any]:
    paths = field_paths(campaign)
    tracked = set(request.args.getlist("event"))
    parsed = [read_event(event, paths, tracked) for event in events]
    rows, row_of, late = fold(campaign, parsed)
    import_id = None
    if len(rows) == 1:
        row_results = [write_one(campaign, rows[0])]
    elif rows:
        written = write_rows(campaign, rows, True, None)
        row_results, import_id = written["results"], written["import_id"]
    results = []
    for index, event in enumerate(parsed):
        result: dict[str, Any] = {"index": index, "user_id": event.user_id}
        if event.status == "invalid":
            result.update(status="invalid", errors=event.problem)
        elif event.status == "ignored":
            result.update(status="ignored", reason=event.problem)
        elif index in late:
            result.update(status="superseded")
        else:
            row_result = row_results[row_of[index]]
            result.update(status=row_result["status"])
            if "errors" in row_result:
                result["errors"] = row_result["errors"]
            else:
                result["version"] = row_result["version"]
        results.append(result)
    event_times.count_superseded(len(late))
    counts = Counter(result["status"] for result in results)
    answer = _empty_answer()
    answer.update({status: counts[status] for status in answer if status in counts})
    answer.update(
        events=len(events),
        import_id=import_id,
        results=results,
    )
    return answer


connection_test(RULE, "head_events")


@operation(
    RULE,
    "POST",
    summary="Segment or RudderStack events, as they send them",
    description=(
        "One event, a JSON array of events (Segment Webhooks (Actions) batching) or "
        '`{"batch": [...]}`. `identify` traits and `track` properties become the campaign\'s '
        "fields (see `map` and `event`); other events are ignored. Ordered by each event's "
        "`timestamp`. Always 200 with a result per event, so one bad event fails only itself; "
        "an empty body is a connection test. With a signing secret on the token, "
        "`X-Signature` (HMAC-SHA1 of the body, hex) is required."
    ),
    scope="write",
    body=schemas.EVENTS,
    body_required=False,
    body_limit=MAX_BATCH_BYTES,
    query=[MAP, EVENT],
    headers=[token_auth.SIGNATURE],
    responses={
        200: ("A result per event", "EventsResult"),
        202: ("Waiting for approval as a change request; poll `Location`", "ChangeRequest"),
        401: ("No valid token, or a bad signature", "Error"),
    },
    response_headers={202: ["Location"]},
)
def post_events(slug: str) -> Response:
    campaign = campaign_for(slug, write=True)
    body = read_body(MAX_BATCH_BYTES)
    token_auth.verify_signature(body)
    if not body.strip():
        db.session.rollback()
        response = jsonify(_empty_answer())
    else:
        require_media_type(("application/json",))
        events = events_of(parse_json(body, MAX_DEPTH))
        response = jsonify(apply_events(campaign, events))
    response.headers["Cache-Control"] = "no-store"
    return response
