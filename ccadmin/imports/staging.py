"""Validate an import file row by row, diff it against the content, and stage it.

Nothing reaches content here: every row goes to `import_row` with its outcome
(new / changed / unchanged / invalid) and the entry's state at this moment,
and the import's counts and report are what the preview shows. A file that
cannot be read to its end is refused whole (status `invalid`), so nothing of
it can be applied.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import IO, Any

from sqlalchemy import bindparam, delete, func, select, text, update

from ccadmin.content.schema import printable, user_id_error, validate_fields
from ccadmin.extensions import db
from ccadmin.imports import bulk
from ccadmin.imports.parsing import USER_ID_COLUMN, FileProblem, SourceRow, read_rows
from ccadmin.models import ContentEntry, ContentImport, ImportRow
from ccadmin.models.imports import (
    OUTCOME_CHANGED,
    OUTCOME_DELETED,
    OUTCOME_INVALID,
    OUTCOME_NEW,
    OUTCOME_UNCHANGED,
    STATUS_INVALID,
    STATUS_READY,
)
from ccadmin.models.types import one_of

log = logging.getLogger(__name__)

STAGE_CHUNK = 5_000
REPORT_INVALID = 20
REPORT_DIFFS = 10
# Diffs collected while reading; some may belong to duplicated users found later.
_DIFFS_COLLECTED = 50
_REASON_MAX = 500
_DUPLICATE_LINES_SHOWN = 5

content_columns = ContentEntry.__table__.c
row_table = ImportRow.__table__


def _chunks(rows: Iterable[SourceRow], size: int) -> Iterator[list[SourceRow]]:
    iterator = iter(rows)
    while chunk := list(islice(iterator, size)):
        yield chunk


def current_entries(campaign_id: int, user_ids: list[str], lock: bool = False) -> dict[str, Any]:
    """user_id -> (id, fields, version, deleted) rows of the entries that exist."""
    if not user_ids:
        return {}
    query = select(
        content_columns.id,
        content_columns.user_id,
        content_columns.fields,
        content_columns.version,
        content_columns.deleted,
    ).where(content_columns.campaign_id == campaign_id, one_of(content_columns.user_id, user_ids))
    if lock:
        query = query.with_for_update()
    return {row.user_id: row for row in db.session.execute(query)}


def field_changes(before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-field differences, in a stable order, for previews and history."""
    names = list(after) + [name for name in before if name not in after]
    return [
        {"field": name, "before": before.get(name), "after": after.get(name)}
        for name in names
        if before.get(name) != after.get(name)
    ]


def _text_value(value: Any) -> str | None:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return None


