"""Writes to the Redis contract (ccadmin/keys.py), each one a compare-and-set in Lua.

Nothing older wins (DESIGN 5.3): an entry is written only if Redis holds no
version or a lower one, a campaign config only if its `version` is higher, and
the values replaced as a whole only if they were built from a later database
read. Every refused write is a no-op counted in keys.STATS, so running a job
twice leaves the same state.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import redis

from ccadmin import keys

# Entries per script call and script calls per pipeline: one round trip
# carries ENTRIES_PER_CALL * CALLS_PER_PIPELINE entries (2,000), and no single
# script holds Redis for more than a fraction of a millisecond.
ENTRIES_PER_CALL = 100
CALLS_PER_PIPELINE = 20

# KEYS[1] stats, KEYS[2..n] entry keys. ARGV[1..5] the version field, body
# field, the two counter names and the entry-changes channel, then (version,
# body) per entry. The applied writes are announced on the channel (see
# keys.ENTRY_CHANGES_FLUSH) inside the script, atomically with the writes.
_WRITE_ENTRIES = """
local written, stale, changes = 0, 0, {}
for i = 2, #KEYS do
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
if written > 0 then
  redis.call('HINCRBY', KEYS[1], ARGV[3], written)
  redis.call('PUBLISH', ARGV[5], cjson.encode(changes))
end
if stale > 0 then redis.call('HINCRBY', KEYS[1], ARGV[4], stale) end
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

# KEYS[1] CAMPAIGNS, KEYS[2] CONFIG_VERSION, KEYS[3] stats. ARGV: the two
# counter names, slug, version, config JSON.
_WRITE_CAMPAIGN = """
local stored = redis.call('HGET', KEYS[1], ARGV[3])
if stored then
  local ok, config = pcall(cjson.decode, stored)
  if ok and type(config) == 'table' and tonumber(config['version'])
      and tonumber(config['version']) >= tonumber(ARGV[4]) then
    redis.call('HINCRBY', KEYS[3], ARGV[2], 1)
    return 0
  end
end
redis.call('HSET', KEYS[1], ARGV[3], ARGV[5])
redis.call('HINCRBY', KEYS[3], ARGV[1], 1)
redis.call('INCR', KEYS[2])
return 1
"""

