"""Ingest API throughput: single writes, save-to-live, batches, a streamed import to live.

Starts its own stack on loopback: a private redis-server, the migrations, the
admin web process under waitress (wsgi:app) and --workers workers (`python -m
workers`), against DATABASE_URL (default: a temporary SQLite file). Creates a
campaign of its own and a write token, then measures

- single PUTs/s at 1, 8 and 16 keep-alive clients (--put-seconds each),
  against the baseline on PostgreSQL: a minimal correct write endpoint
  (bench/minimal_write.py) under the same waitress settings, in the same run;
- save-to-live while a steady load of single writes runs (--steady-seconds):
  at --steady-rate writes/s and at 80% of the measured maximum, with every
  written user checked in Redis at the end (bench/write_load.py);
- batch rows/s: --batches `content:batch` requests of --batch-rows NDJSON rows;
- a streamed import of --rows rows: from the start of the upload to the last
  row being live in Redis, broken down into upload (202 received), staged
  (the worker validated and staged every row), applied (the last batch
  committed) and live (the last user's key in Redis), with
  --saves-during-import single writes a second measured meanwhile;
- the rebuild of every entry into an emptied Redis by the worker's own
  sweeper, timed until the ready marker, with --saves-during-rebuild single
  writes a second measured meanwhile.

    .venv/bin/python -m bench.ingest --rows 1000000
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/h_bench make bench-ingest
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import redis
from rq import Queue

from bench import write_load, wrk
from bench.seed import PrivateRedis
from ccadmin import keys

PROJECT_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
# Phases of an import before its rows are staged (see docs/ingest.md).
BEFORE_STAGED = {"receiving", "received", "staging"}
POLL_SECONDS = 0.2
MESSAGE = "Your code for today is SPRING{:07d}"
WRITE_SCRIPT = Path(__file__).with_name("put_new_user.lua")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the streamed import")
    parser.add_argument("--format", choices=("ndjson", "csv"), default="ndjson")
    parser.add_argument("--put-seconds", type=float, default=10.0)
    parser.add_argument("--steady-seconds", type=float, default=60.0)
    parser.add_argument("--steady-rate", type=float, default=300.0)
    parser.add_argument(
        "--saves-during-import",
        type=float,
        default=10.0,
        help="single writes/s sent while the import runs (save-to-live)",
    )
    parser.add_argument(
        "--saves-during-rebuild",
        type=float,
        default=100.0,
        help="single writes/s sent while Redis is rebuilt (save-to-live)",
    )
    parser.add_argument("--saves-seconds", type=float, default=60.0)
    parser.add_argument(
        "--writes-only",
        action="store_true",
        help="single writes and save-to-live only (no batch, no import)",
    )
    parser.add_argument("--batch-rows", type=int, default=10_000)
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument(
        "--workers", type=int, default=2, help="worker processes (the deployment guide runs two)"
    )
    parser.add_argument(
        "--timeout", type=float, default=1800.0, help="seconds to wait for the import to be live"
    )
    return parser.parse_args()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class Stack:
    """Redis, web and worker processes of the benchmark, stopped together."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.api_port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="ccbench-ingest-"))
        self.redis = PrivateRedis()
        self.processes: list[subprocess.Popen] = []
        self.env: dict[str, str] = {}
        self.port = free_port()

    def start(self) -> redis.Redis:
        client = self.redis.start()
        database_url = os.environ.get("DATABASE_URL") or f"sqlite:///{self.folder}/bench.db"
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "REDIS_URL": self.redis.url,
            "SECRET_KEY": os.environ.get("SECRET_KEY") or secrets.token_urlsafe(32),
            # One client may not be slowed by the per-token limit it measures around.
            "CCADMIN_MANAGE_RATE_LIMIT": "100000000",
            "LOG_LEVEL": "WARNING",
        }
        os.environ.update(self.env)
        self.run([sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"])
        self.spawn(
            [
                sys.executable,
                "-m",
                "ccadmin.web",
                f"--listen={HOST}:{self.port}",
            ]
        )
        for _ in range(self.workers):
            self.spawn([sys.executable, "-m", "workers"])
        # The endpoint the caller reads: the end of every save-to-live check.
        api_env = {**self.env, "API_PORT": str(self.api_port), "API_PROCESSES": "1"}
        self.spawn([sys.executable, "-m", "ccadmin.api"], api_env)
        self.wait_for_web(self.port)
        self.wait_for_web(self.api_port, "/healthz")
        return client

    def start_baseline(self, token: str) -> int:
        """The minimal write endpoint beside the admin, same server settings; its port."""
        port = free_port()
        log = (self.folder / "processes.log").open("ab")
        self.processes.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "waitress",
                    f"--listen={HOST}:{port}",
                    "--threads=8",
                    "bench.minimal_write:app",
                ],
                cwd=PROJECT_ROOT,
                env={**self.env, "BENCH_TOKEN": token},
                start_new_session=True,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        self.wait_for_web(port, "/content/probe")
        return port

    def run(self, command: list[str]) -> None:
        subprocess.run(
            command, cwd=PROJECT_ROOT, env=self.env, check=True, stdout=subprocess.DEVNULL
        )

    def spawn(self, command: list[str], env: dict[str, str] | None = None) -> None:
        # Their logs go to a file, shown if the benchmark fails.
        log = (self.folder / "processes.log").open("ab")
        self.processes.append(
            subprocess.Popen(
                command,
                cwd=PROJECT_ROOT,
                env=env or self.env,
                start_new_session=True,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )

    def log_tail(self, lines: int = 40) -> str:
        path = self.folder / "processes.log"
        if not path.exists():
            return "(no process output)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def wait_for_web(self, port: int, path: str = "/login", timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=2).close()
                return
            except urllib.error.HTTPError:
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"the web process on port {port} did not answer")

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.redis.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


def create_campaign_and_token(slug: str) -> tuple[str, str]:
    """The benchmark's campaign, a write token and an API key for it (as the admin
    creates them)."""
    from ccadmin import publishing
    from ccadmin.app import create_app
    from ccadmin.content.seed import ensure_campaign
    from ccadmin.extensions import db
    from ccadmin.models import ApiKey, ManagementToken
    from ccadmin.models.api_keys import new_key_secret as new_api_key
    from ccadmin.models.credentials import hash_secret
    from ccadmin.models.management_tokens import SCOPE_WRITE
    from ccadmin.models.management_tokens import new_token_secret as new_secret

    app = create_app()
    with app.app_context():
        ensure_campaign(slug, actor="bench")
        secret = new_secret()
        db.session.add(
            ManagementToken(
                name=f"bench-{slug}",
                prefix=secret[:12],
                secret_hash=hash_secret(secret),
                scope=SCOPE_WRITE,
                campaigns=[slug],
            )
        )
        api_key = new_api_key()
        db.session.add(
            ApiKey(
                name=f"bench-{slug}",
                prefix=api_key[:11],
                secret_hash=hash_secret(api_key),
                campaigns=[slug],
            )
        )
        publishing.record_api_keys_change()
        db.session.commit()
        db.engine.dispose()
    return secret, api_key


class Client:
    """One keep-alive connection to the ingest API."""

    def __init__(self, port: int, token: str, timeout: float = 600.0) -> None:
        self.connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
        self.headers = {"Authorization": f"Bearer {token}"}

    def call(
        self, method: str, path: str, body: bytes | None = None, content_type: str | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        headers = dict(self.headers)
        if content_type:
            headers["Content-Type"] = content_type
        self.connection.request(method, path, body=body, headers=headers)
        response = self.connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()


def ndjson_rows(prefix: str, start: int, count: int) -> bytes:
    return "".join(
        f'{{"user_id":"{prefix}-{n}","message":"{MESSAGE.format(n)}"}}\n'
        for n in range(start, start + count)
    ).encode()


def csv_rows(prefix: str, count: int) -> bytes:
    lines = "".join(f"{prefix}-{n},{MESSAGE.format(n)}\n" for n in range(1, count + 1))
    return ("user_id,message\n" + lines).encode()


def measure_batches(client: Client, slug: str, rows: int, batches: int) -> float:
    """Rows per second written by consecutive content:batch requests."""
    bodies = [ndjson_rows(f"batch{number}", 1, rows) for number in range(batches)]
    started = time.perf_counter()
    for body in bodies:
        status, _, answer = client.call(
            "POST", f"/manage/v1/campaigns/{slug}/content:batch", body, "application/x-ndjson"
        )
        if status != 200:
            raise RuntimeError(f"batch answered {status}: {answer[:200]!r}")
    return rows * batches / (time.perf_counter() - started)


def measure_import(
    client: Client,
    redis_client: redis.Redis,
    slug: str,
    rows: int,
    body_format: str,
    timeout: float,
) -> dict[str, Any]:
    """Seconds from the start of the upload to each phase of one streamed import."""
    if body_format == "csv":
        body, content_type = csv_rows("imp", rows), "text/csv"
    else:
        body, content_type = ndjson_rows("imp", 1, rows), "application/x-ndjson"
    last_key = keys.entry_key(slug, f"imp-{rows}")
    started = time.perf_counter()
    status, headers, answer = client.call(
        "POST", f"/manage/v1/campaigns/{slug}/imports", body, content_type
    )
    if status != 202:
        raise RuntimeError(f"import answered {status}: {answer[:300]!r}")
    times = {"upload": time.perf_counter() - started}
    location = headers["Location"]
    deadline = started + timeout
    state: dict[str, Any] = {}
    while "applied" not in times:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"the import did not finish: {state}")
        _, _, answer = client.call("GET", location)
        state = json.loads(answer)
        now = time.perf_counter() - started
        if state["status"] not in BEFORE_STAGED:
            times.setdefault("staged", now)
        if state["status"] == "applied":
            times["applied"] = now
        elif state["status"] in ("invalid", "ready", "failed"):
            raise RuntimeError(f"the import stopped as {state['status']}: {state['errors']}")
        time.sleep(POLL_SECONDS)
    while not redis_client.exists(last_key):
        if time.perf_counter() > deadline:
            raise RuntimeError("the last row did not reach Redis")
        time.sleep(0.05)
    times["live"] = time.perf_counter() - started
    times["bytes"] = len(body)
    times["written"] = state["progress"]["written"]
    return times


def wait_idle(redis_client: redis.Redis, timeout: float = 600.0) -> None:
    """Until the worker has published the earlier measurements and run its import jobs."""
    from sqlalchemy import create_engine, text

    from ccadmin.config import normalize_database_url

    engine = create_engine(normalize_database_url(os.environ["DATABASE_URL"]))
    queue = Queue(keys.IMPORT_QUEUE, connection=redis_client)
    deadline = time.monotonic() + timeout
    try:
        while True:
            with engine.connect() as connection:
                pending = connection.execute(
                    text("SELECT count(*) FROM outbox_event WHERE published_at IS NULL")
                ).scalar()
            if not (pending or queue.count or queue.started_job_registry.count):
                return
            if time.monotonic() > deadline:
                raise RuntimeError("the worker did not drain the outbox and its queue")
            time.sleep(0.2)
    finally:
        engine.dispose()


def measure_single_writes(
    stack: Stack, token: str, slug: str, seconds: float
) -> dict[int, wrk.WrkResult]:
    """Single PUTs (wrk, every request a new user) at 1, 8 and 16 connections: ours, and
    the baseline's on PostgreSQL measured just before at the same step."""
    baseline_port = None
    if stack.env["DATABASE_URL"].startswith("postgres"):
        baseline_port = stack.start_baseline(token)
    ours: dict[int, wrk.WrkResult] = {}
    for connections in (1, 8, 16):
        base = None
        if baseline_port is not None:
            base = put_load(baseline_port, token, "/content/", connections, seconds)
            print(write_line("minimal endpoint", base), flush=True)
        ours[connections] = put_load(
            stack.port, token, f"/manage/v1/campaigns/{slug}/content/", connections, seconds
        )
        line = write_line("ccadmin PUT", ours[connections])
        if base is not None:
            line += f"  ({ours[connections].rate / base.rate:.2f}x the minimal endpoint)"
        print(line, flush=True)
    return ours


def put_load(port: int, token: str, prefix: str, connections: int, seconds: float):
    """wrk PUTting new users under `prefix` over `connections` keep-alive connections."""
    return wrk.run(
        f"http://{HOST}:{port}",
        connections,
        seconds,
        token,
        0,
        script=WRITE_SCRIPT,
        script_args=[token, prefix, f"c{connections}-{time.monotonic_ns()}"],
    )


def write_line(label: str, result: wrk.WrkResult) -> str:
    return (
        f"  {label:<18} {result.connections:>2} connections {result.rate:8,.0f} writes/s  "
        f"p50 {result.p50_ms:6.1f} ms  p99 {result.p99_ms:6.1f} ms  {result.errors} errors"
    )


def measure_rebuild(
    stack: Stack,
    token: str,
    slug: str,
    path_for: Any,
    redis_client: redis.Redis,
    args: argparse.Namespace,
    reader: Any,
) -> dict[str, Any]:
    """Empty Redis (as a restart without its data would) and time the worker's automatic
    rebuild of every entry, while --saves-during-rebuild single writes a second arrive.

    The flush is asynchronous: a synchronous one of millions of keys blocks Redis for
    seconds, which no restart does.
    """
    redis_client.flushall(asynchronous=True)
    started = time.perf_counter()
    writes: list[write_load.LiveResult] = []
    writer = threading.Thread(
        target=lambda: writes.append(
            write_load.steady_save_to_live(
                stack.port,
                token,
                slug,
                path_for,
                redis_client,
                args.saves_during_rebuild,
                args.saves_seconds,
                writers=4,
                users=2_000,
                api=reader(),
            )
        )
    )
    writer.start()
    wait_ready(redis_client)
    seconds = time.perf_counter() - started
    writer.join()
    report = json.loads(redis_client.get(keys.READY))
    return {"entries": report["entries"], "seconds": seconds, "writes": writes[0]}


def wait_ready(redis_client: redis.Redis, timeout: float = 600.0) -> None:
    """Until the worker has built Redis from the database (the ready marker)."""
    deadline = time.monotonic() + timeout
    while not redis_client.exists(keys.READY):
        if time.monotonic() > deadline:
            raise RuntimeError("Redis was not built within the timeout")
        time.sleep(0.2)


def main() -> None:
    args = parse_args()
    stack = Stack(args.workers)
    try:
        redis_client = stack.start()
        wait_ready(redis_client)
        slug = f"ingest-{int(time.time())}"
        token, api_key = create_campaign_and_token(slug)
        reader = lambda: write_load.ApiReader(stack.api_port, api_key)  # noqa: E731
        client = Client(stack.port, token)
        database = stack.env["DATABASE_URL"].split("://", 1)[0]
        print(
            f"ingest benchmark: {database}, campaign {slug}, {args.workers} worker(s)", flush=True
        )
        ours = measure_single_writes(stack, token, slug, args.put_seconds)
        wait_idle(redis_client)
        path_for = lambda user: f"/manage/v1/campaigns/{slug}/content/{user}"  # noqa: E731
        fastest = max(result.rate for result in ours.values())
        for rate in (args.steady_rate, 0.8 * fastest):
            live = write_load.steady_save_to_live(
                stack.port,
                token,
                slug,
                path_for,
                redis_client,
                rate,
                args.steady_seconds,
                api=reader(),
            )
            print(live.line(), flush=True)
            wait_idle(redis_client)
        if args.writes_only:
            return
        batch = measure_batches(client, slug, args.batch_rows, args.batches)
        print(
            f"  batch             {batch:10,.0f} rows/s ({args.batches} x "
            f"{args.batch_rows:,} rows)",
            flush=True,
        )
        wait_idle(redis_client)
        # A marketer's saves while the import is staged and applied: the fresh
        # lane must not wait behind the bulk work.
        fresh: list[write_load.LiveResult] = []
        saves = threading.Thread(
            target=lambda: fresh.append(
                write_load.steady_save_to_live(
                    stack.port,
                    token,
                    slug,
                    path_for,
                    redis_client,
                    args.saves_during_import,
                    args.saves_seconds,
                    writers=2,
                    users=200,
                    api=reader(),
                )
            )
        )
        saves.start()
        result = measure_import(client, redis_client, slug, args.rows, args.format, args.timeout)
        saves.join()
        print(
            f"  import {args.rows:,} rows ({args.format}, {result['bytes'] / 1e6:,.0f} MB):"
            f" live in Redis after {result['live']:.1f} s",
            flush=True,
        )
        previous = 0.0
        for phase in ("upload", "staged", "applied", "live"):
            print(f"    {phase:<8} at {result[phase]:7.1f} s  (+{result[phase] - previous:.1f} s)")
            previous = result[phase]
        print(
            f"    {args.rows / result['live']:,.0f} rows/s end to end, "
            f"{result['written']:,} rows written"
        )
        print(
            "  single saves during the import's first "
            f"{args.saves_seconds:.0f} s:\n" + fresh[0].line(),
            flush=True,
        )
        wait_idle(redis_client)
        rebuilt = measure_rebuild(stack, token, slug, path_for, redis_client, args, reader)
        print(
            f"  rebuild of {rebuilt['entries']:,} entries into an emptied Redis: ready after "
            f"{rebuilt['seconds']:.1f} s, with single writes running:\n" + rebuilt["writes"].line(),
            flush=True,
        )
    except Exception:
        print(stack.log_tail(), file=sys.stderr)
        raise
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
