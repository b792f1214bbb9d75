"""Full rebuild: N entries from PostgreSQL into an empty Redis, by 1, 2, 4 ... workers.

Seeds the campaign `rebuild-bench` with users 1..N in PostgreSQL (one
INSERT ... SELECT from generate_series per million rows, kept between runs),
then for each worker count: empties a private redis-server, starts that many
`python -m workers` processes, starts the rebuild (workers.rebuild.start_rebuild,
what `flask publish --all` and the sweeper call) and times it until the ready
marker is set. Reports seconds, entries/s, the speed-up over the first count,
how the chunks were shared, and the CPU seconds the workers and Redis used.
With --writes-per-second R, single writes to existing entries keep arriving
at R per second while each rebuild runs (written as the ingest API writes
them); their save-to-live lag and any write not live at the end are reported.
Prints a table and writes JSON under bench/results/.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/ccbench \\
        .venv/bin/python -m bench.rebuild --entries 1000000 --workers 1,2,4 \\
        --writes-per-second 300
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
from rq import Worker

from bench import write_load
from bench.seed import PrivateRedis
from ccadmin import keys

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).with_name("results")
CAMPAIGN = "rebuild-bench"
SEED_BATCH = 1_000_000
# Worker start-up (imports, app) on a busy machine.
START_TIMEOUT = 120.0
# Entries looked up in Redis after each run to check the build.
SAMPLE = 1_000
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

_INSERT_USERS = """
INSERT INTO content_entry
    (campaign_id, user_id, fields, version, deleted, updated_at, updated_by, last_event_id)
SELECT :campaign_id, n::text,
       jsonb_build_object('message', left(repeat(md5(n::text), 5), 140)),
       1, false, now(), 'bench', :event_id
FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS n
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--workers", default="1,2,4", help="worker counts, comma-separated")
    parser.add_argument(
        "--chunk-size",
        type=int,
        default=None,
        help="ids per chunk job (default: workers.rebuild.CHUNK_IDS)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per worker count (median)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per rebuild")
    parser.add_argument(
        "--writes-per-second",
        type=float,
        default=0.0,
        help="single writes to existing entries while each rebuild runs",
    )
    parser.add_argument(
        "--reconcile",
        action="store_true",
        help="after each rebuild, time a periodic reconcile by the workers' "
        "sweeper, with the same writes running",
    )
    args = parser.parse_args()
    args.worker_counts = [int(count) for count in args.workers.split(",")]
    return args


def seed_database(entries: int) -> int:
    """Users 1..`entries` in the bench campaign (added if fewer); every entry row's count."""
    from sqlalchemy import func, select, text, update

    from ccadmin import publishing
    from ccadmin.content.seed import ensure_campaign
    from ccadmin.extensions import db
    from ccadmin.models import ContentEntry, OutboxEvent

    campaign, _ = ensure_campaign(CAMPAIGN, actor="bench")
    have = db.session.execute(
        select(func.count()).where(ContentEntry.campaign_id == campaign.id)
    ).scalar()
    started = time.monotonic()
    for first in range(have + 1, entries + 1, SEED_BATCH):
        last = min(first + SEED_BATCH - 1, entries)
        outbox_event = publishing.record_content_batch(campaign.id, last - first + 1, wake=False)
        db.session.execute(
            text(_INSERT_USERS),
            {"campaign_id": campaign.id, "event_id": outbox_event.id, "first": first, "last": last},
        )
        db.session.commit()
        print(f"  seeded users {first:,}-{last:,} ({time.monotonic() - started:.0f} s)", flush=True)
    # What the rebuild measured here publishes is all there is: no publish
    # job of the seeding competes with it.
    db.session.execute(
        update(OutboxEvent)
        .where(OutboxEvent.published_at.is_(None))
        .values(published_at=func.now())
    )
    db.session.commit()
    if have < entries:
        db.session.execute(text("ANALYZE content_entry"))
        db.session.commit()
    total = db.session.execute(select(func.count()).select_from(ContentEntry)).scalar()
    db.session.rollback()
    return total


