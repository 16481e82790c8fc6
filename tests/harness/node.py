"""A real Kubernetes node on this machine: containerd + runc + CNI bridge + kubelet + kube-proxy.

Opt in with ``LocalCluster(workdir, real_node=True)`` (or the ``real_node`` fixture in
tests/e2e/realpods/conftest.py, or ``make cluster-up REAL_NODE=1``)::

    node = cluster.real_node
    node.import_image(Path("~/.cache/bullflow/images/worker.tar"))   # docker/OCI archive
    pod_spec = {**node_config.real_node_placement(), "containers": [...]}

The node is ``real-node-0`` (label ``bullflow.io/real-node=true``, taint of the same key, so
only pods that tolerate it land there); its InternalIP is the pod bridge's gateway, NODE_IP.
Pods get addresses in POD_SUBNET, reachable from the host and from each other; ClusterIP
Services work through kube-proxy's iptables rules; there is no cluster DNS. One real node per
machine at a time (the bridge, the node's iptables rules and kube-proxy's chains are
machine-wide): a second one waits for the first to stop.

Everything lives under ``workdir`` (containerd root/state, pod logs, CNI IPAM, logs) and
under ``short_dir(workdir)`` (sockets, runc state, kubelet root: unix socket paths must be
short); ``stop()`` kills the kubelet, kube-proxy, every container and its shim, unmounts what
they mounted there and removes the bridge and the iptables rules (kube-proxy's, the kubelet's,
ours). A node whose test process was SIGKILLed is cleaned up the same way by the next one.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import yaml

from tests.harness import node_config as cfg
from tests.harness.process import ManagedProcess, free_port, pid_alive, pid_cmdline, wait_for
from tests.harness.tools import REPO_ROOT, NodeTools, cache_dir, ensure_node_tools

log = logging.getLogger(__name__)

TESTBIN_SOURCE = REPO_ROOT / "tests" / "harness" / "node_testbin" / "main.go"
# The pod sandbox's image and the tests' workload (see node_testbin/main.go): `ctr` imports it
# at every start, since the node's containerd root is per run and nothing can be pulled.
TESTBIN_IMAGE = "localhost/bullflow-testbin:dev"
TESTBIN_ENTRYPOINT = "/testbin"
NEEDED_EXECUTABLES = ("containerd", "ctr", "runc", "iptables", "ip", "go")
NEEDED_CNI_PLUGINS = ("bridge", "host-local", "portmap", "loopback")
CLAIM_WAIT_SECONDS = 480


class NodeStartError(RuntimeError):
    """The node cannot start on this machine; the message is one line naming what is missing."""


class RealNode:
    def __init__(
        self,
        workdir: Path,
        *,
        kubeconfig: Path,
        ca_cert: Path,
        detached: bool = False,
        start_timeout: float = 60.0,
        tools: NodeTools | None = None,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.kubeconfig = kubeconfig
        self.ca_cert = ca_cert
        self.detached = detached
        self.start_timeout = start_timeout
        self.tools = tools
        self.name = cfg.NODE_NAME
        self.processes: list[ManagedProcess] = []
        self.logs_dir = self.workdir / "logs"
        self.socket = short_dir(self.workdir) / "containerd.sock"
        self.startup_seconds: float | None = None
        self._claim: IO[str] | None = None
        # True from claiming the machine until stop(): a node that never got the claim (another
        # one runs) must not clean up the other's bridge and rules.
        self._owns_machine = False

    # -- lifecycle ---------------------------------------------------------------------------

    def prepare_network(self) -> None:
        """Claims the machine's one real node slot and creates the bridge holding NODE_IP.

        Separate from start(): the API server advertises NODE_IP (so pods reach it through
        the `kubernetes` Service), and it must exist before the API server starts."""
        check_requirements()
        self._claim_machine()
        cleanup_leftovers(self.workdir)
        _ip("link", "add", cfg.BRIDGE, "type", "bridge")
        _ip("addr", "add", f"{cfg.NODE_IP}/24", "dev", cfg.BRIDGE)
        _ip("link", "set", cfg.BRIDGE, "up")
        if subprocess.run(
            ["iptables", "-C", *cfg.FORWARD_DROP_RULE], capture_output=True
        ).returncode:
            _run(["iptables", "-I", *cfg.FORWARD_DROP_RULE])

    def start(self) -> None:
        """Starts containerd, the kubelet and kube-proxy; returns once the node is Ready."""
        t0 = time.monotonic()
        if not self._owns_machine:
            self.prepare_network()
        if self.tools is None:
            self.tools = ensure_node_tools()
        try:
            self._start_containerd()
            self.import_image(testbin_archive())
            self._start_kubelet(self.tools)
            self._start_kube_proxy(self.tools)
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        log.warning(
            "real node %s Ready in %.1fs at %s", self.name, self.startup_seconds, cfg.NODE_IP
        )

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()
        self.processes.clear()
        if self._owns_machine:
            cleanup_leftovers(self.workdir)
            self._owns_machine = False
        self._release_machine()

    def wait_ready(self, timeout: float | None = None) -> None:
        """Waits for the node's Ready condition; on timeout raises with the kubelet's last
        log lines."""
        from kubernetes import client, config

        api = config.new_client_from_config(config_file=str(self.kubeconfig))
        core: Any = client.CoreV1Api(api)

        def ready() -> bool:
            node = core.read_node(self.name)
            conditions = (node.status and node.status.conditions) or []
            return any(c.type == "Ready" and c.status == "True" for c in conditions)

        try:
            wait_for(
                ready,
                timeout or self.start_timeout,
                f"node {self.name} Ready",
                0.2,
                self.check_running,
            )
        except TimeoutError as exc:
            kubelet = self._process("kubelet")
            raise TimeoutError(f"{exc}; kubelet log tail:\n{kubelet.log_tail(20)}") from None
        finally:
            api.close()

    def import_image(self, archive: Path) -> None:
        """Loads a docker-archive or OCI-archive tar (buildah/podman save, docker save) into the
        node's runtime; pods use it by name with imagePullPolicy Never or IfNotPresent."""
        self.ctr("images", "import", str(archive))

    def ctr(self, *args: str) -> str:
        """`ctr` against the node's containerd, in the Kubernetes namespace."""
        result = _run(["ctr", "--address", str(self.socket), "--namespace", "k8s.io", *args])
        return result.stdout

    def check_running(self) -> None:
        for proc in self.processes:
            proc.check_running()

    def pids(self) -> dict[str, int]:
        return {p.name: p.pid for p in self.processes if p.pid is not None}

    def log_paths(self) -> dict[str, Path]:
        return {p.name: p.log_path for p in self.processes}

    # -- daemons -----------------------------------------------------------------------------

    def _start_containerd(self) -> None:
        base = self.workdir / "containerd"
        self.socket.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        cni_conf_dir = base / "cni"
        cni_conf_dir.mkdir(parents=True, exist_ok=True)
        conflist = cfg.cni_conflist(base / "ipam")
        (cni_conf_dir / "10-bullflow.conflist").write_text(json.dumps(conflist, indent=2))
        config = base / "config.toml"
        config.write_text(
            cfg.containerd_config(
                base / "root",
                base / "state",
                self.socket,
                short_dir(self.workdir) / "runc",
                cni_conf_dir,
                TESTBIN_IMAGE,
            )
        )
        proc = self._spawn("containerd", ["containerd", "--config", config, "--log-level", "warn"])
        wait_for(
            lambda: self.socket.exists() and self.ctr("version"),
            30,
            "containerd socket",
            interval=0.2,
            check=proc.check_running,
        )

    def _start_kubelet(self, tools: NodeTools) -> None:
        kdir = self.workdir / "kubelet"
        kdir.mkdir(parents=True, exist_ok=True)
        resolv = kdir / "resolv.conf"
        resolv.write_text("# no cluster DNS on the bullflow real node; use Service IPs or env\n")
        config = cfg.kubelet_config(
            ca_cert=self.ca_cert,
            runtime_socket=self.socket,
            port=free_port(),
            healthz_port=free_port(),
            pod_logs_dir=self.workdir / "pod-logs",
            resolv_conf=resolv,
        )
        (kdir / "config.yaml").write_text(yaml.safe_dump(config))
        self._spawn(
            "kubelet",
            [
                tools.kubelet,
                f"--config={kdir / 'config.yaml'}",
                f"--kubeconfig={self.kubeconfig}",
                f"--root-dir={short_dir(self.workdir) / 'kubelet'}",
                f"--cert-dir={kdir / 'pki'}",
                f"--hostname-override={self.name}",
                f"--node-ip={cfg.NODE_IP}",
                f"--node-labels={cfg.REAL_NODE_LABEL}=true",
                "--v=1",
            ],
        )

    def _start_kube_proxy(self, tools: NodeTools) -> None:
        config = self.workdir / "kube-proxy.yaml"
        config.write_text(
            yaml.safe_dump(cfg.kube_proxy_config(self.kubeconfig, free_port(), free_port()))
        )
        self._spawn("kube-proxy", [tools.kube_proxy, f"--config={config}", "--v=1"])

    def _spawn(self, name: str, argv: list[Any]) -> ManagedProcess:
        proc = ManagedProcess(
            name, argv, self.logs_dir / f"{name}.log", detached=self.detached, cwd=self.workdir
        )
        proc.start()
        self.processes.append(proc)
        return proc

    def _process(self, name: str) -> ManagedProcess:
        return next(p for p in self.processes if p.name == name)

    # -- one real node per machine -----------------------------------------------------------

    def _claim_machine(self) -> None:
        """Waits until no other live real node holds the machine, then records ours.

        The claim file names the owner's workdir, so a node whose test process died (SIGKILL)
        is cleaned up by the next one."""
        claim_path = cache_dir() / "real-node.claim"
        claim_path.parent.mkdir(parents=True, exist_ok=True)
        # Under pytest's 600 s timeout, so a session kept waiting fails with this message.
        deadline = time.monotonic() + CLAIM_WAIT_SECONDS
        next_note = 0.0
        while True:
            claim = open(claim_path, "a+")  # noqa: SIM115 - held until _release_machine
            fcntl.flock(claim, fcntl.LOCK_EX)
            claim.seek(0)
            try:
                owner = json.loads(claim.read() or "{}")
            except ValueError:
                owner = {}
            if not _claim_alive(owner):
                if owner.get("workdir"):
                    cleanup_leftovers(Path(owner["workdir"]))
                claim.seek(0)
                claim.truncate()
                claim.write(json.dumps({"pid": os.getpid(), "workdir": str(self.workdir)}))
                claim.flush()
                fcntl.flock(claim, fcntl.LOCK_UN)
                self._claim = claim
                self._owns_machine = True
                return
            fcntl.flock(claim, fcntl.LOCK_UN)
            claim.close()
            if time.monotonic() > deadline:
                raise NodeStartError(
                    f"real node busy: another one (pid {owner.get('pid')}, {owner.get('workdir')}) "
                    f"still runs after {CLAIM_WAIT_SECONDS}s; one real node per machine"
                )
            if time.monotonic() >= next_note:
                log.warning("waiting for the real node of pid %s to stop", owner.get("pid"))
                next_note = time.monotonic() + 30
            time.sleep(2)

    def _release_machine(self) -> None:
        if self._claim is None:
            return
        with contextlib.suppress(OSError):
            fcntl.flock(self._claim, fcntl.LOCK_EX)
            self._claim.seek(0)
            self._claim.truncate()
            self._claim.close()
        self._claim = None

    def claim_for_pid(self, pid: int) -> None:
        """Detached mode (`python -m tests.harness up --real-node`): the node outlives this
        process, so the claim names its containerd instead."""
        if self._claim is None:
            return
        fcntl.flock(self._claim, fcntl.LOCK_EX)
        self._claim.seek(0)
        self._claim.truncate()
        self._claim.write(json.dumps({"pid": pid, "workdir": str(self.workdir)}))
        self._claim.close()
        self._claim = None


