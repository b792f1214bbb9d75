"""Run the API under waitress: in-process, or N forked processes on one port.

One waitress process is bound by one core (the GIL), so `API_PROCESSES`
children serve one port through sockets the parent binds before forking. The parent only
supervises: it forwards SIGTERM/SIGINT, restarts a child that dies, and exits
when the children are gone. Each child builds its own app (Redis pool, config
poller, cache subscriber) after the fork, since neither sockets nor threads
survive one. `API_SERVER=granian` runs the same WSGI app under granian.

`serve()` takes the app factory as a "module:function" path so the benchmark
serves its hello-world ceiling through exactly this code and these settings.
"""

from __future__ import annotations

import ctypes
import importlib
import logging
import os
import resource
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from waitress.server import create_server

from ccadmin import embedded_redis
from ccadmin.api import connections, host_counts
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
# The Connected Content app; the benchmark passes its hello-world instead.
API_APP = "ccadmin.api.app:create_app"


def waitress_options(settings: Settings) -> dict[str, Any]:
    """waitress adjustments for a read-only endpoint under thousands of connections."""
    return {
        # Requests in flight at once per process. Each thread holds one Redis
        # connection during its round trip; more threads overlap round trips
        # but cost GIL hand-offs, and the CPU is the limit (docs/performance.md).
        "threads": settings.api_threads,
        # Open connections per process. The caller opens thousands during a
        # send; past this limit new connections wait in the listen backlog.
        # Each costs a file descriptor (the limit is raised at start).
        "connection_limit": settings.api_connection_limit,
        # select() cannot watch more than 1,024 sockets and crashes the
        # process past that; poll() has no such limit.
        "asyncore_use_poll": True,
        "backlog": LISTEN_BACKLOG,
        # Connections silent for this long are closed (API_CHANNEL_TIMEOUT):
        # idle keep-alive callers, and clients that connect and send nothing
        # (slowloris). The caller reuses connections within a send; holding
        # idle ones longer only eats into connection_limit. The sweep runs at
        # least twice per timeout so a cut comes at most 1.5 timeouts late.
        "channel_timeout": settings.api_channel_timeout,
        "cleanup_interval": max(1, min(10, settings.api_channel_timeout // 2)),
        # A request carries at most a user id: large bodies or headers are
        # refused before they cost memory.
        "max_request_body_size": 64 * 1024,
        "max_request_header_size": 32 * 1024,
        # No `Server: waitress` banner: it helps nobody but a scanner.
        "ident": "",
        # The API reads no X-Forwarded-* header, so waitress's middleware that
        # strips them from every request is pure cost on the hot path.
        "clear_untrusted_proxy_headers": False,
    }


def configure_logging() -> None:
    """One root handler for the whole process tree, set before anything logs."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s",
    )
    # waitress warns on every request queued behind busy threads: with
    # thousands of connections and a few threads that is the normal state,
    # and one log line per request would cost more than the request.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)


def raise_file_limit(settings: Settings) -> int:
    """Lift the soft open-files limit to the hard one so connection_limit is reachable.

    Every connection is a file descriptor; the common soft default (1,024)
    would refuse connections long before connection_limit. Returns the limit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard != resource.RLIM_INFINITY and hard < settings.api_connection_limit:
        log.warning(
            "open-files limit %d is below API_CONNECTION_LIMIT=%d: raise the hard limit "
            "(ulimit -Hn, LimitNOFILE=) or connections will be refused early",
            hard,
            settings.api_connection_limit,
        )
    return hard


def load_app_factory(path: str) -> Callable[[Settings], Any]:
    """The app factory named by "module:function"."""
    module_name, _, function = path.partition(":")
    return getattr(importlib.import_module(module_name), function)


def bind(settings: Settings, count: int = 1) -> list[socket.socket]:
    """Listening sockets on the API port, bound by the parent before any fork.

    With several processes each gets a socket of its own on the same port
    (SO_REUSEPORT): the kernel spreads new connections evenly across them.
    One shared socket would let whichever process wakes first accept nearly
    every connection while the others sit idle.
    """
    family, kind, proto, _, address = socket.getaddrinfo(
        settings.api_host, settings.api_port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    listeners: list[socket.socket] = []
    for _ in range(count):
        listener = listen(family, address, reuse_port=count > 1)
        # Port 0 asks for any free port: the others must join the same one.
        address = listener.getsockname()
        listeners.append(listener)
    return listeners


def listen(family: int, address: Any, reuse_port: bool) -> socket.socket:
    """One listening TCP socket on `address`."""
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    listener.bind(address)
    listener.listen(LISTEN_BACKLOG)
    return listener


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def serve_socket(
    listener: socket.socket,
    settings: Settings,
    app: str = API_APP,
    listeners: connections.ListenerBoard | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT in this process (a child, or the only process).

    On the signal, new connections are refused and requests in flight get
    up to API_SHUTDOWN_SECONDS to finish (connections.serve_until_stopped).
    """
    stop = connections.StopSignal()
    application = load_app_factory(app)(settings)
    server = create_server(application, sockets=[listener], **waitress_options(settings))
    # JSON bodies for requests waitress refuses itself (431, 413, 400), and
    # `Connection: close` on answers given while draining.
    server.channel_class = connections.ApiChannel
    connections.adapt(server)
    connections.serve_until_stopped(server, stop, settings.api_shutdown_seconds, listeners)
    close = getattr(application, "close", None)
    if close is not None:
        close()


PR_SET_PDEATHSIG = 1


def _stop_with_parent(parent_pid: int) -> None:
    """A child orphaned by a killed parent drains and exits rather than serve on its own.

    Linux delivers SIGTERM the moment the parent dies (PR_SET_PDEATHSIG);
    elsewhere a thread polls for the parent once a second.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM) != 0:
            raise OSError(ctypes.get_errno(), "prctl")
    except (OSError, AttributeError):
        threading.Thread(
            target=_poll_parent, args=(parent_pid,), name="parent-watch", daemon=True
        ).start()
        return
    if os.getppid() != parent_pid:  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _poll_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)


class Supervisor:
    """Forks the children, restarts the ones that die, stops them all on a signal."""

    def __init__(
        self, listeners: list[socket.socket], settings: Settings, app: str = API_APP
    ) -> None:
        # A child's socket is closed here once it is forked (see spawn).
        self.listeners: list[socket.socket | None] = list(listeners)
        self.family = listeners[0].family
        self.address = listeners[0].getsockname()
        self.settings = settings
        self.app = app
        self.children: dict[int, tuple[int, float]] = {}
        self.board = connections.ListenerBoard(len(listeners))
        self.stopping = False
        cpus = sorted(os.sched_getaffinity(0))
        # One child per CPU, pinned: an unpinned process flips between fast
        # and slow runs as the GIL hands off across cores (docs/performance.md).
        self.cpus = cpus if len(cpus) > 1 and settings.api_pin_cpus else []

    def spawn(self, index: int) -> None:
        """Fork child number `index`; it serves until told to stop.

        The child holds the only copy of its socket: when it closes it on
        SIGTERM the kernel refuses new connections at once, where a copy
        left open in the parent would queue them and reset them later. A
        restarted child gets a new socket in the same SO_REUSEPORT group.
        """
        listener = self.listeners[index]
        if listener is None:
            listener = listen(self.family, self.address, reuse_port=True)
        parent_pid = os.getpid()
        self.board.opened(index)
        pid = os.fork()
        if pid:
            self.children[pid] = (index, time.monotonic())
            listener.close()
            self.listeners[index] = None
            return
        code = 0
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            if self.cpus:
                os.sched_setaffinity(0, {self.cpus[index % len(self.cpus)]})
            _stop_with_parent(parent_pid)
            for other in self.listeners:
                if other is not None and other is not listener:
                    other.close()
            self.board.index = index
            serve_socket(listener, self.settings, self.app, self.board)
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
            if index is None:
                continue
            self.board.closed(index)
            if self.stopping:
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


def pin_to_one_cpu() -> None:
    """Keep a lone serving process (and the threads it starts next) on one CPU.

    Unpinned, a waitress process flips between fast and slow runs as the GIL
    hands off across cores; measured here, the slow mode served 42 requests/s
    where the pinned process serves thousands (docs/performance.md).
    """
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) > 1:
        os.sched_setaffinity(0, {cpus[-1]})


def serve(settings: Settings, app: str = API_APP) -> None:
    """Start the API as configured; returns when it has been told to stop."""
    configure_logging()
    if settings.embedded_redis:
        embedded_redis.ensure_running(settings.instance_path)
    open_files = raise_file_limit(settings)
    if settings.api_metrics:
        host_counts.reset(settings)
    if settings.api_server == "granian":
        serve_granian(settings, app)
        return
    listeners = bind(settings, settings.api_processes)
    host, port = listeners[0].getsockname()[:2]
    log.info(
        "Connected Content API on http://%s:%d (waitress processes=%d threads=%d "
        "connection_limit=%d open_files=%d cache=%d redis=%s redis_timeout=%dms)",
        host,
        port,
        settings.api_processes,
        settings.api_threads,
        settings.api_connection_limit,
        open_files,
        settings.api_cache_size,
        _redacted(settings.effective_redis_url),
        round(settings.api_redis_timeout * 1000),
    )
    if settings.api_processes == 1:
        if settings.api_pin_cpus:
            pin_to_one_cpu()
        serve_socket(listeners[0], settings, app)
    else:
        Supervisor(listeners, settings, app).run()
    for listener in listeners:
        listener.close()
    sys.stdout.flush()


def serve_granian(settings: Settings, app: str = API_APP) -> None:
    """The same WSGI app under granian (optional dependency): its workers replace ours."""
    try:
        from granian.constants import Interfaces
        from granian.server import Server
    except ImportError:
        raise SystemExit("API_SERVER=granian needs granian: pip install granian") from None
    log.info(
        "Connected Content API on http://%s:%d (granian workers=%d threads=%d cache=%d redis=%s)",
        settings.api_host,
        settings.api_port,
        settings.api_processes,
        settings.api_threads,
        settings.api_cache_size,
        _redacted(settings.effective_redis_url),
    )
    Server(
        app,
        address=settings.api_host,
        port=settings.api_port,
        interface=Interfaces.WSGI,
        # granian forks its workers itself; each calls the factory once,
        # which reads the same environment as a waitress child.
        factory=True,
        workers=settings.api_processes,
        # Python threads running the app per worker: the same trade-off as
        # waitress's threads (Redis round trips overlap, the GIL does not).
        blocking_threads=settings.api_threads,
        backlog=LISTEN_BACKLOG,
        # Requests a worker accepts at once before new ones wait in the
        # kernel queue: the counterpart of waitress's connection_limit.
        backpressure=settings.api_connection_limit,
        log_access=False,
    ).serve()
