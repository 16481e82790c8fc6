"""Why a WorkerPool's pods are not ready (services/pod_problems.py), and how the Ready
condition says it (workerpool_decision.Turn.reported)."""

from __future__ import annotations

import pytest

from bullflow.models.workerpool import Backlog, WorkerPoolSpec, WorkerPoolStatus
from bullflow.services.pod_problems import ContainerWaiting, PodProblem, pod_problem
from bullflow.services.scaling import Stabilizer
from bullflow.services.worker_deployment import ScaleState
from bullflow.services.workerpool_decision import Applied, Observed, Turn, decide_turn

NEVER_PULL = (
    'Container image "localhost/bullflow-worker:nope" is not present with pull policy of Never'
)


def waiting(
    pod: str, reason: str, message: str = "", container: str = "worker"
) -> ContainerWaiting:
    return ContainerWaiting(pod, container, reason, message)


def test_no_waiting_container_is_no_problem() -> None:
    assert pod_problem([]) is None


@pytest.mark.parametrize("reason", ["ContainerCreating", "PodInitializing", ""])
def test_a_container_that_is_only_starting_is_no_problem(reason: str) -> None:
    assert pod_problem([waiting("p-1", reason)]) is None


@pytest.mark.parametrize(
    "reason",
    [
        "ErrImageNeverPull",
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "CrashLoopBackOff",
    ],
)
def test_a_stuck_container_is_named_with_the_kubelets_reason(reason: str) -> None:
    problem = pod_problem([waiting("p-1", reason, "why it is stuck")])
    assert problem == PodProblem(reason, f"pod p-1: container worker: {reason}: why it is stuck")


def test_an_image_problem_comes_before_a_crash_loop_and_counts_its_pods() -> None:
    problem = pod_problem(
        [
            waiting("p-a", "CrashLoopBackOff", "back-off"),
            waiting("p-c", "ErrImageNeverPull", NEVER_PULL),
            waiting("p-b", "ErrImageNeverPull", NEVER_PULL),
            waiting("p-d", "ContainerCreating"),
        ]
    )
    assert problem is not None and problem.reason == "ErrImageNeverPull"
    assert (
        problem.message
        == f"pod p-b (and 1 more pods): container worker: ErrImageNeverPull: {NEVER_PULL}"
    )


def test_a_long_kubelet_message_is_cut_and_an_empty_one_replaced_by_the_reason() -> None:
    long = pod_problem([waiting("p", "ErrImagePull", "x" * 5000)])
    assert long is not None and len(long.message) < 400
    empty = pod_problem([waiting("p", "ErrImagePull", "  ")])
    assert empty is not None and empty.message.endswith("ErrImagePull: ErrImagePull")


def turn_of_a_pool_scaling_to_one() -> Turn:
    seen = Observed(
        "ns",
        "pool",
        "uid-1",
        3,
        WorkerPoolStatus(),
        Stabilizer(),
        Applied(),
        spec=WorkerPoolSpec.model_validate(
            {"queues": ["q"], "worker": {"processor": "m:f"}, "scaling": {"minReplicas": 1}}
        ),
        scale=ScaleState("Deployment", "pool-workers", 1, 0, "p=pool", 1),
        backlog=Backlog(),
    )
    return decide_turn(seen, 1000.0, "2026-01-02T03:04:05Z")


def ready_condition(status: WorkerPoolStatus) -> tuple[str, str, str]:
    c = next(c for c in status.conditions if c.type == "Ready")
    return c.status, c.reason, c.message


def test_ready_says_why_the_pods_are_not_ready() -> None:
    problem = pod_problem([waiting("pool-workers-x", "ErrImageNeverPull", NEVER_PULL)])
    status = turn_of_a_pool_scaling_to_one().reported(0, problem)
    assert ready_condition(status) == (
        "False",
        "ErrImageNeverPull",
        "0/1 replicas ready; pod pool-workers-x: container worker: ErrImageNeverPull: "
        + NEVER_PULL,
    )


def test_ready_pods_are_ready_whatever_another_pod_says() -> None:
    problem = pod_problem([waiting("pool-workers-old", "CrashLoopBackOff", "back-off")])
    status = turn_of_a_pool_scaling_to_one().reported(1, problem)
    assert ready_condition(status) == ("True", "ReplicasReady", "1/1 replicas ready")


def test_without_a_problem_not_ready_is_replicas_not_ready() -> None:
    status = turn_of_a_pool_scaling_to_one().reported(0)
    assert ready_condition(status) == ("False", "ReplicasNotReady", "0/1 replicas ready")
