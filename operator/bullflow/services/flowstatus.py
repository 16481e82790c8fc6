"""Build a Flow's status from what Redis says about its jobs. Pure: no I/O."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, get_args

from ..models.common import Condition
from ..models.flow import ChildValue, FlowStatus, IgnoredFailure, NodeState, NodeStatus, Phase
from .conditions import set_condition
from .flowtree import PlannedJob

FINISHED_PHASES = ("Completed", "Failed", "Stopped")
# States a job leaves with no request from anyone: a worker takes it, finishes it, or BullMQ's
# own timers (delay, stalled-job check) move it. A flow can be finished (a failed child decides
# its phase) while a sibling is still in one of them.
MOVING_STATES = frozenset({"waiting", "delayed", "prioritized", "active"})
TRUNCATED_MARK = "...(truncated)"


@dataclass(frozen=True, slots=True)
class JobSnapshot:
    """One job as read from Redis. `state` is BullMQ's getState answer ('unknown' if gone)."""

    state: str
    attempts_made: int = 0
    return_value: Any = None
    failed_reason: str | None = None
    # Parents only, keyed by child job key ("<prefix>:<queue>:<id>") as BullMQ returns them.
    children_values: dict[str, Any] = field(default_factory=dict)
    ignored_failures: dict[str, str] = field(default_factory=dict)


def just_submitted(jobs: list[PlannedJob]) -> dict[str, JobSnapshot]:
    """The snapshot a fresh submission's transaction left: every job in its first state. Lets
    the first status be written without reading back the jobs just written (for a 10,000-job
    flow, a pipeline of 10,000 reads); the tracker reads them for real right after."""
    return {j.job_id: JobSnapshot(j.initial_state) for j in jobs}


@dataclass(frozen=True)
class StopNote:
    """A stop in effect (applied, not undone by a retry), as the submission marker records it:
    the phase depends on it, and a restarted operator must still know it."""

    token: str
    removed: frozenset[str]  # paths of the jobs the stop removed from Redis
    running: int  # jobs that were active, left to finish

    @property
    def message(self) -> str:
        removed = f"{plural(len(self.removed), 'job')} not yet started removed"
        if not self.running:
            return f"stopped ({self.token}): {removed}, none was running"
        return (
            f"stopped ({self.token}): {removed}, "
            f"{plural(self.running, 'running job')} left to finish"
        )


def with_removed(
    snaps: dict[str, JobSnapshot], jobs: list[PlannedJob], stop: StopNote | None
) -> dict[str, JobSnapshot]:
    """The snapshots with the jobs a stop removed read as 'removed', not as lost."""
    if stop is None:
        return snaps
    out = dict(snaps)
    for job in jobs:
        snap = out.get(job.job_id)
        if job.path in stop.removed and snap is not None and snap.state == "unknown":
            out[job.job_id] = JobSnapshot("removed")
    return out


@dataclass(frozen=True)
class StatusLimits:
    max_value_bytes: int = 4096
    max_listed_nodes: int = 200
    max_status_bytes: int = 256 * 1024


@dataclass(frozen=True)
class Verdict:
    phase: Phase
    reason: str
    message: str


def effective_state(job: PlannedJob, snap: JobSnapshot | None) -> str:
    """A job removed on completion (removeOnComplete) reads as 'unknown': count it completed;
    one removed on failure only (removeOnFail) can only have gone by failing."""
    if snap is None:
        return "unknown"
    if snap.state == "unknown" and job.removed_on_complete:
        return "completed"
    if snap.state == "unknown" and job.removed_on_fail:
        return "failed"
    return snap.state


def jobs_at_rest(status: FlowStatus) -> bool:
    """No job of the flow will change state by itself any more: following it can stop. Read
    from the counts, which cover every job even when the listed nodes are truncated. A parent
    left in waiting-children has no moving descendant here (its failed child blocks it)."""
    counts = status.counts or {}
    return not any(counts.get(state) for state in MOVING_STATES)