class Stager:
    """Turns parsed rows into staged rows for one import, keeping the report."""

    def __init__(self, content_import: ContentImport) -> None:
        self.content_import = content_import
        campaign = content_import.campaign
        self.campaign_id = campaign.id
        self.schema = campaign.field_schema
        self.field_names = set(campaign.field_names)
        self.diffs: list[dict[str, Any]] = []

    def invalid(self, line: int, user_id: Any, reason: str) -> dict[str, Any]:
        shown = printable(user_id[:128]) if isinstance(user_id, str) and user_id else None
        return {
            "import_id": self.content_import.id,
            "line": line,
            "user_id": shown,
            "outcome": OUTCOME_INVALID,
            "reason": reason[:_REASON_MAX],
            "delete": False,
        }

    def stage(self, chunk: list[SourceRow]) -> list[dict[str, Any]]:
        staged: list[dict[str, Any]] = []
        readable: list[tuple[int, str, dict[str, str]]] = []
        for row in chunk:
            if row.values is None:
                staged.append(self.invalid(row.line, None, row.error or "Unreadable row."))
                continue
            values = dict(row.values)
            raw_user_id = values.pop(USER_ID_COLUMN)
            if isinstance(raw_user_id, int) and not isinstance(raw_user_id, bool):
                raw_user_id = str(raw_user_id)
            if not isinstance(raw_user_id, str):
                staged.append(self.invalid(row.line, None, "user_id must be text or a number."))
                continue
            user_id = raw_user_id.strip()
            error = user_id_error(user_id)
            if error:
                staged.append(self.invalid(row.line, user_id, f"user_id: {error}"))
                continue
            texts = {name: _text_value(value) for name, value in values.items()}
            wrong = [name for name, value in texts.items() if value is None]
            if wrong:
                name = printable(str(wrong[0]))
                staged.append(self.invalid(row.line, user_id, f"{name}: must be text."))
                continue
            readable.append((row.line, user_id, texts))
        current = current_entries(self.campaign_id, [user_id for _, user_id, _ in readable])
        for line, user_id, texts in readable:
            staged.append(self.compare(line, user_id, texts, current.get(user_id)))
        return staged

    def compare(self, line: int, user_id: str, texts: dict[str, str], entry: Any) -> dict[str, Any]:
        live = entry is not None and not entry.deleted
        # Columns the file leaves out keep the entry's current values.
        base = {
            name: value
            for name, value in ((entry.fields or {}) if live else {}).items()
            if name in self.field_names
        }
        clean, errors = validate_fields(self.schema, {**base, **texts})
        if errors:
            reason = " ".join(f"{name}: {message}" for name, message in errors.items())
            return self.invalid(line, user_id, reason)
        return self.checked(line, user_id, clean, entry)

    def checked(self, line: int, user_id: str, clean: dict[str, str], entry: Any) -> dict[str, Any]:
        """The staged row of fields already validated, merged with `entry`'s, against it."""
        live = entry is not None and not entry.deleted
        if not live:
            outcome = OUTCOME_NEW
        elif clean == entry.fields:
            outcome = OUTCOME_UNCHANGED
        else:
            outcome = OUTCOME_CHANGED
            if len(self.diffs) < _DIFFS_COLLECTED:
                self.diffs.append(
                    {
                        "line": line,
                        "user_id": user_id,
                        "changes": field_changes(entry.fields or {}, clean),
                    }
                )
        return {
            "import_id": self.content_import.id,
            "line": line,
            "user_id": user_id,
            "fields": clean,
            "delete": False,
            "outcome": outcome,
            "before_version": None if entry is None else entry.version,
            "before_fields": (
                None if entry is None or outcome == OUTCOME_UNCHANGED else entry.fields
            ),
            "before_deleted": None if entry is None else bool(entry.deleted),
        }


def stage_stream(
    content_import: ContentImport,
    binary: IO[bytes],
    file_format: str,
    progress: Callable[[int], None] | None = None,
    summarized: Callable[[ContentImport], None] | None = None,
) -> ContentImport:
    """Read, validate and stage a whole body, then fill in the import's preview.

    The import row must already be committed. Rows are committed chunk by
    chunk (`progress` gets the rows staged so far after each commit); on a
    file problem every staged row is deleted again and the import is marked
    invalid with the reason, so nothing of the file can be applied.
    `summarized` may change the import in the transaction of its preview.
    """
    stager = Stager(content_import)
    import_id = content_import.id
    staged = 0
    try:
        columns, rows = read_rows(binary, file_format)
        known = stager.field_names | {USER_ID_COLUMN}
        unknown = [name for name in columns if name not in known]
        if unknown:
            raise FileProblem(
                f"The column {unknown[0]!r} is not a field of campaign "
                f"{content_import.campaign.slug!r} (its fields: "
                f"{', '.join(sorted(stager.field_names))})."
            )
        for chunk in _chunks(rows, STAGE_CHUNK):
            bulk.insert_import_rows(stager.stage(chunk))
            # Bounded transactions: SQLite's single writer (the worker)
            # is never blocked for the whole length of a large file.
            db.session.commit()
            staged += len(chunk)
            if progress is not None:
                progress(staged)
    except FileProblem as problem:
        db.session.rollback()
        db.session.execute(delete(row_table).where(row_table.c.import_id == import_id))
        content_import = db.session.get(ContentImport, import_id)
        content_import.status = STATUS_INVALID
        content_import.report = {"file_errors": [str(problem)], "invalid": [], "diffs": []}
        db.session.commit()
        return content_import
    duplicates = mark_duplicates(import_id)
    summarize(content_import, columns, stager.diffs, duplicates)
    if summarized is not None:
        summarized(content_import)
    db.session.commit()
    if bulk.postgresql():
        # Fresh statistics, or the apply's keyset query over a table that just
        # grew by a million rows is planned as a scan and sort per batch.
        db.session.execute(text("ANALYZE import_row"))
        db.session.commit()
    return content_import


