"""The in-process entry cache: hits without Redis, kept correct by the worker's announcements.

One bounded LRU per API process holds, per entry key, the last (version,
body) this process read from Redis. It serves two purposes with one copy:
- a *valid* record answers a request with no Redis round trip;
- any record, valid or not, is the last-known copy served while Redis is down.

A record is valid only while this process is subscribed to the worker's
entry-changes channel (keys.entry_changes_channel) and Redis holds the ready
marker. The worker announces every applied write, in the same Lua script as
the write; `apply()` then invalidates records older than the announced
version. Losing the subscription, the ready marker, or a "flush" message
invalidates everything at once (a generation number), and records become
valid again lazily as requests read Redis.

Nothing older wins: a lookup takes a ticket (the announcement sequence)
before its Redis read and may only store what it read if no announcement of
a newer version of that key arrived in between, and never over a record of a
newer version.
"""

from __future__ import annotations

import logging
import select
import threading
from collections import OrderedDict, deque

log = logging.getLogger(__name__)

# Announced keys remembered to judge lookups that were in flight when the
# announcement arrived. A lookup older than the oldest remembered one is not
# stored as valid (it is still served, and kept as a last-known copy).
RECENT_CHANGES = 10_000
# Stands for "any version" in the recent log: a repair or removal.
_ANY_VERSION = 1 << 62
# A record: (version, body, generation); generation -1 marks a last-known
# copy that must not answer as a hit. An empty body is a tombstone or "no
# such key" (version 0), answered with the campaign's fallback.
Record = tuple[int, bytes, int]
_INVALID = -1


class EntryCache:
    """A bounded LRU of entries, valid only while announcements can reach it."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._records: OrderedDict[str, Record] = OrderedDict()
        self._lock = threading.Lock()
        self._generation = 0
        # Announcements applied so far; a ticket is this number.
        self._sequence = 0
        # Tickets below this cannot be judged (the recent log was cut or flushed).
        self._judgeable_from = 0
        self._recent: dict[str, tuple[int, int]] = {}
        self._recent_order: deque[tuple[int, str]] = deque()
        self._subscribed = False
        self._ready = False
        self._live = False
        # The subscription's socket and whether its reader is mid-message:
        # a hit waits for neither, it goes to Redis instead (see _pending).
        self._fd = -1
        self._busy = False
        self._local = threading.local()

    # -- the hot path -----------------------------------------------------------

    def get(self, key: str) -> tuple[int, bytes] | None:
        """(version, body) if a valid record holds the key, else None (ask Redis)."""
        if not self._live:
            return None
        record = self._records.get(key)
        if record is None or record[2] != self._generation or self._pending():
            return None
        try:
            self._records.move_to_end(key)
        except KeyError:
            pass  # evicted a moment ago; the copy in hand is still right
        return record[0], record[1]

    def _pending(self) -> bool:
        """True when an announcement may have arrived but is not applied yet.

        Redis writes the announcement to our socket before the writer hears
        back, so checking the socket (one poll() call, no round trip) makes a
        write visible to the very next request in every process.
        """
        if self._busy:
            return True
        local = self._local
        fd = self._fd
        if fd < 0:
            return False
        if getattr(local, "fd", None) != fd:
            # poll objects must not be shared between threads.
            local.poller = select.poll()
            local.poller.register(fd, select.POLLIN)
            local.fd = fd
        return bool(local.poller.poll(0))

    def ticket(self) -> int | None:
        """Taken before a Redis read; None when nothing read now may be stored as valid."""
        return self._sequence if self._live else None

    def fill(self, key: str, version: int, body: bytes, ticket: int | None) -> None:
        """Store what a lookup read from Redis (valid only if nothing newer was announced)."""
        if not self.capacity:
            return
        with self._lock:
            current = self._records.get(key)
            if current is not None and current[0] > version:
                return  # a newer version is known: never go back
            generation = self._generation if self._judge(key, version, ticket) else _INVALID
            self._records[key] = (version, body, generation)
            self._records.move_to_end(key)
            if len(self._records) > self.capacity:
                self._records.popitem(last=False)

    def _judge(self, key: str, version: int, ticket: int | None) -> bool:
        if ticket is None or not self._live:
            return False
        if ticket == self._sequence:
            return True  # no announcement at all since the read began
        if ticket < self._judgeable_from:
            return False
        recent = self._recent.get(key)
        return recent is None or recent[0] <= ticket or recent[1] <= version

    @property
    def sequence(self) -> int:
        """Announcements applied so far, live or not (see announced_since)."""
        return self._sequence

    def announced_since(self, key: str, sequence: int) -> bool:
        """True when a change of `key` was announced after `sequence` was read."""
        if sequence == self._sequence:
            return False
        recent = self._recent.get(key)
        return sequence < self._judgeable_from or (recent is not None and recent[0] > sequence)

    def last_known(self, key: str) -> tuple[int, bytes] | None:
        """The last copy read for this key, valid or not (served while Redis is down)."""
        record = self._records.get(key)
        return None if record is None else (record[0], record[1])

    # -- announcements -------------------------------------------------------------

    def apply(self, changes: list[tuple[str, int]]) -> None:
        """Invalidate records older than the announced versions (0: drop the key)."""
        with self._lock:
            for key, version in changes:
                self._sequence += 1
                if version == 0:
                    self._records.pop(key, None)
                    version = _ANY_VERSION
                else:
                    record = self._records.get(key)
                    if record is not None and record[0] < version and record[2] != _INVALID:
                        self._records[key] = (record[0], record[1], _INVALID)
                self._remember(key, version)

    def _remember(self, key: str, version: int) -> None:
        previous = self._recent.get(key)
        if previous is not None:
            version = max(version, previous[1])
        self._recent[key] = (self._sequence, version)
        self._recent_order.append((self._sequence, key))
        while len(self._recent_order) > RECENT_CHANGES:
            sequence, old_key = self._recent_order.popleft()
            if self._recent.get(old_key, (None,))[0] == sequence:
                del self._recent[old_key]
            self._judgeable_from = sequence

    def flush(self, keep_copies: bool) -> None:
        """Invalidate every record; with keep_copies=False forget them too."""
        with self._lock:
            self._generation += 1
            self._sequence += 1
            self._judgeable_from = self._sequence
            self._recent.clear()
            self._recent_order.clear()
            if not keep_copies:
                self._records.clear()

    # -- state set by the subscriber and the config poller -------------------------

    def attach(self, fd: int) -> None:
        """Subscribed on socket `fd`: announcements reach this process from now on."""
        with self._lock:
            self._fd = fd
            self._subscribed = True
            self._update_live()

    def detach(self) -> None:
        """The subscription broke: announcements may be lost, nothing is valid."""
        with self._lock:
            self._subscribed = False
            self._update_live()
        self.flush(keep_copies=True)

    def set_busy(self, busy: bool) -> None:
        """The subscriber is reading announcements that are not applied yet."""
        self._busy = busy

    def set_ready(self, ready: bool) -> None:
        """Whether Redis holds the ready marker; losing it invalidates everything."""
        with self._lock:
            was_ready = self._ready
            self._ready = ready
            self._update_live()
        if was_ready and not ready:
            self.flush(keep_copies=True)

    def _update_live(self) -> None:
        self._live = bool(self.capacity) and self._subscribed and self._ready

    @property
    def live(self) -> bool:
        """True when valid records may answer requests."""
        return self._live

    def __len__(self) -> int:
        return len(self._records)
