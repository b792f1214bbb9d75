"""The Connected Content API against bad input: keys, addresses, user ids, methods, sizes, framing.

Each case asserts the exact answer: a JSON error with a fixed status, or a
closed connection; never a 5xx, a server banner, or a Redis key built from
input that was not checked.
"""

from __future__ import annotations

import json
import socket
import threading

import pytest
from common import api_support
from common.api_support import (
    ENV_KEY,
    call,
    mark_ready,
    publish_api_key,
    publish_campaign,
    publish_entry,
    revoke_api_key,
)
from common.support import wait_until

from ccadmin import keys

store = api_support.store
start_api = api_support.start_api

AUTH = {"X-API-Key": ENV_KEY}
ERROR_STATUSES = {400, 405, 413, 415, 431}


@pytest.fixture
def promo(store):
    publish_campaign(store, "promo", serve_at_data=True)
    publish_entry(store, "promo", "1", 1, {"message": "hello 1"})
    mark_ready(store)
    return store


def raw(port: int, request: bytes, timeout: float = 3.0) -> tuple[int | None, dict, bytes]:
    """Send bytes as they are; (status or None if closed unanswered, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        connection.sendall(request)
        received = b""
        try:
            while True:
                chunk = connection.recv(65536)
                if not chunk:
                    break
                received += chunk
                head, _, body = received.partition(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":", 1)[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    None,
                )
                if length is not None and len(body) >= length:
                    break
        except (TimeoutError, ConnectionResetError):
            pass
    if not received:
        return None, {}, b""
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split(" ")[1]), headers, body


def assert_json_error(status, headers, body, expected: set[int] | None = None) -> None:
    assert status in (expected or ERROR_STATUSES), (status, body)
    assert headers["content-type"].startswith("application/json")
    assert headers["x-content-type-options"] == "nosniff"
    assert "server" not in headers
    document = json.loads(body)
    assert set(document) == {"error", "message"}


class RedisCommands:
    """Every command the Redis server receives while the block runs (MONITOR)."""

    def __init__(self, client) -> None:
        self.client = client
        self.commands: list[str] = []

    def __enter__(self) -> RedisCommands:
        self._monitor = self.client.monitor()
        self._connection = self._monitor.__enter__()
        self._thread = threading.Thread(target=self._collect, daemon=True)
        self._thread.start()
        return self

    def _collect(self) -> None:
        # MONITOR sees every database of the server: keep this test's only.
        database = self.client.connection_pool.connection_kwargs.get("db", 0)
        for command in self._connection.listen():
            if command["db"] == database:
                self.commands.append(command["command"])
            if "end-of-observation" in command["command"]:
                return

    def __exit__(self, *exc_info) -> None:
        wait_until(
            lambda: self.client.echo("end-of-observation") and not self._thread.is_alive(), 10
        )
        self._monitor.__exit__(*exc_info)


def test_keys_in_the_query_string_are_not_accepted(promo, start_api):
    port = start_api()
    for query in ("api_key", "key", "token", "access_token", "X-API-Key"):
        answer = call(port, f"/data?user_id=1&{query}={ENV_KEY}")
        assert answer.status == 401, query
        assert answer.json()["error"] == "unauthorized"
    assert call(port, "/data?user_id=1", headers=AUTH).status == 200


def test_rotation_and_revocation_reach_every_process_within_seconds(promo, start_api):
    publish_api_key(promo, "cc_old-key-being-rotated-out")
    port = start_api({"API_PROCESSES": "2"})

    def statuses(secret: str) -> set[int]:
        # Fresh connections: the kernel spreads them over both processes.
        return {
            call(port, "/data?user_id=1", headers={"X-API-Key": secret}).status for _ in range(40)
        }

    wait_until(lambda: statuses("cc_old-key-being-rotated-out") == {200}, 10)
    publish_api_key(promo, "cc_new-key-rotated-in")
    wait_until(lambda: statuses("cc_new-key-rotated-in") == {200}, 5)
    # Both keys are valid during the rotation.
    assert statuses("cc_old-key-being-rotated-out") == {200}
    revoke_api_key(promo, "cc_old-key-being-rotated-out")
    wait_until(lambda: statuses("cc_old-key-being-rotated-out") == {401}, 5)
    assert statuses("cc_new-key-rotated-in") == {200}
    # Both processes answered (each flushes its own request count).
    wait_until(lambda: promo.zcard(keys.METRIC_PROCESSES) == 2, 5)


def test_allowlist_refuses_other_addresses(promo, start_api):
    port = start_api({"API_ALLOWED_IPS": "10.0.0.0/8, 192.0.2.0/24"})
    answer = call(port, "/data?user_id=1", headers=AUTH)
    assert answer.status == 403
    assert answer.json() == {
        "error": "forbidden_address",
        "message": "this address may not call the API",
    }
    assert answer.header("X-Content-Type-Options") == "nosniff"
    # X-Forwarded-For from an untrusted peer is not believed.
    spoofed = call(port, "/data?user_id=1", headers={**AUTH, "X-Forwarded-For": "10.1.2.3"})
    assert spoofed.status == 403
    assert call(port, "/metrics").status == 403
    # Health probes stay open.
    assert call(port, "/healthz").status == 200
    assert call(port, "/readyz").status == 200


def test_allowlist_through_a_trusted_proxy(promo, start_api):
    port = start_api({"API_ALLOWED_IPS": "203.0.113.0/24", "API_TRUSTED_PROXIES": "127.0.0.0/8"})
    cases = {
        "203.0.113.5": 200,
        "198.51.100.1": 403,
        # Rightmost first: the client's own claim left of a real address is ignored.
        "203.0.113.5, 198.51.100.1": 403,
        "198.51.100.1, 203.0.113.5": 200,
        # The proxy chain itself is skipped.
        "203.0.113.5, 127.0.0.1": 200,
        "not-an-address": 403,
        "203.0.113.5, garbage": 403,
        "": 403,
    }
    for forwarded, status in cases.items():
        answer = call(port, "/data?user_id=1", headers={**AUTH, "X-Forwarded-For": forwarded})
        assert answer.status == status, forwarded


BAD_USER_IDS = {
    "missing": "/data",
    "empty": "/data?user_id=",
    "10 KB": "/data?user_id=" + "7" * 10_240,
    "129 characters": "/data?user_id=" + "a" * 129,
    "NUL": "/data?user_id=12%00",
    "newline": "/data?user_id=12%0d%0aSet-Cookie:%20x",
    "tab": "/data?user_id=%09",
    "DEL": "/data?user_id=1%7f",
    "C1 control": "/data?user_id=1%C2%85",
    "invalid UTF-8": "/data?user_id=%ff%fe",
    "repeated": "/data?user_id=1&user_id=2",
    "repeated, encoded name": "/data?user_id=1&user%5Fid=2",
    "glob": "/data?user_id=*",
}


def test_malformed_user_ids_are_400_and_never_reach_redis(promo, start_api, redis_client):
    port = start_api()
    with RedisCommands(redis_client) as observed:
        for name, path in BAD_USER_IDS.items():
            answer = call(port, path, headers=AUTH)
            expected = 400 if name != "glob" else answer.status
            assert answer.status == expected, name
            if name != "glob":
                assert answer.json()["error"] == "invalid_user_id", name
        for body in (
            b'{"user_id": "1", "user_id": "2"}',
            b'{"user_id": ""}',
            b'{"user_id": ["1"]}',
            b'{"user_id": "\\u0000"}',
            b'{"user_id": "\\ud800"}',
        ):
            answer = call(port, "/data", "POST", {**AUTH, "Content-Type": "application/json"}, body)
            assert answer.status == 400, body
    entry_reads = [command for command in observed.commands if ":e:promo:" in command]
    # Only the glob (a valid, if odd, id) was looked up; it is read as a key, never a pattern.
    assert all("promo:*" in command for command in entry_reads), entry_reads
    assert not any(
        marker in command
        for command in observed.commands
        for marker in ("7777777777", "Set-Cookie", "\\x00")
    )


@pytest.mark.parametrize(
    "method", ["PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PROPFIND", "FOO", "get"]
)
def test_unknown_methods_are_405(promo, start_api, method):
    port = start_api()
    status, headers, body = raw(
        port,
        f"{method} /data?user_id=1 HTTP/1.1\r\nHost: x\r\nX-API-Key: {ENV_KEY}\r\n"
        "Content-Length: 0\r\n\r\n".encode(),
    )
    if method == "get":
        # Methods are case-sensitive: waitress refuses a lower-case one as malformed.
        assert_json_error(status, headers, body, {400})
        return
    assert_json_error(status, headers, body, {405})
    assert headers["allow"] == "GET, HEAD, POST"


def test_oversized_bodies_are_413(promo, start_api):
    port = start_api()
    # Past the app's limit (4 KB): its own JSON 413.
    answer = call(
        port,
        "/data",
        "POST",
        {**AUTH, "Content-Type": "application/json"},
        b'{"user_id": "' + b"1" * 5000 + b'"}',
    )
    assert answer.status == 413 and answer.json()["error"] == "body_too_large"
    # Past waitress's limit (64 KB): refused before the app, same JSON, connection closed.
    status, headers, body = raw(
        port,
        b"POST /data HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 10000000\r\n\r\n" + b"x" * 1000,
    )
    assert_json_error(status, headers, body, {413})
    assert headers.get("connection") == "close"
    chunk = b"10000\r\n" + b"x" * 0x10000 + b"\r\n"
    status, headers, body = raw(
        port,
        b"POST /data HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + chunk * 2 + b"0\r\n\r\n",
    )
    assert_json_error(status, headers, body, {413})


def test_oversized_headers_are_431(promo, start_api):
    port = start_api()
    status, headers, body = raw(
        port,
        b"GET /data?user_id=1 HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 40_000 + b"\r\n\r\n",
    )
    assert_json_error(status, headers, body, {431})
    many = b"".join(b"X-H%d: v\r\n" % number for number in range(4000))
    status, headers, body = raw(
        port, b"GET /data?user_id=1 HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n"
    )
    assert_json_error(status, headers, body, {431})
    # A 10 KB user id is well within the header limit: the app's own 400.
    answer = call(port, "/data?user_id=" + "9" * 10_240, headers=AUTH)
    assert answer.status == 400


FRAMING = {
    "CL and TE": b"POST /data HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"0\r\n\r\nGET /data?user_id=1 HTTP/1.1\r\nHost: x\r\n\r\n",
    "two Content-Lengths": b"POST /data HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Content-Length: 3\r\nContent-Length: 40\r\n\r\n{}\n",
    "Content-Length not a number": b"POST /data HTTP/1.1\r\nHost: x\r\nContent-Length: 1e3\r\n\r\n",
    "negative Content-Length": b"POST /data HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    "gzip transfer coding": b"POST /data HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
    "chunked then identity": b"POST /data HTTP/1.1\r\nHost: x\r\n"
    b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    "bad chunk size": b"POST /data HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    "space before colon": b"GET /data?user_id=1 HTTP/1.1\r\nHost: x\r\n"
    b"Transfer-Encoding : chunked\r\n\r\n",
    "bare LF": b"GET /data?user_id=1 HTTP/1.1\nHost: x\n\n",
    "garbage request line": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
    "HTTP/2 preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(FRAMING))
def test_conflicting_or_broken_framing(promo, start_api, name):
    port = start_api()
    status, headers, body = raw(port, FRAMING[name])
    if status is not None:
        assert status < 500, (name, status, body)
        if status != 401:  # an unauthenticated request that parsed fine
            assert_json_error(status, headers, body, ERROR_STATUSES | {404})
    # The server is still healthy afterwards.
    assert call(port, "/data?user_id=1", headers=AUTH).status == 200


def test_no_banner_and_nosniff_on_every_answer(promo, start_api):
    port = start_api()
    for path, headers in (
        ("/data?user_id=1", AUTH),
        ("/data?user_id=404", AUTH),
        ("/data?user_id=1", {}),
        ("/nowhere", {}),
        ("/healthz", {}),
        ("/readyz", {}),
        ("/metrics", {}),
    ):
        answer = call(port, path, headers=headers)
        assert answer.header("Server") is None, path
        assert answer.header("X-Content-Type-Options") == "nosniff", path
        assert "waitress" not in answer.body.decode("utf-8", "replace").lower()
