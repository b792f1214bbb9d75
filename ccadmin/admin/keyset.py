"""Keyset paging for admin lists that hold millions of rows.

A page is the rows after (or before) the last (first) row of the page the
user came from, in the list's sort order with the id as tie-breaker, so the
database seeks in an index instead of stepping over OFFSET rows: page 40,000
costs what page 1 costs. The links carry that row as an opaque cursor.

The total is counted exactly up to COUNT_CAP rows; past that, PostgreSQL's
planner estimate is shown as "about N" (it costs nothing), and SQLite says
"more than COUNT_CAP".
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from flask import g, request
from sqlalchemy import DateTime, Integer, func, select, tuple_
from sqlalchemy.orm import Query
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import BadRequest

from ccadmin.admin.base import ProtectedModelView
from ccadmin.extensions import db

AFTER = "after"
BEFORE = "before"
START = "start"
PAGING_ARGS = (AFTER, BEFORE, START)
COUNT_CAP = 10_000
DAMAGED_CURSOR = "This page link is damaged; start again from the first page."


@dataclass(frozen=True)
class SortKey:
    """What a list is ordered by: a non-null column, then the id."""

    name: str
    column: Any
    id_column: Any
    descending: bool

    @property
    def by_id_only(self) -> bool:
        return self.column is self.id_column

    def order(self, reverse: bool = False) -> list[Any]:
        descending = self.descending != reverse
        columns = [self.id_column] if self.by_id_only else [self.column, self.id_column]
        return [column.desc() if descending else column.asc() for column in columns]

    def beyond(self, cursor: tuple[Any, int], reverse: bool = False) -> Any:
        """Rows past `cursor` in this order (before it when `reverse`)."""
        value, row_id = cursor
        later = self.descending == reverse
        if self.by_id_only:
            return self.id_column > row_id if later else self.id_column < row_id
        left, right = tuple_(self.column, self.id_column), tuple_(value, row_id)
        return left > right if later else left < right

    def cursor(self, row: Any) -> str:
        """The opaque cursor of one listed row."""
        value = None if self.by_id_only else getattr(row, self.column.key)
        if isinstance(value, datetime):
            value = value.isoformat()
        raw = json.dumps([self.name, value, row.id], separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    def read_cursor(self, encoded: str) -> tuple[Any, int] | None:
        """(value, id) of a cursor of this sort; None for one of another sort.

        Raises BadRequest for a cursor that is not one of ours.
        """
        try:
            padded = encoded + "=" * (-len(encoded) % 4)
            name, value, row_id = json.loads(base64.urlsafe_b64decode(padded))
            if not isinstance(row_id, int) or isinstance(row_id, bool):
                raise ValueError("id")
            if name != self.name:
                return None
            return self._typed(value), row_id
        except (ValueError, TypeError, binascii.Error):
            raise BadRequest(
                "This page link is damaged; start again from the first page."
            ) from None

    def _typed(self, value: Any) -> Any:
        if self.by_id_only:
            return None
        column_type = self.column.type
        if isinstance(column_type, DateTime):
            return datetime.fromisoformat(value)
        if isinstance(column_type, Integer):
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError("not a number")
            return value
        if not isinstance(value, str):
            raise ValueError("not text")
        return value


@dataclass(frozen=True)
class KeysetPage:
    """One page of rows and what its pager shows."""

    rows: list[Any]
    start: int
    next_cursor: str | None
    previous_cursor: str | None
    total: int | None
    total_is_estimate: bool

    @property
    def end(self) -> int:
        return self.start + len(self.rows) - 1

    def total_text(self) -> str:
        if self.total is None:
            return f"more than {COUNT_CAP:,}"
        if self.total_is_estimate:
            return f"about {self.total:,}"
        return f"{self.total:,}"


def _position() -> int:
    raw = request.args.get(START, "1")
    return int(raw) if raw.isdigit() and len(raw) < 12 and int(raw) > 0 else 1


def fetch_page(query: Query, key: SortKey, page_size: int) -> KeysetPage:
    """The page the request's cursor asks for (the first without one)."""
    start = _position()
    after = request.args.get(AFTER)
    before = request.args.get(BEFORE)
    cursor = key.read_cursor(after or before) if (after or before) else None
    backwards = cursor is not None and not after
    ordered = query.order_by(None).order_by(*key.order(reverse=backwards))
    if cursor is not None:
        ordered = ordered.filter(key.beyond(cursor, reverse=backwards))
    else:
        start = 1
    rows = ordered.limit(page_size + 1).all()
    more = len(rows) > page_size
    rows = rows[:page_size]
    if backwards:
        rows.reverse()
        has_previous, has_next = more, True
        start = start if more else 1
    else:
        has_previous, has_next = cursor is not None, more
    total, estimate = count_rows(query)
    return KeysetPage(
        rows=rows,
        start=start,
        next_cursor=key.cursor(rows[-1]) if rows and has_next else None,
        previous_cursor=key.cursor(rows[0]) if rows and has_previous else None,
        total=total,
        total_is_estimate=estimate,
    )


