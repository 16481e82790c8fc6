"""Prometheus metrics of the operator (served by --metrics-port); docs/metrics.md lists them."""

from __future__ import annotations

import contextlib
import platform
from collections import Counter as _Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import metadata
from urllib.parse import urlparse

from prometheus_client import Counter, Gauge, Histogram

from bullflow_worker.redis_address import RedisAddressError, parse_redis_address

from . import __version__
from .redaction import redacted_url

FLOWS_BY_PHASE = Gauge("bullflow_flows", "Flows known to this operator, by phase", ["phase"])
SUBMISSIONS = Counter("bullflow_flow_submissions_total", "Flow submissions to Redis", ["result"])
# outcome: applied | already-applied (found in the marker after a restart) | refused | pending
# (Redis unreachable: applied once it answers).
FLOW_RETRIES = Counter(
    "bullflow_flow_retries_total", "bullflow.io/retry requests handled", ["outcome"]
)
FLOW_STOPS = Counter("bullflow_flow_stops_total", "bullflow.io/stop requests handled", ["outcome"])
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
FLOW_DURATION_SECONDS = Histogram(
    "bullflow_flow_duration_seconds",
    "Submission to finish (status submittedAt -> finishedAt) of the flows this process saw finish",
    ["outcome"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 43200, 86400),
)
FLOWS_FINISHED = Counter(
    "bullflow_flows_finished_total",
    "Flows this process saw finish (wrote their Completed or Failed status), by outcome",
    ["outcome"],
)
BUILD_INFO = Gauge(
    "bullflow_build_info",
    "Always 1; the labels say which operator build runs",
    ["version", "python_version", "kopf_version", "bullmq_version"],
)
# Per queue, not per pool: two WorkerPools on one queue export its jobs once, so sum() is right.
QUEUE_BACKLOG = Gauge(
    "bullflow_queue_backlog",
    "Jobs of a BullMQ queue some WorkerPool watches, by state (states are disjoint)",
    ["redis", "prefix", "queue", "state"],
)
QUEUE_DELAYED_DUE = Gauge(
    "bullflow_queue_delayed_due",
    "Delayed jobs of a queue whose time has come (a subset of its state=delayed backlog)",
    ["redis", "prefix", "queue"],
)
WORKERPOOL_BACKLOG = Gauge(
    "bullflow_workerpool_scaling_backlog",
    "The backlog a WorkerPool scales on (waiting + prioritized + delayed-due + active over its "
    "queues); per pool: pools sharing a queue each count its jobs",
    ["namespace", "name"],
)
WORKERPOOL_REPLICAS = Gauge(
    "bullflow_workerpool_replicas",
    "Replicas of a WorkerPool's Deployment",
    ["namespace", "name", "which"],
)

PHASES = ("Pending", "Submitted", "Running", "Completed", "Failed", "Stopped")
FINISHED = ("Completed", "Failed", "Stopped")
# Backlog field -> the state label of bullflow_queue_backlog; delayedDue (a part of delayed) and
# total (a sum of others) are left out so that the states add up.
QUEUE_STATES = {
    "waiting": "waiting",
    "prioritized": "prioritized",
    "delayed": "delayed",
    "active": "active",
    "waiting_children": "waiting-children",
    "paused": "paused",
}


