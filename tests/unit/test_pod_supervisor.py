"""The test harness's stand-in kubelet gives a deleted pod's process the grace period the
deleter asked for, also when it first sees the pod in kwok's grace-0 confirmation."""

from __future__ import annotations

import pytest
from kubernetes.client import V1ObjectMeta, V1Pod, V1PodSpec

from tests.harness.pods import DEFAULT_GRACE_SECONDS, termination_grace

pytestmark = pytest.mark.unit


def pod(spec_grace: int | None, deletion_grace: int | None) -> V1Pod:
    return V1Pod(
        metadata=V1ObjectMeta(name="p", deletion_grace_period_seconds=deletion_grace),
        spec=V1PodSpec(containers=[], termination_grace_period_seconds=spec_grace),
    )


@pytest.mark.parametrize(
    ("spec_grace", "deletion_grace", "expected"),
    [
        (60, None, 60.0),  # not deleted (yet)
        (60, 60, 60.0),  # deleted by its ReplicaSet: the pod's own grace
        (60, 5, 5.0),  # deleted with a shorter grace
        (60, 0, 60.0),  # kwok's grace-0 confirmation, seen before the deleter's 60
        (None, None, DEFAULT_GRACE_SECONDS),
    ],
)
def test_termination_grace(spec_grace: int | None, deletion_grace: int | None, expected: float):
    assert termination_grace(pod(spec_grace, deletion_grace), DEFAULT_GRACE_SECONDS) == expected
