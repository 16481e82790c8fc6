"""Real flows run by the operator and real workers; their statuses are fed to the Argo CD health
checks (Lua 5.1) and printed by `kubectl-bullflow tree` (the installed console script)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.e2e.flows import Flows, load_example, queues_of
from tests.e2e.operator_proc import OperatorProcess, WorkerSet
from tests.harness.cluster import LocalCluster
from tests.unit.test_argocd_health import argocd_health

PLUGIN = Path(sys.executable).with_name("kubectl-bullflow")


def plugin(cluster: LocalCluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PLUGIN), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)},
        check=False,
    )


def test_health_and_tree_on_real_flows(
    operator: OperatorProcess,
    workers: WorkerSet,
    flows: Flows,
    redis_prefix: str,
    local_cluster: LocalCluster,
    namespace: str,
    tmp_path: Path,
) -> None:
    basic = load_example("basic.yaml", redis_prefix)
    failing = load_example("failure-none.yaml", redis_prefix)
    # Running: the child is active (sleeps), the parent waits for it.
    running = load_example("basic.yaml", redis_prefix)
    running["metadata"]["name"] = "slow"
    running["spec"]["root"]["queueName"] = "slow-parent"
    running["spec"]["root"]["children"] = [
        {"name": "sleeper", "queueName": "slow-child", "data": {"sleepSeconds": 60}}
    ]
    # Submitted, never picked up: no worker on its queue.
    stuck = load_example("basic.yaml", redis_prefix)
    stuck["metadata"]["name"] = "stuck"
    stuck["spec"]["root"] = {"name": "lonely", "queueName": "nobody-listens"}

    workers.start(
        "python", sorted(queues_of(basic) | queues_of(failing) | {"slow-child"}), redis_prefix
    )
    for doc in (basic, failing, running, stuck):
        flows.apply(doc)

    completed = flows.wait("basic")
    assert completed["status"]["phase"] == "Completed"
    health = argocd_health("Flow", completed)
    assert health["status"] == "Healthy"
    assert health["message"] == "Completed (3/3 jobs done)"

    failed = flows.wait("failure-none")
    health = argocd_health("Flow", failed)
    assert health["status"] == "Degraded"
    assert "bad-child" in health["message"] and "card declined" in health["message"]

    slow = flows.wait_for(
        "slow",
        lambda f: any(n["state"] == "active" for n in f.get("status", {}).get("nodes", [])),
        "an active job",
    )
    assert slow["status"]["phase"] == "Running", slow["status"]
    health = argocd_health("Flow", slow)
    assert health["status"] == "Progressing" and health["message"].startswith("Running (0/2")

    lonely = flows.wait_for(
        "stuck", lambda f: f.get("status", {}).get("phase") == "Submitted", "Submitted"
    )
    health = argocd_health("Flow", lonely)
    assert health["status"] == "Progressing" and health["message"].startswith("Submitted")

    # An object Argo CD has just applied, before the operator wrote any status.
    assert argocd_health("Flow", {**basic, "status": None})["status"] == "Progressing"

    # The plugin, as `kubectl bullflow` runs it, on the same flows.
    out = plugin(local_cluster, "tree", "basic", "-n", namespace)
    assert out.returncode == 0, out.stderr
    print(out.stdout)
    lines = out.stdout.splitlines()
    assert "Phase:       ✔ Completed" in lines and "Progress:    3/3" in lines
    assert "Result:      42" in lines
    steps = [line.split()[:5] for line in lines[lines.index("") + 2 :]]
    assert steps == [
        ["✔", "total", "basic-parent", "completed", "1"],
        ["├─✔", "part-a", "basic-child", "completed", "1"],
        ["└─✔", "part-b", "basic-child", "completed", "1"],
    ]
    assert lines[-1].split()[-1] == "40"

    out = plugin(local_cluster, "tree", "failure-none", "-n", namespace, "--ascii")
    assert out.returncode == 0, out.stderr
    print(out.stdout)
    assert "Phase:       XX Failed" in out.stdout
    assert any(
        (line.startswith("`-XX bad-child") and line.endswith("card declined"))
        or (line.startswith("|-XX bad-child") and line.endswith("card declined"))
        for line in out.stdout.splitlines()
    ), out.stdout
    assert "<< parent" in out.stdout

    out = plugin(local_cluster, "tree", "slow", "-n", namespace)
    print(out.stdout)
    assert "└─● sleeper" in out.stdout and "Duration:" in out.stdout

    # The context's namespace is the default (in a copy of the kubeconfig).
    config = yaml.safe_load(local_cluster.kubeconfig.read_text())
    for ctx in config["contexts"]:
        ctx["context"]["namespace"] = namespace
    own = tmp_path / "kubeconfig"
    own.write_text(yaml.safe_dump(config))
    out = plugin(local_cluster, "tree", "basic", f"--kubeconfig={own}")
    assert "Phase:       ✔ Completed" in out.stdout, out.stderr
    missing = plugin(local_cluster, "tree", "nope", "-n", namespace)
    assert missing.returncode == 1 and "not found" in missing.stderr
