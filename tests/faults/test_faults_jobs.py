"""A drainer whose batch cannot finish: hung on Redis (case 10), stopped by a deploy (case 11)."""

from __future__ import annotations

import signal
import time

from common.fault_support import differences, wait_ready, wait_writing
from common.support import wait_until
from sqlalchemy import func, select

from ccadmin.content.seed import seed_content
from ccadmin.extensions import db
from ccadmin.models import ContentEntry, OutboxEvent

# One outbox event for the whole batch (the bulk lane): publishing it takes
# under a second, long enough that the drainer is still writing when the test
# (on a busy machine) gets to freeze Redis after seeing the first entry live.
BATCH = 30_000


def start_batch(client) -> int:
    """Seed BATCH entries as one event; its id once a drainer is writing it (not done)."""
    seed_content("spring", BATCH, batch_size=BATCH)
    event_id = db.session.execute(select(func.max(ContentEntry.last_event_id))).scalar()
    db.session.rollback()
    wait_writing(client, "spring", BATCH)
    return event_id


def outbox_event(event_id: int) -> OutboxEvent:
    """The event as the database holds it now (no stale session copy)."""
    db.session.expire_all()
    found = db.session.get(OutboxEvent, event_id)
    db.session.rollback()
    return found


def test_batch_hung_on_redis_fails_on_the_socket_timeout_and_is_retried(
    fault_app, private_redis, processes
):
    """Case 10: Redis frozen under a drainer writing a batch (its writes block).

    Expected: the client's 2 s socket timeout ends the batch while Redis is
    still frozen (its event records the Redis timeout, unpublished); the
    worker stays up, and once Redis answers the drainer's next attempt
    publishes the batch: every entry live at its database version, none lost.
    """
    client = private_redis.start()
    worker = processes.worker()
    wait_ready(client)

    event_id = start_batch(client)
    private_redis.pause()
    paused_at = time.monotonic()
    wait_until(lambda: outbox_event(event_id).last_error, timeout=20, interval=0.05)
    failed_after = time.monotonic() - paused_at
    hung = outbox_event(event_id)
    assert hung.last_error.startswith("TimeoutError: "), hung.last_error
    assert hung.published_at is None and hung.attempts == 1
    assert worker.alive()

    private_redis.resume()
    resumed_at = time.monotonic()
    wait_until(lambda: outbox_event(event_id).published_at, timeout=30, interval=0.2)
    recovery = time.monotonic() - resumed_at
    lost = differences(client, "spring")
    assert lost == {}
    published = outbox_event(event_id)
    assert published.last_error is None and published.attempts == 2
    assert worker.alive()
    print(
        f"case 10: batch failed {failed_after:.1f} s after Redis froze; {BATCH} entries live "
        f"{recovery:.1f} s after it answered again, {len(lost)} lost"
    )


def test_sigterm_mid_batch_lets_it_finish_and_exits_0(fault_app, private_redis, processes):
    """Case 11, within the deadline: SIGTERM while a batch is publishing.

    Expected: the batch finishes in the same worker (one attempt, every entry
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
    print(f"case 11a: batch finished, worker exited 0 {exited_after:.1f} s after SIGTERM, 0 lost")


def test_sigterm_mid_batch_past_the_deadline_exits_and_a_new_worker_publishes_it(
    fault_app, private_redis, processes
):
    """Case 11, past the deadline: SIGTERM while the batch is hung (Redis frozen under it).

    Expected: with WORKER_SHUTDOWN_SECONDS=1 the drainer gives the batch up
    (its Redis timeout recorded) instead of retrying it, the worker exits 0
    as soon as Redis lets RQ deregister it, with the event unpublished, and a
    new worker publishes the whole batch: nothing lost.
    """
    client = private_redis.start()
    worker = processes.worker({"WORKER_SHUTDOWN_SECONDS": "1"})
    wait_ready(client)

    event_id = start_batch(client)
    private_redis.pause()
    worker.signal(signal.SIGTERM)
    wait_until(lambda: outbox_event(event_id).last_error, timeout=20, interval=0.05)
    # Past the deadline, with Redis still frozen: nothing may retry the batch now.
    time.sleep(1.5)
    private_redis.resume()
    resumed_at = time.monotonic()
    assert worker.popen.wait(timeout=10) == 0
    exited_after = time.monotonic() - resumed_at
    given_up = outbox_event(event_id)
    assert given_up.published_at is None and given_up.attempts == 1
    not_live = len(differences(client, "spring"))
    assert not_live > 0, "the stopped drainer must not have published the whole batch"

    processes.worker()
    started_at = time.monotonic()
    wait_until(lambda: outbox_event(event_id).published_at, timeout=30, interval=0.2)
    recovery = time.monotonic() - started_at
    assert differences(client, "spring") == {}
    print(
        f"case 11b: worker exited 0 {exited_after:.1f} s after Redis answered, {not_live} of "
        f"{BATCH} entries not live; all live {recovery:.1f} s after a new worker started, 0 lost"
    )