def count_rows(query: Query) -> tuple[int | None, bool]:
    """(total, is_estimate): exact up to COUNT_CAP, then the planner's estimate if any."""
    capped = query.order_by(None).limit(COUNT_CAP + 1).subquery()
    counted = db.session.scalar(select(func.count()).select_from(capped))
    if counted <= COUNT_CAP:
        return counted, False
    if db.engine.dialect.name != "postgresql":
        return None, False
    compiled = query.order_by(None).statement.compile(
        dialect=db.engine.dialect, compile_kwargs={"render_postcompile": True}
    )
    plan = (
        db.session.connection()
        .exec_driver_sql(f"EXPLAIN (FORMAT JSON) {compiled.string}", compiled.params)
        .scalar()
    )
    estimate = int(plan[0]["Plan"]["Plan Rows"])
    return max(estimate, COUNT_CAP + 1), True


def page_url(**paging: Any) -> str:
    """This list's URL with its sort, search and filters, at another page."""
    args = MultiDict(request.args)
    for name in PAGING_ARGS:
        args.poplist(name)
    for name, value in paging.items():
        args[name] = value
    query = urlencode(list(args.items(multi=True)))
    return f"{request.path}?{query}" if query else request.path


class KeysetModelView(ProtectedModelView):
    """A model view whose list is paged by keyset (export keeps Flask-Admin's query).

    Sortable columns must be non-null. The template shows `g.keyset_page`.
    """

    list_template = "admin/keyset_list.html"

    def _get_list_extra_args(self) -> Any:
        # Changing the sort, the search or a filter starts again at the first page.
        view_args = super()._get_list_extra_args()
        for name in PAGING_ARGS:
            view_args.extra_args.pop(name, None)
        return view_args

    def first_page_url(self) -> str:
        return page_url()

    def next_page_url(self, listed: KeysetPage) -> str:
        return page_url(**{AFTER: listed.next_cursor, START: listed.end + 1})

    def previous_page_url(self, listed: KeysetPage) -> str:
        start = max(1, listed.start - self.page_size)
        return page_url(**{BEFORE: listed.previous_cursor, START: start})

    def sort_key(self, sort_column: str | None, sort_desc: bool) -> SortKey:
        """The SortKey of the list's sort, or of `column_default_sort`."""
        model = self.model
        if sort_column is not None and sort_column in self._sortable_columns:
            column = self._sortable_columns[sort_column]
            name, descending = sort_column, bool(sort_desc)
        else:
            name, descending = self.column_default_sort
            column = getattr(model, name)
        if isinstance(column, str):
            column = getattr(model, column)
        return SortKey(name, column, model.id, descending)

    def get_list(
        self,
        page: int | None,
        sort_column: str | None,
        sort_desc: bool,
        search: str | None,
        filters: Any,
        execute: bool = True,
        page_size: int | None = None,
    ) -> tuple[int | None, list[Any]]:
        if not execute:
            return super().get_list(
                page, sort_column, sort_desc, search, filters, execute, page_size
            )
        query = self.get_query()
        joins: dict[Any, Any] = {}
        if self._search_supported and search:
            query, _, joins, _ = self._apply_search(query, None, joins, {}, search)
        if filters and self._filters:
            query, _, joins, _ = self._apply_filters(query, None, joins, {}, filters)
        key = self.sort_key(sort_column, sort_desc)
        g.keyset_page = fetch_page(query, key, page_size or self.page_size)
        return None, g.keyset_page.rows
