"""The Connected Content endpoint as a plain WSGI callable (docs/api.md).

Per request: route, find the campaign in the in-memory snapshot, check the
key, validate the user id, one `HMGET`, write the stored bytes, count. No
framework: its per-request cost is what this endpoint cannot afford.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote_to_bytes

from ccadmin import config, payload
from ccadmin.api import caller_access, host_counts
from ccadmin.api.breaker import RedisUnavailable
from ccadmin.api.config_snapshot import Campaign, ConfigSnapshot
from ccadmin.api.counters import (
    AUTH_FAILURES,
    FALLBACKS,
    NOT_MODIFIED,
    STALE,
    Counters,
    DisabledCounters,
)
from ccadmin.api.metrics_flush import MetricsFlusher
from ccadmin.api.store import NotReady, Store
from ccadmin.metrics.buckets import NO_CAMPAIGN

log = logging.getLogger(__name__)

JSON_TYPE = "application/json; charset=utf-8"
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# A POST only has to carry a user id; anything bigger is not a caller of ours.
MAX_BODY_BYTES = 4096
MAX_USER_ID_LENGTH = 128
# C0 controls, DEL, C1 controls, and lone surrogates (possible through JSON
# escapes, and not encodable as a Redis key).
_FORBIDDEN_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
CONTENT_METHODS = "GET, HEAD, POST"
# Answered whatever the caller's address (API_ALLOWED_IPS).
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
PROBE_METHODS = "GET, HEAD"
# Seconds a caller should wait before retrying a 503: Redis down is usually a
# restart (seconds); a rebuild from the database takes longer.
RETRY_AFTER_UNAVAILABLE = "1"
RETRY_AFTER_NOT_READY = "5"
# A last-known copy may be out of date: callers should not keep it.
STALE_CACHE_CONTROL = "private, max-age=0"
# Set by a content request to its campaign label: only those are counted.
CAMPAIGN_LABEL = "ccadmin.campaign"

_REASONS = {
    200: "200 OK",
    304: "304 Not Modified",
    400: "400 Bad Request",
    401: "401 Unauthorized",
    403: "403 Forbidden",
    404: "404 Not Found",
    405: "405 Method Not Allowed",
    413: "413 Content Too Large",
    415: "415 Unsupported Media Type",
    500: "500 Internal Server Error",
    503: "503 Service Unavailable",
}

Headers = list[tuple[str, str]]
Response = tuple[int, Headers, bytes]


class HttpError(Exception):
    """An error answer: status, a stable `error` code and a human message."""

    def __init__(
        self, status: int, code: str, message: str, headers: Headers | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or []


def error_response(error: HttpError) -> Response:
    """The JSON body every error shares: {"error": code, "message": text}."""
    body = json.dumps({"error": error.code, "message": error.message}).encode("utf-8")
    headers = [
        ("Content-Type", JSON_TYPE),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"),
        *error.headers,
    ]
    return error.status, headers, body


def redis_down() -> HttpError:
    """503 for a Redis that does not answer (down, timing out, breaker open)."""
    return HttpError(
        503,
        "redis_unavailable",
        "the content store is unreachable",
        [("Retry-After", RETRY_AFTER_UNAVAILABLE)],
    )


def not_ready() -> HttpError:
    """503 for a Redis that answers but holds no complete build yet."""
    return HttpError(
        503,
        "not_ready",
        "the content store is being rebuilt",
        [("Retry-After", RETRY_AFTER_NOT_READY)],
    )


def _form_values(encoded: bytes, name: bytes) -> list[str]:
    """Values of one field in an urlencoded string, decoded as strict UTF-8."""
    values = []
    for pair in encoded.split(b"&"):
        field, _, value = pair.partition(b"=")
        if unquote_to_bytes(field.replace(b"+", b" ")) != name:
            continue
        try:
            values.append(unquote_to_bytes(value.replace(b"+", b" ")).decode("utf-8"))
        except UnicodeDecodeError:
            raise HttpError(400, "invalid_user_id", "user_id is not valid UTF-8") from None
    return values


def _reject_duplicate_user_id(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    if sum(1 for name, _ in pairs if name == "user_id") > 1:
        raise HttpError(400, "invalid_user_id", "user_id must be given exactly once")
    return dict(pairs)


def _body_values(environ: dict[str, Any]) -> list[str]:
    """user_id values carried by a POST body (form or JSON)."""
    raw_length = environ.get("CONTENT_LENGTH") or ""
    try:
        length = int(raw_length) if raw_length else None
    except ValueError:
        raise HttpError(400, "invalid_body", "Content-Length is not a number") from None
    if length is not None and length > MAX_BODY_BYTES:
        raise HttpError(413, "body_too_large", f"the body is limited to {MAX_BODY_BYTES} bytes")
    body = environ["wsgi.input"].read(MAX_BODY_BYTES + 1 if length is None else length)
    if len(body) > MAX_BODY_BYTES:
        raise HttpError(413, "body_too_large", f"the body is limited to {MAX_BODY_BYTES} bytes")
    if not body:
        return []
    content_type = (environ.get("CONTENT_TYPE") or "").partition(";")[0].strip().lower()
    if content_type == "application/x-www-form-urlencoded":
        return _form_values(body, b"user_id")
    if content_type == "application/json" or content_type.endswith("+json"):
        try:
            document = json.loads(body, object_pairs_hook=_reject_duplicate_user_id)
        except ValueError:
            raise HttpError(400, "invalid_json", "the body is not valid JSON") from None
        if not isinstance(document, dict):
            raise HttpError(400, "invalid_json", "the JSON body must be an object")
        if "user_id" not in document:
            return []
        value = document["user_id"]
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise HttpError(400, "invalid_user_id", "user_id must be a string or an integer")
        return [str(value)]
    raise HttpError(
        415,
        "unsupported_media_type",
        "POST a body of application/x-www-form-urlencoded or application/json",
    )


def read_user_id(environ: dict[str, Any], method: str) -> str:
    """The one valid user id of a request (query string, or POST body), else 400."""
    values: list[str] = []
    query = environ.get("QUERY_STRING") or ""
    if query:
        try:
            raw_query = query.encode("latin-1")
        except UnicodeEncodeError:
            raise HttpError(400, "invalid_user_id", "the query string is malformed") from None
        values.extend(_form_values(raw_query, b"user_id"))
    if method == "POST":
        values.extend(_body_values(environ))
    if not values:
        raise HttpError(400, "invalid_user_id", "user_id is required")
    if len(values) > 1:
        raise HttpError(400, "invalid_user_id", "user_id must be given exactly once")
    user_id = values[0]
    if not 1 <= len(user_id) <= MAX_USER_ID_LENGTH:
        raise HttpError(
            400, "invalid_user_id", f"user_id must be 1 to {MAX_USER_ID_LENGTH} characters"
        )
    if _FORBIDDEN_CHARACTERS.search(user_id):
        raise HttpError(400, "invalid_user_id", "user_id must not contain control characters")
    return user_id


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """If-None-Match uses the weak comparison (RFC 9110 13.1.2)."""
    if not if_none_match:
        return False
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == etag:
            return True
    return False


def _served(snapshot: ConfigSnapshot, slug: str | None) -> Campaign | None:
    """The active campaign `slug` (None: the default one), if this config has it."""
    campaign = snapshot.campaigns.get(slug or snapshot.default_campaign or "")
    return campaign if campaign is not None and campaign.active else None


class ConnectedContentApp:
    """The WSGI application: content routes plus /healthz, /readyz, /metrics."""

    def __init__(
        self,
        store: Store,
        counters: Counters,
        allowlist: caller_access.CallerAllowlist | None = None,
        flusher: MetricsFlusher | None = None,
    ) -> None:
        self.store = store
        self.counters = counters
        # Shares this process's counts with the host's other API processes
        # (host_counts.py) and with Redis; None: this process alone.
        self.flusher = flusher
        # None: every address may call (keys still apply).
        self.allowlist = allowlist

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        # Latency as this process sees it: from the WSGI call to the body's return.
        started = time.perf_counter()
        method = environ["REQUEST_METHOD"]
        try:
            status, headers, body = self.dispatch(environ, method)
        except Exception:
            log.exception("unhandled error answering %s %s", method, environ.get("PATH_INFO"))
            status, headers, body = error_response(
                HttpError(500, "internal_error", "the server failed to answer")
            )
        start_response(_REASONS[status], headers)
        if method == "HEAD" or status == 304:
            body = b""
        label = environ.get(CAMPAIGN_LABEL)
        if label is not None:
            self.counters.observe(label, status, len(body), time.perf_counter() - started)
        return [body] if body else []

    def dispatch(self, environ: dict[str, Any], method: str) -> Response:
        """Route one request to its handler."""
        path = environ.get("PATH_INFO") or ""
        # Probes stay open to the platform's health checks; they reveal nothing.
        if (
            self.allowlist is not None
            and path not in OPEN_PATHS
            and not self.allowlist.allows(environ)
        ):
            return error_response(
                HttpError(403, "forbidden_address", "this address may not call the API")
            )
        if path == "/data":
            return self.content(environ, method, None)
        if path.startswith("/v1/"):
            slug = path[4:]
            if slug and "/" not in slug:
                return self.content(environ, method, slug)
        elif path in ("/healthz", "/readyz", "/metrics"):
            if method not in ("GET", "HEAD"):
                return error_response(_method_not_allowed(PROBE_METHODS))
            if path == "/healthz":
                return _json_ok({"status": "ok"})
            if path == "/readyz":
                return self.readiness()
            return self.metrics()
        return error_response(HttpError(404, "not_found", "no such URL"))

    # -- content ---------------------------------------------------------------

    def content(self, environ: dict[str, Any], method: str, slug: str | None) -> Response:
        """One Connected Content request, counted by campaign and status."""
        environ[CAMPAIGN_LABEL] = NO_CAMPAIGN
        try:
            if method not in ("GET", "HEAD", "POST"):
                raise _method_not_allowed(CONTENT_METHODS)
            snapshot, campaign = self._campaign(slug)
            environ[CAMPAIGN_LABEL] = campaign.slug
            if not campaign.public:
                self._authorize(environ, snapshot, campaign)
            user_id = read_user_id(environ, method)
            response = self._serve(environ, campaign, user_id)
        except HttpError as error:
            response = error_response(error)
        return response

    def _campaign(self, slug: str | None) -> tuple[ConfigSnapshot, Campaign]:
        try:
            snapshot = self.store.snapshot()
        except RedisUnavailable:
            raise redis_down() from None
        if snapshot is None:
            raise not_ready()
        campaign = _served(snapshot, slug)
        if campaign is None:
            # Before a 404: the poller may not have seen a campaign created, or
            # a rebuild finished, in its last poll; a store still being built
            # may not hold the campaign yet.
            try:
                ready, snapshot = self.store.ready_and_current()
            except RedisUnavailable:
                raise redis_down() from None
            campaign = _served(snapshot, slug)
            if campaign is None:
                if not ready:
                    raise not_ready()
                if slug is None:
                    raise HttpError(404, "campaign_not_found", "no campaign is served at /data")
                raise HttpError(404, "campaign_not_found", "no such campaign")
        return snapshot, campaign

    def _authorize(
        self, environ: dict[str, Any], snapshot: ConfigSnapshot, campaign: Campaign
    ) -> None:
        key = caller_access.presented_key(environ)
        api_key = caller_access.find_key(snapshot, key) if key else None
        if api_key is None:
            self.counters.count(AUTH_FAILURES, campaign.slug)
            message = "an API key is required" if key is None else "the API key is not valid"
            raise HttpError(
                401, "unauthorized", message, [("WWW-Authenticate", caller_access.CHALLENGE)]
            )
        if not caller_access.allows(api_key, campaign.slug):
            self.counters.count(AUTH_FAILURES, campaign.slug)
            raise HttpError(403, "forbidden", "this API key may not read this campaign")

    def _serve(self, environ: dict[str, Any], campaign: Campaign, user_id: str) -> Response:
        slug = campaign.slug
        try:
            version, body, stale = self.store.entry(slug, user_id)
        except RedisUnavailable:
            return self._last_known(environ, campaign, user_id, redis_down())
        except NotReady:
            # An empty or half-built store must not turn into fallbacks or
            # 404s: the caller would ship empty messages (docs/operations.md).
            return self._last_known(environ, campaign, user_id, not_ready())
        cache_control = STALE_CACHE_CONTROL if stale else campaign.cache_control
        if body:
            etag = f'{campaign.etag_prefix}{version}"'
            response = self._ok(environ, cache_control, etag, body, slug)
        else:
            response = self._fallback(environ, campaign, user_id, cache_control)
        if stale:
            self.counters.count(STALE, slug)
            response[1].append(("X-Content-Stale", "1"))
        return response

    def _fallback(
        self, environ: dict[str, Any], campaign: Campaign, user_id: str, cache_control: str
    ) -> Response:
        if campaign.fallback != "default":
            raise HttpError(404, "no_content", "this user has no content in this campaign")
        body = payload.render_fallback(campaign.fallback_prefix, campaign.fallback_suffix, user_id)
        self.counters.count(FALLBACKS, campaign.slug)
        return self._ok(environ, cache_control, campaign.fallback_etag, body, campaign.slug)

    def _last_known(
        self, environ: dict[str, Any], campaign: Campaign, user_id: str, error: HttpError
    ) -> Response:
        copy = self.store.last_known(campaign.slug, user_id)
        if copy is None:
            raise error
        version, body = copy
        if body:
            etag = f'{campaign.etag_prefix}{version}"'
            response = self._ok(environ, STALE_CACHE_CONTROL, etag, body, campaign.slug)
        elif campaign.fallback == "default":
            response = self._fallback(environ, campaign, user_id, STALE_CACHE_CONTROL)
        else:
            raise error
        self.counters.count(STALE, campaign.slug)
        response[1].append(("X-Content-Stale", "1"))
        return response

    def _ok(
        self, environ: dict[str, Any], cache_control: str, etag: str, body: bytes, slug: str
    ) -> Response:
        if etag_matches(environ.get("HTTP_IF_NONE_MATCH"), etag):
            self.counters.count(NOT_MODIFIED, slug)
            return 304, [("ETag", etag), ("Cache-Control", cache_control)], b""
        return (
            200,
            [
                ("Content-Type", JSON_TYPE),
                ("Content-Length", str(len(body))),
                ("Cache-Control", cache_control),
                ("ETag", etag),
                ("X-Content-Type-Options", "nosniff"),
            ],
            body,
        )

    # -- probes ------------------------------------------------------------------

    def readiness(self) -> Response:
        """200 only when Redis answers and holds a complete build."""
        try:
            ready = self.store.is_ready()
        except RedisUnavailable:
            return error_response(redis_down())
        if not ready:
            return error_response(not_ready())
        return _json_ok({"status": "ready"})

    def close(self) -> None:
        """The last counts of a process that stops, for the host's scrapes and Redis."""
        if self.flusher is not None:
            self.flusher.final()

    def metrics(self) -> Response:
        """The counters of every API process on this host and port, in Prometheus text."""
        totals = self.counters.totals()
        if self.flusher is not None:
            totals = host_counts.host_totals(self.flusher.settings, totals)
        body = self.counters.render(totals)
        return (
            200,
            [
                ("Content-Type", METRICS_TYPE),
                ("Content-Length", str(len(body))),
                ("X-Content-Type-Options", "nosniff"),
            ],
            body,
        )


def _method_not_allowed(allowed: str) -> HttpError:
    return HttpError(405, "method_not_allowed", "method not allowed", [("Allow", allowed)])


def _json_ok(document: dict[str, Any]) -> Response:
    body = json.dumps(document).encode("utf-8")
    return (
        200,
        [
            ("Content-Type", JSON_TYPE),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
        ],
        body,
    )


def create_app(settings: config.Settings | None = None) -> ConnectedContentApp:
    """The app for one process: its own Redis pool and config poller (call after fork)."""
    settings = settings or config.load()
    store = Store(settings)
    store.start_polling()
    allowlist = (
        caller_access.CallerAllowlist(settings.api_allowed_ips, settings.api_trusted_proxies)
        if settings.api_allowed_ips
        else None
    )
    if not settings.api_metrics:
        return ConnectedContentApp(store, DisabledCounters(), allowlist)
    counters = Counters()
    flusher = MetricsFlusher(counters, settings)
    flusher.start()
    return ConnectedContentApp(store, counters, allowlist, flusher)