def release_stale_claim(workdir: Path) -> None:
    """Empties the machine's claim if it names the node in `workdir` (after `down`)."""
    claim_path = cache_dir() / "real-node.claim"
    with contextlib.suppress(OSError), open(claim_path, "a+") as claim:
        fcntl.flock(claim, fcntl.LOCK_EX)
        claim.seek(0)
        with contextlib.suppress(ValueError):
            if json.loads(claim.read() or "{}").get("workdir") == str(Path(workdir).resolve()):
                claim.seek(0)
                claim.truncate()


def _claim_alive(owner: dict[str, Any]) -> bool:
    pid = owner.get("pid")
    return isinstance(pid, int) and pid != os.getpid() and pid_alive(pid)


# -- preflight -------------------------------------------------------------------------------


def check_requirements() -> None:
    """Raises NodeStartError naming, on one line, everything the node lacks."""
    executables = {name: shutil.which(name) for name in NEEDED_EXECUTABLES}
    plugins = {name: Path("/usr/lib/cni", name).is_file() for name in NEEDED_CNI_PLUGINS}
    kernel = {
        "overlay filesystem": "overlay" in Path("/proc/filesystems").read_text(),
        "cgroup filesystem at /sys/fs/cgroup": Path("/sys/fs/cgroup").is_dir(),
        "bridge links (ip link add type bridge)": _can_create_link("type", "bridge"),
        "veth pairs (ip link add type veth)": _can_create_link(
            "type", "veth", "peer", "name", f"bfpeer{os.getpid()}"
        ),
    }
    if executables["iptables"]:
        kernel["iptables (iptables -S)"] = (
            subprocess.run(["iptables", "-S", "FORWARD"], capture_output=True).returncode == 0
        )
    missing = cfg.missing_requirements(executables, plugins, kernel)
    if missing:
        raise NodeStartError("real node cannot start, missing: " + "; ".join(missing))