def missing_jobs(jobs: list[PlannedJob], snaps: dict[str, JobSnapshot]) -> list[PlannedJob]:
    """Jobs Redis no longer has although nothing the flow asked for removes them: Redis lost its
    data (restarted without persistence, flushed, evicted) or someone deleted the keys. A read
    that did not cover a job (no snapshot) proves nothing and is not counted."""
    return [
        j
        for j in jobs
        if (snap := snaps.get(j.job_id)) is not None and effective_state(j, snap) == "unknown"
    ]


def verdict(
    jobs: list[PlannedJob],
    snaps: dict[str, JobSnapshot],
    stop: StopNote | None = None,
    resumed: bool = False,
) -> Verdict:
    """The flow's phase and why, following BullMQ's real semantics. `stop`: a stop in effect
    (the flow is Stopped once its running jobs ended); `resumed`: the flow was retried, so it
    is Running even while every job it runs again is still waiting."""
    if stop is not None:
        running = sum(1 for j in jobs if (snap := snaps.get(j.job_id)) and snap.state == "active")
        if not running:
            return Verdict("Stopped", "Stopped", stop.message)
        return Verdict(
            "Running",
            "Stopping",
            f"{stop.message}; waiting for {plural(running, 'running job')} to finish",
        )
    if missing := missing_jobs(jobs, snaps):
        return Verdict("Failed", "JobsLost", jobs_lost_message(missing, len(jobs)))
    states = {j.path: effective_state(j, snaps.get(j.job_id)) for j in jobs}
    roots = [j for j in jobs if j.parent_path is None]
    failed_root = next((j for j in roots if states[j.path] == "failed"), None)
    blocking = _blocking_failure(jobs, states)
    if blocking is not None and (failed_root is None or blocking.parent_path is not None):
        snap = snaps.get(blocking.job_id)
        reason = snap.failed_reason if snap else "unknown"
        parent = blocking.parent_path
        return Verdict(
            "Failed",
            "ChildFailed",
            f"job {blocking.path} ({blocking.name} on queue {blocking.queue}) failed: {reason}; "
            f"its parent {parent} will never run",
        )
    if failed_root is not None:
        snap = snaps.get(failed_root.job_id)
        message = (
            f"root job {failed_root.path} ({failed_root.name} on queue {failed_root.queue}) "
            f"failed: {snap.failed_reason if snap else 'unknown'}"
        )
        cause = _root_cause(failed_root, jobs, states)
        if cause is not failed_root:
            cause_snap = snaps.get(cause.job_id)
            message += (
                f"; caused by job {cause.path} ({cause.name} on queue {cause.queue}): "
                f"{cause_snap.failed_reason if cause_snap else 'unknown'}"
            )
        return Verdict("Failed", "JobFailed", message)
    if all(states[j.path] == "completed" for j in roots):
        done = f"all {len(jobs)} jobs" if len(jobs) > 1 else "the 1 job"
        return Verdict("Completed", "Completed", f"{done} completed")
    started = resumed or any(s in ("active", "completed", "failed") for s in states.values())
    if started:
        return Verdict("Running", "Running", "jobs are being processed")
    return Verdict("Submitted", "Submitted", "jobs are waiting for workers")


def jobs_lost_message(missing: list[PlannedJob], total: int) -> str:
    first = ", ".join(f"{j.path} ({j.name} on queue {j.queue})" for j in missing[:3])
    more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
    return (
        f"{len(missing)} of {plural(total, 'job')} {'is' if len(missing) == 1 else 'are'} "
        f"missing from Redis: {first}{more}. Redis lost them "
        "(restarted without persistence, flushed, or evicted under maxmemory; BullMQ needs "
        "maxmemory-policy noeviction) or their keys were deleted. They will not run: delete "
        "this Flow and create it again to run the flow anew"
    )


