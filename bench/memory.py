"""Redis memory per entry: N entries written through the worker's write path, then measured.

For each body size, a fresh private redis-server (the layout of
bench.seed.PrivateRedis: a unix socket in a temporary folder) receives
--entries entries through workers.redis_writes.write_entries, and the run reports
used_memory before and after, bytes per entry, the average MEMORY USAGE and
the encodings of a sample of keys, the write rate, and the size of the RDB
file a BGSAVE writes. Redis keeps a hash with both fields at most
hash-max-listpack-value bytes (64 by default) as one compact listpack and
turns a larger one into a hash table, so the default sizes straddle that
limit; --listpack-value repeats each size with the limit raised.

    .venv/bin/python -m bench.memory                       # 1,000,000 entries, 48 and 220 B
    .venv/bin/python -m bench.memory --entries 100000 --body-bytes 300 --listpack-value 512
    .venv/bin/python -m bench.memory --cluster             # a one-node Redis Cluster

Prints a table and writes bench/results/memory-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from bench import seed
from bench.servers import free_port
from ccadmin import embedded_redis, keys, payload, redis_client
from ccadmin.content.seed import random_messages
from workers import redis_writes

RESULTS = Path(__file__).with_name("results")
CAMPAIGN = seed.CAMPAIGN
# Entries built and written per step: keeps the benchmark's own memory flat
# while the timed part stays the writer alone.
STEP = 100_000
MB = 1024 * 1024


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument(
        "--body-bytes",
        default="48,220",
        help="comma-separated body sizes; 220 is about a `flask seed` entry",
    )
    parser.add_argument(
        "--listpack-value",
        type=int,
        default=0,
        help="also run every size with hash-max-listpack-value set to this many bytes",
    )
    parser.add_argument("--sample", type=int, default=2_000, help="keys asked MEMORY USAGE")
    parser.add_argument("--cluster", action="store_true", help="a one-node Redis Cluster")
    parser.add_argument(
        "--redis-server",
        default=shutil.which("redis-server") or embedded_redis.server_binary(),
        help="the binary (default: redis-server on PATH, else the embedded one)",
    )
    args = parser.parse_args()
    args.sizes = [int(size) for size in args.body_bytes.split(",")]
    return args


class MeasuredRedis(seed.PrivateRedis):
    """seed.PrivateRedis from a chosen binary, with its RDB in its folder, or as a
    one-node Redis Cluster holding every slot (keys then pay the cluster's
    per-key slot bookkeeping, and writes go one script call per hash tag)."""

    def __init__(self, binary: str, cluster: bool = False) -> None:
        super().__init__()
        self.binary = binary
        self.port = free_port() if cluster else 0

    def start(self) -> redis.Redis:
        """Start the server (assign the slots on a cluster); a client on its socket."""
        options = [
            *("--port", str(self.port), "--bind", "127.0.0.1"),
            *("--unixsocket", str(self.socket_path), "--unixsocketperm", "700"),
            *("--dir", str(self.folder), "--save", "", "--appendonly", "no"),
        ]
        if self.port:
            options += ["--cluster-enabled", "yes", "--cluster-port", str(free_port())]
        self.process = subprocess.Popen([self.binary, *options], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not embedded_redis.is_answering(self.socket_path):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"{self.binary} did not start")
            time.sleep(0.05)
        client = redis.Redis.from_url(self.url)
        if self.port:
            client.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
            while client.cluster("info")["cluster_state"] != "ok":
                if time.monotonic() > deadline:
                    raise RuntimeError("the one-node cluster did not become ok")
                time.sleep(0.05)
        return client

    def writer(self) -> redis.Redis:
        """The client the worker would write with: a cluster client on a cluster."""
        if self.port:
            return redis_client.cluster_client((f"redis://127.0.0.1:{self.port}",))
        return redis.Redis.from_url(self.url)


def listpack_setting(client: redis.Redis) -> str:
    """The setting's name: Redis 7 says listpack, Redis 6 ziplist."""
    major = int(client.info("server")["redis_version"].split(".")[0])
    return "hash-max-listpack-value" if major >= 7 else "hash-max-ziplist-value"


def body(user_id: str, size: int, message: str) -> bytes:
    """A body of `size` bytes for one user, its message cut from `message`.

    At or above the bare payload's size it is what the API serves (the seed's
    random letters as the message); below, no real payload fits, so it is a
    bare {"message": ...} object: it shows what a listpack-sized entry costs.
    """
    bare = payload.render_payload(CAMPAIGN, user_id, 1, {"message": ""})
    if len(bare) <= size:
        fields = {"message": message[: size - len(bare)]}
        return payload.render_payload(CAMPAIGN, user_id, 1, fields)
    return json.dumps({"message": message[: max(0, size - 15)]}).encode()


def entries(start: int, stop: int, size: int) -> list[redis_writes.EntryWrite]:
    """Entries for users start..stop-1, each with a body of `size` bytes."""
    messages = random_messages(stop - start, max(size, 1))
    return [
        redis_writes.EntryWrite(
            keys.entry_key(CAMPAIGN, str(user)), 1, body(str(user), size, message)
        )
        for user, message in zip(range(start, stop), messages, strict=True)
    ]


