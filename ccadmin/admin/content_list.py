"""Finding entries among millions: the search box and the list's filters.

The search box matches the exact user id, or (from MIN_TEXT_SEARCH characters)
the words of the entry's field values, ignoring case. On PostgreSQL every word
typed must begin a word of the values, served by a full-text index
(`field_words`, migration 0007: a GIN index costs far less per write than a
trigram one); SQLite, the embedded default, finds each word anywhere in the
values with LIKE.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from flask_admin.contrib.sqla.filters import BaseSQLAFilter
from sqlalchemy import and_, exists, func, literal_column, or_, select, text
from sqlalchemy.sql.elements import ColumnElement

from ccadmin.extensions import db
from ccadmin.models import Campaign, ContentEntry, OutboxEvent, PublishFailure

# Shorter searches are user ids only: a word or two letters long matches too much.
MIN_TEXT_SEARCH = 3
_WORD = re.compile(r"[^\W_]+")
_SIMPLE = literal_column("'simple'::regconfig")

WAITING = "waiting"
FAILING = "failing"
PUBLISHED = "published"


def field_words() -> ColumnElement[Any]:
    """The entry's field values as words (PostgreSQL): the full-text index's expression."""
    return func.to_tsvector(_SIMPLE, ContentEntry.fields)


def search_condition(term: str) -> ColumnElement[bool]:
    """Entries whose user id is `term`, or whose field values hold its words."""
    term = term.strip()
    by_user_id = ContentEntry.user_id == term
    words = _WORD.findall(term.lower())
    if len(term) < MIN_TEXT_SEARCH or not words:
        return by_user_id
    if db.engine.dialect.name == "postgresql":
        # Only letters and digits reach the query text: no tsquery syntax from the user.
        query = " & ".join(f"{word}:*" for word in words)
        in_fields = field_words().op("@@")(func.to_tsquery(_SIMPLE, query))
    else:
        in_fields = and_(
            *(
                text(
                    "EXISTS (SELECT 1 FROM json_each(content_entry.fields) AS field "
                    f"WHERE field.value LIKE :word_{index})"
                ).bindparams(**{f"word_{index}": f"%{word}%"})
                for index, word in enumerate(words)
            )
        )
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


class CampaignOptions:
    """Filter choices read at every render (Flask-Admin keeps the object, not a copy)."""

    def __bool__(self) -> bool:
        return True

    def __iter__(self) -> Iterator[tuple[int, str]]:
        rows = db.session.execute(select(Campaign.id, Campaign.slug).order_by(Campaign.slug))
        return iter([(campaign_id, slug) for campaign_id, slug in rows])
