"""The API under many connections: processes share the port, thousands of sockets are fine."""

from __future__ import annotations

import re
import resource
import socket
from collections import Counter
from pathlib import Path

import pytest
from common import api_support
from common.api_support import ENV_KEY, call, mark_ready, publish_campaign, publish_entry
from common.support import free_port

store = api_support.store
start_api = api_support.start_api

AUTH = {"X-API-Key": ENV_KEY}
SOCKETS = 3_000


def _answering_pid(port: int) -> int:
    text = call(port, "/metrics").body.decode()
    return int(re.search(r'ccadmin_api_info\{pid="(\d+)"\}', text).group(1))


def test_processes_sharing_the_port_each_take_a_share(store, spawn):
    publish_campaign(store, "promo", public=True, serve_at_data=True)
    publish_entry(store, "promo", "1", 1, {"message": "Hello"})
    mark_ready(store)
    port = free_port()
    spawn(
        ["-m", "ccadmin.api"],
        env={"API_PORT": str(port), "API_PROCESSES": "2", "API_HOST": "127.0.0.1"},
        ready_url=f"http://127.0.0.1:{port}/healthz",
    )
    # Many clients at once, each on its own connection, as a caller's burst.
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(200)]
    try:
        pids: Counter[int] = Counter()
        for client in held:
            client.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        for client in held:
            answer = b""
            while chunk := client.recv(65536):
                answer += chunk
            pids[int(re.search(rb'ccadmin_api_info\{pid="(\d+)"\}', answer).group(1))] += 1
    finally:
        for client in held:
            client.close()
    assert len(pids) == 2, pids
    assert min(pids.values()) >= 10, f"one process took almost everything: {pids}"


@pytest.fixture
def many_files():
    """Lift this process's open-files limit for the test's own sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < SOCKETS + 500:
        pytest.skip(f"the hard open-files limit ({hard}) is below {SOCKETS + 500}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_three_thousand_open_sockets_do_not_crash_the_process(store, start_api, many_files):
    publish_campaign(store, "promo", serve_at_data=True)
    body = publish_entry(store, "promo", "1", 1, {"message": "Hello"})
    mark_ready(store)
    # The API is started with the small soft limit most shells have; it must
    # lift it itself (to the hard limit) to hold these connections.
    port = start_api()
    held: list[socket.socket] = []
    try:
        for _ in range(SOCKETS):
            held.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        # Past select()'s 1,024 limit: the open connections still get answers...
        for client in held[-50:]:
            client.sendall(
                b"GET /data?user_id=1 HTTP/1.1\r\nHost: x\r\nX-API-Key: "
                + ENV_KEY.encode()
                + b"\r\n\r\n"
            )
        for client in held[-50:]:
            assert client.recv(65536).startswith(b"HTTP/1.1 200 ")
        # ...and so does a brand-new client.
        fresh = call(port, "/data?user_id=1", headers=AUTH)
        assert fresh.status == 200
        assert fresh.body == body
    finally:
        for client in held:
            client.close()
    assert call(port, "/healthz").status == 200


def test_the_api_lifts_its_open_files_limit(store, start_api):
    port = start_api()
    pid = _answering_pid(port)
    limits = Path(f"/proc/{pid}/limits").read_text()
    soft, hard = re.search(r"Max open files\s+(\S+)\s+(\S+)", limits).groups()
    assert soft == hard