def _can_create_link(*kind: str) -> bool:
    if not shutil.which("ip"):
        return True  # reported as a missing executable instead
    probe = f"bfprobe{os.getpid()}"  # two sessions may probe at once; names have <= 15 bytes
    subprocess.run(["ip", "link", "del", probe], capture_output=True)
    ok = subprocess.run(["ip", "link", "add", probe, *kind], capture_output=True).returncode == 0
    subprocess.run(["ip", "link", "del", probe], capture_output=True)
    return ok


# -- cleanup: also of a node whose test process was killed ------------------------------------


def cleanup_leftovers(workdir: Path) -> None:
    """Removes everything a node in `workdir` may have left: its container tasks and shims,
    kube-proxy's chains, mounts under workdir, the bridge, our FORWARD rule, the kubelet's
    /var/log/containers links. Idempotent; the daemons must be stopped first."""
    workdir = Path(workdir).resolve()
    socket = short_dir(workdir) / "containerd.sock"
    _kill_and_wait(_shim_pids(socket), "shim")
    _kill_container_processes(workdir)
    for mount in _mounts_under(workdir) + _mounts_under(short_dir(workdir)):
        subprocess.run(["umount", "-l", mount], capture_output=True)
    _remove_container_cgroups(workdir / "containerd" / "state")
    tools = _node_tools_if_built()
    if tools is not None:
        subprocess.run([str(tools.kube_proxy), "--cleanup"], capture_output=True)
    _remove_kubelet_chains()
    while (
        subprocess.run(["iptables", "-D", *cfg.FORWARD_DROP_RULE], capture_output=True).returncode
        == 0
    ):
        pass
    subprocess.run(["ip", "link", "del", cfg.BRIDGE], capture_output=True)
    if _mounts_under(short_dir(workdir)):  # never delete through a mount into someone's files
        log.error("real node: mounts left under %s; not removing it", short_dir(workdir))
    else:
        shutil.rmtree(short_dir(workdir), ignore_errors=True)
    logs = Path("/var/log/containers")
    if logs.is_dir():
        for link in logs.iterdir():
            with contextlib.suppress(OSError):
                if link.is_symlink() and str(os.readlink(link)).startswith(str(workdir)):
                    link.unlink()


