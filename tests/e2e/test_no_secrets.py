"""No Redis password anywhere the operator speaks: an e2e run against a password-protected
redis-server, then every operator log line, every Event of the namespace, every Flow,
WorkerPool and workload object (env included) and the /metrics page are searched for it.

The run makes the operator handle the password in every way it can: the default URL
(BULLFLOW_REDIS_URL) for Flows and for a WorkerPool's workers, a connection Secret, a Secret
with a wrong password (authentication errors in conditions, Events, kopf's retries), and a
Redis outage (connection errors in the tracker, the WorkerPool loops and a submission).
Secrets are not searched: they are where the password belongs.
"""

from __future__ import annotations

import base64
import json
import secrets
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.e2e.flows import Flows, load_example
from tests.e2e.operator_proc import OperatorProcess, WorkerSet
from tests.e2e.workerpool_support import Pools, condition, pool_doc
from tests.harness.cluster import LocalCluster
from tests.harness.redis import RedisServer

PREFIX = "nosecret"
WORKER = {"processor": "bullflow_worker.processors:echo"}
FAST = {"minReplicas": 1, "maxReplicas": 2, "pollIntervalSeconds": 1}


@pytest.fixture
def password() -> str:
    return f"bf-{secrets.token_hex(16)}"


@pytest.fixture
def wrong_password() -> str:
    return f"nope-{secrets.token_hex(16)}"


@pytest.fixture
def private_redis(tmp_path: Path, password: str) -> Iterator[RedisServer]:
    with RedisServer(tmp_path / "redis", password=password) as server:
        yield server


def flow_result_condition(flow: dict[str, Any]) -> dict[str, Any]:
    return next(
        (c for c in (flow.get("status") or {}).get("conditions", []) if c["type"] == "Ready"), {}
    )


