"""`make run` as a new user meets it: start, log in, edit, see it served, Ctrl-C, nothing left.

Always on the embedded defaults (SQLite and the embedded Redis in a temporary
instance folder), whatever database the rest of the suite uses: that is the
path a fresh clone takes.
"""

from __future__ import annotations

import html
import http.cookiejar
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest
from common.support import free_port, wait_until

from ccadmin import embedded_redis
from ccadmin.config import PROJECT_ROOT

pytestmark = pytest.mark.slow

# First start: migrations, 1,000 demo users, three processes, a full publish.
START_TIMEOUT = 240.0
STOP_TIMEOUT = 60.0
CONTENT_LIST = "/admin/content/"
EDIT_LINK = r'href="([^"]*/edit/\?id=[^"]*)"'
# Schema fields are prefixed in the entry forms (ccadmin/admin/content.py).
MESSAGE_INPUT = "field_message"
# Variables of the caller's shell (and of this suite) that would move the
# devserver off the embedded defaults.
UNSET = (
    "DATABASE_URL",
    "REDIS_URL",
    "SECRET_KEY",
    "CCADMIN_API_KEYS",
    "CCADMIN_ADMIN_EMAIL",
    "CCADMIN_ADMIN_PASSWORD",
    "TEST_DATABASE_URL",
    "TEST_REDIS_URL",
    "PORT",
)


@dataclass
class Devserver:
    process: subprocess.Popen
    instance_path: Path
    admin_url: str
    api_url: str
    output: list[str] = field(default_factory=list)

    def printed(self) -> str:
        return "\n".join(self.output)


def processes_mentioning(text: str) -> list[tuple[int, str]]:
    """Live processes whose command line or environment contains `text`."""
    found = []
    needle = text.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(") ", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and (needle in cmdline or needle in environ):
            found.append((int(entry.name), cmdline.replace(b"\0", b" ").decode(errors="replace")))
    return found


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[1])


