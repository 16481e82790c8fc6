"""`kubectl bullflow retry --wait` and `stop --wait` against the real operator: the plugin
writes the request, the operator applies it, the plugin reports the outcome it reads back."""

from __future__ import annotations

import re

from tests.e2e.flows import Flows, load_example, queues_of
from tests.e2e.operator_proc import OperatorProcess, WorkerSet
from tests.e2e.test_plugin_and_argocd_health import plugin
from tests.harness.cluster import LocalCluster


def test_retry_wait_completes_a_failed_flow_and_stop_wait_stops_one(
    operator: OperatorProcess,
    workers: WorkerSet,
    flows: Flows,
    redis_prefix: str,
    local_cluster: LocalCluster,
    namespace: str,
) -> None:
    flaky = load_example("basic.yaml", redis_prefix)
    flaky["metadata"]["name"] = "flaky"
    # The first attempt of part-b fails and it has no other: the flow fails; a retry (attempts
    # not reset) is its second attempt, which succeeds.
    part_b = flaky["spec"]["root"]["children"][1]
    part_b["data"]["failTimes"] = 1
    part_b["opts"] = {"attempts": 1}
    stuck = load_example("basic.yaml", redis_prefix)
    stuck["metadata"]["name"] = "stuck"
    stuck["spec"]["root"] = {"name": "lonely", "queueName": "nobody-listens"}
    workers.start("python", sorted(queues_of(flaky)), redis_prefix)
    flows.apply(flaky)
    flows.apply(stuck)
    assert flows.wait("flaky")["status"]["phase"] == "Failed"
    ns = ("-n", namespace)

    # part-a completed: the plugin finds the node, the operator refuses to retry it.
    refused = plugin(local_cluster, "retry", "flaky", *ns, "--node", "part-a", "--wait")
    print(refused.stdout, refused.stderr)
    assert refused.returncode == 1
    assert re.fullmatch(
        r"Error: flow/flaky: retry '\S+' refused: node 0\.0 \(part-a\) is completed: only "
        r"failed jobs .*\n",
        refused.stderr,
    ), refused.stderr
    assert flows.get("flaky")["status"]["phase"] == "Failed"

    retried = plugin(local_cluster, "retry", "flaky", *ns, "--wait", "--timeout", "60")
    print(retried.stdout, retried.stderr)
    assert retried.returncode == 0, retried.stderr
    lines = retried.stdout.splitlines()
    assert lines[0].startswith("flow/flaky retry requested (token ")
    assert re.fullmatch(r"flow/flaky retry applied: phase (Running|Completed)", lines[1])
    done = flows.wait("flaky", ("Completed",))
    assert done["status"]["result"] == 42
    tree = plugin(local_cluster, "tree", "flaky", *ns)
    assert "Retried:     1 time, last at " in tree.stdout, tree.stdout

    flows.wait_for("stuck", lambda f: (f.get("status") or {}).get("phase") == "Submitted", "")
    stopped = plugin(local_cluster, "stop", "stuck", *ns, "--wait", "--timeout", "60")
    print(stopped.stdout, stopped.stderr)
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.splitlines()[1].startswith("flow/stuck stopped: ")
    assert flows.get("stuck")["status"]["phase"] == "Stopped"
    again = plugin(local_cluster, "stop", "stuck", *ns)
    assert again.returncode == 1 and "flow/stuck is Stopped" in again.stderr
