"""The bookkeeping of a parallel full rebuild in Redis: its plan, its chunks, its lock.

Everything lives under the {rb} hash tag (see keys.REBUILD_PLAN), so each
step below is one atomic script, also on Redis Cluster. A chunk is recorded
done once however often its job runs, and exactly one recording sees the
last chunk done: that job finalizes (workers/rebuild.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from typing import Any

import redis

from ccadmin import keys

# KEYS: plan, chunks, lock. ARGV: the rebuild id, lock TTL, then the plan's
# field, value pairs. Written only by the holder of the lock.
_WRITE_PLAN = """
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('EXPIRE', KEYS[3], ARGV[2])
return 1
"""

# KEYS: plan, chunks, lock. ARGV: rebuild id, chunk index, the chunk's JSON
# record, entries, written, stale, lock TTL. Returns -1 (not this rebuild's
# plan), 0 (already done), 1 (recorded) or 2 (recorded, and it was the last).
_RECORD_CHUNK = """
if redis.call('HGET', KEYS[1], 'id') ~= ARGV[1] then return -1 end
if redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[3]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], 'entries', ARGV[4])
redis.call('HINCRBY', KEYS[1], 'written', ARGV[5])
redis.call('HINCRBY', KEYS[1], 'stale', ARGV[6])
local done = redis.call('HINCRBY', KEYS[1], 'chunks_done', 1)
if redis.call('GET', KEYS[3]) == ARGV[1] then redis.call('EXPIRE', KEYS[3], ARGV[7]) end
if done == tonumber(redis.call('HGET', KEYS[1], 'chunks')) then return 2 end
return 1
"""

# KEYS: plan, lock. ARGV: rebuild id, finished_at, report JSON. 1 if this
# call finished the plan; the lock goes with it.
_FINISH = """
if redis.call('HGET', KEYS[1], 'id') ~= ARGV[1] then return 0 end
if redis.call('HEXISTS', KEYS[1], 'finished_at') == 1 then return 0 end
redis.call('HSET', KEYS[1], 'finished_at', ARGV[2], 'report', ARGV[3])
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return 1
"""


class Recorded(Enum):
    """What recording a chunk done did."""

    SUPERSEDED = -1  # the plan is gone (Redis emptied) or a newer rebuild replaced it
    ALREADY_DONE = 0
    RECORDED = 1
    LAST = 2  # this was the last chunk not done: the caller finalizes


@dataclass
class Plan:
    """One full rebuild: how entry ids are split, what it covers, how far it got."""

    rebuild_id: str
    first_id: int
    chunk_size: int
    chunks: int
    snapshot: int
    started_at: float
    campaigns: int
    api_keys: int
    chunks_done: int = 0
    entries: int = 0
    written: int = 0
    stale: int = 0
    finished_at: float | None = None

    @property
    def finished(self) -> bool:
        return self.finished_at is not None

    def bounds(self, index: int) -> tuple[int, int | None]:
        """Entry ids of chunk `index`: [low, high); the last chunk is open-ended, so
        rows inserted after planning are covered too (their jobs publish them anyway)."""
        low = self.first_id + index * self.chunk_size
        high = None if index == self.chunks - 1 else low + self.chunk_size
        return low, high

    def fields(self) -> dict[str, Any]:
        """The plan as written to keys.REBUILD_PLAN (counters start at zero)."""
        return {
            "id": self.rebuild_id,
            "first_id": self.first_id,
            "chunk_size": self.chunk_size,
            "chunks": self.chunks,
            "snapshot": self.snapshot,
            "started_at": repr(self.started_at),
            "campaigns": self.campaigns,
            "api_keys": self.api_keys,
            "chunks_done": 0,
            "entries": 0,
            "written": 0,
            "stale": 0,
        }


def chunk_job_id(rebuild_id: str, index: int) -> str:
    """The RQ job id of one chunk: the sweeper finds a lost job by it."""
    return f"rebuild-{rebuild_id}-{index}"


def write_plan(connection: redis.Redis, plan: Plan, lock_ttl: int) -> bool:
    """Replace the last plan (and its chunk records) with `plan`; False if the lock
    is no longer this rebuild's."""
    args: list[Any] = [plan.rebuild_id, lock_ttl]
    for name, value in plan.fields().items():
        args.extend((name, value))
    return bool(_eval(connection, _WRITE_PLAN, [keys.REBUILD_LOCK], args))


def read_plan(connection: redis.Redis) -> Plan | None:
    """The current or last plan, with its progress; None if there is none."""
    raw = {
        name.decode(): value.decode()
        for name, value in connection.hgetall(keys.REBUILD_PLAN).items()
    }
    if "id" not in raw:
        return None
    return Plan(
        rebuild_id=raw["id"],
        first_id=int(raw["first_id"]),
        chunk_size=int(raw["chunk_size"]),
        chunks=int(raw["chunks"]),
        snapshot=int(raw["snapshot"]),
        started_at=float(raw["started_at"]),
        campaigns=int(raw["campaigns"]),
        api_keys=int(raw["api_keys"]),
        chunks_done=int(raw.get("chunks_done", 0)),
        entries=int(raw.get("entries", 0)),
        written=int(raw.get("written", 0)),
        stale=int(raw.get("stale", 0)),
        finished_at=float(raw["finished_at"]) if "finished_at" in raw else None,
    )


def record_chunk(
    connection: redis.Redis,
    rebuild_id: str,
    index: int,
    record: dict[str, Any],
    written: int,
    stale: int,
    lock_ttl: int,
) -> Recorded:
    """Mark chunk `index` done with its counts (once) and extend the lock."""
    args = [
        rebuild_id,
        index,
        json.dumps(record, separators=(",", ":")),
        record["entries"],
        written,
        stale,
        lock_ttl,
    ]
    return Recorded(int(_eval(connection, _RECORD_CHUNK, [keys.REBUILD_LOCK], args)))


def finish(connection: redis.Redis, rebuild_id: str, finished_at: float, report: str) -> bool:
    """Mark the plan finished and release its lock; False if it already was (or was replaced)."""
    args = [rebuild_id, repr(finished_at), report]
    return bool(connection.eval(_FINISH, 2, keys.REBUILD_PLAN, keys.REBUILD_LOCK, *args))


def done_chunks(connection: redis.Redis) -> dict[int, dict[str, Any]]:
    """Chunk index -> its record ({"worker", "entries", "seconds"}) for every chunk done."""
    return {
        int(index): json.loads(record)
        for index, record in connection.hgetall(keys.REBUILD_CHUNKS).items()
    }


def is_done(connection: redis.Redis, index: int) -> bool:
    return bool(connection.hexists(keys.REBUILD_CHUNKS, index))


def _eval(connection: redis.Redis, script: str, extra_keys: list[str], args: list[Any]) -> Any:
    # EVAL, not EVALSHA: a few calls per chunk of 50,000 entries, and no
    # script cache to reload on a cluster node that restarted.
    return connection.eval(
        script, 2 + len(extra_keys), keys.REBUILD_PLAN, keys.REBUILD_CHUNKS, *extra_keys, *args
    )
