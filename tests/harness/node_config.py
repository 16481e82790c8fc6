"""The real node's configuration files as pure functions (tests/harness/node.py writes them).

Addresses: the node's pods live in POD_SUBNET behind the bridge BRIDGE, whose gateway address
NODE_IP is also the node's InternalIP (the API server reaches the kubelet there for logs and
exec). Both are private, exist only inside this machine, and FORWARD_DROP_RULE keeps pod
traffic from being forwarded anywhere but back into the bridge.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

NODE_NAME = "real-node-0"
# Real-pod tests select the node with the label and tolerate the taint; every other pod (the
# kwok-backed e2e tests) cannot land on it, since the taint repels pods without the toleration.
REAL_NODE_LABEL = "bullflow.io/real-node"
REAL_NODE_TAINT = {"key": REAL_NODE_LABEL, "value": "true", "effect": "NoSchedule"}
BRIDGE = "bullflow0"
# Not kwok's 10.244.0.0/16 nor the Service range 10.96.0.0/16.
POD_SUBNET = "10.210.0.0/24"
NODE_IP = "10.210.0.1"
CNI_NETWORK = "bullflow-real-node"
FORWARD_DROP_RULE = [
    "FORWARD",
    "-i",
    BRIDGE,
    "!",
    "-o",
    BRIDGE,
    "-m",
    "comment",
    "--comment",
    "bullflow real node: pod traffic stays on this machine",
    "-j",
    "DROP",
]


def real_node_placement() -> dict[str, Any]:
    """What a pod spec needs to run on the real node: merge into `spec`."""
    return {
        "nodeSelector": {REAL_NODE_LABEL: "true"},
        "tolerations": [{**REAL_NODE_TAINT, "operator": "Equal"}],
    }


def containerd_config(
    root: Path, state: Path, socket: Path, runc_root: Path, cni_conf_dir: Path, pause: str
) -> str:
    """containerd 1.6 config (version 2) with everything under our own directories."""
    return f"""version = 2
root = "{root}"
state = "{state}"

[grpc]
  address = "{socket}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{root}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  # The pod sandbox asks for oom_score_adj -998; without CAP_SYS_RESOURCE lowering it fails
  # ("can't get final child's PID from pipe: EOF"): clamp it to ours instead.
  restrict_oom_score_adj = true
  # Pod network namespaces under our state dir, not the machine's /var/run/netns.
  netns_mounts_under_state_dir = true
  enable_selinux = false
  disable_apparmor = true

[plugins."io.containerd.grpc.v1.cri".containerd]
  default_runtime_name = "runc"
  snapshotter = "overlayfs"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  # The machines have hybrid cgroups (v1 controllers + v2 unified): crun refuses, runc with
  # cgroupfs works.
  SystemdCgroup = false
  # runc's container state: ours to remove after a killed shim, not /run/containerd/runc's.
  Root = "{runc_root}"

[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "{cni_conf_dir}"
  max_conf_num = 1
"""


def cni_conflist(ipam_data_dir: Path) -> dict[str, Any]:
    """bridge + host-local + portmap + loopback on BRIDGE; no masquerade (nothing leaves)."""
    return {
        "cniVersion": "0.4.0",
        "name": CNI_NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                # A pod reaching itself through a Service IP comes back over its own port.
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(ipam_data_dir),
                    "ranges": [[{"subnet": POD_SUBNET, "gateway": NODE_IP}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
            {"type": "loopback"},
        ],
    }


def kubelet_config(
    *,
    ca_cert: Path,
    runtime_socket: Path,
    port: int,
    healthz_port: int,
    pod_logs_dir: Path,
    resolv_conf: Path,
) -> dict[str, Any]:
    """KubeletConfiguration for this machine: cgroupfs on hybrid cgroups, no QoS cgroups, no
    swap check, x509 (our CA) + webhook auth so the API server reaches it for logs/exec."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": NODE_IP,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "containerRuntimeEndpoint": f"unix://{runtime_socket}",
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,
        "cgroupsPerQOS": False,
        "enforceNodeAllocatable": [],
        "failSwapOn": False,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca_cert)},
        },
        "authorization": {"mode": "Webhook"},
        "registerWithTaints": [REAL_NODE_TAINT],
        "podLogsDir": str(pod_logs_dir),
        # No cluster DNS: tests address pods and Services by IP or by the Service env vars.
        "resolvConf": str(resolv_conf),
        # Images come from `ctr images import` and cannot be pulled again: never collect them.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        # A shared CI disk can be fuller than the default 10-15% thresholds; evicting test
        # pods for it would make the tests flaky, not safer.
        "evictionHard": {
            "memory.available": "1Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "maxPods": 50,
        "serializeImagePulls": False,
        "rotateCertificates": False,
    }


def kube_proxy_config(kubeconfig: Path, metrics_port: int, healthz_port: int) -> dict[str, Any]:
    """iptables mode; NodePorts only on NODE_IP (no route_localnet); conntrack sysctls left
    as they are (the machine's, shared with others)."""
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": NODE_NAME,
        "bindAddress": NODE_IP,
        "clusterCIDR": POD_SUBNET,
        "metricsBindAddress": f"127.0.0.1:{metrics_port}",
        "healthzBindAddress": f"127.0.0.1:{healthz_port}",
        "nodePortAddresses": [f"{NODE_IP}/32"],
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
    }


def docker_archive(binary: bytes, image: str, entrypoint: str) -> bytes:
    """A `docker save`-format tar of a FROM-scratch image holding one static binary at
    `entrypoint`; `ctr images import` loads it under the name `image`."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        _add_file(tar, entrypoint.lstrip("/"), binary, 0o755)
        # The kubelet bind-mounts /etc/hosts etc. and the worker may write to /tmp.
        for directory in ("etc", "tmp", "dev", "proc", "sys"):
            info = tarfile.TarInfo(directory)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if directory == "tmp" else 0o755
            tar.addfile(info)
    layer_bytes = layer.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": [entrypoint], "Env": ["PATH=/"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "tests/harness/node.py"}],
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    manifest = [{"Config": config_name, "RepoTags": [image], "Layers": ["layer.tar"]}]
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        _add_file(tar, "layer.tar", layer_bytes, 0o644)
        _add_file(tar, config_name, config_bytes, 0o644)
        _add_file(tar, "manifest.json", json.dumps(manifest).encode(), 0o644)
    return out.getvalue()


def _add_file(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    tar.addfile(info, io.BytesIO(data))


def missing_requirements(
    executables: dict[str, str | None], cni_plugins: dict[str, bool], kernel: dict[str, bool]
) -> list[str]:
    """What the node cannot start without, each as `<what> (<how to get it>)`: executables
    found on PATH (name -> path or None), CNI plugins present, kernel features usable."""
    missing = [f"{name} (make apt-deps)" for name, path in executables.items() if path is None]
    missing += [
        f"CNI plugin /usr/lib/cni/{name} (make apt-deps)"
        for name, present in cni_plugins.items()
        if not present
    ]
    missing += [f"kernel feature: {name}" for name, usable in kernel.items() if not usable]
    return missing
