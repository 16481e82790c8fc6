"""WorkerPool reconciliation: one scaling loop per pool (a kopf daemon runs `run`).

Each turn of the loop is one idempotent `reconcile_once`: read the spec, make sure the owned
Deployment matches it (server-side apply, so hand edits of our fields are reverted), read the
backlog, decide the replicas (services/scaling.py), steer which pods go first
(pod-deletion-cost from each worker's reported active jobs), scale, write status. The loop turns
every pollIntervalSeconds, and at once when the queues' event streams show new work, when the
WorkerPool changes or when its Deployment is edited.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException
from pydantic import ValidationError

from .. import GROUP, VERSION, metrics
from ..config import Settings
from ..models.workerpool import (
    Backlog,
    WorkerPoolSpec,
    WorkerPoolStatus,
)
from ..redaction import describe_error, scrub
from ..services.conditions import now_rfc3339, set_condition
from ..services.connection_secret import (
    SecretAction,
    build_default_connection_secret,
    default_connection_secret_name,
    secret_action,
)
from ..services.scaling import Stabilizer, decide, deletion_costs, fallback
from ..services.worker_deployment import (
    POOL_LABEL,
    ManagedSecret,
    ScaleState,
    build_deployment,
    deployment_digest,
    deployment_name,
)
from ..storage.kube import KubeApi, ObjectRef
from ..storage.kube_apps import KubeApps
from ..storage.queues import QueueReader
from ..storage.redis_jobs import REDIS_ERRORS, BullRedis
from .connections import ConnectionUnresolved, RedisPool, check_url, redacted_url
from .flow import format_validation_error

log = logging.getLogger(__name__)
MIN_TURN_SECONDS = 0.2
STATUS_MIN_INTERVAL = 1.0
EVENT_BLOCK_MS = 1000
# The managed default-connection Secret is read again at most this often: a hand-deleted or
# edited one is restored within this time, without a GET per turn.
SECRET_RECHECK_SECONDS = 30.0
# After a failed turn the loop waits 1, 2, 4 ... up to this many seconds (wake-ups included:
# at most one turn a second while it keeps failing).
FAILURE_BACKOFF_MAX_SECONDS = 30.0
FAILURE_MIN_TURN_SECONDS = 1.0


class ManagedSecretConflict(Exception):
    """A Secret with the managed Secret's name exists and is not this WorkerPool's."""


@dataclass
class PoolState:
    ref: ObjectRef
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    stabilizer: Stabilizer = field(default_factory=Stabilizer)
    spec: WorkerPoolSpec | None = None
    status: WorkerPoolStatus = field(default_factory=WorkerPoolStatus)
    last_status_patch: float = 0.0
    applied_hash: str | None = None
    applied_generation: int | None = None
    events_key: tuple[str, str, tuple[str, ...]] | None = None
    events_task: asyncio.Task[None] | None = None
    default_secret: ManagedSecret | None = None
    default_secret_checked: float = 0.0


class WorkerPoolController:
    def __init__(self, settings: Settings, kube: KubeApi, pool: RedisPool) -> None:
        self.settings = settings
        self.kube = kube
        self.pool = pool
        self.apps = KubeApps(kube)
        self.pools: dict[str, PoolState] = {}
        self._readers: dict[str, QueueReader] = {}

    # -- API for handlers and for the Flow controller ------------------------------------------

    def wake(self, uid: str) -> None:
        if state := self.pools.get(uid):
            state.wake.set()

    def notify_work(self, namespace: str, prefix: str, queues: Iterable[str]) -> None:
        """New jobs were just added (e.g. a Flow submitted): wake the pools of those queues."""
        wanted = set(queues)
        for state in self.pools.values():
            spec = state.spec
            if (
                spec
                and state.ref.namespace == namespace
                and spec.prefix == prefix
                and (wanted & set(spec.queues))
            ):
                state.wake.set()

    async def close(self) -> None:
        for state in list(self.pools.values()):
            await self._stop_events(state)
        self.pools.clear()

    # -- the loop -------------------------------------------------------------------------------

    async def run(self, body: Any, stopped: Any) -> None:
        """The daemon: loop until the WorkerPool is deleted or the operator stops."""
        meta = body["metadata"]
        ref = ObjectRef("WorkerPool", "workerpools", meta["namespace"], meta["name"], meta["uid"])
        state = self.pools.setdefault(ref.uid, PoolState(ref))
        state.status = _status_of(body)
        failures = 0  # turns failed in a row
        try:
            while not stopped:
                state.wake.clear()
                started = time.monotonic()
                try:
                    sleep = await self.reconcile_once(state, body)
                    failures = 0
                except asyncio.CancelledError:
                    raise
                except Exception as err:  # the loop must outlive any error
                    failures += 1
                    sleep = failure_backoff(failures)
                    await self._turn_failed(state, body, err, failures, sleep)
                with contextlib.suppress(TimeoutError):
                    # Not wait_for: on Python 3.11 it swallows a cancel that lands as the
                    # event fires.
                    async with asyncio.timeout(sleep):
                        await state.wake.wait()
                min_turn = FAILURE_MIN_TURN_SECONDS if failures else MIN_TURN_SECONDS
                elapsed = time.monotonic() - started
                if elapsed < min_turn:
                    await asyncio.sleep(min_turn - elapsed)
        finally:
            await self._stop_events(state)
            self.pools.pop(ref.uid, None)
            _drop_metrics(ref)

    async def _turn_failed(
        self, state: PoolState, body: Any, err: Exception, failures: int, retry_in: float
    ) -> None:
        """One line naming the pool and the error (the traceback at debug level), a metric,
        and the error in the Ready condition; the loop carries on after `retry_in`."""
        ref = state.ref
        message = describe_error(err)
        metrics.TASK_FAILURES.labels("workerpool-loop").inc()
        log.error(
            "WorkerPool %s/%s: reconcile failed (%d in a row), retrying in %.0fs: %s",
            ref.namespace,
            ref.name,
            failures,
            retry_in,
            message,
        )
        log.debug("WorkerPool %s/%s: reconcile failure", ref.namespace, ref.name, exc_info=err)
        await self._safe_condition(state, body, "Ready", False, "ReconcileError", message)

    async def reconcile_once(self, state: PoolState, body: Any) -> float:
        """One idempotent pass. Returns how long to wait before the next one (at most)."""
        ref = state.ref
        generation = body["metadata"].get("generation")
        status = state.status.model_copy(deep=True)
        try:
            spec = WorkerPoolSpec.model_validate(body.get("spec") or {})
        except ValidationError as err:
            state.spec = None
            status.conditions = set_condition(
                status.conditions,
                "Ready",
                False,
                "InvalidSpec",
                format_validation_error(err),
                generation,
            )
            status.observed_generation = generation
            await self._patch(state, status, force=True)
            return 60.0
        state.spec = spec
        policy = spec.scaling
        status.observed_generation = generation

        # Where the backlog lives.
        conn: BullRedis | None = None
        conn_error: tuple[str, str] | None = None
        try:
            conn = await self.pool.resolve(ref.namespace, spec.connection)
        except ConnectionUnresolved as err:
            conn_error = (err.reason, err.message)

        # The workload.
        target_kind, target_name = (
            ("Deployment", deployment_name(ref.name))
            if spec.worker is not None
            else (spec.scale_target_ref.kind, spec.scale_target_ref.name)  # type: ignore[union-attr]
        )
        status.target = f"{target_kind}/{target_name}"
        scale = await self.apps.scale(target_kind, ref.namespace, target_name)
        if scale is None and spec.worker is None:
            status.conditions = set_condition(
                status.conditions,
                "Ready",
                False,
                "ScaleTargetNotFound",
                f"{target_kind} {ref.namespace}/{target_name} does not exist",
                generation,
            )
            status.replicas = status.ready_replicas = None
            await self._patch(state, status)
            return float(policy.poll_interval_seconds)
        current = scale.replicas if scale is not None else 0

        # The backlog, and the decision.
        counts = None
        if conn is not None:
            await self._ensure_events(state, conn, spec)
            try:
                counts = await self._reader(conn).backlog(spec.prefix, spec.queues)
            except REDIS_ERRORS as err:
                metrics.REDIS_ERRORS.labels("backlog").inc()
                conn_error = (
                    "RedisUnavailable",
                    f"Redis at {redacted_url(conn.url)} is unreachable: {scrub(str(err))}",
                )
        now = time.monotonic()
        if counts is None:
            assert conn_error is not None
            reason, message = conn_error
            state.stabilizer.reset()
            desired = fallback(current, policy)
            how = (
                f"using fallbackReplicas {policy.fallback_replicas}"
                if policy.fallback_replicas is not None
                else f"keeping {current} replicas"
            )
            status.conditions = set_condition(
                status.conditions, "ScalingActive", False, reason, f"{message}; {how}", generation
            )
            scale_reason = f"{reason}: {how}"
            limited, limited_message = None, ""
        else:
            decision = decide(state.stabilizer, now, counts.total, current, policy)
            desired = decision.replicas
            scale_reason = decision.reason
            limited = decision.recommendation.limited
            limited_message = decision.recommendation.reason if limited else ""
            status.backlog = counts
            _export_backlog(ref, status.backlog)
            status.conditions = set_condition(
                status.conditions,
                "ScalingActive",
                True,
                "BacklogRead",
                f"backlog {counts.total} on {', '.join(spec.queues)}",
                generation,
            )
        status.conditions = set_condition(
            status.conditions,
            "ScalingLimited",
            limited is not None,
            limited or "WithinBounds",
            limited_message,
            generation,
        )
        status.desired_replicas = desired

        # Where the owned workers find the default Redis (a Secret, never a plain env value).
        default_secret: ManagedSecret | None = None
        if spec.worker is not None and spec.connection is None and self.pool.default_url:
            try:
                default_secret = await self._ensure_default_secret(state)
            except ManagedSecretConflict as err:
                status.conditions = set_condition(
                    status.conditions, "Ready", False, "SecretConflict", str(err), generation
                )
                await self._patch(state, status, force=True)
                return float(policy.poll_interval_seconds)

        # Act.
        if desired < current and scale is not None:
            await self._steer_deletion(state, spec, conn, scale)
        if spec.worker is not None:
            scale = await self._apply_owned(state, spec, desired, scale, default_secret)
        elif scale is not None and desired != current:
            await self.apps.set_replicas(target_kind, ref.namespace, target_name, desired)
        if desired != current:
            status.last_scale_time = now_rfc3339()
            status.last_scale_reason = f"{current} -> {desired}: {scale_reason}"
            log.info(
                "WorkerPool %s/%s: scale %s %s -> %s (%s)",
                ref.namespace,
                ref.name,
                status.target,
                current,
                desired,
                scale_reason,
            )
            await self.kube.event(
                ref,
                "Normal",
                "ScaledUp" if desired > current else "ScaledDown",
                f"{status.target} {current} -> {desired}: {scale_reason}",
            )
        status.replicas = desired
        status.ready_replicas = scale.ready_replicas if scale is not None else 0
        ready = status.ready_replicas >= desired
        status.conditions = set_condition(
            status.conditions,
            "Ready",
            ready,
            "ReplicasReady" if ready else "ReplicasNotReady",
            f"{status.ready_replicas}/{desired} replicas ready",
            generation,
        )
        _export_replicas(ref, current=desired, desired=desired, ready=status.ready_replicas)
        await self._patch(state, status, force=desired != current)
        return float(policy.poll_interval_seconds)

    # -- pieces -------------------------------------------------------------------------------

    def _reader(self, conn: BullRedis) -> QueueReader:
        if conn.url not in self._readers or self._readers[conn.url].conn is not conn:
            self._readers[conn.url] = QueueReader(conn)
        return self._readers[conn.url]

    async def _ensure_default_secret(self, state: PoolState) -> ManagedSecret:
        """Create or update the Secret with the operator's default URL for this pool's workers,
        only when what the API server holds differs; read again every SECRET_RECHECK_SECONDS.

        Raises ManagedSecretConflict if a Secret of that name belongs to someone else."""
        ref = state.ref
        now = time.monotonic()
        if (
            state.default_secret is not None
            and now - state.default_secret_checked < SECRET_RECHECK_SECONDS
        ):
            return state.default_secret
        assert self.pool.default_url
        wanted = build_default_connection_secret(
            ref.namespace,
            ref.name,
            ref.uid,
            check_url(self.pool.default_url),
            {"app.kubernetes.io/name": "bullflow-worker", POOL_LABEL: ref.name},
            f"{GROUP}/{VERSION}",
        )
        name = default_connection_secret_name(ref.name)
        existing = await self.apps.secret(ref.namespace, name)
        action = secret_action(existing, wanted, ref.uid)
        if action is SecretAction.CONFLICT:
            raise ManagedSecretConflict(
                f"Secret {ref.namespace}/{name} exists and is not this WorkerPool's: bullflow "
                "keeps the default Redis URL for the workers there. Rename or delete that "
                "Secret, or set spec.connection"
            )
        if action is SecretAction.CREATE:
            version = await self.apps.create_secret(wanted)
        elif action is SecretAction.UPDATE:
            assert existing is not None
            version = await self.apps.replace_secret(wanted, existing.resource_version)
        else:
            assert existing is not None
            version = existing.resource_version
        if action is not SecretAction.KEEP:
            done = "created" if action is SecretAction.CREATE else "updated"
            log.info("WorkerPool %s/%s: %s Secret %s", ref.namespace, ref.name, done, name)
        state.default_secret = ManagedSecret(name, version)
        state.default_secret_checked = now
        return state.default_secret

    async def _apply_owned(
        self,
        state: PoolState,
        spec: WorkerPoolSpec,
        replicas: int,
        scale: ScaleState | None,
        default_secret: ManagedSecret | None,
    ) -> ScaleState | None:
        """Server-side apply the Deployment when it is missing, differs from what we applied
        (its generation moved: someone edited it), or needs other replicas."""
        ref = state.ref
        body = build_deployment(ref.namespace, ref.name, ref.uid, spec, replicas, default_secret)
        digest = deployment_digest(body)
        if (
            scale is not None
            and digest == state.applied_hash
            and scale.generation == state.applied_generation
            and scale.replicas == replicas
        ):
            return scale
        edited = (
            scale is not None
            and state.applied_generation is not None
            and digest == state.applied_hash
            and scale.generation != state.applied_generation
        )
        await self.apps.apply_deployment(body)
        fresh = await self.apps.scale("Deployment", ref.namespace, deployment_name(ref.name))
        state.applied_hash = digest
        state.applied_generation = fresh.generation if fresh else None
        if edited and fresh is not None and fresh.generation != (scale and scale.generation):
            await self.kube.event(
                ref,
                "Normal",
                "Reconciled",
                f"Deployment {fresh.name} was edited; restored from the spec",
            )
        return fresh

    async def _steer_deletion(
        self, state: PoolState, spec: WorkerPoolSpec, conn: BullRedis | None, scale: ScaleState
    ) -> None:
        """Before a scale-down: pod-deletion-cost = each worker's active jobs, so the
        ReplicaSet controller removes idle workers first (busy ones drain anyway on SIGTERM)."""
        if conn is None or not scale.selector:
            return
        try:
            pods = [
                p
                for p in await self.apps.pods(state.ref.namespace, scale.selector)
                if not p.deleting
            ]
            active = await self._reader(conn).activity(
                spec.prefix, state.ref.namespace, [p.name for p in pods]
            )
        except REDIS_ERRORS:
            return
        costs = deletion_costs(active, [p.name for p in pods])
        for pod in pods:
            if pod.deletion_cost != str(costs[pod.name]):
                await self.apps.set_deletion_cost(state.ref.namespace, pod.name, costs[pod.name])

    async def _ensure_events(self, state: PoolState, conn: BullRedis, spec: WorkerPoolSpec) -> None:
        key = (conn.url, spec.prefix, tuple(spec.queues))
        if state.events_key == key and state.events_task and not state.events_task.done():
            return
        await self._stop_events(state)
        state.events_key = key
        state.events_task = asyncio.create_task(
            self._follow_events(state, conn, spec.prefix, list(spec.queues)),
            name=f"workerpool-events:{state.ref.namespace}/{state.ref.name}",
        )

    async def _follow_events(
        self, state: PoolState, conn: BullRedis, prefix: str, queues: list[str]
    ) -> None:
        """Wake the loop as soon as a queue's events stream shows new work."""
        reader = self._reader(conn)
        streams: dict[str, str] | None = None
        while True:
            try:
                if streams is None:
                    streams = await reader.stream_tails(prefix, queues)
                seen, streams = await reader.wait_for_new_work(streams, EVENT_BLOCK_MS)
                if seen:
                    state.wake.set()
            except asyncio.CancelledError:
                raise
            except REDIS_ERRORS:
                streams = None  # resume from the tail; the poll recounts the backlog anyway
                await asyncio.sleep(1.0)
            except Exception as err:  # the follower must outlive any error
                metrics.TASK_FAILURES.labels("workerpool-events").inc()
                log.warning(
                    "WorkerPool %s/%s: following the queues' events failed, retrying: %s",
                    state.ref.namespace,
                    state.ref.name,
                    describe_error(err),
                )
                streams = None
                await asyncio.sleep(1.0)

    async def _stop_events(self, state: PoolState) -> None:
        task, state.events_task, state.events_key = state.events_task, None, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _patch(self, state: PoolState, status: WorkerPoolStatus, force: bool = False) -> None:
        if status == state.status and state.last_status_patch:
            return
        now = time.monotonic()
        if (
            not force
            and _same_but_backlog(status, state.status)
            and (now - state.last_status_patch < STATUS_MIN_INTERVAL)
        ):
            return
        try:
            await self.kube.patch_status(state.ref, status.to_wire())
        except ApiException as err:
            log.warning("WorkerPool %s: status patch failed: %s", state.ref.name, err.reason)
            return
        metrics.STATUS_PATCHES.labels("workerpool").inc()
        state.status = status
        state.last_status_patch = now

    async def _safe_condition(
        self, state: PoolState, body: Any, type_: str, ok: bool, reason: str, message: str
    ) -> None:
        status = state.status.model_copy(deep=True)
        status.conditions = set_condition(
            status.conditions,
            type_,
            ok,
            reason,
            scrub(message)[:1000],
            body["metadata"].get("generation"),
        )
        with contextlib.suppress(Exception):
            await self._patch(state, status, force=True)


