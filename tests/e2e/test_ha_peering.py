"""HA: two real operators (no --standalone) share a namespace through kopf peering.

As the chart runs them with `replicaCount > 1` and `watchNamespaces`: the peering CRDs from
charts/bullflow/crds/, a `KopfPeering` in the watched namespace, and each operator started with
`--peering NAME --namespace NS`. One operator is active, the other pauses; every Flow completes
and every job runs exactly once; when the active operator is SIGKILLed (no goodbye in the
peering object) the standby takes over once the dead peer's lifetime has run out.

kopf pauses *every* operator that sees a live peer of the same priority, so HA needs distinct
priorities (the chart passes `--priority=random`; this test fixes them to know which is
active), and `--peering-lifetime` bounds the failover time (kopf's default: 60 s).
"""

from __future__ import annotations

import collections
import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.e2e.drain import run_sentinels
from tests.e2e.flows import Flows
from tests.e2e.operator_proc import ROOT, OperatorProcess, WorkerSet
from tests.harness.cluster import LocalCluster
from tests.harness.process import wait_for
from tests.harness.redis import RedisServer

PEERING_CRDS = ROOT / "charts" / "bullflow" / "crds" / "kopf-peerings.yaml"
PEERING = "bullflow-ha"
LIFETIME = 10  # seconds; kopf's default is 60
PROCESSOR = "bullflow_worker.processors:count_executions"
QUEUES = ("ha-parent", "ha-child")


class PeeringOperator(OperatorProcess):
    """OperatorProcess without --standalone: `--peering NAME` + `--namespace`, as the chart."""

    def __init__(self, *args: Any, identity: str, priority: int, **kwargs: Any) -> None:
        env = {**kwargs.pop("env", {}), "POD_ID": identity}  # kopf's peer id (the pod name)
        super().__init__(*args, env=env, **kwargs)
        self.identity = self.name = identity
        self.priority = priority

    def mode_args(self) -> list[str]:
        return [
            f"--priority={self.priority}",
            f"--peering-lifetime={LIFETIME}",
            f"--peering={PEERING}",
            "--log-format=json",  # the chart's default
            "--verbose",
        ]

    def wait_log(self, pattern: str, timeout: float) -> float:
        """Seconds until `pattern` shows in the log."""
        started = time.monotonic()
        regex = re.compile(pattern)
        wait_for(
            lambda: regex.search(self.log_text()) is not None,
            timeout,
            f"{pattern!r} in {self.identity}'s log",
        )
        return time.monotonic() - started


@pytest.fixture
def ha_namespace(kubectl: Any, kube_client: Any) -> Iterator[str]:
    """A private namespace (not t-*: the session operator must not serve it) with the
    KopfPeering the chart creates in each watched namespace."""
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(PEERING_CRDS))
    kubectl(
        "wait",
        "--for=condition=Established",
        "crd/kopfpeerings.kopf.dev",
        "crd/clusterkopfpeerings.kopf.dev",
        "--timeout=60s",
    )
    name = f"ha-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", name)
    kubectl(
        "apply",
        "-n",
        name,
        "-f",
        "-",
        input=f"apiVersion: kopf.dev/v1\nkind: KopfPeering\nmetadata:\n  name: {PEERING}\n",
    )
    yield name
    # Flows carry the operator's finalizer; by now no operator serves this namespace.
    for flow in kubectl("get", "flows", "-n", name, "-o", "name", check=False).stdout.split():
        kubectl(
            "patch",
            flow,
            "-n",
            name,
            "--type=merge",
            "-p",
            '{"metadata":{"finalizers":null}}',
            check=False,
        )
    kubectl("delete", "namespace", name, "--wait=false", check=False)


def flow_doc(name: str, prefix: str, children: int = 3) -> dict[str, Any]:
    return {
        "apiVersion": "bullflow.io/v1alpha1",
        "kind": "Flow",
        "metadata": {"name": name},
        "spec": {
            "prefix": prefix,
            "root": {
                "name": "root",
                "queueName": QUEUES[0],
                "data": {"flow": name},
                "children": [
                    {"name": f"c{i}", "queueName": QUEUES[1], "data": {"i": i}}
                    for i in range(children)
                ],
            },
        },
    }


def handled(log: str, flow: str) -> bool:
    """Whether this operator ran the Flow handler on `flow` (its JSON log names the object)."""
    for line in log.splitlines():
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        if record.get("name") == flow and record.get("message", "").startswith(
            "Handler 'flow_reconcile' succeeded"
        ):
            return True
    return False


