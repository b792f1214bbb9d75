"""Coverage check: of a list of user ids, how many have content live in Redis.

The list is read line by line from an uploaded file (one id per line, or a
CSV whose header names `user_id`) or from pasted text, and Redis is asked in
pipelined chunks, so lists of millions of ids cost constant memory; the ids
without content can be downloaded the same way, streamed.

A list longer than INLINE_LIMIT is not checked inside the web request (1.5
million ids take about 50 s, past a platform router's 30 s): its ids are
stashed in the queue's Redis and a worker checks them (`run_stashed`), with
progress, keeping the ids without content for the download. Both expire
after STASH_SECONDS.
"""

from __future__ import annotations

import csv
import io
import secrets
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from itertools import islice
from typing import IO, Any

import redis

from ccadmin import keys
from ccadmin.content.schema import user_id_error
from ccadmin.imports.parsing import USER_ID_COLUMN, LineReader
from ccadmin.imports.spreadsheet import guarded, unguarded

CHUNK = 1_000
SAMPLE = 20
INLINE_LIMIT = 100_000
STASH_SECONDS = 3_600
STASH_CHUNK = 10_000


@dataclass
class Coverage:
    """Counts of a coverage check, with a few of the ids that get the fallback."""

    checked: int = 0
    live: int = 0
    fallback: int = 0
    invalid: int = 0
    fallback_sample: list[str] = field(default_factory=list)
    ready: bool = True

    def as_dict(self) -> dict[str, Any]:
        """What a worker's job returns and the page shows."""
        return asdict(self)


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
                yield unguarded(cells[column].strip())
        return
    yield unguarded(first.strip())
    for line in lines:
        yield unguarded(line.strip())


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


def check_coverage(
    connection: redis.Redis,
    slug: str,
    ids: Iterator[str],
    uncovered: Callable[[str], None] | None = None,
) -> Coverage:
    """Ask Redis, chunk by chunk, which ids have a live (non-tombstone) entry;
    `uncovered` is told each id without one."""
    result = Coverage(ready=bool(connection.exists(keys.READY)))
    for user_id, live in _answers(connection, slug, ids):
        if live is None:
            result.invalid += 1
            continue
        result.checked += 1
        if live:
            result.live += 1
            continue
        result.fallback += 1
        if len(result.fallback_sample) < SAMPLE:
            result.fallback_sample.append(user_id)
        if uncovered is not None:
            uncovered(user_id)
    return result


def stash(queue_connection: redis.Redis, ids: Iterator[str]) -> tuple[str, int]:
    """Keep a list of ids for a worker to check; (its token, how many)."""
    token = secrets.token_hex(12)
    key = keys.coverage_ids_key(token)
    count = 0
    # Blank lines are dropped before chunking: a chunk of blanks is not the end.
    ids = (user_id for user_id in ids if user_id)
    while chunk := list(islice(ids, STASH_CHUNK)):
        pipe = queue_connection.pipeline(transaction=False)
        pipe.rpush(key, *chunk)
        pipe.expire(key, STASH_SECONDS)
        pipe.execute()
        count += len(chunk)
    return token, count


def stashed(queue_connection: redis.Redis, key: str) -> Iterator[str]:
    """The ids of a stashed list, read in chunks."""
    start = 0
    while chunk := queue_connection.lrange(key, start, start + STASH_CHUNK - 1):
        yield from (user_id.decode() for user_id in chunk)
        start += len(chunk)


def run_stashed(
    queue_connection: redis.Redis,
    store: redis.Redis,
    slug: str,
    token: str,
    progress: Callable[[int], None],
) -> Coverage:
    """Check a stashed list (a worker's job), keeping the ids without content."""
    target = keys.coverage_uncovered_key(token)
    found: list[str] = []
    checked = 0

    def keep(user_id: str) -> None:
        found.append(user_id)
        if len(found) >= STASH_CHUNK:
            flush()

    def flush() -> None:
        if found:
            pipe = queue_connection.pipeline(transaction=False)
            pipe.rpush(target, *found)
            pipe.expire(target, STASH_SECONDS)
            pipe.execute()
            found.clear()

    def counted(ids: Iterator[str]) -> Iterator[str]:
        nonlocal checked
        for user_id in ids:
            yield user_id
            checked += 1
            if checked % STASH_CHUNK == 0:
                progress(checked)

    result = check_coverage(
        store, slug, counted(stashed(queue_connection, keys.coverage_ids_key(token))), keep
    )
    flush()
    queue_connection.delete(keys.coverage_ids_key(token))
    return result


def uncovered_csv(connection: redis.Redis, slug: str, ids: Iterator[str]) -> Iterator[str]:
    """CSV text (`user_id`) of the ids without live content, as they are found."""
    return ids_csv(user_id for user_id, live in _answers(connection, slug, ids) if live is False)


def ids_csv(ids: Iterator[str]) -> Iterator[str]:
    """A `user_id` CSV of these ids, in pieces of about 64 KB."""
    yield f"{USER_ID_COLUMN}\r\n"
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for user_id in ids:
        writer.writerow([guarded(user_id)])
        if buffer.tell() > 64 * 1024:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
