"""A flow the tracker follows, and what tells its submission's own events from later ones."""

from __future__ import annotations

from dataclasses import InitVar, dataclass, field

from ..models.flow import FlowStatus
from ..services.flowtree import PlannedJob
from ..storage.kube import ObjectRef
from ..storage.redis_jobs import BullRedis, StreamEntry


@dataclass(slots=True)
class TrackedFlow:
    ref: ObjectRef
    conn: BullRedis
    prefix: str
    jobs: list[PlannedJob]
    generation: int | None
    initial_status: InitVar[FlowStatus]
    ttl_seconds: int | None = None
    token: str = ""  # what job ids derive from: the uid, or the idempotency key's digest
    keeps_outcome: bool = False  # record the final status in the marker (idempotencyKey)
    # Submitted by this very reconcile: the first status is built from the states the submission
    # left (flowstatus.just_submitted); the jobs are read for real once an event after
    # `own_events`, or the resync, marks the flow dirty.
    just_submitted: bool = False
    # {events stream: last id} right after the submission transaction: the events at or before
    # it are the submission's own ("added", "waiting"...), already in the first status.
    own_events: dict[str, str] = field(default_factory=dict)
    streams: list[str] = field(default_factory=list)
    # Byte budget of this flow's status when the API server refused a bigger object (the spec
    # shares etcd's size limit with the status); None: the operator's budget.
    status_budget: int | None = None
    failing: bool = False  # the last refresh failed: logged once per streak, not per attempt
    # The status the API server last took (the written state; what Redis says is the desired
    # one), as JSON: thousands of live flows stay cheap in memory (a parsed
    # FlowStatus weighs several times more).
    _status_json: bytes = b""

    def __post_init__(self, initial_status: FlowStatus) -> None:
        self.token = self.token or self.ref.uid
        self.status = initial_status

    @property
    def status(self) -> FlowStatus:
        return FlowStatus.model_validate_json(self._status_json)

    @status.setter
    def status(self, value: FlowStatus) -> None:
        self._status_json = value.model_dump_json(by_alias=True).encode()


def stream_id(value: str) -> tuple[int, int]:
    """A Redis stream entry id ("<ms>-<seq>") in its order."""
    ms, _, seq = value.partition("-")
    return int(ms), int(seq or 0)


# The events BullMQ's add scripts write (addStandardJob, addParentJob, addDelayedJob,
# addPrioritizedJob, and the duplicated answer to an existing job id).
SUBMISSION_EVENTS = frozenset(
    {"added", "waiting", "waiting-children", "delayed", "prioritized", "duplicated"}
)


def is_submission_event(entry: StreamEntry) -> bool:
    return entry.fields.get("event") in SUBMISSION_EVENTS
