"""What the caller receives for one user, produced by the API's own code in this process.

The admin builds the request the caller would send and hands it to a fresh
instance of the real WSGI app (ccadmin.api.app) reading the same Redis, so
status, headers and body bytes are identical to a real call by construction;
only the headers waitress adds on the wire (Date, Server) are missing. The
request carries a key valid only inside this preview instance, so previews
of key-protected campaigns need no real secret.
"""

from __future__ import annotations

import dataclasses
import io
import json
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import redis
from sqlalchemy import select

from ccadmin import keys
from ccadmin.api.app import ConnectedContentApp
from ccadmin.api.clients import connect
from ccadmin.api.counters import Counters
from ccadmin.api.store import Store
from ccadmin.config import Settings
from ccadmin.extensions import db
from ccadmin.models import Campaign, ContentEntry

# Braze refuses bodies over 1 MB; counted the strict way, so a body shown
# under the limit is under it however the caller counts a megabyte.
CALLER_BODY_LIMIT = 1_000_000
# Headers waitress adds on the wire, outside the app.
SERVER_HEADERS = ("Date", "Server")
_PREVIEW_KEY = secrets.token_urlsafe(32)


@dataclass
class Preview:
    """One previewed call and how it compares with the database."""

    method: str
    path: str
    status: int
    status_line: str
    headers: list[tuple[str, str]]
    body: bytes
    outcome: str
    database_version: int | None
    redis_version: int | None

    @property
    def size(self) -> int:
        return len(self.body)

    @property
    def limit_percent(self) -> float:
        return round(100 * self.size / CALLER_BODY_LIMIT, 3)

    @property
    def body_text(self) -> str:
        """The body as the caller's template sees it (JSON pretty-printed for reading)."""
        try:
            return json.dumps(json.loads(self.body), ensure_ascii=False, indent=2)
        except ValueError:
            return self.body.decode("utf-8", "replace")

    @property
    def live_state(self) -> str:
        """Whether Redis serves the newest saved version."""
        if self.database_version is None:
            return "no saved content"
        if self.redis_version is None:
            return "not in Redis yet"
        if self.redis_version >= self.database_version:
            return "live"
        return "publishing"


def content_path(campaign: Campaign, user_id: str) -> str:
    """The URL path and query the caller requests for this user."""
    return f"/v1/{campaign.slug}?user_id={quote(user_id, safe='')}"


def call_api(settings: Settings, path: str, method: str = "GET") -> tuple[str, list, bytes]:
    """One request through a fresh instance of the real API app (no cache, no threads)."""
    # The primary, not a replica: the preview shows what is published now.
    api_settings = dataclasses.replace(settings, api_keys=(_PREVIEW_KEY,), redis_read_urls=())
    client = connect(api_settings)
    app = ConnectedContentApp(Store(api_settings, client=client), Counters())
    route, _, query = path.partition("?")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": route,
        "QUERY_STRING": query,
        "SERVER_NAME": "preview",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_X_API_KEY": _PREVIEW_KEY,
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": io.StringIO(),
        "wsgi.url_scheme": "http",
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": True,
        "wsgi.version": (1, 0),
    }
    answer: dict[str, Any] = {}

    def start_response(status: str, headers: list, exc_info: Any = None) -> None:
        answer["status"], answer["headers"] = status, list(headers)

    try:
        body = b"".join(app(environ, start_response))
    finally:
        if isinstance(client, redis.RedisCluster):
            client.close()
        else:
            client.connection_pool.disconnect()
    return answer["status"], answer["headers"], body


def _outcome(status: int, body: bytes) -> str:
    if status == 200:
        try:
            has_content = json.loads(body).get("has_content")
        except (ValueError, AttributeError):
            return "content"
        return "content" if has_content else "fallback (default fields)"
    if status == 404:
        try:
            error = json.loads(body).get("error")
        except (ValueError, AttributeError):
            error = None
        if error == "no_content":
            return "fallback (404: the message renders empty)"
    return "error"


def _versions(
    settings: Settings, connection: redis.Redis, campaign: Campaign, user_id: str
) -> tuple[int | None, int | None]:
    row = db.session.execute(
        select(ContentEntry.version, ContentEntry.deleted).where(
            ContentEntry.campaign_id == campaign.id, ContentEntry.user_id == user_id
        )
    ).first()
    database_version = None if row is None or row.deleted else row.version
    try:
        raw = connection.hget(keys.entry_key(campaign.slug, user_id), keys.ENTRY_VERSION_FIELD)
    except (redis.RedisError, OSError):
        raw = None
    return database_version, None if raw is None else int(raw)


def preview(
    settings: Settings, connection: redis.Redis, campaign: Campaign, user_id: str
) -> Preview:
    """What GET /v1/<campaign>?user_id=... answers right now, and how live it is."""
    path = content_path(campaign, user_id)
    status_line, headers, body = call_api(settings, path)
    status = int(status_line.split(" ", 1)[0])
    database_version, redis_version = _versions(settings, connection, campaign, user_id)
    return Preview(
        method="GET",
        path=path,
        status=status,
        status_line=status_line,
        headers=headers,
        body=body,
        outcome=_outcome(status, body),
        database_version=database_version,
        redis_version=redis_version,
    )
