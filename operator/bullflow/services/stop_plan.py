"""What a `bullflow.io/stop` request does to a flow's jobs. Pure: no I/O.

Jobs not started yet are removed; running ones are left to finish: BullMQ 3.4's Python package
and its Lua scripts offer no way to cancel a job a worker holds (no cancellation signal to
workers; removeJob refuses a locked job), so the flow is Stopped once they ended. Completed
and failed jobs stay (their values and failures remain readable, and a retry builds on them).
"""

from __future__ import annotations

from dataclasses import dataclass

from .flowstatus import JobSnapshot
from .flowtree import PlannedJob

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
