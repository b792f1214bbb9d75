"""`make run`: the whole stack on one machine, from an empty folder to a working admin.

Applies migrations, creates the first admin, a demo API key and demo data on
the first start, then runs web, api and worker as child processes with their
output prefixed by name, like foreman. Ctrl-C stops every child and the
embedded Redis. Local development only: deployments use the Procfile.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from ccadmin import config, embedded_redis

ADMIN_EMAIL = "admin@example.com"
DEMO_CAMPAIGN = "default"
DEMO_USERS = 1000
# How long a child gets to exit after SIGTERM before it is killed.
STOP_GRACE_SECONDS = 10.0
READY_TIMEOUT_SECONDS = 120.0
# A demo key as `create-api-key` prints it (models.api_keys.KEY_PREFIX + token).
API_KEY_PATTERN = re.compile(r"\bcc_[A-Za-z0-9_-]{20,}")
COLOURS = {"web": "36", "api": "35", "worker": "33", "setup": "32", "run": "1"}


# Threads copying the children's output; joined at exit so the last lines show.
_readers: list[threading.Thread] = []


# waitress says so whenever a browser opens more connections than the web
# process has threads, as every page load does on a dev box: nothing to act on.
QUIET_PREFIXES = ("WARNING:waitress.queue:Task queue depth",)
# Under `make run` the worker logs warnings and errors only, so its routine
# lines do not scroll the login away; LOG_LEVEL overrides it.
WORKER_LOG_LEVEL = "WARNING"


class Shutdown(Exception):
    """Raised in the main thread by SIGINT/SIGTERM to unwind and stop everything."""


class ChildFailed(RuntimeError):
    """A setup command or a long-running child exited on its own."""


def process_table(settings: config.Settings) -> dict[str, list[str]]:
    """The long-running processes, as the Procfile names them."""
    python = sys.executable
    return {
        "web": [python, "-m", "ccadmin.web", f"--listen=127.0.0.1:{settings.admin_port}"],
        "api": [python, "-m", "ccadmin.api"],
        "worker": [python, "-m", "workers"],
    }


def say(name: str, line: str) -> None:
    """Print one line prefixed with the process name, coloured on a terminal."""
    label = f"{name:<7}|"
    if sys.stdout.isatty():
        label = f"\033[{COLOURS.get(name, '0')}m{label}\033[0m"
    sys.stdout.write(f"{label} {line}\n")
    sys.stdout.flush()


def _pipe_output(name: str, stream, collected: list[str] | None = None) -> None:
    for line in stream:
        line = line.rstrip("\r\n")
        if collected is not None:
            collected.append(line)
        if not line.startswith(QUIET_PREFIXES):
            say(name, line)
    stream.close()


def child_environment(settings: config.Settings) -> dict[str, str]:
    """The devserver's own environment, plus unbuffered output for readable logs."""
    return {
        # A local API stays private to the machine unless API_HOST says otherwise.
        "API_HOST": "127.0.0.1",
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "API_PORT": str(settings.api_port),
        "ADMIN_PORT": str(settings.admin_port),
        # The Braze snippets name the local API unless a public URL is set.
        "CCADMIN_API_URL": settings.api_public_url or f"http://127.0.0.1:{settings.api_port}",
    }


