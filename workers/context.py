"""The Flask app every job runs in: created once per process, pushed around each job."""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

from flask import Flask
from rq import get_current_job
from rq.job import Job


@lru_cache(maxsize=1)
def worker_app() -> Flask:
    """The app of this worker process (models, settings, Redis client), built once."""
    from ccadmin.app import create_app

    return create_app()


class AppJob(Job):
    """An RQ job that runs inside an app context, so jobs use `db` and settings directly."""

    def perform(self) -> Any:
        with worker_app().app_context():
            return super().perform()


class JobIdFilter(logging.Filter):
    """Adds `job_id` to every log record: the running RQ job's id, or `-`."""

    def filter(self, record: logging.LogRecord) -> bool:
        job = get_current_job()
        record.job_id = job.id if job is not None else "-"
        return True
