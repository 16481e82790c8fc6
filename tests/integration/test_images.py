"""The images `make images` builds, run as real containers (podman + runc) against the local
API server and redis-server: the operator container takes a Flow from create to Completed while
a worker-image container processes its jobs.

Both run as the chart runs them: their numeric non-root user, a read-only root filesystem with
a tmpfs on /tmp only (the chart's emptyDir), host networking to reach 127.0.0.1. runc, as crun
refuses these machines' hybrid cgroups; rlimits within the current hard limits, as the process
cannot raise them. Redis URLs go in through the environment, never argv.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from packaging.utils import canonicalize_name

from bullflow import __version__
from tests.e2e.flows import Flows, load_example, nodes_by_name
from tests.e2e.operator_proc import http_ok
from tests.harness.cluster import LocalCluster
from tests.harness.fixtures import Kubectl
from tests.harness.process import free_port, wait_for
from tests.harness.redis import RedisServer

ROOT = Path(__file__).resolve().parents[2]
OPERATOR_IMAGE = "localhost/bullflow-operator:dev"
WORKER_IMAGE = "localhost/bullflow-worker:dev"
OPERATOR_UID, WORKER_UID = 65532, 10001
RUN_FLAGS = [
    "--runtime=runc",
    "--read-only",
    "--read-only-tmpfs=false",
    "--tmpfs=/tmp",
    "--network=host",
    "--ulimit=nofile=1024:1024",
    "--ulimit=nproc=1024:1024",
]
# Seeded into every virtualenv by ensurepip, from the base image; bullflow does not import them.
VENV_SEEDS = {"pip", "setuptools"}


def podman(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> str:
    proc = subprocess.run(
        ["podman", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )
    if proc.returncode != 0:
        raise AssertionError(f"podman {args[0]} failed ({proc.returncode}): {proc.stderr}")
    return proc.stdout


class Container:
    """One detached container; removed (with its logs shown on failure) by the fixture."""

    def __init__(self, image: str, user: int, args: Sequence[str], **run: Any) -> None:
        self.name = f"bullflow-test-{uuid.uuid4().hex[:10]}"
        self.image, self.user, self.args = image, user, list(args)
        self.mounts: list[str] = run.get("mounts", [])
        self.env: dict[str, str] = run.get("env", {})

    def start(self) -> Container:
        # `-e NAME` without a value: podman copies it from its own environment, so a password
        # in a Redis URL never shows in a process list.
        env_flags = [f"--env={name}" for name in self.env]
        mounts = [f"--volume={m}" for m in self.mounts]
        podman(
            "run", "--detach", f"--name={self.name}", f"--user={self.user}",
            *RUN_FLAGS, *mounts, *env_flags, self.image, *self.args,
            env=self.env,
        )  # fmt: skip
        return self

    def check_running(self) -> None:
        state = podman("inspect", "--format={{.State.Status}}", self.name).strip()
        if state != "running":
            raise AssertionError(f"{self.name} ({self.image}) is {state}:\n{self.logs()}")

    def host_pid(self) -> int:
        return int(podman("inspect", "--format={{.State.Pid}}", self.name))

    def exec(self, *argv: str, user: int) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["podman", "exec", f"--user={user}", self.name, *argv],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def logs(self) -> str:
        proc = subprocess.run(
            ["podman", "logs", self.name], capture_output=True, text=True, timeout=60
        )
        return proc.stdout + proc.stderr

    def remove(self) -> None:
        subprocess.run(["podman", "rm", "--force", "--time=5", self.name], capture_output=True)


@pytest.fixture(scope="module")
def images() -> None:
    """The images of the current tree: `make test` built them already, so this is the cache
    check; run alone, the test builds what changed."""
    proc = subprocess.run(
        ["bash", str(ROOT / "hack" / "build-images.sh")],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert proc.returncode == 0, f"make images failed:\n{proc.stdout}{proc.stderr}"


@pytest.fixture
def containers() -> Iterator[list[Container]]:
    started: list[Container] = []
    yield started
    for container in started:
        container.remove()


@pytest.fixture
def readable_kubeconfig(local_cluster: LocalCluster) -> Iterator[Path]:
    """The admin kubeconfig (credentials inline) in a directory the container users can read;
    the harness's own work dirs are private to root."""
    with tempfile.TemporaryDirectory(prefix="bullflow-kube-") as tmp:
        directory = Path(tmp)
        directory.chmod(0o755)
        config = directory / "config"
        config.write_bytes(Path(local_cluster.kubeconfig).read_bytes())
        config.chmod(0o644)
        yield directory


def uids_of(pid: int) -> set[int]:
    """Real, effective, saved and filesystem uid of a host process."""
    status = Path(f"/proc/{pid}/status").read_text()
    line = next(ln for ln in status.splitlines() if ln.startswith("Uid:"))
    return {int(uid) for uid in line.split()[1:]}


def assert_root_filesystem_read_only(container: Container, uid: int) -> None:
    # As root too: a non-root user could be refused by permissions alone.
    for user in (uid, 0):
        proc = container.exec("touch", "/written-at-runtime", user=user)
        assert proc.returncode != 0, f"uid {user} wrote to / in {container.image}"
        assert "Read-only file system" in proc.stderr, proc.stderr
    assert container.exec("touch", "/tmp/scratch", user=uid).returncode == 0, "/tmp not writable"


