"""Import bodies kept in the database and staged by the worker (the admin's and the API's).

A platform's router cuts a request after about 30 s, and its web and worker
processes share no disk; they share the database. So the request (an admin
upload or an ingest API call) only stores the body, in chunks of about 1 MB
(`import_chunk`) committed as they arrive, and enqueues
"workers.imports.ingest_import" (ccadmin never imports workers). The job
reads the chunks back in order as one stream, stages the rows, deletes the
chunks, and applies the import when it may (the API's; the admin's waits for
the marketer to confirm its preview). Staging again from the chunks replaces
whatever a job that died left staged, so the sweeper can re-drive a lost job
safely; it also deletes a body that never arrived whole (the web process died
mid-upload) after ABANDONED_AFTER.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import IO

import redis
from rq.exceptions import ShutDownImminentException
from sqlalchemy import delete, insert, select
from sqlalchemy.exc import OperationalError

from ccadmin import keys
from ccadmin.extensions import db
from ccadmin.imports import changesets, staging
from ccadmin.models import ContentImport, ImportRow
from ccadmin.models.imports import (
    MODE_VALID_ONLY,
    STATUS_INVALID,
    STATUS_READY,
    STATUS_RECEIVED,
    STATUS_RECEIVING,
    STATUS_STAGING,
    ImportChunk,
)
from ccadmin.models.types import utcnow

log = logging.getLogger(__name__)

# One row of import_chunk: big enough that a million-row body is ~100 rows,
# small enough that web and worker each hold one at a time.
CHUNK_BYTES = 1024 * 1024
_READ_BUFFER = 64 * 1024
# Statuses whose job the sweeper re-drives when it is lost (staging is idempotent).
REDRIVEN = (STATUS_RECEIVED, STATUS_STAGING)
# A body still `receiving` this long after its import was created will not
# be finished: its request is gone (a router cuts one after 30 s or so).
ABANDONED_AFTER = 3600.0
UNPROCESSABLE = "The file could not be processed (an unexpected error); nothing was applied."

chunk_table = ImportChunk.__table__
row_table = ImportRow.__table__

Staged = Callable[[int, int], None]


def store_body(content_import: ContentImport, stream: IO[bytes]) -> int:
    """Copy a body into import_chunk, committing each ~1 MB chunk as it fills; its size."""
    pending = bytearray()
    seq = 0
    size = 0

    def flush() -> None:
        nonlocal seq
        db.session.execute(
            insert(chunk_table).values(import_id=content_import.id, seq=seq, data=bytes(pending))
        )
        content_import.upload_bytes = size
        db.session.commit()
        seq += 1
        pending.clear()

    while piece := stream.read(CHUNK_BYTES):
        pending += piece
        size += len(piece)
        if len(pending) >= CHUNK_BYTES:
            flush()
    if pending:
        flush()
    return size


def mark_received(content_import: ContentImport) -> None:
    """The whole body is stored: the worker (or the sweeper) may stage it from now on."""
    content_import.status = STATUS_RECEIVED
    content_import.upload_bytes = content_import.upload_bytes or 0
    content_import.received_at = utcnow()
    db.session.commit()


def discard(import_id: int) -> None:
    """Delete an import whose body never arrived whole, with the chunks it has."""
    db.session.rollback()
    db.session.execute(delete(chunk_table).where(chunk_table.c.import_id == import_id))
    db.session.execute(delete(ContentImport.__table__).where(ContentImport.id == import_id))
    db.session.commit()


def enqueue_ingest(content_import: ContentImport, connection: redis.Redis) -> bool:
    """Queue the job that stages (and applies) a stored body; False if Redis is unreachable.

    The job has the change set's job id, so the apply's progress and stall
    checks (admin/imports.py) follow it from staging to the end.
    """
    try:
        changesets.import_queue(connection).enqueue(
            keys.JOB_INGEST_IMPORT,
            content_import.id,
            job_id=content_import.job_id,
            job_timeout=changesets.APPLY_JOB_TIMEOUT,
            result_ttl=changesets.JOB_RESULT_TTL,
            failure_ttl=changesets.JOB_RESULT_TTL,
        )
    except (redis.RedisError, OSError) as error:
        # Stored and marked received: the sweeper enqueues it once Redis answers.
        log.warning("could not enqueue import %s: %s", content_import.id, error)
        return False
    return True


class ChunkStream(io.RawIOBase):
    """The stored body as a binary stream, one chunk in memory at a time."""

    def __init__(self, import_id: int) -> None:
        super().__init__()
        self.import_id = import_id
        self.seq = 0
        self.chunk = memoryview(b"")
        self.position = 0
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, target: memoryview) -> int:
        while self.position >= len(self.chunk):
            data = db.session.execute(
                select(chunk_table.c.data).where(
                    chunk_table.c.import_id == self.import_id, chunk_table.c.seq == self.seq
                )
            ).scalar()
            if data is None:
                return 0
            self.chunk, self.position = memoryview(bytes(data)), 0
            self.seq += 1
        count = min(len(target), len(self.chunk) - self.position)
        target[:count] = self.chunk[self.position : self.position + count]
        self.position += count
        self.bytes_read += count
        return count


def stage_upload(import_id: int, staged: Staged | None = None) -> ContentImport | None:
    """Stage a stored body from the start; None when the import is not waiting for it.

    The import ends `queued` when it is to be applied now (the caller runs
    the apply), else `ready` or `invalid`, its chunks deleted in the same
    transaction. `staged(rows, bytes_read)` is called after each committed
    chunk of rows.
    A database that went away (or a worker told to stop) leaves the import
    `staging` with its chunks, for the sweeper to re-drive; any other error
    makes it `invalid`, as an upload that cannot be read is.
    """
    content_import = db.session.get(ContentImport, import_id)
    if content_import is None or content_import.status not in REDRIVEN:
        return None
    # Idempotent: rows a job that died had staged are replaced, not added to.
    db.session.execute(delete(row_table).where(row_table.c.import_id == import_id))
    content_import.status = STATUS_STAGING
    content_import.report = {}
    content_import.error = None
    db.session.commit()
    body = ChunkStream(import_id)

    def progress(rows: int) -> None:
        if staged is not None:
            staged(rows, body.bytes_read)

    def hold(summarized: ContentImport) -> None:
        # Not `ready` for a moment before `queued`: a client polling would
        # take that for "staged with errors", a final state. It stays
        # `staging`, chunks kept, until it is queued together with their deletion.
        if applies_when_staged(summarized):
            summarized.status = STATUS_STAGING

    try:
        with io.BufferedReader(body, _READ_BUFFER) as binary:
            content_import = staging.stage_stream(
                content_import, binary, content_import.upload_format, progress, hold
            )
    except (OperationalError, ShutDownImminentException):
        db.session.rollback()
        raise
    except Exception:
        log.exception("import %s could not be staged", import_id)
        db.session.rollback()
        db.session.execute(delete(row_table).where(row_table.c.import_id == import_id))
        content_import = db.session.get(ContentImport, import_id)
        content_import.status = STATUS_INVALID
        content_import.report = {"file_errors": [UNPROCESSABLE], "invalid": [], "diffs": []}
        db.session.commit()
    # The staged rows are the import from here on.
    db.session.execute(delete(chunk_table).where(chunk_table.c.import_id == import_id))
    if content_import.status == STATUS_STAGING:
        content_import.status = STATUS_READY
        changesets.mark_queued(content_import, content_import.mode, content_import.created_by)
    db.session.commit()
    return content_import


def applies_when_staged(content_import: ContentImport) -> bool:
    """True when a staged import is to be applied now (all-or-nothing needs every row valid)."""
    return (
        bool(content_import.apply_when_staged)
        and content_import.status == STATUS_READY
        and (content_import.mode == MODE_VALID_ONLY or not content_import.invalid_rows)
    )


def waiting_ingests(older_than: float, limit: int) -> list[ContentImport]:
    """Imports stored whole for `older_than` seconds and not staged yet (or not to the end)."""
    cutoff = utcnow() - timedelta(seconds=older_than)
    return list(
        db.session.scalars(
            select(ContentImport)
            .where(ContentImport.status.in_(REDRIVEN), ContentImport.received_at <= cutoff)
            .order_by(ContentImport.id)
            .limit(limit)
        )
    )


def hold_waiting(import_id: int) -> bool:
    """Lock an import's row if it still waits to be staged; staging's own status
    change waits behind it."""
    return changesets.hold(import_id, REDRIVEN)


def delete_abandoned(older_than: float = ABANDONED_AFTER, limit: int = 100) -> list[int]:
    """Delete imports left `receiving` for `older_than` seconds, with their chunks; their ids."""
    cutoff = utcnow() - timedelta(seconds=older_than)
    abandoned = list(
        db.session.scalars(
            select(ContentImport.id)
            .where(ContentImport.status == STATUS_RECEIVING, ContentImport.created_at <= cutoff)
            .order_by(ContentImport.id)
            .limit(limit)
        )
    )
    if not abandoned:
        db.session.rollback()
        return []
    db.session.execute(delete(chunk_table).where(chunk_table.c.import_id.in_(abandoned)))
    db.session.execute(
        delete(ContentImport.__table__).where(
            ContentImport.id.in_(abandoned), ContentImport.status == STATUS_RECEIVING
        )
    )
    db.session.commit()
    return abandoned
