"""The embedded Redis: one server per instance folder, shared by every process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from common.support import wait_until

from ccadmin import embedded_redis
from ccadmin.config import PROJECT_ROOT

# Each test starts and stops real redis-server processes.
pytestmark = pytest.mark.integration


@pytest.fixture
def instance_path() -> Iterator[Path]:
    # Unix socket paths are limited to ~107 bytes: keep the folder short.
    path = Path(tempfile.mkdtemp(prefix="ccr-"))
    yield path
    embedded_redis.stop(path)
    shutil.rmtree(path, ignore_errors=True)


def server_pid(instance_path: Path) -> int:
    return int((instance_path / "redis.pid").read_text().strip())


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A daemonized server is reparented to init, which reaps it; until then a
    # zombie still "exists" for kill(0).
    try:
        status = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].split()[0]
    except OSError:
        return False
    return status != "Z"


def servers_for(instance_path: Path) -> list[int]:
    """Pids of redis-server processes whose command line names this folder."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if (
            "redis-server" in cmdline
            and str(instance_path) in cmdline
            and is_alive(int(entry.name))
        ):
            pids.append(int(entry.name))
    return pids


def test_ensure_running_starts_a_server_answering_on_the_socket(instance_path):
    socket_path = embedded_redis.ensure_running(instance_path)

    assert socket_path == instance_path / "redis.sock"
    client = redis.Redis(unix_socket_path=str(socket_path))
    assert client.ping() is True
    client.set("probe", "1")
    assert client.get("probe") == b"1"
    assert (instance_path / "redis.pid").exists()
    client.close()


def test_second_call_reuses_the_running_server(instance_path):
    embedded_redis.ensure_running(instance_path)
    first_pid = server_pid(instance_path)

    embedded_redis.ensure_running(instance_path)

    assert server_pid(instance_path) == first_pid
    assert servers_for(instance_path) == [first_pid]


def test_two_processes_starting_at_once_share_one_server(instance_path):
    script = (
        "import sys; from pathlib import Path; from ccadmin import embedded_redis; "
        "print(embedded_redis.ensure_running(Path(sys.argv[1])))"
    )
    starters = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(instance_path)],
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [starter.communicate(timeout=30)[0].strip() for starter in starters]

    assert [starter.returncode for starter in starters] == [0, 0]
    assert outputs == [str(instance_path / "redis.sock")] * 2
    assert servers_for(instance_path) == [server_pid(instance_path)]
    assert embedded_redis.is_answering(instance_path / "redis.sock")


def test_stop_stops_the_server_and_keeps_the_folder(instance_path):
    embedded_redis.ensure_running(instance_path)
    pid = server_pid(instance_path)
    client = redis.Redis(unix_socket_path=str(instance_path / "redis.sock"))
    client.set("kept", "yes")
    client.close()
    (instance_path / "unrelated.txt").write_text("mine")

    assert embedded_redis.stop(instance_path) is True

    wait_until(lambda: not is_alive(pid))
    assert servers_for(instance_path) == []
    assert not embedded_redis.is_answering(instance_path / "redis.sock")
    # Redis saves on shutdown: the data survives for the next start.
    assert (instance_path / "redis.rdb").exists()
    assert (instance_path / "unrelated.txt").read_text() == "mine"


def test_data_survives_a_restart(instance_path):
    embedded_redis.ensure_running(instance_path)
    client = redis.Redis(unix_socket_path=str(instance_path / "redis.sock"))
    client.set("kept", "yes")
    client.close()
    embedded_redis.stop(instance_path)

    embedded_redis.ensure_running(instance_path)

    client = redis.Redis(unix_socket_path=str(instance_path / "redis.sock"))
    assert client.get("kept") == b"yes"
    client.close()


def test_stop_without_a_server_reports_false(instance_path):
    assert embedded_redis.stop(instance_path) is False