class Workers:
    """`python -m workers` processes, their logs in one file, stopped together."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.processes: list[subprocess.Popen] = []

    def start(self, count: int) -> None:
        with self.log_path.open("ab") as log:
            for _ in range(count):
                self.processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "workers"],
                        cwd=PROJECT_ROOT,
                        env=self.env,
                        start_new_session=True,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )

    def cpu_seconds(self) -> float:
        """User + system CPU of every worker process and its children so far."""
        total = 0
        for process in self.processes:
            for pid in _process_group(process.pid):
                try:
                    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                total += int(fields[11]) + int(fields[12])
        return total / _CLOCK_TICKS

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes = []

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def _process_group(pgid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            pids.append(int(entry.name))
    return pids


def redis_cpu_seconds(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} within {timeout:.0f} s")
        time.sleep(interval)


class SteadyWriter(threading.Thread):
    """Single writes to random existing entries at a fixed rate, each watched until live.

    Written as the ingest API writes them (publishing/entry_writes.py, then a
    commit that wakes the drainers), from this process.
    """

    def __init__(self, app: Any, client: redis.Redis, rate: float, entries: int) -> None:
        super().__init__(name="steady-writer", daemon=True)
        self.app = app
        self.rate = rate
        self.entries = entries
        self.stopping = threading.Event()
        self.watcher = write_load.LiveWatcher(client, CAMPAIGN, give_up_after=30.0)
        self.count = 0

    def run(self) -> None:
        from sqlalchemy import select

        from ccadmin.extensions import db
        from ccadmin.models import Campaign
        from ccadmin.publishing import entry_writes

        self.watcher.start()
        with self.app.app_context():
            campaign_id = db.session.scalar(select(Campaign.id).where(Campaign.slug == CAMPAIGN))
            started = time.perf_counter()
            while not self.stopping.is_set():
                time.sleep(max(0.0, started + self.count / self.rate - time.perf_counter()))
                user_id = str(random.randint(1, self.entries))
                sent_at = time.perf_counter()
                before = entry_writes.lock_entry(campaign_id, user_id)
                fields = {"message": f"written during the rebuild, #{self.count}"}
                saved = entry_writes.write_entry(
                    campaign_id, user_id, fields, "bench", "update", before
                )
                db.session.commit()
                self.watcher.written(user_id, saved.version, sent_at)
                self.count += 1

    def finish(self) -> dict[str, Any]:
        """Stop writing; the writes made, their save-to-live lags, and how many never went live."""
        self.stopping.set()
        self.join()
        not_live = self.watcher.finish()
        lags = self.watcher.lags
        return {
            "writes": self.count,
            "lag_p50_ms": round(write_load.percentile(lags, 0.5) * 1000, 1),
            "lag_p99_ms": round(write_load.percentile(lags, 0.99) * 1000, 1),
            "not_live": not_live,
        }


def time_reconcile(
    client: redis.Redis, timeout: float, writer: SteadyWriter | None
) -> dict[str, Any]:
    """A periodic reconcile by a worker's sweeper (its schedule cleared), with `writer` writing."""
    client.delete(keys.RECONCILE_REPORT)
    if writer is not None:
        writer.start()
    started = time.time()
    client.delete(keys.RECONCILE_LOCK)
    wait_for(lambda: client.exists(keys.RECONCILE_REPORT), timeout, "no reconcile ran")
    seconds = time.time() - started
    return {
        "seconds": round(seconds, 2),
        "report": json.loads(client.get(keys.RECONCILE_REPORT)),
        "writes": writer.finish() if writer is not None else None,
    }


def writer(app: Any, client: redis.Redis, rate: float, entries: int) -> SteadyWriter | None:
    """A steady writer at `rate` writes/s, or None for no writes."""
    return SteadyWriter(app, client, rate, entries) if rate else None


