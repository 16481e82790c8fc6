"""Flow reconciliation: validate, submit exactly once, follow, clean up."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import kopf
from kubernetes_asyncio.client.exceptions import ApiException
from pydantic import ValidationError
from redis.exceptions import RedisError

from .. import metrics
from ..config import Settings
from ..models.common import Condition
from ..models.flow import FlowSpec, FlowStatus
from ..services.conditions import now_rfc3339, set_condition
from ..services.flowstatus import (
    FINISHED_PHASES,
    JobSnapshot,
    StatusLimits,
    build_status,
    just_submitted,
    not_ready,
)
from ..services.flowtree import (
    PlannedJob,
    flow_token,
    plan,
    structural_errors,
    to_flowproducer,
)
from ..storage.kube import KubeApi, ObjectRef, describe_api_error, is_too_large
from ..storage.queues import queues_without_workers
from ..storage.redis_jobs import REDIS_ERRORS, BullRedis, SubmissionRejected
from .bookkeeping import AfterSubmit, Bookkeeper
from .connections import ConnectionError_, RedisPool, redacted_url
from .refresh_schedule import Outcome
from .tracker import FlowTracker, TrackedFlow

log = logging.getLogger(__name__)
FORCE_DELETE_ANNOTATION = "bullflow.io/skip-redis-cleanup"
FINALIZER = "bullflow.io/finalizer"
WORKERS_CACHE_SECONDS = 3.0


def format_validation_error(err: ValidationError) -> str:
    parts = []
    for issue in err.errors():
        where = "spec." + ".".join(str(p) for p in issue["loc"]) if issue["loc"] else "spec"
        message = issue["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}")
    return "; ".join(parts[:5]) + (f" (and {len(parts) - 5} more)" if len(parts) > 5 else "")


def has_finalizer(body: Any) -> bool:
    return FINALIZER in (body["metadata"].get("finalizers") or [])


def flow_ref(body: Any) -> ObjectRef:
    meta = body["metadata"]
    return ObjectRef("Flow", "flows", meta["namespace"], meta["name"], meta["uid"])


class FlowController:
    def __init__(self, settings: Settings, kube: KubeApi, pool: RedisPool) -> None:
        self.settings = settings
        self.kube = kube
        self.pool = pool
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
        self.bookkeeper = Bookkeeper(kube, FINALIZER)
        self._ttl_tasks: dict[str, asyncio.Task[None]] = {}
        self._cleaned_up: set[str] = set()  # uids whose finalizer ran delete()
        self.phases = metrics.PhaseBook()
        self._served: dict[tuple[str, str, str, str], tuple[float, asyncio.Future[bool]]] = {}
        # Called with (namespace, prefix, queues) right after a submission: WorkerPools scale up
        # from that instead of waiting for their next poll.
        self.on_submit: Callable[[str, str, Iterable[str]], None] | None = None

    def backoff(self, retry: int) -> float:
        return float(min(2 ** min(retry, 16), self.settings.max_backoff_seconds))

    async def reconcile(self, body: Any, retry: int = 0) -> None:
        """Idempotent: safe to call any number of times for the same object."""
        ref = flow_ref(body)
        generation = body["metadata"].get("generation")
        status = _status_of(body)
        try:
            spec = FlowSpec.model_validate(body.get("spec") or {})
        except ValidationError as err:
            await self._invalid(ref, status, generation, format_validation_error(err))
            return
        if errors := structural_errors(spec, self.settings.max_nodes):
            await self._invalid(ref, status, generation, "; ".join(errors))
            return
        token = flow_token(ref.uid, ref.namespace, spec.idempotency_key)
        self.phases.set(ref.uid, status.phase)
        if status.phase in FINISHED_PHASES:
            self.tracker.forget(token)
            self._keep_finalizer(body, spec, status)
            self._schedule_ttl(ref, spec.ttl_seconds_after_finished, status)
            return
        try:
            conn = await self.pool.resolve(ref.namespace, spec.connection)
        except ConnectionError_ as err:
            await self._not_ready(ref, status, generation, err.reason, err.message)
            raise kopf.TemporaryError(err.message, delay=self.backoff(retry)) from err
        jobs = plan(spec, token)
        own_events: dict[str, str] | None = None
        if not status.submitted_at:
            try:
                status, earlier, own_events = await self._submit(
                    ref, spec, status, generation, conn, jobs, token
                )
                if earlier is not None and await self._adopt(
                    ref, spec, conn, token, earlier, status, generation
                ):
                    self._keep_finalizer(body, spec, status)
                    return
            except SubmissionRejected as err:
                metrics.SUBMISSIONS.labels("rejected").inc()
                status = await self._rejected(ref, status, generation, str(err))
                self._keep_finalizer(body, spec, status)
                return
            except REDIS_ERRORS as err:
                metrics.REDIS_ERRORS.labels("submit").inc()
                metrics.SUBMISSIONS.labels("error").inc()
                message = f"Redis at {redacted_url(conn.url)} is unreachable: {err}"
                await self._not_ready(ref, status, generation, "RedisUnavailable", message)
                raise kopf.TemporaryError(message, delay=self.backoff(retry)) from err
        await self.tracker.track(
            TrackedFlow(
                ref,
                conn,
                spec.prefix,
                jobs,
                generation,
                status,
                spec.ttl_seconds_after_finished,
                token=token,
                keeps_outcome=spec.idempotency_key is not None,
                just_submitted=own_events is not None,
                own_events=own_events or {},
            )
        )
        self._keep_finalizer(body, spec, status)

    def _keep_finalizer(self, body: Any, spec: FlowSpec, status: FlowStatus) -> None:
        """A Flow whose jobs reached Redis gets bullflow's finalizer (deletionPolicy Delete), so
        that its jobs are removed even when it is deleted while the operator is down. Queued
        behind the status writes (see bookkeeping)."""
        wanted = (
            status.submitted_at is not None
            and spec.deletion_policy == "Delete"
            and not has_finalizer(body)
        )
        if wanted:
            self.bookkeeper.add(
                AfterSubmit(
                    flow_ref(body), has_finalizer_list=bool(body["metadata"].get("finalizers"))
                )
            )

    async def _submit(
        self,
        ref: ObjectRef,
        spec: FlowSpec,
        status: FlowStatus,
        generation: int | None,
        conn: BullRedis,
        jobs: list[PlannedJob],
        token: str,
    ) -> tuple[FlowStatus, dict[str, Any] | None, dict[str, str] | None]:
        """Submit (once). Returns the new status, the marker of an earlier submission by another
        Flow object (same idempotencyKey) if there was one, and if this call added the jobs,
        the last id of each events stream right after (see BullRedis.submit)."""
        marker: dict[str, Any] = {
            "namespace": ref.namespace,
            "name": ref.name,
            "uid": ref.uid,
            "submittedAt": now_rfc3339(),
            "jobs": len(jobs),
        }
        with metrics.SUBMIT_SECONDS.time():
            own_events = await conn.submit(spec.prefix, to_flowproducer(spec, token), token, marker)
        fresh = own_events is not None
        metrics.SUBMISSIONS.labels("submitted" if fresh else "already-submitted").inc()
        if not fresh:
            marker = await conn.is_submitted(spec.prefix, token) or marker
        earlier = marker if marker.get("uid") != ref.uid else None
        status = status.model_copy(deep=True)
        status.submitted_at = marker["submittedAt"]
        status.phase = "Submitted"
        status.progress = f"0/{len(jobs)}"
        status.total_nodes = len(jobs)
        status.observed_generation = generation
        status.conditions = set_condition(
            status.conditions,
            "Submitted",
            True,
            "Submitted",
            f"{len(jobs)} jobs added to Redis in one transaction",
            generation,
        )
        status.conditions = set_condition(
            status.conditions,
            "Ready",
            False,
            "Submitted",
            "jobs are waiting for workers",
            generation,
        )
        # No patch here: the tracker writes the first full status (states, counts) right after,
        # one API write per flow instead of two. A crash before it is safe: the marker in Redis
        # says the flow was submitted, and the next reconcile writes the status.
        self.phases.set(ref.uid, status.phase)
        if fresh and self.on_submit is not None:
            self.on_submit(ref.namespace, spec.prefix, {j.queue for j in jobs})
        return status, earlier, own_events

    async def _adopt(
        self,
        ref: ObjectRef,
        spec: FlowSpec,
        conn: BullRedis,
        token: str,
        earlier: dict[str, Any],
        status: FlowStatus,
        generation: int | None,
    ) -> bool:
        """A Flow whose idempotencyKey already ran. True if fully handled (nothing to track)."""
        if earlier.get("name") != ref.name and await self.kube.exists(
            ObjectRef("Flow", "flows", ref.namespace, earlier["name"], earlier["uid"])
        ):
            await self._rejected(
                ref,
                status,
                generation,
                f"idempotencyKey {spec.idempotency_key!r} is already used by Flow "
                f"{earlier['name']} in this namespace",
                reason="DuplicateIdempotencyKey",
            )
            return True
        await conn.update_marker(spec.prefix, token, {"uid": ref.uid, "name": ref.name})
        message = (
            f"already run as {earlier['name']} (uid {earlier['uid']}), submitted at "
            f"{earlier['submittedAt']}: jobs not submitted again (idempotencyKey)"
        )
        if "status" not in earlier:  # still running: follow the same jobs
            status.conditions = set_condition(
                status.conditions, "Restored", True, "IdempotencyKey", message, generation
            )
            return False
        restored = _status_from(earlier["status"])
        restored.observed_generation = generation
        restored.conditions = set_condition(
            restored.conditions,
            "Restored",
            True,
            "IdempotencyKey",
            message + "; status restored from Redis",
            generation,
        )
        await self._patch(ref, restored, "restored")
        self._schedule_ttl(ref, spec.ttl_seconds_after_finished, restored)
        return True

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
            metrics.REDIS_ERRORS.labels("read").inc()
            reason = "RedisUnavailable" if isinstance(err, REDIS_ERRORS) else "RedisError"
            verb = "is unreachable" if reason == "RedisUnavailable" else "refused a read"
            message = f"Redis at {redacted_url(flow.conn.url)} {verb}: {err}"
            desired = not_ready(written, flow.generation, reason, message)
            if not self._still_tracked(flow):
                return Outcome.GONE
            if desired != written and await self._write(flow, desired, "condition") is None:
                return Outcome.GONE
            return Outcome.RETRY
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
        )
        if desired.phase in ("Submitted", "Running"):
            desired.conditions = await self._workers_condition(flow, desired, snaps)
        else:  # a finished flow needs no workers: drop what would now be stale
            desired.conditions = [c for c in desired.conditions if c.type != "WorkersAvailable"]
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
                await flow.conn.update_marker(flow.prefix, flow.token, {"status": _wire(desired)})
            except RedisError as err:
                metrics.REDIS_ERRORS.labels("marker").inc()
                log.warning(
                    "recording the outcome of flow %s/%s in Redis failed, retrying: %s",
                    flow.ref.namespace,
                    flow.ref.name,
                    err,
                )
                return Outcome.RETRY
        self._schedule_ttl(flow.ref, flow.ttl_seconds, desired)
        return Outcome.FINISHED

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
            found = await self._patch(flow.ref, desired, kind)
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
                    )
                    return False
            if not flow.failing:
                log.warning(
                    "writing the status of flow %s/%s failed, retrying until it is written: %s",
                    flow.ref.namespace,
                    flow.ref.name,
                    describe_api_error(err),
                )
            flow.failing = True
            return False
        if not found:
            return None
        if flow.failing:
            log.info("the status of flow %s/%s is written again", flow.ref.namespace, flow.ref.name)
        flow.status = desired
        return True

    async def _workers_condition(
        self, flow: TrackedFlow, status: FlowStatus, snaps: dict[str, JobSnapshot]
    ) -> list[Condition]:
        """WorkersAvailable: False when waiting jobs sit on queues no worker or WorkerPool serves,
        so that a flow that will never run does not look merely slow."""
        waiting = sorted(
            {
                j.queue
                for j in flow.jobs
                if j.job_id in snaps
                and snaps[j.job_id].state in ("waiting", "prioritized", "delayed")
            }
        )
        try:
            unserved = [q for q in waiting if not await self._queue_served(flow, q)]
        except Exception as err:  # a lookup failure must not hold the status back
            log.debug("looking for workers of flow %s failed: %s", flow.ref.name, err)
            return status.conditions  # keep what it said; the next refresh looks again
        if unserved:
            return set_condition(
                status.conditions,
                "WorkersAvailable",
                False,
                "NoWorkers",
                f"no BullMQ worker is connected to queue(s) {', '.join(unserved)} "
                f"(prefix {flow.prefix}) and no WorkerPool serves them",
                flow.generation,
            )
        return set_condition(
            status.conditions,
            "WorkersAvailable",
            True,
            "WorkersAvailable",
            "every queue with waiting jobs has a worker or a WorkerPool",
            flow.generation,
        )

    async def _queue_served(self, flow: TrackedFlow, queue: str) -> bool:
        """A WorkerPool for the queue, or a live BullMQ worker of any language. Cached briefly
        and looked up once for all the flows that ask meanwhile: a burst of new flows on one
        queue would otherwise send as many WorkerPool LISTs and CLIENT LISTs as status writes."""
        key = (flow.conn.url, flow.ref.namespace, flow.prefix, queue)
        cached = self._served.get(key)
        if cached is None or cached[0] <= time.monotonic():
            lookup = asyncio.ensure_future(self._look_for_workers(flow, queue))
            lookup.add_done_callback(lambda done: self._forget_failed(key, done))
            cached = (time.monotonic() + WORKERS_CACHE_SECONDS, lookup)
            self._served[key] = cached
        return await asyncio.shield(cached[1])

    def _forget_failed(self, key: tuple[str, str, str, str], lookup: asyncio.Future[bool]) -> None:
        failed = lookup.cancelled() or lookup.exception() is not None
        entry = self._served.get(key)
        if failed and entry is not None and entry[1] is lookup:
            del self._served[key]

    async def _look_for_workers(self, flow: TrackedFlow, queue: str) -> bool:
        try:
            pools = await self.kube.list_custom(flow.ref.namespace, "workerpools")
        except ApiException:  # no WorkerPool CRD installed: only live workers count
            pools = []
        covered = {
            q
            for p in pools
            if (p.get("spec") or {}).get("prefix", "bull") == flow.prefix
            for q in (p.get("spec") or {}).get("queues", [])
        }
        return not await queues_without_workers(flow.conn, flow.prefix, [queue], covered)

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
                    f"{node.attempts_made} attempt(s): {node.failed_reason}",
                )
        if new.phase != old.phase and new.phase in FINISHED_PHASES:
            ready = next(c for c in new.conditions if c.type == "Ready")
            await self.kube.event(
                flow.ref,
                "Normal" if new.phase == "Completed" else "Warning",
                ready.reason,
                ready.message,
            )

    async def delete(self, body: Any, retry: int = 0) -> None:
        """Apply deletionPolicy. Retries with backoff (never gives up silently) if Redis is down."""
        ref = flow_ref(body)
        await self._clean_up(ref, body, retry)
        self._cleaned_up.add(ref.uid)

    async def gone(self, body: Any) -> None:
        """The Flow is deleted. Without bullflow's finalizer (deletionPolicy Orphan, never
        submitted, or deleted before the finalizer was added) delete() has not run: run it
        once now, best effort."""
        ref = flow_ref(body)
        if ref.uid in self._cleaned_up:
            self._cleaned_up.discard(ref.uid)
            return
        try:
            await self._clean_up(ref, body, 0)
        except kopf.TemporaryError as err:
            log.warning(
                "flow %s/%s was deleted before its finalizer was added and its jobs could not "
                "be removed: %s",
                ref.namespace,
                ref.name,
                err,
            )

    async def _clean_up(self, ref: ObjectRef, body: Any, retry: int) -> None:
        self._cancel_ttl(ref.uid)
        self.phases.drop(ref.uid)
        annotations = body["metadata"].get("annotations") or {}
        try:
            spec = FlowSpec.model_validate(body.get("spec") or {})
        except ValidationError:
            return  # never submitted
        token = flow_token(ref.uid, ref.namespace, spec.idempotency_key)
        status = _status_of(body)
        if _owner_of_token(self.tracker.flows.get(token), ref):
            self.tracker.forget(token)
        if spec.deletion_policy == "Orphan" or annotations.get(FORCE_DELETE_ANNOTATION) == "true":
            return
        try:
            conn = await self.pool.resolve(ref.namespace, spec.connection)
            marker = await conn.is_submitted(spec.prefix, token)
            if marker is None or marker.get("uid") != ref.uid:
                return  # never submitted, or the jobs belong to another Flow (same key)
            locked = await conn.remove_trees(
                spec.prefix, [j for j in plan(spec, token) if j.parent_path is None]
            )
            if not locked:
                # A finished run with an idempotencyKey keeps its marker (the final status), so
                # that a re-created Flow is recognised and not run again.
                if not (spec.idempotency_key and status.phase in FINISHED_PHASES):
                    await conn.forget(spec.prefix, token)
                return
            message = f"jobs {', '.join(locked)} are being processed; removing them later"
        except ConnectionError_ as err:
            message = err.message
        except REDIS_ERRORS as err:
            metrics.REDIS_ERRORS.labels("delete").inc()
            message = f"cannot remove the flow's jobs, Redis is unreachable: {err}"
        await self._not_ready(
            ref,
            status,
            body["metadata"].get("generation"),
            "DeletionBlocked",
            f"{message} (annotate {FORCE_DELETE_ANNOTATION}=true to skip)",
        )
        raise kopf.TemporaryError(message, delay=self.backoff(retry))

    async def _rejected(
        self,
        ref: ObjectRef,
        status: FlowStatus,
        generation: int | None,
        message: str,
        reason: str = "SubmitRejected",
    ) -> FlowStatus:
        """Terminal: retrying cannot help, and the jobs that were accepted stay as they are."""
        status = status.model_copy(deep=True)
        status.phase = "Failed"
        status.submitted_at = status.submitted_at or now_rfc3339()
        status.finished_at = now_rfc3339()
        for type_, value in (("Failed", True), ("Ready", False), ("Completed", False)):
            status.conditions = set_condition(
                status.conditions, type_, value, reason, message, generation
            )
        await self._patch(ref, status, "condition")
        await self.kube.event(ref, "Warning", reason, message)
        return status

    async def _invalid(
        self, ref: ObjectRef, status: FlowStatus, generation: int | None, message: str
    ) -> None:
        already = next((c for c in status.conditions if c.type == "Ready"), None)
        if already and already.reason == "InvalidSpec" and already.message == message:
            return
        await self._not_ready(ref, status, generation, "InvalidSpec", message)
        await self.kube.event(ref, "Warning", "InvalidSpec", message)

    async def _not_ready(
        self, ref: ObjectRef, status: FlowStatus, generation: int | None, reason: str, message: str
    ) -> None:
        await self._patch(ref, not_ready(status, generation, reason, message), "condition")

    async def _patch(self, ref: ObjectRef, status: FlowStatus, kind: str) -> bool:
        with metrics.STATUS_PATCH_SECONDS.labels(kind).time():
            found = await self.kube.patch_status(ref, _wire(status))
        metrics.STATUS_PATCHES.labels(kind).inc()
        if found:
            self.phases.set(ref.uid, status.phase)
        else:
            self.phases.drop(ref.uid)
        return found

    def _schedule_ttl(self, ref: ObjectRef, ttl: int | None, status: FlowStatus) -> None:
        if ttl is None or not status.finished_at or ref.uid in self._ttl_tasks:
            return
        finished = datetime.strptime(status.finished_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        due = finished.timestamp() + ttl
        self._ttl_tasks[ref.uid] = asyncio.create_task(self._delete_at(ref, due))

    async def _delete_at(self, ref: ObjectRef, due: float) -> None:
        """Delete the Flow when its TTL ends; a failed deletion is retried with backoff until it
        works (or the Flow is gone: a 404 counts as done)."""
        await asyncio.sleep(max(0.0, due - datetime.now(UTC).timestamp()))
        log.info("deleting finished flow %s/%s (ttlSecondsAfterFinished)", ref.namespace, ref.name)
        attempt = 0
        while True:
            try:
                await self.kube.delete(ref)
                break
            except Exception as err:  # the timer must outlive any error
                metrics.TASK_FAILURES.labels("ttl-delete").inc()
                delay = self.backoff(attempt)
                log.warning(
                    "deleting finished flow %s/%s failed, retrying in %.0fs: %s",
                    ref.namespace,
                    ref.name,
                    delay,
                    describe_api_error(err),
                )
                attempt += 1
                await asyncio.sleep(delay)
        self._ttl_tasks.pop(ref.uid, None)

    def _cancel_ttl(self, uid: str) -> None:
        task = self._ttl_tasks.pop(uid, None)
        if task:
            task.cancel()

    def start(self) -> None:
        self.tracker.start()
        self.bookkeeper.start()

    async def close(self) -> None:
        for task in self._ttl_tasks.values():
            task.cancel()
        await self.tracker.stop()
        await self.bookkeeper.stop()


def _status_of(body: Any) -> FlowStatus:
    return _status_from(body.get("status") or {})


def _status_from(raw: dict[str, Any]) -> FlowStatus:
    try:
        return FlowStatus.model_validate(raw)
    except ValidationError:
        return FlowStatus()


def _owner_of_token(flow: TrackedFlow | None, ref: ObjectRef) -> bool:
    return flow is not None and flow.ref.uid == ref.uid


def _wire(status: FlowStatus) -> dict[str, Any]:
    return status.model_dump(by_alias=True, mode="json", exclude_none=True)
