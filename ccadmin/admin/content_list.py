"""Finding entries among millions: the search box and the list's filters.

The search box matches the exact user id, or (from MIN_TEXT_SEARCH characters)
text anywhere in the entry's field values, case-insensitively. On PostgreSQL
the text match is served by a trigram index over the field values
(`field_values_text`, migration 0007); SQLite scans the values with LIKE.
"""

from __future__ import annotations

import json
from typing import Any

from flask_admin.contrib.sqla.filters import BaseSQLAFilter
from sqlalchemy import Text, and_, cast, exists, func, literal_column, or_, select, text
from sqlalchemy.sql.elements import ColumnElement

from ccadmin.extensions import db
from ccadmin.models import ContentEntry, OutboxEvent, PublishFailure

# Fewer characters than a trigram cannot use the index: exact user id only.
MIN_TEXT_SEARCH = 3
LIKE_ESCAPE = "\\"

WAITING = "waiting"
FAILING = "failing"
PUBLISHED = "published"


def field_values_text() -> ColumnElement[str]:
    """The entry's field values as one text (PostgreSQL): the trigram index's expression."""
    values = func.jsonb_path_query_array(ContentEntry.fields, literal_column("'$.*'"))
    return cast(values, Text)


def _like_pattern(fragment: str) -> str:
    escaped = fragment.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2).replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def search_condition(term: str) -> ColumnElement[bool]:
    """Entries whose user id is `term`, or whose field values contain it."""
    term = term.strip()
    by_user_id = ContentEntry.user_id == term
    if len(term) < MIN_TEXT_SEARCH:
        return by_user_id
    if db.engine.dialect.name == "postgresql":
        # The values text is JSON: the term is matched in its JSON-escaped form.
        pattern = _like_pattern(json.dumps(term, ensure_ascii=False)[1:-1])
        in_fields = field_values_text().ilike(pattern, escape=LIKE_ESCAPE)
    else:
        in_fields = text(
            "EXISTS (SELECT 1 FROM json_each(content_entry.fields) AS field "
            "WHERE field.value LIKE :pattern ESCAPE '\\')"
        ).bindparams(pattern=_like_pattern(term))
    return or_(by_user_id, in_fields)


def _waiting() -> ColumnElement[bool]:
    unpublished = select(OutboxEvent.id).where(OutboxEvent.published_at.is_(None))
    return ContentEntry.last_event_id.in_(unpublished.scalar_subquery())


def _set_aside() -> ColumnElement[bool]:
    return exists().where(
        PublishFailure.content_entry_id == ContentEntry.id,
        PublishFailure.version == ContentEntry.version,
    )


def _failing() -> ColumnElement[bool]:
    retried = select(OutboxEvent.id).where(
        OutboxEvent.published_at.is_(None), OutboxEvent.last_error.is_not(None)
    )
    return or_(ContentEntry.last_event_id.in_(retried.scalar_subquery()), _set_aside())


class PublishStatusFilter(BaseSQLAFilter):
    """Publish status as the database knows it: the entry's outbox event and set-asides."""

    def __init__(self) -> None:
        super().__init__(
            ContentEntry.last_event_id,
            "Publish status",
            options=(
                (WAITING, "waiting to publish"),
                (FAILING, "failing or set aside"),
                (PUBLISHED, "published"),
            ),
        )

    def apply(self, query: Any, value: str, alias: Any = None) -> Any:
        if value == WAITING:
            return query.filter(_waiting())
        if value == FAILING:
            return query.filter(_failing())
        return query.filter(
            and_(or_(ContentEntry.last_event_id.is_(None), ~_waiting()), ~_set_aside())
        )

    def operation(self) -> str:
        return "is"
