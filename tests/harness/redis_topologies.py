"""Production Redis topologies on loopback, from the same `redis-server` binary as RedisServer:

- `RedisClusterTopology`: a Redis Cluster of 3 masters + 3 replicas (`--cluster-enabled yes`
  nodes joined by `redis-cli --cluster create ... --cluster-replicas 1`);
- `RedisSentinelTopology`: 1 master, 1 replica and 3 sentinels (`redis-server sentinel.conf
  --sentinel`, quorum 2).

Each node runs in its own directory under `workdir` on a free loopback port, in its own process
group tied to the test process (PDEATHSIG), so a crashed test run leaves nothing behind either.
`url` is the topology URL the operator and the workers take (`redis+cluster://...`,
`redis+sentinel://.../mymaster`). Failure helpers: `kill_master()` (SIGKILL by default),
`cluster_failover(key)` (Cluster), `wait_for_new_master()`, `restart(node)`.

Failure detection is short on purpose (a second or two, not Redis's 15-30 s defaults) so a
failover test waits seconds; long enough that a busy 2-core CI machine does not fail over by
itself.
"""

from __future__ import annotations

import contextlib
import os
import signal as signals
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

from tests.harness.process import ManagedProcess, free_port, port_open, wait_for
from tests.harness.redis import REDIS_SERVER

REDIS_CLI = str(Path(REDIS_SERVER).with_name("redis-cli"))
CLUSTER_NODE_TIMEOUT_MS = 2000
SENTINEL_DOWN_AFTER_MS = 1500
SENTINEL_FAILOVER_TIMEOUT_MS = 10000
MASTER_NAME = "mymaster"
START_TIMEOUT = 60.0
FAILOVER_TIMEOUT = 60.0


@dataclass
class RedisNode:
    """One redis-server (data node or sentinel) of a topology."""

    name: str
    port: int
    workdir: Path
    argv_tail: list[str]  # after the config file: flags
    # The config file's text, written at every start; None: the file is written once by the
    # topology (a sentinel rewrites its own). Secrets go here, never into argv (ps, logs).
    conf: str | None = ""
    proc: ManagedProcess | None = None

    @property
    def conf_path(self) -> Path:
        return self.workdir / "redis.conf"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.running() else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.running()

    def start(self) -> None:
        if self.running():
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.conf is not None:
            self.conf_path.write_text(self.conf)
            self.conf_path.chmod(0o600)
        self.proc = ManagedProcess(
            self.name,
            [REDIS_SERVER, str(self.conf_path), *self.argv_tail],
            self.log_path,
            stop_timeout=5,
        )
        self.proc.start()

    def kill(self, sig: int = signals.SIGKILL) -> None:
        """Signals the server (SIGKILL: no shutdown, no goodbye to the peers) and reaps it."""
        assert self.proc is not None and self.proc.proc is not None, f"{self.name} not started"
        os.kill(self.proc.proc.pid, sig)
        if sig in (signals.SIGKILL, signals.SIGTERM):
            self.proc.proc.wait(30)
            self.proc.stop()  # closes the log; nothing left in the group
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
        wait_for(lambda: not port_open(self.port), 10, f"{self.name} port {self.port} closed")


def cluster_node_port() -> int:
    """A free port whose cluster bus port (port + 10000, Redis's default) is free too. The
    default bus port, not --cluster-port: `redis-cli --cluster create` sometimes never saw the
    nodes join with explicit bus ports (it waited out its timeout)."""
    for _ in range(200):
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair (port, port + 10000) for a cluster node")


def _data_flags(port: int, workdir: Path) -> list[str]:
    """A data node that never persists (a killed node comes back empty, as a pod without a
    volume would), with auth to clients and to its master when a password is set."""
    flags = [
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(workdir),
        "--protected-mode",
        "no",
        "--daemonize",
        "no",
    ]
    return flags


def _auth_conf(password: str | None) -> str:
    if password is None:
        return ""
    return f"requirepass {password}\nmasterauth {password}\n"


def _client(port: int, password: str | None, timeout: float = 2.0) -> Any:
    import redis

    return redis.Redis(
        host="127.0.0.1",
        port=port,
        password=password,
        decode_responses=True,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
    )


def command(port: int, password: str | None, *args: Any, timeout: float = 2.0) -> Any:
    """One command on one node (no cluster redirection, no sentinel lookup)."""
    client = _client(port, password, timeout)
    try:
        return client.execute_command(*args)
    finally:
        client.close()


def _info(port: int, password: str | None, section: str) -> dict[str, Any]:
    client = _client(port, password)
    try:
        return dict(client.info(section))
    finally:
        client.close()