def sample_keys(client: redis.Redis, total: int, count: int) -> dict[str, Any]:
    """Average MEMORY USAGE, encodings and body length of `count` random entries."""
    users = random.Random(1).sample(range(1, total + 1), min(count, total))
    pipe = client.pipeline(transaction=False)
    for user in users:
        key = keys.entry_key(CAMPAIGN, str(user))
        pipe.memory_usage(key)
        pipe.execute_command("OBJECT", "ENCODING", key)
        pipe.hstrlen(key, keys.ENTRY_BODY_FIELD)
    replies = pipe.execute()
    usages, encodings, lengths = replies[0::3], replies[1::3], replies[2::3]
    return {
        "memory_usage_avg": round(sum(usages) / len(usages), 1),
        "encodings": dict(Counter(encoding.decode() for encoding in encodings)),
        "body_bytes_avg": round(sum(lengths) / len(lengths), 1),
    }


def snapshot(client: redis.Redis, folder: Path) -> tuple[int, float]:
    """BGSAVE and wait for it: (RDB file size in bytes, seconds it took)."""
    started = time.perf_counter()
    client.bgsave()
    while client.info("persistence")["rdb_bgsave_in_progress"]:
        time.sleep(0.1)
    seconds = time.perf_counter() - started
    status = client.info("persistence")["rdb_last_bgsave_status"]
    if status != "ok":
        raise RuntimeError(f"BGSAVE failed: {status}")
    dbfilename = client.config_get("dbfilename")["dbfilename"]
    return (folder / dbfilename).stat().st_size, seconds


def measure(args: argparse.Namespace, size: int, listpack_value: int) -> dict[str, Any]:
    """One fresh Redis, --entries entries of `size` bytes, everything measured."""
    server = MeasuredRedis(args.redis_server, cluster=args.cluster)
    try:
        client = server.start()
        setting = listpack_setting(client)
        if listpack_value:
            client.config_set(setting, listpack_value)
        writer = server.writer()
        before = client.info("memory")["used_memory"]
        written = 0
        seconds = 0.0
        for start in range(1, args.entries + 1, STEP):
            batch = entries(start, min(start + STEP, args.entries + 1), size)
            started = time.perf_counter()
            written += redis_writes.write_entries(writer, batch).written
            seconds += time.perf_counter() - started
        memory = client.info("memory")
        if client.dbsize() < args.entries:
            raise RuntimeError(f"Redis holds {client.dbsize():,} keys, expected {args.entries:,}")
        rdb_bytes, rdb_seconds = snapshot(client, server.folder)
        added = memory["used_memory"] - before
        return {
            "body_bytes": size,
            "listpack_value": int(client.config_get(setting)[setting]),
            "cluster": args.cluster,
            "entries": args.entries,
            "written": written,
            "used_memory_before": before,
            "used_memory_after": memory["used_memory"],
            "used_memory_rss_after": memory["used_memory_rss"],
            "bytes_per_entry": round(added / args.entries, 1),
            **sample_keys(client, args.entries, args.sample),
            "write_seconds": round(seconds, 2),
            "writes_per_second": round(written / seconds),
            "rdb_bytes": rdb_bytes,
            "rdb_bytes_per_entry": round(rdb_bytes / args.entries, 1),
            "bgsave_seconds": round(rdb_seconds, 2),
        }
    finally:
        server.stop()


_COLUMNS = (
    ("body B", "body_bytes_avg", "{:,.0f}"),
    ("listpack", "listpack_value", "{}"),
    ("encoding", "encodings", "{}"),
    ("used MB", "used_memory_after", "{}"),
    ("B/entry", "bytes_per_entry", "{:,.0f}"),
    ("MEMORY USAGE", "memory_usage_avg", "{:,.0f}"),
    ("writes/s", "writes_per_second", "{:,}"),
    ("RDB MB", "rdb_bytes", "{}"),
    ("RDB B/entry", "rdb_bytes_per_entry", "{:,.0f}"),
)


def _cell(field: str, value: Any, template: str) -> str:
    if field in ("used_memory_after", "rdb_bytes"):
        return f"{value / MB:,.0f}"
    if field == "encodings":
        return "+".join(sorted(value))
    return template.format(value)


def print_row(row: dict[str, Any] | None) -> None:
    """One row of the table (None: the column titles)."""
    cells = []
    for title, field, template in _COLUMNS:
        text = title if row is None else _cell(field, row[field], template)
        cells.append(text.rjust(max(len(title), 9)))
    print(" ".join(cells), flush=True)


def main() -> int:
    args = parse_args()
    started = time.monotonic()
    version = subprocess.run(
        [args.redis_server, "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    print(f"{args.entries:,} entries per run, {version}", flush=True)
    rows = []
    print_row(None)
    for size in args.sizes:
        for listpack_value in dict.fromkeys((0, args.listpack_value)):
            rows.append(measure(args, size, listpack_value))
            print_row(rows[-1])
    results = {
        "meta": {
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "entries": args.entries,
            "redis_server": args.redis_server,
            "redis_version": re.sub(r"\s+", " ", version),
            "cluster": args.cluster,
            "cores": os.cpu_count(),
            "python": sys.version.split()[0],
            "seconds": round(time.monotonic() - started),
        },
        "rows": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    json_path = RESULTS / f"memory-{stamp}.json"
    json_path.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {json_path} ({results['meta']['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
