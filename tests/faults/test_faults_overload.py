"""Overload (case 14) and a spike from a steady baseline (case 15) against a real API process.

The full-size spike (10x for 30 s, thousands of connections) is in `make
bench`; here a smaller one checks the same outcome on every test run.
"""

from __future__ import annotations

import http.client
import os
import resource
import socket
import time
from pathlib import Path

import pytest
from common.fault_support import AUTH, KeepAliveCallers, seed_promo

SILENT_SOCKETS = 1_000
CONNECTION_LIMIT = 200


@pytest.fixture
def many_files():
    """Lift this process's open-files limit for the test's own sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def get(port: int, user_id: int) -> tuple[int, bytes, float]:
    """A caller's request on a fresh connection: status, body, seconds (5 s timeout)."""
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", f"/data?user_id={user_id}", headers=AUTH)
        response = connection.getresponse()
        return response.status, response.read(), time.monotonic() - started
    finally:
        connection.close()


def closed_by_server(client: socket.socket) -> bool:
    """True once the server closed the connection (EOF or reset), without waiting."""
    client.setblocking(False)
    try:
        return client.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


def test_silent_sockets_past_the_limit_do_not_lock_callers_out(
    private_redis, processes, many_files
):
    """1,000 sockets that send nothing against a 200-connection limit (slowloris).

    Real callers arriving behind them are still answered: at the limit the
    API closes the longest-idle connections to make room instead of waiting
    for the channel timeout, which closes the silent sockets that are left
    once the queue is drained. The process stays up and its memory stays
    where it was.
    """
    bodies = seed_promo(private_redis, 20)
    api, port = processes.api(
        {"API_CONNECTION_LIMIT": str(CONNECTION_LIMIT), "API_CHANNEL_TIMEOUT": "3"}
    )
    before = resident_mb(api.pid)
    silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(SILENT_SOCKETS)]
    try:
        answers = [get(port, user_id) for user_id in range(1, 21)]
        assert [(status, body) for status, body, _ in answers] == [
            (200, bodies[user_id]) for user_id in range(1, 21)
        ]
        deadline = time.monotonic() + 30
        while not all(closed_by_server(client) for client in silent):
            assert time.monotonic() < deadline, "silent sockets were never closed"
            time.sleep(0.2)
            # New arrivals are what makes the API shed: keep callers coming.
            assert get(port, 1)[0] == 200
        assert api.alive()
        assert resident_mb(api.pid) - before < 50
        slowest = max(seconds for _, _, seconds in answers)
        print(f"case 14: slowest caller behind {SILENT_SOCKETS} silent sockets {slowest:.2f} s")
    finally:
        for client in silent:
            client.close()
    assert "closed" in api.log() and "idle connection(s) to make room" in api.log()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_an_api_at_its_connection_limit_waits_instead_of_spinning(
    private_redis, processes, many_files
):
    """Full of silent sockets, with more queued, the loop sleeps between looks for idle ones.

    A loop that polled without waiting would burn a whole core for as long
    as the limit is reached; this one wakes every 0.1 s.
    """
    seed_promo(private_redis, 1)
    api, port = processes.api({"API_CONNECTION_LIMIT": "50", "API_CHANNEL_TIMEOUT": "60"})
    silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(80)]
    try:
        time.sleep(1.0)
        before = cpu_seconds(api.pid)
        time.sleep(3.0)
        used = cpu_seconds(api.pid) - before
    finally:
        for client in silent:
            client.close()
    assert used < 1.0, f"the API used {used:.2f} s of CPU in 3 s while waiting"
    print(f"case 14: {used:.2f} s of CPU in 3 s at the connection limit")
    assert api.alive()


def test_channel_timeout_cuts_silent_sockets_but_not_active_callers(private_redis, processes):
    """Below the limit, a socket silent for API_CHANNEL_TIMEOUT is closed; a busy one is not."""
    seed_promo(private_redis, 1)
    _, port = processes.api({"API_CHANNEL_TIMEOUT": "2"})
    opened = time.monotonic()
    silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(50)]
    active = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        while not all(closed_by_server(client) for client in silent):
            assert time.monotonic() - opened < 15, "the channel timeout never closed them"
            active.request("GET", "/data?user_id=1", headers=AUTH)
            response = active.getresponse()
            response.read()
            assert response.status == 200
            time.sleep(0.25)
        cut_after = time.monotonic() - opened
        assert cut_after >= 2.0
        # The connection that kept talking is still the same open connection.
        active.request("GET", "/data?user_id=1", headers=AUTH)
        assert active.getresponse().status == 200
    finally:
        active.close()
        for client in silent:
            client.close()
    print(f"case 14: silent sockets cut {cut_after:.1f} s after opening (timeout 2 s)")


def test_a_tenfold_spike_from_a_steady_baseline_is_answered_without_errors(
    private_redis, processes
):
    """20 keep-alive callers, then 200 for three seconds: every request a 200, no socket error."""
    seed_promo(private_redis, 200)
    _, port = processes.api()
    callers = KeepAliveCallers(port)
    callers.start(range(1, 21), seconds=7.0)
    time.sleep(2.0)
    callers.start(range(21, 201), seconds=3.0)
    outcomes = callers.join()
    assert set(outcomes) == {"200"}, outcomes
    assert outcomes["200"] > 200
