"""`make demo` as a new user meets it: its closing lines work when pasted into a fresh shell,
and the documented `helm install` works afterwards on the CRDs the demo applied.

One local cluster (the harness CLI's, in a private run dir, kwok fake nodes: the chart's pod does
not really run, but `helm install` succeeds or fails on the API objects). Before the demo, the
README's own-cluster path (`kubectl apply --server-side -f crds/`) is taken, as a user trying
that first would: the documented `helm install` is then refused, `--set crds.install=false`
works. The demo then runs the real operator and a real worker on top of it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness.tools import Tools, ensure_tools

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTED_INSTALL = "helm install bullflow charts/bullflow -n bullflow-system --create-namespace"
CRDS = (
    ("crd", "flows.bullflow.io"),
    ("crd", "workerpools.bullflow.io"),
    ("validatingadmissionpolicy", "flows.bullflow.io-immutable-spec"),
    ("validatingadmissionpolicybinding", "flows.bullflow.io-immutable-spec"),
)


@dataclass
class Cluster:
    env: dict[str, str]  # what `make demo` runs with: no reachable KUBECONFIG, no Redis URL
    kubeconfig: str
    tools: Tools

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            argv, env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=300
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"{argv} failed {proc.returncode}:\n{proc.stderr}{proc.stdout}")
        return proc

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(
            str(self.tools.kubectl), f"--kubeconfig={self.kubeconfig}", *args, check=check
        )

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(str(self.tools.helm), f"--kubeconfig={self.kubeconfig}", *args, check=check)


@dataclass
class DemoRun:
    returncode: int
    output: str
    seconds: float

    def shell_block(self) -> list[str]:
        """The lines printed after "[demo] to look at it from your shell:", up to the next
        "[demo]" line."""
        lines = self.output.splitlines()
        start = lines.index("[demo] to look at it from your shell:") + 1
        end = next(i for i in range(start, len(lines)) if lines[i].startswith("[demo]"))
        return lines[start:end]

    def helm_command(self) -> str:
        marker = "from the repo root: "
        note = next(line for line in self.output.splitlines() if marker in line)
        return note.split(marker, 1)[1]


def fresh_shell(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`bash -ec script` with nothing from this process' environment: only what the script
    exports counts (PATH leads nowhere, so `kubectl` is found only through the printed PATH)."""
    return subprocess.run(
        ["/bin/bash", "-ec", script],
        env={"HOME": str(cwd), "PATH": "/nonexistent"},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def run_demo(cluster: Cluster) -> DemoRun:
    started = time.monotonic()
    proc = cluster.run(sys.executable, str(ROOT / "hack" / "demo.py"), check=False)
    seconds = time.monotonic() - started
    print(f"make demo took {seconds:.1f}s")
    return DemoRun(proc.returncode, proc.stdout + proc.stderr, seconds)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("demo")
    env = {k: v for k, v in os.environ.items() if k != "BULLFLOW_REDIS_URL"}
    env["BULLFLOW_RUN_DIR"] = str(tmp / "run")
    env["KUBECONFIG"] = str(tmp / "no-such-kubeconfig")  # the demo then uses the local one
    tools = ensure_tools()
    harness = [sys.executable, "-m", "tests.harness"]
    up = subprocess.run(
        [*harness, "up"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert up.returncode == 0, up.stderr
    try:
        state = json.loads((tmp / "run" / "state.json").read_text())
        yield Cluster(env, state["kubeconfig"], tools)
    finally:
        subprocess.run([*harness, "down"], env=env, cwd=ROOT, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def readme_then_helm(cluster: Cluster) -> dict[str, subprocess.CompletedProcess[str]]:
    """The README's own-cluster CRDs, then the documented `helm install`, then the same with
    `--set crds.install=false` (installed, then uninstalled again)."""
    cluster.kubectl("apply", "--server-side", "-f", "crds/")
    documented = cluster.helm(*DOCUMENTED_INSTALL.split()[1:], check=False)
    without_crds = cluster.helm(
        *DOCUMENTED_INSTALL.split()[1:], "--set", "crds.install=false", check=False
    )
    if without_crds.returncode == 0:
        cluster.helm("uninstall", "bullflow", "-n", "bullflow-system", "--wait")
    return {"documented": documented, "crds.install=false": without_crds}


@pytest.fixture(scope="module")
def demo(cluster: Cluster, readme_then_helm: object) -> DemoRun:
    return run_demo(cluster)


def test_readme_crds_then_documented_helm_install_is_refused_naming_the_metadata(
    readme_then_helm: dict[str, subprocess.CompletedProcess[str]],
) -> None:
    refused = readme_then_helm["documented"]
    assert refused.returncode != 0
    # Helm's own message names every key it wants and the value: the documented fix
    # (docs/operations.md, "CRDs applied before Helm") sets exactly these.
    assert "invalid ownership metadata" in refused.stderr
    assert 'missing key "app.kubernetes.io/managed-by": must be set to "Helm"' in refused.stderr
    assert 'missing key "meta.helm.sh/release-name": must be set to "bullflow"' in refused.stderr
    assert (
        'missing key "meta.helm.sh/release-namespace": must be set to "bullflow-system"'
        in refused.stderr
    )


def test_readme_crds_then_helm_install_without_crds_works(
    readme_then_helm: dict[str, subprocess.CompletedProcess[str]],
) -> None:
    installed = readme_then_helm["crds.install=false"]
    assert installed.returncode == 0, installed.stderr


def test_demo_runs_the_order_example_to_completion(demo: DemoRun) -> None:
    assert demo.returncode == 0, demo.output
    assert "Progress:    4/4" in demo.output and "✔ Completed" in demo.output
    result_line = next(
        line for line in demo.output.splitlines() if line.startswith("[demo] result:")
    )
    result = json.loads(result_line.removeprefix("[demo] result:"))
    # confirm-order collects its children's values: the processor read the example's data.
    assert sorted(result.values(), key=json.dumps) == sorted(
        [
            {"charged": 59.9, "currency": "EUR"},
            {"sku": "BF-42", "reserved": 2},
            {"carrier": "post", "eta": "2d"},
        ],
        key=json.dumps,
    )
    assert "[demo] the local cluster is left running; `make cluster-down` stops it" in demo.output


def test_printed_shell_lines_work_in_a_fresh_shell(
    demo: DemoRun, cluster: Cluster, tmp_path: Path
) -> None:
    block = demo.shell_block()
    flow = block[-1].split()[-1]
    assert flow.startswith("order-")
    assert block[0] == f"export KUBECONFIG={cluster.kubeconfig}"
    assert block[1].startswith("export BULLFLOW_REDIS_URL=redis://127.0.0.1:")
    assert block[2].startswith("export PATH=")
    assert block[3:] == [
        "kubectl get flows -n bullflow-demo",
        f"kubectl describe flow -n bullflow-demo {flow}",
        f"kubectl bullflow tree -n bullflow-demo {flow}",
    ]
    done = fresh_shell("\n".join(block), tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"{flow}   Completed" in done.stdout  # kubectl get flows
    assert f"Name:         {flow}" in done.stdout  # kubectl describe
    assert "all 4 jobs completed" in done.stdout  # its event
    assert "├─✔ charge-card" in done.stdout  # kubectl bullflow tree
    # Without the printed PATH, none of it runs: the PATH line is what makes it work.
    without_path = fresh_shell("\n".join(block[:2] + block[3:]), tmp_path)
    assert without_path.returncode != 0
    assert "kubectl: command not found" in without_path.stderr


def test_documented_helm_install_adopts_the_demo_crds(
    demo: DemoRun, cluster: Cluster, tmp_path: Path
) -> None:
    command = demo.helm_command()
    assert command.startswith(DOCUMENTED_INSTALL)
    assert DOCUMENTED_INSTALL in (ROOT / "docs" / "operations.md").read_text()
    exports = [line for line in demo.shell_block() if line.startswith("export ")]
    installed = fresh_shell("\n".join([*exports, f"cd {ROOT}", command]), tmp_path)
    assert installed.returncode == 0, installed.stderr
    try:
        for kind, name in CRDS:
            meta = json.loads(cluster.kubectl("get", kind, name, "-o", "json").stdout)["metadata"]
            assert meta["annotations"]["meta.helm.sh/release-name"] == "bullflow"
            assert meta["annotations"]["meta.helm.sh/release-namespace"] == "bullflow-system"
            # Put there by the chart's template, not the demo: Helm manages the object now.
            assert meta["annotations"]["helm.sh/resource-policy"] == "keep"
            assert meta["labels"]["helm.sh/chart"].startswith("bullflow-")

        # The demo again, on the chart's CRDs: it keeps them the release's, so upgrades work.
        again = run_demo(cluster)
        assert again.returncode == 0, again.output
        assert again.helm_command() == command
        cluster.helm(
            "upgrade", "bullflow", "charts/bullflow", "-n", "bullflow-system", "--reuse-values"
        )
    finally:
        cluster.helm("uninstall", "bullflow", "-n", "bullflow-system", "--wait", check=False)
    # crds.keep (default): the CRDs and the demo's Flows outlive the release.
    for kind, name in CRDS:
        cluster.kubectl("get", kind, name)
    flows = cluster.kubectl("get", "flows", "-n", "bullflow-demo", "-o", "name").stdout.split()
    assert len(flows) == 2
