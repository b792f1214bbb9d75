"""Redis reads for the API: the config snapshot, entry lookups through the cache.

The config (campaigns, the default campaign, API keys) lives in memory as one
immutable `ConfigSnapshot`, replaced whole by a polling thread when
`keys.CONFIG_VERSION` moves, so a request reads it without a lock; the same
poll watches the ready marker. Entry lookups are answered by the in-process
cache (cache.py) or by one `HMGET`; a subscriber thread feeds the cache the
worker's announcements. Every Redis call goes through a short circuit
breaker so a Redis that is down costs one timeout per second, not one per
request.
"""

from __future__ import annotations

import hashlib
import json
import logging
import select
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ccadmin import keys
from ccadmin.api.cache import EntryCache
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
# Extra pool connections beyond the serving threads: the config poller and
# readiness probes must not wait behind requests.
SPARE_CONNECTIONS = 2
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
# The tail of the one command on the hot path, `HMGET key v b`, packed once:
# going through redis-py's command layer (argument checks, retry wrapper,
# pool checkout) cost more CPU than the rest of the request (docs/performance.md).
_HMGET_HEAD = b"*4\r\n$5\r\nHMGET\r\n"
_HMGET_FIELDS = b"".join(
    b"$%d\r\n%s\r\n" % (len(field), field)
    for field in (keys.ENTRY_VERSION_FIELD.encode(), keys.ENTRY_BODY_FIELD.encode())
)


class RedisUnavailable(Exception):
    """Redis did not answer (down, timing out, or the breaker is open)."""


