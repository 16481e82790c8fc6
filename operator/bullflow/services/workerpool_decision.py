"""One turn of a WorkerPool's loop, decided: what to do, from what the turn read (pure, no I/O).

controllers/workerpool.py reads the pool's state into an `Observed`, calls `decide_turn` with the
clock, and carries out the `Turn` it gets back: the replica count, the owned Deployment to apply
(or the scale target's replicas to set), whether to steer pod deletion first, the Event, the
status to write and when to turn again. Table-tested in tests/unit/test_workerpool_decision.py.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

from ..models.workerpool import Backlog, WorkerPoolSpec, WorkerPoolStatus
from .conditions import set_condition
from .pod_problems import PodProblem
from .scaling import Stabilizer, decide, fallback
from .worker_deployment import (
    ManagedSecret,
    ScaleState,
    build_deployment,
    deployment_digest,
    scale_target,
)

INVALID_SPEC_RETRY_SECONDS = 60.0
# Status writes where only the backlog numbers moved are coalesced to one per this many seconds.
STATUS_MIN_INTERVAL = 1.0


@dataclass(frozen=True)
class Unavailable:
    """Why the backlog could not be read this turn (a condition reason and message)."""

    reason: str
    message: str


@dataclass(frozen=True)
class Applied:
    """The owned Deployment as this loop last applied it: its digest and the generation the
    API server gave it (a later generation with the same digest is someone's hand edit)."""

    digest: str | None = None
    generation: int | None = None


@dataclass(frozen=True)
class Observed:
    """What one turn read. Without `spec` (invalid: `invalid_spec` says why) nothing else was
    read; without `scale` for a scaleTargetRef pool neither backlog nor Secret was."""

    namespace: str
    name: str
    uid: str
    generation: int | None
    status: WorkerPoolStatus  # as last written
    # What the loop remembers from its earlier turns.
    stabilizer: Stabilizer = field(default_factory=Stabilizer)
    applied: Applied = Applied()
    # This turn's reads.
    spec: WorkerPoolSpec | None = None
    invalid_spec: str = ""
    scale: ScaleState | None = None  # the workload; None: it does not exist
    backlog: Backlog | None = None
    unavailable: Unavailable | None = None  # set when `backlog` is None
    secret: ManagedSecret | None = None  # the default-URL Secret the workers read
    secret_conflict: str = ""  # a foreign Secret holds its name: why the pool cannot run


@dataclass(frozen=True)
class DeploymentApply:
    """Server-side apply the owned Deployment (missing, changed, edited or rescaled)."""

    body: dict[str, Any]
    digest: str
    reverts_edit: bool  # the spec is unchanged but the Deployment's generation moved
    seen_generation: int | None  # the Deployment's generation before the apply


@dataclass(frozen=True)
class Rescale:
    """Bring the workload to `desired` replicas (also when it is there already: the owned
    Deployment may need applying all the same)."""

    kind: str
    name: str
    current: int
    desired: int
    reason: str
    generation: int | None
    # Before scaling down: pod-deletion-cost from each worker's active jobs, idle pods first.
    steer_deletion: bool
    deployment: DeploymentApply | None  # None: not owned, or up to date
    set_replicas: bool  # a scaleTargetRef workload: through its scale subresource

    @property
    def event(self) -> tuple[str, str] | None:
        """(reason, message) of the Event a replica change makes, or None."""
        if self.desired == self.current:
            return None
        reason = "ScaledUp" if self.desired > self.current else "ScaledDown"
        return reason, f"{self.kind}/{self.name} {self.current} -> {self.desired}: {self.reason}"


@dataclass(frozen=True)
class Turn:
    """What to do. With `rescale`, carry it out, then write `reported(ready replicas)`;
    without, write `status` as it is."""

    status: WorkerPoolStatus
    force_status: bool  # write it even if only the backlog moved within STATUS_MIN_INTERVAL
    poll_seconds: float  # the longest wait before the next turn
    stabilizer: Stabilizer
    wall: str  # the time the turn was decided at (RFC 3339)
    rescale: Rescale | None = None

    def reported(self, ready_replicas: int, problem: PodProblem | None = None) -> WorkerPoolStatus:
        """The status after the rescale: replicas, readiness and the Ready condition, whose
        reason is the pods' `problem` (e.g. ErrImageNeverPull) when they are not ready."""
        assert self.rescale is not None
        desired = self.rescale.desired
        ready = ready_replicas >= desired
        status = self.status.model_copy(deep=True)
        status.replicas = desired
        status.ready_replicas = ready_replicas
        reason = "ReplicasReady" if ready else "ReplicasNotReady"
        message = f"{ready_replicas}/{desired} replicas ready"
        if not ready and problem is not None:
            reason, message = problem.reason, f"{message}; {problem.message}"
        status.conditions = set_condition(
            status.conditions, "Ready", ready, reason, message, self.rescale.generation, self.wall
        )
        return status


def decide_turn(seen: Observed, now: float, wall: str) -> Turn:
    """`now`: monotonic seconds (stabilization windows); `wall`: RFC 3339 (status times)."""
    status = seen.status.model_copy(deep=True)
    status.observed_generation = seen.generation
    spec = seen.spec
    if spec is None:
        return _halt(
            seen, status, "InvalidSpec", seen.invalid_spec, INVALID_SPEC_RETRY_SECONDS, wall
        )
    poll = float(spec.scaling.poll_interval_seconds)
    kind, name = scale_target(seen.name, spec)
    status.target = f"{kind}/{name}"
    if seen.scale is None and spec.worker is None:
        status.replicas = status.ready_replicas = None
        message = f"{kind} {seen.namespace}/{name} does not exist"
        halt = _halt(seen, status, "ScaleTargetNotFound", message, poll, wall)
        return replace(halt, force_status=False)
    current = seen.scale.replicas if seen.scale is not None else 0
    stabilizer, desired, reason = _replicas(seen, spec, status, current, now, wall)
    status.desired_replicas = desired
    if seen.secret_conflict:
        halt = _halt(seen, status, "SecretConflict", seen.secret_conflict, poll, wall)
        return replace(halt, stabilizer=stabilizer)
    if desired != current:
        status.last_scale_time = wall
        status.last_scale_reason = f"{current} -> {desired}: {reason}"
    rescale = Rescale(
        kind=kind,
        name=name,
        current=current,
        desired=desired,
        reason=reason,
        generation=seen.generation,
        steer_deletion=desired < current and seen.scale is not None,
        deployment=_deployment_apply(seen, spec, desired),
        set_replicas=spec.worker is None and desired != current,
    )
    return Turn(status, desired != current, poll, stabilizer, wall, rescale)


def _halt(
    seen: Observed, status: WorkerPoolStatus, reason: str, message: str, poll: float, wall: str
) -> Turn:
    """Nothing to scale: Ready=False with why, written at once."""
    status.conditions = set_condition(
        status.conditions, "Ready", False, reason, message, seen.generation, wall
    )
    return Turn(status, True, poll, seen.stabilizer, wall)


def _replicas(
    seen: Observed,
    spec: WorkerPoolSpec,
    status: WorkerPoolStatus,
    current: int,
    now: float,
    wall: str,
) -> tuple[Stabilizer, int, str]:
    """(the stabilizer to keep, the replicas, why), from the backlog or, when it could not be
    read, the fallback; sets ScalingActive, ScalingLimited and the backlog in `status`."""
    policy = spec.scaling
    limited: str | None = None
    limited_message = ""
    if seen.backlog is None:
        assert seen.unavailable is not None
        stabilizer = Stabilizer()  # the history is void across an outage
        desired = fallback(current, policy)
        how = (
            f"using fallbackReplicas {policy.fallback_replicas}"
            if policy.fallback_replicas is not None
            else f"keeping {current} replicas"
        )
        cause = seen.unavailable.reason
        active = (False, cause, f"{seen.unavailable.message}; {how}")
        reason = f"{cause}: {how}"
    else:
        stabilizer = Stabilizer(deque(seen.stabilizer.history))
        decision = decide(stabilizer, now, seen.backlog.total, current, policy)
        desired, reason = decision.replicas, decision.reason
        limited = decision.recommendation.limited
        limited_message = decision.recommendation.reason if limited else ""
        status.backlog = seen.backlog
        queues = ", ".join(spec.queues)
        active = (True, "BacklogRead", f"backlog {seen.backlog.total} on {queues}")
    status.conditions = set_condition(
        status.conditions, "ScalingActive", *active, seen.generation, wall
    )
    status.conditions = set_condition(
        status.conditions,
        "ScalingLimited",
        limited is not None,
        limited or "WithinBounds",
        limited_message,
        seen.generation,
        wall,
    )
    return stabilizer, desired, reason


def _deployment_apply(
    seen: Observed, spec: WorkerPoolSpec, replicas: int
) -> DeploymentApply | None:
    """The owned Deployment to apply: when it is missing, differs from what this loop applied
    (its generation moved: someone edited it), or needs other replicas. None: up to date."""
    if spec.worker is None:
        return None
    body = build_deployment(seen.namespace, seen.name, seen.uid, spec, replicas, seen.secret)
    digest = deployment_digest(body)
    scale, applied = seen.scale, seen.applied
    if scale is None:
        return DeploymentApply(body, digest, False, None)
    same_spec = digest == applied.digest
    if same_spec and scale.generation == applied.generation and scale.replicas == replicas:
        return None
    edited = same_spec and applied.generation is not None and scale.generation != applied.generation
    return DeploymentApply(body, digest, edited, scale.generation)


def status_write_due(
    new: WorkerPoolStatus,
    written: WorkerPoolStatus,
    written_at: float | None,
    now: float,
    force: bool,
) -> bool:
    """Write `new`? Not if the last write (at monotonic `written_at`; None: none yet) holds it
    already; not if only the backlog numbers moved within STATUS_MIN_INTERVAL, unless forced."""
    if written_at is None:
        return True
    if new == written:
        return False
    only_backlog = new.model_copy(update={"backlog": None}) == written.model_copy(
        update={"backlog": None}
    )
    return force or not only_backlog or now - written_at >= STATUS_MIN_INTERVAL