def mark_duplicates(import_id: int) -> set[str]:
    """Mark every row of a user id that appears more than once as invalid."""
    duplicated = list(
        db.session.execute(
            select(row_table.c.user_id)
            .where(row_table.c.import_id == import_id, row_table.c.user_id.is_not(None))
            .group_by(row_table.c.user_id)
            .having(func.count() > 1)
        ).scalars()
    )
    statement = (
        update(row_table)
        .where(row_table.c.import_id == import_id, row_table.c.line == bindparam("at_line"))
        .values(outcome=OUTCOME_INVALID, reason=bindparam("why"))
    )
    for start in range(0, len(duplicated), 1_000):
        users = duplicated[start : start + 1_000]
        lines: dict[str, list[int]] = {}
        for user_id, line in db.session.execute(
            select(row_table.c.user_id, row_table.c.line)
            .where(row_table.c.import_id == import_id, row_table.c.user_id.in_(users))
            .order_by(row_table.c.line)
        ):
            lines.setdefault(user_id, []).append(line)
        parameters = []
        for user_id, user_lines in lines.items():
            shown = ", ".join(str(line) for line in user_lines[:_DUPLICATE_LINES_SHOWN])
            more = "…" if len(user_lines) > _DUPLICATE_LINES_SHOWN else ""
            why = f"user_id {user_id!r} appears more than once (lines {shown}{more})."
            parameters.extend({"at_line": line, "why": why[:_REASON_MAX]} for line in user_lines)
        db.session.execute(statement, parameters)
    return set(duplicated)


def update_rows(import_id: int, updates: list[dict[str, Any]]) -> None:
    """Set outcome and state before of rows, keyed `at_line` (`new_*` values)."""
    if not updates:
        return
    db.session.execute(
        update(row_table)
        .where(row_table.c.import_id == import_id, row_table.c.line == bindparam("at_line"))
        .values(
            outcome=bindparam("new_outcome"),
            before_version=bindparam("new_before_version"),
            before_fields=bindparam("new_before_fields", type_=row_table.c.fields.type),
            before_deleted=bindparam("new_before_deleted"),
        ),
        updates,
    )


def count_outcomes(import_id: int) -> dict[str, int]:
    """Rows per outcome of one change set."""
    return dict(
        db.session.execute(
            select(row_table.c.outcome, func.count())
            .where(row_table.c.import_id == import_id)
            .group_by(row_table.c.outcome)
        ).all()
    )


def apply_counts(content_import: ContentImport, counts: dict[str, int]) -> None:
    """Copy outcome counts onto the import row."""
    content_import.new_rows = counts.get(OUTCOME_NEW, 0)
    content_import.changed_rows = counts.get(OUTCOME_CHANGED, 0)
    content_import.unchanged_rows = counts.get(OUTCOME_UNCHANGED, 0)
    content_import.deleted_rows = counts.get(OUTCOME_DELETED, 0)
    content_import.invalid_rows = counts.get(OUTCOME_INVALID, 0)
    content_import.total_rows = sum(counts.values())


def summarize(
    content_import: ContentImport,
    columns: list[str],
    diffs: list[dict[str, Any]],
    duplicates: set[str],
) -> None:
    """Counts, the first invalid rows and a sample of diffs, for the preview."""
    apply_counts(content_import, count_outcomes(content_import.id))
    invalid = [
        {"line": line, "user_id": user_id, "reason": reason}
        for line, user_id, reason in db.session.execute(
            select(row_table.c.line, row_table.c.user_id, row_table.c.reason)
            .where(
                row_table.c.import_id == content_import.id,
                row_table.c.outcome == OUTCOME_INVALID,
            )
            .order_by(row_table.c.line)
            .limit(REPORT_INVALID)
        )
    ]
    file_errors = []
    if content_import.total_rows == 0:
        file_errors.append("The file has a header but no rows.")
    elif content_import.total_rows == content_import.invalid_rows:
        file_errors.append("No row of the file is valid.")
    content_import.report = {
        "file_errors": file_errors,
        "columns": columns,
        "invalid": invalid,
        "diffs": [diff for diff in diffs if diff["user_id"] not in duplicates][:REPORT_DIFFS],
    }
    content_import.status = STATUS_INVALID if file_errors else STATUS_READY