def metric(url: str, name: str, labels: str) -> float:
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    match = re.search(rf"^{re.escape(name)}\{{{re.escape(labels)}\}} (\S+)$", text, re.M)
    return float(match[1]) if match else 0.0


@pytest.mark.parametrize("image", [OPERATOR_IMAGE, WORKER_IMAGE])
def test_entrypoint_version_as_non_root_read_only(images: None, image: str) -> None:
    uid = OPERATOR_UID if "operator" in image else WORKER_UID
    out = podman("run", "--rm", f"--user={uid}", *RUN_FLAGS, image, "--version")
    assert out.strip() == f"bullflow {__version__}"


@pytest.mark.parametrize(
    ("image", "constraints"),
    [(OPERATOR_IMAGE, "constraints.txt"), (WORKER_IMAGE, "worker-image/constraints.txt")],
)
def test_image_holds_exactly_the_pinned_versions(
    images: None, image: str, constraints: str
) -> None:
    listing = podman(
        "run", "--rm", *RUN_FLAGS, "--entrypoint=python", image,
        "-m", "pip", "list", "--format=json", "--disable-pip-version-check",
    )  # fmt: skip
    installed = {canonicalize_name(d["name"]): d["version"] for d in json.loads(listing)}
    pins = {}
    for line in (ROOT / constraints).read_text().splitlines():
        name, sep, version = line.split("#", 1)[0].strip().partition("==")
        if sep:
            pins[canonicalize_name(name)] = version
    ours = {"bullflow", "bullflow-worker"}
    unpinned = {n: v for n, v in installed.items() if n not in pins and n not in ours | VENV_SEEDS}
    assert not unpinned, f"{image}: installed but not pinned in {constraints}: {unpinned}"
    wrong = {n: (v, pins[n]) for n, v in installed.items() if n in pins and pins[n] != v}
    assert not wrong, f"{image}: (installed, pinned) differ: {wrong}"
    assert installed["bullflow-worker"] == __version__
    if image == OPERATOR_IMAGE:
        assert installed["bullflow"] == __version__


def test_operator_container_runs_a_flow_to_completed(
    images: None,
    containers: list[Container],
    kubectl: Kubectl,
    kube_client: Any,
    namespace: str,
    redis_server: RedisServer,
    redis_prefix: str,
    readable_kubeconfig: Path,
) -> None:
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    redis_env = {"BULLFLOW_REDIS_URL": redis_server.url}

    liveness_port, metrics_port, worker_port = free_port(), free_port(), free_port()
    operator = Container(
        OPERATOR_IMAGE,
        OPERATOR_UID,
        [
            "--standalone",
            f"--namespace={namespace}",
            f"--liveness=http://127.0.0.1:{liveness_port}/healthz",
            f"--metrics-port={metrics_port}",
        ],
        mounts=[f"{readable_kubeconfig}:/etc/bullflow-kube:ro"],
        env={**redis_env, "KUBECONFIG": "/etc/bullflow-kube/config"},
    )
    containers.append(operator.start())
    wait_for(
        lambda: http_ok(f"http://127.0.0.1:{liveness_port}/healthz"),
        120,
        "the operator container's liveness endpoint",
        interval=0.5,
        check=operator.check_running,
    )

    doc = load_example("basic.yaml", redis_prefix)
    worker = Container(
        WORKER_IMAGE,
        WORKER_UID,
        [
            "--queue=basic-parent",
            "--queue=basic-child",
            "--processor=bullflow_worker.processors:scripted",
            f"--prefix={redis_prefix}",
            f"--http-port={worker_port}",
            "--http-host=127.0.0.1",
        ],
        env=redis_env,
    )
    containers.append(worker.start())
    wait_for(
        lambda: http_ok(f"http://127.0.0.1:{worker_port}/readyz"),
        120,
        "the worker container's /readyz",
        interval=0.5,
        check=worker.check_running,
    )

    for container, uid in ((operator, OPERATOR_UID), (worker, WORKER_UID)):
        assert uids_of(container.host_pid()) == {uid}, container.image
        assert_root_filesystem_read_only(container, uid)

    flows = Flows(kube_client, kubectl, namespace)
    flows.apply(doc)
    try:
        flow = flows.wait("basic", timeout=180)
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}\noperator:\n{operator.logs()}\nworker:\n{worker.logs()}"
        ) from exc
    status = flow["status"]
    assert status["phase"] == "Completed", status
    assert status["result"] == 42
    children = nodes_by_name(flow)["total"]["childrenValues"]
    assert [child["value"] for child in children] == [2, 40]
    # The worker container did the work: the children and the parent went through it.
    worker_metrics = f"http://127.0.0.1:{worker_port}/metrics"
    completed = "bullflow_worker_jobs_completed_total"
    assert metric(worker_metrics, completed, 'queue="basic-child"') == 2
    assert metric(worker_metrics, completed, 'queue="basic-parent"') == 1
    operator.check_running()
    assert http_ok(f"http://127.0.0.1:{metrics_port}/metrics")
