"""The guide's patterns on Redis Cluster and Sentinel, with Python and Node workers, and the
bad input a user gets wrong on them: the real operator, API server, redis-servers and workers.

Each Flow names its Redis through `spec.connection` (a Secret holding the topology URL); the
session operator's own default Redis is the standalone one, so every read and write here goes
through the Secret's topology. After each pattern the status must equal what Redis holds
(tests/harness/status_truth.py, reading through the same topology URL)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.flows import Flows, load_example, queues_of
from tests.e2e.operator_proc import OperatorProcess, WorkerSet, http_ok
from tests.e2e.test_flow_examples import EXAMPLES, key_maker
from tests.e2e.topology_support import (
    Topology,
    conditions,
    delete_keys,
    keys_matching,
    operator_identity,
    prefix_for,
    put_secret,
    ready_reason,
)
from tests.harness.redis_topologies import RedisClusterTopology
from tests.harness.status_truth import StatusTruthChecker

PATTERNS = [
    "basic.yaml",
    "nested.yaml",
    "map-reduce.yaml",
    "failure-fail-parent-on-failure.yaml",
]
TOPOLOGIES = ["cluster", "sentinel"]
CONDITION_TIMEOUT = 60
FLOW_TIMEOUT = 120


@pytest.fixture(params=TOPOLOGIES)
def topology(request: pytest.FixtureRequest) -> Topology:
    found: Topology = request.getfixturevalue(f"redis_{request.param}")
    return found


@pytest.fixture
def topology_workers(topology: Topology, tmp_path: Path) -> Any:
    workers = WorkerSet(topology.url, tmp_path / "workers")
    yield workers
    workers.stop()


def bare(prefix: str) -> str:
    return prefix.strip("{}")


def assert_operator_up(operator: OperatorProcess, before: tuple[int | None, int]) -> None:
    """No restart, no crash loop: the same process, still answering its liveness probe."""
    assert not operator.exited(), operator.proc.log_tail() if operator.proc else ""
    assert operator_identity(operator) == before
    assert http_ok(f"http://127.0.0.1:{operator.metrics_port}/metrics")


@pytest.mark.parametrize("language", ["python", "node"])
@pytest.mark.parametrize("example", PATTERNS)
def test_pattern_on_topology(
    example: str,
    language: str,
    topology: Topology,
    topology_workers: WorkerSet,
    operator: OperatorProcess,
    flows: Flows,
    kube_client: Any,
    namespace: str,
) -> None:
    prefix = prefix_for(topology)
    doc = load_example(example, prefix)
    doc["spec"]["connection"] = put_secret(kube_client, namespace, topology.url)
    try:
        topology_workers.start(language, sorted(queues_of(doc)), prefix)
        uid = flows.apply(doc)["metadata"]["uid"]
        flow = flows.wait(doc["metadata"]["name"], timeout=FLOW_TIMEOUT)
        EXAMPLES[example](flow, key_maker(prefix, uid))
        StatusTruthChecker(kube_client, topology.url, [namespace]).wait_until_true(60, settled=True)
        keys = keys_matching(topology, f"*{bare(prefix)}*")
        assert any(k.startswith("bullflow:flow:") for k in keys), keys[:10]  # the marker
        if isinstance(topology, RedisClusterTopology):
            # Every key of the flow (jobs, queues, marker) in the prefix's one slot.
            slots = {topology.keyslot(k) for k in keys}
            assert slots == {topology.keyslot(prefix)}, sorted(keys)[:10]
    finally:
        delete_keys(topology, f"*{bare(prefix)}*")


def test_cluster_prefix_without_hash_tag_is_refused(
    redis_cluster: RedisClusterTopology,
    operator: OperatorProcess,
    flows: Flows,
    kube_client: Any,
    namespace: str,
) -> None:
    before = operator_identity(operator)
    untagged = f"bt{uuid.uuid4().hex[:8]}"
    doc = load_example("basic.yaml", untagged)
    doc["spec"]["connection"] = put_secret(kube_client, namespace, redis_cluster.url)
    flows.apply(doc)
    flow = flows.wait_for(
        "basic",
        lambda f: ready_reason(f) == "ClusterPrefixNotHashTagged",
        "a ClusterPrefixNotHashTagged condition",
        CONDITION_TIMEOUT,
    )
    ready = conditions(flow)["Ready"]
    assert ready["status"] == "False"
    # The fix, spelled out for this prefix (for the default `bull`: spec.prefix: "{bull}").
    assert f'spec.prefix: "{{{untagged}}}"' in ready["message"], ready
    assert "submittedAt" not in flow["status"]
    assert keys_matching(redis_cluster, f"*{untagged}*") == []
    assert_operator_up(operator, before)


def test_unknown_sentinel_master_name_then_the_fixed_secret_heals(
    redis_sentinel: Any,
    operator: OperatorProcess,
    flows: Flows,
    kube_client: Any,
    namespace: str,
    tmp_path: Path,
) -> None:
    wrong = redis_sentinel.url_for(master_name="no-such-master")
    check_bad_secret_then_heal(
        redis_sentinel,
        wrong,
        "RedisMasterNotFound",
        "no-such-master",
        operator,
        flows,
        kube_client,
        namespace,
        tmp_path,
    )


@pytest.mark.parametrize("topology", TOPOLOGIES, indirect=True)
def test_wrong_password_then_the_fixed_secret_heals(
    topology: Topology,
    operator: OperatorProcess,
    flows: Flows,
    kube_client: Any,
    namespace: str,
    tmp_path: Path,
) -> None:
    wrong_password = "not-the-password-5b1e"
    if isinstance(topology, RedisClusterTopology):
        wrong = topology.url_with_password(wrong_password)
    else:
        wrong = topology.url_for(password=wrong_password)
    check_bad_secret_then_heal(
        topology,
        wrong,
        "RedisAuthFailed",
        None,
        operator,
        flows,
        kube_client,
        namespace,
        tmp_path,
        secret_text=wrong_password,
    )


def test_secret_that_is_not_a_redis_url_then_the_fixed_secret_heals(
    redis_cluster: RedisClusterTopology,
    operator: OperatorProcess,
    flows: Flows,
    kube_client: Any,
    namespace: str,
    tmp_path: Path,
) -> None:
    """A password pasted where the URL belongs: named as invalid, never repeated."""
    pasted = "s3cret-pasted-as-url-77f0"
    check_bad_secret_then_heal(
        redis_cluster,
        pasted,
        "InvalidConnection",
        None,
        operator,
        flows,
        kube_client,
        namespace,
        tmp_path,
        secret_text=pasted,
    )


def check_bad_secret_then_heal(
    topology: Topology,
    bad_value: str,
    reason: str,
    named: str | None,
    operator: OperatorProcess,
    flows: Flows,
    kube_client: Any,
    namespace: str,
    tmp_path: Path,
    secret_text: str | None = None,
) -> None:
    """The Flow on a Secret holding `bad_value` gets Ready=False with `reason` (its message
    naming `named`, never `secret_text`), the operator stays up, nothing is submitted; the
    Secret fixed, the same Flow runs to Completed."""
    before = operator_identity(operator)
    prefix = prefix_for(topology)
    doc = load_example("basic.yaml", prefix)
    doc["spec"]["connection"] = put_secret(kube_client, namespace, bad_value)
    workers = WorkerSet(topology.url, tmp_path / "workers")
    try:
        workers.start("python", sorted(queues_of(doc)), prefix)
        flows.apply(doc)
        flow = flows.wait_for(
            "basic", lambda f: ready_reason(f) == reason, f"a {reason} condition", CONDITION_TIMEOUT
        )
        ready = conditions(flow)["Ready"]
        assert ready["status"] == "False", ready
        if named is not None:
            assert named in ready["message"], ready
        if secret_text is not None:
            assert secret_text not in ready["message"], ready
            assert secret_text not in operator.log_text()
        assert "submittedAt" not in flow["status"]
        # Nothing submitted: no marker, no job (the workers' own queue keys, such as BullMQ's
        # stalled-check key, aside).
        keys = keys_matching(topology, f"*{bare(prefix)}*")
        assert [k for k in keys if k.startswith("bullflow:flow:") or ":bf-" in k] == [], keys
        assert_operator_up(operator, before)

        put_secret(kube_client, namespace, topology.url)
        healed = flows.wait("basic", ("Completed",), timeout=FLOW_TIMEOUT)
        assert healed["status"]["result"] == 42
        assert_operator_up(operator, before)
    finally:
        workers.stop()
        delete_keys(topology, f"*{bare(prefix)}*")
