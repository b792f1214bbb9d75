"""SIGTERM to the API during a deploy (case 11): requests in flight finish, new ones are refused."""

from __future__ import annotations

import http.client
import signal
import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from api_support import ENV_KEY, mark_ready, publish_campaign, publish_entry

AUTH = {"X-API-Key": ENV_KEY}


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


def seeded(private_redis, users: int) -> dict[int, bytes]:
    client = private_redis.start()
    publish_campaign(client, "promo", default_fields={"message": "Hi"}, serve_at_data=True)
    mark_ready(client)
    return {
        user_id: publish_entry(client, "promo", str(user_id), 1, {"message": f"for {user_id}"})
        for user_id in range(1, users + 1)
    }


def test_sigterm_finishes_requests_in_flight_and_refuses_new_ones(private_redis, processes):
    """Requests stuck behind a frozen Redis when SIGTERM arrives are still answered.

    Twelve requests are in flight (four in their Redis call, eight queued for
    a thread); after SIGTERM a new connection is refused at once; when Redis
    answers again all twelve get their 200, marked `Connection: close`, and
    the process exits 0.
    """
    bodies = seeded(private_redis, 12)
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
    seeded(private_redis, 50)
    api, port = processes.api({"API_PROCESSES": api_processes})
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    started = threading.Barrier(21)

    def caller(user_id: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        started.wait()
        try:
            while True:
                connection.request("GET", f"/data?user_id={user_id}", headers=AUTH)
                response = connection.getresponse()
                response.read()
                with lock:
                    outcomes[str(response.status)] += 1
        except OSError as error:
            with lock:
                outcomes[type(error).__name__] += 1
        finally:
            connection.close()

    callers = [threading.Thread(target=caller, args=(n,)) for n in range(1, 21)]
    for thread in callers:
        thread.start()
    started.wait()
    time.sleep(1.0)
    api.signal(signal.SIGTERM)
    for thread in callers:
        thread.join(timeout=20)
    assert api.popen.wait(timeout=20) == 0
    assert outcomes["200"] > 20
    assert set(outcomes) == {"200", "ConnectionRefusedError"}, (outcomes, api.log())
    assert outcomes["ConnectionRefusedError"] == 20
