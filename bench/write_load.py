"""Save-to-live under a steady write load, for the ingest benchmark.

`steady_save_to_live` paces writes at a fixed rate from keep-alive writer
threads and watches Redis for each write's version: the time from sending
the request to its version being what the API reads is the save-to-live lag.
At the end, every written user's last version is checked in what the API
process answers (its cache included), when one is given.
(Writes/s at full speed are measured with wrk: bench/put_new_user.lua.)
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote

import redis

from ccadmin import keys

HOST = "127.0.0.1"


def percentile(values: list[float], fraction: float) -> float:
    """The value below which `fraction` of `values` lie (nearest rank); 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def body_for(number: int) -> bytes:
    message = f"Your code for today is SPRING{number:07d}"
    return json.dumps({"fields": {"message": message}}).encode()


@dataclass
class LiveResult:
    """Save-to-live lags of a steady write load."""

    rate: float
    seconds: float
    sent: int = 0
    errors: int = 0
    lags: list[float] = field(default_factory=list)
    not_live: int = 0

    def line(self) -> str:
        achieved = self.sent / self.seconds
        return (
            f"  save-to-live at {self.rate:5,.0f}/s ({achieved:,.0f}/s sent, "
            f"{self.sent:,} writes): "
            f"p50 {percentile(self.lags, 0.5) * 1000:6.1f} ms  "
            f"p90 {percentile(self.lags, 0.9) * 1000:6.1f} ms  "
            f"p99 {percentile(self.lags, 0.99) * 1000:7.1f} ms  "
            f"max {max(self.lags, default=0) * 1000:7.1f} ms  "
            f"{self.not_live} not live, {self.errors} errors"
        )


class ApiReader:
    """The version the API serves for a user, over one keep-alive connection."""

    def __init__(self, port: int, api_key: str) -> None:
        self.connection = http.client.HTTPConnection(HOST, port, timeout=10)
        self.headers = {"X-API-Key": api_key}

    def document(self, slug: str, user_id: str) -> dict | None:
        """What the API serves for the user, None when it serves no content."""
        self.connection.request("GET", f"/v1/{slug}?user_id={quote(user_id)}", headers=self.headers)
        response = self.connection.getresponse()
        answer = response.read()
        if response.status != 200:
            return None
        document = json.loads(answer)
        return document if document.get("has_content") else None

    def version(self, slug: str, user_id: str) -> int | None:
        document = self.document(slug, user_id)
        return None if document is None else document["version"]

    def message(self, slug: str, user_id: str) -> str | None:
        document = self.document(slug, user_id)
        return None if document is None else document.get("message")


class LiveWatcher(threading.Thread):
    """Watches Redis for written versions: each write's lag from its sending to being live."""

    def __init__(
        self,
        redis_client: redis.Redis,
        slug: str,
        give_up_after: float,
        api: ApiReader | None = None,
    ) -> None:
        super().__init__(name="live-watcher", daemon=True)
        self.redis_client = redis_client
        self.api = api
        self.slug = slug
        self.give_up_after = give_up_after
        self.pending: dict[str, list[tuple[int, float]]] = {}
        self.versions: dict[str, int] = {}
        self.lags: list[float] = []
        self.lock = threading.Lock()
        self.writing = threading.Event()
        self.writing.set()

    def written(self, user_id: str, version: int, sent_at: float) -> None:
        """A write was acknowledged with this version."""
        with self.lock:
            self.versions[user_id] = max(version, self.versions.get(user_id, 0))
            self.pending.setdefault(user_id, []).append((version, sent_at))

    def finish(self) -> int:
        """Stop once every write is live or give_up_after has passed; how many are not live.

        Counts both writes never seen live and users whose last version the
        API (or, without one, Redis) does not serve at the end.
        """
        self.writing.clear()
        self.join()
        not_seen = sum(len(writes) for writes in self.pending.values())
        stale = sum(
            live is None or int(live) < self.versions[user_id]
            for user_id, live in zip(self.versions, self._served(), strict=True)
        )
        return max(not_seen, stale)

    def _served(self) -> list[int | bytes | None]:
        if self.api is not None:
            return [self.api.version(self.slug, user_id) for user_id in self.versions]
        pipe = self.redis_client.pipeline(transaction=False)
        for user_id in self.versions:
            pipe.hget(keys.entry_key(self.slug, user_id), keys.ENTRY_VERSION_FIELD)
        return pipe.execute()

    def run(self) -> None:
        deadline = None
        while True:
            if not self.writing.is_set() and deadline is None:
                deadline = time.perf_counter() + self.give_up_after
            with self.lock:
                waiting = list(self.pending)
            if not waiting and not self.writing.is_set():
                return
            if deadline is not None and time.perf_counter() > deadline:
                return
            if waiting:
                self._check(waiting)
            time.sleep(0.002)

    def _check(self, waiting: list[str]) -> None:
        pipe = self.redis_client.pipeline(transaction=False)
        for user_id in waiting:
            pipe.hget(keys.entry_key(self.slug, user_id), keys.ENTRY_VERSION_FIELD)
        now = time.perf_counter()
        for user_id, live in zip(waiting, pipe.execute(), strict=True):
            if live is None:
                continue
            with self.lock:
                writes = self.pending.pop(user_id, [])
                later = [(version, sent) for version, sent in writes if version > int(live)]
                if later:
                    self.pending[user_id] = later
            self.lags.extend(now - sent for version, sent in writes if version <= int(live))


def steady_save_to_live(
    port: int,
    token: str,
    slug: str,
    path_for: Callable[[str], str],
    redis_client: redis.Redis,
    rate: float,
    seconds: float,
    writers: int = 16,
    users: int = 2_000,
    api: ApiReader | None = None,
) -> LiveResult:
    """Writes paced at `rate` per second over `users` users for `seconds`; each one's lag."""
    result = LiveResult(rate, seconds)
    watcher = LiveWatcher(redis_client, slug, give_up_after=30.0, api=api)
    lock = threading.Lock()
    started = time.perf_counter()
    interval = writers / rate
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def writer(number: int) -> None:
        connection = http.client.HTTPConnection(HOST, port, timeout=30)
        sequence = 0
        while True:
            due = started + number * interval / writers + sequence * interval
            if due - started >= seconds:
                break
            time.sleep(max(0.0, due - time.perf_counter()))
            user_id = f"live-{(number + sequence * writers) % users}"
            sequence += 1
            sent_at = time.perf_counter()
            try:
                connection.request("PUT", path_for(user_id), body_for(sequence), headers)
                response = connection.getresponse()
                answer = response.read()
            except OSError:
                with lock:
                    result.errors += 1
                connection.close()
                connection = http.client.HTTPConnection(HOST, port, timeout=30)
                continue
            if response.status not in (200, 201):
                with lock:
                    result.errors += 1
                continue
            with lock:
                result.sent += 1
            watcher.written(user_id, json.loads(answer)["version"], sent_at)
        connection.close()

    threads = [threading.Thread(target=writer, args=(number,)) for number in range(writers)]
    watcher.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.not_live = watcher.finish()
    result.lags = watcher.lags
    return result
