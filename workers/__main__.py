"""`python -m workers`: the drainers that publish edits, one RQ worker on the rebuild and
import queues (in that order of priority), and the sweeper beside them.

Worker class: a `SimpleWorker`, jobs run in this process, no fork per job,
so a job finds the app, its pools and the Redis scripts already loaded.
Job timeouts still apply: SimpleWorker runs the job in the main thread under
RQ's SIGALRM death penalty. What we give up is isolation: a job that crashes
the interpreter takes the worker with it; the platform restarts it, a lost
rebuild chunk or import is enqueued again by the sweeper, and an outbox
batch whose claim died with the process is taken by another drainer.

SIGTERM (a deploy, `make run`, Ctrl-C) is a warm shutdown in the manner of
RQ's HerokuWorker: the job in progress may finish for WORKER_SHUTDOWN_SECONDS
(20 by default); past that it is interrupted (the sweeper enqueues it again)
so the process exits before the platform's SIGKILL; the drainers finish
their batch within the same time.
A second signal stops at once. A Redis or database outage does not end the
process: the worker starts again once Redis answers, and the drainers
(workers/drain.py) retry on their own.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence

import redis
from rq import SimpleWorker
from rq.exceptions import ShutDownImminentException
from rq.worker import WorkerStatus

from ccadmin import config, keys
from ccadmin.redis_client import get_redis
from workers.context import AppJob, JobIdFilter, worker_app
from workers.drain import Drainer, start_drainers, stop_drainers
from workers.sweeper import Sweeper

log = logging.getLogger(__name__)

RQ_LOGGERS = ("rq.worker", "rq.job", "rq.scheduler")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(job_id)s] %(message)s"
# Pause before starting a new worker loop after the previous one ended on an
# error (Redis down): the loop itself retries only while waiting for jobs.
RESTART_PAUSE_SECONDS = 1.0
GIL_SWITCH_SECONDS = 0.0005


class PublishWorker(SimpleWorker):
    """A SimpleWorker whose warm shutdown has a deadline for the job in progress.

    Heroku sends SIGKILL 30 s after SIGTERM: a job still running after
    `imminent_shutdown_seconds` is interrupted so the worker can deregister
    and exit cleanly first.
    """

    def __init__(
        self,
        *args,
        imminent_shutdown_seconds: float = 20.0,
        drainers: Sequence[Drainer] = (),
        stop: StopRequest | None = None,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.imminent_shutdown_seconds = imminent_shutdown_seconds
        self.drainers = drainers
        self.stop = stop
        self.shutdown_requested = False

    def _install_signal_handlers(self) -> None:
        """RQ takes SIGTERM and SIGINT only after its bootstrap and the scheduler's
        start; a signal in that window reached StopRequest, so it is handed on here."""
        super()._install_signal_handlers()
        if self.stop is not None and self.stop.requested:
            # What RQ's handler does outside a job: its loop then stops before
            # taking one, and deregisters the worker.
            self.handle_warm_shutdown_request()
            self._stop_requested = True

    def handle_warm_shutdown_request(self) -> None:
        """Let the current job finish, but not past the deadline (signal, not SIGALRM:
        the job's own timeout uses that). The drainers stop now too, after their
        batch: RQ's own teardown may wait on Redis long past the deadline."""
        self.shutdown_requested = True
        for drainer in self.drainers:
            drainer.stop()
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


def configure_logging(level: str) -> None:
    """One root handler, before anything logs, so every line carries the job id."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(JobIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # RQ sets its worker logger to INFO when imported: LOG_LEVEL holds for it too.
    for name in RQ_LOGGERS:
        logging.getLogger(name).setLevel(level)


def main() -> None:
    """Load the app once, start the drainers and the sweeper, work the queues until stopped.

    Nothing here gives up on an outage: a worker started while Redis or the
    database is away waits for them, and one that loses them mid-job starts
    its loop again once they answer.
    """
    configure_logging(config.load().log_level)
    # A rebuild chunk or an import in the main thread is CPU-bound Python; the
    # drainers wait on the database and Redis. Every time one of their calls
    # returns it needs the GIL back: a shorter switch interval hands it over
    # sooner, which keeps a fresh save's publish quick while bulk work runs.
    sys.setswitchinterval(GIL_SWITCH_SECONDS)
    app = worker_app()
    settings = app.config["CCADMIN_SETTINGS"]
    # A client of its own: RQ raises its socket timeout above the blocking
    # dequeue, which the sweeper's and the jobs' short-timeout client must keep.
    connection = redis.Redis.from_url(settings.effective_redis_url, health_check_interval=30)
    drainers = start_drainers(app, lambda: connection)
    sweeper = Sweeper(app)
    sweeper.start()
    stop = StopRequest()
    try:
        while not stop.requested:
            worker = None
            try:
                get_redis(settings)  # starts the embedded Redis if it is the default and down
                worker = PublishWorker(
                    list(keys.WORKER_QUEUES),
                    connection=connection,
                    job_class=AppJob,
                    imminent_shutdown_seconds=settings.worker_shutdown_seconds,
                    drainers=drainers,
                    stop=stop,
                )
                sweeper.worker = worker
                # The scheduler moves scheduled imports and changes to their queue.
                worker.work(with_scheduler=True, logging_level=None)
            except (redis.RedisError, OSError) as error:
                log.error("worker loop stopped by a Redis error: %s", error)
            except Exception:
                log.exception("worker loop stopped by an error")
            if worker is not None and worker.shutdown_requested:
                break
            stop.install()
            if not stop.requested:
                log.warning("worker loop ended without a stop request; starting again")
                stop.wait(RESTART_PAUSE_SECONDS)
    finally:
        stop_drainers(drainers, settings.worker_shutdown_seconds)
        sweeper.stop()
        sweeper.join(timeout=5)


class StopRequest:
    """SIGTERM / SIGINT between worker loops: RQ handles them only while a worker works."""

    def __init__(self) -> None:
        self.requested = False
        self._event = threading.Event()
        self.install()

    def install(self) -> None:
        """Take the signals back from a worker loop that ended (RQ installs its own)."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame) -> None:
        self.requested = True
        self._event.set()

    def wait(self, seconds: float) -> None:
        """Sleep between loops, cut short by a stop request."""
        self._event.wait(seconds)


if __name__ == "__main__":
    main()
