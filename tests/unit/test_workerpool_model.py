"""WorkerPool model: validation mirrors the CRD's CEL rules; the CRD has its columns."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from bullflow.crdgen import all_crds, render
from bullflow.models.workerpool import WorkerPoolSpec

WORKER = {"processor": "bullflow_worker.processors:echo"}


def test_defaults() -> None:
    spec = WorkerPoolSpec.model_validate({"queues": ["a"], "worker": WORKER})
    assert spec.prefix == "bull"
    assert (spec.scaling.min_replicas, spec.scaling.max_replicas) == (0, 10)
    assert spec.scaling.scale_down_stabilization_seconds == 60
    assert spec.worker is not None and spec.worker.concurrency == 1
    assert spec.worker.termination_grace_period_seconds == 300


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"queues": ["a"]}, "exactly one of worker"),
        ({"queues": ["a"], "worker": WORKER, "scaleTargetRef": {"name": "d"}}, "exactly one of"),
        ({"queues": [], "worker": WORKER}, "at least 1"),
        ({"queues": ["a:b"], "worker": WORKER}, "pattern"),
        ({"queues": ["a"], "worker": {"processor": "nocolon"}}, "pattern"),
        (
            {"queues": ["a"], "worker": WORKER, "scaling": {"minReplicas": 3, "maxReplicas": 2}},
            "minReplicas must be <= scaling.maxReplicas",
        ),
        (
            {"queues": ["a"], "worker": WORKER, "scaling": {"fallbackReplicas": 11}},
            "fallbackReplicas must be <= scaling.maxReplicas",
        ),
        ({"queues": ["a"], "worker": WORKER, "scaling": {"jobsPerReplica": 0}}, "greater than"),
        ({"queues": ["a"], "worker": WORKER, "replicas": 3}, "Extra inputs"),
    ],
)
def test_invalid(body: dict, message: str) -> None:
    with pytest.raises(ValidationError) as err:
        WorkerPoolSpec.model_validate(body)
    assert message in str(err.value)


def test_scale_target_ref() -> None:
    spec = WorkerPoolSpec.model_validate({"queues": ["a", "b"], "scaleTargetRef": {"name": "w"}})
    assert spec.scale_target_ref is not None
    assert (spec.scale_target_ref.kind, spec.scale_target_ref.api_version) == (
        "Deployment",
        "apps/v1",
    )


def test_crd_has_cel_defaults_columns_and_short_name() -> None:
    crd = yaml.safe_load(render(all_crds()["workerpools.bullflow.io.yaml"]))
    assert crd["spec"]["names"]["shortNames"] == ["wpool"]
    assert crd["spec"]["names"]["categories"] == ["bullflow"]
    version = crd["spec"]["versions"][0]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert [r["message"] for r in spec["x-kubernetes-validations"]] == [
        "exactly one of worker (bullflow worker image) or scaleTargetRef is required"
    ]
    scaling = spec["properties"]["scaling"]
    assert scaling["default"]["maxReplicas"] == 10  # complete: CEL sees it as is
    assert scaling["properties"]["minReplicas"]["default"] == 0
    assert scaling["properties"]["maxReplicas"]["default"] == 10
    assert any("minReplicas" in r["rule"] for r in scaling["x-kubernetes-validations"])
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns[:5] == ["Queues", "Backlog", "Desired", "Replicas", "Ready"]
    assert version["subresources"] == {"status": {}}
