"""Worker faults: killed mid-batch (case 1)."""

from __future__ import annotations

import time

from fault_support import differences, redis_versions, wait_ready
from rq.job import Job
from sqlalchemy import func, select
from support import wait_until

from ccadmin import keys
from ccadmin.extensions import db
from ccadmin.models import ContentEntry
from ccadmin.seed import seed_content

# Entries in the batch: enough that publishing it takes a visible fraction of
# a second, so the kill lands while the job is writing.
BATCH = 40_000


def worker_pid(client, job_id: str) -> int | None:
    """Pid of the RQ worker running a job, once it started."""
    job = Job.fetch(job_id, connection=client)
    if not job.worker_name:
        return None
    pid = client.hget(f"rq:worker:{job.worker_name}", "pid")
    return None if pid is None else int(pid)


def test_kill_9_mid_batch_every_change_ends_live(fault_app, private_redis, processes):
    """Case 1: kill -9 the worker publishing a batch; the other one's sweeper re-drives it."""
    client = private_redis.start()
    workers = [processes.worker(), processes.worker()]
    wait_ready(client)

    seed_content("spring", BATCH, batch_size=BATCH)
    batch_event = db.session.execute(select(func.max(ContentEntry.last_event_id))).scalar()
    first, last = keys.entry_key("spring", "1"), keys.entry_key("spring", str(BATCH))
    wait_until(lambda: client.exists(first), timeout=30, interval=0.005)
    pid = worker_pid(client, f"publish-{batch_event}")
    victim = next(worker for worker in workers if worker.pid == pid)
    victim.kill()
    killed_at = time.monotonic()
    assert not client.exists(last), "the batch was published before the kill"
    user_ids = [str(number) for number in range(1, BATCH + 1)]
    lost = sum(version is None for version in redis_versions(client, "spring", user_ids).values())
    assert lost > 0

    wait_until(lambda: not differences(client, "spring"), timeout=40, interval=0.5)
    recovery = time.monotonic() - killed_at
    survivor = next(worker for worker in workers if worker is not victim)
    assert "re-enqueued 1 unpublished outbox events" in survivor.log()
    print(f"case 1: {lost} of {BATCH} not live at the kill; all live {recovery:.1f} s later")