def build_info_labels() -> dict[str, str]:
    def version_of(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "unknown"

    return {
        "version": __version__,
        "python_version": platform.python_version(),
        "kopf_version": version_of("kopf"),
        "bullmq_version": version_of("bullmq"),
    }


BUILD_INFO.labels(**build_info_labels()).set(1)


def is_new_finish(phase: str, already_finished: bool, restored: bool) -> bool:
    """Whether writing a status of this phase is a flow finishing, to be counted once.

    `already_finished`: this process already knew the flow as finished, from a status it wrote
    or read. A flow found finished when the operator starts (or on a resync, or a status
    rewritten after a stale read) is not a new finish: the process that wrote its finishing
    status counted it. Neither is a `restored` one (an idempotencyKey's outcome copied from
    the earlier Flow that finished). A process killed between the write and the count misses
    that flow; no flow is counted twice by one process."""
    return phase in FINISHED and not already_finished and not restored


def flow_duration_seconds(submitted_at: str | None, finished_at: str | None) -> float | None:
    """finishedAt - submittedAt (RFC 3339, as the status holds them); None when either is
    missing or unparsable, or the clock went backwards."""
    if not submitted_at or not finished_at:
        return None
    try:
        start = datetime.fromisoformat(submitted_at.replace("Z", "+00:00"))
        end = datetime.fromisoformat(finished_at.replace("Z", "+00:00"))
    except ValueError:
        return None
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    if end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    seconds = (end - start).total_seconds()
    return seconds if seconds >= 0 else None


def redis_label(url: str) -> str:
    """A Redis server as a label value: scheme://host:port/db, never credentials. Sentinel and
    Cluster URLs name every host they list (and the Sentinel master), like conditions do."""
    if "+" in url.partition("://")[0]:
        try:
            database = parse_redis_address(url).db
        except RedisAddressError:
            return "unparsable"
        return f"{redacted_url(url)}/{database}"
    try:
        parsed = urlparse(url)
        host = f"{parsed.hostname}:{parsed.port}" if parsed.port else (parsed.hostname or "")
    except ValueError:
        return "unparsable"
    db = parsed.path.strip("/") or "0"
    return f"{parsed.scheme}://{host}/{db}"


class PhaseBook:
    """Flow uid -> phase, exported as the bullflow_flows gauge.

    Counts are kept incrementally: recounting every flow on each change made a completion wave
    O(flows x changes), a visible share of the operator's CPU with many live flows (bench/).
    """

    def __init__(self) -> None:
        self._phases: dict[str, str] = {}
        self._counts: _Counter[str] = _Counter()
        self._finished: set[str] = set()  # uids known finished: counted, or found so
        for phase in PHASES:  # every phase is exported from the start, 0 included
            FLOWS_BY_PHASE.labels(phase).set(0)

    def written(
        self,
        uid: str,
        phase: str,
        submitted_at: str | None,
        finished_at: str | None,
        restored: bool = False,
    ) -> None:
        """A status this process wrote: counts the flow's finish once (see is_new_finish)."""
        if is_new_finish(phase, uid in self._finished, restored):
            outcome = phase.lower()
            FLOWS_FINISHED.labels(outcome).inc()
            seconds = flow_duration_seconds(submitted_at, finished_at)
            if seconds is not None:
                FLOW_DURATION_SECONDS.labels(outcome).observe(seconds)
        self.set(uid, phase)

    def resumed(self, uid: str) -> None:
        """The flow runs again (a retry was applied): its next finish is a new one."""
        self._finished.discard(uid)

    def set(self, uid: str, phase: str) -> None:
        if phase in FINISHED:
            self._finished.add(uid)
        old = self._phases.get(uid)
        if old == phase:
            return
        self._phases[uid] = phase
        self._move(old, phase)

    def drop(self, uid: str) -> None:
        self._finished.discard(uid)
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


QueueKey = tuple[str, str, str]  # (redis, prefix, queue)


class QueueBacklogBook:
    """Which pool watches which queues, so that a queue's series go when no pool watches it.

    Every pool watching a queue sets the same values (the queue's counts), so sharing a queue
    exports it once; the series of a queue no pool watches any more are removed."""

    def __init__(self) -> None:
        self._watched: dict[str, set[QueueKey]] = {}  # pool uid -> its queues

    def export(self, pool_uid: str, counts: Mapping[QueueKey, Mapping[str, int]]) -> None:
        """The pool's queues and their counts (Backlog fields, e.g. Backlog.model_dump())."""
        for (redis, prefix, queue), fields in counts.items():
            for field, state in QUEUE_STATES.items():
                QUEUE_BACKLOG.labels(redis, prefix, queue, state).set(fields.get(field, 0))
            QUEUE_DELAYED_DUE.labels(redis, prefix, queue).set(fields.get("delayed_due", 0))
        before = self._watched.get(pool_uid, set())
        self._watched[pool_uid] = set(counts)
        self._remove_unwatched(before - set(counts))

    def drop(self, pool_uid: str) -> None:
        self._remove_unwatched(self._watched.pop(pool_uid, set()))

    def watched(self) -> set[QueueKey]:
        return set().union(*self._watched.values())

    def _remove_unwatched(self, candidates: set[QueueKey]) -> None:
        for key in candidates - self.watched():
            for state in QUEUE_STATES.values():
                with contextlib.suppress(KeyError):
                    QUEUE_BACKLOG.remove(*key, state)
            with contextlib.suppress(KeyError):
                QUEUE_DELAYED_DUE.remove(*key)


QUEUES = QueueBacklogBook()
