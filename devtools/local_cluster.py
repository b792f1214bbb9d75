"""A local Redis Cluster on loopback for the test suite and the benchmark.

Three primaries and three replicas, each a redis-server process with its own
folder, assembled with CLUSTER ADDSLOTS / MEET / REPLICATE through redis-py,
so a `redis-server` binary is all it needs (no `redis-cli`): the machine's
Redis 7, else the embedded Redis 6.2 of a fresh checkout. Redis 7 lets every
node take two free ports (`cluster-port`); with 6.2 the cluster bus listens
on `port + 10000`.
Failover is real: nodes can be stopped, killed and restarted.
"""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from redis.cluster import ClusterNode

from ccadmin import embedded_redis

HOST = "127.0.0.1"
SLOT_COUNT = 16384
PRIMARY_COUNT = 3
# A peer silent this long is suspected down; failover follows within ~1-2 s.
NODE_TIMEOUT_MS = 1000
# Redis 7 takes the cluster bus port from the config; before, it is port + 10000.
BUS_PORT_OFFSET = 10000
NO_BINARY = (
    "no redis-server >= 6 for a local Redis Cluster: install Debian's redis-server "
    "(apt-get install redis-server) or put one on PATH"
)


class LocalClusterError(RuntimeError):
    """The local cluster could not be started or did not reach the state waited for."""


class RedisServerMissingError(LocalClusterError):
    """No redis-server binary of version 6 or newer on this machine."""


class PortTakenError(LocalClusterError):
    """A node could not bind the port picked for it: another process took it first."""


def free_port() -> int:
    """A TCP port nobody listens on right now (someone may still take it before us)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll `predicate` until it returns something truthy; return that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise LocalClusterError(f"condition not met within {timeout} s")
        time.sleep(interval)


def redis_server_binary() -> str | None:
    """The machine's redis-server, else the embedded one, if it is Redis 6+; else None."""
    candidates = ["/usr/bin/redis-server", shutil.which("redis-server")]
    try:
        candidates.append(embedded_redis.server_binary())
    except embedded_redis.EmbeddedRedisError:
        pass
    for candidate in dict.fromkeys(path for path in candidates if path):
        if Path(candidate).exists() and _major_version(candidate) >= 6:
            return candidate
    return None


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def _major_version(binary: str) -> int:
    try:
        banner = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    match = re.search(r"\bv=(\d+)\.", banner)
    return int(match.group(1)) if match else 0


@dataclass(frozen=True)
class NodeView:
    """One line of CLUSTER NODES: how one node sees another (or itself)."""

    node_id: str
    port: int
    flags: frozenset[str]
    primary_id: str | None
    slots: frozenset[int]

    @property
    def is_primary(self) -> bool:
        """Flagged master (a dead primary keeps the flag until a failover strips its slots)."""
        return "master" in self.flags

    @property
    def is_failing(self) -> bool:
        """Suspected or confirmed down, or not yet joined."""
        return bool(self.flags & {"fail", "fail?", "handshake", "noaddr"})


def parse_cluster_nodes(text: str) -> dict[int, NodeView]:
    """CLUSTER NODES output keyed by client port (migration markers ignored)."""
    views = {}
    for line in text.splitlines():
        # id, address, flags, primary, ping-sent, pong-recv, config-epoch, link, slots...
        fields = line.split()
        node_id, address, flags, primary = fields[:4]
        slots: set[int] = set()
        for field in fields[8:]:
            if field.startswith("["):
                continue
            first, _, last = field.partition("-")
            slots.update(range(int(first), int(last or first) + 1))
        port = int(address.split("@")[0].rsplit(":", 1)[1])
        views[port] = NodeView(
            node_id,
            port,
            frozenset(flags.split(",")),
            None if primary == "-" else primary,
            frozenset(slots),
        )
    return views