def _root_cause(root: PlannedJob, jobs: list[PlannedJob], states: dict[str, str]) -> PlannedJob:
    """The deepest failed job linked to the failed root by failed parents (failParentOnFailure)."""
    failed = {j.path for j in jobs if states[j.path] == "failed"}
    linked = [
        j
        for j in jobs
        if j.path in failed
        and (j.path == root.path or j.path.startswith(root.path + "."))
        and all(a in failed for a in _ancestors(j.path, root.path))
    ]
    return max(linked, key=lambda j: j.path.count("."))


def _ancestors(path: str, stop: str) -> list[str]:
    parts = path.split(".")
    return [".".join(parts[:i]) for i in range(len(stop.split(".")), len(parts))]


def _blocking_failure(jobs: list[PlannedJob], states: dict[str, str]) -> PlannedJob | None:
    """The deepest failed child whose failure leaves its (unfailed) parent waiting forever.

    With no failure option BullMQ keeps the parent in waiting-children and emits no event.
    A failParentOnFailure child blocks nothing: its parent fails because of it (at once, or
    after BullMQ 5's scripts moved the parent to wait for a worker to fail it), and the flow's
    outcome is read from the parent then, the child named as the root cause.
    """
    candidates = [
        j
        for j in jobs
        if j.parent_path is not None
        and states[j.path] == "failed"
        and not j.tolerates_failure
        and not j.fails_parent
    ]
    if not candidates:
        return None
    return max(candidates, key=lambda j: j.path.count("."))


def bounded(value: Any, limits: StatusLimits) -> tuple[Any, bool]:
    """The value, or, when its JSON is larger than the limit in UTF-8 bytes, a string of its
    first characters (of the string itself, or of its JSON text) marked as truncated. The cut
    falls between characters: the result is valid text, never half a character or escape."""
    if value is None:
        return None, False
    text = value if isinstance(value, str) else json_text(value)
    if json_bytes(value) <= limits.max_value_bytes:
        return value, False
    return cut_utf8(text, limits.max_value_bytes) + TRUNCATED_MARK, True


