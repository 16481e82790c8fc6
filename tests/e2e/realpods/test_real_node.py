"""The real node: real containers (containerd + runc), pod network (CNI bridge), kubelet
logs/exec through the API server, SIGTERM on delete, ClusterIP Services (kube-proxy), and a
stop that leaves nothing behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.harness import node_config as cfg
from tests.harness.cluster import LocalCluster
from tests.harness.fixtures import Kubectl
from tests.harness.node import (
    TESTBIN_IMAGE,
    NodeStartError,
    RealNode,
    check_requirements,
    container_pids,
    short_dir,
)
from tests.harness.process import pid_alive, wait_for

WEB_PORT = 8080


def pod_of_testbin(name: str, command: list[str], **spec: Any) -> dict[str, Any]:
    """A pod of the testbin image on the real node (placement from real_node_placement)."""
    container = {
        "name": "main",
        "image": TESTBIN_IMAGE,
        "imagePullPolicy": "Never",
        "command": ["/testbin", *command],
    }
    container.update(spec.pop("container", {}))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            **cfg.real_node_placement(),
            "terminationGracePeriodSeconds": 30,
            "containers": [container],
            **spec,
        },
    }


def apply(kubectl: Kubectl, namespace: str, *docs: dict[str, Any]) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input="\n---\n".join(json.dumps(d) for d in docs))


def running_pod(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any]:
    kubectl("wait", "-n", namespace, "--for=condition=Ready", f"pod/{name}", "--timeout=90s")
    pod: dict[str, Any] = json.loads(
        kubectl("get", "-n", namespace, "pod", name, "-o", "json").stdout
    )
    return pod


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return str(resp.read().decode())


def test_node_ready_with_its_own_address_label_and_taint(
    kube_client: Any, real_node: RealNode
) -> None:
    from kubernetes import client

    core: Any = client.CoreV1Api(kube_client)
    node = core.read_node(cfg.NODE_NAME)
    assert any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)
    addresses = {a.type: a.address for a in node.status.addresses}
    assert addresses["InternalIP"] == cfg.NODE_IP
    assert node.metadata.labels[cfg.REAL_NODE_LABEL] == "true"
    assert [(t.key, t.value, t.effect) for t in node.spec.taints] == [
        (cfg.REAL_NODE_LABEL, "true", "NoSchedule")
    ]
    assert node.status.node_info.container_runtime_version.startswith("containerd://")
    # Pod traffic is never forwarded off the bridge, so nothing leaves the machine.
    rule = subprocess.run(["iptables", "-C", *cfg.FORWARD_DROP_RULE], capture_output=True)
    assert rule.returncode == 0, rule.stderr


def test_pod_runs_with_logs_exec_and_gets_sigterm_on_delete(
    kubectl: Kubectl, namespace: str, real_node: RealNode, tmp_path: Path
) -> None:
    signals = tmp_path / "signals"
    signals.mkdir()
    pod = pod_of_testbin(
        "web",
        ["serve", str(WEB_PORT), "/signals/received"],
        container={"volumeMounts": [{"name": "signals", "mountPath": "/signals"}]},
        volumes=[{"name": "signals", "hostPath": {"path": str(signals), "type": "Directory"}}],
    )
    apply(kubectl, namespace, pod)
    status = running_pod(kubectl, namespace, "web")
    assert status["spec"]["nodeName"] == cfg.NODE_NAME
    assert status["status"]["containerStatuses"][0]["containerID"].startswith("containerd://")

    logs = kubectl("logs", "-n", namespace, "web").stdout
    assert f"serving on :{WEB_PORT}" in logs
    exec_out = kubectl("exec", "-n", namespace, "web", "--", "/testbin", "echo", "from", "exec")
    assert exec_out.stdout.strip() == "from exec"

    kubectl("delete", "-n", namespace, "pod", "web", "--wait=true", timeout=120)
    # Written by the container's own SIGTERM handler, before the kubelet's grace period ended.
    assert (signals / "received").read_text().split() == ["SIGTERM", "web"]


def test_pod_network_and_cluster_ip_service(
    kubectl: Kubectl, namespace: str, real_node: RealNode
) -> None:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": WEB_PORT}]},
    }
    apply(kubectl, namespace, pod_of_testbin("web", ["serve", str(WEB_PORT)]), service)
    apply(kubectl, namespace, pod_of_testbin("client", []))
    web_ip = running_pod(kubectl, namespace, "web")["status"]["podIP"]
    running_pod(kubectl, namespace, "client")
    svc = json.loads(kubectl("get", "-n", namespace, "service", "web", "-o", "json").stdout)
    cluster_ip = svc["spec"]["clusterIP"]

    def get_from_client(url: str) -> str:
        return kubectl("exec", "-n", namespace, "client", "--", "/testbin", "get", url).stdout

    assert http_get(f"http://{web_ip}:{WEB_PORT}/") == "hello from web\n"  # host -> pod
    assert get_from_client(f"http://{web_ip}:{WEB_PORT}/") == "hello from web\n"  # pod -> pod
    # The Service's iptables rules appear once kube-proxy has seen its endpoints.
    wait_for(lambda: get_from_client(f"http://{cluster_ip}/"), 60, "Service from a pod", 1)
    assert get_from_client(f"http://{cluster_ip}/") == "hello from web\n"
    assert http_get(f"http://{cluster_ip}/") == "hello from web\n"  # host -> Service


def test_pods_without_the_toleration_stay_on_kwok(
    kubectl: Kubectl, namespace: str, real_node: RealNode
) -> None:
    pod = pod_of_testbin("plain", [])
    del pod["spec"]["nodeSelector"], pod["spec"]["tolerations"]
    apply(kubectl, namespace, pod)
    kubectl("wait", "-n", namespace, "--for=condition=Ready", "pod/plain", "--timeout=90s")
    node = kubectl("get", "-n", namespace, "pod", "plain", "-o", "jsonpath={.spec.nodeName}")
    assert node.stdout.startswith("kwok-node-")


def test_missing_requirement_fails_fast_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(NodeStartError) as info:
        check_requirements()
    message = str(info.value)
    assert "\n" not in message
    assert "containerd (make apt-deps)" in message and "runc (make apt-deps)" in message


def test_cli_up_with_real_node_then_down_leaves_nothing_behind(
    real_node: RealNode, tmp_path: Path
) -> None:
    """`python -m tests.harness up --real-node` / `down` (what `make cluster-up REAL_NODE=1`
    runs): the node's daemons outlive `up`, and `down` removes them and what they made."""
    real_node.stop()  # one real node per machine: the session's steps aside meanwhile
    env = {**os.environ, "BULLFLOW_RUN_DIR": str(tmp_path / "run")}
    harness = [sys.executable, "-m", "tests.harness"]
    node_pids: dict[str, int] = {}
    try:
        try:
            up = _run([*harness, "up", "--real-node"], env)
            assert up.returncode == 0, up.stderr
            state = json.loads((tmp_path / "run" / "state.json").read_text())
            node_pids = {
                name: state["pids"][name] for name in ("containerd", "kubelet", "kube-proxy")
            }
            assert all(pid_alive(pid) for pid in node_pids.values())
            status = _run([*harness, "status"], env)
            assert status.returncode == 0 and "kubelet" in status.stdout
        finally:
            down = _run([*harness, "down"], env)
        assert down.returncode == 0, down.stderr
        assert not [name for name, pid in node_pids.items() if pid_alive(pid)]
        assert f" {state['real_node_workdir']}/" not in Path("/proc/self/mountinfo").read_text()
        assert subprocess.run(["ip", "link", "show", cfg.BRIDGE], capture_output=True).returncode
    finally:
        real_node.start()


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)


