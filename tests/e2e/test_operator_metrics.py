"""The observability pack on a running operator: /metrics after real flows finish and real
WorkerPools read their queues (docs/metrics.md). Real apiserver, redis-server, workers."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

import bullflow
from tests.e2e.flows import Flows
from tests.e2e.operator_proc import OperatorProcess, WorkerSet
from tests.e2e.test_flow_lifecycle import flow_doc, two_children
from tests.e2e.workerpool_support import Pools, add_jobs, pool_doc
from tests.harness.process import wait_for

Samples = list[tuple[str, dict[str, str], float]]
RESYNC_SECONDS = 5  # OperatorProcess sets BULLFLOW_RESYNC_INTERVAL_SECONDS=5


def scrape(operator: OperatorProcess) -> Samples:
    url = f"http://127.0.0.1:{operator.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return [
        (s.name, dict(s.labels), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels` (0 if none)."""
    return sum(v for n, ls, v in samples if n == name and labels.items() <= ls.items())


def series(samples: Samples, name: str, **labels: str) -> list[dict[str, str]]:
    return [ls for n, ls, _ in samples if n == name and labels.items() <= ls.items()]


def finished(operator: OperatorProcess, outcome: str) -> float:
    return value(scrape(operator), "bullflow_flows_finished_total", outcome=outcome)


def test_a_queue_shared_by_two_pools_is_exported_once(
    operator: OperatorProcess,
    kube_client: Any,
    kubectl: Any,
    namespace: str,
    redis_url: str,
    redis_prefix: str,
) -> None:
    add_jobs(redis_url, redis_prefix, "shared", [(f"j{i}", {}) for i in range(3)])
    add_jobs(redis_url, redis_prefix, "own", [("o1", {})])
    pools = Pools(kube_client, kubectl, namespace)
    spec = {
        "worker": {"processor": "bullflow_worker.processors:echo"},
        "scaling": {"minReplicas": 0, "maxReplicas": 1, "pollIntervalSeconds": 1},
    }
    pools.apply(pool_doc("m-a", ["shared", "own"], redis_prefix, **spec))
    pools.apply(pool_doc("m-b", ["shared"], redis_prefix, **spec))

    def exported() -> Samples | None:
        samples = scrape(operator)
        pools_seen = series(samples, "bullflow_workerpool_scaling_backlog", namespace=namespace)
        return samples if len(pools_seen) == 2 else None

    samples = wait_for(exported, 30, "both pools' backlog exported")
    waiting = series(
        samples, "bullflow_queue_backlog", prefix=redis_prefix, queue="shared", state="waiting"
    )
    assert len(waiting) == 1  # one series for the queue, not one per pool
    # sum() over the exported series counts each job once
    assert value(samples, "bullflow_queue_backlog", prefix=redis_prefix) == 4
    assert value(samples, "bullflow_queue_backlog", prefix=redis_prefix, queue="shared") == 3
    by_pool = {
        ls["name"]: v
        for n, ls, v in samples
        if n == "bullflow_workerpool_scaling_backlog" and ls["namespace"] == namespace
    }
    assert by_pool == {"m-a": 4, "m-b": 3}  # per pool: each counts the shared queue
    pools.custom.delete_namespaced_custom_object(
        bullflow.GROUP, bullflow.VERSION, namespace, "workerpools", "m-a"
    )
    wait_for(
        lambda: not series(scrape(operator), "bullflow_queue_backlog", queue="own"),
        30,
        "the queue no pool watches any more leaves /metrics",
    )
    assert value(scrape(operator), "bullflow_queue_backlog", prefix=redis_prefix) == 3


@pytest.fixture
def private_operator(
    local_cluster: Any, redis_server: Any, private_namespace: str, tmp_path: Any, flow_crds: None
) -> Iterator[OperatorProcess]:
    proc = OperatorProcess(
        local_cluster.kubeconfig, redis_server.url, tmp_path / "op", namespaces=[private_namespace]
    )
    yield proc
    proc.stop()


def test_a_flow_finished_before_a_restart_is_not_counted_again(
    private_operator: OperatorProcess,
    private_namespace: str,
    kube_client: Any,
    kubectl: Any,
    workers: WorkerSet,
    redis_prefix: str,
) -> None:
    flows = Flows(kube_client, kubectl, private_namespace)
    private_operator.start()
    workers.start("python", ["rq"], redis_prefix)
    flows.apply(flow_doc("m-restart", redis_prefix, two_children("rq")))
    assert flows.wait("m-restart", timeout=30)["status"]["phase"] == "Completed"
    wait_for(lambda: finished(private_operator, "completed") == 1, 15, "the finish counted")
    private_operator.stop()
    private_operator.start()  # a new process: its counters start at 0
    wait_for(
        lambda: value(scrape(private_operator), "bullflow_flows", phase="Completed") == 1,
        30,
        "the restarted operator knows the finished flow",
    )
    time.sleep(RESYNC_SECONDS + 2)
    assert finished(private_operator, "completed") == 0


def test_finished_flows_are_counted_once_with_their_duration(
    private_operator: OperatorProcess,
    private_namespace: str,
    kube_client: Any,
    kubectl: Any,
    workers: WorkerSet,
    redis_prefix: str,
) -> None:
    """On an operator of its own: the session's operator also finishes other tests' flows
    (a CronFlow's runs, say) while this one counts."""
    operator = private_operator
    flows = Flows(kube_client, kubectl, private_namespace)
    operator.start()
    before = scrape(operator)
    workers.start("python", ["mq"], redis_prefix)
    flows.apply(flow_doc("m-ok", redis_prefix, two_children("mq")))
    bad = two_children("mq")
    bad["children"][1]["data"] = {"fail": "on purpose"}
    flows.apply(flow_doc("m-bad", redis_prefix, bad))
    assert flows.wait("m-ok", timeout=30)["status"]["phase"] == "Completed"
    assert flows.wait("m-bad", timeout=30)["status"]["phase"] == "Failed"
    expected = {
        o: value(before, "bullflow_flows_finished_total", outcome=o) + 1
        for o in ("completed", "failed")
    }
    wait_for(
        lambda: all(finished(operator, o) == n for o, n in expected.items()), 15, "finishes counted"
    )
    time.sleep(RESYNC_SECONDS + 2)  # resyncs of the finished flows count nothing more
    after = scrape(operator)
    for outcome, n in expected.items():
        assert value(after, "bullflow_flows_finished_total", outcome=outcome) == n
        count = "bullflow_flow_duration_seconds_count"
        assert value(after, count, outcome=outcome) == value(before, count, outcome=outcome) + 1
    # both flows took well under a minute: observed in the buckets up to 60 s
    bucket = "bullflow_flow_duration_seconds_bucket"
    assert value(after, bucket, outcome="completed", le="60.0") >= 1
    info = series(after, "bullflow_build_info")
    assert len(info) == 1 and info[0]["version"] == bullflow.__version__
    assert info[0]["kopf_version"] and info[0]["bullmq_version"] != "unknown"
