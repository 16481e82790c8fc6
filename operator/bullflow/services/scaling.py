"""Backlog autoscaling math: pure functions, no I/O (table-tested in tests/unit/test_scaling.py).

The algorithm is the HPA's (behavior + stabilization windows) on a better metric:

- backlog = waiting + prioritized + delayed-and-due + active, summed over the pool's queues
  (what a worker could take now or is taking; KEDA's BullMQ scaler reads `wait` only);
- recommendation = ceil(backlog / jobsPerReplica) clamped to [minReplicas, maxReplicas]; from
  zero replicas only a backlog above activationBacklog counts;
- scale up to the *lowest* recommendation of the last scaleUpStabilizationSeconds (0: at once),
  down to the *highest* recommendation of the last scaleDownStabilizationSeconds, so one quiet
  poll in a busy period cannot remove workers;
- zero replicas only when the backlog is zero (nothing waiting, due, prioritized or active).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from ..models.workerpool import Scaling


@dataclass(frozen=True)
class Recommendation:
    replicas: int
    # None, "TooFewReplicas" (clamped up to min) or "TooManyReplicas" (clamped down to max)
    limited: str | None
    reason: str


def recommend(backlog: int, current: int, policy: Scaling) -> Recommendation:
    """The replica count this backlog asks for, before stabilization."""
    lo, hi = policy.min_replicas, policy.max_replicas
    if backlog <= 0:
        return Recommendation(lo, None, "no backlog" + (f": minReplicas {lo}" if lo else ""))
    if current == 0 and backlog <= policy.activation_backlog:
        return Recommendation(
            lo, None, f"backlog {backlog} <= activationBacklog {policy.activation_backlog}"
        )
    raw = math.ceil(backlog / policy.jobs_per_replica)
    reason = f"backlog {backlog} / jobsPerReplica {policy.jobs_per_replica} = {raw}"
    if raw > hi:
        return Recommendation(hi, "TooManyReplicas", f"{reason}, limited to maxReplicas {hi}")
    if raw < lo:
        return Recommendation(lo, "TooFewReplicas", f"{reason}, raised to minReplicas {lo}")
    return Recommendation(raw, None, reason)


@dataclass
class Stabilizer:
    """The recommendations of the last max(window) seconds (HPA stabilization)."""

    history: deque[tuple[float, int]] = field(default_factory=deque)

    def decide(self, now: float, current: int, recommended: int, policy: Scaling) -> int:
        """Record `recommended` at `now`, return the replica count to set.

        The recommendations form a step function of time (each holds until the next one);
        before the first, the current replica count held. Up: never above the lowest
        recommendation in effect during the last scaleUpStabilizationSeconds (all of them must
        ask for more). Down: never below the highest one during the down window.
        """
        if not self.history:
            self.history.append((now, current))
        self.history.append((now, recommended))
        keep = max(policy.scale_up_stabilization_seconds, policy.scale_down_stabilization_seconds)
        while len(self.history) > 1 and self.history[1][0] <= now - keep:
            self.history.popleft()
        up_limit = min(self._window(now, policy.scale_up_stabilization_seconds))
        down_limit = max(self._window(now, policy.scale_down_stabilization_seconds))
        target = current
        if target < up_limit:
            target = up_limit
        if target > down_limit:
            target = down_limit
        return max(policy.min_replicas, min(policy.max_replicas, target))

    def _window(self, now: float, seconds: float) -> list[int]:
        """The recommendations in effect at some time in [now - seconds, now]."""
        start = now - seconds
        values = [r for t, r in self.history if t > start]
        at_start = [r for t, r in self.history if t <= start]
        if at_start:
            values.append(at_start[-1])
        return values

    def reset(self) -> None:
        self.history.clear()


@dataclass(frozen=True)
class Decision:
    replicas: int
    recommendation: Recommendation
    # Why the target differs from the recommendation (stabilization), for status/Events.
    reason: str


def decide(
    stabilizer: Stabilizer, now: float, backlog: int, current: int, policy: Scaling
) -> Decision:
    rec = recommend(backlog, current, policy)
    target = stabilizer.decide(now, current, rec.replicas, policy)
    if target == rec.replicas:
        reason = rec.reason
    elif target > rec.replicas:
        reason = (
            f"{rec.reason}; holding {target} for scaleDownStabilizationSeconds "
            f"{policy.scale_down_stabilization_seconds}"
        )
    else:
        reason = (
            f"{rec.reason}; holding {target} for scaleUpStabilizationSeconds "
            f"{policy.scale_up_stabilization_seconds}"
        )
    return Decision(target, rec, reason)


def fallback(current: int, policy: Scaling) -> int:
    """Replicas while the backlog cannot be read (Redis unreachable)."""
    if policy.fallback_replicas is None:
        return current
    return policy.fallback_replicas


def deletion_costs(active_by_pod: dict[str, int | None], pods: list[str]) -> dict[str, int]:
    """controller.kubernetes.io/pod-deletion-cost per pod: its active-job count.

    The ReplicaSet controller removes the lowest-cost pods first, so idle workers go before busy
    ones. Pods that report nothing (not started, no activity key) cost 0.
    """
    return {pod: max(0, int(active_by_pod.get(pod) or 0)) for pod in pods}