def test_stop_leaves_nothing_behind_and_the_node_starts_again(
    kubectl: Kubectl, namespace: str, local_cluster: LocalCluster, real_node: RealNode
) -> None:
    apply(kubectl, namespace, pod_of_testbin("web", ["serve", str(WEB_PORT)]))
    running_pod(kubectl, namespace, "web")
    pids = real_node.pids()
    shims = _processes_mentioning(str(real_node.socket))
    assert shims, "a running pod has a containerd shim"
    workloads = container_pids(real_node.workdir)
    assert len(workloads) >= 2, "the pod's sandbox (pause) and its container"

    real_node.stop()

    assert not [name for name, pid in pids.items() if pid_alive(pid)]
    assert not [pid for pid in shims if pid_alive(pid)]
    assert not [pid for pid in workloads if pid_alive(pid)]
    assert not list(Path("/sys/fs/cgroup").glob("*/k8s.io/*/cgroup.procs"))
    mounts = Path("/proc/self/mountinfo").read_text()
    assert f" {real_node.workdir}/" not in mounts
    assert not short_dir(real_node.workdir).exists()  # sockets, runc state, kubelet root
    assert subprocess.run(["ip", "link", "show", cfg.BRIDGE], capture_output=True).returncode
    assert subprocess.run(
        ["iptables", "-C", *cfg.FORWARD_DROP_RULE], capture_output=True
    ).returncode
    assert (
        "KUBE-SERVICES"
        not in subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    )

    kubectl("delete", "-n", namespace, "pod", "web", "--force", "--grace-period=0")
    real_node.start()
    apply(kubectl, namespace, pod_of_testbin("again", []))
    assert running_pod(kubectl, namespace, "again")["spec"]["nodeName"] == cfg.NODE_NAME


def _processes_mentioning(word: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if word.encode() in argv:
                pids.append(int(entry.name))
    return pids