def run_once(
    client: redis.Redis,
    workers: Workers,
    count: int,
    chunk_size: int,
    timeout: float,
    entries: int,
    writer: SteadyWriter | None = None,
    reconcile_writer: SteadyWriter | bool = False,
) -> dict[str, Any]:
    """One rebuild by `count` fresh workers into an empty Redis, with `writer` writing;
    then, if asked, a periodic reconcile with `reconcile_writer` writing."""
    from ccadmin.publishing import rebuild_plan
    from workers.rebuild import RebuildInProgress, start_rebuild

    client.flushall()
    # Held until the workers are up: their sweepers find READY missing and
    # would start a rebuild of their own before every worker listens.
    client.set(keys.REBUILD_LOCK, "bench")
    # A sweeper that starts a rebuild notes Redis's run_id and the next
    # reconcile; this one is started here, so the bench notes them: no
    # reconcile of every entry runs right after READY, timed or not.
    client.set(keys.REDIS_RUN_ID, client.info("server")["run_id"])
    client.set(keys.RECONCILE_LOCK, "bench", ex=3600)
    workers.start(count)
    wait_for(
        lambda: Worker.count(connection=client) == count,
        START_TIMEOUT,
        f"{count} workers did not start",
    )
    cpu_before = workers.cpu_seconds()
    redis_cpu_before = redis_cpu_seconds(client)
    client.delete(keys.REBUILD_LOCK)
    if writer is not None:
        writer.start()
    started = time.time()
    try:
        start_rebuild(chunk_size=chunk_size)
    except RebuildInProgress:  # a sweeper started it first: time it from its plan
        started = rebuild_plan.read_plan(client).started_at
    wait_for(lambda: client.exists(keys.READY), timeout, "the rebuild did not finish")
    seconds = time.time() - started
    writes = writer.finish() if writer is not None else None
    report = json.loads(client.get(keys.READY))
    worker_cpu = workers.cpu_seconds() - cpu_before
    redis_cpu = redis_cpu_seconds(client) - redis_cpu_before
    chunks = rebuild_plan.done_chunks(client)
    per_worker = Counter(record["worker"] for record in chunks.values())
    missing = check_sample(client, entries)
    used_memory = client.info("memory")["used_memory"]
    reconciled = None
    if reconcile_writer is not False:
        reconciled = time_reconcile(client, timeout, reconcile_writer or None)
    workers.stop()
    if report["entries"] != entries or missing:
        raise RuntimeError(
            f"incomplete build: {report['entries']} of {entries} entries, "
            f"{missing} of {SAMPLE} sampled users missing"
        )
    return {
        "workers": count,
        "seconds": round(seconds, 2),
        "plan_to_ready_seconds": report["seconds"],
        "entries": report["entries"],
        "rate": round(report["entries"] / seconds),
        "chunks": report["chunks"],
        "chunks_per_worker": sorted(per_worker.values(), reverse=True),
        "chunk_seconds_median": round(
            statistics.median(record["seconds"] for record in chunks.values()), 2
        ),
        "worker_cpu_seconds": round(worker_cpu, 1),
        "redis_cpu_seconds": round(redis_cpu, 1),
        "redis_used_memory_mb": round(used_memory / 1e6),
        "writes_during_rebuild": writes,
        "reconcile": reconciled,
    }


def check_sample(client: redis.Redis, entries: int) -> int:
    """How many of SAMPLE random bench users have no entry in Redis."""
    users = [str(random.randint(1, entries)) for _ in range(SAMPLE)]
    pipeline = client.pipeline(transaction=False)
    for user_id in users:
        pipeline.exists(keys.entry_key(CAMPAIGN, user_id))
    return sum(1 for found in pipeline.execute() if not found)


