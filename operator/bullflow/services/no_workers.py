"""WorkersAvailable: do a flow's waiting jobs have anyone to run them? Pure: no I/O.

A flow whose waiting jobs sit on queues no WorkerPool and no live worker serves says so twice:
`WorkersAvailable=False` and its Ready condition's reason `NoWorkers` (what `kubectl get flows`
shows in REASON). Such flows are looked at again every few seconds (controllers/worker_watch.py)
so that the condition clears soon after a worker connects; the functions below decide which.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..models.common import Condition
from .conditions import set_condition
from .flowstatus import JobSnapshot
from .flowtree import PlannedJob

WAITING_STATES = ("waiting", "prioritized", "delayed")
NO_WORKERS = "NoWorkers"


def waiting_queues(jobs: list[PlannedJob], snaps: dict[str, JobSnapshot]) -> list[str]:
    """The queues (sorted) holding jobs of the flow that wait for a worker."""
    return sorted(
        {
            j.queue
            for j in jobs
            if (snap := snaps.get(j.job_id)) is not None and snap.state in WAITING_STATES
        }
    )


def no_workers_message(unserved: list[str], prefix: str) -> str:
    noun = "queue" if len(unserved) == 1 else "queues"
    return (
        f"no BullMQ worker is connected to {noun} {', '.join(unserved)} (prefix {prefix}) and "
        f"no WorkerPool serves {'it' if len(unserved) == 1 else 'them'}"
    )


def workers_conditions(
    conditions: list[Condition], unserved: list[str] | None, prefix: str, generation: int | None
) -> list[Condition]:
    """The conditions of an unfinished flow with WorkersAvailable set, and Ready's reason
    NoWorkers while it is False. `unserved` None: the lookup failed; what was said stays."""
    if unserved is None:
        said = next((c for c in conditions if c.type == "WorkersAvailable"), None)
        if said is None or said.status != "False":
            return conditions
        return set_condition(conditions, "Ready", False, NO_WORKERS, said.message, generation)
    if not unserved:
        return set_condition(
            conditions,
            "WorkersAvailable",
            True,
            "WorkersAvailable",
            "every queue with waiting jobs has a worker or a WorkerPool",
            generation,
        )
    message = no_workers_message(unserved, prefix)
    conditions = set_condition(
        conditions, "WorkersAvailable", False, NO_WORKERS, message, generation
    )
    return set_condition(conditions, "Ready", False, NO_WORKERS, message, generation)


@dataclass(frozen=True)
class Unserved:
    """What a flow with NoWorkers waits for: a worker on one of these queues."""

    url: str  # the Redis the flow's jobs are in
    namespace: str
    prefix: str
    queues: frozenset[str]


def lookups(waiting: dict[str, Unserved]) -> dict[tuple[str, str], set[str]]:
    """One worker lookup per Redis and prefix, for every queue any waiting flow asks about."""
    out: dict[tuple[str, str], set[str]] = {}
    for flow in waiting.values():
        out.setdefault((flow.url, flow.prefix), set()).update(flow.queues)
    return out


def newly_served(
    waiting: dict[str, Unserved], still_unserved: dict[tuple[str, str], set[str]]
) -> list[str]:
    """The flows (tokens) one of whose queues has a worker now. A Redis and prefix missing from
    `still_unserved` was not looked up (failed): nothing is concluded for its flows."""
    out = []
    for token, flow in waiting.items():
        unserved = still_unserved.get((flow.url, flow.prefix))
        if unserved is not None and not flow.queues <= unserved:
            out.append(token)
    return sorted(out)


def served_by_pool(
    waiting: dict[str, Unserved], namespace: str, prefix: str, queues: Iterable[str]
) -> list[str]:
    """The flows (tokens) a WorkerPool of `namespace` for these queues now serves."""
    pool_queues = set(queues)
    return sorted(
        token
        for token, flow in waiting.items()
        if flow.namespace == namespace and flow.prefix == prefix and flow.queues & pool_queues
    )