def json_text(value: Any) -> str:
    """Compact JSON with non-ASCII characters as they are (what the API server stores)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def json_bytes(value: Any) -> int:
    return len(json_text(value).encode())


def cut_utf8(text: str, max_bytes: int) -> str:
    """The longest prefix of `text` whose UTF-8 encoding fits in max_bytes."""
    return text.encode()[:max_bytes].decode(errors="ignore")


def node_status(
    job: PlannedJob,
    snap: JobSnapshot | None,
    limits: StatusLimits,
    jobs_by_id: dict[str, PlannedJob] | None = None,
) -> NodeStatus:
    """The node as the status lists it; `jobs_by_id` (the flow's jobs) names its children."""
    state = effective_state(job, snap)
    snap = snap or JobSnapshot(state="unknown")
    value, cut = bounded(snap.return_value, limits)
    children_values = None
    ignored = None
    if job.has_children:
        children_values = []
        for key, child_value in _in_tree_order(snap.children_values, jobs_by_id or {}):
            bounded_value, child_cut = bounded(child_value, limits)
            children_values.append(ChildValue(**key, value=bounded_value))
            cut = cut or child_cut
        ignored = []
        for key, failure in _in_tree_order(snap.ignored_failures, jobs_by_id or {}):
            bounded_reason, reason_cut = bounded(failure, limits)
            ignored.append(IgnoredFailure(**key, reason=bounded_reason))
            cut = cut or reason_cut
    reason, reason_cut = bounded(snap.failed_reason, limits)
    return NodeStatus(
        path=job.path,
        name=job.name,
        queue=job.queue,
        job_id=job.job_id,
        state=state if state in _NODE_STATES else "unknown",
        attempts_made=snap.attempts_made,
        return_value=value,
        failed_reason=reason,
        children_values=children_values,
        ignored_failures=ignored,
        truncated=True if (cut or reason_cut) else None,
    )


def child_of_key(key: str, jobs_by_id: dict[str, PlannedJob]) -> PlannedJob | None:
    """The flow's job a BullMQ child key (<prefix>:<queue>:<job id>) names, if any. None for a
    child the flow did not submit (someone else's job added under the parent)."""
    job = jobs_by_id.get(key.rsplit(":", 1)[-1])
    if job is None or not key.endswith(f":{job.queue}:{job.job_id}"):
        return None
    return job


def _in_tree_order(
    by_key: dict[str, Any], jobs_by_id: dict[str, PlannedJob]
) -> list[tuple[dict[str, str], Any]]:
    """(the child's identity: path, name and key; its value) in tree order; children not of
    the flow last, by key, with their key only."""
    known: list[tuple[tuple[int, ...], dict[str, str], Any]] = []
    foreign: list[tuple[dict[str, str], Any]] = []
    for key, value in by_key.items():
        child = child_of_key(key, jobs_by_id)
        if child is None:
            foreign.append(({"key": key}, value))
        else:
            order = tuple(int(p) for p in child.path.split("."))
            known.append((order, {"path": child.path, "name": child.name, "key": key}, value))
    known.sort(key=lambda entry: entry[0])
    foreign.sort(key=lambda entry: entry[0]["key"])
    return [(ident, value) for _, ident, value in known] + foreign


def progress(phase: Phase, states: list[str]) -> str:
    """finished/total (FlowStatus.progress): completed and failed jobs count as finished, and
    every job of a Completed flow does (what is still pending no longer holds it up)."""
    finished = sum(1 for s in states if s in ("completed", "failed"))
    if phase == "Completed":
        finished = len(states)
    return f"{finished}/{len(states)}"


def plural(count: int, noun: str) -> str:
    """'1 job', '2 jobs'."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


_NODE_STATES = set(get_args(NodeState))
_LISTED_WHEN_LARGE = ("failed", "active")


def build_status(
    previous: FlowStatus,
    jobs: list[PlannedJob],
    snaps: dict[str, JobSnapshot],
    *,
    generation: int | None,
    limits: StatusLimits,
    now: str,
    stop: StopNote | None = None,
) -> FlowStatus:
    """The next status: phase, conditions, counts, nodes (bounded) and the root's result."""
    snaps = with_removed(snaps, jobs, stop)
    decision = verdict(jobs, snaps, stop, resumed=bool(previous.retry_count))
    states = [effective_state(j, snaps.get(j.job_id)) for j in jobs]
    counts = Counter(states)
    listed = list(zip(jobs, states, strict=True))
    large = len(jobs) > limits.max_listed_nodes
    if large:
        listed = [(j, s) for j, s in listed if s in _LISTED_WHEN_LARGE][: limits.max_listed_nodes]
    by_id = {j.job_id: j for j in jobs}
    nodes = [node_status(j, snaps.get(j.job_id), limits, by_id) for j, _ in listed]
    roots = [j for j in jobs if j.parent_path is None]
    result = None
    if len(roots) == 1 and (snap := snaps.get(roots[0].job_id)) is not None:
        result, _ = bounded(snap.return_value, limits)
    elif len(roots) > 1:
        values = [snaps[r.job_id].return_value if r.job_id in snaps else None for r in roots]
        result, _ = bounded(values, limits)
    status = previous.model_copy(deep=True)
    status.phase = decision.phase
    status.progress = progress(decision.phase, states)
    status.total_nodes = len(jobs)
    status.counts = dict(sorted(counts.items()))
    status.nodes = nodes
    status.nodes_truncated = True if large else None
    status.result = result
    status.observed_generation = generation
    finished = decision.phase in FINISHED_PHASES
    if finished and not status.finished_at:
        status.finished_at = now
    status.conditions = outcome_conditions(status.conditions, decision, generation, now)
    return _within_budget(status, limits)


def status_bytes(status: FlowStatus) -> int:
    """Size of the status as the API server stores it: UTF-8 JSON, as written (wire form).
    Counting characters instead would let 4-byte emoji blow the budget four times over."""
    return json_bytes(status.model_dump(by_alias=True, mode="json", exclude_none=True))


def _within_budget(status: FlowStatus, limits: StatusLimits) -> FlowStatus:
    """Drop listed nodes (keeping counts) until the status fits its byte budget."""
    while status.nodes and status_bytes(status) > limits.max_status_bytes:
        status.nodes = status.nodes[: len(status.nodes) // 2]
        status.nodes_truncated = True
    return status


def submitted(
    status: FlowStatus, job_count: int, submitted_at: str, generation: int | None
) -> FlowStatus:
    """The status right after the jobs were added (or found added): the tracker writes it with
    the jobs' first states."""
    status = status.model_copy(deep=True)
    status.submitted_at = submitted_at
    status.phase = "Submitted"
    status.progress = f"0/{job_count}"
    status.total_nodes = job_count
    status.observed_generation = generation
    status.conditions = set_condition(
        status.conditions,
        "Submitted",
        True,
        "Submitted",
        f"{plural(job_count, 'job')} added to Redis in one transaction",
        generation,
    )
    status.conditions = set_condition(
        status.conditions, "Ready", False, "Submitted", "jobs are waiting for workers", generation
    )
    return status


def rejected(
    status: FlowStatus, generation: int | None, reason: str, message: str, now: str
) -> FlowStatus:
    """Terminal: retrying cannot help (BullMQ or Redis refused the flow, its idempotencyKey is
    taken); the jobs that were accepted stay as they are."""
    status = status.model_copy(deep=True)
    status.phase = "Failed"
    status.submitted_at = status.submitted_at or now
    status.finished_at = now
    for type_, value in (("Failed", True), ("Ready", False), ("Completed", False)):
        status.conditions = set_condition(
            status.conditions, type_, value, reason, message, generation
        )
    return status


def snapshots_at_removal(
    jobs: list[PlannedJob], snaps: dict[str, JobSnapshot]
) -> dict[str, JobSnapshot] | None:
    """How a deleted Flow's jobs ended, from a read just before the deletion removed them: the
    outcome its idempotencyKey keeps (what a Flow applied again restores). Jobs still waiting,
    delayed or prioritized read as 'removed' (they never run). None if the read cannot tell: a
    job already gone (an earlier, partial removal) or one running (the removal waits for it)."""
    states = {j.job_id: effective_state(j, snaps.get(j.job_id)) for j in jobs}
    if any(state in ("unknown", "active") for state in states.values()):
        return None
    return {
        job_id: JobSnapshot("removed") if states[job_id] in MOVING_STATES else snap
        for job_id, snap in snaps.items()
    }


def restored(final: FlowStatus, generation: int | None, message: str) -> FlowStatus:
    """The final status of an earlier run with the same idempotencyKey, for its new Flow."""
    final = final.model_copy(deep=True)
    final.observed_generation = generation
    final.conditions = set_condition(
        final.conditions, "Restored", True, "IdempotencyKey", message, generation
    )
    return final


def not_ready(status: FlowStatus, generation: int | None, reason: str, message: str) -> FlowStatus:
    """The status with Ready=False for a reason outside the jobs (Redis unreachable...); the
    next status built from the jobs replaces it."""
    status = status.model_copy(deep=True)
    status.observed_generation = generation
    status.conditions = set_condition(
        status.conditions, "Ready", False, reason, message, generation
    )
    return status


def outcome_conditions(
    conditions: list[Condition], decision: Verdict, generation: int | None, now: str
) -> list[Condition]:
    conds = set_condition(
        conditions,
        "Completed",
        decision.phase == "Completed",
        decision.reason if decision.phase == "Completed" else "NotCompleted",
        decision.message if decision.phase == "Completed" else "",
        generation,
        now,
    )
    if decision.phase == "Stopped":
        conds = set_condition(
            conds, "Stopped", True, decision.reason, decision.message, generation, now
        )
    failed = decision.phase == "Failed"
    conds = set_condition(
        conds,
        "Failed",
        failed,
        decision.reason if failed else "NotFailed",
        decision.message if failed else "",
        generation,
        now,
    )
    return set_condition(
        conds,
        "Ready",
        decision.phase == "Completed",
        decision.reason,
        decision.message,
        generation,
        now,
    )