def print_row(row: dict[str, Any], baseline: float) -> None:
    print(
        f"  {row['workers']:>7}  {row['seconds']:>9.1f}  {row['rate']:>11,}  "
        f"{baseline / row['seconds']:>7.2f}x  {row['chunks']:>6}  "
        f"{'/'.join(map(str, row['chunks_per_worker'])):>14}  "
        f"{row['worker_cpu_seconds']:>10.1f}  {row['redis_cpu_seconds']:>9.1f}",
        flush=True,
    )
    reconciled = row["reconcile"]
    if reconciled:
        print(
            f"           then a periodic reconcile of every entry: {reconciled['seconds']} s",
            flush=True,
        )
        for name, writes in (
            ("rebuild", row["writes_during_rebuild"]),
            ("reconcile", reconciled["writes"]),
        ):
            if writes:
                print(
                    f"           {writes['writes']:,} single writes during the {name}: "
                    f"save-to-live p50 {writes['lag_p50_ms']} ms, p99 {writes['lag_p99_ms']} ms, "
                    f"{writes['not_live']} not live",
                    flush=True,
                )
        return
    writes = row["writes_during_rebuild"]
    if writes:
        print(
            f"           {writes['writes']:,} single writes during it: save-to-live p50 "
            f"{writes['lag_p50_ms']} ms, p99 {writes['lag_p99_ms']} ms, "
            f"{writes['not_live']} not live",
            flush=True,
        )


def main() -> None:
    args = parse_args()
    database_url = os.environ.get("DATABASE_URL", "")
    if not database_url.startswith(("postgresql://", "postgres://")):
        sys.exit("bench.rebuild needs DATABASE_URL=postgresql://... (a database it may fill)")
    private_redis = PrivateRedis()
    folder = Path(tempfile.mkdtemp(prefix="ccbench-rebuild-"))
    private_redis.start()
    # Emptying millions of keys (FLUSHALL) takes longer than a default timeout.
    client = redis.Redis.from_url(private_redis.url, socket_timeout=600)
    env = {
        **os.environ,
        "REDIS_URL": private_redis.url,
        "SECRET_KEY": os.environ.get("SECRET_KEY") or secrets.token_urlsafe(32),
        "LOG_LEVEL": "WARNING",
    }
    os.environ.update(env)
    workers = Workers(env, folder / "workers.log")
    try:
        subprocess.run(
            [sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"],
            cwd=PROJECT_ROOT,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        from ccadmin.app import create_app
        from workers.rebuild import CHUNK_IDS

        chunk_size = args.chunk_size or CHUNK_IDS
        app = create_app()
        with app.app_context():
            print(
                f"rebuild benchmark: {os.cpu_count()} CPUs, chunks of {chunk_size:,} ids",
                flush=True,
            )
            entries = seed_database(args.entries)
            print(f"  {entries:,} entries in the database", flush=True)
            print(
                f"  {'workers':>7}  {'seconds':>9}  {'entries/s':>11}  {'speedup':>8}  "
                f"{'chunks':>6}  {'per worker':>14}  {'worker CPU':>10}  {'Redis CPU':>9}"
            )
            rows: list[dict[str, Any]] = []
            for count in args.worker_counts:
                runs = [
                    run_once(
                        client,
                        workers,
                        count,
                        chunk_size,
                        args.timeout,
                        entries,
                        writer(app, client, args.writes_per_second, entries),
                        args.reconcile and writer(app, client, args.writes_per_second, entries),
                    )
                    for _ in range(args.repeat)
                ]
                runs.sort(key=lambda run: run["seconds"])
                row = {**runs[len(runs) // 2], "runs_seconds": [run["seconds"] for run in runs]}
                rows.append(row)
                print_row(row, rows[0]["seconds"])
    except Exception:
        print(workers.log_tail(), file=sys.stderr)
        raise
    finally:
        workers.stop()
        private_redis.stop()
        shutil.rmtree(folder, ignore_errors=True)
    results = {
        "benchmark": "rebuild",
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
        "entries": entries,
        "chunk_size": chunk_size,
        "rows": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"rebuild-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"  results: {path.relative_to(PROJECT_ROOT)}")


if __name__ == "__main__":
    main()
