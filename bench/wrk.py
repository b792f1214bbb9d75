"""Running wrk and reading its report: requests/s, latency percentiles, errors."""

from __future__ import annotations

import re
import resource
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).with_name("random_user.lua")
# The caller's cutoff: wrk counts a request slower than this as a timeout.
TIMEOUT = "2s"

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}
_PERCENTILE = re.compile(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s|m)\s*$", re.M)
_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_RATE = re.compile(r"Requests/sec:\s+([\d.]+)")
_TOTAL = re.compile(r"(\d+) requests in ([\d.]+)(us|ms|s|m)")


class WrkMissing(RuntimeError):
    """wrk is not installed."""


@dataclass
class WrkResult:
    """One wrk run, as numbers."""

    connections: int
    seconds: float
    requests: int
    rate: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    connect_errors: int
    read_errors: int
    write_errors: int
    timeouts: int
    non_2xx: int

    @property
    def errors(self) -> int:
        """Every failed request: socket errors, timeouts and non-2xx/3xx answers."""
        return (
            self.connect_errors
            + self.read_errors
            + self.write_errors
            + self.timeouts
            + self.non_2xx
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "errors": self.errors}


def require_wrk() -> str:
    """The wrk binary, or WrkMissing with the command that installs it."""
    found = shutil.which("wrk")
    if not found:
        raise WrkMissing("wrk is not installed: sudo apt-get install wrk")
    return found


def parse(output: str, connections: int) -> WrkResult:
    """Read wrk's --latency report."""
    percentiles = {
        int(match.group(1)): float(match.group(2)) * _UNITS[match.group(3)]
        for match in _PERCENTILE.finditer(output)
    }
    errors = _ERRORS.search(output)
    connect, read, write, timeouts = (
        (int(value) for value in errors.groups())
        if errors
        else (
            0,
            0,
            0,
            0,
        )
    )
    non_2xx = _NON_2XX.search(output)
    rate = _RATE.search(output)
    total = _TOTAL.search(output)
    if rate is None or total is None:
        raise RuntimeError(f"unreadable wrk output:\n{output}")
    return WrkResult(
        connections=connections,
        seconds=float(total.group(2)) * _UNITS[total.group(3)] / 1e3,
        requests=int(total.group(1)),
        rate=float(rate.group(1)),
        p50_ms=percentiles.get(50, 0.0),
        p90_ms=percentiles.get(90, 0.0),
        p99_ms=percentiles.get(99, 0.0),
        connect_errors=connect,
        read_errors=read,
        write_errors=write,
        timeouts=timeouts,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
    )


def run(
    url: str,
    connections: int,
    seconds: float,
    api_key: str,
    users: int,
    threads: int = 2,
    script: Path = SCRIPT,
    script_args: list[str] | None = None,
) -> WrkResult:
    """One wrk run (by default GETs of random user ids); open-files limit raised for it.

    `script` and `script_args` run another request script, such as the write
    benchmark's PUTs of new users.
    """
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = str(hard) if hard != resource.RLIM_INFINITY else "1048576"
    command = [
        *(["prlimit", f"--nofile={limit}:{limit}"] if shutil.which("prlimit") else []),
        require_wrk(),
        *("-t", str(min(threads, connections)), "-c", str(connections)),
        *("-d", f"{seconds:g}s", "--timeout", TIMEOUT, "--latency"),
        *("-s", str(script), url, "--", *(script_args or [api_key, str(users)])),
    ]
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(f"wrk failed ({completed.returncode}): {completed.stderr}")
    return parse(completed.stdout, connections)
