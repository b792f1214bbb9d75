"""Publish jobs that cannot finish: hung on Redis (case 10), stopped by a deploy (case 11)."""

from __future__ import annotations

import dataclasses
import signal
import time

from fault_support import differences, wait_ready
from sqlalchemy import func, select
from support import wait_until

from ccadmin.extensions import db
from ccadmin.models import ContentEntry, OutboxEvent
from ccadmin.seed import seed_content

# One outbox event for the whole batch: publishing it takes under a second,
# long enough that the job is still writing when the test (on a busy machine)
# gets to freeze Redis after seeing the job start, short enough for a 2 s timeout.
BATCH = 30_000


def start_batch(client) -> int:
    """Seed BATCH entries as one event; its id once its job has started (not finished)."""
    seed_content("spring", BATCH, batch_size=BATCH)
    event_id = db.session.execute(select(func.max(ContentEntry.last_event_id))).scalar()
    db.session.rollback()
    job_key = f"rq:job:publish-{event_id}"

    def left_the_queue():
        status = client.hget(job_key, "status")
        return status if status not in (None, b"queued") else None

    status = wait_until(left_the_queue, timeout=20, interval=0.001)
    assert status == b"started", f"the job was {status!r} before it could be caught running"
    return event_id


def outbox_event(event_id: int) -> OutboxEvent:
    """The event as the database holds it now (no stale session copy)."""
    db.session.expire_all()
    found = db.session.get(OutboxEvent, event_id)
    db.session.rollback()
    return found


def test_hung_job_is_killed_by_the_job_timeout_and_re_driven(fault_app, private_redis, processes):
    """Case 10: Redis frozen under a running publish job (its writes block).

    Expected: with PUBLISH_JOB_TIMEOUT=2 the job is killed about 2 s after it
    started (its event records the JobTimeoutException while Redis is still
    frozen); once Redis answers, the job's retry publishes the batch: every
    entry live at its database version, none lost, the worker still running.
    """
    settings = fault_app.config["CCADMIN_SETTINGS"]
    # The enqueuing process sets the job's timeout: here the test's own admin app.
    fault_app.config["CCADMIN_SETTINGS"] = dataclasses.replace(settings, publish_job_timeout=2)
    client = private_redis.start()
    worker = processes.worker({"PUBLISH_JOB_TIMEOUT": "2"})
    wait_ready(client)

    event_id = start_batch(client)
    private_redis.pause()
    paused_at = time.monotonic()
    wait_until(lambda: outbox_event(event_id).last_error, timeout=15, interval=0.1)
    killed_after = time.monotonic() - paused_at
    hung = outbox_event(event_id)
    assert hung.last_error == (
        "JobTimeoutException: Task exceeded maximum timeout value (2 seconds)"
    )
    assert hung.published_at is None
    assert killed_after < 5, "the 2 s job timeout, not a Redis socket timeout, ended the job"

    private_redis.resume()
    resumed_at = time.monotonic()
    wait_until(lambda: outbox_event(event_id).published_at, timeout=30, interval=0.2)
    recovery = time.monotonic() - resumed_at
    lost = differences(client, "spring")
    assert lost == {}
    published = outbox_event(event_id)
    assert published.last_error is None and published.attempts == 2
    assert worker.alive()
    assert "Task exceeded maximum timeout value (2 seconds)" in worker.log()
    print(
        f"case 10: job killed {killed_after:.1f} s after Redis froze; {BATCH} entries live "
        f"{recovery:.1f} s after it answered again, {len(lost)} lost"
    )


def test_sigterm_mid_job_lets_it_finish_and_exits_0(fault_app, private_redis, processes):
    """Case 11, within the deadline: SIGTERM while a batch is publishing.

    Expected: the job finishes in the same worker (one attempt, every entry
    live, no other worker needed) and the worker exits 0.
    """
    client = private_redis.start()
    worker = processes.worker()
    wait_ready(client)

    event_id = start_batch(client)
    worker.signal(signal.SIGTERM)
    signalled_at = time.monotonic()
    assert worker.popen.wait(timeout=20) == 0
    exited_after = time.monotonic() - signalled_at

    published = outbox_event(event_id)
    assert published.published_at is not None and published.attempts == 1
    assert differences(client, "spring") == {}
    log = worker.log()
    assert log.index("warm shut down requested") < log.index(f"published outbox event {event_id}")
    assert "interrupting the job in progress" not in log
    print(f"case 11a: job finished and worker exited 0 {exited_after:.1f} s after SIGTERM, 0 lost")


def test_sigterm_mid_job_past_the_deadline_interrupts_it_and_a_new_worker_re_drives_it(
    fault_app, private_redis, processes
):
    """Case 11, past the deadline: SIGTERM while the job is hung (Redis frozen under it).

    Expected: with WORKER_SHUTDOWN_SECONDS=1 the job is interrupted about 1 s
    after the signal, the worker exits 0 with the event unpublished, and a new
    worker publishes the whole batch: nothing lost.
    """
    client = private_redis.start()
    worker = processes.worker({"WORKER_SHUTDOWN_SECONDS": "1"})
    wait_ready(client)

    event_id = start_batch(client)
    private_redis.pause()
    worker.signal(signal.SIGTERM)
    signalled_at = time.monotonic()
    wait_until(lambda: "interrupting the job in progress" in worker.log(), timeout=10)
    interrupted_after = time.monotonic() - signalled_at
    assert interrupted_after < 5
    private_redis.resume()
    assert worker.popen.wait(timeout=20) == 0
    assert outbox_event(event_id).published_at is None
    not_live = len(differences(client, "spring"))
    assert not_live > 0, "the interrupted job must not have published the whole batch"

    replacement = processes.worker()
    started_at = time.monotonic()
    wait_until(lambda: outbox_event(event_id).published_at, timeout=30, interval=0.2)
    recovery = time.monotonic() - started_at
    assert differences(client, "spring") == {}
    assert f"published outbox event {event_id}" in replacement.log()
    print(
        f"case 11b: job interrupted {interrupted_after:.1f} s after SIGTERM with {not_live} of "
        f"{BATCH} entries not live; all live {recovery:.1f} s after a new worker started, 0 lost"
    )
