"""`kubectl-bullflow` (the installed console script) against real flows run by the operator and
real workers: list, tree --watch, resubmit, and the retry/stop requests and their refusals."""

from __future__ import annotations

import os
import pty
import re
import subprocess
from pathlib import Path
from typing import Any

from tests.e2e.flows import Flows, load_example, queues_of
from tests.e2e.operator_proc import OperatorProcess, WorkerSet
from tests.e2e.test_plugin_and_argocd_health import PLUGIN, plugin
from tests.harness.cluster import LocalCluster

COUNTED = {
    "apiVersion": "bullflow.io/v1alpha1",
    "kind": "Flow",
    "metadata": {"name": "counted", "labels": {"team": "data"}},
    "spec": {
        "idempotencyKey": "counted-run-1",
        "root": {
            "name": "total",
            "queueName": "counted",
            "children": [
                {"name": "part-a", "queueName": "counted", "data": {"part": 1}},
                {"name": "part-b", "queueName": "counted", "data": {"part": 2}},
            ],
        },
    },
}


def annotations(flows: Flows, name: str) -> dict[str, str]:
    return dict(flows.get(name)["metadata"].get("annotations") or {})


def executions(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def on_a_terminal(cluster: LocalCluster, *args: str) -> str:
    """What the plugin writes to a pseudo-terminal (newlines as written, not as the terminal
    shows them); asserts it exits 0."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [str(PLUGIN), *args],
        stdout=follower,
        stderr=subprocess.PIPE,
        env={"KUBECONFIG": str(cluster.kubeconfig), "PATH": "/usr/bin:/bin"},
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:  # EIO: the plugin exited and closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    assert proc.wait(timeout=30) == 0, proc.stderr.read() if proc.stderr else ""
    return b"".join(chunks).decode().replace("\r\n", "\n")


def test_watch_list_and_resubmit(
    operator: OperatorProcess,
    workers: WorkerSet,
    flows: Flows,
    redis_prefix: str,
    local_cluster: LocalCluster,
    namespace: str,
    tmp_path: Path,
) -> None:
    doc: dict[str, Any] = {**COUNTED, "spec": {**COUNTED["spec"], "prefix": redis_prefix}}
    flows.apply(doc)
    flows.wait_for("counted", lambda f: (f.get("status") or {}).get("phase") == "Submitted", "")
    # Not a TTY (a pipe): plain frames, one per status change, until the flow completes.
    watch = subprocess.Popen(
        [str(PLUGIN), "tree", "counted", "-n", namespace, "--watch"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"KUBECONFIG": str(local_cluster.kubeconfig), "PATH": "/usr/bin:/bin"},
    )
    assert watch.stdout is not None
    first_frame = [watch.stdout.readline() for _ in range(3)]
    assert first_frame[2] == "Phase:       Submitted\n", first_frame
    log = tmp_path / "executions.log"
    workers.start(
        "python",
        ["counted"],
        redis_prefix,
        processor="bullflow_worker.processors:count_executions",
        env={"BULLFLOW_EXEC_LOG": str(log)},
    )
    rest, err = watch.communicate(timeout=60)
    out = "".join(first_frame) + rest
    print(out)
    assert watch.returncode == 0, err
    frames = out.split("\n\nName:")
    assert len(frames) >= 2, out
    assert "Phase:       Submitted" in frames[0] and "Phase:       Completed" in frames[-1]
    assert all("Phase:       Completed" not in f for f in frames[:-1])
    assert "`-part-b  counted  completed  1" in frames[-1], frames[-1]
    assert "\x1b" not in out and not set("✔✖●◷⧗■○├└│") & set(out)
    assert max(len(line) for line in out.splitlines()) <= 80
    first = flows.get("counted")
    assert len(executions(log)) == 3

    # On a terminal: drawn in place (cursor home, clear screen) with the glyphs.
    on_tty = on_a_terminal(local_cluster, "tree", "counted", "-n", namespace, "--watch")
    assert on_tty.startswith("\x1b[H\x1b[2J") and on_tty.count("\x1b") == 2, on_tty
    assert "Phase:       ✔ Completed\n" in on_tty and "├─✔ part-a" in on_tty

    listed = plugin(local_cluster, "list", "-n", namespace)
    assert listed.returncode == 0, listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines()]
    assert rows[0] == ["NAME", "PHASE", "PROGRESS", "AGE", "DURATION", "REASON"]
    assert rows[1][:3] == ["counted", "Completed", "3/3"] and rows[1][-1] == "Completed"
    everywhere = plugin(local_cluster, "list", "-A")
    assert any(
        line.split()[1:3] == ["counted", "Completed"]
        and namespace.startswith(line.split()[0].rstrip("…"))  # long: cut to fit
        for line in everywhere.stdout.splitlines()
    ), everywhere.stdout
    assert max(len(line) for line in everywhere.stdout.splitlines()) <= 80

    again = plugin(local_cluster, "resubmit", "counted", "-n", namespace)
    assert again.returncode == 0, again.stderr
    created = re.fullmatch(r"flow\.bullflow\.io/(counted-[a-z0-9]{5}) created\n", again.stdout)
    assert created, again.stdout
    assert "Note: spec.idempotencyKey 'counted-run-1' is not copied" in again.stderr
    copy = flows.wait(created[1])
    assert copy["status"]["phase"] == "Completed", copy["status"]
    assert "idempotencyKey" not in copy["spec"]
    assert copy["spec"]["root"] == first["spec"]["root"]
    assert copy["metadata"]["labels"] == {"team": "data"}
    # Everything ran again, under the new flow's job ids; the first run's jobs ran once.
    runs = executions(log)
    assert len(runs) == 6 and len(set(runs)) == 6, runs
    assert sum(copy["metadata"]["uid"] in r for r in runs) == 3, runs

    named = plugin(local_cluster, "resubmit", "counted", "-n", namespace, "--name", "counted-2")
    assert (named.returncode, named.stdout) == (0, "flow.bullflow.io/counted-2 created\n")
    taken = plugin(local_cluster, "resubmit", "counted", "-n", namespace, "--name", "counted-2")
    assert taken.returncode == 1 and "already exists" in taken.stderr, taken.stderr
    assert flows.wait("counted-2")["status"]["phase"] == "Completed"
    assert len(executions(log)) == 9


def test_retry_and_stop_requests_and_refusals(
    operator: OperatorProcess,
    workers: WorkerSet,
    flows: Flows,
    redis_prefix: str,
    local_cluster: LocalCluster,
    namespace: str,
) -> None:
    basic = load_example("basic.yaml", redis_prefix)
    failing = load_example("failure-none.yaml", redis_prefix)
    stuck = load_example("basic.yaml", redis_prefix)
    stuck["metadata"]["name"] = "stuck"
    stuck["spec"]["root"] = {"name": "lonely", "queueName": "nobody-listens"}
    workers.start("python", sorted(queues_of(basic) | queues_of(failing)), redis_prefix)
    for doc in (basic, failing, stuck):
        flows.apply(doc)
    flows.wait("basic")
    assert flows.wait("failure-none")["status"]["phase"] == "Failed"
    flows.wait_for("stuck", lambda f: (f.get("status") or {}).get("phase") == "Submitted", "")
    ns = ("-n", namespace)

    done = plugin(local_cluster, "retry", "basic", *ns)
    assert done.returncode == 1
    assert done.stderr == (
        "Error: flow/basic is Completed: only a Failed or Stopped flow can be retried\n"
    )
    unknown = plugin(local_cluster, "retry", "failure-none", *ns, "--node", "nope")
    assert unknown.returncode == 1
    assert unknown.stderr == "Error: flow/failure-none has no node with path or name 'nope'\n"
    missing = plugin(local_cluster, "retry", "ghost", *ns)
    assert (missing.returncode, missing.stderr) == (1, "Error: flow 'ghost' not found\n")
    finished = plugin(local_cluster, "stop", "basic", *ns)
    assert finished.returncode == 1 and "flow/basic is Completed" in finished.stderr
    for name in ("basic", "failure-none"):
        assert not any(k.startswith("bullflow.io/retry") for k in annotations(flows, name))
    assert "bullflow.io/stop" not in annotations(flows, "basic")

    asked = plugin(local_cluster, "retry", "failure-none", *ns, "--node", "bad-child")
    assert asked.returncode == 0, asked.stderr
    token = re.fullmatch(r"flow/failure-none retry requested \(token (\S+)\)\n", asked.stdout)
    assert token and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ/[0-9a-f]{6}", token[1])
    written = annotations(flows, "failure-none")
    assert written["bullflow.io/retry"] == token[1]
    assert written["bullflow.io/retry-nodes"] == "0.1"
    assert written["bullflow.io/retry-reset-attempts"] == "false"

    stop = plugin(local_cluster, "stop", "stuck", *ns)
    assert stop.returncode == 0, stop.stderr
    value = annotations(flows, "stuck")["bullflow.io/stop"]
    assert re.fullmatch(r"by bullflow-admin at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", value), value
    assert stop.stdout == f"flow/stuck stop requested ({value})\n"
