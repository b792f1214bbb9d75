"""Real services for every test: PostgreSQL or SQLite, a real Redis, real processes.

`TEST_DATABASE_URL` / `TEST_REDIS_URL` select this machine's services (CI);
unset, the suite uses a SQLite file and its own embedded Redis in a temporary
folder. The environment is set here, before anything imports the app, so
child processes (worker, API) see the same services.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import g

from ccadmin import config  # standard library only: reads nothing when imported

# Every setting a developer's shell may hold is dropped, so the suite runs the
# same anywhere; the few below are set for every test and child process.
for _declaration in config.declared():
    for _name in _declaration.metadata["env"]:
        os.environ.pop(_name, None)
_TMP = Path(tempfile.mkdtemp(prefix="cctest-"))
os.environ["CCADMIN_INSTANCE_PATH"] = str(_TMP / "instance")
os.environ["DATABASE_URL"] = os.environ.get("TEST_DATABASE_URL") or f"sqlite:///{_TMP}/test.db"
if os.environ.get("TEST_REDIS_URL"):
    os.environ["REDIS_URL"] = os.environ["TEST_REDIS_URL"]
os.environ["SECRET_KEY"] = "test-secret-key-not-for-production"
os.environ["CCADMIN_API_KEYS"] = "env-key-one,env-key-two"

from common.cluster_support import (  # noqa: E402, F401  (fixtures: one cluster per session)
    cluster_client,
    private_redis_cluster,
    redis_cluster,
)
from common.redis_server import private_redis  # noqa: E402, F401  (fixture)
from common.support import FRESH_REQUEST_STATE, PASSWORD  # noqa: E402

from ccadmin import embedded_redis  # noqa: E402
from ccadmin.app import create_app  # noqa: E402
from ccadmin.extensions import db  # noqa: E402
from ccadmin.models import AdminUser  # noqa: E402
from ccadmin.redis_client import get_redis  # noqa: E402

PROJECT_ROOT = config.PROJECT_ROOT


# Fixtures that start processes, clusters or private Redis servers: a test
# using any of them (directly or through another fixture) is `integration`.
INTEGRATION_FIXTURES = frozenset(
    {
        "spawn",
        "private_redis",
        "processes",
        "redis_cluster",
        "private_redis_cluster",
        "cluster_client",
        "browser",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def settings() -> Iterator[config.Settings]:
    loaded = config.load()
    yield loaded
    if loaded.embedded_redis:
        embedded_redis.stop(loaded.instance_path)
    shutil.rmtree(_TMP, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_client(settings):
    return get_redis(settings)


@pytest.fixture(scope="session")
def _schema(settings, redis_client):
    """A clean database with the migrations applied, once per test session."""
    from flask_migrate import upgrade

    app = create_app({"TESTING": True})
    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            with db.engine.begin() as connection:
                connection.exec_driver_sql("DROP SCHEMA public CASCADE")
                connection.exec_driver_sql("CREATE SCHEMA public")
        upgrade(directory=str(PROJECT_ROOT / "migrations"))
        db.engine.dispose()


@pytest.fixture(scope="session")
def _shared_app(_schema):
    """One app for the session: building its URL map costs about 0.1 s."""
    app = create_app({"TESTING": True})

    @app.before_request
    def forget_request_state() -> None:
        if app.config.get(FRESH_REQUEST_STATE):
            g.pop("_login_user", None)
            g.pop("csrf_token", None)

    return app


@pytest.fixture
def app(_shared_app, redis_client):
    """The app with empty tables and an empty Redis; settings a test changes are put back."""
    config_before = dict(_shared_app.config)
    with _shared_app.app_context():
        _empty_tables()
        redis_client.flushdb()
        yield _shared_app
        db.session.remove()
        db.engine.dispose()
    _shared_app.config.clear()
    _shared_app.config.update(config_before)


def _empty_tables() -> None:
    """DELETE is quicker than TRUNCATE on tables this small; ids start again at 1."""
    tables = [table.name for table in reversed(db.metadata.sorted_tables)]
    with db.engine.begin() as connection:
        for table in tables:
            connection.exec_driver_sql(f"DELETE FROM {table}")
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(
                "SELECT setval(oid, 1, false) FROM pg_class"
                " WHERE relkind = 'S' AND relnamespace = 'public'::regnamespace"
            )


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def make_user(app) -> Callable[..., AdminUser]:
    """Create an admin user with a role; the password is PASSWORD."""

    def make(email: str, role: str = "admin", password: str = PASSWORD) -> AdminUser:
        user = AdminUser(email=email, role=role)
        user.set_password(password)
        db.session.add(user)
        db.session.commit()
        return user

    return make


@pytest.fixture
def spawn(settings) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start a real process (worker, API, ...) that is stopped after the test.

    `ready_url`, when given, is polled until it answers (any HTTP status).
    """
    started: list[subprocess.Popen] = []

    def start(
        args: list[str],
        env: dict[str, str] | None = None,
        ready_url: str | None = None,
        timeout: float = 30.0,
    ) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, *args],
            cwd=PROJECT_ROOT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        started.append(process)
        if ready_url:
            _wait_for_url(ready_url, process, timeout)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in started:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _wait_for_url(url: str, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout} s")
