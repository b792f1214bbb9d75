"""Bulk staging of change-set rows: COPY on PostgreSQL, executemany on SQLite.

Runs inside the caller's session transaction, like every other write.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import insert

from ccadmin.extensions import db
from ccadmin.models import ImportRow

ROW_COLUMNS = (
    "import_id",
    "line",
    "user_id",
    "fields",
    "delete",
    "outcome",
    "reason",
    "expect_version",
    "before_version",
    "before_fields",
    "before_deleted",
)


def postgresql() -> bool:
    """True when the session talks to PostgreSQL (the COPY paths)."""
    return db.engine.dialect.name == "postgresql"


def _copy(sql: str, rows: Iterable[Iterable[Any]]) -> None:
    # The raw psycopg2 connection of the session's own transaction.
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for row in rows:
        writer.writerow(row)
    buffer.seek(0)
    driver_connection = db.session.connection().connection.driver_connection
    with driver_connection.cursor() as cursor:
        cursor.copy_expert(sql, buffer)


def _json(value: Any) -> str:
    return "" if value is None else json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _flag(value: bool | None) -> str:
    return "" if value is None else "t" if value else "f"


def _number(value: int | None) -> Any:
    return "" if value is None else value


def _copy_row(row: dict[str, Any]) -> tuple[Any, ...]:
    # CSV COPY: an unquoted empty cell is NULL. Spelled out per column: this
    # runs once per row of files with millions of them.
    return (
        row["import_id"],
        row["line"],
        row.get("user_id") or "",
        _json(row.get("fields")),
        "t" if row.get("delete") else "f",
        row["outcome"],
        row.get("reason") or "",
        _number(row.get("expect_version")),
        _number(row.get("before_version")),
        _json(row.get("before_fields")),
        _flag(row.get("before_deleted")),
    )


def insert_import_rows(rows: list[dict[str, Any]]) -> None:
    """Stage rows of a change set (dicts keyed by ROW_COLUMNS)."""
    if not rows:
        return
    if postgresql():
        _copy(
            f"COPY import_row ({', '.join(ROW_COLUMNS)}) FROM STDIN WITH (FORMAT csv)",
            (_copy_row(row) for row in rows),
        )
        return
    db.session.execute(
        insert(ImportRow.__table__), [{name: row.get(name) for name in ROW_COLUMNS} for row in rows]
    )