def _kill_leftovers(instance_path: Path) -> None:
    for pid, _ in processes_mentioning(str(instance_path)):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def devserver() -> Iterator[Devserver]:
    """`python -m devtools.devserver` in a temporary instance folder on free ports."""
    instance_path = Path(tempfile.mkdtemp(prefix="ccrun-"))
    admin_port, api_port = free_port(), free_port()
    env = {name: value for name, value in os.environ.items() if name not in UNSET}
    env.update(
        CCADMIN_INSTANCE_PATH=str(instance_path),
        ADMIN_PORT=str(admin_port),
        API_PORT=str(api_port),
        # Two API processes would only slow the start on a two-core machine.
        API_PROCESSES="1",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "devtools.devserver"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    server = Devserver(
        process, instance_path, f"http://127.0.0.1:{admin_port}", f"http://127.0.0.1:{api_port}"
    )

    def collect() -> None:
        for line in process.stdout:
            server.output.append(line.rstrip("\n"))

    reader = threading.Thread(target=collect, daemon=True)
    reader.start()
    try:
        yield server
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        reader.join(timeout=5)
        _kill_leftovers(instance_path)
        embedded_redis.stop(instance_path)
        shutil.rmtree(instance_path, ignore_errors=True)


def status_of(url: str, headers: dict[str, str] | None = None) -> int | None:
    """HTTP status of a GET, or None while nothing listens."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=2):
            return 200
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def wait_for_stack(server: Devserver) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"devserver exited with {server.process.returncode}:\n{server.printed()}")
        if (
            status_of(server.admin_url + "/login") == 200
            and status_of(server.api_url + "/readyz") == 200
            and "curl -H" in server.printed()
        ):
            return
        time.sleep(0.25)
    pytest.fail(f"stack not ready within {START_TIMEOUT} s:\n{server.printed()}")


class FormParser(HTMLParser):
    """The forms of a page: action, method and the values a browser would submit."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict] = []
        self._textarea: str | None = None
        self._select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append(
                {
                    "action": attributes.get("action", ""),
                    "method": attributes.get("method", "get").lower(),
                    "fields": {},
                }
            )
            return
        if not self.forms:
            return
        fields = self.forms[-1]["fields"]
        name = attributes.get("name")
        if tag == "input" and name:
            kind = attributes.get("type", "text").lower()
            if kind in ("submit", "button", "image", "reset", "file"):
                return
            if kind in ("checkbox", "radio") and "checked" not in attributes:
                return
            fields[name] = attributes.get("value", "on" if kind == "checkbox" else "")
        elif tag == "textarea" and name:
            self._textarea = name
            fields[name] = ""
        elif tag == "select" and name:
            self._select = name
        elif tag == "option" and self._select:
            if "selected" in attributes or self._select not in fields:
                fields[self._select] = attributes.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "textarea":
            self._textarea = None
        elif tag == "select":
            self._select = None

    def handle_data(self, data: str) -> None:
        if self._textarea and self.forms:
            self.forms[-1]["fields"][self._textarea] += data


class Browser:
    """A cookie-keeping HTTP client for the admin, standard library only."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def request(self, path: str, form: dict[str, str] | None = None) -> tuple[str, str]:
        """GET (or POST `form`); return the final URL after redirects and the page."""
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        url = urllib.parse.urljoin(self.base_url + "/", path)
        with self.opener.open(url, data=data, timeout=30) as response:
            return response.geturl(), response.read().decode()

    def form_on(self, path: str, containing: str) -> tuple[str, dict[str, str]]:
        """The first form on the page at `path` with a field named `containing`."""
        url, page = self.request(path)
        parser = FormParser()
        parser.feed(page)
        for form in parser.forms:
            if containing in form["fields"]:
                return urllib.parse.urljoin(url, form["action"] or url), form["fields"]
        raise AssertionError(f"no form with a {containing!r} field at {url}:\n{page[:2000]}")


def read_content(server: Devserver, api_key: str, user_id: str) -> dict:
    request = urllib.request.Request(
        f"{server.api_url}/data?user_id={user_id}", headers={"X-API-Key": api_key}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.headers["Content-Type"].startswith("application/json")
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        raise AssertionError(
            f"user {user_id}: {error.code} {error.read()!r}\n{server.printed()}"
        ) from None


def test_make_run_serves_an_admin_edit_and_stops_cleanly(devserver):
    wait_for_stack(devserver)
    credentials = json.loads((devserver.instance_path / "credentials.json").read_text())
    # Nothing in the instance folder is readable by another local user: not the
    # generated session key, nor the embedded Redis's files holding session ids.
    instance = devserver.instance_path
    assert instance.stat().st_mode & 0o077 == 0
    written = [instance / "credentials.json", instance / "secret_key"]
    written += [path for path in instance.glob("**/*") if path.name.startswith(("redis", "append"))]
    assert any(path.name.startswith("appendonly") for path in written)
    assert [path.name for path in written if path.stat().st_mode & 0o077] == []
    assert len((instance / "secret_key").read_text().strip()) >= 64
    api_key = credentials["api_key"]
    printed = devserver.printed()
    assert f"{devserver.admin_url}/login" in printed
    assert credentials["admin_email"] in printed
    # The admin names no server software, as the API does not.
    with urllib.request.urlopen(f"{devserver.admin_url}/login", timeout=5) as login_page:
        assert login_page.headers["Server"] is None
    assert credentials["admin_password"] in printed
    assert f"curl -H 'X-API-Key: {api_key}' '{devserver.api_url}/data?user_id=42'" in printed

    seeded = read_content(devserver, api_key, "42")
    assert seeded["has_content"] is True
    assert seeded["campaign"] == "default"
    assert status_of(f"{devserver.api_url}/data?user_id=42") == 401

    browser = Browser(devserver.admin_url)
    action, fields = browser.form_on("/login", "csrf_token")
    fields.update(email=credentials["admin_email"], password=credentials["admin_password"])
    landed, _ = browser.request(action, fields)
    assert urllib.parse.urlsplit(landed).path.startswith("/admin")

    message = f"Edited through make run at {time.time():.0f}"
    edit_content(browser, "42", message)

    served = wait_until(
        lambda: (body := read_content(devserver, api_key, "42"))["message"] == message and body,
        timeout=10,
    )
    assert served["version"] > seeded["version"]

    os.killpg(devserver.process.pid, signal.SIGINT)
    assert devserver.process.wait(timeout=STOP_TIMEOUT) == 0
    wait_until(lambda: not processes_mentioning(str(devserver.instance_path)), timeout=5)
    assert status_of(devserver.admin_url + "/login") is None
    assert status_of(devserver.api_url + "/healthz") is None
    assert not embedded_redis.is_answering(devserver.instance_path / "redis.sock")


def edit_content(browser: Browser, user_id: str, message: str) -> None:
    """Change one user's message in the `default` campaign through the admin's edit form."""
    _, listing = browser.request(f"{CONTENT_LIST}?search={urllib.parse.quote(user_id)}")
    edit_links = {html.unescape(link) for link in re.findall(EDIT_LINK, listing)}
    assert len(edit_links) == 1, f"expected one entry for user {user_id}: {edit_links}"
    action, fields = browser.form_on(edit_links.pop(), MESSAGE_INPUT)
    assert "csrf_token" in fields
    fields[MESSAGE_INPUT] = message
    landed, page = browser.request(action, fields)
    # A valid save redirects back to the list; a rejected one renders the form again.
    assert "/edit/" not in landed, page[:2000]


def test_a_process_that_dies_stops_everything_with_an_error(devserver):
    wait_for_stack(devserver)
    # The devserver's own child, not the RQ scheduler it forks.
    workers = [
        pid
        for pid, cmdline in processes_mentioning(str(devserver.instance_path))
        if "-m workers" in cmdline and parent_of(pid) == devserver.process.pid
    ]
    assert len(workers) == 1

    os.kill(workers[0], signal.SIGKILL)

    assert devserver.process.wait(timeout=STOP_TIMEOUT) == 1
    wait_until(lambda: not processes_mentioning(str(devserver.instance_path)), timeout=5)
    assert "worker exited with -9" in devserver.printed()
    assert status_of(devserver.admin_url + "/login") is None
    assert not embedded_redis.is_answering(devserver.instance_path / "redis.sock")
