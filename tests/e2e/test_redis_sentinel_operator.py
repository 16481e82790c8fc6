"""The operator on Redis Sentinel, end to end: a Flow whose Secret names `redis+sentinel://`
(data password, sentinelPassword, a database other than 0) runs to Completed with Python
workers connecting through the same sentinels; and the Sentinel-specific mistakes in that
Secret (the sentinels' own password, no master name) give a condition that says what to fix,
the operator keeps running, and the fixed Secret lets the same Flow complete.

A master name nobody knows and a wrong data password are covered for both topologies by
test_redis_topologies.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis

from tests.e2e.flows import Flows, load_example, queues_of
from tests.e2e.operator_proc import OperatorProcess, WorkerSet, http_ok
from tests.e2e.test_flow_examples import EXAMPLES, key_maker
from tests.e2e.topology_support import (
    conditions,
    operator_identity,
    put_secret,
    ready_reason,
)
from tests.harness.redis_topologies import RedisSentinelTopology

DB = 1
CONDITION_TIMEOUT = 60
# A fixed Secret is read on kopf's next retry of the Flow, whose backoff doubles from 1 s.
FLOW_TIMEOUT = 180


def master_keys(topology: RedisSentinelTopology, pattern: str, db: int) -> list[str]:
    client = redis.Redis(
        port=topology.master().port, password=topology.password, db=db, decode_responses=True
    )
    try:
        return list(client.scan_iter(match=pattern, count=1000))
    finally:
        client.close()


def drop_keys(topology: RedisSentinelTopology, pattern: str) -> None:
    client = redis.Redis(port=topology.master().port, password=topology.password, db=DB)
    try:
        for key in client.scan_iter(match=pattern, count=1000):
            client.delete(key)
    finally:
        client.close()


def assert_operator_up(operator: OperatorProcess, before: tuple[int | None, int]) -> None:
    assert not operator.exited(), operator.proc.log_tail() if operator.proc else ""
    assert operator_identity(operator) == before
    assert http_ok(f"http://127.0.0.1:{operator.metrics_port}/metrics")


@pytest.mark.parametrize("example", ["basic.yaml", "nested.yaml"])
def test_flow_completes_through_sentinel(
    example: str,
    redis_sentinel: RedisSentinelTopology,
    operator: OperatorProcess,
    flows: Flows,
    kube_client: Any,
    namespace: str,
    tmp_path: Path,
    redis_prefix: str,
) -> None:
    url = redis_sentinel.url_for(db=DB)
    doc = load_example(example, redis_prefix)
    doc["spec"]["connection"] = put_secret(kube_client, namespace, url)
    workers = WorkerSet(url, tmp_path / "workers")
    try:
        workers.start("python", sorted(queues_of(doc)), redis_prefix)
        uid = flows.apply(doc)["metadata"]["uid"]
        flow = flows.wait(doc["metadata"]["name"], timeout=FLOW_TIMEOUT)
        EXAMPLES[example](flow, key_maker(redis_prefix, uid))
        # Operator and workers both wrote to the database the URL names, on the master.
        keys = master_keys(redis_sentinel, f"*{redis_prefix}*", DB)
        assert any(k.startswith("bullflow:flow:") for k in keys), keys[:10]  # the marker
        assert any(k.startswith(f"{redis_prefix}:") for k in keys), keys[:10]  # the jobs
        assert master_keys(redis_sentinel, f"*{redis_prefix}*", 0) == []
    finally:
        workers.stop()
        drop_keys(redis_sentinel, f"*{redis_prefix}*")


@pytest.mark.parametrize(
    ("breakage", "reason", "named"),
    [
        ("wrong-sentinel-password", "RedisAuthFailed", "sentinelPassword"),
        ("no-master-name", "InvalidConnection", "redis+sentinel://host:26379/mymaster"),
    ],
)
def test_sentinel_mistake_is_named_then_the_fixed_secret_heals(
    breakage: str,
    reason: str,
    named: str,
    redis_sentinel: RedisSentinelTopology,
    operator: OperatorProcess,
    flows: Flows,
    kube_client: Any,
    namespace: str,
    tmp_path: Path,
    redis_prefix: str,
) -> None:
    good = redis_sentinel.url_for(db=DB)
    assert redis_sentinel.sentinel_password is not None
    wrong_password = "wrong-sentinel-pw-c41d"
    bad = {
        "wrong-sentinel-password": good.replace(redis_sentinel.sentinel_password, wrong_password),
        "no-master-name": good.replace(f"/{redis_sentinel.master_name}/{DB}", ""),
    }[breakage]
    assert bad != good
    before = operator_identity(operator)
    doc = load_example("basic.yaml", redis_prefix)
    doc["spec"]["connection"] = put_secret(kube_client, namespace, bad)
    workers = WorkerSet(good, tmp_path / "workers")
    try:
        workers.start("python", sorted(queues_of(doc)), redis_prefix)
        flows.apply(doc)
        flow = flows.wait_for(
            "basic", lambda f: ready_reason(f) == reason, f"a {reason} condition", CONDITION_TIMEOUT
        )
        ready = conditions(flow)["Ready"]
        assert ready["status"] == "False", ready
        assert named in ready["message"], ready
        assert f"Secret {namespace}/" in ready["message"] or reason != "InvalidConnection"
        for secret in (wrong_password, redis_sentinel.sentinel_password, redis_sentinel.password):
            assert secret and secret not in ready["message"], ready
            assert secret not in operator.log_text()
        assert "submittedAt" not in flow["status"]
        # Nothing submitted: no marker, no job (the workers' own queue meta keys aside).
        keys = master_keys(redis_sentinel, f"*{redis_prefix}*", DB)
        assert [k for k in keys if k.startswith("bullflow:flow:") or ":bf-" in k] == [], keys
        assert_operator_up(operator, before)

        put_secret(kube_client, namespace, good)
        healed = flows.wait("basic", ("Completed",), timeout=FLOW_TIMEOUT)
        assert healed["status"]["result"] == 42
        assert_operator_up(operator, before)
    finally:
        workers.stop()
        drop_keys(redis_sentinel, f"*{redis_prefix}*")
