"""Event times on the ingest API: where a write says when its source produced it.

A single write sends the `Event-Time` header; a batch sends it for all rows,
and a row may carry its own as `$event_time` (a key no field can have). The
event endpoints read each event's `timestamp`. The rule itself lives in
ccadmin/publishing/event_times.py.
"""

from __future__ import annotations

from datetime import datetime

from flask import request

from ccadmin.manage import token_auth
from ccadmin.manage.errors import ApiError
from ccadmin.models import Campaign
from ccadmin.publishing import event_times

HEADER = "Event-Time"
ROW_KEY = "$event_time"
EVENT_TIME = {
    "name": HEADER,
    "in": "header",
    "required": False,
    "schema": {"type": "string", "format": "date-time"},
    "description": (
        "When the source produced this write (RFC 3339 with its offset). A write older "
        "than one this token's source already applied to the entry is answered 200 "
        "with `superseded: true` and changes nothing."
    ),
}


def request_event_time() -> datetime | None:
    """The `Event-Time` header as UTC; a malformed one is a 422 naming it."""
    raw = request.headers.get(HEADER)
    if raw is None:
        return None
    try:
        return event_times.parse_event_time(raw)
    except ValueError:
        raise ApiError(
            422,
            "validation_failed",
            f"{HEADER}: {event_times.EVENT_TIME_FORMAT}",
            {"headers": {HEADER: event_times.EVENT_TIME_FORMAT}},
        ) from None


def source() -> str:
    return token_auth.token().event_source


def is_superseded(campaign: Campaign, user_id: str, at: datetime) -> bool:
    """Move this source's time for the entry forward; True if a newer one is recorded.

    Call before locking the entry (the lock order of event_times).
    """
    return user_id not in event_times.advance(campaign.id, source(), {user_id: at})
