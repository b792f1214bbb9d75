"""Column types and expressions that behave the same on PostgreSQL and the SQLite default."""

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ColumnElement, Integer, any_, bindparam
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from ccadmin.extensions import db

# SQLite only auto-increments an INTEGER PRIMARY KEY, so big ids fall back to it.
BigId = BigInteger().with_variant(Integer(), "sqlite")
JsonDoc = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    """Timezone-aware now, for column defaults."""
    return datetime.now(UTC)


def one_of(column: Any, values: Sequence[Any]) -> ColumnElement[bool]:
    """`column IN values` for lists of thousands: one array parameter on PostgreSQL.

    An expanded IN compiles one bound parameter per value on every execution,
    which costs more Python time than the query for the batches of staging,
    applying and publishing.
    """
    if db.engine.dialect.name == "postgresql":
        return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
    return column.in_(values)
