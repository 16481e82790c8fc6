"""Prometheus metrics of the operator (served by --metrics-port)."""

from __future__ import annotations

from collections import Counter as _Counter

from prometheus_client import Counter, Gauge, Histogram

FLOWS_BY_PHASE = Gauge("bullflow_flows", "Flows known to this operator, by phase", ["phase"])
SUBMISSIONS = Counter("bullflow_flow_submissions_total", "Flow submissions to Redis", ["result"])
SUBMIT_SECONDS = Histogram(
    "bullflow_flow_submit_seconds",
    "Time to add a flow's jobs to Redis (its MULTI/EXEC, shared with flows submitted meanwhile)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
STATUS_PATCHES = Counter("bullflow_status_patches_total", "Status patches written", ["kind"])
STATUS_PATCH_SECONDS = Histogram(
    "bullflow_status_patch_seconds",
    "Latency of one status patch",
    ["kind"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
REDIS_ERRORS = Counter("bullflow_redis_errors_total", "Failed Redis operations", ["operation"])
TASK_FAILURES = Counter(
    "bullflow_task_failures_total",
    "Errors a long-lived task survived (it logged them, backed off and carried on), by task",
    ["task"],
)
STATUS_WRITE_FAILURES = Counter(
    "bullflow_status_write_failures_total",
    "Status writes the API server did not take; each is retried until the status matches Redis",
    ["reason"],
)
WORKERPOOL_BACKLOG = Gauge(
    "bullflow_workerpool_backlog",
    "Backlog seen by a WorkerPool, by kind",
    ["namespace", "name", "kind"],
)
WORKERPOOL_REPLICAS = Gauge(
    "bullflow_workerpool_replicas",
    "Replicas of a WorkerPool's Deployment",
    ["namespace", "name", "which"],
)

PHASES = ("Pending", "Submitted", "Running", "Completed", "Failed")


class PhaseBook:
    """Flow uid -> phase, exported as the bullflow_flows gauge.

    Counts are kept incrementally: recounting every flow on each change made a completion wave
    O(flows x changes), a visible share of the operator's CPU with many live flows (bench/).
    """

    def __init__(self) -> None:
        self._phases: dict[str, str] = {}
        self._counts: _Counter[str] = _Counter()
        for phase in PHASES:  # every phase is exported from the start, 0 included
            FLOWS_BY_PHASE.labels(phase).set(0)

    def set(self, uid: str, phase: str) -> None:
        old = self._phases.get(uid)
        if old == phase:
            return
        self._phases[uid] = phase
        self._move(old, phase)

    def drop(self, uid: str) -> None:
        old = self._phases.pop(uid, None)
        if old is not None:
            self._move(old, None)

    def _move(self, old: str | None, new: str | None) -> None:
        for phase, delta in ((old, -1), (new, 1)):
            if phase is None:
                continue
            self._counts[phase] += delta
            if phase in PHASES:
                FLOWS_BY_PHASE.labels(phase).set(self._counts[phase])
