"""A real Kubernetes control plane as local processes: etcd, kube-apiserver,
kube-controller-manager, kube-scheduler and kwok (fake kubelets), all on 127.0.0.1.

Usage::

    with LocalCluster(tmp_path) as cluster:
        api = cluster.api_client()   # kubernetes.client.ApiClient, admin
        ...

Every daemon logs to ``<workdir>/logs/<name>.log``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import shutil
import ssl
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from tests.harness.certs import PKI, generate_pki
from tests.harness.node import RealNode
from tests.harness.node_config import NODE_IP
from tests.harness.process import ManagedProcess, free_port, port_open, wait_for
from tests.harness.tools import Tools, ensure_tools

log = logging.getLogger(__name__)

KWOK_STAGES = Path(__file__).with_name("kwok-stages.yaml")
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"
DEFAULT_NODE_NAMES = ("kwok-node-0", "kwok-node-1")


class LocalCluster:
    def __init__(
        self,
        workdir: Path,
        *,
        tools: Tools | None = None,
        detached: bool = False,
        node_names: tuple[str, ...] = DEFAULT_NODE_NAMES,
        start_timeout: float = 90.0,
        real_node: bool = False,
    ) -> None:
        """detached=True: daemons get their own session and survive this Python process
        (used by `python -m tests.harness up`); otherwise they die with it (PDEATHSIG).

        real_node=True: also a real kubelet + containerd node (tests/harness/node.py), reached
        as `cluster.real_node`; the API server then also listens on the node's address, which
        is what the `kubernetes` Service points pods at."""
        self.workdir = Path(workdir).resolve()
        self.tools = tools
        self.detached = detached
        self.node_names = node_names
        self.start_timeout = start_timeout
        self.processes: list[ManagedProcess] = []
        self.pki: PKI | None = None
        self.kubeconfig = self.workdir / "admin.kubeconfig"
        self.logs_dir = self.workdir / "logs"
        self.etcd_port = 0
        self.apiserver_port = 0
        self.server = ""
        self.version = ""
        self.startup_seconds: float | None = None
        self.timings: dict[str, float] = {}
        self.with_real_node = real_node
        self.real_node: RealNode | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> LocalCluster:
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
        t0 = time.monotonic()
        if self.tools is None:
            self.tools = ensure_tools()
        tools = self.tools
        self.version = tools.k8s_version
        try:
            self._start(tools, t0)
        except BaseException:
            log.error("cluster start failed; logs in %s", self.logs_dir)
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        log.warning(
            "local cluster %s up in %.1fs (%s) at %s; kubeconfig %s",
            self.version,
            self.startup_seconds,
            ", ".join(f"{k} {v:.1f}s" for k, v in self.timings.items()),
            self.server,
            self.kubeconfig,
        )

    def _mark(self, what: str, t0: float) -> None:
        self.timings[what] = time.monotonic() - t0

    def _start(self, tools: Tools, t0: float) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for stale in ("etcd-data", "logs", "pki"):
            shutil.rmtree(self.workdir / stale, ignore_errors=True)
        self.logs_dir.mkdir(parents=True)
        self.pki = pki = generate_pki(
            self.workdir / "pki", extra_sans=(NODE_IP,) if self.with_real_node else ()
        )
        if self.with_real_node:
            self.real_node = RealNode(
                self.workdir / "node",
                kubeconfig=self.kubeconfig,
                ca_cert=pki.ca_cert,
                detached=self.detached,
            )
            self.real_node.prepare_network()
        self.etcd_port = free_port()
        etcd_peer_port = free_port()
        self.apiserver_port = free_port()
        self.server = f"https://127.0.0.1:{self.apiserver_port}"
        self._write_kubeconfig(pki)
        self._mark("pki", t0)

        etcd_url = f"http://127.0.0.1:{self.etcd_port}"
        peer_url = f"http://127.0.0.1:{etcd_peer_port}"
        etcd = self._spawn(
            "etcd",
            [
                tools.etcd,
                "--name=bullflow",
                f"--data-dir={self.workdir / 'etcd-data'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=bullflow={peer_url}",
                "--initial-cluster-state=new",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )
        wait_for(
            lambda: _http_get(f"{etcd_url}/health", None).get("health") == "true",
            30,
            "etcd /health",
            check=etcd.check_running,
        )
        self._mark("etcd", t0)

        apiserver = self._spawn(
            "kube-apiserver",
            [
                tools.kube_apiserver,
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.apiserver_port}",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
                f"--tls-cert-file={pki.apiserver_cert}",
                f"--tls-private-key-file={pki.apiserver_key}",
                f"--client-ca-file={pki.ca_cert}",
                # No aggregated API servers here; this only keeps components from logging
                # "missing requestheader-client-ca-file" errors forever.
                f"--requestheader-client-ca-file={pki.ca_cert}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--authorization-mode=Node,RBAC",
                "--allow-privileged=true",
                # /debug/pprof for `make bench --profile` runs (BULLFLOW_APISERVER_PROFILING=1).
                f"--profiling={os.environ.get('BULLFLOW_APISERVER_PROFILING') == '1'}".lower(),
                "--v=1",
                *self._real_node_apiserver_flags(pki),
            ],
        )
        ctx = self.ssl_context()
        wait_for(
            lambda: _http_get(f"{self.server}/readyz", ctx, raw=True) == "ok",
            self.start_timeout,
            "kube-apiserver /readyz",
            interval=0.2,
            check=apiserver.check_running,
        )
        self._mark("apiserver", t0)

        kc = str(self.kubeconfig)
        auth = [f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}"]
        self._spawn(
            "kube-controller-manager",
            [
                tools.kube_controller_manager,
                f"--kubeconfig={kc}",
                *auth,
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                f"--cert-dir={self.workdir / 'kcm-certs'}",
                "--leader-elect=false",
                "--controllers=*",
                f"--service-account-private-key-file={pki.sa_key}",
                f"--root-ca-file={pki.ca_cert}",
                f"--cluster-signing-cert-file={pki.ca_cert}",
                f"--cluster-signing-key-file={pki.ca_key}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--v=1",
            ],
        )
        self._spawn(
            "kube-scheduler",
            [
                tools.kube_scheduler,
                f"--kubeconfig={kc}",
                *auth,
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                f"--cert-dir={self.workdir / 'scheduler-certs'}",
                "--leader-elect=false",
                "--v=1",
            ],
        )
        self._spawn(
            "kwok",
            [
                tools.kwok,
                f"--kubeconfig={kc}",
                f"--config={KWOK_STAGES}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
                "--node-ip=127.0.0.1",
                "--cidr=10.244.0.1/16",
                "--node-lease-duration-seconds=40",
            ],
        )
        self._create_nodes()
        self._mark("components", t0)

        api = self.api_client()
        try:
            from kubernetes import client

            core: Any = client.CoreV1Api(api)
            wait_for(
                lambda: _nodes_ready(core, self.node_names),
                self.start_timeout,
                "kwok nodes Ready",
                interval=0.2,
                check=self.check_running,
            )
            self._mark("nodes", t0)
            wait_for(
                lambda: core.read_namespaced_service_account("default", "default"),
                self.start_timeout,
                "ServiceAccount default/default (kube-controller-manager)",
                interval=0.2,
                check=self.check_running,
            )
            self._mark("default-sa", t0)
        finally:
            api.close()
        if self.real_node is not None:
            self.real_node.start()
            self._mark("real-node", t0)

    def _real_node_apiserver_flags(self, pki: PKI) -> list[str]:
        """Pods reach the API server at NODE_IP (the `kubernetes` Service's endpoint); the API
        server reaches the kubelet at the node's InternalIP, with a client certificate, for
        logs and exec. Later flags override the loopback ones above."""
        if not self.with_real_node:
            return []
        return [
            "--bind-address=0.0.0.0",
            f"--advertise-address={NODE_IP}",
            "--kubelet-preferred-address-types=InternalIP",
            f"--kubelet-client-certificate={pki.admin_cert}",
            f"--kubelet-client-key={pki.admin_key}",
        ]

    def stop(self) -> None:
        if self.real_node is not None:
            self.real_node.stop()
        for proc in reversed(self.processes):
            proc.stop()
        self.processes.clear()

    # -- faults: one daemon down and back ----------------------------------------------------

    def component(self, name: str) -> ManagedProcess:
        """The daemon called `name` ("etcd", "kube-apiserver", "kube-controller-manager"...)."""
        for proc in self.processes:
            if proc.name == name:
                return proc
        raise KeyError(f"no component {name!r}; have {[p.name for p in self.processes]}")

    def stop_component(self, name: str, timeout: float | None = None) -> None:
        """Stops one daemon (SIGTERM, SIGKILL after `timeout`, default 10 s; etcd and the API
        server drain their clients for several seconds) and waits until its port is closed;
        the others keep running and retry against it."""
        proc = self.component(name)
        default = proc.stop_timeout
        proc.stop_timeout = default if timeout is None else timeout
        try:
            proc.stop()
        finally:
            proc.stop_timeout = default
        port = {"etcd": self.etcd_port, "kube-apiserver": self.apiserver_port}.get(name)
        if port:
            wait_for(lambda: not port_open(port), 30, f"{name} port {port} closed")

    def start_component(self, name: str, timeout: float | None = None) -> None:
        """Starts a stopped daemon again with its command line: same ports, same certificates,
        same data dir (etcd keeps its data). Returns once it is ready, and the API server with
        it (after etcd, the API server answers /readyz only when it has reconnected)."""
        proc = self.component(name)
        if not proc.running():
            proc.start()
        self.wait_ready(name, timeout)

    def restart_component(
        self, name: str, down_seconds: float = 0.0, stop_timeout: float | None = None
    ) -> None:
        self.stop_component(name, stop_timeout)
        if down_seconds:
            time.sleep(down_seconds)
        self.start_component(name)

    @contextlib.contextmanager
    def component_down(self, name: str, stop_timeout: float | None = None) -> Iterator[None]:
        """`with cluster.component_down("kube-apiserver"): ...`: down inside, ready after."""
        self.stop_component(name, stop_timeout)
        try:
            yield
        finally:
            self.start_component(name)

    def wait_ready(self, name: str, timeout: float | None = None) -> None:
        timeout = self.start_timeout if timeout is None else timeout
        proc = self.component(name)
        if name == "etcd":
            url = f"http://127.0.0.1:{self.etcd_port}/health"
            wait_for(
                lambda: _http_get(url, None).get("health") == "true",
                timeout,
                "etcd /health",
                interval=0.1,
                check=proc.check_running,
            )
        if name in ("etcd", "kube-apiserver"):
            ctx = self.ssl_context()
            wait_for(
                lambda: _http_get(f"{self.server}/readyz", ctx, raw=True) == "ok",
                timeout,
                "kube-apiserver /readyz",
                interval=0.1,
                check=self.component("kube-apiserver").check_running,
            )

    # -- helpers -----------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[Any]) -> ManagedProcess:
        proc = ManagedProcess(
            name,
            argv,
            self.logs_dir / f"{name}.log",
            detached=self.detached,
            cwd=self.workdir,
        )
        proc.start()
        self.processes.append(proc)
        return proc

    def check_running(self) -> None:
        """Raises if any daemon has exited."""
        for proc in self.processes:
            proc.check_running()
        if self.real_node is not None:
            self.real_node.check_running()

    def pids(self) -> dict[str, int]:
        node = self.real_node.pids() if self.real_node else {}
        return {**{p.name: p.pid for p in self.processes if p.pid is not None}, **node}

    def log_paths(self) -> dict[str, Path]:
        node = self.real_node.log_paths() if self.real_node else {}
        return {**{p.name: p.log_path for p in self.processes}, **node}

    def ssl_context(self) -> ssl.SSLContext:
        assert self.pki is not None
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        ctx.load_cert_chain(str(self.pki.admin_cert), str(self.pki.admin_key))
        return ctx

    def api_client(self) -> Any:
        """A new admin `kubernetes.client.ApiClient` (close it when done)."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def _write_kubeconfig(self, pki: PKI) -> None:
        def b64(p: Path) -> str:
            return base64.b64encode(p.read_bytes()).decode()

        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "bullflow-local",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority-data": b64(pki.ca_cert),
                    },
                }
            ],
            "users": [
                {
                    "name": "bullflow-admin",
                    "user": {
                        "client-certificate-data": b64(pki.admin_cert),
                        "client-key-data": b64(pki.admin_key),
                    },
                }
            ],
            "contexts": [
                {
                    "name": "bullflow-local",
                    "context": {"cluster": "bullflow-local", "user": "bullflow-admin"},
                }
            ],
            "current-context": "bullflow-local",
        }
        self.kubeconfig.write_text(yaml.safe_dump(doc, sort_keys=False))
        self.kubeconfig.chmod(0o600)

    def _create_nodes(self) -> None:
        from kubernetes import client

        api = self.api_client()
        try:
            core: Any = client.CoreV1Api(api)
            resources = {"cpu": "32", "memory": "256Gi", "pods": "110", "ephemeral-storage": "1Ti"}
            for name in self.node_names:
                body: dict[str, Any] = {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": name,
                        "annotations": {
                            KWOK_NODE_ANNOTATION: "fake",
                            "node.alpha.kubernetes.io/ttl": "0",
                        },
                        "labels": {
                            "type": "kwok",
                            "kubernetes.io/hostname": name,
                            "kubernetes.io/os": "linux",
                            "kubernetes.io/arch": "amd64",
                            "kubernetes.io/role": "agent",
                            "node-role.kubernetes.io/agent": "",
                        },
                    },
                    "status": {"allocatable": resources, "capacity": resources},
                }
                core.create_node(body)
                node = core.read_node(name)
                if not (node.status and node.status.allocatable):
                    core.patch_node_status(name, {"status": body["status"]})
        finally:
            api.close()

    def state(self) -> dict[str, Any]:
        return {
            "workdir": str(self.workdir),
            "kubeconfig": str(self.kubeconfig),
            "server": self.server,
            "version": self.version,
            "pids": self.pids(),
            "logs": {k: str(v) for k, v in self.log_paths().items()},
            "startup_seconds": self.startup_seconds,
            "real_node_workdir": str(self.real_node.workdir) if self.real_node else None,
        }


def _nodes_ready(core: Any, names: tuple[str, ...]) -> bool:
    for name in names:
        node = core.read_node(name)
        conditions = (node.status and node.status.conditions) or []
        if not any(c.type == "Ready" and c.status == "True" for c in conditions):
            return False
    return True


def _http_get(url: str, ctx: ssl.SSLContext | None, raw: bool = False) -> Any:
    with urllib.request.urlopen(url, timeout=2, context=ctx) as resp:
        body = resp.read().decode()
    return body if raw else json.loads(body)


def _main() -> None:  # pragma: no cover - manual smoke run
    import tempfile

    logging.basicConfig(level=logging.INFO)
    with tempfile.TemporaryDirectory() as tmp, LocalCluster(Path(tmp)) as cluster:
        print(json.dumps(cluster.state(), indent=2))
        print("KUBECONFIG", cluster.kubeconfig, os.getpid())


if __name__ == "__main__":  # pragma: no cover
    _main()
