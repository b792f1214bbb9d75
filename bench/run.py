"""`make bench`: the API against a bare hello-world under identical settings, with wrk.

Starts a private Redis seeded with 1,000,000 users through the worker's write
path, then measures on loopback: one process and two processes (ours and the
ceiling, the median of several short runs), the connection ladder, a spike
from idle to 10,000 connections with fresh-connection probes, the resident
memory of each API process at 15,000 connections, the cost of metrics
recording (on vs off), the API with its content store on a local Redis
Cluster (3 primaries, 3 replicas) against the API on the single Redis, and
the same app under granian when it is installed. Prints a table and writes
JSON and an HTML report under bench/results/.
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import json
import os
import random
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import report, seed, wrk
from bench.servers import API, HELLO, Server
from ccadmin.redis_client import cluster_client
from devtools.local_cluster import PRIMARY_COUNT, LocalCluster

RESULTS = Path(__file__).with_name("results")
# Threads per waitress process: measured with --sweep-threads (docs/performance.md).
THREAD_CHOICES = (4, 8, 16, 32)
# Redis's own default. The bench starves every process of CPU at times; with
# the test suite's 1 s a busy node could be voted out and fail over mid-run.
CLUSTER_NODE_TIMEOUT_MS = 15_000


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3, help="short runs per headline ratio")
    parser.add_argument("--run-seconds", type=float, default=5.0)
    parser.add_argument("--step-seconds", type=float, default=10.0, help="per ladder step")
    parser.add_argument("--full", action="store_true", help="30 s ladder steps, as specified")
    parser.add_argument("--ladder", default="500,5000,10000,15000")
    parser.add_argument("--spike-connections", type=int, default=10_000)
    parser.add_argument("--spike-seconds", type=float, default=15.0)
    parser.add_argument("--baseline", type=int, default=300, help="connections before a 10x spike")
    parser.add_argument("--tenfold-seconds", type=float, default=30.0, help="10x spike length")
    parser.add_argument("--sweep-threads", action="store_true", help="also try 4/8/16/32")
    parser.add_argument("--no-granian", action="store_true")
    parser.add_argument("--no-cluster", action="store_true", help="skip the Redis Cluster runs")
    parser.add_argument(
        "--cluster-step-seconds", type=float, default=5.0, help="per ladder step on the cluster"
    )
    args = parser.parse_args()
    if args.full:
        args.step_seconds = 30.0
    return args


class Bench:
    """Holds the seeded Redis and the settings every server of the run shares."""

    def __init__(self, args: argparse.Namespace, redis_url: str, api_key: str) -> None:
        self.args = args
        self.api_key = api_key
        self.env = {"REDIS_URL": redis_url, "CCADMIN_API_KEYS": ""}
        self.rows: list[dict[str, Any]] = []

    def server(self, module: list[str], processes: int, **extra: str) -> Server:
        return Server(module, {**self.env, "API_PROCESSES": str(processes), **extra})

    def wrk(self, server: Server, connections: int, seconds: float) -> wrk.WrkResult:
        return wrk.run(
            f"{server.url}/data", connections, seconds, self.api_key, self.args.users, threads=1
        )

    def paired(self, ceiling: Server, api: Server, connections: int) -> tuple[dict, dict]:
        """Warm both up, then alternate ceiling and API runs; the median run of each.

        Alternating keeps a slow moment of the machine from landing on one
        side only; the ratio is the median of the per-pair ratios.
        """
        self.wrk(ceiling, connections, 2)
        self.wrk(api, connections, 2)
        pairs = []
        for number in range(self.args.runs):
            # ABBA order: whichever side runs second in a pair must not always
            # be the same one, or a drift of the machine lands on one side.
            if number % 2:
                ours = self.wrk(api, connections, self.args.run_seconds)
                pairs.append((self.wrk(ceiling, connections, self.args.run_seconds), ours))
            else:
                theirs = self.wrk(ceiling, connections, self.args.run_seconds)
                pairs.append((theirs, self.wrk(api, connections, self.args.run_seconds)))
        ratio = statistics.median(ours.rate / theirs.rate for theirs, ours in pairs)
        chosen = []
        for side in (0, 1):
            runs = sorted((pair[side] for pair in pairs), key=lambda result: result.rate)
            middle = runs[len(runs) // 2].as_dict()
            middle["rates"] = [round(result.rate) for result in runs]
            chosen.append(middle)
        chosen[1]["paired_ratio"] = round(ratio, 3)
        return chosen[0], chosen[1]

    def record(self, scenario: str, server: str, result: dict[str, Any], ceiling: float) -> None:
        result = {"scenario": scenario, "server": server, **result}
        # Compared runs carry the median of their paired ratios; others divide.
        ratio = result.get("paired_ratio") or (result["rate"] / ceiling if ceiling else None)
        result["ratio"] = None if ratio is None else round(ratio, 3)
        self.rows.append(result)
        report.print_row(result)


def compare(bench: Bench, scenario: str, processes: int, connections: list[int], **env: str):
    """Ours and the hello-world ceiling, same settings, at each connection count."""
    with bench.server(HELLO, processes, **env) as hello, bench.server(API, processes, **env) as api:
        for count in connections:
            ceiling, ours = bench.paired(hello, api, count)
            bench.record(scenario, "ceiling", ceiling, ceiling["rate"])
            bench.record(scenario, "api", ours, ceiling["rate"])


def metrics_overhead(bench: Bench, connections: int = 500) -> None:
    """One API process with metrics recording off, then on: same settings, paired runs."""
    with bench.server(API, 1, API_METRICS="0") as off, bench.server(API, 1, API_METRICS="1") as on:
        without, with_metrics = bench.paired(off, on, connections)
    bench.record("metrics off/on", "metrics off", without, without["rate"])
    bench.record("metrics off/on", "metrics on", with_metrics, without["rate"])


def ladder(bench: Bench, processes: int, scenario: str = "ladder", **env: str) -> dict[str, Any]:
    """Each step once, ours then the ceiling; RSS of each API process mid-step."""
    steps = [int(step) for step in bench.args.ladder.split(",")]
    seconds = bench.args.step_seconds
    rss: dict[int, list[float]] = {}
    ceilings: dict[int, float] = {}
    with bench.server(HELLO, processes, **env) as hello:
        for count in steps:
            result = bench.wrk(hello, count, seconds).as_dict()
            ceilings[count] = result["rate"]
            bench.record(scenario, "ceiling", result, result["rate"])
            time.sleep(2)
    with bench.server(API, processes, **env) as api:
        bench.wrk(api, 500, 2)
        for count in steps:
            sampler = _later(seconds * 0.7, api.rss_mb)
            result = bench.wrk(api, count, seconds).as_dict()
            rss[count] = sampler()
            result["rss_mb"] = rss[count]
            bench.record(scenario, "api", result, ceilings[count])
            time.sleep(2)
    return {str(count): sizes for count, sizes in rss.items()}


def _later(delay: float, sample: Callable[[], Any]) -> Callable[[], Any]:
    """Take `sample()` after `delay` seconds in a thread; the returned call waits for it."""
    box: list[Any] = []
    thread = threading.Thread(target=lambda: (time.sleep(delay), box.append(sample())))
    thread.start()

    def result() -> Any:
        thread.join()
        return box[0] if box else None

    return result


def probe(port: int, api_key: str, users: int, timeout: float = 10.0) -> tuple[float, str]:
    """One request on a brand-new connection: (seconds to the answer, status or error)."""
    started = time.perf_counter()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        connection.request(
            "GET", f"/data?user_id={random.randint(1, users)}", headers={"X-API-Key": api_key}
        )
        response = connection.getresponse()
        response.read()
        connection.close()
        outcome = str(response.status)
    except OSError as error:
        outcome = type(error).__name__
    return time.perf_counter() - started, outcome


def spike(bench: Bench, processes: int, scenario: str = "spike", **env: str) -> dict[str, Any]:
    """Idle to N connections at once (wrk opens them together), probed with fresh clients."""
    args = bench.args
    probes: list[dict[str, Any]] = []
    with bench.server(API, processes, **env) as api:
        bench.wrk(api, 50, 2)
        time.sleep(2)  # idle
        stop = threading.Event()
        started = time.perf_counter()

        def keep_probing() -> None:
            while not stop.is_set():
                sent = time.perf_counter() - started
                seconds, outcome = probe(api.port, bench.api_key, args.users)
                probes.append(
                    {"at": round(sent, 3), "seconds": round(seconds, 4), "outcome": outcome}
                )
                stop.wait(0.25)

        prober = threading.Thread(target=keep_probing)
        prober.start()
        result = bench.wrk(api, args.spike_connections, args.spike_seconds).as_dict()
        stop.set()
        prober.join()
    result["probes"] = probes
    answered = [item for item in probes if item["outcome"] == "200"]
    result["probe_count"] = len(probes)
    result["probe_failures"] = len(probes) - len(answered)
    result["probe_max_seconds"] = max((item["seconds"] for item in probes), default=None)
    late = [item["seconds"] for item in probes if item["at"] >= 5]
    result["probe_max_after_5s"] = max(late, default=None)
    bench.record(scenario, "api", result, 0)
    return result


def tenfold(bench: Bench, processes: int) -> None:
    """A steady baseline, then ten times as many connections for a while (issue case 15).

    The baseline keeps its connections throughout, so its p99 covers the
    spike; a second wrk adds nine times the baseline's connections after
    10 s, for --tenfold-seconds.
    """
    args = bench.args
    lead = 10.0
    with bench.server(API, processes) as api:
        bench.wrk(api, args.baseline, 2)
        steady = _later(0, lambda: bench.wrk(api, args.baseline, args.tenfold_seconds + 2 * lead))
        time.sleep(lead)
        added = bench.wrk(api, args.baseline * 9, args.tenfold_seconds).as_dict()
        baseline = steady().as_dict()
    bench.record("10x spike", "baseline", baseline, 0)
    bench.record("10x spike", "added", added, 0)


def cluster(bench: Bench, processes: int) -> dict[str, Any]:
    """The API with its content store on a local Redis Cluster, against the single Redis.

    The cluster is seeded with the same users through the same write path.
    The queues' Redis (REDIS_URL) stays the single one: the API needs it for
    nothing on the request path. First paired runs at 500 connections
    (single-Redis API as the "ceiling" side, so the ratio is cluster/single),
    then the ladder, each step's ratio taken against the single-Redis
    ladder's API row at the same connection count.
    """
    args = bench.args
    folder = Path(tempfile.mkdtemp(prefix="ccbench-cluster-"))
    started = time.monotonic()
    try:
        with LocalCluster(folder, node_timeout_ms=CLUSTER_NODE_TIMEOUT_MS) as local:
            urls = ",".join(local.urls)
            client = cluster_client(tuple(local.urls))
            try:
                print(f"seeding {args.users:,} users into a local Redis Cluster ...", flush=True)
                seed.seed(client, args.users, bench.api_key)
            finally:
                client.close()
            seeded = round(time.monotonic() - started)
            print(f"cluster started and seeded in {seeded} s", flush=True)
            on_cluster = {"REDIS_CLUSTER_URLS": urls}
            with (
                bench.server(API, processes) as single,
                bench.server(API, processes, **on_cluster) as clustered,
            ):
                theirs, ours = bench.paired(single, clustered, 500)
            bench.record(report.CLUSTER_PAIRED, "single", theirs, theirs["rate"])
            bench.record(report.CLUSTER_PAIRED, "cluster", ours, theirs["rate"])
            single_rates = {
                row["connections"]: row["rate"]
                for row in bench.rows
                if row["scenario"] == "ladder" and row["server"] == "api"
            }
            with bench.server(API, processes, **on_cluster) as api:
                bench.wrk(api, 500, 2)
                for count in [int(step) for step in args.ladder.split(",")]:
                    sampler = _later(args.cluster_step_seconds * 0.7, api.rss_mb)
                    result = bench.wrk(api, count, args.cluster_step_seconds).as_dict()
                    result["rss_mb"] = sampler()
                    bench.record(report.CLUSTER_LADDER, "api", result, single_rates.get(count, 0))
                    time.sleep(2)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "primaries": PRIMARY_COUNT,
        "replicas": PRIMARY_COUNT,
        "node_timeout_ms": CLUSTER_NODE_TIMEOUT_MS,
        "start_and_seed_seconds": seeded,
        "step_seconds": args.cluster_step_seconds,
    }


def sweep_threads(bench: Bench) -> dict[int, float]:
    """Requests/s of one API process at 500 connections per thread count (and its ceiling)."""
    rates = {}
    for threads in THREAD_CHOICES:
        compare(bench, f"threads={threads}", 1, [500], API_THREADS=str(threads))
        rates[threads] = bench.rows[-1]["rate"]
    return rates


def main() -> int:
    args = parse_args()
    try:
        wrk.require_wrk()
    except wrk.WrkMissing as error:
        print(error, file=sys.stderr)
        return 1
    # Children (servers, wrk) inherit this: 15,000 connections need as many files.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    started = time.monotonic()
    redis_server = seed.PrivateRedis()
    try:
        client = redis_server.start()
        print(f"seeding {args.users:,} users into a private Redis ...", flush=True)
        api_key = seed.seed(client, args.users)
        print(f"seeded in {time.monotonic() - started:.0f} s", flush=True)
        bench = Bench(args, redis_server.url, api_key)
        cores = os.cpu_count() or 1
        results: dict[str, Any] = {
            "meta": {
                "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "users": args.users,
                "cores": cores,
                "runs": args.runs,
                "run_seconds": args.run_seconds,
                "step_seconds": args.step_seconds,
                "python": sys.version.split()[0],
            }
        }
        report.print_header()
        if args.sweep_threads:
            results["threads"] = sweep_threads(bench)
        compare(bench, "1 process", 1, [50, 500])
        compare(bench, "2 processes", 2, [50, 500])
        metrics_overhead(bench)
        results["rss_mb"] = ladder(bench, 2)
        results["spike"] = spike(bench, 2)
        tenfold(bench, 2)
        if not args.no_cluster:
            results["cluster"] = cluster(bench, 2)
        if not args.no_granian and importlib.util.find_spec("granian"):
            compare(bench, "granian 2 workers", 2, [500], API_SERVER="granian")
            results["rss_mb_granian"] = ladder(bench, 2, "ladder (granian)", API_SERVER="granian")
            results["spike_granian"] = spike(bench, 2, "spike (granian)", API_SERVER="granian")
        results["rows"] = bench.rows
        results["summary"] = report.summary(bench.rows)
        results["meta"]["seconds"] = round(time.monotonic() - started)
    finally:
        redis_server.stop()
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    json_path = RESULTS / f"{stamp}.json"
    json_path.write_text(json.dumps(results, indent=2))
    html_path = report.write_html(results, RESULTS / f"{stamp}.html")
    report.print_summary(results["summary"])
    print(f"\nwrote {json_path} and {html_path} ({results['meta']['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
