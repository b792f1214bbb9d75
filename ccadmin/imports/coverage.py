"""Coverage check: of a list of user ids, how many have content live in Redis.

The list is read line by line from an uploaded file (one id per line, or a
CSV whose header names `user_id`) or from pasted text, and Redis is asked in
pipelined chunks, so lists of millions of ids cost constant memory; the ids
without content can be downloaded the same way, streamed.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import IO

import redis

from ccadmin import keys
from ccadmin.content_schema import user_id_error
from ccadmin.imports.export import spreadsheet_safe
from ccadmin.imports.parsing import USER_ID_COLUMN, LineReader

CHUNK = 1_000
SAMPLE = 20


@dataclass
class Coverage:
    """Counts of a coverage check, with a few of the ids that get the fallback."""

    checked: int = 0
    live: int = 0
    fallback: int = 0
    invalid: int = 0
    fallback_sample: list[str] = field(default_factory=list)
    ready: bool = True


def user_ids(binary: IO[bytes]) -> Iterator[str]:
    """User ids of a file: one per line, or the `user_id` column of a CSV."""
    lines = iter(LineReader(binary))
    first = next(lines, None)
    if first is None:
        return
    header = next(csv.reader([first]))
    if USER_ID_COLUMN in [name.strip() for name in header]:
        column = [name.strip() for name in header].index(USER_ID_COLUMN)
        for cells in csv.reader(lines):
            if len(cells) > column:
                yield cells[column].strip()
        return
    yield first.strip()
    for line in lines:
        yield line.strip()


def pasted_user_ids(text: str) -> Iterator[str]:
    """User ids of pasted text: one per line, or separated by commas or spaces."""
    for line in text.splitlines():
        for part in line.replace(",", " ").split():
            yield part.strip()


def _answers(
    connection: redis.Redis, slug: str, ids: Iterator[str]
) -> Iterator[tuple[str, bool | None]]:
    """(user id, has live content) for each id, None for an invalid one; chunk by chunk."""
    ids = (user_id for user_id in ids if user_id)
    while chunk := list(islice(ids, CHUNK)):
        valid = []
        for user_id in chunk:
            if user_id_error(user_id):
                yield user_id, None
            else:
                valid.append(user_id)
        pipeline = connection.pipeline(transaction=False)
        for user_id in valid:
            pipeline.hstrlen(keys.entry_key(slug, user_id), keys.ENTRY_BODY_FIELD)
        for user_id, length in zip(valid, pipeline.execute(), strict=True):
            yield user_id, bool(length)


def check_coverage(connection: redis.Redis, slug: str, ids: Iterator[str]) -> Coverage:
    """Ask Redis, chunk by chunk, which ids have a live (non-tombstone) entry."""
    result = Coverage(ready=bool(connection.exists(keys.READY)))
    for user_id, live in _answers(connection, slug, ids):
        if live is None:
            result.invalid += 1
            continue
        result.checked += 1
        if live:
            result.live += 1
        else:
            result.fallback += 1
            if len(result.fallback_sample) < SAMPLE:
                result.fallback_sample.append(user_id)
    return result


def uncovered_csv(connection: redis.Redis, slug: str, ids: Iterator[str]) -> Iterator[str]:
    """CSV lines (`user_id`) of the ids without live content, as they are found."""
    yield f"{USER_ID_COLUMN}\r\n"
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for user_id, live in _answers(connection, slug, ids):
        if live is False:
            writer.writerow([spreadsheet_safe(user_id)])
        if buffer.tell() > 64 * 1024:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