class LocalCluster:
    """Six redis-server processes under `folder`, one subfolder (config, data, log) each."""

    def __init__(self, folder: Path, node_timeout_ms: int = NODE_TIMEOUT_MS) -> None:
        self.folder = folder
        # Short for tests that wait for failovers; long under a benchmark, where
        # a node starved of CPU for a second must not be voted out.
        self.node_timeout_ms = node_timeout_ms
        self.ports: list[int] = []
        self._bus_ports: dict[int, int] = {}
        self._processes: dict[int, subprocess.Popen] = {}
        self._admins: dict[int, redis.Redis] = {}
        # Who takes over from a primary, noted before it is stopped or killed.
        self._successors: dict[int, tuple[int, frozenset[int]]] = {}
        self._binary: str | None = None
        self._version = 0

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self, timeout: float = 30.0, attempts: int = 3) -> LocalCluster:
        """Start the nodes, assign slots, pair replicas, and wait until the cluster is ok.

        A free port can be taken by someone else before the node binds it; then
        the whole start is tried again on new ports.
        """
        self._binary = redis_server_binary()
        if self._binary is None:
            raise RedisServerMissingError(NO_BINARY)
        self._version = _major_version(self._binary)
        attempt = 1
        while True:
            try:
                self._launch(timeout)
                return self
            except PortTakenError:
                self.stop()
                self._processes.clear()
                if attempt >= attempts:
                    raise
                attempt += 1
            except BaseException:
                self.stop()
                raise

    def _launch(self, timeout: float) -> None:
        if self._version >= 7:
            ports: set[int] = set()
            while len(ports) < 4 * PRIMARY_COUNT:
                ports.add(free_port())
            ordered = sorted(ports)
            self.ports = ordered[: 2 * PRIMARY_COUNT]
            self._bus_ports = dict(zip(self.ports, ordered[2 * PRIMARY_COUNT :], strict=True))
        else:
            self.ports = []
            while len(self.ports) < 2 * PRIMARY_COUNT:
                port = free_port()
                bus = port + BUS_PORT_OFFSET
                if port not in self.ports and bus <= 65535 and _bindable(bus):
                    self.ports.append(port)
            self.ports.sort()
            self._bus_ports = {port: port + BUS_PORT_OFFSET for port in self.ports}
        for port in self.ports:
            self._write_config(port)
            self._spawn(port)
        for port in self.ports:
            self._wait_answering(port, timeout)
        self._assemble(timeout)
        self._wait_healthy(timeout)

    @property
    def urls(self) -> list[str]:
        """Every node, running or not, in port order."""
        return [self.url(port) for port in self.ports]

    @property
    def primary_urls(self) -> list[str]:
        """Nodes owning slots, as the cluster sees it now (failover changes this)."""
        return [self.url(port) for port, view in self.view().items() if view.slots]

    @property
    def replica_urls(self) -> list[str]:
        """Nodes flagged replica, as the cluster sees it now."""
        return [self.url(port) for port, view in self.view().items() if "slave" in view.flags]

    @staticmethod
    def url(port: int) -> str:
        """The redis:// URL of one node."""
        return f"redis://{HOST}:{port}"

    def client(self, **kwargs) -> redis.RedisCluster:
        """A cluster client that knows every node, so it survives any one of them dying."""
        options = {"socket_timeout": 5, **kwargs}
        nodes = [ClusterNode(HOST, port) for port in self.ports]
        return redis.RedisCluster(startup_nodes=nodes, **options)

    def node_client(self, port: int, **kwargs) -> redis.Redis:
        """A plain client for one node (it answers MOVED for slots it does not own)."""
        return redis.Redis(host=HOST, port=port, **{"socket_timeout": 5, **kwargs})

    def view(self) -> dict[int, NodeView]:
        """CLUSTER NODES from the first running node that answers, sorted by port."""
        for port in self.ports:
            if self.is_running(port):
                try:
                    return dict(sorted(self._view_from(port).items()))
                except redis.RedisError:
                    continue
        raise LocalClusterError("no cluster node answers")

    def primary_of_slot(self, slot: int) -> int:
        """Port of the node that owns `slot` now."""
        for port, view in self.view().items():
            if slot in view.slots:
                return port
        raise LookupError(f"no node owns slot {slot}")

    def replica_of(self, primary_port: int) -> int:
        """Port of a healthy replica of that primary; LookupError when it has none."""
        views = self.view()
        primary_id = views[primary_port].node_id
        replicas = [
            port
            for port, view in views.items()
            if view.primary_id == primary_id and not view.is_failing
        ]
        if not replicas:
            raise LookupError(f"node {primary_port} has no healthy replica")
        return replicas[0]

    def is_running(self, port: int) -> bool:
        """True while the node's process is alive (it may still be joining)."""
        process = self._processes.get(port)
        return process is not None and process.poll() is None

    def stop_node(self, port: int, timeout: float = 15.0) -> None:
        """A clean stop (SIGTERM), waited for."""
        self._note_successor(port)
        self._end(port, signal.SIGTERM, timeout)

    def kill_node(self, port: int) -> None:
        """A crash (SIGKILL): the node says goodbye to nobody."""
        self._note_successor(port)
        self._end(port, signal.SIGKILL, 10.0)

    def wait_for_failover(self, old_primary_port: int, timeout: float = 15.0) -> int:
        """Wait until the stopped primary's replica owns its slots and all live nodes agree.

        Returns the port of the new primary.
        """
        try:
            successor, slots = self._successors[old_primary_port]
        except KeyError:
            raise LookupError(
                f"node {old_primary_port} was not a stopped primary with a replica"
            ) from None

        def promoted() -> bool:
            try:
                mine = self._view_from(successor)[successor]
            except redis.RedisError:
                return False
            return mine.is_primary and slots <= mine.slots and self._healthy()

        wait_until(promoted, timeout=timeout)
        return successor

    def restart_node(self, port: int, timeout: float = 30.0) -> None:
        """Start a stopped node from its config; a node that lost a failover rejoins as replica."""
        if self.is_running(port):
            raise LocalClusterError(f"node {port} is still running")
        self._spawn(port)
        self._wait_answering(port, timeout)
        self._wait_healthy(timeout)

    def flushall(self) -> None:
        """Empty every running primary (replicas follow)."""
        for port, view in self.view().items():
            if view.is_primary and self.is_running(port):
                self._admin(port).flushall()

    def stop(self) -> None:
        """Kill every node; the folder stays for the logs."""
        for port in self.ports:
            if self.is_running(port):
                self._processes[port].kill()
        for process in self._processes.values():
            process.wait(timeout=10)
        for admin in self._admins.values():
            admin.close()
        self._admins.clear()

    def _node_folder(self, port: int) -> Path:
        return self.folder / f"node-{port}"

    def _write_config(self, port: int) -> None:
        folder = self._node_folder(port)
        folder.mkdir(parents=True, exist_ok=True)
        settings = [
            f"port {port}",
            *([f"cluster-port {self._bus_ports[port]}"] if self._version >= 7 else []),
            f"bind {HOST}",
            "protected-mode no",
            "daemonize no",
            "cluster-enabled yes",
            "cluster-config-file nodes.conf",
            f"cluster-node-timeout {self.node_timeout_ms}",
            # Tests kill nodes on purpose: a replica must always be allowed to take over.
            "cluster-replica-validity-factor 0",
            "appendonly no",
            'save ""',
            # Replicas sync at once instead of waiting 5 s for others to share the transfer.
            "repl-diskless-sync-delay 0",
            f'dir "{folder}"',
            f'logfile "{folder / "redis.log"}"',
        ]
        (folder / "redis.conf").write_text("\n".join(settings) + "\n")

    def _spawn(self, port: int) -> None:
        folder = self._node_folder(port)
        # Config errors are printed before the log file is open.
        with open(folder / "console.log", "ab") as console:
            self._processes[port] = subprocess.Popen(
                [self._binary, str(folder / "redis.conf")],
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _end(self, port: int, signum: int, timeout: float) -> None:
        if self.is_running(port):
            self._processes[port].send_signal(signum)
            self._processes[port].wait(timeout=timeout)

    def _admin(self, port: int) -> redis.Redis:
        if port not in self._admins:
            self._admins[port] = redis.Redis(
                host=HOST, port=port, socket_timeout=2, decode_responses=True
            )
        return self._admins[port]

    def _view_from(self, port: int) -> dict[int, NodeView]:
        return parse_cluster_nodes(self._admin(port).execute_command("CLUSTER", "NODES"))

    def _wait_answering(self, port: int, timeout: float) -> None:
        def answers() -> bool:
            if not self.is_running(port):
                folder = self._node_folder(port)
                output = "".join(
                    (folder / name).read_text() if (folder / name).exists() else ""
                    for name in ("console.log", "redis.log")
                )
                error = PortTakenError if "Address already in use" in output else LocalClusterError
                raise error(f"redis-server on port {port} exited:\n{output}")
            try:
                return bool(self._admin(port).ping())
            except redis.RedisError:
                return False

        wait_until(answers, timeout=timeout)

    def _assemble(self, timeout: float) -> None:
        primaries = self.ports[:PRIMARY_COUNT]
        replicas = self.ports[PRIMARY_COUNT:]
        ids = {port: self._admin(port).execute_command("CLUSTER", "MYID") for port in self.ports}
        for epoch, port in enumerate(self.ports, start=1):
            # Distinct epochs up front, as redis-cli does, so no collision round is needed.
            self._admin(port).execute_command("CLUSTER", "SET-CONFIG-EPOCH", epoch)
        for index, port in enumerate(primaries):
            first = index * SLOT_COUNT // PRIMARY_COUNT
            last = (index + 1) * SLOT_COUNT // PRIMARY_COUNT - 1
            if self._version >= 7:
                self._admin(port).execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
            else:
                self._admin(port).execute_command("CLUSTER", "ADDSLOTS", *range(first, last + 1))
        meeting = self._admin(self.ports[0])
        for port in self.ports[1:]:
            bus = [self._bus_ports[port]] if self._version >= 7 else []
            meeting.execute_command("CLUSTER", "MEET", HOST, port, *bus)

        def all_met() -> bool:
            # REPLICATE needs the primary's id known to the replica.
            for port in self.ports:
                views = self._view_from(port)
                known = {view.node_id for view in views.values() if "handshake" not in view.flags}
                if known != set(ids.values()):
                    return False
            return True

        wait_until(all_met, timeout=timeout)
        for primary, replica in zip(primaries, replicas, strict=True):
            self._admin(replica).execute_command("CLUSTER", "REPLICATE", ids[primary])

    def _note_successor(self, port: int) -> None:
        if not self.is_running(port):
            return
        views = self.view()
        if views[port].slots:
            try:
                self._successors[port] = (self.replica_of(port), views[port].slots)
            except LookupError:
                # No replica: nobody will take over, and wait_for_failover says so.
                self._successors.pop(port, None)

    def _wait_healthy(self, timeout: float) -> None:
        wait_until(self._healthy, timeout=timeout)

    def _healthy(self) -> bool:
        """Every live node: state ok, all slots served, the same topology, replicas in sync."""
        running = [port for port in self.ports if self.is_running(port)]
        layouts = set()
        try:
            for port in running:
                info = self._admin(port).execute_command("CLUSTER", "INFO")
                if "cluster_state:ok" not in info or f"cluster_slots_ok:{SLOT_COUNT}" not in info:
                    return False
                views = self._view_from(port)
                if any(node not in views or views[node].is_failing for node in running):
                    return False
                ids = {view.node_id: view.port for view in views.values()}
                layouts.add(
                    tuple(
                        (node, ids.get(views[node].primary_id), views[node].slots)
                        for node in running
                    )
                )
                if "slave" in views[port].flags:
                    link = self._admin(port).info("replication").get("master_link_status")
                    if link != "up":
                        return False
        except redis.RedisError:
            return False
        return len(layouts) == 1
