"""HTTP/1.1 framing on both servers, over raw sockets: ambiguous or endless requests are
refused at once and the connection is closed (ccadmin/web/framing.py)."""

from __future__ import annotations

import re
import socket
import time
from urllib.parse import urlsplit

import pytest
from common import api_support
from common.support import start_admin

store = api_support.store
start_api = api_support.start_api

SMUGGLED = (
    b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"0\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
)
ENDLESS_CHUNK = (
    b"POST /login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"FFFFFFFFFFFFFFFFFFFF\r\nabc"
)
NO_HOST = b"GET /login HTTP/1.1\r\n\r\n"
_STATUS = re.compile(rb"HTTP/1\.[01] (\d{3}) ")


def exchange(port: int, request: bytes, timeout: float = 10.0) -> tuple[list[int], float]:
    """Send `request`, read until the server closes; (statuses answered, seconds to close)."""
    started = time.monotonic()
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        connection.sendall(request)
        try:
            while chunk := connection.recv(65536):
                received += chunk
        except TimeoutError:
            pass
    return [int(status) for status in _STATUS.findall(received)], time.monotonic() - started


@pytest.fixture(params=["admin", "api"])
def port(request, app, spawn) -> int:
    if request.param == "admin":
        return urlsplit(start_admin(spawn)).port
    return request.getfixturevalue("start_api")()


def test_content_length_with_transfer_encoding_is_refused_and_closed(port):
    statuses, seconds = exchange(port, SMUGGLED)
    # One answer: the request pipelined behind it is never served.
    assert statuses == [400] and seconds < 5


def test_a_chunk_larger_than_the_body_limit_is_refused_at_once(port):
    statuses, seconds = exchange(port, ENDLESS_CHUNK)
    assert statuses == [413] and seconds < 5


def test_http11_without_host_is_refused(port):
    statuses, _ = exchange(port, NO_HOST)
    assert statuses == [400]


def test_the_api_refuses_a_chunk_past_its_64_kb_cap(start_api):
    request = b"POST /data HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n186A0\r\n"
    statuses, seconds = exchange(start_api(), request)
    assert statuses == [413] and seconds < 5


def test_well_framed_requests_still_pass_and_keep_the_connection(port):
    chunked = (
        b"POST /nowhere HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\n{}\r\n0\r\n\r\n"
    )
    old = b"GET /nowhere HTTP/1.0\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(chunked + chunked)
        received = b""
        while len(_STATUS.findall(received)) < 2:
            received += connection.recv(65536)
    statuses = [int(status) for status in _STATUS.findall(received)]
    assert len(statuses) == 2 and all(status not in (400, 413) for status in statuses)
    assert exchange(port, old)[0][0] not in (400, 413)