def _auth(user: str | None, password: str | None) -> str:
    if password is None:
        return ""
    return f"{quote(user or '', safe='')}:{quote(password, safe='')}@"


class _Topology:
    nodes: list[RedisNode]
    password: str | None

    def __enter__(self) -> _Topology:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        """Stops every node, also after a failed start; no process is left behind."""
        errors = []
        for node in self.nodes:
            try:
                node.stop()
            except Exception as exc:  # keep stopping the others
                errors.append(f"{node.name}: {exc!r}")
        if errors:
            raise RuntimeError("stopping the topology: " + "; ".join(errors))

    def pids(self) -> list[int]:
        return [n.pid for n in self.nodes if n.pid is not None]

    def node(self, port: int) -> RedisNode:
        return next(n for n in self.nodes if n.port == port)

    def log_tails(self, lines: int = 15) -> str:
        return "\n".join(
            f"--- {n.name} ({n.log_path})\n{n.proc.log_tail(lines)}"
            for n in self.nodes
            if n.proc is not None
        )

    def _check_running(self) -> None:
        """Raises if a node that was started (and not killed on purpose) has exited."""
        for node in self.nodes:
            if node.proc is not None and node.proc.proc is not None:
                node.proc.check_running()

    def _wait(self, predicate: Any, timeout: float, what: str) -> Any:
        try:
            return wait_for(predicate, timeout, what, interval=0.2, check=self._check_running)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{self.log_tails()}") from None

    def restart(self, node: RedisNode) -> None:
        raise NotImplementedError


# --- Redis Cluster ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SlotRange:
    start: int
    end: int
    master: int  # port
    replicas: tuple[int, ...]


