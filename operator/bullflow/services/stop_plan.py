"""What a `bullflow.io/stop` request does to a flow's jobs. Pure: no I/O.

Jobs not started yet are removed; running ones are left to finish: BullMQ 3.4's Python package
and its Lua scripts offer no way to cancel a job a worker holds (no cancellation signal to
workers; removeJob refuses a locked job), so the flow is Stopped once they ended. Completed
and failed jobs stay (their values and failures remain readable, and a retry builds on them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..models.flow import FlowNode, FlowSpec
from .flowstatus import JobSnapshot
from .flowtree import PlannedJob, job_id

NOT_STARTED = ("waiting", "delayed", "prioritized", "waiting-children", "paused", "wait")
STOPPABLE_PHASES = ("Submitted", "Running")


class StopRefused(Exception):
    """The request cannot be applied; the message says why."""


@dataclass(frozen=True)
class StopPlan:
    # Parents before children: removing a parent first takes its dependencies with it, so no
    # later removal of a child empties them and moves the parent to wait (removeJob would).
    remove: list[PlannedJob]
    running: list[PlannedJob]


def plan_stop(phase: str, jobs: list[PlannedJob], snaps: dict[str, JobSnapshot]) -> StopPlan:
    if phase not in STOPPABLE_PHASES:
        what = "already stopped" if phase == "Stopped" else f"{phase}"
        raise StopRefused(f"the flow is {what}: only a Submitted or Running flow can be stopped")
    states = {j.path: snaps[j.job_id].state if j.job_id in snaps else "unknown" for j in jobs}
    return StopPlan(
        remove=[j for j in jobs if states[j.path] in NOT_STARTED],
        running=[j for j in jobs if states[j.path] == "active"],
    )


@dataclass(frozen=True)
class ReAddPlan:
    """How a retry brings back the jobs a stop removed, with their ids and parent links.

    `trees`: FlowProducer input for each removed subtree whose parent is still there (or a
    root), holding only removed jobs: bullflow's own submission code adds them again (the ids
    are deterministic). Children the stop kept are linked to their re-added parent instead of
    added: a completed one's value goes into the parent's `:processed` (as moveToFinished puts
    it), one still to end (failed: retried in the same transaction; active) into its
    `:dependencies`. A re-added job waiting only for kept children is added as a parent
    (`must_wait`): it has nothing of its own to add as children."""

    trees: list[dict[str, Any]] = field(default_factory=list)
    processed: list[tuple[PlannedJob, PlannedJob, Any]] = field(default_factory=list)
    depends: list[tuple[PlannedJob, PlannedJob]] = field(default_factory=list)
    kept_failed: list[PlannedJob] = field(default_factory=list)
    must_wait: set[str] = field(default_factory=set)  # job ids added as parents

    @property
    def paths(self) -> list[str]:
        return [p for tree in self.trees for p in _tree_paths(tree)]


def plan_readd(
    spec: FlowSpec,
    token: str,
    prefix: str,
    jobs: list[PlannedJob],
    snaps: dict[str, JobSnapshot],
    removed: set[str],
) -> ReAddPlan:
    by_path = {j.path: j for j in jobs}
    nodes = dict(_nodes_by_path(spec))
    plan = ReAddPlan()
    for job in jobs:
        if job.path not in removed:
            parent = by_path.get(job.parent_path or "")
            if parent is not None and parent.path in removed:
                _link_kept_child(plan, parent, job, snaps)
            continue
        if job.parent_path is None or job.parent_path not in removed:
            tree = _removed_subtree(nodes, job.path, token, removed)
            if job.parent_path is not None:
                parent = by_path[job.parent_path]
                tree["opts"]["parent"] = {"id": parent.job_id, "queue": f"{prefix}:{parent.queue}"}
            plan.trees.append(tree)
    waiting_for_kept = {p.path for p, _ in plan.depends}
    for path in waiting_for_kept:
        if not any(c.parent_path == path and c.path in removed for c in jobs):
            plan.must_wait.add(by_path[path].job_id)
    return plan


def _link_kept_child(
    plan: ReAddPlan, parent: PlannedJob, child: PlannedJob, snaps: dict[str, JobSnapshot]
) -> None:
    snap = snaps.get(child.job_id)
    state = snap.state if snap else "unknown"
    if state == "completed" and snap is not None:
        plan.processed.append((parent, child, snap.return_value))
    elif state in ("failed", "active"):
        plan.depends.append((parent, child))
        if state == "failed":
            plan.kept_failed.append(child)


def _nodes_by_path(spec: FlowSpec) -> list[tuple[str, FlowNode]]:
    out: list[tuple[str, FlowNode]] = []
    stack = [(str(i), tree) for i, tree in enumerate(spec.trees())]
    while stack:
        path, node = stack.pop()
        out.append((path, node))
        stack.extend((f"{path}.{i}", child) for i, child in enumerate(node.children))
    return out


def _removed_subtree(
    nodes: dict[str, FlowNode], path: str, token: str, removed: set[str]
) -> dict[str, Any]:
    node = nodes[path]
    opts = node.opts.to_wire() if node.opts else {}
    opts["jobId"] = job_id(token, path)
    out: dict[str, Any] = {
        "name": node.name,
        "queueName": node.queue_name,
        "data": {} if node.data is None else node.data,
        "opts": opts,
    }
    children = [
        _removed_subtree(nodes, f"{path}.{i}", token, removed)
        for i in range(len(node.children))
        if f"{path}.{i}" in removed
    ]
    if children:
        out["children"] = children
    return out


def _tree_paths(tree: dict[str, Any]) -> list[str]:
    own = tree["opts"]["jobId"].rsplit("-", 1)[-1]
    return [own, *(p for child in tree.get("children", []) for p in _tree_paths(child))]
