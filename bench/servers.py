"""The servers under test: the API or the hello-world, started through ccadmin.api.server."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ccadmin.config import PROJECT_ROOT

API = ["-m", "ccadmin.api"]
HELLO = ["-m", "bench.hello"]


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """One server process tree (a parent and its children, or a single process)."""

    def __init__(self, module: list[str], env: dict[str, str]) -> None:
        self.port = free_port()
        # A file, not a pipe: a pipe nobody reads would block a chatty server.
        self.log = tempfile.NamedTemporaryFile(prefix="ccbench-server-", suffix=".log")
        self.process = subprocess.Popen(
            [sys.executable, *module],
            cwd=PROJECT_ROOT,
            env={**os.environ, **env, "API_PORT": str(self.port), "API_HOST": "127.0.0.1"},
            start_new_session=True,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self._wait_until_answering()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _wait_until_answering(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {Path(self.log.name).read_text()}")
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                connection.request("GET", "/healthz")
                connection.getresponse().read()
                connection.close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("server did not answer in time")

    def serving_pids(self) -> list[int]:
        """The processes that accept connections (the children, or the process itself)."""
        pids = {self.process.pid}
        found: list[int] = []
        while pids:
            pid = pids.pop()
            children = Path(f"/proc/{pid}/task/{pid}/children")
            listed = children.read_text().split() if children.exists() else []
            if listed:
                pids.update(int(child) for child in listed)
            else:
                found.append(pid)
        return sorted(found)

    def rss_mb(self) -> list[float]:
        """Resident memory of each serving process, in MB (from /proc)."""
        sizes = []
        for pid in self.serving_pids():
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    sizes.append(round(int(line.split()[1]) / 1024, 1))
        return sizes

    def stop(self) -> None:
        """SIGTERM the whole process group and wait."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