# What the kubelet itself adds to iptables (kube-proxy --cleanup removes kube-proxy's).
KUBELET_CHAINS = ("KUBE-FIREWALL", "KUBE-KUBELET-CANARY", "KUBE-IPTABLES-HINT")


def _remove_kubelet_chains() -> None:
    for tool in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle"):
            listing = subprocess.run([tool, "-t", table, "-S"], capture_output=True, text=True)
            for rule in listing.stdout.splitlines():
                words = rule.split()
                if words[:1] == ["-A"] and any(f"-j {c}" in rule for c in KUBELET_CHAINS):
                    subprocess.run([tool, "-t", table, "-D", *words[1:]], capture_output=True)
            for chain in KUBELET_CHAINS:
                subprocess.run([tool, "-t", table, "-F", chain], capture_output=True)
                subprocess.run([tool, "-t", table, "-X", chain], capture_output=True)


def short_dir(workdir: Path) -> Path:
    """What of the node in workdir lives under a short path, one per workdir: containerd's
    socket, runc's state and the kubelet's root (both make unix sockets, whose paths have at
    most 107 bytes; pytest's tmp paths are longer)."""
    digest = hashlib.sha256(str(Path(workdir).resolve()).encode()).hexdigest()[:10]
    return Path("/var/lib") / f"bullflow-node-{digest}"