class RedisClusterTopology(_Topology):
    """3 masters + 3 replicas (`masters`, `replicas_per_master` to change it)."""

    def __init__(
        self,
        workdir: Path,
        *,
        password: str | None = None,
        masters: int = 3,
        replicas_per_master: int = 1,
        node_timeout_ms: int = CLUSTER_NODE_TIMEOUT_MS,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.password = password
        self.masters = masters
        self.replicas_per_master = replicas_per_master
        self.nodes = []
        for i in range(masters * (1 + replicas_per_master)):
            port = cluster_node_port()
            node_dir = self.workdir / f"node-{port}"
            flags = [
                *_data_flags(port, node_dir),
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(node_dir / "nodes.conf"),
                "--cluster-node-timeout",
                str(node_timeout_ms),
                # A replica whose master is gone fails over however long it lost contact.
                "--cluster-replica-validity-factor",
                "0",
            ]
            self.nodes.append(
                RedisNode(f"cluster-{i}", port, node_dir, flags, conf=_auth_conf(password))
            )

    @property
    def seeds(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", n.port) for n in self.nodes[: self.masters]]

    @property
    def url(self) -> str:
        hosts = ",".join(f"{h}:{p}" for h, p in self.seeds)
        return f"redis+cluster://{_auth(None, self.password)}{hosts}"

    def url_with_password(self, password: str) -> str:
        hosts = ",".join(f"{h}:{p}" for h, p in self.seeds)
        return f"redis+cluster://{_auth(None, password)}{hosts}"

    def start(self) -> None:
        try:
            for node in self.nodes:
                node.start()
            for node in self.nodes:
                self._wait(lambda n=node: command(n.port, self.password, "PING"), 15, n_ping(node))
            self._create()
            self.wait_healthy()
        except BaseException:
            with contextlib.suppress(Exception):
                self.stop()
            raise

    def _create(self) -> None:
        argv = [REDIS_CLI, "--cluster", "create"]
        argv += [f"127.0.0.1:{n.port}" for n in self.nodes]
        argv += ["--cluster-replicas", str(self.replicas_per_master), "--cluster-yes"]
        env = dict(os.environ)
        if self.password is not None:
            env["REDISCLI_AUTH"] = self.password  # not on the command line (ps shows it)
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
        if done.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed:\n{done.stdout}{done.stderr}")

    def live_nodes(self) -> list[RedisNode]:
        return [n for n in self.nodes if n.running()]

    def slot_ranges(self) -> list[SlotRange]:
        """CLUSTER SLOTS as the first live node that answers sees it."""
        last: Exception | None = None
        for node in self.live_nodes():
            try:
                reply = command(node.port, self.password, "CLUSTER", "SLOTS")
            except Exception as exc:
                last = exc
                continue
            return [
                SlotRange(int(r[0]), int(r[1]), int(r[2][1]), tuple(int(x[1]) for x in r[3:]))
                for r in reply
            ]
        raise RuntimeError(f"no cluster node answers CLUSTER SLOTS: {last!r}")

    def keyslot(self, key: str) -> int:
        node = self.live_nodes()[0]
        return int(command(node.port, self.password, "CLUSTER", "KEYSLOT", key))

    def slot_owner(self, key: str) -> SlotRange:
        slot = self.keyslot(key)
        return next(r for r in self.slot_ranges() if r.start <= slot <= r.end)

    def master_for(self, key: str) -> RedisNode:
        return self.node(self.slot_owner(key).master)

    def replica_for(self, key: str) -> RedisNode:
        owner = self.slot_owner(key)
        assert owner.replicas, f"slot range {owner} has no replica"
        return self.node(owner.replicas[0])

    def _node_healthy(self, node: RedisNode) -> bool:
        info = command(node.port, self.password, "CLUSTER", "INFO")
        if "cluster_state:ok" not in info:
            return False
        nodes_text = command(node.port, self.password, "CLUSTER", "NODES")
        lines = [ln for ln in nodes_text.splitlines() if ln.strip()]
        live_ports = {n.port for n in self.live_nodes()}
        for line in lines:
            parts = line.split()
            port = int(parts[1].split("@")[0].rsplit(":", 1)[1])
            if port in live_ports and ("fail" in parts[2] or "handshake" in parts[2]):
                return False
            if port in live_ports and parts[7] != "connected":
                return False
        if "slave" in command(node.port, self.password, "ROLE")[0]:
            return _info(node.port, self.password, "replication").get("master_link_status") == "up"
        return True

    def healthy(self) -> bool:
        """Every live node: cluster_state:ok, every live peer connected and not failing, every
        replica in sync with its master; every slot range has a master that is running."""
        if not all(self._node_healthy(n) for n in self.live_nodes()):
            return False
        live = {n.port for n in self.live_nodes()}
        ranges = self.slot_ranges()
        # Every live node serves a slot range, as its master or as a replica (a restarted
        # node first comes back as an empty master with no slots, then turns replica).
        serving = {r.master for r in ranges} | {p for r in ranges for p in r.replicas}
        return all(r.master in live for r in ranges) and live <= serving

    def wait_healthy(self, timeout: float = START_TIMEOUT) -> None:
        self._wait(self.healthy, timeout, "Redis Cluster healthy")

    def kill_master(self, key: str = "{bull}", sig: int = signals.SIGKILL) -> RedisNode:
        """Kills the master that owns `key`'s slot; returns it (for `restart`)."""
        master = self.master_for(key)
        master.kill(sig)
        return master

    def cluster_failover(self, key: str = "{bull}") -> tuple[RedisNode, RedisNode]:
        """`CLUSTER FAILOVER` on the replica of `key`'s slot (a manual, lossless failover);
        returns (old master, new master) once the replica is master and the cluster is ok."""
        old = self.master_for(key)
        replica = self.replica_for(key)
        assert command(replica.port, self.password, "CLUSTER", "FAILOVER") == "OK"
        self._wait(
            lambda: self.slot_owner(key).master == replica.port and self.healthy(),
            FAILOVER_TIMEOUT,
            f"{replica.name} to take over {key!r}'s slot",
        )
        return old, replica

    def wait_for_new_master(self, old: RedisNode, key: str = "{bull}") -> RedisNode:
        """Waits until a live node other than `old` serves `key`'s slot as master and the
        cluster (without the dead node) is ok on every live node."""

        def promoted() -> RedisNode | None:
            owner = self.slot_owner(key)
            live = {n.port for n in self.live_nodes()}
            if owner.master == old.port or owner.master not in live:
                return None
            if not all(
                "cluster_state:ok" in command(n.port, self.password, "CLUSTER", "INFO")
                for n in self.live_nodes()
            ):
                return None
            return self.node(owner.master)

        found = self._wait(promoted, FAILOVER_TIMEOUT, f"a new master for {key!r}'s slot")
        assert isinstance(found, RedisNode)
        return found

    def restart(self, node: RedisNode) -> None:
        """Starts a stopped/killed node again on its port with its nodes.conf: it rejoins the
        cluster (as a replica of whoever took its slots over) and resyncs."""
        node.start()
        self._wait(lambda: command(node.port, self.password, "PING"), 15, n_ping(node))
        self.wait_healthy()

    def client(self, **kwargs: Any) -> Any:
        """A redis-py RedisCluster on the seeds (follows MOVED and failovers itself)."""
        from redis.cluster import ClusterNode, RedisCluster

        return RedisCluster(
            startup_nodes=[ClusterNode(h, p) for h, p in self.seeds],
            password=self.password,
            decode_responses=kwargs.pop("decode_responses", True),
            **kwargs,
        )


def n_ping(node: RedisNode) -> str:
    return f"{node.name} :{node.port} answering PING"


# --- Sentinel --------------------------------------------------------------------------------


class RedisSentinelTopology(_Topology):
    """1 master + 1 replica (`replicas`) watched by 3 sentinels (quorum 2) under MASTER_NAME.

    `password`: the data nodes' requirepass/masterauth (the sentinels' auth-pass);
    `sentinel_password`: the sentinels' own requirepass (and sentinel-pass between them)."""

    def __init__(
        self,
        workdir: Path,
        *,
        password: str | None = None,
        sentinel_password: str | None = None,
        replicas: int = 1,
        sentinels: int = 3,
        quorum: int = 2,
        master_name: str = MASTER_NAME,
        down_after_ms: int = SENTINEL_DOWN_AFTER_MS,
        failover_timeout_ms: int = SENTINEL_FAILOVER_TIMEOUT_MS,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.password = password
        self.sentinel_password = sentinel_password
        self.master_name = master_name
        self.quorum = quorum
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        master_port = free_port()
        self.data_nodes = [
            RedisNode(
                "sentinel-master",
                master_port,
                self.workdir / f"data-{master_port}",
                _data_flags(master_port, self.workdir / f"data-{master_port}"),
                conf=_auth_conf(password),
            )
        ]
        for i in range(replicas):
            port = free_port()
            node_dir = self.workdir / f"data-{port}"
            flags = [*_data_flags(port, node_dir), "--replicaof", "127.0.0.1", str(master_port)]
            self.data_nodes.append(
                RedisNode(f"sentinel-replica-{i}", port, node_dir, flags, conf=_auth_conf(password))
            )
        self.sentinels = []
        for i in range(sentinels):
            port = free_port()
            node_dir = self.workdir / f"sentinel-{port}"
            # Written once by start(): the sentinel rewrites it (the master it follows now).
            self.sentinels.append(RedisNode(f"sentinel-{i}", port, node_dir, ["--sentinel"], None))
        self.nodes = [*self.data_nodes, *self.sentinels]
        self._initial_master = master_port

    @property
    def url(self) -> str:
        return self.url_for()

    def url_for(
        self, *, master_name: str | None = None, password: str | None = None, db: int | None = None
    ) -> str:
        """The topology URL; the keyword arguments replace a part (for bad-input tests)."""
        pw = self.password if password is None else password
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        path = f"/{master_name or self.master_name}" + (f"/{db}" if db is not None else "")
        query = ""
        if self.sentinel_password is not None:
            query = f"?sentinelPassword={quote(self.sentinel_password, safe='')}"
        return f"redis+sentinel://{_auth(None, pw)}{hosts}{path}{query}"

    def _sentinel_conf(self, node: RedisNode) -> str:
        lines = [
            f"port {node.port}",
            "bind 127.0.0.1",
            "protected-mode no",
            "daemonize no",
            f"dir {node.workdir}",
            f"sentinel monitor {self.master_name} 127.0.0.1 {self._initial_master} {self.quorum}",
            f"sentinel down-after-milliseconds {self.master_name} {self.down_after_ms}",
            f"sentinel failover-timeout {self.master_name} {self.failover_timeout_ms}",
            f"sentinel parallel-syncs {self.master_name} 1",
        ]
        if self.password is not None:
            lines.append(f"sentinel auth-pass {self.master_name} {self.password}")
        if self.sentinel_password is not None:
            lines += [
                f"requirepass {self.sentinel_password}",
                f"sentinel sentinel-pass {self.sentinel_password}",
            ]
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        try:
            for node in self.data_nodes:
                node.start()
                self._wait(lambda n=node: command(n.port, self.password, "PING"), 15, n_ping(node))
            for node in self.sentinels:
                node.workdir.mkdir(parents=True, exist_ok=True)
                node.conf_path.write_text(self._sentinel_conf(node))
                node.conf_path.chmod(0o600)
                node.start()
            self.wait_healthy()
        except BaseException:
            with contextlib.suppress(Exception):
                self.stop()
            raise

    def sentinel_command(self, sentinel: RedisNode, *args: Any) -> Any:
        return command(sentinel.port, self.sentinel_password, *args)

    def master_addr(self) -> int | None:
        """The master's port as a majority of the live sentinels reports it (None: no majority)."""
        votes: dict[int, int] = {}
        for s in self.sentinels:
            if not s.running():
                continue
            with contextlib.suppress(Exception):
                addr = self.sentinel_command(
                    s, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name
                )
                if addr:
                    votes[int(addr[1])] = votes.get(int(addr[1]), 0) + 1
        best = max(votes.items(), key=lambda kv: kv[1], default=None)
        return best[0] if best and best[1] >= self.quorum else None

    def master(self) -> RedisNode:
        port = self.master_addr()
        assert port is not None, "the sentinels do not agree on a master"
        return self.node(port)

    def replicas(self) -> list[RedisNode]:
        master = self.master_addr()
        return [n for n in self.data_nodes if n.port != master]

    def healthy(self) -> bool:
        """The sentinels agree on a master that says role:master, every live replica is in sync
        with it, and every sentinel knows every other sentinel and every live replica."""
        master_port = self.master_addr()
        if master_port is None or not self.node(master_port).running():
            return False
        if _info(master_port, self.password, "replication").get("role") != "master":
            return False
        for replica in self.data_nodes:
            if replica.port == master_port or not replica.running():
                continue
            info = _info(replica.port, self.password, "replication")
            if info.get("master_port") != master_port or info.get("master_link_status") != "up":
                return False
        live_replicas = sum(1 for n in self.data_nodes if n.running()) - 1
        for s in self.sentinels:
            if not s.running():
                continue
            state = self.sentinel_command(s, "SENTINEL", "MASTER", self.master_name)
            fields = (
                dict(zip(state[::2], state[1::2], strict=True))
                if isinstance(state, list)
                else state
            )
            if int(fields["num-other-sentinels"]) < len(self.sentinels) - 1:
                return False
            up_replicas = [
                r
                for r in self.sentinel_command(s, "SENTINEL", "REPLICAS", self.master_name)
                if "s_down" not in _fields(r).get("flags", "")
                and "disconnected" not in _fields(r).get("flags", "")
            ]
            if len(up_replicas) < live_replicas:
                return False
        return True

    def wait_healthy(self, timeout: float = START_TIMEOUT) -> None:
        self._wait(self.healthy, timeout, "Redis Sentinel healthy")

    def kill_master(self, sig: int = signals.SIGKILL) -> RedisNode:
        master = self.master()
        master.kill(sig)
        return master

    def wait_for_new_master(self, old: RedisNode) -> RedisNode:
        """Waits until the sentinels agree on a master other than `old` that says role:master."""

        def promoted() -> RedisNode | None:
            port = self.master_addr()
            if port is None or port == old.port:
                return None
            role = _info(port, self.password, "replication").get("role")
            return self.node(port) if role == "master" else None

        found = self._wait(promoted, FAILOVER_TIMEOUT, "sentinels to promote a new master")
        assert isinstance(found, RedisNode)
        return found

    def failover(self) -> tuple[RedisNode, RedisNode]:
        """`SENTINEL FAILOVER` (a manual failover); returns (old master, new master)."""
        old = self.master()
        self.sentinel_command(self.sentinels[0], "SENTINEL", "FAILOVER", self.master_name)
        return old, self.wait_for_new_master(old)

    def restart(self, node: RedisNode) -> None:
        """Starts a stopped data node or sentinel again on its port. A data node comes back as a
        replica of the current master (not as a second, empty master the sentinels must first
        demote), as a restarted Bitnami pod does."""
        if node in self.data_nodes:
            master = self.master_addr()
            flags = [f for f in node.argv_tail]
            if "--replicaof" in flags:
                i = flags.index("--replicaof")
                del flags[i : i + 3]
            if master is not None and master != node.port:
                flags += ["--replicaof", "127.0.0.1", str(master)]
            node.argv_tail = flags
        node.start()
        self.wait_healthy()

    def client(self, **kwargs: Any) -> Any:
        """A redis-py client on the master via the sentinels (follows failovers)."""
        from redis.sentinel import Sentinel

        sentinel = Sentinel(
            [("127.0.0.1", s.port) for s in self.sentinels],
            sentinel_kwargs={"password": self.sentinel_password},
            password=self.password,
            decode_responses=kwargs.pop("decode_responses", True),
            **kwargs,
        )
        return sentinel.master_for(self.master_name)


def _fields(entry: Any) -> dict[str, Any]:
    if isinstance(entry, dict):
        return entry
    return dict(zip(entry[::2], entry[1::2], strict=True))


@contextlib.contextmanager
def running(topology: _Topology) -> Iterator[_Topology]:
    """Starts the topology and stops it afterwards, also when the body raises."""
    topology.start()
    try:
        yield topology
    finally:
        topology.stop()
