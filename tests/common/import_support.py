"""Uploading import files through the admin, and reading back what they did."""

from __future__ import annotations

import io
import re

from rq.exceptions import NoSuchJobError
from rq.job import Job
from sqlalchemy import select

from ccadmin.extensions import db
from ccadmin.imports.progress import redis_connection
from ccadmin.models import ContentEntry, ContentImport
from common.support import csrf_token, post_confirmed, wait_until
from workers.imports import ingest_import

IMPORTS = "/admin/imports/"
SCHEMA = [{"name": "message", "max_length": 20}, {"name": "cta", "max_length": 10}]


def upload(client, campaign_id: int, filename: str, content: bytes, token: str | None = None):
    """POST a file to the upload form, as the browser does (unfollowed)."""
    if token is None:
        token = csrf_token(client, IMPORTS)
    return client.post(
        f"{IMPORTS}upload",
        data={
            "campaign_id": str(campaign_id),
            "csrf_token": token,
            "file": (io.BytesIO(content), filename),
        },
        content_type="multipart/form-data",
    )


def latest_import() -> ContentImport | None:
    db.session.expire_all()
    return db.session.scalars(select(ContentImport).order_by(ContentImport.id.desc())).first()


def run_staging(import_id: int) -> ContentImport:
    """Run the upload's queued staging job here, as a worker would, and drop it from the queue."""
    ingest_import(import_id)
    try:
        Job.fetch(f"import-{import_id}", connection=redis_connection()).delete()
    except NoSuchJobError:
        pass
    db.session.expire_all()
    return db.session.get(ContentImport, import_id)


def upload_and_stage(client, campaign_id: int, filename: str, content: bytes) -> ContentImport:
    """Upload a file and stage it in this process (no worker running); the staged import."""
    response = upload(client, campaign_id, filename, content)
    assert response.status_code == 302, response.get_data(as_text=True)
    return run_staging(latest_import().id)


def staged_by_worker(timeout: float = 30.0) -> ContentImport:
    """The latest import, once a running worker has staged it."""
    return wait_until(
        lambda: (item := latest_import()) and item.status not in ("received", "staging") and item,
        timeout,
    )


def apply(client, import_id: int, mode: str = "all_or_nothing", run_at: str = ""):
    """POST the preview's apply form and confirm it."""
    url = f"{IMPORTS}{import_id}/"
    data = {"mode": mode, "run_at": run_at, "csrf_token": csrf_token(client, url)}
    return post_confirmed(client, f"{url}apply", data)


def apply_refused(client, import_id: int, mode: str = "all_or_nothing"):
    """POST the apply form of a change set that cannot be applied: refused before any question."""
    url = f"{IMPORTS}{import_id}/"
    return client.post(
        f"{url}apply", data={"mode": mode, "run_at": "", "csrf_token": csrf_token(client, url)}
    )


def roll_back(client, import_id: int):
    """POST a change set's roll back (or roll forward) button and confirm it."""
    url = f"{IMPORTS}{import_id}/"
    return post_confirmed(client, f"{url}rollback", {"csrf_token": csrf_token(client, url)})


def entries(campaign_id: int) -> dict[str, ContentEntry]:
    """user_id -> entry (tombstones included) of one campaign."""
    db.session.expire_all()
    return {
        entry.user_id: entry
        for entry in db.session.scalars(
            select(ContentEntry).where(ContentEntry.campaign_id == campaign_id)
        )
    }


_COUNT = re.compile(r'<td class="count-(\w+)">(\d+)</td>')


def shown_counts(page: str) -> dict[str, int]:
    """The preview's count table, as shown."""
    return {name: int(value) for name, value in _COUNT.findall(page)}
