"""A private Redis for the benchmark, seeded through the worker's own write path.

No database is involved: entries are rendered with payload.render_payload and
written with workers.redis_writes (the compare-and-set scripts that also announce
the changes), then the campaign config, an API key and the ready marker.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from ccadmin import embedded_redis, keys, payload
from workers import redis_writes

CAMPAIGN = "bench"


class PrivateRedis:
    """redis-server on a unix socket in a temporary folder, nothing saved to disk."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="ccbench-redis-"))
        self.socket_path = self.folder / "redis.sock"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def start(self) -> redis.Redis:
        """Start the server and return a client once it answers."""
        self.process = subprocess.Popen(
            [
                embedded_redis.server_binary(),
                *("--port", "0", "--unixsocket", str(self.socket_path)),
                *("--unixsocketperm", "700", "--dir", str(self.folder)),
                *("--save", "", "--appendonly", "no"),
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not embedded_redis.is_answering(self.socket_path):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("the benchmark's redis-server did not start")
            time.sleep(0.05)
        return redis.Redis.from_url(self.url)

    def stop(self) -> None:
        """Stop the server and remove its folder."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        for path in self.folder.iterdir():
            path.unlink()
        self.folder.rmdir()


def _entries(users: int) -> Iterator[redis_writes.EntryWrite]:
    """Users 1..users, grouped by hash tag.

    On Redis Cluster each script call carries one tag's entries; in user
    order a batch of 2,000 would hold hundreds of tags (calls of two entries
    each), grouped it holds one or two.
    """
    by_group: dict[int, list[int]] = {}
    for user in range(1, users + 1):
        by_group.setdefault(keys.entry_group(CAMPAIGN, str(user)), []).append(user)
    for group in sorted(by_group):
        for user in by_group[group]:
            user_id = str(user)
            body = payload.render_payload(
                CAMPAIGN, user_id, 1, {"message": f"Your code for today is SPRING{user:07d}"}
            )
            yield redis_writes.EntryWrite(keys.entry_key(CAMPAIGN, user_id), 1, body)


def seed(client: redis.Redis | redis.RedisCluster, users: int, api_key: str | None = None) -> str:
    """Write `users` entries, the campaign (served at /data) and a key; returns the key.

    The same calls seed a single Redis and a Redis Cluster (workers.redis_writes
    splits its script calls by hash tag there); pass the first store's
    `api_key` to the second so one wrk script serves both.
    """
    config_json = payload.campaign_config(
        slug=CAMPAIGN,
        version=1,
        active=True,
        public=False,
        fallback="default",
        max_age=60,
        default_fields={"message": ""},
    )
    redis_writes.write_campaign(client, CAMPAIGN, 1, config_json)
    redis_writes.write_default_campaign(client, redis_writes.next_snapshot(client), CAMPAIGN)
    api_key = api_key or secrets.token_urlsafe(24)
    digest = hashlib.sha256(api_key.encode("utf-8")).hexdigest()
    document = json.dumps({"name": "bench", "campaigns": None})
    redis_writes.write_api_keys(client, redis_writes.next_snapshot(client), {digest: document})
    redis_writes.write_entries(client, _entries(users))
    redis_writes.mark_ready(client, json.dumps({"entries": users, "seeded_by": "bench"}))
    return api_key
