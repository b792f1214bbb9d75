"""`python -m workers`: one RQ worker on the publish, rebuild and import queues (in that
order of priority), with the sweeper beside it.

Worker class: a `SimpleWorker`, jobs run in this process, no fork per job. A
publish job is a few milliseconds of database and Redis work; forking a work
horse per job would add the fork itself plus a new database and Redis
connection in every child (a pool cannot be shared across a fork), which is
most of the time from a save to the change being live. Job timeouts still
apply: SimpleWorker runs the job in the main thread under RQ's SIGALRM death
penalty. What we give up is isolation: a job that crashes the interpreter
takes the worker with it; the platform restarts it and the sweeper
re-enqueues the event its job held (DESIGN 5.4).

SIGTERM (a deploy, `make run`, Ctrl-C) is a warm shutdown in the manner of
RQ's HerokuWorker: the job in progress may finish for WORKER_SHUTDOWN_SECONDS
(20 by default); past that it is interrupted (its event stays unpublished and is re-driven by
a retry or the sweeper) so the process exits before the platform's SIGKILL.
A second signal stops at once. A Redis outage does not end the process: the
worker starts again once Redis answers.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time

import redis
from rq import SimpleWorker
from rq.exceptions import ShutDownImminentException
from rq.worker import WorkerStatus

from ccadmin import keys
from ccadmin.redis_client import get_redis
from workers.context import AppJob, JobIdFilter, worker_app
from workers.sweeper import Sweeper

log = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(job_id)s] %(message)s"
# Pause before starting a new worker loop after the previous one ended on an
# error (Redis down): the loop itself retries only while waiting for jobs.
RESTART_PAUSE_SECONDS = 1.0


class PublishWorker(SimpleWorker):
    """A SimpleWorker whose warm shutdown has a deadline for the job in progress.

    Heroku sends SIGKILL 30 s after SIGTERM: a job still running after
    `imminent_shutdown_seconds` is interrupted so the worker can deregister
    and exit cleanly first.
    """

    def __init__(self, *args, imminent_shutdown_seconds: float = 20.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.imminent_shutdown_seconds = imminent_shutdown_seconds
        self.shutdown_requested = False

    def handle_warm_shutdown_request(self) -> None:
        """Let the current job finish, but not past the deadline (signal, not SIGALRM:
        the job's own timeout uses that)."""
        self.shutdown_requested = True
        super().handle_warm_shutdown_request()
        if self.get_state() != WorkerStatus.BUSY:
            return
        signal.signal(signal.SIGRTMIN, self._interrupt_job)
        timer = threading.Timer(
            self.imminent_shutdown_seconds, os.kill, (os.getpid(), signal.SIGRTMIN)
        )
        timer.daemon = True
        timer.start()

    def _interrupt_job(self, signum: int, frame) -> None:
        if self.get_state() != WorkerStatus.BUSY:
            return
        log.warning("shutting down: interrupting the job in progress; it will be re-driven")
        raise ShutDownImminentException("shut down imminent", {})


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
    sweeper = Sweeper(app)
    sweeper.start()
    try:
        while True:
            worker = PublishWorker(
                [keys.PUBLISH_QUEUE, keys.REBUILD_QUEUE, keys.IMPORT_QUEUE],
                connection=connection,
                job_class=AppJob,
                imminent_shutdown_seconds=settings.worker_shutdown_seconds,
            )
            sweeper.worker = worker
            try:
                # The scheduler runs RQ's delayed retries (publishing.PUBLISH_RETRY).
                worker.work(with_scheduler=True, logging_level=None)
            except redis.RedisError as error:
                log.error("worker stopped by a Redis error: %s", error)
            if worker.shutdown_requested:
                break
            log.warning("worker loop ended without a stop request; starting again")
            time.sleep(RESTART_PAUSE_SECONDS)
    finally:
        sweeper.stop()
        sweeper.join(timeout=5)


if __name__ == "__main__":
    main()
