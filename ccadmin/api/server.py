"""Run the API under waitress: in-process, or N forked processes on one socket.

One waitress process is bound by one core (the GIL), so `API_PROCESSES`
children share a listening socket bound once by the parent. The parent only
supervises: it forwards SIGTERM/SIGINT, restarts a child that dies, and exits
when the children are gone. Each child builds its own app (Redis pool, config
poller) after the fork, since neither sockets nor threads survive one.
"""

from __future__ import annotations

import logging
import os
import resource
import signal
import socket
import sys
import threading
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from waitress.server import create_server

from ccadmin import embedded_redis
from ccadmin.api.app import create_app
from ccadmin.config import Settings

log = logging.getLogger("ccadmin.api")

# Pending connections the kernel queues while every process is busy (clamped
# to net.core.somaxconn). A spike of fresh connections waits here instead of
# being refused; past it, clients see timeouts.
LISTEN_BACKLOG = 8192
# A child that dies sooner than this after starting is restarted only after
# a pause, so a child that cannot start does not spin the CPU.
RESTART_GRACE_SECONDS = 5.0
RESTART_PAUSE_SECONDS = 1.0


def waitress_options(settings: Settings) -> dict[str, Any]:
    """waitress adjustments for a read-only endpoint under thousands of connections."""
    return {
        # Requests in flight at once per process. Each thread holds one Redis
        # connection during its round trip; more threads overlap round trips
        # but cost GIL hand-offs, and the CPU is the limit (DESIGN 9).
        "threads": settings.api_threads,
        # Open connections per process. The caller opens thousands during a
        # send; past this limit new connections wait in the listen backlog.
        # Each costs a file descriptor (the limit is raised at start).
        "connection_limit": settings.api_connection_limit,
        # select() cannot watch more than 1,024 sockets and crashes the
        # process past that; poll() has no such limit.
        "asyncore_use_poll": True,
        "backlog": LISTEN_BACKLOG,
        # Idle keep-alive connections are closed after this many seconds. The
        # caller reuses connections within a send; holding idle ones longer
        # only eats into connection_limit.
        "channel_timeout": 30,
        "cleanup_interval": 10,
        # A request carries at most a user id: large bodies or headers are
        # refused before they cost memory.
        "max_request_body_size": 64 * 1024,
        "max_request_header_size": 32 * 1024,
        # No `Server: waitress` banner: it helps nobody but a scanner.
        "ident": "",
    }


def configure_logging() -> None:
    """One root handler for the whole process tree, set before anything logs."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s",
    )


def raise_file_limit(settings: Settings) -> None:
    """Lift the soft open-files limit so connection_limit is reachable."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = settings.api_connection_limit + 256
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def bind(settings: Settings) -> socket.socket:
    """The listening socket, bound once and shared by every child."""
    family, kind, proto, _, address = socket.getaddrinfo(
        settings.api_host, settings.api_port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    listener = socket.socket(family, kind, proto)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(address)
    listener.listen(LISTEN_BACKLOG)
    return listener


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def serve_socket(listener: socket.socket, settings: Settings) -> None:
    """Serve until SIGTERM/SIGINT in this process (a child, or the only process)."""
    stopping = False

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        if not stopping:  # a second signal must not interrupt the shutdown
            stopping = True
            raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server = create_server(create_app(settings), sockets=[listener], **waitress_options(settings))
    server.run()


def _exit_with_parent(parent_pid: int) -> None:
    # A child orphaned by a killed parent must not keep serving on its own.
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)


class Supervisor:
    """Forks the children, restarts the ones that die, stops them all on a signal."""

    def __init__(self, listener: socket.socket, settings: Settings) -> None:
        self.listener = listener
        self.settings = settings
        self.children: dict[int, tuple[int, float]] = {}
        self.stopping = False
        cpus = sorted(os.sched_getaffinity(0))
        # One child per CPU, pinned: an unpinned process flips between fast
        # and slow runs as the GIL hands off across cores (DESIGN 9).
        self.cpus = cpus if len(cpus) > 1 else []

    def spawn(self, index: int) -> None:
        """Fork child number `index`; it serves until told to stop."""
        parent_pid = os.getpid()
        pid = os.fork()
        if pid:
            self.children[pid] = (index, time.monotonic())
            return
        code = 0
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            if self.cpus:
                os.sched_setaffinity(0, {self.cpus[index % len(self.cpus)]})
            threading.Thread(
                target=_exit_with_parent, args=(parent_pid,), name="parent-watch", daemon=True
            ).start()
            serve_socket(self.listener, self.settings)
        except SystemExit:
            pass  # told to stop before waitress took over
        except BaseException:
            code = 1
            log.exception("API process %d failed", os.getpid())
        finally:
            logging.shutdown()
            os._exit(code)

    def forward(self, signum: int, frame: Any) -> None:
        """Pass a stop signal on to every child; the wait loop then drains."""
        self.stopping = True
        for pid in list(self.children):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    def run(self) -> None:
        """Start every child and wait; returns once all of them have exited."""
        signal.signal(signal.SIGTERM, self.forward)
        signal.signal(signal.SIGINT, self.forward)
        for index in range(self.settings.api_processes):
            self.spawn(index)
        while self.children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            index, started = self.children.pop(pid, (None, 0.0))
            if index is None or self.stopping:
                continue
            log.warning(
                "API process %d exited (status %d); starting a new one",
                pid,
                os.waitstatus_to_exitcode(status),
            )
            if time.monotonic() - started < RESTART_GRACE_SECONDS:
                time.sleep(RESTART_PAUSE_SECONDS)
            if not self.stopping:
                self.spawn(index)


def serve(settings: Settings) -> None:
    """Start the API as configured; returns when it has been told to stop."""
    configure_logging()
    if settings.embedded_redis:
        embedded_redis.ensure_running(settings.instance_path)
    raise_file_limit(settings)
    listener = bind(settings)
    host, port = listener.getsockname()[:2]
    log.info(
        "Connected Content API on http://%s:%d (processes=%d threads=%d "
        "connection_limit=%d redis=%s redis_timeout=%dms)",
        host,
        port,
        settings.api_processes,
        settings.api_threads,
        settings.api_connection_limit,
        _redacted(settings.effective_redis_url),
        round(settings.api_redis_timeout * 1000),
    )
    if settings.api_processes == 1:
        serve_socket(listener, settings)
    else:
        Supervisor(listener, settings).run()
    listener.close()
    sys.stdout.flush()