class NotReady(Exception):
    """Redis answers but holds no complete build, and the entry is not there."""


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
        self.cache = EntryCache(settings.api_cache_size)
        # One connection per serving thread for entry reads, outside the pool.
        self._threads = threading.local()
        self._channel = keys.entry_changes_channel(
            int(self._client.connection_pool.connection_kwargs.get("db", 0))
        )
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

    def entry(self, slug: str, user_id: str) -> tuple[int, bytes]:
        """(version, body) of one entry: from the cache, else one HMGET.

        An empty body means no content (a tombstone, or no key: version 0).
        Raises NotReady rather than report "no content" from a Redis that
        holds no complete build, and RedisUnavailable when Redis fails.
        """
        key = keys.entry_key(slug, user_id)
        cache = self.cache
        hit = cache.get(key)
        if hit is not None:
            return hit
        ticket = cache.ticket()
        raw_version, body = self._call(self._read_entry, key)
        version = int(raw_version) if raw_version else 0
        if not body:
            # Only a ready store can say "no content"; the check comes after
            # the read, so a marker set in between still counts.
            if not self.is_ready():
                raise NotReady()
            body = b""
        cache.fill(key, version, body, ticket)
        return version, body

    def _read_entry(self, key: str) -> list[bytes | None]:
        """One HMGET on this thread's own connection (with the pool's timeouts)."""
        try:
            connection = self._threads.connection
        except AttributeError:
            pool = self._client.connection_pool
            connection = self._threads.connection = pool.connection_class(**pool.connection_kwargs)
        encoded = key.encode("utf-8")
        command = [b"%s$%d\r\n%s\r\n%s" % (_HMGET_HEAD, len(encoded), encoded, _HMGET_FIELDS)]
        # A connection opened before a Redis restart fails on first use; one
        # reconnect tells a dead socket from a dead Redis, which would
        # otherwise trip the breaker for every thread after each restart.
        reused = connection._sock is not None
        while True:
            try:
                connection.send_packed_command(command, check_health=False)
                return connection.read_response()
            except redis.TimeoutError:
                connection.disconnect()
                raise
            except redis.ConnectionError:
                connection.disconnect()
                if not reused:
                    raise
                reused = False
            except BaseException:
                # Whatever was half sent or half read must not reach the next request.
                connection.disconnect()
                raise

    def last_known(self, slug: str, user_id: str) -> tuple[int, bytes] | None:
        """The last (version, body) this process read for the entry, or None."""
        return self.cache.last_known(keys.entry_key(slug, user_id))

    def is_ready(self) -> bool:
        """True when a full build from the database has completed (keys.READY)."""
        return bool(self._call(self._client.exists, keys.READY))

    # -- the config snapshot -----------------------------------------------------

    def ready_and_current(self) -> tuple[bool, ConfigSnapshot]:
        """Whether the store is built, and the config reloaded first if its version moved.

        Asked before a 404 for a campaign, which the poller's copy may lag
        behind by up to POLL_SECONDS. Two cheap reads: a stream of requests
        for unknown campaigns reloads nothing.
        """
        pipe = self._client.pipeline(transaction=False)
        pipe.exists(keys.READY)
        pipe.get(keys.CONFIG_VERSION)
        ready, version = self._call(pipe.execute)
        current = self._snapshot
        if version is not None and (current is None or version != current.version):
            self.reload()
        return bool(ready), self._snapshot

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
        """One poll: note the ready marker, reload when the version moved or the copy is old."""
        current = self._snapshot
        pipe = self._client.pipeline(transaction=False)
        pipe.get(keys.CONFIG_VERSION)
        pipe.exists(keys.READY)
        try:
            version, ready = self._call(pipe.execute, probe=True)
        except RedisUnavailable:
            self.cache.set_ready(False)
            raise
        # Losing the marker (a restart, a flush) invalidates the cache: its
        # entries may be gone from Redis without any announcement.
        self.cache.set_ready(bool(ready))
        stale = time.monotonic() - self._loaded_at > FULL_RELOAD_SECONDS
        if current is None or version != current.version or stale:
            self.reload(probe=True)

    def start_polling(self) -> None:
        """Start the daemon threads that keep the snapshot and the cache current."""
        if self._poller is not None:
            return
        self._poller = threading.Thread(target=self._poll, name="config-poller", daemon=True)
        self._poller.start()
        if self.cache.capacity:
            threading.Thread(
                target=self._subscribe_forever, name="entry-changes", daemon=True
            ).start()

    # -- entry announcements -----------------------------------------------------

    def _subscribe_forever(self) -> None:
        pool = self._client.connection_pool
        while True:
            # A connection of its own, outside the pool: it stays subscribed.
            connection = pool.connection_class(**pool.connection_kwargs)
            try:
                self._listen(connection)
            except (redis.RedisError, OSError, ValueError) as exc:
                log.warning("entry announcements lost (%s); cache dropped", exc)
            except Exception:
                log.exception("entry announcement handling failed; cache dropped")
            finally:
                self.cache.detach()
                connection.disconnect()
            time.sleep(RESUBSCRIBE_SECONDS)

    def _listen(self, connection: Any) -> None:
        """Subscribe, then apply announcements until the connection fails."""
        connection.connect()
        connection.send_command("CLIENT", "SETNAME", SUBSCRIBER_NAME)
        connection.read_response()
        connection.send_command("SUBSCRIBE", self._channel)
        # push_request: hand subscription replies back instead of to a handler.
        reply = connection.read_response(push_request=True)
        if not reply or reply[0] != b"subscribe":
            raise redis.ConnectionError(f"unexpected reply to SUBSCRIBE: {reply!r}")
        # The socket is redis-py's own: poll() on it lets this thread sleep
        # without the GIL and lets request threads see unread announcements.
        sock = connection._sock
        watcher = select.poll()
        watcher.register(sock, select.POLLIN)
        self.cache.attach(sock.fileno())
        pinged_at: float | None = None
        heard_at = time.monotonic()
        while True:
            if watcher.poll(PING_SECONDS * 1000):
                self.cache.set_busy(True)
                try:
                    while connection.can_read(timeout=0):
                        self._handle(connection.read_response(push_request=True))
                finally:
                    self.cache.set_busy(False)
                heard_at = time.monotonic()
                pinged_at = None
            now = time.monotonic()
            if pinged_at is not None and now - pinged_at > PONG_SECONDS:
                raise redis.TimeoutError("no answer to PING on the subscription")
            if pinged_at is None and now - heard_at >= PING_SECONDS:
                connection.send_command("PING")
                pinged_at = now

    def _handle(self, reply: Any) -> None:
        if not isinstance(reply, list) or reply[0] != b"message":
            return  # a pong, or a subscribe confirmation
        data = reply[2]
        if data == keys.ENTRY_CHANGES_FLUSH.encode():
            self.cache.flush(keep_copies=False)
            return
        flat = json.loads(data)
        self.cache.apply([(flat[i], int(flat[i + 1])) for i in range(0, len(flat), 2)])

    def _poll(self) -> None:
        while True:
            try:
                self.refresh()
            except RedisUnavailable:
                pass  # logged by the breaker; the next poll doubles as its probe
            except Exception:
                log.exception("config reload failed")
            time.sleep(POLL_SECONDS)
