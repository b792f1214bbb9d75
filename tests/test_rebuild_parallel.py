"""The full rebuild split into chunk jobs: planned, shared by workers, resumed, finalized once.

Chunk jobs run either in this process (a real RQ worker in burst mode) or in
real `python -m workers` processes, against the suite's PostgreSQL and Redis.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import threading

import pytest
from common.publishing_support import delete_entry
from common.support import invoke, login, wait_until
from rq import Queue, SimpleWorker, Worker
from rq.job import Job
from rq.registry import StartedJobRegistry
from sqlalchemy import func, select, update

from ccadmin import keys, payload
from ccadmin.content.seed import seed_content
from ccadmin.extensions import db
from ccadmin.models import Campaign, ContentEntry, OutboxEvent
from ccadmin.publishing import rebuild_plan
from ccadmin.publishing.rebuild_plan import Plan, Recorded
from ccadmin.redis_client import get_store
from workers import redis_writes
from workers.context import AppJob
from workers.publish import content_columns, publish_entries
from workers.rebuild import REBUILD_LOCK_TTL, RECONCILE_INTERVAL, rebuild_chunk, start_rebuild
from workers.sweeper import ensure_ready

WORKER = ["-m", "workers"]
# Worker start-up and a rebuild of a few thousand entries on a busy 2-core machine.
TIMEOUT = 60.0


def seed(spring: int = 300, autumn: int = 40) -> int:
    """Two campaigns, some entries deleted (tombstones); how many entry rows."""
    seed_content("spring", spring, batch_size=100)
    if autumn:
        seed_content("autumn", autumn, batch_size=100)
    spring_campaign = db.session.execute(
        select(Campaign).where(Campaign.slug == "spring")
    ).scalar_one()
    for user_id in ("3", "30", str(spring)):
        delete_entry(spring_campaign, user_id)
    return spring + autumn


def assert_store_matches_database(redis_client) -> int:
    """Every entry row is in Redis with its version and body (or tombstone); how many."""
    rows = db.session.execute(
        select(
            Campaign.slug,
            ContentEntry.user_id,
            ContentEntry.version,
            ContentEntry.deleted,
            ContentEntry.fields,
        ).join(Campaign, Campaign.id == ContentEntry.campaign_id)
    ).all()
    db.session.rollback()
    pipeline = redis_client.pipeline(transaction=False)
    for row in rows:
        pipeline.hmget(
            keys.entry_key(row.slug, row.user_id), keys.ENTRY_VERSION_FIELD, keys.ENTRY_BODY_FIELD
        )
    wrong = []
    for row, (version, body) in zip(rows, pipeline.execute(), strict=True):
        expected = (
            b""
            if row.deleted
            else payload.render_payload(row.slug, row.user_id, row.version, row.fields)
        )
        if version is None or (int(version), body) != (row.version, expected):
            wrong.append((row.slug, row.user_id))
    assert not wrong, f"{len(wrong)} entries differ, e.g. {wrong[:5]}"
    return len(rows)


def unpublished_events() -> int:
    count = db.session.execute(
        select(func.count(OutboxEvent.id)).where(OutboxEvent.published_at.is_(None))
    ).scalar()
    db.session.rollback()
    return count


def work_rebuild_queue(redis_client) -> None:
    """Run the queued chunk jobs in this process with a real RQ worker."""
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        SimpleWorker([keys.REBUILD_QUEUE], connection=redis_client, job_class=AppJob).work(
            burst=True, logging_level=None
        )
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    db.session.rollback()  # see what the jobs committed


def ready_report(redis_client) -> dict | None:
    raw = redis_client.get(keys.READY)
    return None if raw is None else json.loads(raw)


def quiet_outbox() -> None:
    """Mark every outbox event published: the workers' drainers leave content_entry to the
    chunks."""
    db.session.execute(update(OutboxEvent).values(published_at=func.now()))
    db.session.commit()


def hold_sweepers_off(redis_client) -> None:
    """A ready store whose run_id is known and whose reconcile is not due: workers
    started now find nothing to do until the test starts its own rebuild."""
    redis_client.set(keys.READY, "{}")
    redis_client.set(keys.REDIS_RUN_ID, redis_client.info("server")["run_id"])
    redis_client.set(keys.RECONCILE_LOCK, "test", ex=600)


def page_text(client, url: str) -> str:
    """The page's HTML with every run of whitespace made one space."""
    return " ".join(client.get(url).get_data(as_text=True).split())


