"""Bulk jobs: staging stored import bodies, applying change sets, scheduled changes,
and coverage checks of long lists.

Enqueued by ccadmin/imports/changesets.py as "workers.imports.apply_import"
and by ccadmin/imports/uploads.py as "workers.imports.ingest_import", on
keys.IMPORT_QUEUE, carrying the change set's id, under its job id
(`import-<id>`). The pages poll `job.meta["progress"]` ({"done", "total"} rows
applied) and, while a body is staged, `job.meta["staging"]` ({"rows", "bytes"}).
"""

from __future__ import annotations

from typing import Any

from flask import current_app
from rq import get_current_job

from ccadmin.approvals import workflow
from ccadmin.imports import coverage, scheduling, uploads
from ccadmin.imports.applying import apply_change_set
from ccadmin.models.imports import STATUS_QUEUED
from ccadmin.redis_client import get_redis, get_store


def apply_import(import_id: int) -> dict[str, Any]:
    """Apply one change set with progress; the drainers publish each batch after its commit."""
    job = get_current_job()

    def progress(done: int, total: int) -> None:
        if job is not None:
            job.meta["progress"] = {"done": done, "total": total}
            job.save_meta()

    return apply_change_set(import_id, progress)


def ingest_import(import_id: int) -> dict[str, Any]:
    """Stage a body stored by an admin upload or the ingest API; apply it when it is to be.

    The admin's stays previewed for the marketer to confirm. One job for
    both steps, so an API import is applied at once, under the job id the
    progress and stall checks already follow.
    """
    job = get_current_job()

    def staged(rows: int, bytes_read: int) -> None:
        if job is not None:
            job.meta["staging"] = {"rows": rows, "bytes": bytes_read}
            job.save_meta()

    content_import = uploads.stage_upload(import_id, staged)
    if content_import is None:
        return {"import_id": import_id, "skipped": "not waiting to be staged"}
    if content_import.approval_via:
        change_request = workflow.ask_for_staged(content_import)
        return {"import_id": import_id, "change_request": change_request and change_request.id}
    # An admin upload waits for its preview to be confirmed: the marketer's
    # apply queues its own job, which this one must not race once staged.
    if not content_import.apply_when_staged or content_import.status != STATUS_QUEUED:
        return {"import_id": import_id, "status": content_import.status}
    return apply_import(import_id)


def apply_scheduled_change(change_id: int) -> dict[str, Any]:
    """Apply one scheduled content change at its time (its commit wakes the drainers)."""
    return scheduling.apply_scheduled_change(change_id)


def check_coverage(slug: str, token: str, total: int) -> dict[str, Any]:
    """Check a stashed list of user ids (a coverage check too long for a web request)."""
    job = get_current_job()

    def progress(done: int) -> None:
        if job is not None:
            job.meta["progress"] = {"done": done, "total": total}
            job.save_meta()

    settings = current_app.config["CCADMIN_SETTINGS"]
    result = coverage.run_stashed(get_redis(settings), get_store(settings), slug, token, progress)
    return result.as_dict()
