"""Locates the control plane's binaries built by hack/build-tools.sh (building them if missing).

The version defaults and environment variables mirror hack/build-tools.sh exactly:
BULLFLOW_CACHE, K8S_VERSION, ETCD_VERSION, KWOK_VERSION, HELM_VERSION, PROMTOOL_VERSION.

promtool is located apart (ensure_promtool): only the chart's alert and dashboard checks need
it, so a missing promtool never holds up the tests that start a cluster. So are the real node's
kubelet and kube-proxy (ensure_node_tools), needed only with a real node (tests/harness/node.py).
"""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "hack" / "build-tools.sh"

DEFAULT_K8S_VERSION = "v1.34.4"
DEFAULT_ETCD_VERSION = "v3.6.16"
DEFAULT_KWOK_VERSION = "v0.8.0"
DEFAULT_HELM_VERSION = "v3.19.0"
DEFAULT_PROMTOOL_VERSION = "v0.316.0"


def cache_dir() -> Path:
    return Path(os.environ.get("BULLFLOW_CACHE") or Path.home() / ".cache" / "bullflow")


@dataclass(frozen=True)
class Tools:
    cache: Path
    k8s_version: str
    etcd_version: str
    kwok_version: str
    helm_version: str
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kubectl: Path
    kwok: Path
    helm: Path

    def all_paths(self) -> list[Path]:
        return [
            self.etcd,
            self.kube_apiserver,
            self.kube_controller_manager,
            self.kube_scheduler,
            self.kubectl,
            self.kwok,
            self.helm,
        ]

    def missing(self) -> list[Path]:
        return [p for p in self.all_paths() if not (p.is_file() and os.access(p, os.X_OK))]


def expected_tools() -> Tools:
    """The binary paths for the configured versions, whether or not they exist yet."""
    cache = cache_dir()
    k8s = os.environ.get("K8S_VERSION") or DEFAULT_K8S_VERSION
    etcd = os.environ.get("ETCD_VERSION") or DEFAULT_ETCD_VERSION
    kwok = os.environ.get("KWOK_VERSION") or DEFAULT_KWOK_VERSION
    helm = os.environ.get("HELM_VERSION") or DEFAULT_HELM_VERSION
    kdir = cache / f"kubernetes-{k8s}"
    return Tools(
        cache=cache,
        k8s_version=k8s,
        etcd_version=etcd,
        kwok_version=kwok,
        helm_version=helm,
        etcd=cache / f"etcd-{etcd}" / "etcd",
        kube_apiserver=kdir / "kube-apiserver",
        kube_controller_manager=kdir / "kube-controller-manager",
        kube_scheduler=kdir / "kube-scheduler",
        kubectl=kdir / "kubectl",
        kwok=cache / f"kwok-{kwok}" / "kwok",
        helm=cache / f"helm-{helm}" / "helm",
    )


def expected_promtool() -> Path:
    version = os.environ.get("PROMTOOL_VERSION") or DEFAULT_PROMTOOL_VERSION
    return cache_dir() / f"promtool-{version}" / "promtool"


def ensure_promtool(build: bool = True) -> Path:
    """promtool's path; builds it (hack/build-tools.sh promtool) when missing."""
    path = expected_promtool()
    _ensure_built([path], "promtool", build)
    return path


@dataclass(frozen=True)
class NodeTools:
    kubelet: Path
    kube_proxy: Path


def expected_node_tools() -> NodeTools:
    k8s = os.environ.get("K8S_VERSION") or DEFAULT_K8S_VERSION
    ndir = cache_dir() / f"kubernetes-node-{k8s}"
    return NodeTools(kubelet=ndir / "kubelet", kube_proxy=ndir / "kube-proxy")


def ensure_node_tools(build: bool = True) -> NodeTools:
    """kubelet and kube-proxy at the control plane's version; builds them (hack/build-tools.sh
    node) when missing."""
    tools = expected_node_tools()
    _ensure_built([tools.kubelet, tools.kube_proxy], "node", build)
    return tools


def _ensure_built(paths: list[Path], target: str, build: bool) -> None:
    """Runs `hack/build-tools.sh <target>` under the cache's build lock when a path is missing."""

    def missing() -> list[Path]:
        return [p for p in paths if not (p.is_file() and os.access(p, os.X_OK))]

    if not missing():
        return
    if not build:
        raise FileNotFoundError(f"missing {[str(p) for p in missing()]}")
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".build-tools.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if missing():
            log.warning("building %s with %s", [str(p) for p in missing()], BUILD_SCRIPT)
            env = dict(os.environ, BULLFLOW_CACHE=str(cache))
            subprocess.run(["bash", str(BUILD_SCRIPT), target], check=True, env=env, cwd=REPO_ROOT)
    if missing():
        raise FileNotFoundError(f"build-tools.sh finished but {missing()} are missing")


def ensure_tools(build: bool = True) -> Tools:
    """Returns the tool paths; runs hack/build-tools.sh when any binary is missing.

    A file lock in the cache serialises concurrent builds started by this harness (several
    pytest sessions or clones). It does not know about a build started by hand; the script
    itself is idempotent, so the worst case is duplicated work.
    """
    tools = expected_tools()
    if not tools.missing():
        return tools
    if not build:
        raise FileNotFoundError(f"missing tool binaries: {[str(p) for p in tools.missing()]}")
    tools.cache.mkdir(parents=True, exist_ok=True)
    lock_path = tools.cache / ".build-tools.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if tools.missing():
            log.warning("building missing tools %s with %s", tools.missing(), BUILD_SCRIPT)
            env = dict(os.environ, BULLFLOW_CACHE=str(tools.cache))
            subprocess.run(
                ["bash", str(BUILD_SCRIPT), "cluster"], check=True, env=env, cwd=REPO_ROOT
            )
    if tools.missing():
        raise FileNotFoundError(
            f"build-tools.sh finished but binaries are missing: {tools.missing()}"
        )
    return tools
