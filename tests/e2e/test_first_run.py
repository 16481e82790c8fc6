"""A first run as the README tells it, on a fresh cluster of its own: `kubectl apply
--server-side -f crds/`, then `.venv/bin/bullflow-operator` with only KUBECONFIG and
BULLFLOW_REDIS_URL set, examples/basic.yaml and a Python worker: the Flow completes with 42.

Without the peering CRDs (or without a peering object) kopf would pause every watch when given a
peering name; the operator runs standalone instead and says once that HA peering is off.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.operator_proc import ROOT
from tests.harness.cluster import LocalCluster
from tests.harness.private import private_cluster
from tests.harness.process import ManagedProcess, port_open, wait_for
from tests.harness.redis import RedisServer
from tests.harness.tools import Tools

BIN = Path(sys.executable).parent
PEERING_CRDS = "kopf-peerings.yaml"
WARNING = "HA peering is off"
LINE_START = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z WARNING "


@dataclass
class FreshCluster:
    cluster: LocalCluster
    redis: RedisServer
    tools: Tools
    workdir: Path

    def kubectl(self, *args: str) -> str:
        argv = [str(self.tools.kubectl), f"--kubeconfig={self.cluster.kubeconfig}", *args]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, f"kubectl {' '.join(args)}: {proc.stderr}"
        return proc.stdout

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> ManagedProcess:
        proc = ManagedProcess(name, argv, self.workdir / f"{name}.log", env=env, cwd=ROOT)
        proc.start()
        return proc


@pytest.fixture
def fresh(harness_tools: Tools, tmp_path: Path) -> Iterator[FreshCluster]:
    """A private control plane and Redis: nothing installed but what the test applies."""
    with private_cluster(harness_tools, tmp_path) as (cluster, redis):
        yield FreshCluster(cluster, redis, harness_tools, tmp_path)


def readme_operator(fresh: FreshCluster) -> ManagedProcess:
    """`.venv/bin/bullflow-operator` with the README's two variables (and PATH/HOME, which any
    shell has). Its metrics port is the default 9090 unless another process on this shared
    machine holds it."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "KUBECONFIG": str(fresh.cluster.kubeconfig),
        "BULLFLOW_REDIS_URL": fresh.redis.url,
    }
    argv = [str(BIN / "bullflow-operator")]
    if port_open(9090):
        argv.append("--metrics-port=0")
    return fresh.start("operator", argv, env)


def run_basic_flow(fresh: FreshCluster) -> tuple[dict, str]:
    """Operator, worker, examples/basic.yaml; the completed Flow and the operator's log."""
    operator = readme_operator(fresh)
    worker = fresh.start(
        "worker",
        [
            str(BIN / "bullflow-worker"),
            *("--queue", "basic-parent", "--queue", "basic-child"),
            *("--processor", "bullflow_worker.processors:scripted"),
            *("--redis-url", fresh.redis.url),
            *("--http-port", "0"),  # not the subject here; 8080 may be taken on this machine
        ],
        dict(os.environ),
    )
    try:
        fresh.kubectl("apply", "-f", str(ROOT / "examples" / "basic.yaml"))

        def flow() -> dict:
            return json.loads(fresh.kubectl("get", "flow", "basic", "-o", "json"))

        def done() -> bool:
            operator.check_running()
            return (flow().get("status") or {}).get("phase") in ("Completed", "Failed")

        try:
            wait_for(done, 90, "Flow basic to end")
        except Exception as err:
            raise AssertionError(f"{err}\noperator log:\n{operator.log_tail(60)}") from err
        return flow(), operator.log_path.read_text(errors="replace")
    finally:
        worker.stop()
        operator.stop()


def apply_crds(fresh: FreshCluster, files: list[Path]) -> None:
    fresh.kubectl("apply", "--server-side", *(a for f in files for a in ("-f", str(f))))
    fresh.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")


def assert_completed_with_42(flow: dict, log: str) -> None:
    assert flow["status"]["phase"] == "Completed", (flow["status"], log[-4000:])
    assert flow["status"]["result"] == 42, flow["status"]
    assert "Traceback" not in log, log[-4000:]


def test_readme_first_run_completes_the_basic_flow(fresh: FreshCluster) -> None:
    """crds/ as a whole (peering CRDs included), no peering object: standalone, said once."""
    apply_crds(fresh, [ROOT / "crds"])
    assert "clusterkopfpeerings.kopf.dev" in fresh.kubectl("get", "crd", "-o", "name")
    flow, log = run_basic_flow(fresh)
    assert_completed_with_42(flow, log)
    (line,) = [line for line in log.splitlines() if WARNING in line]
    assert re.match(LINE_START + "HA peering is off: there is no ClusterKopfPeering named", line)


def test_without_the_peering_crds_the_flow_completes_and_the_operator_says_so_once(
    fresh: FreshCluster,
) -> None:
    files = sorted(p for p in (ROOT / "crds").glob("*.yaml") if p.name != PEERING_CRDS)
    apply_crds(fresh, files)
    assert "kopf.dev" not in fresh.kubectl("get", "crd", "-o", "name")
    flow, log = run_basic_flow(fresh)
    assert_completed_with_42(flow, log)
    (line,) = [line for line in log.splitlines() if WARNING in line]
    assert re.match(LINE_START + "HA peering is off: the CRD clusterkopfpeerings.kopf.dev", line)
    assert "kubectl apply -f crds/kopf-peerings.yaml" in line


def test_explicit_peering_without_the_crd_exits_with_one_line(fresh: FreshCluster) -> None:
    files = sorted(p for p in (ROOT / "crds").glob("*.yaml") if p.name != PEERING_CRDS)
    apply_crds(fresh, files)
    env = {**os.environ, "KUBECONFIG": str(fresh.cluster.kubeconfig)}
    env["BULLFLOW_REDIS_URL"] = fresh.redis.url
    proc = subprocess.run(
        [str(BIN / "bullflow-operator"), "--peering=ha", "--metrics-port=0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "bullflow-operator: --peering ha needs the CRD clusterkopfpeerings.kopf.dev, which the "
        "cluster does not serve; install it (kubectl apply -f crds/kopf-peerings.yaml) or pass "
        "--standalone"
    ), proc.stderr
    assert "Traceback" not in proc.stderr