def flush_announcements(pubsub) -> int:
    """How many "drop everything" announcements (one per READY set) arrived."""
    count = 0
    while (message := pubsub.get_message(timeout=0.5)) is not None:
        count += message["type"] == "message" and message["data"] == b"*"
    return count


def test_a_rebuild_in_chunks_writes_every_entry_then_sets_ready(app, redis_client):
    entries = seed()
    redis_client.flushdb()  # Redis restarted empty
    before_rebuild = unpublished_events()
    status = start_rebuild(chunk_size=40)
    plan = rebuild_plan.read_plan(redis_client)
    assert status["rebuild_id"] == plan.rebuild_id and not status["finished"]
    assert plan.chunks == status["chunks"] > 5
    assert redis_client.get(keys.REBUILD_LOCK).decode() == plan.rebuild_id
    assert set(Queue(keys.REBUILD_QUEUE, connection=redis_client).job_ids) == {
        rebuild_plan.chunk_job_id(plan.rebuild_id, index) for index in range(plan.chunks)
    }
    # The config is published up front; entries and READY wait for the chunks.
    assert redis_client.get(keys.DEFAULT_CAMPAIGN) == b"spring"
    assert redis_client.hlen(keys.CAMPAIGNS) == 2
    assert not redis_client.exists(keys.READY)
    assert not redis_client.exists(keys.entry_key("spring", "1"))

    work_rebuild_queue(redis_client)
    report = ready_report(redis_client)
    assert report["rebuild_id"] == plan.rebuild_id
    assert (report["entries"], report["chunks"], report["campaigns"]) == (entries, plan.chunks, 2)
    assert assert_store_matches_database(redis_client) == entries
    # Pending outbox events are the drainers' to publish: nothing the rebuild
    # read is marked published behind their back.
    assert unpublished_events() == before_rebuild
    assert not redis_client.exists(keys.REBUILD_LOCK)
    finished = rebuild_plan.read_plan(redis_client)
    assert finished.finished and finished.chunks_done == plan.chunks
    assert sum(record["entries"] for record in rebuild_plan.done_chunks(redis_client).values()) == (
        entries
    )
    assert ensure_ready(redis_client) is None  # ready, nothing in progress


