"""SIGTERM to the API during a deploy (case 11): requests in flight finish, new ones are refused."""

from __future__ import annotations

import http.client
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from common.fault_support import AUTH, KeepAliveCallers, seed_promo


def get(port: int, user_id: int, timeout: float = 10.0) -> tuple[int, str | None, bytes]:
    """One request on a fresh connection: status, its Connection header, body."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", f"/data?user_id={user_id}", headers=AUTH)
        response = connection.getresponse()
        return response.status, response.getheader("Connection"), response.read()
    finally:
        connection.close()


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_sigterm_finishes_requests_in_flight_and_refuses_new_ones(private_redis, processes):
    """Requests stuck behind a frozen Redis when SIGTERM arrives are still answered.

    Twelve requests are in flight (four in their Redis call, eight queued for
    a thread); after SIGTERM a new connection is refused at once; when Redis
    answers again all twelve get their 200, marked `Connection: close`, and
    the process exits 0.
    """
    bodies = seed_promo(private_redis, 12)
    api, port = processes.api(
        {"API_THREADS": "4", "API_REDIS_TIMEOUT_MS": "8000", "API_SHUTDOWN_SECONDS": "20"}
    )
    private_redis.pause()
    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = pool.map(lambda user_id: get(port, user_id), range(1, 13))
        time.sleep(1.0)  # every request sent and read by the server
        api.signal(signal.SIGTERM)
        time.sleep(0.5)
        assert refused(port)
        assert api.alive()
        private_redis.resume()
        results = list(answers)
    assert [status for status, _, _ in results] == [200] * 12
    assert [body for _, _, body in results] == [bodies[user_id] for user_id in range(1, 13)]
    assert {connection for _, connection, _ in results} == {"close"}
    assert api.popen.wait(timeout=20) == 0
    assert "stopped after" in api.log()


@pytest.mark.parametrize("api_processes", ["1", "2"])
def test_sigterm_under_load_answers_or_refuses_cleanly(private_redis, processes, api_processes):
    """Keep-alive callers hammering the API through a SIGTERM see answers, then refusals.

    Every answer is a 200; the only error a caller sees is a refused new
    connection (after its last answer said `Connection: close`): no reset,
    no connection dropped mid-request.
    """
    seed_promo(private_redis, 50)
    api, port = processes.api({"API_PROCESSES": api_processes})
    callers = KeepAliveCallers(port)
    callers.start(range(1, 21))
    time.sleep(1.0)
    api.signal(signal.SIGTERM)
    outcomes = callers.join(timeout=20)
    assert api.popen.wait(timeout=20) == 0
    assert outcomes["200"] > 20
    assert set(outcomes) == {"200", "ConnectionRefusedError"}, (outcomes, api.log())
    assert outcomes["ConnectionRefusedError"] == 20
