"""A real `python -m workers` process publishing what the test commits."""

from __future__ import annotations

import json
import signal

from common.publishing_support import delete_entry, make_campaign, save_entry, stored_entry
from common.support import wait_until

from ccadmin import keys, payload

WORKER = ["-m", "workers"]
# The worker imports the app and may rebuild first; allow for a slow machine.
TIMEOUT = 30.0


def test_worker_publishes_edits_and_deletes(app, redis_client, spawn):
    spawn(WORKER)
    campaign = make_campaign()
    save_entry(campaign, "42", "first")
    wait_until(lambda: stored_entry(redis_client, "spring", "42"), timeout=TIMEOUT)
    assert stored_entry(redis_client, "spring", "42") == (
        1,
        payload.render_payload("spring", "42", 1, {"message": "first"}),
    )

    save_entry(campaign, "42", "second")
    wait_until(lambda: stored_entry(redis_client, "spring", "42")[0] == 2, timeout=TIMEOUT)
    assert json.loads(stored_entry(redis_client, "spring", "42")[1])["message"] == "second"

    delete_entry(campaign, "42")
    wait_until(lambda: stored_entry(redis_client, "spring", "42")[0] == 3, timeout=TIMEOUT)
    assert stored_entry(redis_client, "spring", "42") == (3, b"")
    assert redis_client.get(keys.DEFAULT_CAMPAIGN) == b"spring"


def test_job_enqueued_without_a_worker_runs_when_one_starts(app, redis_client, spawn):
    campaign = make_campaign()
    save_entry(campaign, "7", "waiting in the queue")
    assert stored_entry(redis_client, "spring", "7") is None
    spawn(WORKER)
    wait_until(lambda: stored_entry(redis_client, "spring", "7"), timeout=TIMEOUT)
    assert stored_entry(redis_client, "spring", "7")[0] == 1


def test_worker_rebuilds_when_the_ready_marker_is_gone(app, redis_client, spawn):
    campaign = make_campaign()
    save_entry(campaign, "1", "one")
    save_entry(campaign, "2", "two")
    spawn(WORKER)
    wait_until(lambda: redis_client.exists(keys.READY), timeout=TIMEOUT)
    wait_until(lambda: stored_entry(redis_client, "spring", "2"), timeout=TIMEOUT)

    redis_client.flushdb()  # Redis restarted empty
    wait_until(lambda: redis_client.exists(keys.READY), timeout=TIMEOUT)
    assert stored_entry(redis_client, "spring", "1")[0] == 1
    assert stored_entry(redis_client, "spring", "2")[0] == 1
    assert json.loads(redis_client.get(keys.READY))["entries"] == 2
    assert redis_client.hexists(keys.CAMPAIGNS, "spring")


def test_sigterm_is_a_clean_exit(app, redis_client, spawn):
    worker = spawn(WORKER)
    wait_until(lambda: redis_client.exists(keys.READY), timeout=TIMEOUT)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=TIMEOUT) == 0


def test_every_job_path_names_a_function_rq_can_import():
    from rq.utils import import_attribute

    for path in keys.JOB_PATHS:
        assert callable(import_attribute(path)), path
    assert len(set(keys.JOB_PATHS)) == len(keys.JOB_PATHS) == 8


def test_a_stop_asked_before_rq_takes_the_signals_is_handed_on(app, redis_client):
    """RQ installs its SIGTERM handler only after its bootstrap and the scheduler's start;
    a SIGTERM in that window must still stop the worker, which then deregisters."""
    from workers.__main__ import PublishWorker, StopRequest

    def too_long(signum, frame):
        raise TimeoutError("the worker kept working after SIGTERM")

    previous = {
        signum: signal.getsignal(signum)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM)
    }
    try:
        stop = StopRequest()
        worker = PublishWorker(list(keys.WORKER_QUEUES), connection=redis_client, stop=stop)
        signal.raise_signal(signal.SIGTERM)  # caught by StopRequest, as in that window
        assert stop.requested
        signal.signal(signal.SIGALRM, too_long)
        signal.alarm(15)
        worker.work(logging_level=None)
        signal.alarm(0)
        assert worker.shutdown_requested
        assert worker.name not in {w.name for w in type(worker).all(connection=redis_client)}
    finally:
        signal.alarm(0)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
