"""Numbers from URLs and forms that the database can hold, or a clean 404 / 400.

Werkzeug's `int` converter takes any number of digits; past a BIGINT the
database refuses the query and the page was a 500. The admin's `int` routes
use RecordIdConverter instead, so such a URL is simply not found.
"""

from __future__ import annotations

from werkzeug.routing import IntegerConverter

# The largest id PostgreSQL's BIGINT (and SQLite's INTEGER) holds.
MAX_RECORD_ID = 2**63 - 1
# Pages of a list: far past any real list, far below any overflow.
MAX_PAGE = 10**9


class RecordIdConverter(IntegerConverter):
    """`<int:...>` limited to what an id column holds: larger numbers do not match (404)."""

    def __init__(self, map, *args, **kwargs) -> None:  # noqa: A002 (werkzeug's name)
        kwargs.setdefault("max", MAX_RECORD_ID)
        super().__init__(map, *args, **kwargs)


def record_id(raw: str | None) -> int | None:
    """A form or query value as an id, None if it is not one the database can hold."""
    if raw is None or not raw.strip().isdigit():
        return None
    value = int(raw)
    return value if 0 < value <= MAX_RECORD_ID else None
