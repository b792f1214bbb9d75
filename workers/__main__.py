"""`python -m workers`: one RQ worker on the publish queue, with the sweeper beside it.

Worker class: `SimpleWorker`, jobs run in this process, no fork per job. A
publish job is a few milliseconds of database and Redis work; forking a work
horse per job would add the fork itself plus a new database and Redis
connection in every child (a pool cannot be shared across a fork), which is
most of the time from a save to the change being live. Job timeouts still
apply: SimpleWorker runs the job in the main thread under RQ's SIGALRM death
penalty. What we give up is isolation: a job that crashes the interpreter
takes the worker with it; the platform restarts it and the sweeper
re-enqueues the event its job held (DESIGN 5.4).

SIGTERM (Heroku, `make run`, Ctrl-C) is a warm shutdown: RQ finishes the job
in progress, then exits; a second signal stops at once.
"""

from __future__ import annotations

import logging
import os
import sys

import redis
from rq import SimpleWorker

from ccadmin import keys
from ccadmin.redis_client import get_redis
from workers.context import AppJob, JobIdFilter, worker_app
from workers.sweeper import Sweeper

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(job_id)s] %(message)s"


def configure_logging() -> None:
    """One root handler, before anything logs, so every line carries the job id."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(JobIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(os.environ.get("LOG_LEVEL", "INFO").upper())


def main() -> None:
    """Load the app once, start the sweeper, work the publish queue until told to stop."""
    configure_logging()
    app = worker_app()
    settings = app.config["CCADMIN_SETTINGS"]
    get_redis(settings)  # starts the embedded Redis if it is the default and not running
    # A client of its own: RQ raises its socket timeout above the blocking
    # dequeue, which the sweeper's and the jobs' short-timeout client must keep.
    connection = redis.Redis.from_url(settings.effective_redis_url, health_check_interval=30)
    worker = SimpleWorker(
        [keys.PUBLISH_QUEUE, keys.IMPORT_QUEUE], connection=connection, job_class=AppJob
    )
    sweeper = Sweeper(app, worker)
    sweeper.start()
    try:
        # The scheduler runs RQ's delayed retries (publishing.PUBLISH_RETRY).
        worker.work(with_scheduler=True, logging_level=None)
    finally:
        sweeper.stop()
        sweeper.join(timeout=5)


if __name__ == "__main__":
    main()
