"""The subscriber that feeds the entry cache the worker's announcements.

The in-process cache (cache.py) may answer a request only while this thread
is subscribed to keys.entry_changes_channel: every write the worker applies
is announced there, and an announcement invalidates older cached copies.
When the subscription breaks the cache is detached: nothing it holds
answers until a new subscription is in place and requests read Redis again.
"""

from __future__ import annotations

import json
import logging
import select
import time
from typing import Any

import redis

from ccadmin import keys
from ccadmin.api.cache import EntryCache
from ccadmin.api.clients import own_connection

log = logging.getLogger(__name__)

# The subscriber pings its connection this often when no message arrived and
# gives up on it when the answer takes longer than PONG_SECONDS: a silently
# dead connection (a network partition) would otherwise lose announcements
# while the cache keeps answering.
PING_SECONDS = 1.0
PONG_SECONDS = 2.0
# Pause before subscribing again after the subscription broke.
RESUBSCRIBE_SECONDS = 0.5
# The subscriber's name in CLIENT LIST, so operators can tell it apart.
SUBSCRIBER_NAME = "ccadmin-api-entry-changes"


def follow_entry_changes(source: redis.Redis, channel: str, cache: EntryCache) -> None:
    """Apply `channel`'s announcements on `source` to `cache`, resubscribing forever.

    `source` is the Redis the entries are read from: a replica's stream
    carries the announcements in order with the writes they announce.
    """
    while True:
        # A connection of its own, outside the pool: it stays subscribed.
        connection = own_connection(source)
        try:
            _listen(connection, channel, cache)
        except (redis.RedisError, OSError, ValueError) as exc:
            log.warning("entry announcements lost (%s); cache dropped", exc)
        except Exception:
            log.exception("entry announcement handling failed; cache dropped")
        finally:
            cache.detach()
            connection.disconnect()
        time.sleep(RESUBSCRIBE_SECONDS)


def _listen(connection: Any, channel: str, cache: EntryCache) -> None:
    """Subscribe, then apply announcements until the connection fails."""
    connection.connect()
    connection.send_command("CLIENT", "SETNAME", SUBSCRIBER_NAME)
    connection.read_response()
    connection.send_command("SUBSCRIBE", channel)
    # push_request: hand subscription replies back instead of to a handler.
    reply = connection.read_response(push_request=True)
    if not reply or reply[0] != b"subscribe":
        raise redis.ConnectionError(f"unexpected reply to SUBSCRIBE: {reply!r}")
    # The socket is redis-py's own: poll() on it lets this thread sleep
    # without the GIL and lets request threads see unread announcements.
    sock = connection._sock
    watcher = select.poll()
    watcher.register(sock, select.POLLIN)
    cache.attach(sock.fileno())
    pinged_at: float | None = None
    heard_at = time.monotonic()
    while True:
        if watcher.poll(PING_SECONDS * 1000):
            cache.set_busy(True)
            try:
                while connection.can_read(timeout=0):
                    _handle(connection.read_response(push_request=True), cache)
            finally:
                cache.set_busy(False)
            heard_at = time.monotonic()
            pinged_at = None
        now = time.monotonic()
        if pinged_at is not None and now - pinged_at > PONG_SECONDS:
            raise redis.TimeoutError("no answer to PING on the subscription")
        if pinged_at is None and now - heard_at >= PING_SECONDS:
            connection.send_command("PING")
            pinged_at = now


def _handle(reply: Any, cache: EntryCache) -> None:
    if not isinstance(reply, list) or reply[0] != b"message":
        return  # a pong, or a subscribe confirmation
    data = reply[2]
    if data == keys.ENTRY_CHANGES_FLUSH.encode():
        cache.flush(keep_copies=False)
        return
    flat = json.loads(data)
    cache.apply([(flat[i], int(flat[i + 1])) for i in range(0, len(flat), 2)])