def failure_backoff(failures: int) -> float:
    """Seconds to wait after the `failures`-th failed turn in a row: 1, 2, 4 ... capped."""
    return float(min(2 ** min(failures - 1, 16), FAILURE_BACKOFF_MAX_SECONDS))


def _same_but_backlog(a: WorkerPoolStatus, b: WorkerPoolStatus) -> bool:
    """Only the backlog numbers moved: such patches are coalesced (at most one per second)."""
    return a.model_copy(update={"backlog": None}) == b.model_copy(update={"backlog": None})


def _status_of(body: Any) -> WorkerPoolStatus:
    try:
        return WorkerPoolStatus.model_validate(body.get("status") or {})
    except ValidationError:
        return WorkerPoolStatus()


def _export_backlog(ref: ObjectRef, backlog: Backlog) -> None:
    for kind, value in backlog.model_dump().items():
        metrics.WORKERPOOL_BACKLOG.labels(ref.namespace, ref.name, kind).set(value)


def _export_replicas(ref: ObjectRef, **values: int) -> None:
    for which, value in values.items():
        metrics.WORKERPOOL_REPLICAS.labels(ref.namespace, ref.name, which).set(value)


def _drop_metrics(ref: ObjectRef) -> None:
    for kind in Backlog.model_fields:
        with contextlib.suppress(KeyError):
            metrics.WORKERPOOL_BACKLOG.remove(ref.namespace, ref.name, kind)
    for which in ("current", "desired", "ready"):
        with contextlib.suppress(KeyError):
            metrics.WORKERPOOL_REPLICAS.remove(ref.namespace, ref.name, which)
