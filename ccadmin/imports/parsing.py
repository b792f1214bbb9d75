"""Streaming readers for import files: CSV and JSON lines, one row at a time.

A file is read line by line from disk (never whole), each line decoded as
strict UTF-8 on its own so an encoding error names its line. Problems that
make the rest of the file unreadable (wrong encoding, a missing `user_id`
column, a truncated last line) raise FileProblem; problems of one row are
reported on that row and reading goes on.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from ccadmin.content.schema import nested_deeper_than
from ccadmin.imports.spreadsheet import unguarded

FORMAT_CSV = "csv"
FORMAT_JSONL = "jsonl"
USER_ID_COLUMN = "user_id"
# No legitimate line comes near this (fields are at most 10,000 characters);
# a longer one is a binary or broken file, and reading it would cost memory.
MAX_LINE_BYTES = 1024 * 1024
# A line is one object of texts; anything nested in it is refused before parsing.
ROW_DEPTH = 1
TOO_DEEP = "Nested deeper than a row allows: values must be text, not arrays or objects."
# Rows longer than any field limit are still read, then refused by validation.
csv.field_size_limit(MAX_LINE_BYTES)


class FileProblem(ValueError):
    """The file cannot be imported at all; the message says why, for the marketer."""


@dataclass
class SourceRow:
    """One row: where it starts, its values by column, or why it cannot be read."""

    line: int
    values: dict[str, Any] | None
    error: str | None = None


def detect_format(filename: str) -> str:
    """JSON lines for .jsonl/.ndjson/.json names, CSV otherwise."""
    lowered = filename.lower()
    if lowered.endswith((".jsonl", ".ndjson", ".json")):
        return FORMAT_JSONL
    return FORMAT_CSV


class LineReader:
    """Decoded lines of a binary file, counted, with the last line's completeness."""

    def __init__(self, binary: IO[bytes]) -> None:
        self.binary = binary
        self.number = 0
        self.last_complete = True

    def __iter__(self) -> Iterator[str]:
        while True:
            raw = self.binary.readline(MAX_LINE_BYTES + 1)
            if not raw:
                return
            self.number += 1
            if len(raw) > MAX_LINE_BYTES:
                raise FileProblem(
                    f"Line {self.number} is longer than {MAX_LINE_BYTES // 1024} KB: "
                    "this does not look like a CSV or JSON lines file."
                )
            self.last_complete = raw.endswith(b"\n")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise FileProblem(
                    f"Line {self.number} is not valid UTF-8 text. Save the file as "
                    '"CSV UTF-8" (or UTF-8 JSON lines) and upload it again.'
                ) from None
            if self.number == 1:
                text = text.removeprefix("\ufeff")
            yield text


def read_rows(binary: IO[bytes], file_format: str) -> tuple[list[str], Iterator[SourceRow]]:
    """The columns (CSV header, or the JSON keys seen) and an iterator of rows."""
    lines = LineReader(binary)
    if file_format == FORMAT_JSONL:
        return [], _jsonl_rows(lines)
    return _csv_rows(lines)


def _check_header(header: list[str]) -> list[str]:
    columns = [name.strip() for name in header]
    if USER_ID_COLUMN not in columns:
        raise FileProblem(
            f"The first line must name the columns, including {USER_ID_COLUMN!r}; "
            f"found {', '.join(repr(name) for name in columns[:10]) or 'nothing'}."
        )
    seen: set[str] = set()
    for name in columns:
        if name in seen:
            raise FileProblem(f"The column {name!r} appears twice in the first line.")
        seen.add(name)
    return columns


def _csv_rows(lines: LineReader) -> tuple[list[str], Iterator[SourceRow]]:
    reader = csv.reader(iter(lines), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise FileProblem("The file is empty.") from None
    except csv.Error as error:
        raise FileProblem(f"Line 1 cannot be read as CSV: {error}.") from None
    columns = _check_header(header)
    return columns, _csv_body(reader, lines, columns)


def _csv_body(reader: Any, lines: LineReader, columns: list[str]) -> Iterator[SourceRow]:
    width = len(columns)
    while True:
        start = lines.number + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            if "end of data" in str(error) or "EOF" in str(error):
                raise FileProblem(
                    f"The file ends inside a quoted value that starts on line {start}: "
                    "the last line is truncated. Upload the complete file."
                ) from None
            raise FileProblem(f"Line {start} cannot be read as CSV: {error}.") from None
        if not cells or (len(cells) == 1 and not cells[0].strip()):
            continue  # a blank line
        if len(cells) != width:
            # Only the last line of a file can lack its line ending.
            if not lines.last_complete:
                raise FileProblem(
                    f"The last line ({start}) has {len(cells)} of {width} columns and no "
                    "line ending: the file looks truncated. Upload the complete file."
                )
            yield SourceRow(start, None, f"Expected {width} columns, found {len(cells)}.")
            continue
        # An exported file's guarded cells (imports/spreadsheet.py) read back as they were.
        yield SourceRow(start, dict(zip(columns, map(unguarded, cells), strict=True)))


def _jsonl_rows(lines: LineReader) -> Iterator[SourceRow]:
    produced = False
    for text in lines:
        if not text.strip():
            continue
        produced = True
        if nested_deeper_than(text, ROW_DEPTH):
            yield SourceRow(lines.number, None, TOO_DEEP)
            continue
        try:
            document = json.loads(text)
        except ValueError:
            if not lines.last_complete:
                raise FileProblem(
                    f"The last line ({lines.number}) is not complete JSON and has no line "
                    "ending: the file looks truncated. Upload the complete file."
                ) from None
            yield SourceRow(lines.number, None, "Not valid JSON.")
            continue
        if not isinstance(document, dict):
            yield SourceRow(lines.number, None, "Each line must be a JSON object.")
            continue
        if USER_ID_COLUMN not in document:
            yield SourceRow(lines.number, None, f"No {USER_ID_COLUMN!r} key.")
            continue
        yield SourceRow(lines.number, document)
    if not produced:
        raise FileProblem("The file is empty.")
