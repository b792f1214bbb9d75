"""Breakable services for the fault tests: a private redis-server, worker and API processes."""

from __future__ import annotations

import dataclasses
import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import redis
from sqlalchemy import select

from ccadmin import config, keys
from ccadmin.extensions import db
from ccadmin.models import OutboxEvent
from common.api_support import ENV_KEY, mark_ready, publish_campaign, publish_entry
from common.redis_server import RedisServer
from common.support import free_port, wait_until

PROJECT_ROOT = config.PROJECT_ROOT
# The endpoint key every API process of these tests accepts.
AUTH = {"X-API-Key": ENV_KEY}
# Worker and API start-up (imports, a first rebuild) on a busy 2-core machine.
START_TIMEOUT = 30.0


@dataclasses.dataclass
class Process:
    """A started worker or API: its Popen and the file its output goes to."""

    popen: subprocess.Popen
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        """Signal the process group (the worker's RQ scheduler is a child)."""
        os.killpg(self.popen.pid, signum)

    def kill(self) -> None:
        """kill -9 the whole process group and reap it (no zombie left to look alive)."""
        if self.popen.poll() is None:
            self.signal(signal.SIGKILL)
        self.popen.wait(timeout=10)

    def alive(self) -> bool:
        return self.popen.poll() is None


class Processes:
    """Starts workers and APIs against the private Redis; stops them at teardown."""

    def __init__(self, folder: Path, redis_server: RedisServer) -> None:
        self.folder = folder
        self.redis_server = redis_server
        self.started: list[Process] = []

    def _start(self, args: list[str], name: str, env: dict[str, str] | None) -> Process:
        log_path = self.folder / f"{name}-{len(self.started)}.log"
        with open(log_path, "wb") as output:
            popen = subprocess.Popen(
                [sys.executable, *args],
                cwd=PROJECT_ROOT,
                env={**os.environ, "REDIS_URL": self.redis_server.url, **(env or {})},
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        process = Process(popen, log_path)
        self.started.append(process)
        return process

    def worker(self, env: dict[str, str] | None = None) -> Process:
        """`python -m workers`; returns at once (wait for keys.READY if needed)."""
        return self._start(["-m", "workers"], "worker", env)

    def api(self, env: dict[str, str] | None = None) -> tuple[Process, int]:
        """`python -m ccadmin.api` on a free port, once /healthz answers."""
        port = free_port()
        process = self._start(
            ["-m", "ccadmin.api"],
            "api",
            {"API_PORT": str(port), "API_PROCESSES": "1", "API_HOST": "127.0.0.1", **(env or {})},
        )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert process.alive(), process.log()
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).close()
                return process, port
            except urllib.error.HTTPError:
                return process, port
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"API did not start:\n{process.log()}") from None
                time.sleep(0.1)

    def stop_all(self) -> None:
        for process in self.started:
            if process.alive():
                process.signal(signal.SIGTERM)
        for process in self.started:
            try:
                process.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def wait_ready(client: redis.Redis, timeout: float = START_TIMEOUT) -> None:
    """Until a full build has set the ready marker."""
    wait_until(lambda: client.exists(keys.READY), timeout=timeout, interval=0.1)


def database_versions(slug: str) -> dict[str, int]:
    """user_id -> version of every entry of a campaign, as the database holds them."""
    from sqlalchemy import select

    from ccadmin.extensions import db
    from ccadmin.models import Campaign, ContentEntry

    rows = db.session.execute(
        select(ContentEntry.user_id, ContentEntry.version)
        .join(Campaign, Campaign.id == ContentEntry.campaign_id)
        .where(Campaign.slug == slug)
    ).all()
    db.session.rollback()
    return dict(rows)


