"""The real node's configuration (tests/harness/node_config.py): the choices the node depends
on, checked without starting it."""

from __future__ import annotations

import hashlib
import io
import ipaddress
import json
import tarfile
import tomllib
from pathlib import Path

from tests.harness import node_config as cfg
from tests.harness.cluster import SERVICE_CLUSTER_IP_RANGE


def test_addresses_are_private_and_do_not_overlap_services_or_kwok() -> None:
    pods = ipaddress.ip_network(cfg.POD_SUBNET)
    assert pods.is_private
    assert ipaddress.ip_address(cfg.NODE_IP) in pods
    assert not pods.overlaps(ipaddress.ip_network(SERVICE_CLUSTER_IP_RANGE))
    assert not pods.overlaps(ipaddress.ip_network("10.244.0.0/16"))  # kwok's pod CIDR


def test_placement_selects_the_label_and_tolerates_the_taint() -> None:
    placement = cfg.real_node_placement()
    assert placement["nodeSelector"] == {cfg.REAL_NODE_LABEL: "true"}
    (toleration,) = placement["tolerations"]
    taint = cfg.REAL_NODE_TAINT
    assert (toleration["key"], toleration["value"], toleration["effect"]) == (
        taint["key"],
        taint["value"],
        taint["effect"],
    )
    assert toleration["operator"] == "Equal"


def test_containerd_config_keeps_everything_under_our_dirs(tmp_path: Path) -> None:
    text = cfg.containerd_config(
        tmp_path / "root",
        tmp_path / "state",
        tmp_path / "c.sock",
        tmp_path / "runc",
        tmp_path / "cni",
        "img:1",
    )
    doc = tomllib.loads(text)
    assert doc["root"] == str(tmp_path / "root") and doc["state"] == str(tmp_path / "state")
    assert doc["grpc"]["address"] == str(tmp_path / "c.sock")
    cri = doc["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["sandbox_image"] == "img:1"
    assert cri["restrict_oom_score_adj"] is True
    assert cri["netns_mounts_under_state_dir"] is True
    assert cri["cni"] == {
        "bin_dir": "/usr/lib/cni",
        "conf_dir": str(tmp_path / "cni"),
        "max_conf_num": 1,
    }
    runc = cri["containerd"]["runtimes"]["runc"]
    assert runc["options"]["SystemdCgroup"] is False
    assert runc["options"]["Root"] == str(tmp_path / "runc")


def test_cni_bridge_has_the_node_address_as_gateway_and_no_masquerade(tmp_path: Path) -> None:
    conflist = cfg.cni_conflist(tmp_path / "ipam")
    bridge, portmap, loopback = conflist["plugins"]
    assert (bridge["type"], portmap["type"], loopback["type"]) == ("bridge", "portmap", "loopback")
    assert bridge["bridge"] == cfg.BRIDGE and bridge["isGateway"] is True
    assert bridge["ipMasq"] is False
    assert bridge["ipam"]["ranges"] == [[{"subnet": cfg.POD_SUBNET, "gateway": cfg.NODE_IP}]]
    assert bridge["ipam"]["dataDir"] == str(tmp_path / "ipam")


def test_forward_rule_drops_what_would_leave_the_bridge() -> None:
    rule = " ".join(cfg.FORWARD_DROP_RULE)
    assert rule.startswith(f"FORWARD -i {cfg.BRIDGE} ! -o {cfg.BRIDGE} ")
    assert rule.endswith("-j DROP")


def test_kubelet_config_fits_these_machines(tmp_path: Path) -> None:
    conf = cfg.kubelet_config(
        ca_cert=tmp_path / "ca.crt",
        runtime_socket=tmp_path / "c.sock",
        port=1,
        healthz_port=2,
        pod_logs_dir=tmp_path / "logs",
        resolv_conf=tmp_path / "resolv.conf",
    )
    assert conf["cgroupDriver"] == "cgroupfs"
    assert conf["failCgroupV1"] is False and conf["cgroupsPerQOS"] is False
    assert conf["enforceNodeAllocatable"] == [] and conf["failSwapOn"] is False
    assert conf["address"] == cfg.NODE_IP
    assert conf["containerRuntimeEndpoint"] == f"unix://{tmp_path / 'c.sock'}"
    assert conf["authentication"]["anonymous"]["enabled"] is False
    assert conf["authentication"]["x509"]["clientCAFile"] == str(tmp_path / "ca.crt")
    assert conf["authorization"]["mode"] == "Webhook"
    assert conf["registerWithTaints"] == [cfg.REAL_NODE_TAINT]
    assert conf["imageGCHighThresholdPercent"] == 100  # imported images cannot be pulled again


def test_kube_proxy_config_uses_iptables_on_the_node_address(tmp_path: Path) -> None:
    conf = cfg.kube_proxy_config(tmp_path / "kc", 3, 4)
    assert conf["mode"] == "iptables"
    assert conf["hostnameOverride"] == cfg.NODE_NAME
    assert conf["clusterCIDR"] == cfg.POD_SUBNET
    assert conf["nodePortAddresses"] == [f"{cfg.NODE_IP}/32"]
    assert conf["metricsBindAddress"] == "127.0.0.1:3"
    assert conf["conntrack"]["maxPerCore"] == 0


def test_docker_archive_is_loadable_by_name() -> None:
    archive = cfg.docker_archive(b"\x7fELF binary", "localhost/x:dev", "/bin/x")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        (manifest,) = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        assert manifest["RepoTags"] == ["localhost/x:dev"]
        layer = tar.extractfile(manifest["Layers"][0]).read()  # type: ignore[union-attr]
        config = json.load(tar.extractfile(manifest["Config"]))  # type: ignore[arg-type]
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(layer).hexdigest()]
    assert config["config"]["Entrypoint"] == ["/bin/x"]
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        entry = tar.getmember("bin/x")
        assert entry.mode == 0o755
        assert tar.extractfile(entry).read() == b"\x7fELF binary"  # type: ignore[union-attr]


def test_missing_requirements_name_each_missing_part() -> None:
    missing = cfg.missing_requirements(
        {"containerd": None, "runc": "/usr/sbin/runc"},
        {"bridge": False, "loopback": True},
        {"overlay filesystem": False, "veth pairs": True},
    )
    assert missing == [
        "containerd (make apt-deps)",
        "CNI plugin /usr/lib/cni/bridge (make apt-deps)",
        "kernel feature: overlay filesystem",
    ]
    assert cfg.missing_requirements({"runc": "/usr/sbin/runc"}, {"bridge": True}, {}) == []
