"""Event-time ordering: a late write never puts older content live.

The tools that push to the ingest API retry failed writes for hours, so a
retry can arrive after newer writes for the same user. A write may carry the
time its source produced it; per entry and per source (the management token's
`source`), `entry_source_time` keeps the newest time applied. `advance` moves
those times forward for the rows of one write in one upsert whose `WHERE`
refuses an older time: the user ids it returns may be written, the others
are superseded and change nothing. The upsert takes the time row's lock (or,
for a new row, the key's), held to the commit, so two writes for one user and
source wait on each other and the second compares against the first's
committed time. Writers take this lock before the entry's, always in that
order. Writes without a time are not ordered (an admin edit, an import).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime

import redis
from flask import current_app
from sqlalchemy import select, text

from ccadmin import keys
from ccadmin.extensions import db
from ccadmin.models import EntrySourceTime
from ccadmin.models.types import one_of
from ccadmin.redis_client import get_store

log = logging.getLogger(__name__)

times = EntrySourceTime.__table__
LEAP_SECOND = re.compile(r"(?<=T\d\d:\d\d):60(\.\d+)?")
# User ids per query of recorded times.
CHUNK = 5_000


def parse_event_time(raw: str) -> datetime:
    """An RFC 3339 / ISO 8601 time with its offset (`2026-12-07T10:00:00.123Z`), in UTC.

    A time without an offset is refused: its source's zone is unknown, and
    guessing would order writes wrongly by hours.
    """
    text = raw.strip().upper()
    if LEAP_SECOND.search(text):
        # RFC 3339 allows a leap second (23:59:60); it orders as the end of its minute.
        text = LEAP_SECOND.sub(":59.999999", text, count=1)
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError("no UTC offset")
    return value.astimezone(UTC)


EVENT_TIME_FORMAT = "An RFC 3339 time with its offset, such as 2026-12-07T10:00:00.000Z."


# One statement per dialect, compiled once: the rows travel as arrays (PostgreSQL)
# or one JSON document (SQLite), not as four bound parameters each.
_ADVANCE = {
    "postgresql": text(
        """
INSERT INTO entry_source_time (campaign_id, user_id, source, event_time)
SELECT :campaign_id, row.user_id, :source, row.event_time
FROM unnest(CAST(:user_ids AS varchar[]), CAST(:event_times AS timestamptz[]))
    AS row (user_id, event_time)
ORDER BY row.user_id
ON CONFLICT (campaign_id, user_id, source) DO UPDATE SET event_time = excluded.event_time
WHERE entry_source_time.event_time <= excluded.event_time
RETURNING user_id
"""
    ),
    # SQLite needs a WHERE on an upsert's SELECT; its times are UTC text, in
    # the format SQLAlchemy stores, so they compare in order.
    "sqlite": text(
        """
INSERT INTO entry_source_time (campaign_id, user_id, source, event_time)
SELECT :campaign_id, json_extract(value, '$[0]'), :source, json_extract(value, '$[1]')
FROM json_each(:rows) WHERE true
ON CONFLICT (campaign_id, user_id, source) DO UPDATE SET event_time = excluded.event_time
WHERE entry_source_time.event_time <= excluded.event_time
RETURNING user_id
"""
    ),
}
SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"


def advance(campaign_id: int, source: str, event_times: Mapping[str, datetime]) -> set[str]:
    """Record each user's event time unless the source already sent a newer one.

    Returns the user ids whose write may go ahead (their time is the newest
    or equal); the rest are superseded. Rows are upserted in user id order,
    so concurrent batches take their locks in the same order.
    """
    ordered = sorted(event_times.items())
    if db.engine.dialect.name == "postgresql":
        parameters = {
            "user_ids": [user_id for user_id, _ in ordered],
            "event_times": [at for _, at in ordered],
        }
    else:
        rows = [[user_id, at.astimezone(UTC).strftime(SQLITE_TIME)] for user_id, at in ordered]
        parameters = {"rows": json.dumps(rows)}
    statement = _ADVANCE[db.engine.dialect.name]
    return set(
        db.session.execute(
            statement, {"campaign_id": campaign_id, "source": source, **parameters}
        ).scalars()
    )


def recorded(campaign_id: int, source: str, user_ids: list[str]) -> dict[str, datetime]:
    """The newest time the source applied to each of these entries (not locked:
    a first sort of events; `advance` decides under lock)."""
    found: dict[str, datetime] = {}
    for start in range(0, len(user_ids), CHUNK):
        rows = db.session.execute(
            select(times.c.user_id, times.c.event_time).where(
                times.c.campaign_id == campaign_id,
                times.c.source == source,
                one_of(times.c.user_id, user_ids[start : start + CHUNK]),
            )
        )
        for user_id, at in rows:
            # SQLite gives the stored UTC time back without its zone.
            found[user_id] = at if at.tzinfo else at.replace(tzinfo=UTC)
    return found


def count_superseded(count: int) -> None:
    """Add to the superseded-writes counter the live metrics page shows (after commit).

    Best effort: the writes are committed, and a Redis outage must not turn
    their answer into an error.
    """
    if not count:
        return
    try:
        get_store(current_app.config["CCADMIN_SETTINGS"]).hincrby(
            keys.STATS, keys.STAT_SUPERSEDED_WRITES, count
        )
    except redis.RedisError as error:
        log.warning("superseded writes not counted: %s", error)
