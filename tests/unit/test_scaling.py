"""Scaling math: recommendation, clamping, activation, stabilization windows (table-driven)."""

from __future__ import annotations

import pytest

from bullflow.models.workerpool import Backlog, Scaling
from bullflow.services.scaling import (
    Stabilizer,
    decide,
    deletion_costs,
    fallback,
    recommend,
)


def policy(**kw: int | None) -> Scaling:
    return Scaling.model_validate(
        {
            "minReplicas": 0,
            "maxReplicas": 5,
            "jobsPerReplica": 10,
            "scaleUpStabilizationSeconds": 0,
            "scaleDownStabilizationSeconds": 0,
            **{k: v for k, v in kw.items()},
        }
    )


def test_backlog_counts_what_a_worker_can_take_now() -> None:
    c = Backlog(
        waiting=3, prioritized=2, delayed=10, delayed_due=4, active=5, waiting_children=7, paused=9
    )
    assert c.total == 3 + 2 + 4 + 5
    both = c + Backlog(waiting=1, paused=1)
    assert (both.total, both.waiting, both.paused, both.delayed) == (c.total + 1, 4, 10, 10)
    assert sum([], Backlog()).total == 0
    # Read back from a status: the total is the counts' own, whatever was written.
    assert Backlog.model_validate({"waiting": 2, "total": 99}).total == 2


@pytest.mark.parametrize(
    ("backlog", "current", "kw", "replicas", "limited"),
    [
        (0, 0, {}, 0, None),
        (0, 3, {}, 0, None),
        (0, 3, {"minReplicas": 1}, 1, None),
        (1, 0, {}, 1, None),
        (10, 0, {}, 1, None),
        (11, 0, {}, 2, None),
        (49, 1, {}, 5, None),
        (51, 1, {}, 5, "TooManyReplicas"),
        (1000, 0, {}, 5, "TooManyReplicas"),
        (5, 0, {"minReplicas": 2}, 2, "TooFewReplicas"),
        (7, 0, {"jobsPerReplica": 1}, 5, "TooManyReplicas"),
        (3, 0, {"jobsPerReplica": 1}, 3, None),
        # activation only applies from zero replicas
        (5, 0, {"activationBacklog": 5}, 0, None),
        (6, 0, {"activationBacklog": 5}, 1, None),
        (5, 2, {"activationBacklog": 5}, 1, None),
        (0, 0, {"minReplicas": 3, "maxReplicas": 3}, 3, None),
    ],
)
def test_recommend(
    backlog: int, current: int, kw: dict, replicas: int, limited: str | None
) -> None:
    rec = recommend(backlog, current, policy(**kw))
    assert (rec.replicas, rec.limited) == (replicas, limited), rec.reason


# Each scenario: policy overrides, start replicas, then (time, backlog, expected replicas) steps,
# where each step's current replicas is the previous step's result.
SCENARIOS = {
    "up at once, down at once without windows": (
        {},
        0,
        [(0, 35, 4), (1, 0, 0), (2, 12, 2)],
    ),
    "down waits for the down window (max of window)": (
        {"scaleDownStabilizationSeconds": 30},
        0,
        [
            (0, 50, 5),
            (5, 0, 5),
            (20, 10, 5),
            (29, 0, 5),
            (34, 0, 5),
            (36, 0, 1),
            (58, 0, 1),
            (60, 0, 0),
        ],
    ),
    "a burst inside the down window resets it": (
        {"scaleDownStabilizationSeconds": 10},
        0,
        [(0, 20, 2), (5, 0, 2), (9, 20, 2), (15, 0, 2), (24, 0, 2), (25, 0, 0)],
    ),
    "up waits for the up window (min of window)": (
        {"scaleUpStabilizationSeconds": 10},
        1,
        [(0, 10, 1), (3, 50, 1), (11, 50, 1), (14, 50, 5)],
    ),
    "up window: a dip resets it": (
        {"scaleUpStabilizationSeconds": 5},
        0,
        [(0, 30, 0), (6, 30, 3), (7, 50, 3), (8, 0, 0), (9, 50, 0), (15, 50, 5)],
    ),
    "scale up is never delayed by the down window": (
        {"scaleDownStabilizationSeconds": 300},
        1,
        [(0, 10, 1), (1, 40, 4), (2, 50, 5), (3, 0, 5)],
    ),
    "min and max still bound a stabilized decision": (
        {"minReplicas": 1, "maxReplicas": 3, "scaleDownStabilizationSeconds": 5},
        0,
        [(0, 0, 1), (1, 100, 3), (2, 0, 3), (7, 0, 1)],
    ),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_stabilization_windows(name: str) -> None:
    kw, current, steps = SCENARIOS[name]
    p = policy(**kw)
    stab = Stabilizer()
    for t, backlog, expected in steps:
        decision = decide(stab, float(t), backlog, current, p)
        assert decision.replicas == expected, (name, t, backlog, decision.reason)
        current = decision.replicas


def test_stabilizer_forgets_old_recommendations() -> None:
    p = policy(scaleDownStabilizationSeconds=10)
    stab = Stabilizer()
    for t in range(100):
        stab.decide(float(t), 1, 1, p)
    assert len(stab.history) <= 12


@pytest.mark.parametrize(
    ("fallback_replicas", "current", "expected"),
    [(None, 3, 3), (None, 0, 0), (2, 0, 2), (2, 5, 2), (0, 4, 0)],
)
def test_fallback(fallback_replicas: int | None, current: int, expected: int) -> None:
    assert fallback(current, policy(fallbackReplicas=fallback_replicas)) == expected


def test_deletion_costs_prefer_idle_pods() -> None:
    costs = deletion_costs({"a": 3, "b": 0, "c": None}, ["a", "b", "c", "d"])
    assert costs == {"a": 3, "b": 0, "c": 0, "d": 0}
