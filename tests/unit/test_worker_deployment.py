"""The owned worker Deployment: a pure function of the WorkerPool spec.

(How the Redis URL reaches the workers is tested in test_redaction.py.)"""

from __future__ import annotations

from typing import Any

from bullflow import __version__
from bullflow.models.workerpool import WorkerPoolSpec
from bullflow.services.worker_deployment import (
    POOL_LABEL,
    build_deployment,
    deployment_digest,
    scale_target,
)


def spec(worker: dict[str, Any] | None = None, **extra: Any) -> WorkerPoolSpec:
    return WorkerPoolSpec.model_validate(
        {"queues": ["a", "b"], "worker": {"processor": "m:f", **(worker or {})}, **extra}
    )


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    return deployment["spec"]["template"]["spec"]["containers"][0]  # type: ignore[no-any-return]


def test_runs_bullflow_worker_on_every_queue_owned_by_the_pool() -> None:
    dep = build_deployment("ns", "pool", "uid-1", spec({"concurrency": 3}, prefix="p"), 2, None)
    assert dep["metadata"]["name"] == "pool-workers"
    assert dep["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["selector"] == {"matchLabels": {POOL_LABEL: "pool"}}
    c = container(dep)
    assert c["image"] == f"ghcr.io/bullflow/worker:{__version__}"
    assert c["args"] == [
        *("--queue", "a", "--queue", "b", "--processor", "m:f", "--concurrency", "3"),
        *("--prefix", "p", "--http-port", "8080", "--activity-key"),
        *("p:bullflow:activity:$(POD_NAMESPACE):$(POD_NAME)", "--log-format", "json"),
    ]
    assert "imagePullPolicy" not in c and "resources" not in c
    pod = dep["spec"]["template"]["spec"]
    assert set(pod) == {"containers", "terminationGracePeriodSeconds"}


def test_optional_worker_fields_reach_the_pod() -> None:
    worker = {
        "image": "img:1",
        "imagePullPolicy": "Never",
        "args": ["--x"],
        "envFrom": [{"secretRef": {"name": "s"}}],
        "resources": {"limits": {"cpu": "1"}},
        "volumes": [{"name": "v", "emptyDir": {}}],
        "volumeMounts": [{"name": "v", "mountPath": "/v"}],
        "serviceAccountName": "sa",
        "nodeSelector": {"k": "v"},
        "tolerations": [{"operator": "Exists"}],
        "affinity": {"nodeAffinity": {}},
        "podLabels": {"team": "x", POOL_LABEL: "not-this"},
    }
    dep = build_deployment("ns", "pool", "uid-1", spec(worker), 0, None)
    c = container(dep)
    assert (c["image"], c["imagePullPolicy"], c["args"][-1]) == ("img:1", "Never", "--x")
    assert c["envFrom"] and c["resources"] and c["volumeMounts"]
    pod = dep["spec"]["template"]["spec"]
    assert (pod["serviceAccountName"], pod["nodeSelector"]) == ("sa", {"k": "v"})
    assert pod["volumes"] and pod["tolerations"] and pod["affinity"]
    assert dep["spec"]["template"]["metadata"]["labels"][POOL_LABEL] == "pool"  # ours win
    assert dep["spec"]["template"]["metadata"]["labels"]["team"] == "x"


def test_digest_follows_the_body() -> None:
    one = build_deployment("ns", "pool", "uid-1", spec(), 1, None)
    assert deployment_digest(one) == deployment_digest(
        build_deployment("ns", "pool", "uid-1", spec(), 1, None)
    )
    assert deployment_digest(one) != deployment_digest(
        build_deployment("ns", "pool", "uid-1", spec(), 2, None)
    )


def test_scale_target() -> None:
    assert scale_target("pool", spec()) == ("Deployment", "pool-workers")
    ref = WorkerPoolSpec.model_validate(
        {"queues": ["a"], "scaleTargetRef": {"kind": "StatefulSet", "name": "mine"}}
    )
    assert scale_target("pool", ref) == ("StatefulSet", "mine")