def test_two_operators_one_active_failover_on_sigkill(
    flow_crds: None,
    local_cluster: LocalCluster,
    redis_server: RedisServer,
    kubectl: Any,
    kube_client: Any,
    ha_namespace: str,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    ns = ha_namespace
    exec_log = tmp_path / "executions.log"
    ops = []
    for identity, priority in (("bullflow-a", 200), ("bullflow-b", 100)):
        (tmp_path / identity).mkdir()
        ops.append(
            PeeringOperator(
                local_cluster.kubeconfig,
                redis_server.url,
                tmp_path / identity,
                namespaces=[ns],
                identity=identity,
                priority=priority,
            )
        )
    active, standby = ops
    workers = WorkerSet(redis_server.url, tmp_path)
    flows = Flows(kube_client, kubectl, ns)
    try:
        active.start()
        active.wait_log(r"Resuming operations", 30)
        # Its heartbeat must be in the peering object before the standby looks at it (else the
        # standby's first reading sees nobody and it runs too, until the next heartbeat).
        wait_for(lambda: "bullflow-a" in peers(kube_client, ns), 30, "bullflow-a's heartbeat")
        standby.start()
        wait_for(lambda: "bullflow-b" in peers(kube_client, ns), 30, "bullflow-b's heartbeat")
        # A peering operator starts paused and stays so while a higher priority peer lives: its
        # watch-streams are paused, blocked by the peering (kopf logs this at debug level).
        standby.wait_log(r"Pausing the watch-stream for flows\S* .*blockers: " + PEERING, 30)
        assert {k: v["priority"] for k, v in peers(kube_client, ns).items()} == {
            "bullflow-a": 200,
            "bullflow-b": 100,
        }
        assert "Resuming operations" not in standby.log_text()

        workers.start(
            "python",
            QUEUES,
            redis_prefix,
            processor=PROCESSOR,
            env={"BULLFLOW_EXEC_LOG": str(exec_log)},
        )
        first = [f"before-{i}" for i in range(4)]
        t0 = time.monotonic()
        for name in first:
            flows.apply(flow_doc(name, redis_prefix))
        for name in first:
            done = flows.wait(name, timeout=30)
            assert done["status"]["phase"] == "Completed", done["status"]
        before_kill = time.monotonic() - t0
        assert len(read(exec_log)) == 16
        wait_for(
            lambda: all(handled(active.log_text(), n) for n in first),
            15,
            "the active operator's handler lines",
        )
        assert not any(handled(standby.log_text(), n) for n in first), standby.log_text()
        assert "Resuming operations" not in standby.log_text()

        # SIGKILL: no graceful exit, the dead peer stays in the peering object until it expires.
        active.kill9()
        killed = time.monotonic()
        standby.wait_log(r"Resuming operations", LIFETIME + 20)
        takeover = time.monotonic() - killed
        second = [f"after-{i}" for i in range(2)]
        for name in second:
            flows.apply(flow_doc(name, redis_prefix))
        for name in second:
            done = flows.wait(name, timeout=30)
            assert done["status"]["phase"] == "Completed", done["status"]
        completed_after_kill = time.monotonic() - killed
        wait_for(
            lambda: all(handled(standby.log_text(), n) for n in second),
            15,
            "the standby's handler lines for the new flows",
        )
        # The flows that completed before the failover stay as they were (no re-run).
        for name in first:
            assert flows.get(name)["status"]["phase"] == "Completed"
        # On resuming, the standby handles the Flows it had not seen, the completed ones too:
        # once it has, none of them was submitted again, or the sentinels below come after.
        wait_for(
            lambda: all(handled(standby.log_text(), n) for n in first),
            30,
            "the standby to have handled the flows that completed before the failover",
        )
        # Anything run twice was queued before these sentinels (FIFO): it has run by now.
        sentinels = run_sentinels(redis_server.url, redis_prefix, QUEUES)
        lines = read(exec_log)
        assert sentinels <= set(lines), lines
        counts = collections.Counter(job for job in lines if job not in sentinels)
        assert len(counts) == 4 * (len(first) + len(second)), counts
        assert max(counts.values()) == 1, [k for k, v in counts.items() if v > 1]
        print(
            f"\n[ha peering] 4 flows with one active operator {before_kill:.2f}s; SIGKILL -> "
            f"standby resumed {takeover:.2f}s (lifetime {LIFETIME}s), 2 new flows completed "
            f"{completed_after_kill:.2f}s after the kill"
        )
    finally:
        workers.stop()
        for op in ops:
            if op.proc is not None and op.proc.running():
                op.stop()


def peers(api: Any, namespace: str) -> dict[str, Any]:
    """The peering object's status: identity -> {priority, lifetime, lastseen}."""
    obj = client.CustomObjectsApi(api).get_namespaced_custom_object(
        "kopf.dev", "v1", namespace, "kopfpeerings", PEERING
    )
    return dict(obj.get("status") or {})


def read(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []
