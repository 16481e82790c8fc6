"""One WorkerPool turn, decided (services/workerpool_decision.py): every branch, as a table.

Each row: what the turn read (an Observed, built from a few overrides), and what it must do:
the replicas, the Event, the Deployment apply, the conditions, the status write, the next poll.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from bullflow.models.common import Condition
from bullflow.models.workerpool import Backlog, WorkerPoolSpec, WorkerPoolStatus
from bullflow.services.scaling import Stabilizer
from bullflow.services.worker_deployment import (
    ManagedSecret,
    ScaleState,
    build_deployment,
    deployment_digest,
)
from bullflow.services.workerpool_decision import (
    Applied,
    Observed,
    Turn,
    Unavailable,
    decide_turn,
    status_write_due,
)

WALL = "2026-01-02T03:04:05Z"
NOW = 1000.0
SCALING = {"maxReplicas": 5, "jobsPerReplica": 10, "scaleDownStabilizationSeconds": 0}


def spec(scaling: dict[str, Any] | None = None, **extra: Any) -> WorkerPoolSpec:
    target = {} if "scaleTargetRef" in extra else {"worker": {"processor": "m:f"}}
    return WorkerPoolSpec.model_validate(
        {"queues": ["q"], "scaling": {**SCALING, **(scaling or {})}, **target, **extra}
    )


def scale(replicas: int, ready: int | None = None, generation: int = 1) -> ScaleState:
    ready = replicas if ready is None else ready
    return ScaleState("Deployment", "pool-workers", replicas, ready, "p=pool", generation)


def observed(**kw: Any) -> Observed:
    base: dict[str, Any] = {
        "namespace": "ns",
        "name": "pool",
        "uid": "uid-1",
        "generation": 3,
        "status": WorkerPoolStatus(),
        "spec": spec(),
        "scale": scale(0),
        "backlog": Backlog(),
    }
    return Observed(**{**base, **kw})


def applied_for(seen: Observed, replicas: int, generation: int = 1) -> Applied:
    """What the loop remembers after applying this spec at `replicas`."""
    assert seen.spec is not None
    body = build_deployment(seen.namespace, seen.name, seen.uid, seen.spec, replicas, seen.secret)
    return Applied(deployment_digest(body), generation)


def cond(turn_status: WorkerPoolStatus, type_: str) -> tuple[str, str] | None:
    c = next((c for c in turn_status.conditions if c.type == type_), None)
    return (c.status, c.reason) if c else None


def down_window_history() -> Stabilizer:
    """Five replicas recommended 10 s ago: a 60 s down window still holds them."""
    return Stabilizer(deque([(NOW - 10, 5), (NOW - 10, 5)]))


READ = ("True", "BacklogRead")
BOUNDED = ("False", "WithinBounds")
UP = ("True", "ReplicasReady")


@dataclass
class Row:
    seen: Observed
    desired: int | None = None  # None: no rescale this turn
    event: str | None = None  # ScaledUp / ScaledDown
    ready: tuple[str, str] | None = UP  # Ready as written (after reported(ready=desired))
    active: tuple[str, str] | None = READ  # ScalingActive
    limited: tuple[str, str] | None = BOUNDED  # ScalingLimited
    force: bool = False  # (a rescale: forced when the replicas change)
    poll: float = 5.0
    apply: str | None = "apply"  # None, "apply", "revert" (a hand edit restored)
    set_replicas: bool = False
    steer: bool = False
    reason: str = ""  # a piece of the scale reason / the Ready message
    extra: dict[str, Any] = field(default_factory=dict)


ROWS: dict[str, Row] = {
    # -- nothing to scale ----------------------------------------------------------------------
    "invalid spec: Ready=False InvalidSpec, written at once, retried in 60 s": Row(
        observed(spec=None, invalid_spec="spec.queues: required", scale=None, backlog=None),
        ready=("False", "InvalidSpec"),
        active=None,
        limited=None,
        force=True,
        poll=60.0,
    ),
    "scaleTargetRef missing: Ready=False ScaleTargetNotFound, not forced": Row(
        observed(spec=spec(scaleTargetRef={"name": "mine"}), scale=None, backlog=None),
        ready=("False", "ScaleTargetNotFound"),
        active=None,
        limited=None,
        reason="Deployment ns/mine does not exist",
        extra={"target": "Deployment/mine", "replicas": None},
    ),
    "foreign Secret under the managed name: Ready=False SecretConflict, no apply": Row(
        observed(backlog=Backlog(waiting=30), secret_conflict="Secret ns/x is not ours"),
        ready=("False", "SecretConflict"),
        force=True,
        extra={"desired_replicas": 3},
    ),
    # -- the owned Deployment -------------------------------------------------------------------
    "owned Deployment missing: created (from 0 replicas)": Row(
        observed(scale=None, backlog=Backlog(waiting=1)),
        desired=1,
        event="ScaledUp",
    ),
    "up to date, no backlog: nothing applied, nothing forced": Row(
        replace(o := observed(), applied=applied_for(o, 0)),
        apply=None,
        desired=0,
    ),
    "spec changed (another digest): applied, not an edit": Row(
        observed(applied=Applied("old-digest", 1)),
        desired=0,
    ),
    "hand edit (same digest, generation moved): applied back": Row(
        replace(o := observed(scale=scale(0, generation=2)), applied=applied_for(o, 0, 1)),
        desired=0,
        apply="revert",
    ),
    "replicas changed by hand (same digest and generation): applied": Row(
        replace(o := observed(scale=scale(2)), applied=applied_for(observed(), 2)),
        desired=0,
        event="ScaledDown",
        steer=True,
    ),
    "the default-URL Secret's version reaches the Deployment": Row(
        observed(secret=ManagedSecret("pool-workers-redis", "42"), backlog=Backlog(waiting=5)),
        desired=1,
        event="ScaledUp",
        extra={"secret_version": "42"},
    ),
    # -- the backlog ----------------------------------------------------------------------------
    "scale up: ceil(backlog / jobsPerReplica)": Row(
        observed(scale=scale(1), backlog=Backlog(waiting=20, active=10, delayed_due=5)),
        desired=4,
        event="ScaledUp",
        reason="backlog 35 / jobsPerReplica 10 = 4",
    ),
    "scale down at once without a window: busy pods spared first": Row(
        observed(scale=scale(4), backlog=Backlog(active=10)),
        desired=1,
        event="ScaledDown",
        steer=True,
    ),
    "scale down held by the down window": Row(
        observed(
            spec=spec({"scaleDownStabilizationSeconds": 60}),
            scale=scale(5),
            backlog=Backlog(),
            stabilizer=down_window_history(),
        ),
        desired=5,
        reason="holding 5 for scaleDownStabilizationSeconds 60",
    ),
    "scale up held by the up window": Row(
        observed(
            spec=spec({"scaleUpStabilizationSeconds": 30}),
            scale=scale(1),
            backlog=Backlog(waiting=50),
            stabilizer=Stabilizer(deque([(NOW - 5, 1)])),
        ),
        desired=1,
        reason="holding 1 for scaleUpStabilizationSeconds 30",
    ),
    "clamped to maxReplicas: ScalingLimited TooManyReplicas": Row(
        observed(backlog=Backlog(waiting=1000)),
        desired=5,
        event="ScaledUp",
        limited=("True", "TooManyReplicas"),
    ),
    "raised to minReplicas: ScalingLimited TooFewReplicas": Row(
        observed(spec=spec({"minReplicas": 3}), scale=scale(3), backlog=Backlog(waiting=5)),
        desired=3,
        limited=("True", "TooFewReplicas"),
    ),
    "paused and waiting-children jobs are no backlog: zero replicas": Row(
        observed(scale=scale(2), backlog=Backlog(paused=50, waiting_children=9, delayed=7)),
        desired=0,
        event="ScaledDown",
        steer=True,
    ),
    "from zero, a backlog under activationBacklog wakes nobody": Row(
        observed(spec=spec({"activationBacklog": 5}), backlog=Backlog(waiting=5)),
        desired=0,
    ),
    # -- the backlog unknown ----------------------------------------------------------------------
    "connection unresolved: replicas kept, ScalingActive=False": Row(
        observed(
            scale=scale(2),
            backlog=None,
            unavailable=Unavailable("ConnectionSecretNotFound", "Secret ns/s not found"),
            stabilizer=down_window_history(),
        ),
        desired=2,
        active=("False", "ConnectionSecretNotFound"),
        extra={"stabilizer_reset": True},
    ),
    "Redis down with fallbackReplicas: the fallback": Row(
        observed(
            spec=spec({"fallbackReplicas": 1}),
            scale=scale(3),
            backlog=None,
            unavailable=Unavailable("RedisUnavailable", "Redis at redis://h is unreachable"),
        ),
        desired=1,
        event="ScaledDown",
        active=("False", "RedisUnavailable"),
        steer=True,
        reason="RedisUnavailable: using fallbackReplicas 1",
    ),
    # -- a workload the user owns ---------------------------------------------------------------
    "scaleTargetRef: replicas set through its scale subresource": Row(
        observed(
            spec=spec(scaleTargetRef={"kind": "StatefulSet", "name": "node"}),
            scale=ScaleState("StatefulSet", "node", 0, 0, "app=node", 1),
            backlog=Backlog(waiting=15),
        ),
        apply=None,
        desired=2,
        event="ScaledUp",
        set_replicas=True,
        extra={"target": "StatefulSet/node"},
    ),
    "scaleTargetRef at its target: left alone": Row(
        observed(
            spec=spec(scaleTargetRef={"name": "node"}),
            scale=ScaleState("Deployment", "node", 2, 2, "app=node", 1),
            backlog=Backlog(waiting=15),
        ),
        apply=None,
        desired=2,
    ),
}


@pytest.mark.parametrize("name", list(ROWS))
def test_turn(name: str) -> None:
    row = ROWS[name]
    turn = decide_turn(row.seen, NOW, WALL)
    assert turn.poll_seconds == row.poll
    assert turn.status.observed_generation == 3
    plan = turn.rescale
    if row.desired is None:
        assert plan is None
        assert turn.force_status is row.force
        written = turn.status
    else:
        assert plan is not None
        assert turn.force_status is (row.event is not None)
        assert plan.desired == row.desired, plan.reason
        assert (plan.event or (None,))[0] == row.event
        assert plan.steer_deletion is row.steer
        assert plan.set_replicas is row.set_replicas
        apply = plan.deployment
        assert (None if apply is None else "revert" if apply.reverts_edit else "apply") == row.apply
        written = turn.reported(ready_replicas=row.desired)
        assert written.replicas == written.ready_replicas == row.desired
        assert turn.status.desired_replicas == row.desired
        changed = row.desired != plan.current
        assert (written.last_scale_time == WALL) is changed
        assert row.reason in plan.reason or not row.reason
    assert cond(written, "Ready") == row.ready
    assert cond(written, "ScalingActive") == row.active
    assert cond(written, "ScalingLimited") == row.limited
    if row.desired is None and row.reason:
        assert row.reason in next(c.message for c in written.conditions if c.type == "Ready")
    check_extra(row, turn)


def check_extra(row: Row, turn: Turn) -> None:
    extra = row.extra
    if "target" in extra:
        assert turn.status.target == extra["target"]
    if "replicas" in extra:
        assert turn.status.replicas is None and turn.status.ready_replicas is None
    if "desired_replicas" in extra:
        assert turn.status.desired_replicas == extra["desired_replicas"]
        assert turn.stabilizer.history, "the stabilizer was fed"
    if "secret_version" in extra:
        assert turn.rescale is not None and turn.rescale.deployment is not None
        template = turn.rescale.deployment.body["spec"]["template"]
        assert template["metadata"]["annotations"] == {
            "bullflow.io/connection-secret-version": extra["secret_version"]
        }
    if extra.get("stabilizer_reset"):
        assert not turn.stabilizer.history


def test_the_backlog_read_is_the_status_backlog() -> None:
    backlog = Backlog(waiting=3, delayed=4, delayed_due=1)
    turn = decide_turn(observed(backlog=backlog), NOW, WALL)
    assert turn.status.backlog == backlog and turn.status.backlog.total == 4


def test_the_observed_stabilizer_is_not_changed() -> None:
    stab = Stabilizer()
    seen = observed(stabilizer=stab, backlog=Backlog(waiting=10))
    turn = decide_turn(seen, NOW, WALL)
    assert not stab.history and turn.stabilizer.history and turn.stabilizer is not stab


def test_ready_counts_ready_replicas_after_the_rescale() -> None:
    turn = decide_turn(observed(scale=scale(0), backlog=Backlog(waiting=30)), NOW, WALL)
    status = turn.reported(ready_replicas=1)
    assert cond(status, "Ready") == ("False", "ReplicasNotReady")
    assert next(c.message for c in status.conditions if c.type == "Ready") == "1/3 replicas ready"


def test_the_event_names_the_workload_and_why() -> None:
    turn = decide_turn(observed(scale=scale(1), backlog=Backlog(waiting=20)), NOW, WALL)
    assert turn.rescale is not None
    assert turn.rescale.event == (
        "ScaledUp",
        "Deployment/pool-workers 1 -> 2: backlog 20 / jobsPerReplica 10 = 2",
    )
    assert turn.status.last_scale_reason == "1 -> 2: backlog 20 / jobsPerReplica 10 = 2"


def test_an_unchanged_condition_keeps_its_transition_time() -> None:
    before = Condition(
        type="ScalingActive", status="True", reason="BacklogRead", last_transition_time="then"
    )
    turn = decide_turn(observed(status=WorkerPoolStatus(conditions=[before])), NOW, WALL)
    active = next(c for c in turn.status.conditions if c.type == "ScalingActive")
    assert active.last_transition_time == "then"
    limited = next(c for c in turn.status.conditions if c.type == "ScalingLimited")
    assert limited.last_transition_time == WALL


A = WorkerPoolStatus(replicas=1, backlog=Backlog(waiting=1))
A_MORE = A.model_copy(update={"backlog": Backlog(waiting=2)})
B = A.model_copy(update={"replicas": 2})


@pytest.mark.parametrize(
    ("new", "written_at", "now", "force", "due"),
    [
        (A, None, 0.5, False, True),  # never written by this loop: always
        (A, 10.0, 50.0, True, False),  # the same as written: never, even forced
        (A_MORE, 10.0, 10.5, False, False),  # only the backlog moved, within the interval
        (A_MORE, 10.0, 11.0, False, True),  # ... after it
        (A_MORE, 10.0, 10.5, True, True),  # ... forced
        (B, 10.0, 10.1, False, True),  # something else moved
    ],
)
def test_status_write_due(
    new: WorkerPoolStatus, written_at: float | None, now: float, force: bool, due: bool
) -> None:
    assert status_write_due(new, A, written_at, now, force) is due
