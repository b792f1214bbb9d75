"""A redis-server of the test's own on a free port, which the test may stop, kill or freeze."""

from __future__ import annotations

import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from ccadmin import embedded_redis
from common.support import free_port, wait_until


class RedisServer:
    """A redis-server of the test's own on a free port, which the test may break."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.paused = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, appendonly: bool = False, *extra: str) -> redis.Redis:
        """Start (or restart on the same port and folder); returns a client."""
        # Without the append-only file a restart comes back empty, like a lost instance.
        persistence = (
            ("--appendonly", "yes", "--appendfsync", "everysec")
            if appendonly
            else ("--appendonly", "no")
        )
        self.process = subprocess.Popen(
            [
                embedded_redis.server_binary(),
                *("--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder)),
                *("--save", ""),
                *persistence,
                *extra,
            ],
            stdout=subprocess.DEVNULL,
        )
        client = self.client()
        wait_until(lambda: self.answers(client), timeout=10)
        return client

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5)

    @staticmethod
    def answers(client: redis.Redis) -> bool:
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        """A clean stop (SIGTERM: Redis flushes its append-only file first)."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """A crash: SIGKILL, nothing flushed."""
        self._end(signal.SIGKILL)

    def pause(self) -> None:
        """Freeze the server: connections stay open and nothing answers (a partition)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)
        self.paused = False

    def _end(self, signum: int) -> None:
        if self.process and self.process.poll() is None:
            if self.paused:
                self.resume()
            self.process.send_signal(signum)
            self.process.wait(timeout=10)


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A stopped RedisServer; the test starts it with the options it needs."""
    with tempfile.TemporaryDirectory(prefix="ccredis-") as folder:
        server = RedisServer(Path(folder))
        yield server
        server.kill()
