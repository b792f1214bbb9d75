"""Coverage check: of a list of user ids, how many have content live in Redis.

The list is read line by line from an uploaded file (one id per line, or a
CSV whose header names `user_id`), and Redis is asked in pipelined chunks,
so lists of millions of ids cost constant memory.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import IO

import redis

from ccadmin import keys
from ccadmin.content_schema import user_id_error
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


def check_coverage(connection: redis.Redis, slug: str, ids: Iterator[str]) -> Coverage:
    """Ask Redis, chunk by chunk, which ids have a live (non-tombstone) entry."""
    result = Coverage(ready=bool(connection.exists(keys.READY)))
    ids = (user_id for user_id in ids if user_id)
    while chunk := list(islice(ids, CHUNK)):
        valid = []
        for user_id in chunk:
            if user_id_error(user_id):
                result.invalid += 1
            else:
                valid.append(user_id)
        pipeline = connection.pipeline(transaction=False)
        for user_id in valid:
            pipeline.hstrlen(keys.entry_key(slug, user_id), keys.ENTRY_BODY_FIELD)
        for user_id, length in zip(valid, pipeline.execute(), strict=True):
            result.checked += 1
            if length:
                result.live += 1
            else:
                result.fallback += 1
                if len(result.fallback_sample) < SAMPLE:
                    result.fallback_sample.append(user_id)
    return result
