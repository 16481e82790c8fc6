"""What happens when a Flow goes: its deletionPolicy applied to its jobs in Redis, and the
ttlSecondsAfterFinished timers that delete finished Flows."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import kopf
from pydantic import ValidationError

from .. import metrics
from ..cancellation import raise_if_cancelling
from ..logs import about
from ..models.flow import FlowSpec, FlowStatus
from ..redaction import scrub
from ..services.conditions import now_rfc3339
from ..services.flow_from_template import recorded_spec
from ..services.flowstatus import (
    FINISHED_PHASES,
    JobSnapshot,
    build_status,
    jobs_at_rest,
    snapshots_at_removal,
)
from ..services.flowtree import PlannedJob, flow_token, plan
from ..services.template_expansion import TemplateError
from ..storage.kube import KubeApi, ObjectRef, describe_api_error
from ..storage.redis_jobs import REDIS_ERRORS, BullRedis
from .connections import ConnectionUnresolved, RedisPool
from .flow_status import FlowStatusWriter
from .flow_submission import status_from

log = logging.getLogger(__name__)
FORCE_DELETE_ANNOTATION = "bullflow.io/skip-redis-cleanup"
Backoff = Callable[[int], float]


def flow_ref(body: Any) -> ObjectRef:
    meta = body["metadata"]
    return ObjectRef("Flow", "flows", meta["namespace"], meta["name"], meta["uid"])


def status_of(body: Any) -> FlowStatus:
    return status_from(body.get("status") or {})


class TtlTimers:
    """One timer per finished Flow with ttlSecondsAfterFinished; a failed deletion is retried
    with backoff until it works (a Flow already gone counts as done)."""

    def __init__(self, kube: KubeApi, backoff: Backoff) -> None:
        self.kube = kube
        self.backoff = backoff
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def schedule(self, ref: ObjectRef, ttl: int | None, status: FlowStatus) -> None:
        if ttl is None or not status.finished_at or ref.uid in self._tasks:
            return
        finished = datetime.strptime(status.finished_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        due = finished.timestamp() + ttl
        self._tasks[ref.uid] = asyncio.create_task(self._delete_at(ref, due))

    def cancel(self, uid: str) -> None:
        task = self._tasks.pop(uid, None)
        if task:
            task.cancel()

    def close(self) -> None:
        for task in self._tasks.values():
            task.cancel()

    async def _delete_at(self, ref: ObjectRef, due: float) -> None:
        await asyncio.sleep(max(0.0, due - datetime.now(UTC).timestamp()))
        log.info(
            "deleting finished flow %s/%s (ttlSecondsAfterFinished)",
            ref.namespace,
            ref.name,
            extra=about(ref.namespace, ref.name),
        )
        attempt = 0
        while True:
            raise_if_cancelling()  # a library may have swallowed the cancellation
            try:
                await self.kube.delete(ref)
                break
            except Exception as err:  # the timer must outlive any error
                raise_if_cancelling()
                metrics.TASK_FAILURES.labels("ttl-delete").inc()
                delay = self.backoff(attempt)
                log.warning(
                    "deleting finished flow %s/%s failed, retrying in %.0fs: %s",
                    ref.namespace,
                    ref.name,
                    delay,
                    describe_api_error(err),
                    extra=about(ref.namespace, ref.name),
                )
                attempt += 1
                await asyncio.sleep(delay)
        self._tasks.pop(ref.uid, None)


class FlowCleanup:
    def __init__(
        self,
        pool: RedisPool,
        statuses: FlowStatusWriter,
        ttl: TtlTimers,
        phases: metrics.PhaseBook,
        backoff: Backoff,
    ) -> None:
        self.pool = pool
        self.statuses = statuses
        self.ttl = ttl
        self.phases = phases
        self.backoff = backoff
        self._cleaned_up: set[str] = set()  # uids whose finalizer ran delete()

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
                extra=about(ref.namespace, ref.name),
            )

    async def _record_outcome(
        self,
        conn: BullRedis,
        spec: FlowSpec,
        token: str,
        ref: ObjectRef,
        body: Any,
        status: FlowStatus,
        jobs: list[PlannedJob],
        before: dict[str, JobSnapshot],
    ) -> None:
        at_removal = snapshots_at_removal(jobs, before)
        if at_removal is None:
            log.info(
                "flow %s/%s: the jobs changed while they were removed; its idempotencyKey keeps "
                "the outcome recorded before",
                ref.namespace,
                ref.name,
                extra=about(ref.namespace, ref.name),
            )
            return
        final = build_status(
            status,
            jobs,
            at_removal,
            generation=body["metadata"].get("generation"),
            limits=self.statuses.limits,
            now=now_rfc3339(),
            stop=self.statuses.stops.get(token),
        )
        await conn.update_marker(spec.prefix, token, final_status=final.to_wire())

    async def _clean_up(self, ref: ObjectRef, body: Any, retry: int) -> None:
        self.ttl.cancel(ref.uid)
        self.phases.drop(ref.uid)
        annotations = body["metadata"].get("annotations") or {}
        status = status_of(body)
        try:  # a templateRef's tree: as recorded in the status (flow_from_template)
            spec = recorded_spec(FlowSpec.model_validate(body.get("spec") or {}), status)
        except (ValidationError, TemplateError):
            return  # never submitted
        if spec is None:
            return  # a templateRef never expanded: never submitted
        token = flow_token(ref.uid, ref.namespace, spec.idempotency_key)
        tracked = self.statuses.tracker.flows.get(token)
        if tracked is not None and tracked.ref.uid == ref.uid:
            self.statuses.tracker.untrack(token)
        if spec.deletion_policy == "Orphan" or annotations.get(FORCE_DELETE_ANNOTATION) == "true":
            return
        try:
            conn = await self.pool.resolve(ref.namespace, spec.connection)
            marker = await conn.marker(spec.prefix, token)
            if marker is None or marker.flow_uid != ref.uid:
                return  # never submitted, or the jobs belong to another Flow (same key)
            jobs = plan(spec, token)
            # A finished run with an idempotencyKey keeps its marker (the final status), so
            # that a re-created Flow is recognised and not run again.
            keeps_outcome = bool(spec.idempotency_key) and status.phase in FINISHED_PHASES
            before = None
            if keeps_outcome and not jobs_at_rest(status):
                # Its outcome was recorded while a job still ran: record how the jobs ended.
                before = await conn.snapshots(spec.prefix, jobs)
            locked = await conn.remove_trees(
                spec.prefix, [j for j in jobs if j.parent_path is None]
            )
            if not locked:
                if not keeps_outcome:
                    await conn.remove_marker(spec.prefix, token)
                elif before is not None:
                    await self._record_outcome(conn, spec, token, ref, body, status, jobs, before)
                return
            message = f"jobs {', '.join(locked)} are being processed; removing them later"
        except ConnectionUnresolved as err:
            message = err.message
        except REDIS_ERRORS as err:
            metrics.REDIS_ERRORS.labels("delete").inc()
            message = f"cannot remove the flow's jobs, Redis is unreachable: {scrub(str(err))}"
        await self.statuses.not_ready(
            ref,
            status,
            body["metadata"].get("generation"),
            "DeletionBlocked",
            f"{message} (annotate {FORCE_DELETE_ANNOTATION}=true to skip)",
        )
        raise kopf.TemporaryError(message, delay=self.backoff(retry))
