"""Day-2 operations on a Flow: `bullflow.io/retry` and `bullflow.io/stop` annotations.

Each distinct annotation value is handled once: applied (in one MULTI/EXEC with the marker,
storage/redis_retry) or refused (condition + Warning Event). The value handled is recorded in
the status (lastHandledRetry / lastHandledStop); the value applied also in the submission
marker, in the same transaction as the jobs' moves, so that an operator killed between the
transaction and the status write finds it there and only records it (already-applied).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from .. import metrics
from ..logs import about
from ..models.flow import FlowSpec, FlowStatus, RetryRecord
from ..services.conditions import now_rfc3339
from ..services.flowstatus import StopNote
from ..services.flowtree import PlannedJob
from ..services.operation_status import (
    operation_pending,
    predates_handled,
    retried,
    retry_refused,
    stop_refused,
    stopped,
)
from ..services.retry_plan import (
    RetryRefused,
    RetryRequest,
    path_order,
    plan_retry,
    retry_request,
    stop_token,
)
from ..services.stop_plan import StopPlan, StopRefused, plan_readd, plan_stop
from ..storage.kube import KubeApi, ObjectRef
from ..storage.redis_jobs import BullRedis
from ..storage.redis_retry import (
    MarkerGone,
    RetryScripts,
    StoredOperations,
    TooManyConflicts,
    Writes,
    read_operations,
    transact,
)
from .flow_status import FlowStatusWriter

log = logging.getLogger(__name__)
ALREADY = "already-applied"


@dataclass(frozen=True)
class FlowContext:
    """What an operation needs to know about its Flow."""

    ref: ObjectRef
    spec: FlowSpec
    conn: BullRedis
    jobs: list[PlannedJob]
    token: str
    generation: int | None


def pending_tokens(body: Any) -> tuple[str | None, str | None]:
    """(retry token, stop token) of the annotations not yet handled according to the status."""
    annotations = body.get("metadata", {}).get("annotations") or {}
    status = body.get("status") or {}
    request = retry_request(annotations)
    retry = request.token if request else None
    stop = stop_token(annotations)
    return (
        retry if retry and retry != status.get("lastHandledRetry") else None,
        stop if stop and stop != status.get("lastHandledStop") else None,
    )


def has_pending(body: Any) -> bool:
    return any(pending_tokens(body))


class FlowOperations:
    def __init__(self, kube: KubeApi, statuses: FlowStatusWriter) -> None:
        self.kube = kube
        self.statuses = statuses
        self._locks: dict[str, asyncio.Lock] = {}
        # Handled in this process, by uid: an event can show an annotation again before the
        # status that records it (kind -> token).
        self._handled: dict[str, dict[str, str]] = {}

    def forget(self, uid: str) -> None:
        self._locks.pop(uid, None)
        self._handled.pop(uid, None)

    def is_pending(self, body: Any) -> bool:
        uid = body["metadata"]["uid"]
        retry, stop = pending_tokens(body)
        done = self._handled.get(uid, {})
        return bool((retry and done.get("retry") != retry) or (stop and done.get("stop") != stop))

    def is_stale(self, body: Any) -> bool:
        """The body predates a retry or stop this process handled (its status does not show it
        yet): after a retry its phase (Failed, Stopped) is no longer true and acting on it would
        stop following a flow that runs again; after a stop, following the flow anew from its
        status would write that status back without the stop recorded (lastHandledStop)."""
        handled = self._handled.get(body["metadata"]["uid"], {})
        return predates_handled(handled, body.get("status"))

    async def refuse_unsubmitted(
        self, ref: ObjectRef, body: Any, status: FlowStatus, generation: int | None, why: str
    ) -> FlowStatus:
        """Requests on a Flow whose jobs are not in Redis (Pending, invalid spec)."""
        retry, stop = pending_tokens(body)
        if retry:
            status = await self._refuse_retry(ref, status, retry, why, generation)
        if stop:
            status = await self._refuse_stop(ref, status, stop, why, generation)
        return status

    async def handle(self, ctx: FlowContext, body: Any, status: FlowStatus) -> FlowStatus | None:
        """Apply or refuse the pending requests (stop first: "stop, fix, retry" set together
        while the operator was down ends running). None if a concurrent call handled them.
        Redis errors propagate: the caller records the request as pending and comes back when
        Redis answers."""
        lock = self._locks.setdefault(ctx.ref.uid, asyncio.Lock())
        async with lock:
            if not self.is_pending(body):
                return None  # handled by a concurrent call, whose reconcile goes on
            retry, stop = pending_tokens(body)
            annotations = body["metadata"].get("annotations") or {}
            tracked = self.statuses.tracker.flows.get(ctx.token)
            if tracked is not None:  # what the tracker last wrote is newer than the body's
                status = tracked.status
            if stop:
                status = await self._stop(ctx, status, stop)
            request = retry_request(annotations)
            if retry and request is not None:
                status = await self._retry(ctx, status, request)
            return status

    async def wait_for_redis(
        self, ref: ObjectRef, body: Any, status: FlowStatus, generation: int | None, why: str
    ) -> None:
        retry, stop = pending_tokens(body)
        for kind, token, counter in (
            ("retry", retry, metrics.FLOW_RETRIES),
            ("stop", stop, metrics.FLOW_STOPS),
        ):
            if token:
                counter.labels("pending").inc()
                status = operation_pending(status, kind, token, why, generation)
        await self.statuses.write(ref, status, "condition")

    async def restore_stop(self, ctx: FlowContext) -> None:
        """A restarted operator learns the stop in effect from the marker."""
        ops = await read_operations(ctx.conn, ctx.spec.prefix, ctx.token)
        self.statuses.stops.pop(ctx.token, None)
        if ops is not None and ops.stopped:
            self.statuses.stops[ctx.token] = note_of(ops)

    # -- retry ------------------------------------------------------------------------------

    async def _retry(self, ctx: FlowContext, status: FlowStatus, req: RetryRequest) -> FlowStatus:
        scripts = RetryScripts(ctx.conn, ctx.spec.prefix)
        lifo = {p for p, opts in _opts_by_path(ctx.spec).items() if opts.get("lifo")}
        phase = status.phase
        started = time.monotonic()

        def decide(ops: StoredOperations, snaps: Any) -> Any:
            if ops.retry == req.token:
                return ALREADY
            removed = ops.removed_by_stop
            plan = plan_retry(phase, ctx.jobs, snaps, req, removed)
            readd = plan_readd(ctx.spec, ctx.token, ctx.spec.prefix, ctx.jobs, snaps, removed)
            again = {j.path for j in plan.reprocess}
            reprocess = plan.reprocess + [j for j in readd.kept_failed if j.path not in again]
            now_ms = int(time.time() * 1000)

            async def queue(pipe: Any) -> None:
                for job in plan.reopen:
                    await scripts.reopen(pipe, job, now_ms, req.reset_attempts)
                await scripts.readd(pipe, readd)
                for job in reprocess:
                    await scripts.reprocess(pipe, job, req.reset_attempts, job.path in lifo)

            paths = sorted(
                {*plan.paths, *readd.paths, *(j.path for j in reprocess)}, key=path_order
            )
            new_ops = StoredOperations(req.token, ops.retry_count + 1, ops.stop, None)
            return Writes(new_ops, queue, result=paths, clear_final_status=True)

        try:
            outcome = await transact(ctx.conn, ctx.spec.prefix, ctx.token, ctx.jobs, decide)
        except (RetryRefused, MarkerGone, TooManyConflicts) as err:
            return await self._refuse_retry(ctx.ref, status, req.token, str(err), ctx.generation)
        self.statuses.stops.pop(ctx.token, None)
        self.statuses.phases.resumed(ctx.ref.uid)
        if outcome == ALREADY:
            metrics.FLOW_RETRIES.labels(ALREADY).inc()
            nodes: list[str] = []
        else:
            metrics.FLOW_RETRIES.labels("applied").inc()
            nodes = outcome.result
            _log_applied(ctx.ref, req.token, time.monotonic() - started, len(nodes))
        record = RetryRecord(
            value=req.token, time=now_rfc3339(), nodes=nodes, reset_attempts=req.reset_attempts
        )
        status = retried(status, record, ctx.generation, now_rfc3339())
        await self.statuses.write(ctx.ref, status, "condition")
        # Only once written: if the write fails, the next event handles the token again and
        # finds it in the marker (already-applied).
        self._handled.setdefault(ctx.ref.uid, {})["retry"] = req.token
        retried_cond = next(c for c in status.conditions if c.type == "Retried")
        await self._event(ctx.ref, "Normal", "Retried", retried_cond.message)
        return status

    async def _refuse_retry(
        self, ref: ObjectRef, status: FlowStatus, token: str, why: str, gen: int | None
    ) -> FlowStatus:
        metrics.FLOW_RETRIES.labels("refused").inc()
        status = retry_refused(status, token, why, gen)
        await self.statuses.write(ref, status, "condition")
        self._handled.setdefault(ref.uid, {})["retry"] = token
        await self._event(ref, "Warning", "RetryRefused", f"retry {token!r} refused: {why}")
        return status

    # -- stop -------------------------------------------------------------------------------

    async def _stop(self, ctx: FlowContext, status: FlowStatus, token: str) -> FlowStatus:
        scripts = RetryScripts(ctx.conn, ctx.spec.prefix)
        phase = status.phase

        def decide(ops: StoredOperations, snaps: Any) -> Any:
            if ops.stop == token:
                return ALREADY
            plan = plan_stop(phase, ctx.jobs, snaps)

            async def queue(pipe: Any) -> None:
                for job in plan.remove:
                    await scripts.remove(pipe, job)

            stopped_record = {
                "token": token,
                "removed": [j.path for j in plan.remove],
                "running": len(plan.running),
            }
            new_ops = StoredOperations(ops.retry, ops.retry_count, token, stopped_record)
            return Writes(new_ops, queue, result=plan)

        try:
            outcome = await transact(ctx.conn, ctx.spec.prefix, ctx.token, ctx.jobs, decide)
        except (StopRefused, MarkerGone, TooManyConflicts) as err:
            return await self._refuse_stop(ctx.ref, status, token, str(err), ctx.generation)
        ops = await read_operations(ctx.conn, ctx.spec.prefix, ctx.token)
        if outcome == ALREADY:
            metrics.FLOW_STOPS.labels(ALREADY).inc()
        else:
            metrics.FLOW_STOPS.labels("applied").inc()
        # Handled (self._handled) only once written, as for a retry: if a write fails, the next
        # event handles the token again and finds it in the marker (already-applied).
        if ops is None or not ops.stopped:  # undone by a retry already: only record it
            status = status.model_copy(update={"last_handled_stop": token})
            await self.statuses.write(ctx.ref, status, "condition")
            self._handled.setdefault(ctx.ref.uid, {})["stop"] = token
            return status
        note = note_of(ops)
        if outcome != ALREADY:
            plan: StopPlan = outcome.result
            note = StopNote(token, frozenset(j.path for j in plan.remove), len(plan.running))
        self.statuses.stops[ctx.token] = note
        status = stopped(status, note, ctx.generation, now_rfc3339())
        await self.statuses.write(ctx.ref, status, "condition")
        self._handled.setdefault(ctx.ref.uid, {})["stop"] = token
        await self._event(ctx.ref, "Normal", "Stopped", note.message)
        return status

    async def _refuse_stop(
        self, ref: ObjectRef, status: FlowStatus, token: str, why: str, gen: int | None
    ) -> FlowStatus:
        metrics.FLOW_STOPS.labels("refused").inc()
        status = stop_refused(status, token, why, gen)
        await self.statuses.write(ref, status, "condition")
        self._handled.setdefault(ref.uid, {})["stop"] = token
        await self._event(ref, "Warning", "StopRefused", f"stop {token!r} refused: {why}")
        return status

    async def _event(self, ref: ObjectRef, type_: str, reason: str, message: str) -> None:
        try:
            await self.kube.event(ref, type_, reason, message)
        except Exception as err:  # the status holds the truth; an Event is best effort
            log.warning(
                "posting an Event for flow %s/%s failed: %s",
                ref.namespace,
                ref.name,
                err,
                extra=about(ref.namespace, ref.name),
            )


def _log_applied(ref: ObjectRef, token: str, seconds: float, jobs: int) -> None:
    log.info(
        "flow %s/%s: retry %r applied in %.3fs (%d jobs)",
        ref.namespace,
        ref.name,
        token,
        seconds,
        jobs,
        extra=about(ref.namespace, ref.name),
    )


def note_of(ops: StoredOperations) -> StopNote:
    raw = ops.stopped or {}
    return StopNote(
        str(raw.get("token") or ops.stop or ""),
        frozenset(raw.get("removed") or []),
        int(raw.get("running") or 0),
    )


def _opts_by_path(spec: FlowSpec) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    stack = [(tree, str(i)) for i, tree in enumerate(spec.trees())]
    while stack:
        node, path = stack.pop()
        out[path] = node.opts.to_wire() if node.opts else {}
        stack.extend((child, f"{path}.{i}") for i, child in enumerate(node.children))
    return out
