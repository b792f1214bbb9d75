"""Writing the Redis contract the way the worker does, and talking HTTP to the API."""

from __future__ import annotations

import hashlib
import http.client
import json
from dataclasses import dataclass
from typing import Any

import pytest

from ccadmin import keys, payload
from common.support import free_port
from workers import redis_writes as worker_store

ENV_KEY = "env-key-one"  # from CCADMIN_API_KEYS, set in conftest.py


@pytest.fixture
def store(redis_client):
    """The test's Redis, emptied before and after (its own db or embedded server)."""
    redis_client.flushdb()
    yield redis_client
    redis_client.flushdb()


@pytest.fixture
def start_api(spawn):
    """Start `python -m ccadmin.api` on a free port; returns the port."""

    def start(env: dict[str, str] | None = None) -> int:
        port = free_port()
        spawn(
            ["-m", "ccadmin.api"],
            env={
                "API_PORT": str(port),
                "API_PROCESSES": "1",
                "API_HOST": "127.0.0.1",
                **(env or {}),
            },
            ready_url=f"http://127.0.0.1:{port}/healthz",
        )
        return port

    return start


@dataclass
class Answer:
    """One HTTP response, read whole."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def call(
    base_port: int,
    path: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> Answer:
    """One request on a fresh connection; `path` is sent byte for byte."""
    connection = http.client.HTTPConnection("127.0.0.1", base_port, timeout=10)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return Answer(
            status=response.status,
            headers={name.lower(): value for name, value in response.getheaders()},
            body=response.read(),
        )
    finally:
        connection.close()


def publish_campaign(
    client,
    slug: str,
    *,
    version: int = 1,
    active: bool = True,
    public: bool = False,
    fallback: str = "default",
    max_age: int = 60,
    default_fields: dict[str, Any] | None = None,
    serve_at_data: bool = False,
) -> None:
    """A campaign's config as the worker publishes it, then the version bump."""
    client.hset(
        keys.CAMPAIGNS,
        slug,
        payload.campaign_config(
            slug=slug,
            version=version,
            active=active,
            public=public,
            fallback=fallback,
            max_age=max_age,
            default_fields=default_fields if default_fields is not None else {"message": ""},
        ),
    )
    if serve_at_data:
        client.set(keys.DEFAULT_CAMPAIGN, slug)
    client.incr(keys.CONFIG_VERSION)


def publish_entry(client, slug: str, user_id: str, version: int, fields: dict[str, Any]) -> bytes:
    """One user's rendered body, written (and announced) by the worker's own script.

    Returns the exact bytes the API must serve. Writes that bypass the script
    are not announced, so API processes holding the entry would not see them.
    """
    body = payload.render_payload(slug, user_id, version, fields)
    assert worker_store.write_entry(client, keys.entry_key(slug, user_id), version, body)
    return body


def delete_entry(client, slug: str, user_id: str, version: int) -> None:
    """A tombstone: the entry was deleted at `version`."""
    assert worker_store.write_entry(client, keys.entry_key(slug, user_id), version, b"")


def publish_api_key(client, secret: str, campaigns: list[str] | None = None) -> None:
    """An admin-managed key, stored hashed, then the version bump."""
    digest = hashlib.sha256(secret.encode("utf-8")).hexdigest()
    client.hset(keys.API_KEYS, digest, json.dumps({"name": secret, "campaigns": campaigns}))
    client.incr(keys.CONFIG_VERSION)


def revoke_api_key(client, secret: str) -> None:
    """What the worker does when a key is revoked in the admin."""
    client.hdel(keys.API_KEYS, hashlib.sha256(secret.encode("utf-8")).hexdigest())
    client.incr(keys.CONFIG_VERSION)


def mark_ready(client) -> None:
    """The marker a full build from the database leaves behind."""
    client.set(keys.READY, "1")


def metric_value(text: str, sample: str) -> float | None:
    """The value of one exact sample line (name plus labels) in Prometheus text."""
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name == sample:
            return float(value)
    return None