def redis_versions(client: redis.Redis, slug: str, user_ids) -> dict[str, int | None]:
    """user_id -> version Redis holds (None: missing), one pipeline."""
    user_ids = list(user_ids)
    pipeline = client.pipeline(transaction=False)
    for user_id in user_ids:
        pipeline.hget(keys.entry_key(slug, user_id), keys.ENTRY_VERSION_FIELD)
    return {
        user_id: None if raw is None else int(raw)
        for user_id, raw in zip(user_ids, pipeline.execute(), strict=True)
    }


def differences(client: redis.Redis, slug: str) -> dict[str, tuple[int, int | None]]:
    """Entries whose Redis version is not the database's: user_id -> (database, Redis)."""
    expected = database_versions(slug)
    stored = redis_versions(client, slug, expected)
    return {
        user_id: (version, stored[user_id])
        for user_id, version in expected.items()
        if stored[user_id] != version
    }


def admin_save(client, campaign_id: int, user_id: str, message: str, entry_id: int | None = None):
    """Create (or, with entry_id, edit) an entry through the admin's form; the response."""
    from common.support import csrf_token

    if entry_id is None:
        url = f"/admin/content/new/?campaign_id={campaign_id}"
        data = {"campaign_id": str(campaign_id), "user_id": user_id}
    else:
        url = f"/admin/content/edit/?id={entry_id}"
        data = {}
    data.update({"field_message": message, "csrf_token": csrf_token(client, url)})
    return client.post(url, data=data)