def _shim_pids(socket: Path) -> list[int]:
    """The containerd-shim-runc-v2 processes serving this containerd (they outlive it)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            argv = pid_cmdline(int(entry.name))
            if argv and "containerd-shim" in argv[0] and str(socket) in argv:
                pids.append(int(entry.name))
    return pids


def container_pids(workdir: Path) -> set[int]:
    """The processes of the containers of the node in workdir, found through their cgroups
    (/k8s.io/<container id> in every hierarchy): a killed shim leaves them running."""
    pids: set[int] = set()
    for container_id in _container_ids(Path(workdir) / "containerd" / "state"):
        for procs in Path("/sys/fs/cgroup").glob(f"*/k8s.io/{container_id}/cgroup.procs"):
            with contextlib.suppress(OSError, ValueError):
                pids.update(int(line) for line in procs.read_text().split())
    return pids


def _kill_container_processes(workdir: Path) -> None:
    _kill_and_wait(container_pids(workdir), "container process")


def _kill_and_wait(pids: Iterable[int], what: str) -> None:
    pids = list(pids)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for pid in pids:
        wait_for(functools.partial(_gone, pid), 10, f"{what} {pid} gone")


def _gone(pid: int) -> bool:
    return not pid_alive(pid)


def _container_ids(state: Path) -> list[str]:
    tasks = state / "io.containerd.runtime.v2.task" / "k8s.io"
    return [entry.name for entry in tasks.iterdir()] if tasks.is_dir() else []


def _remove_container_cgroups(state: Path) -> None:
    """runc's cgroups (/k8s.io/<container id> in every hierarchy) of containers whose shim was
    killed: an empty cgroup is removed with rmdir."""
    for container_id in _container_ids(state):
        for cgroup in Path("/sys/fs/cgroup").glob(f"*/k8s.io/{container_id}"):
            with contextlib.suppress(OSError):
                cgroup.rmdir()
    for parent in Path("/sys/fs/cgroup").glob("*/k8s.io"):
        with contextlib.suppress(OSError):  # not empty: another runtime's containers are in it
            parent.rmdir()


def _mounts_under(workdir: Path) -> list[str]:
    """Mount points under workdir, deepest first."""
    prefix = str(workdir) + "/"
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point.startswith(prefix):
            points.append(point)
    return sorted(set(points), key=lambda p: p.count("/"), reverse=True)


def _node_tools_if_built() -> NodeTools | None:
    with contextlib.suppress(FileNotFoundError):
        return ensure_node_tools(build=False)
    return None


# -- the testbin image -----------------------------------------------------------------------


def testbin_archive() -> Path:
    """The testbin image as a docker archive, built once per source version into the cache."""
    digest = hashlib.sha256(TESTBIN_SOURCE.read_bytes()).hexdigest()[:12]
    out = cache_dir() / f"node-testbin-{digest}" / "image.tar"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    binary = out.parent / "testbin"
    env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-mod=mod")
    _run(
        ["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", str(binary), str(TESTBIN_SOURCE)],
        env=env,
        cwd=out.parent,
    )
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(cfg.docker_archive(binary.read_bytes(), TESTBIN_IMAGE, TESTBIN_ENTRYPOINT))
    tmp.replace(out)
    return out


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if result.returncode:
        raise NodeStartError(
            f"real node cannot start: `ip {' '.join(args)}` failed: {result.stderr.strip()}"
        )


def _run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    if result.returncode:
        raise RuntimeError(
            f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}"
        )
    return result