def test_no_password_in_logs_events_objects_or_metrics(
    flow_crds: None,
    local_cluster: LocalCluster,
    kube_client: Any,
    kubectl: Any,
    private_namespace: str,
    private_redis: RedisServer,
    password: str,
    wrong_password: str,
    tmp_path: Path,
) -> None:
    namespace = private_namespace
    redis = private_redis
    assert password in redis.url
    wrong_url = redis.url.replace(password, wrong_password)
    core = client.CoreV1Api(kube_client)
    for name, url in (("good-redis", redis.url), ("bad-redis", wrong_url)):
        core.create_namespaced_secret(
            namespace,
            {
                "metadata": {"name": name},
                "data": {"url": base64.b64encode(url.encode()).decode()},
            },
        )
    (tmp_path / "operator").mkdir()
    operator = OperatorProcess(
        local_cluster.kubeconfig,
        redis.url,
        tmp_path / "operator",
        namespaces=[namespace],
        # --verbose: kopf's and bullflow's debug lines are searched too.
        launcher=("-m", "bullflow", "--verbose"),
    )
    (tmp_path / "workers").mkdir()
    workers = WorkerSet(redis.url, tmp_path / "workers")
    flows = Flows(kube_client, kubectl, namespace)
    pools = Pools(kube_client, kubectl, namespace)
    operator.start()
    try:
        workers.start("python", ["basic-parent", "basic-child"], PREFIX)

        # A Flow on the default (password) URL completes on a real worker.
        flows.apply(load_example("basic.yaml", PREFIX))
        done = flows.wait("basic", timeout=60)
        assert done["status"]["phase"] == "Completed" and done["status"]["result"] == 42, done

        # A Flow whose Secret has a wrong password: authentication errors, retried by kopf.
        bad = load_example("basic.yaml", PREFIX)
        bad["metadata"]["name"] = "bad-auth"
        bad["spec"]["connection"] = {"name": "bad-redis"}
        flows.apply(bad)
        flows.wait_for(
            "bad-auth",
            lambda f: flow_result_condition(f).get("reason") == "RedisAuthFailed",
            "RedisAuthFailed",
            30,
        )

        # WorkerPools: on the default URL (the operator's own Secret), on a Secret, and on the
        # wrong password (fallback replicas, with the error in conditions and Events).
        pools.apply(pool_doc("default-pool", ["pool-q"], PREFIX, worker=WORKER, scaling=FAST))
        pools.apply(
            pool_doc(
                "secret-pool",
                ["pool-q"],
                PREFIX,
                worker=WORKER,
                connection={"name": "good-redis"},
                scaling=FAST,
            )
        )
        pools.apply(
            pool_doc(
                "bad-pool",
                ["pool-q"],
                PREFIX,
                worker=WORKER,
                connection={"name": "bad-redis"},
                scaling={**FAST, "fallbackReplicas": 2},
            )
        )
        for name in ("default-pool", "secret-pool"):
            pools.wait_status(
                name,
                lambda s: condition(s, "ScalingActive").get("status") == "True",
                "ScalingActive",
                30,
            )
        pools.wait_status(
            "bad-pool",
            lambda s: (
                condition(s, "ScalingActive").get("reason") == "RedisAuthFailed"
                and s.get("replicas") == 2
            ),
            "fallback replicas on the wrong password",
            30,
        )

        # An outage: every connection fails; a Flow created meanwhile waits for Redis.
        redis.stop()
        during = load_example("basic.yaml", PREFIX)
        during["metadata"]["name"] = "during-outage"
        flows.apply(during)
        flows.wait_for(
            "during-outage",
            lambda f: flow_result_condition(f).get("reason") == "RedisUnavailable",
            "RedisUnavailable during the outage",
            30,
        )
        pools.wait_status(
            "default-pool",
            lambda s: condition(s, "ScalingActive").get("reason") == "RedisUnavailable",
            "RedisUnavailable during the outage",
            30,
        )
        redis.start()
        pools.wait_status(
            "default-pool",
            lambda s: condition(s, "ScalingActive").get("status") == "True",
            "ScalingActive after the outage",
            60,
        )
        flows.wait_for(
            "during-outage",
            lambda f: (f.get("status") or {}).get("phase") in ("Submitted", "Running", "Completed"),
            "submitted after the outage",
            60,
        )
        # The outage turned bad-pool's reason into RedisUnavailable; once Redis answers again the
        # status tells the truth again: the password is wrong.
        pools.wait_status(
            "bad-pool",
            lambda s: condition(s, "ScalingActive").get("reason") == "RedisAuthFailed",
            "RedisAuthFailed again after the outage",
            60,
        )
        metrics_text = _get(f"http://127.0.0.1:{operator.metrics_port}/metrics")
    finally:
        operator.stop()
        workers.stop()

    # What the operator said, and what the cluster holds (Secrets excepted).
    said = {
        "operator log": operator.log_text(),
        "Events": kubectl("get", "events", "-n", namespace, "-o", "json").stdout,
        "objects": kubectl(
            "get",
            "flows,workerpools,deployments,replicasets,pods,configmaps",
            "-n",
            namespace,
            "-o",
            "json",
        ).stdout,
        "/metrics": metrics_text,
        # The first line of a worker's log is the harness's own command line (--redis-url).
        "worker logs": "".join(
            p.read_text(errors="replace").partition("\n")[2]
            for p in sorted((tmp_path / "workers").glob("*.log"))
        ),
    }
    leaks = [
        f"{where}: {line.strip()[:300]}"
        for where, text in said.items()
        for line in text.splitlines()
        for secret in (password, wrong_password)
        if secret in line
    ]
    assert not leaks, "a Redis password was found in:\n" + "\n".join(leaks)

    # The search had something to search: the failures were reported, with the Redis named.
    shown = f"redis://127.0.0.1:{redis.port} is unreachable"
    refused = f"redis://127.0.0.1:{redis.port} refused the credentials"
    events = json.loads(said["Events"])["items"]
    assert any("RedisAuthFailed" in e["message"] for e in events), "\n".join(
        f"{e['type']} {e['reason']}: {e['message']}" for e in events
    )
    assert refused in said["objects"]  # conditions of bad-auth, bad-pool
    assert refused in said["operator log"]  # kopf's retries of bad-auth
    assert shown in said["operator log"]  # during-outage waiting for Redis
    assert "bullflow_workerpool_replicas" in metrics_text

    # The default URL reaches the workers through the operator's Secret, owned by the pool.
    deployment = client.AppsV1Api(kube_client).read_namespaced_deployment(
        "default-pool-workers", namespace
    )
    url_env = next(
        e for e in deployment.spec.template.spec.containers[0].env if e.name == "BULLFLOW_REDIS_URL"
    )
    assert url_env.value is None
    ref = url_env.value_from.secret_key_ref
    managed = core.read_namespaced_secret(ref.name, namespace)
    assert base64.b64decode(managed.data[ref.key]).decode() == redis.url
    assert managed.metadata.labels["app.kubernetes.io/managed-by"] == "bullflow"
    pool_uid = pools.get("default-pool")["metadata"]["uid"]
    assert [o.uid for o in managed.metadata.owner_references] == [pool_uid]
    print(
        f"\n[no secrets] searched {sum(len(t) for t in said.values())} bytes; "
        f"{len(events)} Events; managed Secret {ref.name}"
    )
    print(yaml.safe_dump({"searched": {k: len(v) for k, v in said.items()}}))


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())
