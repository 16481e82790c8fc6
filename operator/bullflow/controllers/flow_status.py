"""A Flow's status: followed from Redis and written until it says what Redis says.

FlowStatusWriter owns the tracker (events, coalescing, retries) and is the one place that
writes Flow statuses, whether built from the jobs (refresh) or from the reconcile's findings
(invalid spec, Redis unreachable, submission refused).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import astuple, replace

from redis.exceptions import RedisError

from .. import metrics
from ..config import Settings
from ..logs import about
from ..models.common import Condition
from ..models.flow import FlowStatus
from ..redaction import scrub
from ..services.conditions import now_rfc3339
from ..services.flowstatus import (
    FINISHED_PHASES,
    JobSnapshot,
    StatusLimits,
    StopNote,
    build_status,
    jobs_at_rest,
    just_submitted,
    not_ready,
    plural,
    rejected,
)
from ..services.no_workers import waiting_queues, workers_conditions
from ..services.redis_failure import classify_redis_failure
from ..storage.kube import KubeApi, ObjectRef, describe_api_error, is_too_large
from ..storage.redis_jobs import REDIS_ERRORS
from .connections import redacted_url
from .queue_workers import QueueWorkers
from .refresh_schedule import Outcome
from .tracker import FlowTracker, TrackedFlow
from .worker_watch import NoWorkersWatch

log = logging.getLogger(__name__)
# Called with (the Flow, its ttlSecondsAfterFinished, its final status) once that is written.
OnFinished = Callable[[ObjectRef, int | None, FlowStatus], None]


class FlowStatusWriter:
    def __init__(
        self,
        settings: Settings,
        kube: KubeApi,
        phases: metrics.PhaseBook,
        queue_workers: QueueWorkers,
        on_finished: OnFinished,
    ) -> None:
        self.kube = kube
        self.phases = phases
        self.queue_workers = queue_workers
        self.on_finished = on_finished
        self.limits = StatusLimits(
            settings.max_value_bytes, settings.max_listed_nodes, settings.max_status_bytes
        )
        self.tracker = FlowTracker(
            self.refresh,
            patch_interval=settings.patch_interval_seconds,
            resync_interval=settings.resync_interval_seconds,
            block_ms=settings.event_block_ms,
            retry_max=settings.status_retry_max_seconds,
        )
        self.no_workers = NoWorkersWatch(self.tracker, queue_workers)
        # The stop in effect per flow token (flow_operations: set when applied, or read back
        # from the marker by a restarted operator; dropped by the retry that undoes it).
        self.stops: dict[str, StopNote] = {}

    # -- following a flow ------------------------------------------------------------------

    async def refresh(self, flow: TrackedFlow) -> Outcome:
        """Make the Flow's written status (flow.status) say what Redis says.

        Reads the jobs, builds the status they mean and writes it if it differs from the
        written one. Returns RETRY when the read or the write failed: the tracker tries again
        with backoff until they agree (see RefreshSchedule), so no fault leaves a stale status
        behind. The written status changes only when the API server took the write."""
        written = flow.status
        try:
            snaps = await self._read_jobs(flow)
        except RedisError as err:
            return await self._read_failed(flow, written, err)
        limits = self.limits
        if flow.status_budget is not None:
            limits = replace(limits, max_status_bytes=flow.status_budget)
        desired = build_status(
            written,
            flow.jobs,
            snaps,
            generation=flow.generation,
            limits=limits,
            now=now_rfc3339(),
            stop=self.stops.get(flow.token),
        )
        if desired.phase in ("Submitted", "Running"):
            desired.conditions = await self._workers_condition(flow, desired, snaps)
        else:  # a finished flow needs no workers: drop what would now be stale
            desired.conditions = [c for c in desired.conditions if c.type != "WorkersAvailable"]
            self.no_workers.forget(flow.token)
        if not self._still_tracked(flow):
            return Outcome.GONE
        if desired != written:
            took = await self._write(flow, desired, "progress")
            if took is None:
                return Outcome.GONE
            if not took:
                return Outcome.RETRY
            await self._emit_transitions(flow, written, desired)
        if desired.phase not in FINISHED_PHASES:
            return Outcome.CURRENT
        if flow.keeps_outcome:
            try:
                await flow.conn.update_marker(
                    flow.prefix, flow.token, final_status=desired.to_wire()
                )
            except RedisError as err:
                metrics.REDIS_ERRORS.labels("marker").inc()
                log.warning(
                    "recording the outcome of flow %s/%s in Redis failed, retrying: %s",
                    flow.ref.namespace,
                    flow.ref.name,
                    err,
                    extra=about(flow.ref.namespace, flow.ref.name),
                )
                return Outcome.RETRY
        self.on_finished(flow.ref, flow.ttl_seconds, desired)
        # Finished is not at rest: a sibling of the failed child may still run, and its status
        # must still follow Redis until it ends.
        return Outcome.FINISHED if jobs_at_rest(desired) else Outcome.CURRENT

    async def _read_failed(
        self, flow: TrackedFlow, written: FlowStatus, err: RedisError
    ) -> Outcome:
        """The jobs could not be read: say so in the Ready condition, and retry."""
        metrics.REDIS_ERRORS.labels("read").inc()
        if isinstance(err, REDIS_ERRORS):
            reason, message = astuple(classify_redis_failure(err, flow.conn.url))
        else:
            reason = "RedisError"
            message = f"Redis at {redacted_url(flow.conn.url)} refused a read: {scrub(str(err))}"
        desired = not_ready(written, flow.generation, reason, message)
        if not self._still_tracked(flow):
            return Outcome.GONE
        if desired != written and await self._write(flow, desired, "condition") is None:
            return Outcome.GONE
        return Outcome.RETRY

    def _still_tracked(self, flow: TrackedFlow) -> bool:
        """False if the flow was deleted (its jobs being removed) or replaced while its jobs
        were read: what was read must not be written."""
        return self.tracker.flows.get(flow.token) is flow

    async def _read_jobs(self, flow: TrackedFlow) -> dict[str, JobSnapshot]:
        if flow.just_submitted:
            # Any later change has an event after the submission's own (own_events).
            flow.just_submitted = False
            return just_submitted(flow.jobs)
        snaps = await flow.conn.snapshots(flow.prefix, flow.jobs)
        flow.own_events = {}  # read for real: no event can be stale any more
        return snaps

    async def _write(self, flow: TrackedFlow, desired: FlowStatus, kind: str) -> bool | None:
        """Write the status; True if the API server took it (it is then flow.status), False if
        not (to be retried), None if the Flow is gone. A status too large for the object's size
        limit is written again with half the budget (fewer listed nodes)."""
        try:
            found = await self.write(flow.ref, desired, kind)
        except Exception as err:  # any failure is retried, never dropped
            too_large = is_too_large(err)
            metrics.STATUS_WRITE_FAILURES.labels("too-large" if too_large else "error").inc()
            if too_large:
                budget = max((flow.status_budget or self.limits.max_status_bytes) // 2, 1024)
                if budget != flow.status_budget:
                    flow.status_budget = budget
                    log.warning(
                        "the status of flow %s/%s is too large for the API server; writing it "
                        "again within %d bytes",
                        flow.ref.namespace,
                        flow.ref.name,
                        budget,
                        extra=about(flow.ref.namespace, flow.ref.name),
                    )
                    return False
            if not flow.failing:
                log.warning(
                    "writing the status of flow %s/%s failed, retrying until it is written: %s",
                    flow.ref.namespace,
                    flow.ref.name,
                    describe_api_error(err),
                    extra=about(flow.ref.namespace, flow.ref.name),
                )
            flow.failing = True
            return False
        if not found:
            return None
        if flow.failing:
            log.info(
                "the status of flow %s/%s is written again",
                flow.ref.namespace,
                flow.ref.name,
                extra=about(flow.ref.namespace, flow.ref.name),
            )
        flow.status = desired
        return True

    async def _workers_condition(
        self, flow: TrackedFlow, status: FlowStatus, snaps: dict[str, JobSnapshot]
    ) -> list[Condition]:
        """WorkersAvailable (and Ready's reason NoWorkers): False when waiting jobs sit on
        queues no worker or WorkerPool serves, so that a flow that will never run does not look
        merely slow. Such a flow is watched until a worker comes (NoWorkersWatch)."""
        unserved: list[str] | None
        try:
            unserved = [
                q
                for q in waiting_queues(flow.jobs, snaps)
                if not await self.queue_workers.served(
                    flow.conn, flow.ref.namespace, flow.prefix, q
                )
            ]
        except Exception as err:  # a lookup failure must not hold the status back
            log.debug("looking for workers of flow %s failed: %s", flow.ref.name, err)
            unserved = None  # keep what it said; the next refresh looks again
        if unserved is not None:
            self.no_workers.note(flow, unserved)
        return workers_conditions(status.conditions, unserved, flow.prefix, flow.generation)

    async def _emit_transitions(self, flow: TrackedFlow, old: FlowStatus, new: FlowStatus) -> None:
        """Events for what changed in a status just written. Best effort: the status holds the
        truth, an Event that cannot be posted is logged, not retried."""
        try:
            await self._post_transitions(flow, old, new)
        except Exception as err:  # see above
            log.warning(
                "posting an Event for flow %s/%s failed: %s",
                flow.ref.namespace,
                flow.ref.name,
                describe_api_error(err),
                extra=about(flow.ref.namespace, flow.ref.name),
            )

    async def _post_transitions(self, flow: TrackedFlow, old: FlowStatus, new: FlowStatus) -> None:
        was_failed = {n.path for n in old.nodes if n.state == "failed"}
        for node in new.nodes:
            if node.state == "failed" and node.path not in was_failed:
                await self.kube.event(
                    flow.ref,
                    "Warning",
                    "JobFailed",
                    f"job {node.path} ({node.name} on {node.queue}) failed after "
                    f"{plural(node.attempts_made, 'attempt')}: {node.failed_reason}",
                )
        if new.phase != old.phase and new.phase in FINISHED_PHASES:
            ready = next(c for c in new.conditions if c.type == "Ready")
            await self.kube.event(
                flow.ref,
                "Normal" if new.phase == "Completed" else "Warning",
                ready.reason,
                ready.message,
            )

    # -- statuses the reconcile decides ----------------------------------------------------

    async def write(self, ref: ObjectRef, status: FlowStatus, kind: str) -> bool:
        """One status write (the whole status). False if the Flow is gone."""
        with metrics.STATUS_PATCH_SECONDS.labels(kind).time():
            found = await self.kube.patch_status(ref, status.to_wire())
        metrics.STATUS_PATCHES.labels(kind).inc()
        if found:
            self.phases.written(
                ref.uid, status.phase, status.submitted_at, status.finished_at, kind == "restored"
            )
        else:
            self.phases.drop(ref.uid)
        return found

    async def not_ready(
        self, ref: ObjectRef, status: FlowStatus, generation: int | None, reason: str, message: str
    ) -> None:
        await self.write(ref, not_ready(status, generation, reason, message), "condition")

    async def invalid(
        self, ref: ObjectRef, status: FlowStatus, generation: int | None, message: str
    ) -> None:
        already = next((c for c in status.conditions if c.type == "Ready"), None)
        if already and already.reason == "InvalidSpec" and already.message == message:
            return
        await self.not_ready(ref, status, generation, "InvalidSpec", message)
        await self.kube.event(ref, "Warning", "InvalidSpec", message)

    async def rejected(
        self,
        ref: ObjectRef,
        status: FlowStatus,
        generation: int | None,
        message: str,
        reason: str = "SubmitRejected",
    ) -> FlowStatus:
        status = rejected(status, generation, reason, message, now_rfc3339())
        await self.write(ref, status, "condition")
        await self.kube.event(ref, "Warning", reason, message)
        return status
