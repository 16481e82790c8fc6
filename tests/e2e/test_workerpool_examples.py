"""WorkerPool examples and admission: the apiserver accepts the examples and rejects invalid
pools with the CRD's CEL messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "workerpools"


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_example_is_accepted(example: str, flow_crds: None, kubectl: Any, namespace: str) -> None:
    kubectl("apply", "--dry-run=server", "-n", namespace, "-f", str(EXAMPLES / example))


def _pool(**spec: Any) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "bullflow.io/v1alpha1",
            "kind": "WorkerPool",
            "metadata": {"name": "bad"},
            "spec": {"queues": ["q"], **spec},
        }
    )


WORKER = {"processor": "m:f"}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({}, "exactly one of worker (bullflow worker image) or scaleTargetRef is required"),
        ({"worker": WORKER, "scaleTargetRef": {"name": "d"}}, "exactly one of worker"),
        (
            {"worker": WORKER, "scaling": {"minReplicas": 3, "maxReplicas": 2}},
            "scaling.minReplicas must be <= scaling.maxReplicas",
        ),
        (
            {"worker": WORKER, "scaling": {"minReplicas": 11}},
            "scaling.minReplicas must be <= scaling.maxReplicas",
        ),
        (
            {"worker": WORKER, "scaling": {"fallbackReplicas": 20}},
            "scaling.fallbackReplicas must be <= scaling.maxReplicas",
        ),
        ({"worker": {"processor": "no-colon"}}, "spec.worker.processor"),
    ],
)
def test_invalid_pool_is_rejected(
    spec: dict[str, Any], message: str, flow_crds: None, kubectl: Any, namespace: str
) -> None:
    proc = kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", input=_pool(**spec), check=False
    )
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr
