"""Small helpers shared by the test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import html
import re
import socket
import time
from collections.abc import Callable
from urllib.parse import urlencode

from werkzeug.datastructures import MultiDict

PASSWORD = "correct horse battery staple"

# An `app.config` key a test sets to give every request a fresh `g`, as
# under waitress (tests/security/conftest.py).
FRESH_REQUEST_STATE = "TEST_FRESH_REQUEST_STATE"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.05):
    """Poll `predicate` until it returns something truthy; return that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


_CSRF_INPUT = re.compile(r'<input[^>]*name="csrf_token"[^>]*value="([^"]+)"')


def csrf_token(client, url: str) -> str:
    """The CSRF token from a page's form, as a browser would submit it."""
    page = client.get(url)
    match = _CSRF_INPUT.search(page.get_data(as_text=True))
    assert match, f"no CSRF token on {url} (status {page.status_code})"
    return match.group(1)


def login(client, email: str, password: str = PASSWORD, next_url: str | None = None):
    """Log in through the real form (CSRF on); returns the response, unfollowed."""
    url = "/login" + (f"?{urlencode({'next': next_url})}" if next_url else "")
    token = csrf_token(client, url)
    return client.post(url, data={"email": email, "password": password, "csrf_token": token})


def start_admin(spawn, env: dict[str, str] | None = None) -> str:
    """The admin under waitress on a free port (via the `spawn` fixture); its base URL."""
    port = free_port()
    web = f"http://127.0.0.1:{port}"
    spawn(
        ["-m", "ccadmin.web", f"--listen=127.0.0.1:{port}"],
        env=env,
        ready_url=f"{web}/login",
    )
    return web


def start_stack(spawn, env: dict[str, str] | None = None) -> tuple[str, str]:
    """Admin, one worker and one API process, as `make run` has them; (admin, API) URLs."""
    web = start_admin(spawn, env)
    spawn(["-m", "workers"], env=env)
    api_port = free_port()
    api = f"http://127.0.0.1:{api_port}"
    spawn(
        ["-m", "ccadmin.api"],
        env={**(env or {}), "API_PORT": str(api_port), "API_PROCESSES": "1"},
        ready_url=f"{api}/healthz",
    )
    return web, api


_CONFIRM_FORM = re.compile(
    r'<form method="post" action="([^"]+)"[^>]*id="confirm-form">(.*?)</form>', re.S
)
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


def confirmation(response) -> tuple[str, list[tuple[str, str]]] | None:
    """(action URL, inputs) of a confirmation page, or None if the response is not one."""
    match = _CONFIRM_FORM.search(response.get_data(as_text=True))
    if response.status_code != 200 or match is None:
        return None
    inputs = [(name, html.unescape(value)) for name, value in _HIDDEN.findall(match.group(2))]
    return html.unescape(match.group(1)), inputs


def post_confirmed(client, url: str, data: dict[str, str]):
    """POST a bulk action, then confirm it on the page it answers with, as a user would."""
    first = client.post(url, data=data)
    page = confirmation(first)
    assert page is not None, first.get_data(as_text=True)[:2000]
    action, inputs = page
    return client.post(action, data=MultiDict(inputs))


def invoke(app, *args: str, **kwargs):
    return app.test_cli_runner().invoke(args=list(args), **kwargs)
