"""Fault-injection fixtures: private Redis servers, real worker and API processes.

Every test here gets a redis-server of its own (the binary the embedded
default uses) on a free port, so it can stop, kill, pause, fill or restart it
without touching the Redis the rest of the suite (or the machine) uses. The
test process's app, the workers and the APIs are all pointed at it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator

import pytest
from common.fault_support import Processes

from ccadmin.app import create_app
from ccadmin.extensions import db


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/faults/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.faults)


@pytest.fixture
def fault_app(app, private_redis):
    """The admin app (clean tables) talking to the private Redis, context pushed."""
    settings = app.config["CCADMIN_SETTINGS"]
    private = dataclasses.replace(settings, redis_url=private_redis.url)
    faulty = create_app({"TESTING": True, "CCADMIN_SETTINGS": private})
    with faulty.app_context():
        yield faulty
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def processes(private_redis, tmp_path) -> Iterator[Processes]:
    started = Processes(tmp_path, private_redis)
    yield started
    started.stop_all()
