"""A bare WSGI hello-world: the ceiling `make bench` measures the API against.

It is served by ccadmin.api.server with the API's own settings (waitress
options, processes, pinning, or granian), so the only difference between the
two measurements is the application.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ccadmin import config
from ccadmin.api.server import serve

BODY = b"Hello, world!"
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]


def hello(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Answer every request with the same few bytes."""
    start_response("200 OK", HEADERS)
    return [BODY]


def create_app(settings: config.Settings | None = None) -> Callable[..., Iterable[bytes]]:
    """The app factory ccadmin.api.server calls in each process."""
    return hello


if __name__ == "__main__":
    serve(config.load(), app="bench.hello:create_app")
