"""Workers scale out: several processes share the queues, each job runs once."""

from __future__ import annotations

from collections import Counter

from fault_support import differences, wait_ready
from publishing_support import make_campaign, save_entry
from rq import Queue
from rq.job import Job
from rq.registry import FinishedJobRegistry, StartedJobRegistry
from support import wait_until

from ccadmin import keys
from workers import store


def test_two_workers_share_the_publish_queue_without_double_work(
    fault_app, private_redis, processes
):
    client = private_redis.start()
    campaign = make_campaign("spring")
    processes.worker()
    processes.worker()
    wait_ready(client)
    # The campaign's own job (queued before the workers and the first build) is done.
    wait_until(
        lambda: not Queue(keys.PUBLISH_QUEUE, connection=client).count
        and not StartedJobRegistry(keys.PUBLISH_QUEUE, connection=client).count,
        timeout=30,
    )
    before = store.stats(client)

    for number in range(120):
        save_entry(campaign, str(number), f"message {number}")
    wait_until(lambda: not differences(client, "spring"), timeout=60)

    registry = FinishedJobRegistry(keys.PUBLISH_QUEUE, connection=client)
    jobs = [job for job in Job.fetch_many(registry.get_job_ids(), connection=client) if job]
    by_worker = Counter(job.worker_name for job in jobs)
    assert len(by_worker) == 2, by_worker  # both took a share
    after = store.stats(client)
    assert after[keys.STAT_WRITES] - before.get(keys.STAT_WRITES, 0) == 120
    # No job ran twice: a second run would have been refused as stale.
    assert after.get(keys.STAT_STALE_WRITES, 0) == before.get(keys.STAT_STALE_WRITES, 0)
