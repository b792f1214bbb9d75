"""How a waitress server takes, sheds and drains connections.

Three gaps in waitress's own loop matter to a caller that opens thousands of
connections at send time:

- it accepts one connection per pass of its loop, and a pass walks every
  open connection, so a burst of new clients waits seconds in the kernel
  queue;
- at `connection_limit` it stops accepting altogether, so sockets that sit
  idle (finished keep-alive callers, or clients that connect and send
  nothing) lock real callers out until the channel timeout cuts them;
- on SIGTERM its loop ends at once: queued requests are cancelled and
  responses not yet flushed are lost with the process.

`adapt()` accepts in batches and, at the limit, closes the longest-idle
connections to make room (nginx does the same with idle keep-alive
connections); `serve_until_stopped()` runs the loop and, on a stop
signal, refuses new connections, finishes the requests in flight and closes
the rest before returning.
"""

from __future__ import annotations

import heapq
import logging
import multiprocessing
import select
import signal
import time
from typing import Any

from waitress import wasyncore
from waitress.task import WSGITask

from ccadmin.api.http_errors import JsonErrorChannel

log = logging.getLogger("ccadmin.api")

# Connections accepted per wake-up of the loop. Batches drain a spike in a few
# passes; the bound keeps one pass short.
ACCEPT_BATCH = 256
# At the connection limit, connections idle at least this long, with no
# bytes waiting to be read, may be closed to make room for new ones. A
# caller's request follows its connect within milliseconds; a socket that
# stays silent longer is a finished keep-alive caller or a slowloris client.
SHED_MIN_IDLE_SECONDS = 0.1
# Looking for idle connections walks all of them: at most this often.
SHED_INTERVAL_SECONDS = 0.1
# Loop wake-ups while draining: in-flight requests are checked this often.
DRAIN_POLL_SECONDS = 0.05
# While draining, an idle keep-alive connection is closed only once it has
# been quiet this long: a caller that just got an answer sends its next
# request within milliseconds, and that request is better answered (with
# `Connection: close`) than cut off. A request sent just as the connection
# closes is the race every HTTP/1.1 server has; clients retry it.
DRAIN_QUIET_SECONDS = 1.0
# How long a process that closed its listener waits for its siblings on the
# same port to close theirs before it starts closing keep-alive connections.
SIBLINGS_CLOSE_SECONDS = 1.0


class DrainingTask(WSGITask):
    """Answers given while the server drains carry `Connection: close`.

    The client then opens its next connection elsewhere instead of sending
    another request on one that is about to be closed.
    """

    def build_response_header(self) -> bytes:
        if getattr(self.channel.server, "draining", False):
            self.set_close_on_finish()
        return super().build_response_header()


class ApiChannel(JsonErrorChannel):
    """The API's connections: JSON protocol errors, `Connection: close` while draining."""

    task_class = DrainingTask


def adapt(server: Any) -> None:
    """Accept in batches, and shed idle connections instead of refusing new ones."""
    accept_one = server.handle_accept
    limit = server.adj.connection_limit
    readable = server.readable
    next_shed = 0.0

    def handle_accept() -> None:
        for _ in range(ACCEPT_BATCH):
            before = len(server._map)
            accept_one()
            # Nothing new in the map: the queue is empty (or one accept failed).
            if len(server._map) == before or len(server._map) >= limit:
                return

    def readable_or_shed() -> bool:
        nonlocal next_shed
        if readable():
            return True
        # At the limit, with connections waiting in the kernel queue.
        now = time.monotonic()
        if server.accepting and now >= next_shed and _unread([server]):
            next_shed = now + SHED_INTERVAL_SECONDS
            shed_idle(server, ACCEPT_BATCH)
        return False

    server.handle_accept = handle_accept
    server.readable = readable_or_shed


def idle(channel: Any) -> bool:
    """True when a connection has nothing in flight: no request queued, nothing to send."""
    return not channel.requests and not channel.total_outbufs_len and not channel.will_close


def shed_idle(server: Any, count: int) -> int:
    """Mark up to `count` of the longest-idle connections to close; returns how many.

    They close on the loop's next pass, which frees their slots for the
    connections waiting in the kernel queue.
    """
    cutoff = time.time() - SHED_MIN_IDLE_SECONDS
    quiet = [
        channel
        for channel in server.active_channels.values()
        if channel.last_activity < cutoff and idle(channel) and channel.request is None
    ]
    unread = _unread(quiet)
    candidates = [channel for channel in quiet if channel._fileno not in unread]
    oldest = heapq.nsmallest(count, candidates, key=lambda channel: channel.last_activity)
    for channel in oldest:
        channel.will_close = True
    if oldest:
        log.warning(
            "connection limit (%d) reached: closed %d idle connection(s) to make room",
            server.adj.connection_limit,
            len(oldest),
        )
    return len(oldest)


