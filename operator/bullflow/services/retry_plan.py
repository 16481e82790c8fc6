"""What a `bullflow.io/retry` request does to a flow's jobs. Pure: no I/O.

BullMQ moves a failed job back to wait (reprocessJob, what Job.retry runs) and puts it back in
its parent's dependencies, but it has nothing for a parent that its failParentOnFailure child
failed: that parent must go back to waiting-children, not to wait (it would run without the
child). The plan names those parents apart (`reopen`): storage/redis_retry runs our own script
for them in the same transaction as BullMQ's reprocessJob calls.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .flowstatus import JobSnapshot, plural
from .flowtree import PlannedJob

RETRY_ANNOTATION = "bullflow.io/retry"
RETRY_NODES_ANNOTATION = "bullflow.io/retry-nodes"
RETRY_RESET_ANNOTATION = "bullflow.io/retry-reset-attempts"
STOP_ANNOTATION = "bullflow.io/stop"
# Phases a retry can start from: the flow ended with failed jobs, or was stopped.
RETRIABLE_PHASES = ("Failed", "Stopped")


@dataclass(frozen=True)
class RetryRequest:
    token: str
    selectors: tuple[str, ...] = ()  # node paths or names; empty: every failed job
    reset_attempts: bool = False


@dataclass(frozen=True)
class RetryPlan:
    # Failed jobs back to wait (BullMQ's reprocessJob), deepest first.
    reprocess: list[PlannedJob] = field(default_factory=list)
    # Parents failed by a failParentOnFailure child: back to waiting-children (our script),
    # topmost first, so that each finds its own parent already reopened.
    reopen: list[PlannedJob] = field(default_factory=list)

    @property
    def paths(self) -> list[str]:
        return sorted({j.path for j in [*self.reopen, *self.reprocess]}, key=path_order)


class RetryRefused(Exception):
    """The request cannot be applied; the message says why (for the condition and Event)."""


def path_order(path: str) -> tuple[int, ...]:
    return tuple(int(p) for p in path.split("."))


def retry_request(annotations: dict[str, str] | None) -> RetryRequest | None:
    """The retry the annotations ask for; None without a (non-empty) retry token."""
    annotations = annotations or {}
    token = (annotations.get(RETRY_ANNOTATION) or "").strip()
    if not token:
        return None
    raw_nodes = annotations.get(RETRY_NODES_ANNOTATION) or ""
    selectors = tuple(dict.fromkeys(s.strip() for s in raw_nodes.split(",") if s.strip()))
    reset = (annotations.get(RETRY_RESET_ANNOTATION) or "").strip().lower() == "true"
    return RetryRequest(token, selectors, reset)


def stop_token(annotations: dict[str, str] | None) -> str | None:
    token = ((annotations or {}).get(STOP_ANNOTATION) or "").strip()
    return token or None


def missing_for_retry(
    jobs: list[PlannedJob], snaps: dict[str, JobSnapshot], removed_by_stop: set[str]
) -> list[PlannedJob]:
    """Jobs Redis no longer has and a retry would need: gone by removeOnFail, TTL, eviction.
    Jobs that removeOnComplete took, or that a stop removed, are not missing."""
    return [
        j
        for j in jobs
        if (snap := snaps.get(j.job_id)) is not None
        and snap.state == "unknown"
        and not j.removed_on_complete
        and j.path not in removed_by_stop
    ]


def plan_retry(
    phase: str,
    jobs: list[PlannedJob],
    snaps: dict[str, JobSnapshot],
    request: RetryRequest,
    removed_by_stop: set[str] | None = None,
) -> RetryPlan:
    """The jobs to move back, or RetryRefused. `removed_by_stop`: paths a stop removed (they
    are re-added by the stop's own undo, see stop_plan), accepted as selectors."""
    removed = removed_by_stop or set()
    if phase not in RETRIABLE_PHASES:
        raise RetryRefused(_phase_refusal(phase))
    _refuse_missing(missing_for_retry(jobs, snaps, removed))
    by_path = {j.path: j for j in jobs}
    states = {j.path: snaps[j.job_id].state if j.job_id in snaps else "unknown" for j in jobs}
    children = _children_of(jobs)

    def failed_by_child(job: PlannedJob) -> bool:
        return states[job.path] == "failed" and any(
            c.fails_parent and states[c.path] == "failed" for c in children.get(job.path, [])
        )

    def causes(job: PlannedJob) -> list[PlannedJob]:
        """The failed jobs that ran and failed, below (and including) a failed job."""
        if not failed_by_child(job):
            return [job]
        out: list[PlannedJob] = []
        for child in children.get(job.path, []):
            if child.fails_parent and states[child.path] == "failed":
                out.extend(causes(child))
        return out

    seeds = _seeds(request, jobs, by_path, states, removed, failed_by_child, causes)
    reprocess: dict[str, PlannedJob] = {}
    reopen: dict[str, PlannedJob] = {}
    pending = list(seeds)
    while pending:
        job = pending.pop()
        if job.path in reprocess:
            continue
        reprocess[job.path] = job
        current = job
        # Walk up the chain this failure failed: each such parent must run again, and every
        # other failed child it holds as unsuccessful too (BullMQ refuses to complete a parent
        # with unsuccessful children).
        while current.fails_parent and current.parent_path is not None:
            parent = by_path[current.parent_path]
            if states[parent.path] != "failed" or parent.path in reopen:
                break
            reopen[parent.path] = parent
            for sibling in children.get(parent.path, []):
                if sibling.fails_parent and states[sibling.path] == "failed":
                    pending.extend(causes(sibling))
            current = parent
    if not reprocess and not removed:
        raise RetryRefused("the flow has no failed job to retry")
    return RetryPlan(
        reprocess=sorted(reprocess.values(), key=lambda j: path_order(j.path), reverse=True),
        reopen=sorted(reopen.values(), key=lambda j: path_order(j.path)),
    )


def _children_of(jobs: list[PlannedJob]) -> dict[str, list[PlannedJob]]:
    children: dict[str, list[PlannedJob]] = {}
    for job in jobs:
        if job.parent_path is not None:
            children.setdefault(job.parent_path, []).append(job)
    return children


def _refuse_missing(missing: list[PlannedJob]) -> None:
    if not missing:
        return
    names = ", ".join(f"{j.path} ({j.name})" for j in missing[:5])
    more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
    raise RetryRefused(
        f"{plural(len(missing), 'job')} of the flow {'is' if len(missing) == 1 else 'are'} "
        f"no longer in Redis (removeOnFail, an expiry, or lost data): {names}{more}; "
        "a retry cannot bring them back: delete the Flow and create it again"
    )


def _seeds(
    request: RetryRequest,
    jobs: list[PlannedJob],
    by_path: dict[str, PlannedJob],
    states: dict[str, str],
    removed: set[str],
    failed_by_child: Callable[[PlannedJob], bool],
    causes: Callable[[PlannedJob], list[PlannedJob]],
) -> list[PlannedJob]:
    """The failed jobs that move back to wait, before the failParentOnFailure closure."""
    if not request.selectors:
        return [
            j
            for j in jobs
            if states[j.path] == "failed" and not j.tolerates_failure and not failed_by_child(j)
        ]
    seeds: list[PlannedJob] = []
    for selector in request.selectors:
        matched = [by_path[selector]] if selector in by_path else []
        matched = matched or [j for j in jobs if j.name == selector]
        if not matched:
            raise RetryRefused(f"the flow has no node with path or name {selector!r}")
        for job in matched:
            if job.path in removed:
                continue  # re-added with the stop's other removed jobs
            if states[job.path] != "failed":
                raise RetryRefused(
                    f"node {job.path} ({job.name}) is {states[job.path]}: only failed jobs "
                    "(or jobs a stop removed) can be retried"
                )
            if job.tolerates_failure:
                raise RetryRefused(
                    f"node {job.path} ({job.name}) failed with a failure its parent tolerates "
                    "(ignore/remove dependency or continue parent on failure): its parent went "
                    "on without it, so it cannot be retried"
                )
            seeds.extend(causes(job))
    return seeds


def _phase_refusal(phase: str) -> str:
    if phase == "Completed":
        return "the flow is Completed: there is nothing to retry"
    if phase in ("Submitted", "Running"):
        return f"the flow is {phase}: only a Failed or Stopped flow can be retried"
    return (
        f"the flow is {phase} (its jobs are not in Redis: not submitted, or its spec is "
        "invalid): only a Failed or Stopped flow can be retried"
    )