def test_each_chunk_is_counted_once_and_one_recording_sees_the_last(redis_client):
    redis_client.flushdb()
    plan = Plan("test-plan", 1, 10, 40, 1, 0.0, 1, 0)
    redis_client.set(keys.REBUILD_LOCK, plan.rebuild_id)
    assert rebuild_plan.write_plan(redis_client, plan, REBUILD_LOCK_TTL)
    outcomes: list[Recorded] = []
    lock = threading.Lock()

    def record_all(seed_value: int) -> None:
        order = list(range(plan.chunks))
        random.Random(seed_value).shuffle(order)
        for index in order:
            record = {"worker": f"w{seed_value}", "entries": 10 + index, "seconds": 0.0}
            outcome = rebuild_plan.record_chunk(
                redis_client, plan.rebuild_id, index, record, 1, 0, REBUILD_LOCK_TTL
            )
            with lock:
                outcomes.append(outcome)

    threads = [threading.Thread(target=record_all, args=(number,)) for number in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count(Recorded.LAST) == 1
    assert outcomes.count(Recorded.RECORDED) == plan.chunks - 1
    assert outcomes.count(Recorded.ALREADY_DONE) == 5 * plan.chunks
    progress = rebuild_plan.read_plan(redis_client)
    assert progress.chunks_done == plan.chunks
    assert progress.entries == sum(10 + index for index in range(plan.chunks))
    assert progress.written == plan.chunks

    record = {"worker": "old", "entries": 1, "seconds": 0.0}
    assert (
        rebuild_plan.record_chunk(redis_client, "another-plan", 0, record, 1, 0, REBUILD_LOCK_TTL)
        is Recorded.SUPERSEDED
    )
    assert rebuild_plan.finish(redis_client, plan.rebuild_id, 1.0, "{}")
    assert not rebuild_plan.finish(redis_client, plan.rebuild_id, 2.0, "{}")
    assert not redis_client.exists(keys.REBUILD_LOCK)
    redis_client.set(keys.REBUILD_LOCK, "someone-else")
    assert not rebuild_plan.write_plan(redis_client, plan, REBUILD_LOCK_TTL)


def test_chunk_jobs_run_again_change_nothing_and_finalize_once(app, redis_client):
    seed()
    redis_client.flushdb()
    pubsub = redis_client.pubsub()
    pubsub.subscribe(redis_writes.changes_channel(redis_client))
    status = start_rebuild(chunk_size=60)
    work_rebuild_queue(redis_client)
    ready = redis_client.get(keys.READY)
    plan = rebuild_plan.read_plan(redis_client)
    assert plan.finished

    # Every job again, as a sweeper that re-drove them all would run them.
    for index in range(plan.chunks):
        assert rebuild_chunk(plan.rebuild_id, index)["skipped"]
    again = Queue(keys.REBUILD_QUEUE, connection=redis_client)
    for index in range(plan.chunks):
        again.enqueue(
            "workers.rebuild.rebuild_chunk",
            plan.rebuild_id,
            index,
            job_id=rebuild_plan.chunk_job_id(plan.rebuild_id, index),
        )
    work_rebuild_queue(redis_client)
    assert redis_client.get(keys.READY) == ready
    assert rebuild_plan.read_plan(redis_client) == plan
    assert flush_announcements(pubsub) == 1
    pubsub.close()
    assert status["chunks"] == plan.chunks


def test_two_worker_processes_share_the_chunks_and_finalize_once(app, redis_client, spawn):
    entries = seed(spring=3_000, autumn=200)
    quiet_outbox()
    redis_client.flushdb()
    hold_sweepers_off(redis_client)
    spawn(WORKER)
    spawn(WORKER)
    wait_until(lambda: len(Worker.all(connection=redis_client)) == 2, timeout=TIMEOUT)
    pubsub = redis_client.pubsub()
    pubsub.subscribe(redis_writes.changes_channel(redis_client))

    rebuild_id = start_rebuild(chunk_size=100)["rebuild_id"]
    wait_until(
        lambda: (ready_report(redis_client) or {}).get("rebuild_id") == rebuild_id,
        timeout=TIMEOUT,
        interval=0.1,
    )
    plan = rebuild_plan.read_plan(redis_client)
    chunks = rebuild_plan.done_chunks(redis_client)
    assert sorted(chunks) == list(range(plan.chunks)) and plan.chunks >= 30
    owners = {record["worker"] for record in chunks.values()}
    assert len(owners) == 2, owners
    assert ready_report(redis_client)["workers"] == 2
    assert ready_report(redis_client)["entries"] == entries
    assert assert_store_matches_database(redis_client) == entries
    # Exactly one job recorded the last chunk and finalized; READY was set once.
    jobs = Job.fetch_many(
        [rebuild_plan.chunk_job_id(rebuild_id, index) for index in range(plan.chunks)],
        connection=redis_client,
    )
    assert {job.worker_name for job in jobs} == owners
    recorded = [job.return_value()["recorded"] for job in jobs]
    assert recorded.count("last") == 1 and recorded.count("recorded") == plan.chunks - 1
    assert flush_announcements(pubsub) == 1
    pubsub.close()


def test_a_chunk_killed_with_its_worker_is_redriven_and_the_rebuild_completes(
    app, redis_client, spawn
):
    if db.engine.dialect.name != "postgresql":
        # SQLite in WAL mode has no lock that holds readers; CI runs this on PostgreSQL.
        pytest.skip("holding a worker inside a chunk needs PostgreSQL's LOCK TABLE")
    entries = seed(spring=1_000, autumn=0)
    quiet_outbox()  # each worker must be held inside a chunk
    redis_client.flushdb()
    hold_sweepers_off(redis_client)
    rebuild_id = start_rebuild(chunk_size=100)["rebuild_id"]
    # Readers of content_entry wait behind this lock: each worker stays inside
    # the first chunk it takes until the test lets go.
    blocker = db.engine.connect()
    blocker.exec_driver_sql("LOCK TABLE content_entry IN ACCESS EXCLUSIVE MODE")
    try:
        workers = [spawn(WORKER), spawn(WORKER)]
        started = StartedJobRegistry(keys.REBUILD_QUEUE, connection=redis_client)
        wait_until(lambda: len(started.get_job_ids()) == 2, timeout=TIMEOUT)
        victim_job = Job.fetch(started.get_job_ids()[0], connection=redis_client)
        victim_pid = int(
            redis_client.hget(Worker.redis_worker_namespace_prefix + victim_job.worker_name, "pid")
        )
        victim = next(process for process in workers if process.pid == victim_pid)
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(timeout=10)
    finally:
        blocker.rollback()
        blocker.close()

    wait_until(
        lambda: (ready_report(redis_client) or {}).get("rebuild_id") == rebuild_id,
        timeout=TIMEOUT,
        interval=0.1,
    )
    killed_chunk = int(victim_job.id.rsplit("-", 1)[1])
    chunks = rebuild_plan.done_chunks(redis_client)
    assert len(chunks) == rebuild_plan.read_plan(redis_client).chunks
    assert chunks[killed_chunk]["worker"] != victim_job.worker_name
    assert {record["worker"] for record in chunks.values()} == {chunks[killed_chunk]["worker"]}
    assert ready_report(redis_client)["entries"] == entries
    assert assert_store_matches_database(redis_client) == entries


def test_a_stalled_rebuild_resumes_from_its_plan(app, redis_client):
    entries = seed(spring=300, autumn=0)
    redis_client.flushdb()
    status = start_rebuild(chunk_size=50)
    rebuild_id = status["rebuild_id"]
    rebuild_chunk(rebuild_id, 0)
    rebuild_chunk(rebuild_id, 1)
    first_records = rebuild_plan.done_chunks(redis_client)
    # The workers and their queue are gone, and nothing extended the lock.
    Queue(keys.REBUILD_QUEUE, connection=redis_client).empty()
    redis_client.delete(keys.REBUILD_LOCK)
    assert ensure_ready(redis_client) is None  # resumed, not started again
    assert redis_client.get(keys.REBUILD_LOCK).decode() == rebuild_id
    assert set(Queue(keys.REBUILD_QUEUE, connection=redis_client).job_ids) == {
        rebuild_plan.chunk_job_id(rebuild_id, index) for index in range(2, status["chunks"])
    }
    assert ensure_ready(redis_client) is None  # jobs queued: nothing enqueued twice
    assert len(Queue(keys.REBUILD_QUEUE, connection=redis_client)) == status["chunks"] - 2

    work_rebuild_queue(redis_client)
    report = ready_report(redis_client)
    assert (report["rebuild_id"], report["entries"]) == (rebuild_id, entries)
    records = rebuild_plan.done_chunks(redis_client)
    assert {index: records[index] for index in (0, 1)} == first_records
    assert assert_store_matches_database(redis_client) == entries


def test_a_finalizer_that_died_is_finalized_once_its_lock_expires(app, redis_client):
    entries = seed(spring=200, autumn=0)
    redis_client.flushdb()
    status = start_rebuild(chunk_size=50)
    rebuild_id, last = status["rebuild_id"], status["chunks"] - 1
    for index in range(last):
        rebuild_chunk(rebuild_id, index)
    # The last chunk's job writes and records its chunk, then dies before finalizing.
    plan = rebuild_plan.read_plan(redis_client)
    low, _ = plan.bounds(last)
    counts = publish_entries(redis_client, content_columns.id >= low)
    record = {"worker": "gone", "entries": counts.written, "seconds": 0.0}
    assert (
        rebuild_plan.record_chunk(
            redis_client, rebuild_id, last, record, counts.written, 0, REBUILD_LOCK_TTL
        )
        is Recorded.LAST
    )
    assert ensure_ready(redis_client) is None
    assert not redis_client.exists(keys.READY)  # the lock says the finalizer may be alive

    redis_client.delete(keys.REBUILD_LOCK)
    assert ensure_ready(redis_client) is None
    report = ready_report(redis_client)
    assert (report["rebuild_id"], report["entries"]) == (rebuild_id, entries)
    assert rebuild_plan.read_plan(redis_client).finished
    assert assert_store_matches_database(redis_client) == entries


def test_live_metrics_page_shows_rebuild_progress(app, client, redis_client, make_user):
    seed(spring=300, autumn=0)
    redis_client.flushdb()
    status = start_rebuild(chunk_size=50)
    for index in range(2):
        rebuild_chunk(status["rebuild_id"], index)
    make_user("admin@example.com")
    login(client, "admin@example.com")

    home = page_text(client, "/admin/metrics/")
    assert 'id="rebuild-progress"' in home
    assert "Full rebuild in progress" in home
    assert f"Chunks done: <strong>2 / {status['chunks']}</strong>" in home
    assert "entries written: <strong>100</strong>" in home
    assert "entries/s" in home and "ETA " in home and " s." in home

    work_rebuild_queue(redis_client)
    home = page_text(client, "/admin/metrics/")
    assert "Last full rebuild" in home and "Full rebuild in progress" not in home
    assert f"300 entries (300 written, 0 already current) in {status['chunks']} chunks" in home


def test_no_rebuild_section_before_any_rebuild(app, client, make_user):
    make_user("admin@example.com")
    login(client, "admin@example.com")
    assert 'id="rebuild-progress"' not in client.get("/admin/metrics/").get_data(as_text=True)


@pytest.mark.parametrize("chunk_size", ["25", "100000"])
def test_publish_all_works_the_chunk_jobs_itself(app, redis_client, chunk_size):
    entries = seed(spring=100, autumn=20)
    redis_client.flushdb()
    result = invoke(app, "publish", "--all", "--chunk-size", chunk_size)
    assert result.exit_code == 0, result.output
    chunks = rebuild_plan.read_plan(redis_client).chunks
    assert chunks == (1 if chunk_size == "100000" else 5)
    assert f"{entries} entries" in result.output and f"in {chunks} chunk(s)" in result.output
    assert ready_report(redis_client)["chunks"] == chunks
    assert assert_store_matches_database(redis_client) == entries
    assert invoke(app, "publish", "--all", "--chunk-size", "0").exit_code != 0
    # A build from the database stands for this Redis: no "Redis restarted"
    # reconcile of every entry afterwards, and the periodic one an interval away.
    assert redis_client.get(keys.REDIS_RUN_ID).decode() == redis_writes.redis_run_id(redis_client)
    assert redis_client.ttl(keys.RECONCILE_LOCK) > RECONCILE_INTERVAL - 60


def test_a_rebuild_with_the_store_on_a_cluster(app, redis_client, redis_cluster, cluster_client):
    """Plan, chunk records and lock share {rb}: every step is one script on one node."""
    settings = app.config["CCADMIN_SETTINGS"]
    app.config["CCADMIN_SETTINGS"] = dataclasses.replace(
        settings, redis_cluster_urls=tuple(redis_cluster.urls)
    )
    try:
        entries = seed(spring=200, autumn=30)
        on_cluster = get_store(app.config["CCADMIN_SETTINGS"])
        status = start_rebuild(chunk_size=50)
        # The jobs go to the queues' Redis; the bookkeeping lives with the store.
        assert len(Queue(keys.REBUILD_QUEUE, connection=redis_client)) == status["chunks"]
        assert not redis_client.exists(keys.REBUILD_PLAN)
        for index in reversed(range(status["chunks"])):
            rebuild_chunk(status["rebuild_id"], index)
        report = ready_report(on_cluster)
        assert (report["rebuild_id"], report["entries"]) == (status["rebuild_id"], entries)
        assert rebuild_plan.read_plan(on_cluster).finished
        assert not on_cluster.exists(keys.REBUILD_LOCK)
        assert assert_store_matches_database(on_cluster) == entries
    finally:
        app.config["CCADMIN_SETTINGS"] = settings