class ListenerBoard:
    """Which of the processes serving one port still have their listener open.

    Shared memory made before the fork: slot `index` belongs to child
    `index`; the supervisor opens it at each fork and clears it when the
    child is gone, the child clears it once its listener is closed.
    """

    def __init__(self, count: int) -> None:
        self._open = multiprocessing.RawArray("b", count)
        self.index = -1

    def opened(self, index: int) -> None:
        self._open[index] = 1

    def closed(self, index: int) -> None:
        self._open[index] = 0

    def mark_closed(self) -> None:
        """In a child: its own listener is closed."""
        self._open[self.index] = 0

    def any_open(self) -> bool:
        return any(self._open)


class StopSignal:
    """SIGTERM/SIGINT, noted from the moment this is made; wakes the server's loop once it runs.

    Made before the app is built, so a signal during start-up (a deploy that
    stops a process still starting) still ends in a drain, not in an abrupt
    exit that resets the connections already queued for this process.
    Further signals change nothing: a platform signals every process of the
    group and the supervisor forwards the same signal, so a child sees two;
    the grace period bounds the drain, and SIGKILL is there for the rest.
    """

    def __init__(self) -> None:
        self.requested = False
        self.server: Any = None
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if not self.requested:
            self.requested = True
            if self.server is not None:
                self.server.pull_trigger()  # wake the loop's poll()


def serve_until_stopped(
    server: Any,
    stop: StopSignal,
    grace_seconds: float,
    listeners: ListenerBoard | None = None,
) -> None:
    """Run the loop until `stop` is requested, then drain for up to `grace_seconds`.

    `listeners` tells the sibling processes on the same port apart (see drain).
    """
    stop.server = server
    loop = server.asyncore.loop
    options = {"map": server._map, "use_poll": server.adj.asyncore_use_poll, "count": 1}
    try:
        while not stop.requested:
            # At the limit the listener is not watched, so nothing would wake
            # the loop for the connections waiting: look again soon for idle
            # ones to close (adapt). Otherwise waitress's own wait is fine.
            full = len(server._map) >= server.adj.connection_limit
            timeout = SHED_INTERVAL_SECONDS if full else server.adj.asyncore_loop_timeout
            loop(timeout=timeout, **options)
        drain(server, grace_seconds, lambda: loop(timeout=DRAIN_POLL_SECONDS, **options), listeners)
    finally:
        server.task_dispatcher.shutdown(cancel_pending=True, timeout=1)


def drain(
    server: Any, grace_seconds: float, one_pass: Any, listeners: ListenerBoard | None = None
) -> None:
    """Refuse new connections; finish what is in flight; close the rest.

    With sibling processes on the same port, keep-alive connections are
    closed only once every sibling has closed its listener (or after
    SIBLINGS_CLOSE_SECONDS): a caller told `Connection: close` reconnects at
    once, and a connection the kernel queues on a sibling in the instant
    before that sibling closes its listener is reset, not refused.
    """
    started = time.monotonic()
    # Closing a listener resets the connections still in its queue: take
    # them first (their requests are answered like the others), then close,
    # so the kernel refuses new connections (once every process holding the
    # socket has closed it) instead of queueing them.
    _accept_queued(server)
    server.accepting = False
    wasyncore.dispatcher.close(server)  # the listener only; the trigger stays
    if listeners is not None:
        listeners.mark_closed()
        until = min(started + SIBLINGS_CLOSE_SECONDS, started + grace_seconds)
        while listeners.any_open() and time.monotonic() < until:
            one_pass()
    server.draining = True
    busy: list[Any] = []
    while time.monotonic() - started < grace_seconds:
        busy = []
        quiet = []
        for channel in list(server.active_channels.values()):
            (quiet if idle(channel) and channel.request is None else busy).append(channel)
        unread = _unread(quiet)
        recent = time.time() - DRAIN_QUIET_SECONDS
        for channel in quiet:
            if channel._fileno in unread or channel.last_activity > recent:
                busy.append(channel)  # a request (or a close) may be on its way
            else:
                channel.will_close = True
        one_pass()
        if not busy and not server.active_channels:
            break
    log.info(
        "stopped after %.2f s of draining (%d connection(s) still busy)",
        time.monotonic() - started,
        len(busy),
    )


def _accept_queued(server: Any) -> None:
    """Accept every connection waiting in the listener's queue, past the limit if need be."""
    accept = type(server).handle_accept  # waitress's own: one connection per call
    while True:
        before = len(server._map)
        accept(server)
        if len(server._map) == before:
            return


def _unread(channels: list[Any]) -> set[int]:
    """File descriptors among `channels` with bytes waiting to be read."""
    watcher = select.poll()
    for channel in channels:
        watcher.register(channel._fileno, select.POLLIN)
    return {fd for fd, _ in watcher.poll(0)}