def flask_command(
    settings: config.Settings, *args: str, extra_env: dict[str, str] | None = None
) -> str:
    """Run `flask --app wsgi ARGS` to completion, echoing its output; return that output."""
    command = [sys.executable, "-m", "flask", "--app", "wsgi", *args]
    output: list[str] = []
    # Its own session: a Ctrl-C reaches the devserver, which stops it.
    with subprocess.Popen(
        command,
        cwd=config.PROJECT_ROOT,
        env={**child_environment(settings), **(extra_env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    ) as process:
        try:
            _pipe_output("setup", process.stdout, output)
            process.wait()
        except BaseException:
            process.kill()
            raise
    if process.returncode != 0:
        raise ChildFailed(f"`flask --app wsgi {' '.join(args)}` exited with {process.returncode}")
    return "\n".join(output)


def admin_exists(settings: config.Settings) -> bool:
    """True once any admin user exists: that, not a file, marks a first start as done."""
    import sqlalchemy

    from ccadmin.models import AdminUser

    engine = sqlalchemy.create_engine(settings.database_url)
    try:
        with engine.connect() as connection:
            query = sqlalchemy.select(AdminUser.id).limit(1)
            return connection.execute(query).first() is not None
    finally:
        engine.dispose()


def credentials_path(settings: config.Settings) -> Path:
    return settings.instance_path / "credentials.json"


def write_private(path: Path, text: str) -> None:
    """Write `text` to a file only its owner can read, whatever it was before."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)


def save_credentials(settings: config.Settings, credentials: dict) -> None:
    """Keep the generated login and demo key (owner-only) so each start can print them."""
    write_private(credentials_path(settings), json.dumps(credentials, indent=2))


def ensure_secret_key(settings: config.Settings) -> config.Settings:
    """Generate the session key on first start and keep it owner-only in the instance folder.

    Every child reads it from there (config.stored_secret_key), so sessions
    survive a restart and no two installations share a key.
    """
    config.private_directory(settings.instance_path)
    path = settings.instance_path / config.SECRET_KEY_FILE
    if path.exists():
        path.chmod(0o600)
    if settings.secret_key:
        return settings
    key = secrets.token_urlsafe(48)
    write_private(path, key + "\n")
    say("run", f"generated a session key in {path}")
    return dataclasses.replace(settings, secret_key=key)


def load_credentials(settings: config.Settings) -> dict:
    try:
        return json.loads(credentials_path(settings).read_text())
    except (OSError, ValueError):
        return {}


def first_start(settings: config.Settings) -> dict:
    """Create demo content, a demo API key and the first admin; return the credentials.

    The admin comes last: it marks the first start as done, so an interrupted
    first start is simply repeated.
    """
    email = settings.admin_email or ADMIN_EMAIL
    password = settings.admin_password or secrets.token_urlsafe(18)
    say("run", f"first start: {DEMO_USERS} demo users, a demo API key, admin {email}")
    flask_command(settings, "seed", "--users", str(DEMO_USERS), "--campaign", DEMO_CAMPAIGN)
    match = API_KEY_PATTERN.search(flask_command(settings, "create-api-key", "demo"))
    if match is None:
        raise ChildFailed("`create-api-key demo` printed no key")
    credentials = {
        "admin_email": email,
        "admin_password": None if settings.admin_password else password,
        "api_key": match.group(0),
    }
    save_credentials(settings, credentials)
    # The password travels in the environment, not on a command line `ps` shows.
    flask_command(
        settings,
        "create-user",
        email,
        "--role",
        "admin",
        extra_env={"CCADMIN_ADMIN_PASSWORD": password},
    )
    return credentials


def start_child(name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen:
    """Start one long-running child in its own process group, output prefixed."""
    process = subprocess.Popen(
        command,
        cwd=config.PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    reader = threading.Thread(target=_pipe_output, args=(name, process.stdout), daemon=True)
    reader.start()
    _readers.append(reader)
    return process


def stop_children(children: dict[str, subprocess.Popen]) -> None:
    """SIGTERM every child's process group, then SIGKILL what is left after the grace."""
    for process in children.values():
        _signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for name, process in children.items():
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            say("run", f"{name} did not stop within {STOP_GRACE_SECONDS:.0f} s: killing it")
            _signal_group(process, signal.SIGKILL)
            process.wait()
        # Forked workers (the api's processes, RQ's work horse) share the group.
        _signal_group(process, signal.SIGKILL)


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def check_children(children: dict[str, subprocess.Popen]) -> None:
    for name, process in children.items():
        if process.poll() is not None:
            raise ChildFailed(f"{name} exited with {process.returncode}")


def answers(url: str) -> bool:
    """True when `url` responds 200."""
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_for(
    check: Callable[[], bool], children: dict[str, subprocess.Popen], timeout: float
) -> bool:
    """Poll `check` while every child stays up; False if it never came true in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        check_children(children)
        if check():
            return True
        time.sleep(0.1)
    return False


def banner(settings: config.Settings, credentials: dict) -> list[str]:
    """What a developer needs to start clicking and calling."""
    admin_url = f"http://127.0.0.1:{settings.admin_port}"
    api_url = f"http://127.0.0.1:{settings.api_port}"
    password = credentials.get("admin_password") or (
        "(from CCADMIN_ADMIN_PASSWORD)" if settings.admin_password else "(not stored here)"
    )
    key = credentials.get("api_key") or "KEY"
    return [
        "",
        f"  Admin     {admin_url}/login",
        f"  Login     {credentials.get('admin_email') or '(an existing admin)'}",
        f"  Password  {password}",
        f"  API       {api_url}",
        f"  Demo key  {credentials.get('api_key') or '(not stored here)'}",
        "",
        f"  curl -H 'X-API-Key: {key}' '{api_url}/data?user_id=42'",
        "",
        f"  Credentials: {credentials_path(settings)}.  Ctrl-C stops everything.",
        "",
    ]


def run(settings: config.Settings) -> None:
    """Set up, start the children and watch them until a signal or a failure."""
    started = time.monotonic()
    children: dict[str, subprocess.Popen] = {}
    try:
        if settings.embedded_redis:
            embedded_redis.ensure_running(settings.instance_path)
            say("run", f"embedded Redis on {settings.redis_socket_path}")
        flask_command(settings, "db", "upgrade")
        if admin_exists(settings):
            credentials = load_credentials(settings)
        else:
            credentials = first_start(settings)
        env = child_environment(settings)
        worker_env = {"LOG_LEVEL": WORKER_LOG_LEVEL, **env}
        for name, command in process_table(settings).items():
            children[name] = start_child(name, command, worker_env if name == "worker" else env)
        admin_url = f"http://127.0.0.1:{settings.admin_port}/login"
        if not wait_for(lambda: answers(admin_url), children, READY_TIMEOUT_SECONDS):
            raise ChildFailed(f"{admin_url} did not answer within {READY_TIMEOUT_SECONDS:.0f} s")
        say("run", f"admin answering after {time.monotonic() - started:.1f} s")
        api_ready = f"http://127.0.0.1:{settings.api_port}/readyz"
        if wait_for(lambda: answers(api_ready), children, READY_TIMEOUT_SECONDS):
            say("run", f"API ready after {time.monotonic() - started:.1f} s")
        else:
            say("run", f"warning: {api_ready} is not ready yet; see the worker's output")
        for line in banner(settings, credentials):
            say("run", line)
        while True:
            check_children(children)
            time.sleep(0.2)
    finally:
        # A second Ctrl-C must not cut the cleanup short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if children:
            say("run", "stopping " + ", ".join(children))
            stop_children(children)
            for reader in _readers:
                reader.join(timeout=2)
        if settings.embedded_redis and embedded_redis.stop(settings.instance_path):
            say("run", "embedded Redis stopped")


def _raise_shutdown(signum: int, frame: object) -> None:
    raise Shutdown(signal.Signals(signum).name)


def main() -> int:
    """Entry point of `python -m devtools.devserver`; the exit status says how it ended."""
    signal.signal(signal.SIGINT, _raise_shutdown)
    signal.signal(signal.SIGTERM, _raise_shutdown)
    try:
        settings = ensure_secret_key(config.load())
        run(settings)
    except Shutdown as stop:
        say("run", f"{stop} received: stopped")
        return 0
    except config.ConfigError as error:
        say("run", f"configuration error: {error}")
        return 2
    except (ChildFailed, embedded_redis.EmbeddedRedisError) as error:
        say("run", f"error: {error}; everything was stopped")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
