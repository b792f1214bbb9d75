"""Redis reads for the API: the config snapshot, entry lookups, last-known copies.

The config (campaigns, the default campaign, API keys) lives in memory as one
immutable `ConfigSnapshot`, replaced whole by a polling thread when
`keys.CONFIG_VERSION` moves, so a request reads it without a lock. Entry
lookups are one `HMGET`. Every Redis call goes through a short circuit
breaker so a Redis that is down costs one timeout per second, not one per
request.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ccadmin import keys
from ccadmin.config import Settings

log = logging.getLogger(__name__)

# How often each process asks Redis whether the config changed. A revoked key
# or a deactivated campaign stops working within about this long.
POLL_SECONDS = 0.5
# Reload in full even without a version change: a Redis restored from an old
# snapshot can hand out a CONFIG_VERSION number this process already saw.
FULL_RELOAD_SECONDS = 10.0
# After a connection error or timeout, requests skip Redis for this long (one
# request probes when it ends). Short enough to recover fast, long enough
# that a hung Redis cannot tie up every thread in timeouts.
BREAKER_SECONDS = 0.75
# Last-known copies kept per process for when Redis is unusable. A copy is a
# few hundred bytes, so 100,000 of them cost tens of MB per process.
STALE_COPIES = 100_000
# Extra pool connections beyond the serving threads: the config poller and
# readiness probes must not wait behind requests.
SPARE_CONNECTIONS = 2


class RedisUnavailable(Exception):
    """Redis did not answer (down, timing out, or the breaker is open)."""


@dataclass(frozen=True, slots=True)
class Campaign:
    """One campaign's published config, with its response headers precomputed."""

    slug: str
    version: int
    active: bool
    public: bool
    fallback: str
    max_age: int
    fallback_prefix: str
    fallback_suffix: str
    cache_control: str
    etag_prefix: str

    @property
    def fallback_etag(self) -> str:
        """The fallback body changes only with the campaign's version."""
        return f'{self.etag_prefix}f{self.version}"'


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A valid key: its SHA-256 digest and the campaigns it may read (None: all)."""

    digest: bytes
    name: str
    campaigns: frozenset[str] | None


@dataclass(frozen=True, slots=True)
class ConfigSnapshot:
    """Everything a request needs besides the entry itself; never mutated."""

    version: bytes
    campaigns: Mapping[str, Campaign]
    default_campaign: str | None
    api_keys: tuple[ApiKey, ...]


def parse_campaign(raw: bytes | str) -> Campaign:
    """A Campaign from the JSON payload.campaign_config() wrote."""
    config = json.loads(raw)
    slug = str(config["slug"])
    max_age = max(0, int(config["max_age"]))
    return Campaign(
        slug=slug,
        version=int(config["version"]),
        active=bool(config["active"]),
        public=bool(config["public"]),
        fallback=str(config["fallback"]),
        max_age=max_age,
        fallback_prefix=str(config["fallback_prefix"]),
        fallback_suffix=str(config["fallback_suffix"]),
        cache_control=f"private, max-age={max_age}",
        etag_prefix=f'"{keys.PAYLOAD_VERSION}-{slug}-',
    )


def _parse_api_key(digest_hex: bytes | str, raw: bytes | str) -> ApiKey:
    if isinstance(digest_hex, bytes):
        digest_hex = digest_hex.decode("ascii")
    config = json.loads(raw)
    campaigns = config.get("campaigns")
    return ApiKey(
        digest=bytes.fromhex(digest_hex),
        name=str(config.get("name") or ""),
        campaigns=None if campaigns is None else frozenset(str(slug) for slug in campaigns),
    )


def _env_keys(settings: Settings) -> tuple[ApiKey, ...]:
    return tuple(
        ApiKey(
            digest=hashlib.sha256(secret.encode("utf-8")).digest(),
            name="CCADMIN_API_KEYS",
            campaigns=None,
        )
        for secret in settings.api_keys
    )


def build_snapshot(
    version: bytes,
    campaigns: Mapping[bytes, bytes],
    default_campaign: bytes | None,
    api_keys: Mapping[bytes, bytes],
    env_keys: tuple[ApiKey, ...],
) -> ConfigSnapshot:
    """Parse what Redis holds; one malformed item is skipped, not fatal."""
    parsed: dict[str, Campaign] = {}
    for slug, raw in campaigns.items():
        try:
            campaign = parse_campaign(raw)
        except (ValueError, KeyError, TypeError):
            log.warning("skipping malformed campaign config %r", slug)
            continue
        parsed[campaign.slug] = campaign
    valid_keys = list(env_keys)
    for digest_hex, raw in api_keys.items():
        try:
            valid_keys.append(_parse_api_key(digest_hex, raw))
        except (ValueError, TypeError, AttributeError):
            log.warning("skipping malformed API key entry %r", digest_hex)
    return ConfigSnapshot(
        version=version,
        campaigns=MappingProxyType(parsed),
        default_campaign=default_campaign.decode("utf-8") if default_campaign else None,
        api_keys=tuple(valid_keys),
    )


class StaleCopies:
    """A bounded LRU of the last body served per (campaign, user id)."""

    def __init__(self, capacity: int = STALE_COPIES) -> None:
        self._capacity = capacity
        self._copies: OrderedDict[tuple[str, str], tuple[str, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, slug: str, user_id: str, etag: str, body: bytes) -> None:
        """Keep (or refresh) the copy just served from Redis."""
        key = (slug, user_id)
        with self._lock:
            self._copies[key] = (etag, body)
            self._copies.move_to_end(key)
            if len(self._copies) > self._capacity:
                self._copies.popitem(last=False)

    def recall(self, slug: str, user_id: str) -> tuple[str, bytes] | None:
        """The last copy served for this user, or None."""
        with self._lock:
            return self._copies.get((slug, user_id))


def connect(settings: Settings) -> redis.Redis:
    """A client for one process: fail fast, never retry, one connection per thread."""
    pool = redis.BlockingConnectionPool.from_url(
        settings.effective_redis_url,
        max_connections=settings.api_threads + SPARE_CONNECTIONS,
        # Waiting for a free connection counts against the same budget as a
        # Redis call; with one connection per thread it should never happen.
        timeout=settings.api_redis_timeout,
        socket_timeout=settings.api_redis_timeout,
        socket_connect_timeout=settings.api_redis_timeout,
        # A retry doubles the wait on a Redis that is down; the breaker and
        # the last-known copies handle failures instead.
        retry=Retry(NoBackoff(), 0),
    )
    return redis.Redis(connection_pool=pool)


class Store:
    """The API's view of Redis for one process (create it after fork)."""

    def __init__(self, settings: Settings, client: redis.Redis | None = None) -> None:
        self._client = client if client is not None else connect(settings)
        self._env_keys = _env_keys(settings)
        self._snapshot: ConfigSnapshot | None = None
        self._loaded_at = 0.0
        self._retry_at = 0.0
        self._tripped = False
        self.stale = StaleCopies()
        self._poller: threading.Thread | None = None

    # -- the breaker ---------------------------------------------------------

    def _call(self, command: Callable[..., Any], *args: Any, probe: bool = False) -> Any:
        if not probe:
            now = time.monotonic()
            if now < self._retry_at:
                raise RedisUnavailable("Redis failed moments ago; not retrying yet")
            if self._tripped:
                # This request probes; the others keep skipping until it is done.
                self._retry_at = now + BREAKER_SECONDS
        try:
            result = command(*args)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if not self._tripped:
                log.warning("Redis unreachable (%s); serving last-known copies", exc)
            self._tripped = True
            self._retry_at = time.monotonic() + BREAKER_SECONDS
            raise RedisUnavailable(str(exc)) from exc
        except redis.RedisError as exc:
            raise RedisUnavailable(str(exc)) from exc
        if self._tripped:
            self._tripped = False
            self._retry_at = 0.0
            log.info("Redis answers again")
        return result

    # -- reads -----------------------------------------------------------------

    def lookup(self, slug: str, user_id: str) -> tuple[bytes | None, bytes | None]:
        """(version, body) of one entry; both None when Redis has no such key."""
        version, body = self._call(
            self._client.hmget,
            keys.entry_key(slug, user_id),
            keys.ENTRY_VERSION_FIELD,
            keys.ENTRY_BODY_FIELD,
        )
        return version, body

    def is_ready(self) -> bool:
        """True when a full build from the database has completed (keys.READY)."""
        return bool(self._call(self._client.exists, keys.READY))

    # -- the config snapshot -----------------------------------------------------

    def snapshot(self) -> ConfigSnapshot | None:
        """The current config; loaded synchronously if the poller has not yet.

        None means Redis holds no config at all (empty store, never built) and
        this process never saw one: the caller must answer 503.
        """
        current = self._snapshot
        if current is None:
            self.reload()
            current = self._snapshot
        return current

    def reload(self, probe: bool = False) -> None:
        """Read the whole config in one MULTI and swap it in."""
        pipe = self._client.pipeline(transaction=True)
        pipe.get(keys.CONFIG_VERSION)
        pipe.hgetall(keys.CAMPAIGNS)
        pipe.get(keys.DEFAULT_CAMPAIGN)
        pipe.hgetall(keys.API_KEYS)
        version, campaigns, default_campaign, api_keys = self._call(pipe.execute, probe=probe)
        self._loaded_at = time.monotonic()
        if version is None:
            # An empty (restarted) Redis: keep routing with the config we had
            # so misses answer 503 via the ready check, never 404.
            return
        self._snapshot = build_snapshot(
            version, campaigns, default_campaign, api_keys, self._env_keys
        )

    def refresh(self) -> None:
        """One poll: reload when the version moved or the copy is old."""
        current = self._snapshot
        version = self._call(self._client.get, keys.CONFIG_VERSION, probe=True)
        stale = time.monotonic() - self._loaded_at > FULL_RELOAD_SECONDS
        if current is None or version != current.version or stale:
            self.reload(probe=True)

    def start_polling(self) -> None:
        """Start the daemon thread that keeps the snapshot current."""
        if self._poller is not None:
            return
        self._poller = threading.Thread(target=self._poll, name="config-poller", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while True:
            try:
                self.refresh()
            except RedisUnavailable:
                pass  # logged by the breaker; the next poll doubles as its probe
            except Exception:
                log.exception("config reload failed")
            time.sleep(POLL_SECONDS)
