"""Writes to the Redis contract (ccadmin/keys.py), each one a compare-and-set in Lua.

Nothing older wins (docs/operations.md): an entry is written only if Redis holds no
version or a lower one, a campaign config only if its `version` is higher, and
the values replaced as a whole only if they were built from a later database
read. Every refused write is a no-op counted in keys.STATS, so running a job
twice leaves the same state.

Every script touches keys of one hash tag only, so the same calls work on a
single Redis and on Redis Cluster; on a cluster, a batch of entries is split
into one call per tag.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import redis

from ccadmin import keys

# Entries per script call and script calls per pipeline: one round trip
# carries ENTRIES_PER_CALL * CALLS_PER_PIPELINE entries (2,000), and no single
# script holds Redis for more than a fraction of a millisecond.
ENTRIES_PER_CALL = 100
CALLS_PER_PIPELINE = 20
# On a cluster a call holds entries of one hash tag only: a larger batch per
# round trip keeps several entries per call (20,000 over 1,024 tags: ~20).
CLUSTER_BATCH = 20_000

# KEYS: entry keys. ARGV[1..3] the version field, body field and the
# entry-changes channel, then (version, body) per entry. The applied writes
# are announced on the channel (see keys.ENTRY_CHANGES_FLUSH) inside the
# script, atomically with the writes.
_WRITE_ENTRIES = """
local written, stale, changes = 0, 0, {}
for i = 1, #KEYS do
  local version = tonumber(ARGV[2 * i + 2])
  local current = tonumber(redis.call('HGET', KEYS[i], ARGV[1]))
  if current and current >= version then
    stale = stale + 1
  else
    redis.call('HSET', KEYS[i], ARGV[1], ARGV[2 * i + 2], ARGV[2], ARGV[2 * i + 3])
    written = written + 1
    changes[#changes + 1] = KEYS[i]
    changes[#changes + 1] = version
  end
end
if written > 0 then redis.call('PUBLISH', ARGV[3], cjson.encode(changes)) end
return {written, stale}
"""

# KEYS[1] entry key. ARGV: version field, body field, the version observed
# by the caller ('' = key missing), then the new version and body ('' version
# = delete the key), then the entry-changes channel. Used by reconcile: it
# repairs only what it looked at. A repair can lower the version, so it is
# announced as version 0 (drop whatever is cached).
_REPAIR_ENTRY = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if (current or '') ~= ARGV[3] then return 0 end
if ARGV[4] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[4], ARGV[2], ARGV[5])
end
redis.call('PUBLISH', ARGV[6], cjson.encode({KEYS[1], 0}))
return 1
"""

# KEYS: entry keys. ARGV: version field, body field. Returns, per key, its
# version ('' if missing) and its body's length (0: a tombstone).
_ENTRY_STATES = """
local states = {}
for i = 1, #KEYS do
  states[2 * i - 1] = redis.call('HGET', KEYS[i], ARGV[1]) or ''
  states[2 * i] = redis.call('HSTRLEN', KEYS[i], ARGV[2])
end
return states
"""

# KEYS[1] CAMPAIGNS, KEYS[2] CONFIG_VERSION. ARGV: slug, version, config JSON.
_WRITE_CAMPAIGN = """
local stored = redis.call('HGET', KEYS[1], ARGV[1])
if stored then
  local ok, config = pcall(cjson.decode, stored)
  if ok and type(config) == 'table' and tonumber(config['version'])
      and tonumber(config['version']) >= tonumber(ARGV[2]) then
    return 0
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('INCR', KEYS[2])
return 1
"""

# KEYS[1] the value (a string or a hash), KEYS[2] CONFIG_SNAPSHOTS,
# KEYS[3] CONFIG_VERSION. ARGV: the snapshot number, 'string' or 'hash',
# then the value (string: 0 or 1 argument, none = delete; hash: field, value
# pairs).
_WRITE_SNAPSHOT = """
local current = tonumber(redis.call('HGET', KEYS[2], KEYS[1]))
if current and current >= tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
if ARGV[2] == 'string' then
  if #ARGV >= 3 then redis.call('SET', KEYS[1], ARGV[3]) end
else
  for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
redis.call('HSET', KEYS[2], KEYS[1], ARGV[1])
redis.call('INCR', KEYS[3])
return 1
"""

# KEYS[1] the lock. ARGV: the holder's token, TTL in seconds. Extends the
# lock only for its holder, so a lock that expired and was taken by another
# process is never extended (or released, with TTL 0) by the old holder.
_EXTEND_LOCK = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if tonumber(ARGV[2]) > 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
else
  redis.call('DEL', KEYS[1])
end
return 1
"""


class EntryWrite(NamedTuple):
    """One entry to publish: its key, version and body (b"" for a tombstone)."""

    key: str
    version: int
    body: bytes


@dataclass
class WriteCounts:
    """How many writes were applied and how many were refused as stale."""

    written: int = 0
    stale: int = 0

    def add(self, other: WriteCounts) -> None:
        self.written += other.written
        self.stale += other.stale


_SOURCES = (
    _WRITE_ENTRIES,
    _REPAIR_ENTRY,
    _ENTRY_STATES,
    _WRITE_CAMPAIGN,
    _WRITE_SNAPSHOT,
    _EXTEND_LOCK,
)


class _Scripts:
    """The scripts, called by EVALSHA (redis-py loads them on a NOSCRIPT reply)."""

    def __init__(self, connection: redis.Redis):
        (
            self.write_entries,
            self.repair_entry,
            self.entry_states,
            self.write_campaign,
            self.write_snapshot,
            self.extend_lock,
        ) = (connection.register_script(source) for source in _SOURCES)


_registered: list[_Scripts] = []


def scripts(connection: redis.Redis) -> _Scripts:
    """The scripts, registered once per process; callers pass their own client."""
    if not _registered:
        _registered.append(_Scripts(connection))
        if is_cluster(connection):
            load_scripts(connection)
    return _registered[0]


def is_cluster(connection: Any) -> bool:
    return isinstance(connection, redis.RedisCluster)


def load_scripts(connection: redis.RedisCluster) -> None:
    """Load every script on every node, replicas included, so a failover finds them.

    A cluster pipeline does not load scripts on a NOSCRIPT reply the way a
    single-Redis pipeline does; _execute reloads and retries instead.
    """
    for source in _SOURCES:
        connection.execute_command("SCRIPT LOAD", source, target_nodes=connection.ALL_NODES)


def _execute(connection: redis.Redis, build: Callable[[Any], None]) -> list[Any]:
    """Build a pipeline with `build` and run it.

    On a cluster node missing a script (a node added or restarted), load the
    scripts and run it again: every write here is a compare-and-set, so a
    repeat changes nothing already applied.
    """

    def run() -> list[Any]:
        pipeline = connection.pipeline(transaction=False)
        build(pipeline)
        return pipeline.execute()

    try:
        return run()
    except redis.exceptions.NoScriptError:
        if not is_cluster(connection):
            raise
        load_scripts(connection)
        return run()


def _invoke(pipeline: Any, script: Any, keys_: list[str], args: list[Any]) -> None:
    """Queue one script call on a pipeline.

    redis-py's cluster pipeline refuses scripts; an EVALSHA sent as a plain
    command is routed by its keys like any other (the scripts are loaded on
    every node, see load_scripts).
    """
    if isinstance(pipeline, redis.cluster.ClusterPipeline):
        pipeline.execute_command("EVALSHA", script.sha, len(keys_), *keys_, *args)
    else:
        script(keys=keys_, args=args, client=pipeline)


def _call(connection: redis.Redis, script: Any, keys_: list[str], args: list[Any]) -> Any:
    """One script call outside a pipeline (the config writes and locks).

    On a single Redis, redis-py's script object loads the script on NOSCRIPT
    itself, in one round trip otherwise.
    """
    if not is_cluster(connection):
        return script(keys=keys_, args=args, client=connection)
    return _execute(connection, lambda pipe: _invoke(pipe, script, keys_, args))[0]


def _count(connection: redis.Redis, counts: WriteCounts) -> None:
    """Add applied and refused writes to keys.STATS (one round trip)."""
    added = {keys.STAT_WRITES: counts.written, keys.STAT_STALE_WRITES: counts.stale}
    pipeline = connection.pipeline(transaction=False)
    for name, count in added.items():
        if count:
            pipeline.hincrby(keys.STATS, name, count)
    pipeline.execute()


def announced(connection: redis.Redis) -> None:
    """Return once Redis has sent the announcements of the writes before it.

    Redis sends replies and pub/sub messages of one command batch together,
    before it reads the next command; a second round trip therefore means
    every API process has the announcement in its socket, so a publish is
    visible to the very next request, whichever process answers it. (On a
    cluster, announcements travel the cluster bus to the other nodes: the
    API does not keep an in-process cache there, see ccadmin/api/store.py.)
    """
    if not is_cluster(connection):
        connection.ping()


def changes_channel(connection: redis.Redis) -> str:
    """The entry-changes channel of the database this connection writes to."""
    if is_cluster(connection):
        return keys.entry_changes_channel(0)
    return keys.entry_changes_channel(
        int(connection.connection_pool.connection_kwargs.get("db", 0))
    )


def _calls(connection: redis.Redis, items: list[Any], key: Callable[[Any], str]) -> list[list[Any]]:
    """`items` split into script calls of at most ENTRIES_PER_CALL.

    On a cluster, one hash tag per call (tags in order of first appearance,
    items in their order).
    """
    if not is_cluster(connection):
        groups: list[list[Any]] = [items]
    else:
        by_tag: dict[str, list[Any]] = {}
        for item in items:
            by_tag.setdefault(keys.entry_tag(key(item)), []).append(item)
        groups = list(by_tag.values())
    return [
        group[start : start + ENTRIES_PER_CALL]
        for group in groups
        for start in range(0, len(group), ENTRIES_PER_CALL)
    ]


def _chunks(items: Iterable[EntryWrite], size: int) -> Iterator[list[EntryWrite]]:
    chunk: list[EntryWrite] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def write_entries(connection: redis.Redis, entries: Iterable[EntryWrite]) -> WriteCounts:
    """Compare-and-set many entries, pipelined (not transactional) in chunks."""
    script = scripts(connection).write_entries
    counts = WriteCounts()
    head = [keys.ENTRY_VERSION_FIELD, keys.ENTRY_BODY_FIELD, changes_channel(connection)]

    def build(pipeline: Any, calls: list[list[EntryWrite]]) -> None:
        for call in calls:
            call_args: list[Any] = list(head)
            for entry in call:
                call_args.append(entry.version)
                call_args.append(entry.body)
            _invoke(pipeline, script, [entry.key for entry in call], call_args)

    batch_size = CLUSTER_BATCH if is_cluster(connection) else ENTRIES_PER_CALL * CALLS_PER_PIPELINE
    for group in _chunks(entries, batch_size):
        calls = _calls(connection, group, lambda entry: entry.key)
        for written, stale in _execute(connection, lambda pipe, c=calls: build(pipe, c)):
            counts.written += written
            counts.stale += stale
    if counts.written or counts.stale:
        # A round trip after every write: it also does what announced() does.
        _count(connection, counts)
    return counts


def write_entry(connection: redis.Redis, key: str, version: int, body: bytes) -> bool:
    """Compare-and-set one entry; False if Redis already holds this version or newer."""
    return write_entries(connection, [EntryWrite(key, version, body)]).written == 1


def entry_states(connection: redis.Redis, entry_keys: list[str]) -> list[tuple[int | None, int]]:
    """(version or None, body length) of each key, a few script calls per round trip."""
    script = scripts(connection).entry_states
    calls = _calls(connection, list(enumerate(entry_keys)), lambda item: item[1])

    def build(pipeline: Any) -> None:
        for call in calls:
            _invoke(
                pipeline,
                script,
                [key for _, key in call],
                [keys.ENTRY_VERSION_FIELD, keys.ENTRY_BODY_FIELD],
            )

    states: list[tuple[int | None, int]] = [(None, 0)] * len(entry_keys)
    for call, reply in zip(calls, _execute(connection, build), strict=True):
        for position, (index, _) in enumerate(call):
            version = reply[2 * position]
            states[index] = (int(version) if version else None, reply[2 * position + 1])
    return states


def repair_entry(
    connection: redis.Redis, key: str, observed: int | None, replacement: EntryWrite | None
) -> bool:
    """Replace (or delete, with None) an entry only if it still holds `observed`."""
    args: list[Any] = [
        keys.ENTRY_VERSION_FIELD,
        keys.ENTRY_BODY_FIELD,
        "" if observed is None else str(observed),
        "" if replacement is None else replacement.version,
        b"" if replacement is None else replacement.body,
        changes_channel(connection),
    ]
    repaired = bool(_call(connection, scripts(connection).repair_entry, [key], args))
    if repaired:
        announced(connection)
    return repaired


def write_campaign(connection: redis.Redis, slug: str, version: int, config_json: str) -> bool:
    """Compare-and-set one campaign config on its `version`; bumps CONFIG_VERSION."""
    written = bool(
        _call(
            connection,
            scripts(connection).write_campaign,
            [keys.CAMPAIGNS, keys.CONFIG_VERSION],
            [slug, version, config_json],
        )
    )
    _count(connection, WriteCounts(written=int(written), stale=int(not written)))
    return written


def remove_campaigns(connection: redis.Redis, slugs: Iterable[str]) -> int:
    """Drop configs of campaigns that no longer exist; bumps CONFIG_VERSION."""
    slugs = list(slugs)
    if not slugs:
        return 0
    pipeline = connection.pipeline(transaction=True)
    pipeline.hdel(keys.CAMPAIGNS, *slugs)
    pipeline.incr(keys.CONFIG_VERSION)
    removed, _ = pipeline.execute()
    return removed


def next_snapshot(connection: redis.Redis) -> int:
    """A snapshot number, taken before reading the database it will describe."""
    return int(connection.incr(keys.SNAPSHOT_SEQUENCE))


def _write_snapshot(connection: redis.Redis, key: str, args: list[Any]) -> bool:
    written = bool(
        _call(
            connection,
            scripts(connection).write_snapshot,
            [key, keys.CONFIG_SNAPSHOTS, keys.CONFIG_VERSION],
            args,
        )
    )
    _count(connection, WriteCounts(written=int(written), stale=int(not written)))
    return written


def write_default_campaign(connection: redis.Redis, snapshot: int, slug: str | None) -> bool:
    """Point `/data` at `slug` (None: at nothing) unless a later snapshot did already."""
    args: list[Any] = [snapshot, "string"]
    if slug is not None:
        args.append(slug)
    return _write_snapshot(connection, keys.DEFAULT_CAMPAIGN, args)


def write_api_keys(connection: redis.Redis, snapshot: int, api_keys: dict[str, str]) -> bool:
    """Replace the whole API key hash unless a later snapshot did already."""
    args: list[Any] = [snapshot, "hash"]
    for secret_hash, document in sorted(api_keys.items()):
        args.extend((secret_hash, document))
    return _write_snapshot(connection, keys.API_KEYS, args)


def mark_ready(connection: redis.Redis, report_json: str) -> None:
    """Set the ready marker after a full build and tell API caches to drop everything."""
    connection.set(keys.READY, report_json)
    connection.publish(changes_channel(connection), keys.ENTRY_CHANGES_FLUSH)
    announced(connection)


def take_lock(connection: redis.Redis, name: str, token: str, ttl: int) -> bool:
    """Take a cluster-wide lock (SET NX EX), or extend it if `token` holds it."""
    if connection.set(name, token, nx=True, ex=ttl):
        return True
    return extend_lock(connection, name, token, ttl)


def extend_lock(connection: redis.Redis, name: str, token: str, ttl: int) -> bool:
    """Extend a lock `token` holds; False if it expired and someone else took it."""
    return bool(_call(connection, scripts(connection).extend_lock, [name], [token, ttl]))


def release_lock(connection: redis.Redis, name: str, token: str) -> bool:
    """Release a lock if `token` still holds it."""
    return bool(_call(connection, scripts(connection).extend_lock, [name], [token, 0]))


def redis_run_id(connection: redis.Redis) -> str:
    """The Redis server's run_id: a new one after every restart.

    On a cluster, the run_ids of the primaries: a restart or a failover
    (replication is asynchronous, the promoted replica may miss the last
    writes) changes it.
    """
    if is_cluster(connection):
        replies = connection.info("server", target_nodes=connection.PRIMARIES)
        return ",".join(sorted(str(reply["run_id"]) for reply in replies.values()))
    return str(connection.info("server")["run_id"])


def stats(connection: redis.Redis) -> dict[str, int]:
    """The publishing counters (writes, stale writes)."""
    raw = connection.hgetall(keys.STATS)
    return {name.decode(): int(value) for name, value in raw.items()}