# KEYS[1] the value (a string or a hash), KEYS[2] CONFIG_SNAPSHOTS,
# KEYS[3] CONFIG_VERSION, KEYS[4] stats. ARGV: the two counter names, the
# snapshot number, 'string' or 'hash', then the value (string: 0 or 1
# argument, none = delete; hash: field, value pairs).
_WRITE_SNAPSHOT = """
local current = tonumber(redis.call('HGET', KEYS[2], KEYS[1]))
if current and current >= tonumber(ARGV[3]) then
  redis.call('HINCRBY', KEYS[4], ARGV[2], 1)
  return 0
end
redis.call('DEL', KEYS[1])
if ARGV[4] == 'string' then
  if #ARGV >= 5 then redis.call('SET', KEYS[1], ARGV[5]) end
else
  for i = 5, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
redis.call('HSET', KEYS[2], KEYS[1], ARGV[3])
redis.call('HINCRBY', KEYS[4], ARGV[1], 1)
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


class _Scripts:
    """The scripts, called by EVALSHA (redis-py loads them on a NOSCRIPT reply)."""

    def __init__(self, connection: redis.Redis):
        self.write_entries = connection.register_script(_WRITE_ENTRIES)
        self.repair_entry = connection.register_script(_REPAIR_ENTRY)
        self.entry_states = connection.register_script(_ENTRY_STATES)
        self.write_campaign = connection.register_script(_WRITE_CAMPAIGN)
        self.write_snapshot = connection.register_script(_WRITE_SNAPSHOT)
        self.extend_lock = connection.register_script(_EXTEND_LOCK)


_registered: list[_Scripts] = []


def scripts(connection: redis.Redis) -> _Scripts:
    """The scripts, registered once per process; callers pass their own client."""
    if not _registered:
        _registered.append(_Scripts(connection))
    return _registered[0]


def _counters() -> list[str]:
    return [keys.STAT_WRITES, keys.STAT_STALE_WRITES]


def announced(connection: redis.Redis) -> None:
    """Return once Redis has sent the announcements of the writes before it.

    Redis sends replies and pub/sub messages of one command batch together,
    before it reads the next command; a second round trip therefore means
    every API process has the announcement in its socket, so a publish is
    visible to the very next request, whichever process answers it.
    """
    connection.ping()


def changes_channel(connection: redis.Redis) -> str:
    """The entry-changes channel of the database this connection writes to."""
    return keys.entry_changes_channel(
        int(connection.connection_pool.connection_kwargs.get("db", 0))
    )


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
    head = [
        keys.ENTRY_VERSION_FIELD,
        keys.ENTRY_BODY_FIELD,
        *_counters(),
        changes_channel(connection),
    ]
    for group in _chunks(entries, ENTRIES_PER_CALL * CALLS_PER_PIPELINE):
        pipeline = connection.pipeline(transaction=False)
        for start in range(0, len(group), ENTRIES_PER_CALL):
            call_keys = [keys.STATS]
            call_args: list[Any] = list(head)
            for entry in group[start : start + ENTRIES_PER_CALL]:
                call_keys.append(entry.key)
                call_args.append(entry.version)
                call_args.append(entry.body)
            script(keys=call_keys, args=call_args, client=pipeline)
        for written, stale in pipeline.execute():
            counts.written += written
            counts.stale += stale
    if counts.written:
        announced(connection)
    return counts


def write_entry(connection: redis.Redis, key: str, version: int, body: bytes) -> bool:
    """Compare-and-set one entry; False if Redis already holds this version or newer."""
    return write_entries(connection, [EntryWrite(key, version, body)]).written == 1


def entry_states(connection: redis.Redis, entry_keys: list[str]) -> list[tuple[int | None, int]]:
    """(version or None, body length) of each key, a few script calls per round trip."""
    script = scripts(connection).entry_states
    pipeline = connection.pipeline(transaction=False)
    for start in range(0, len(entry_keys), ENTRIES_PER_CALL):
        script(
            keys=entry_keys[start : start + ENTRIES_PER_CALL],
            args=[keys.ENTRY_VERSION_FIELD, keys.ENTRY_BODY_FIELD],
            client=pipeline,
        )
    states: list[tuple[int | None, int]] = []
    for reply in pipeline.execute():
        for index in range(0, len(reply), 2):
            version = reply[index]
            states.append((int(version) if version else None, reply[index + 1]))
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
    repaired = bool(scripts(connection).repair_entry(keys=[key], args=args, client=connection))
    if repaired:
        announced(connection)
    return repaired


def write_campaign(connection: redis.Redis, slug: str, version: int, config_json: str) -> bool:
    """Compare-and-set one campaign config on its `version`; bumps CONFIG_VERSION."""
    written = scripts(connection).write_campaign(
        keys=[keys.CAMPAIGNS, keys.CONFIG_VERSION, keys.STATS],
        args=[*_counters(), slug, version, config_json],
        client=connection,
    )
    return bool(written)


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


def write_default_campaign(connection: redis.Redis, snapshot: int, slug: str | None) -> bool:
    """Point `/data` at `slug` (None: at nothing) unless a later snapshot did already."""
    args: list[Any] = [*_counters(), snapshot, "string"]
    if slug is not None:
        args.append(slug)
    written = scripts(connection).write_snapshot(
        keys=[keys.DEFAULT_CAMPAIGN, keys.CONFIG_SNAPSHOTS, keys.CONFIG_VERSION, keys.STATS],
        args=args,
        client=connection,
    )
    return bool(written)


def write_api_keys(connection: redis.Redis, snapshot: int, api_keys: dict[str, str]) -> bool:
    """Replace the whole API key hash unless a later snapshot did already."""
    args: list[Any] = [*_counters(), snapshot, "hash"]
    for secret_hash, document in sorted(api_keys.items()):
        args.extend((secret_hash, document))
    written = scripts(connection).write_snapshot(
        keys=[keys.API_KEYS, keys.CONFIG_SNAPSHOTS, keys.CONFIG_VERSION, keys.STATS],
        args=args,
        client=connection,
    )
    return bool(written)


def mark_ready(connection: redis.Redis, report_json: str) -> None:
    """Set the ready marker after a full build and tell API caches to drop everything."""
    pipeline = connection.pipeline(transaction=True)
    pipeline.set(keys.READY, report_json)
    pipeline.publish(changes_channel(connection), keys.ENTRY_CHANGES_FLUSH)
    pipeline.execute()
    announced(connection)


def take_lock(connection: redis.Redis, name: str, token: str, ttl: int) -> bool:
    """Take a cluster-wide lock (SET NX EX), or extend it if `token` holds it."""
    if connection.set(name, token, nx=True, ex=ttl):
        return True
    return extend_lock(connection, name, token, ttl)


def extend_lock(connection: redis.Redis, name: str, token: str, ttl: int) -> bool:
    """Extend a lock `token` holds; False if it expired and someone else took it."""
    return bool(scripts(connection).extend_lock(keys=[name], args=[token, ttl], client=connection))


def release_lock(connection: redis.Redis, name: str, token: str) -> bool:
    """Release a lock if `token` still holds it."""
    return bool(scripts(connection).extend_lock(keys=[name], args=[token, 0], client=connection))


def stats(connection: redis.Redis) -> dict[str, int]:
    """The publishing counters (writes, stale writes)."""
    raw = connection.hgetall(keys.STATS)
    return {name.decode(): int(value) for name, value in raw.items()}
