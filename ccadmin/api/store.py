"""Redis reads for the API: the config snapshot, entry lookups through the cache.

The config (campaigns, the default campaign, API keys) lives in memory as one
immutable `ConfigSnapshot`, replaced whole by a polling thread when
`keys.CONFIG_VERSION` moves, so a request reads it without a lock; the same
poll watches the ready marker. Entry lookups are answered by the in-process
cache (cache.py) or by one `HMGET`; a subscriber thread feeds the cache the
worker's announcements. Every Redis call goes through a short circuit
breaker so a Redis that is down costs one timeout per second, not one per
request.

Alongside: config_snapshot.py (parsing the config), clients.py (the Redis
clients and the packed HMGET), breaker.py, entry_changes.py (the subscriber).

The store can sit on three topologies (docs/configuration.md):
- one Redis (REDIS_URL): everything above, the fastest path;
- a primary with read replicas (REDIS_READ_URLS): each process reads one
  replica and subscribes there (Redis replicates the announcements in order
  with the writes, so the cache stays right); "no content" is confirmed on
  the primary, and the primary answers while the replica is unreachable or
  out of sync with it;
- Redis Cluster (REDIS_CLUSTER_URLS): announcements reach other nodes over
  the cluster bus after the write is live, so the cache never answers there;
  it only keeps last-known copies for outages. Each node has a breaker of its
  own: a node that stops answering costs its own entries only, until the
  cluster declares it failed (Redis then refuses every slot until a replica
  is promoted, unless `cluster-allow-reads-when-down` is on).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from redis.exceptions import RedisClusterException

from ccadmin import keys
from ccadmin.api.breaker import Breaker, RedisUnavailable
from ccadmin.api.cache import EntryCache
from ccadmin.api.clients import (
    client_address,
    connect,
    connect_replica,
    hmget_entry,
    own_connection,
)
from ccadmin.api.config_snapshot import ConfigSnapshot, build_snapshot, env_api_keys
from ccadmin.api.entry_changes import follow_entry_changes
from ccadmin.config import Settings

log = logging.getLogger(__name__)

# How often each process asks Redis whether the config changed. A revoked key
# or a deactivated campaign stops working within about this long.
POLL_SECONDS = 0.5
# Reload in full even without a version change: a Redis restored from an old
# snapshot can hand out a CONFIG_VERSION number this process already saw.
FULL_RELOAD_SECONDS = 10.0


class NotReady(Exception):
    """Redis answers but holds no complete build, and the entry is not there."""


def _read_ready(client: Any) -> bool:
    return bool(client.exists(keys.READY))


def _read_poll(client: Any) -> tuple[bytes | None, int]:
    pipe = client.pipeline(transaction=False)
    pipe.get(keys.CONFIG_VERSION)
    pipe.exists(keys.READY)
    version, ready = pipe.execute()
    return version, ready


def _read_restart_state(client: Any) -> tuple[str, bytes | None]:
    """(this Redis's run_id, the run_id the last reconcile ran against)."""
    pipe = client.pipeline(transaction=False)
    pipe.info("server")
    pipe.get(keys.REDIS_RUN_ID)
    info, reconciled = pipe.execute()
    return str(info["run_id"]), reconciled


def _read_config(client: Any) -> list[Any]:
    pipe = client.pipeline(transaction=True)
    pipe.get(keys.CONFIG_VERSION)
    pipe.hgetall(keys.CAMPAIGNS)
    pipe.get(keys.DEFAULT_CAMPAIGN)
    pipe.hgetall(keys.API_KEYS)
    return pipe.execute()


class Store:
    """The API's view of Redis for one process (create it after fork).

    `client`, when given, is the one store it reads (a Redis, or a
    RedisCluster); read replicas are used only when the Store connects itself.
    """

    def __init__(
        self, settings: Settings, client: redis.Redis | redis.RedisCluster | None = None
    ) -> None:
        self._settings = settings
        self._cluster = (
            isinstance(client, redis.RedisCluster)
            if client is not None
            else bool(settings.redis_cluster_urls)
        )
        self._connecting = threading.Lock()
        self._client = client if client is not None else self._connect_at_start()
        self._replica: redis.Redis | None = None
        if client is None and settings.redis_read_urls:
            self._replica = connect_replica(settings, self._client)
            self._replica_breaker = Breaker(
                f"read replica {client_address(self._replica)}", "reading the primary"
            )
        # Reads go to the replica only while it follows the primary (the
        # poller asks it every POLL_SECONDS); never when there is none.
        self._replica_in_sync = self._replica is not None
        self._env_keys = env_api_keys(settings)
        self._snapshot: ConfigSnapshot | None = None
        self._loaded_at = 0.0
        # True while Redis has restarted and the worker has not reconciled it
        # yet: it may hold older versions than it served before (a snapshot or
        # an append-only file missing its last writes), so answers say stale.
        self.unreconciled = False
        self._run_id: str | None = None
        self.cache = EntryCache(settings.api_cache_size)
        # One connection per serving thread for entry reads, outside the pool.
        self._threads = threading.local()
        self._poller: threading.Thread | None = None
        if self._cluster:
            self._breaker = Breaker("Redis Cluster", "serving last-known copies")
            self._node_breakers: dict[str, Breaker] = {}
            self._fetch = self._fetch_from_cluster
            self._channel = keys.entry_changes_channel(0)
            self._log_cluster_cache()
        else:
            db = int(self._client.connection_pool.connection_kwargs.get("db", 0))
            self._channel = keys.entry_changes_channel(db)
            if self._replica is None:
                self._breaker = Breaker("Redis", "serving last-known copies")
                # The hot path: the breaker around one HMGET, no frame in between.
                self._fetch = functools.partial(self._breaker.call, self._read_entry)
            else:
                self._breaker = Breaker("the primary Redis", "answering from the replica")
                self._fetch = self._fetch_from_replica
                log.info(
                    "reading read replica %s (%d configured); misses are confirmed on "
                    "the primary %s",
                    client_address(self._replica),
                    len(settings.redis_read_urls),
                    client_address(self._client),
                )
        self._call = self._breaker.call

    def _connect_at_start(self) -> Any:
        """The store client; on a cluster that does not answer yet, None (see _primary)."""
        if not self._cluster:
            return connect(self._settings)
        try:
            return connect(self._settings)
        except (redis.RedisError, RedisClusterException) as exc:
            # The API must still start and answer 503s; a later call connects.
            log.warning("Redis Cluster unreachable at start (%s); connecting later", exc)
            return None

    def _log_cluster_cache(self) -> None:
        if not self.cache.capacity:
            return
        log.info(
            "Redis Cluster: the in-process entry cache answers no request (entry "
            "announcements reach this process over the cluster bus only after the "
            "write is live, so a cached copy could outlive a newer version); it keeps "
            "last-known copies for outages only"
        )

    def _primary(self) -> Any:
        """The store client (single Redis, the primary, or the cluster), connected."""
        client = self._client
        if client is None:
            with self._connecting:
                if self._client is None:
                    self._client = connect(self._settings)
                client = self._client
        return client

    def _on_primary(self, read: Callable[[Any], Any]) -> Any:
        return read(self._primary())

    def _on_reader(self, read: Callable[[Any], Any], probe: bool = False) -> Any:
        """`read(client)` on the replica while it is in sync, else (or if it fails) the primary.

        RedisUnavailable only when the primary fails too.
        """
        if self._replica_in_sync:
            try:
                return self._replica_breaker.call(read, self._replica, probe=probe)
            except RedisUnavailable:
                pass
        return self._call(self._on_primary, read, probe=probe)

    # -- reads -----------------------------------------------------------------

    def entry(self, slug: str, user_id: str) -> tuple[int, bytes, bool]:
        """(version, body, stale) of one entry: from the cache, else one HMGET.

        An empty body means no content (a tombstone, or no key: version 0).
        Raises NotReady rather than report "no content" from a Redis that
        holds no complete build, and RedisUnavailable when Redis fails.
        Never goes back: when Redis holds an older version than this process
        has already served (it restarted from an older state), the newer copy
        answers, marked stale.
        """
        key = keys.entry_key(slug, user_id)
        cache = self.cache
        hit = cache.get(key)
        if hit is not None:
            return hit[0], hit[1], self.unreconciled
        sequence, ticket = cache.sequence, cache.ticket()
        raw_version, body = self._fetch(key)
        if cache.announced_since(key, sequence):
            # Rewritten while we read (a repair drops the cached copy that
            # would have kept us from going back): read the new version.
            ticket = cache.ticket()
            raw_version, body = self._fetch(key)
        version = int(raw_version) if raw_version else 0
        if not body:
            version, body = self._no_content(key, version)
        cache.fill(key, version, body, ticket)
        known = cache.last_known(key)
        if known is not None and known[0] > version:
            return known[0], known[1], True
        return version, body, self.unreconciled

    def _no_content(self, key: str, version: int) -> tuple[int, bytes]:
        """What to answer when the read found no content: confirmed, or NotReady.

        A key missing from a Redis that restarted and is not reconciled yet may
        be a write it lost: NotReady (a retry, or the last-known copy), never
        the fallback or a 404, which would ship an empty message.
        """
        if version == 0 and self.unreconciled:
            raise NotReady()
        if self._replica is not None:
            # A replica may lag: only the primary may say "no content" (the
            # fallback or 404 would ship an empty message for a user who has one).
            (raw_version, body), ready = self._call(self._confirm_on_primary, key)
            version = int(raw_version) if raw_version else 0
            if body:
                return version, body
        else:
            # Only a ready store can say "no content"; the check comes after
            # the read, so a marker set in between still counts.
            ready = self.is_ready()
        if not ready:
            raise NotReady()
        return version, b""

    def _confirm_on_primary(self, key: str) -> list[Any]:
        """The entry and the ready marker on the primary, in one round trip."""
        pipe = self._primary().pipeline(transaction=False)
        pipe.hmget(key, keys.ENTRY_VERSION_FIELD, keys.ENTRY_BODY_FIELD)
        pipe.exists(keys.READY)
        return pipe.execute()

    def _read_entry(self, key: str) -> list[bytes | None]:
        """One HMGET on this thread's own connection to the primary."""
        try:
            connection = self._threads.connection
        except AttributeError:
            connection = self._threads.connection = own_connection(self._client)
        socket_before = connection._sock
        entry = hmget_entry(connection, key)
        if socket_before is not None and connection._sock is not socket_before:
            self._check_run_id(connection)
        return entry

    def _check_run_id(self, connection: Any) -> None:
        """After a reconnect: a new run_id is a restart, stale from this very answer on.

        The poller would notice within POLL_SECONDS; answers read in between
        must say so too.
        """
        if self._run_id is None:
            return
        connection.send_command("INFO", "server")
        info = connection.read_response()
        if isinstance(info, bytes) and f"run_id:{self._run_id}".encode() not in info:
            self.unreconciled = True

    def _fetch_from_replica(self, key: str) -> list[bytes | None]:
        if self._replica_in_sync:
            try:
                return self._replica_breaker.call(self._read_replica_entry, key)
            except RedisUnavailable:
                pass  # logged by its breaker
        return self._call(self._read_entry, key)

    def _read_replica_entry(self, key: str) -> list[bytes | None]:
        """One HMGET on this thread's own connection to the replica."""
        try:
            connection = self._threads.replica
        except AttributeError:
            connection = self._threads.replica = own_connection(self._replica)
        return hmget_entry(connection, key)

    def _fetch_from_cluster(self, key: str) -> list[bytes | None]:
        """HMGET through redis-py's cluster routing, behind the key's node's own breaker."""
        client = self._client
        if client is None:
            client = self._call(self._primary)
        try:
            node = client.get_node_from_key(key)
        except RedisClusterException as exc:
            raise RedisUnavailable(str(exc)) from exc
        breaker = self._node_breakers.get(node.name)
        if breaker is None:
            breaker = self._node_breakers.setdefault(
                node.name,
                Breaker(
                    f"Redis Cluster node {node.name}", "serving last-known copies of its entries"
                ),
            )
        raw_version, body = breaker.call(
            client.hmget, key, keys.ENTRY_VERSION_FIELD, keys.ENTRY_BODY_FIELD
        )
        known = self.cache.last_known(key)
        if known is not None and known[0] > (int(raw_version) if raw_version else 0):
            # A repair lowered or removed the entry, announced where this
            # process does not listen: the older copy must not be kept over it.
            self.cache.apply([(key, 0)])
        return [raw_version, body]

    def last_known(self, slug: str, user_id: str) -> tuple[int, bytes] | None:
        """The last (version, body) this process read for the entry, or None.

        With a replica, also what the replica holds when it answers: the
        primary failed, and the replica's copy may be newer than ours.
        """
        key = keys.entry_key(slug, user_id)
        copy = self.cache.last_known(key)
        if self._replica is not None:
            replica_copy = self._replica_copy(key)
            if replica_copy is not None and (copy is None or replica_copy[0] >= copy[0]):
                copy = replica_copy
        return copy

    def _replica_copy(self, key: str) -> tuple[int, bytes] | None:
        """The replica's content for `key` (None: none, or no answer), in or out of sync."""
        try:
            raw_version, body = self._replica_breaker.call(self._read_replica_entry, key)
        except RedisUnavailable:
            return None
        return (int(raw_version), body) if raw_version and body else None

    def is_ready(self) -> bool:
        """True when a full build from the database has completed (keys.READY)."""
        return self._on_reader(_read_ready)

    # -- the config snapshot -----------------------------------------------------

    def ready_and_current(self) -> tuple[bool, ConfigSnapshot]:
        """Whether the store is built, and the config reloaded first if its version moved.

        Asked before a 404 for a campaign, which the poller's copy may lag
        behind by up to POLL_SECONDS. Two cheap reads: a stream of requests
        for unknown campaigns reloads nothing. Asked of the primary: a replica
        that lags must not turn a new campaign into 404s.
        """
        version, ready = self._call(self._on_primary, _read_poll)
        current = self._snapshot
        if version is not None and (current is None or version != current.version):
            self.reload(from_primary=True)
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

    def reload(self, probe: bool = False, from_primary: bool = False) -> None:
        """Read the whole config in one MULTI and swap it in."""
        if from_primary:
            loaded = self._call(self._on_primary, _read_config, probe=probe)
        else:
            loaded = self._on_reader(_read_config, probe)
        version, campaigns, default_campaign, api_keys = loaded
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
        try:
            version, ready, cache_valid = self._poll_state()
        except RedisUnavailable:
            self.cache.set_ready(False)
            raise
        # Losing the marker (a restart, a flush) invalidates the cache: its
        # entries may be gone from Redis without any announcement.
        self.cache.set_ready(cache_valid)
        if not self._cluster:
            run_id, reconciled = self._call(self._on_primary, _read_restart_state, probe=True)
            unreconciled = reconciled is not None and reconciled.decode() != run_id
            self._run_id = run_id
            if unreconciled != self.unreconciled:
                log.warning(
                    "Redis restarted and is not reconciled yet: answers are marked stale"
                    if unreconciled
                    else "Redis is reconciled: answers are current again"
                )
            self.unreconciled = unreconciled
        stale = time.monotonic() - self._loaded_at > FULL_RELOAD_SECONDS
        if current is None or version != current.version or stale:
            self.reload(probe=True)

    def _poll_state(self) -> tuple[bytes | None, int, bool]:
        """(config version, ready marker, whether the cache may answer) where reads go."""
        if self._replica is not None:
            state = self._poll_replica()
            if state is not None:
                return state
        version, ready = self._call(self._on_primary, _read_poll, probe=True)
        # With a replica, announcements come from the replica: while reads go
        # to the primary, the cache must not answer.
        return version, ready, bool(ready) and self._replica is None

    def _poll_replica(self) -> tuple[bytes | None, int, bool] | None:
        """The poll on the replica, with its link to the primary; None when it cannot serve."""
        pipe = self._replica.pipeline(transaction=False)
        pipe.get(keys.CONFIG_VERSION)
        pipe.exists(keys.READY)
        pipe.execute_command("ROLE")
        try:
            version, ready, role = self._replica_breaker.call(pipe.execute, probe=True)
        except RedisUnavailable:
            # Logged by its breaker; requests skip it until it answers a poll.
            self._replica_in_sync = False
            return None
        # ROLE of a replica: [b"slave", host, port, link state, offset]. A
        # replica whose link is down serves whatever it had, for as long as it
        # stays down: a promoted or detached one no longer follows at all.
        link = role[3] if role[0] == b"slave" else role[0]
        in_sync = link == b"connected"
        if in_sync != self._replica_in_sync:
            address = client_address(self._replica)
            if in_sync:
                log.info("read replica %s answers and follows the primary; reading it", address)
            else:
                log.warning(
                    "read replica %s does not follow the primary (%s); reading the primary",
                    address,
                    link.decode(errors="replace"),
                )
            self._replica_in_sync = in_sync
        return (version, ready, bool(ready)) if in_sync else None

    def start_polling(self) -> None:
        """Start the daemon threads that keep the snapshot and the cache current."""
        if self._poller is not None:
            return
        self._poller = threading.Thread(target=self._poll, name="config-poller", daemon=True)
        self._poller.start()
        # On a cluster the cache only keeps last-known copies: nothing to feed.
        if self.cache.capacity and not self._cluster:
            # Where the entries are read: that stream carries the announcements.
            source = self._replica if self._replica is not None else self._client
            threading.Thread(
                target=follow_entry_changes,
                args=(source, self._channel, self.cache),
                name="entry-changes",
                daemon=True,
            ).start()

    def _poll(self) -> None:
        while True:
            try:
                self.refresh()
            except RedisUnavailable:
                pass  # logged by the breaker; the next poll doubles as its probe
            except Exception:
                log.exception("config reload failed")
            time.sleep(POLL_SECONDS)
