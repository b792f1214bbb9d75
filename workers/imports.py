"""Bulk jobs: applying change sets (imports, rollbacks, reverts) and scheduled changes.

Enqueued by ccadmin/imports/changesets.py as "workers.imports.apply_import"
on keys.IMPORT_QUEUE, carrying the change set's id. The admin page polls
`job.meta["progress"]` ({"done", "total"} rows) through a JSON endpoint.
"""

from __future__ import annotations

from typing import Any

from rq import get_current_job

from ccadmin.imports import scheduling
from ccadmin.imports.applying import apply_change_set
from workers.publish import publish_event


def apply_import(import_id: int) -> dict[str, Any]:
    """Apply one change set, publishing each batch after its commit, with progress."""
    job = get_current_job()

    def progress(done: int, total: int) -> None:
        if job is not None:
            job.meta["progress"] = {"done": done, "total": total}
            job.save_meta()

    return apply_change_set(import_id, progress, publish=publish_event)


def apply_scheduled_change(change_id: int) -> dict[str, Any]:
    """Apply one scheduled content change at its time (its commit enqueues the publish)."""
    return scheduling.apply_scheduled_change(change_id)