class TcpProxy:
    """A TCP relay in front of PostgreSQL that can cut every connection and refuse new ones."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.listener: socket.socket | None = None
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        """Refuse new connections and reset the open ones: the server is gone."""
        if self.listener is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone
            # would leave the port listening until that call returns.
            try:
                self.listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.listener.close()
            self.listener = None
        with self.lock:
            for open_socket in self.sockets:
                try:
                    open_socket.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                open_socket.close()
            self.sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self.lock:
                self.sockets.extend((client, server))
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                target.sendall(chunk)
        except OSError:
            pass
        finally:
            for end in (source, target):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class DatabaseOutage:
    """Makes the database unreachable for the processes given `url`, then brings it back.

    PostgreSQL (the shared server cannot be stopped): `url` goes through a TCP
    relay that refuses and resets connections while down, what clients see of
    a crashed server. SQLite has no server: `url` opens the file read-write
    without creating it, and "down" moves the file away, what a lost volume
    looks like; processes holding it open keep their handle.
    """

    def __init__(self, database_url: str) -> None:
        from sqlalchemy.engine import make_url

        self.parsed = make_url(config.normalize_database_url(database_url))
        self.proxy: TcpProxy | None = None
        if self.parsed.get_backend_name() == "postgresql":
            self.proxy = TcpProxy((self.parsed.host or "127.0.0.1", self.parsed.port or 5432))
            self.proxy.up()
            self.url = self.parsed.set(host="127.0.0.1", port=self.proxy.port).render_as_string(
                hide_password=False
            )
        else:
            self.path = Path(self.parsed.database)
            self.url = f"sqlite:///file:{self.path}?mode=rw&uri=true"

    def down(self) -> None:
        if self.proxy is not None:
            self.proxy.down()
        else:
            self.path.rename(self.path.with_suffix(".away"))

    def up(self) -> None:
        if self.proxy is not None:
            self.proxy.up()
        else:
            self.path.with_suffix(".away").rename(self.path)


def redis_entries(client: redis.Redis, slug: str, user_ids) -> dict[str, tuple[int, bytes] | None]:
    """user_id -> (version, body) Redis holds (None: missing), one pipeline."""
    user_ids = list(user_ids)
    pipeline = client.pipeline(transaction=False)
    for user_id in user_ids:
        pipeline.hmget(
            keys.entry_key(slug, user_id), keys.ENTRY_VERSION_FIELD, keys.ENTRY_BODY_FIELD
        )
    return {
        user_id: None if version is None else (int(version), body)
        for user_id, (version, body) in zip(user_ids, pipeline.execute(), strict=True)
    }


def redis_dump(client: redis.Redis) -> dict[bytes, bytes]:
    """Every key and its serialized value: two equal dumps mean Redis did not change."""
    return {key: client.dump(key) for key in sorted(client.scan_iter(count=1000))}


def database_dialect() -> str:
    """`postgresql` or `sqlite`: the database the tests and their processes use."""
    from sqlalchemy.engine import make_url

    return make_url(config.normalize_database_url(os.environ["DATABASE_URL"])).get_backend_name()


# How a commit can fail inside the database after every statement succeeded.
# "deferred constraint": a deferred foreign key checked only at COMMIT;
# "trigger raises": a deferred constraint trigger that raises at COMMIT;
# "connection lost": a deferred trigger that ends its own session at COMMIT,
# what a database that goes away between flush and commit looks like.
COMMIT_FAILURES = {
    "postgresql": ("deferred constraint", "trigger raises", "connection lost"),
    "sqlite": ("deferred constraint",),
}

_PG_TRIGGER_BODIES = {
    "deferred constraint": "INSERT INTO fault_commit_guard (entry_id) VALUES (NEW.id)",
    "trigger raises": "RAISE EXCEPTION 'commit refused by the database'",
    "connection lost": "PERFORM pg_terminate_backend(pg_backend_pid())",
}


class CommitFailure:
    """Every transaction that writes a content entry fails at COMMIT, in the database itself."""

    def __init__(self, engine, kind: str) -> None:
        self.engine = engine
        self.kind = kind
        self.dialect = engine.dialect.name

    def install(self) -> None:
        statements = [
            "CREATE TABLE fault_commit_parent (id INTEGER PRIMARY KEY)",
            "CREATE TABLE fault_commit_guard (entry_id INTEGER REFERENCES "
            "fault_commit_parent (id) DEFERRABLE INITIALLY DEFERRED)",
        ]
        if self.dialect == "postgresql":
            body = _PG_TRIGGER_BODIES[self.kind]
            statements += [
                "CREATE FUNCTION fault_commit_refusal() RETURNS trigger LANGUAGE plpgsql "
                f"AS $$ BEGIN {body}; RETURN NULL; END $$",
                "CREATE CONSTRAINT TRIGGER fault_commit_refusal AFTER INSERT OR UPDATE "
                "ON content_entry DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
                "EXECUTE FUNCTION fault_commit_refusal()",
            ]
        else:
            statements += [
                f"CREATE TRIGGER fault_commit_refusal_{event} AFTER {event} ON content_entry "
                "BEGIN INSERT INTO fault_commit_guard (entry_id) VALUES (NEW.id); END"
                for event in ("INSERT", "UPDATE")
            ]
        with self.engine.begin() as connection:
            for statement in statements:
                connection.exec_driver_sql(statement)

    def remove(self) -> None:
        """Drop everything install() created (the schema must match the migrations again)."""
        if self.dialect == "postgresql":
            statements = [
                "DROP TRIGGER IF EXISTS fault_commit_refusal ON content_entry",
                "DROP FUNCTION IF EXISTS fault_commit_refusal()",
            ]
        else:
            statements = [
                f"DROP TRIGGER IF EXISTS fault_commit_refusal_{event}"
                for event in ("INSERT", "UPDATE")
            ]
        statements += [
            "DROP TABLE IF EXISTS fault_commit_guard",
            "DROP TABLE IF EXISTS fault_commit_parent",
        ]
        with self.engine.begin() as connection:
            for statement in statements:
                connection.exec_driver_sql(statement)


class MarkPublishedBlocked:
    """Blocks every drainer's `mark_published` (an UPDATE of outbox_event) until released.

    A claim with SKIP LOCKED passes over a locked outbox row, so the block is
    on the UPDATE itself. PostgreSQL: a BEFORE UPDATE trigger waits for a
    shared advisory lock this object holds exclusively. SQLite: the whole
    database (BEGIN IMMEDIATE), which blocks a writer for its busy timeout.
    """

    ADVISORY_KEY = 7_300_901

    def __init__(self, engine) -> None:
        self.engine = engine
        if engine.dialect.name == "postgresql":
            with engine.begin() as connection:
                connection.exec_driver_sql(
                    "CREATE FUNCTION fault_hold_outbox() RETURNS trigger LANGUAGE plpgsql "
                    f"AS $$ BEGIN PERFORM pg_advisory_xact_lock_shared({self.ADVISORY_KEY}); "
                    "RETURN NEW; END $$"
                )
                connection.exec_driver_sql(
                    "CREATE TRIGGER fault_hold_outbox BEFORE UPDATE ON outbox_event "
                    "FOR EACH ROW EXECUTE FUNCTION fault_hold_outbox()"
                )
            self.connection = engine.connect()
            self.connection.exec_driver_sql(f"SELECT pg_advisory_lock({self.ADVISORY_KEY})")
            self.connection.commit()
        else:
            import sqlite3

            self.connection = sqlite3.connect(engine.url.database, isolation_level=None)
            self.connection.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        """Let the blocked UPDATEs go on, and drop the trigger (the schema is the migrations')."""
        if self.engine.dialect.name == "postgresql":
            self.connection.exec_driver_sql(f"SELECT pg_advisory_unlock({self.ADVISORY_KEY})")
            self.connection.commit()
            self.connection.close()
            with self.engine.begin() as connection:
                connection.exec_driver_sql("DROP TRIGGER fault_hold_outbox ON outbox_event")
                connection.exec_driver_sql("DROP FUNCTION fault_hold_outbox()")
        else:
            self.connection.rollback()
            self.connection.close()


def wait_writing(client: redis.Redis, slug: str, users: int, timeout: float = 20.0) -> None:
    """Until a drainer has started writing users 1..`users` (the first live, the last not)."""
    first, last = keys.entry_key(slug, "1"), keys.entry_key(slug, str(users))
    wait_until(lambda: client.exists(first), timeout=timeout, interval=0.001)
    assert not client.exists(last), "the batch was published before it could be caught writing"


def seed_promo(redis_server: RedisServer, users: int) -> dict[int, bytes]:
    """Start the private Redis with campaign "promo" at /data and users 1..N; their bodies."""
    client = redis_server.start()
    publish_campaign(client, "promo", default_fields={"message": "Hi"}, serve_at_data=True)
    mark_ready(client)
    return {
        user_id: publish_entry(client, "promo", str(user_id), 1, {"message": f"for {user_id}"})
        for user_id in range(1, users + 1)
    }


class KeepAliveCallers:
    """Callers that each loop on GET /data over one keep-alive connection, outcomes counted.

    An outcome is the answer's status, or the name of the error that ended
    the caller's loop.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.outcomes: Counter[str] = Counter()
        self.threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def start(self, user_ids: range, seconds: float | None = None) -> None:
        """One caller per user id, for `seconds` (None: until its connection fails)."""
        for user_id in user_ids:
            thread = threading.Thread(target=self._call, args=(user_id, seconds))
            thread.start()
            self.threads.append(thread)

    def join(self, timeout: float = 30.0) -> Counter[str]:
        for thread in self.threads:
            thread.join(timeout=timeout)
        return self.outcomes

    def _count(self, outcome: str) -> None:
        with self._lock:
            self.outcomes[outcome] += 1

    def _call(self, user_id: int, seconds: float | None) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        until = None if seconds is None else time.monotonic() + seconds
        try:
            while until is None or time.monotonic() < until:
                connection.request("GET", f"/data?user_id={user_id}", headers=AUTH)
                response = connection.getresponse()
                response.read()
                self._count(str(response.status))
        except OSError as error:
            self._count(type(error).__name__)
        finally:
            connection.close()


def unpublished() -> int:
    """Outbox events not yet live."""
    query = select(OutboxEvent.id).where(OutboxEvent.published_at.is_(None))
    count = len(db.session.scalars(query).all())
    db.session.rollback()
    return count
