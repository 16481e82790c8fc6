"""WorkerPool reconciliation: one scaling loop per pool (a kopf daemon runs `run`).

Each turn of the loop is one idempotent `reconcile_once`: read (`_observe`: the spec, the Redis
connection, the workload's scale, the queues' backlog, the managed default-URL Secret), decide
(services/workerpool_decision.py, pure: the replicas, whether the owned Deployment needs
applying, the status), act (`_act`: steer which pods go first, apply or scale, write status).
The loop turns every pollIntervalSeconds, and at once when the queues' event streams show new
work (workerpool_events.py), when the WorkerPool changes or when its Deployment is edited.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import ValidationError

from .. import metrics
from ..cancellation import raise_if_cancelling
from ..config import Settings
from ..logs import about
from ..models.workerpool import Backlog, WorkerPoolSpec
from ..redaction import describe_error
from ..services.cluster_prefix import CLUSTER_PREFIX_NOT_HASH_TAGGED, cluster_prefix_refusal
from ..services.conditions import now_rfc3339
from ..services.redis_failure import classify_redis_failure
from ..services.scaling import Stabilizer
from ..services.worker_deployment import scale_target
from ..services.workerpool_decision import Observed, Turn, Unavailable, decide_turn
from ..storage.kube import KubeApi, ObjectRef
from ..storage.kube_apps import KubeApps
from ..storage.queues import QueueReader
from ..storage.redis_jobs import REDIS_ERRORS, BullRedis
from .connections import ConnectionUnresolved, RedisPool
from .flow import format_validation_error
from .workerpool_events import NewWorkWatch
from .workerpool_secret import DefaultSecrets, ManagedSecretConflict
from .workerpool_status import PoolReport, drop_metrics, export_backlog, export_replicas
from .workerpool_workload import Workloads

log = logging.getLogger(__name__)
MIN_TURN_SECONDS = 0.2
# After a failed turn the loop waits 1, 2, 4 ... up to this many seconds (wake-ups included:
# at most one turn a second while it keeps failing).
FAILURE_BACKOFF_MAX_SECONDS = 30.0
FAILURE_MIN_TURN_SECONDS = 1.0


@dataclass
class PoolState:
    """What one pool's loop keeps between turns."""

    ref: ObjectRef
    report: PoolReport
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    stabilizer: Stabilizer = field(default_factory=Stabilizer)
    spec: WorkerPoolSpec | None = None  # the last valid one (notify_work matches on it)
    new_work: NewWorkWatch = field(init=False)

    def __post_init__(self) -> None:
        self.new_work = NewWorkWatch(self.ref, self.wake)


class WorkerPoolController:
    def __init__(self, settings: Settings, kube: KubeApi, pool: RedisPool) -> None:
        self.settings = settings
        self.kube = kube
        self.pool = pool
        self.apps = KubeApps(kube)
        self.workloads = Workloads(kube, self.apps)
        self.secrets = DefaultSecrets(self.apps, pool.default_url)
        self.pools: dict[str, PoolState] = {}
        self._readers: dict[str, QueueReader] = {}
        # Called with (namespace, prefix, queues) when a pool starts serving queues.
        self.on_serving: Callable[[str, str, list[str]], None] | None = None

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
            await state.new_work.stop()
        self.pools.clear()

    # -- the loop -------------------------------------------------------------------------------

    async def run(self, body: Any, stopped: Any) -> None:
        """The daemon: loop until the WorkerPool is deleted or the operator stops."""
        meta = body["metadata"]
        ref = ObjectRef("WorkerPool", "workerpools", meta["namespace"], meta["name"], meta["uid"])
        state = self.pools.setdefault(ref.uid, PoolState(ref, PoolReport(self.kube, ref, body)))
        failures = 0  # turns failed in a row
        try:
            while not stopped:
                raise_if_cancelling()  # a library may have swallowed the cancellation
                state.wake.clear()
                started = time.monotonic()
                try:
                    sleep = await self.reconcile_once(state, body)
                    failures = 0
                except asyncio.CancelledError:
                    raise
                except Exception as err:  # the loop must outlive any error
                    raise_if_cancelling()
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
            await state.new_work.stop()
            self.pools.pop(ref.uid, None)
            self.secrets.forget(ref.uid)
            self.workloads.forget(ref.uid)
            drop_metrics(ref)

    async def _turn_failed(
        self, state: PoolState, body: Any, err: Exception, failures: int, retry_in: float
    ) -> None:
        """One line naming the pool and the error (the traceback at debug level), a metric,
        and the error in the Ready condition; the loop carries on after `retry_in`."""
        ref = state.ref
        message = describe_error(err)
        metrics.TASK_FAILURES.labels("workerpool-loop").inc()
        # A warning: the loop retries (ERROR is for what stopped, as in the operator's logs).
        log.warning(
            "WorkerPool %s/%s: reconcile failed (%d in a row), retrying in %.0fs: %s",
            ref.namespace,
            ref.name,
            failures,
            retry_in,
            message,
            extra=about(ref.namespace, ref.name),
        )
        log.debug(
            "WorkerPool %s/%s: reconcile failure",
            ref.namespace,
            ref.name,
            exc_info=err,
            extra=about(ref.namespace, ref.name),
        )
        generation = body["metadata"].get("generation")
        await state.report.condition("Ready", False, "ReconcileError", message, generation)

    async def reconcile_once(self, state: PoolState, body: Any) -> float:
        """One idempotent pass: read, decide, act. Returns how long to wait before the next
        one (at most)."""
        seen, conn = await self._observe(state, body)
        turn = decide_turn(seen, time.monotonic(), now_rfc3339())
        state.stabilizer = turn.stabilizer
        await self._act(state, seen, turn, conn)
        return turn.poll_seconds

    # -- read -----------------------------------------------------------------------------------

    async def _observe(self, state: PoolState, body: Any) -> tuple[Observed, BullRedis | None]:
        """What the turn decides from, and the pool's Redis (None: unresolved). Reads stop
        where nothing more is needed: at an invalid spec, or at a missing scaleTargetRef."""
        ref = state.ref
        seen = Observed(
            ref.namespace,
            ref.name,
            ref.uid,
            body["metadata"].get("generation"),
            state.report.written,
            state.stabilizer,
            self.workloads.applied(ref.uid),
        )
        served_before = state.spec
        try:
            spec = state.spec = WorkerPoolSpec.model_validate(body.get("spec") or {})
        except ValidationError as err:
            state.spec = None
            return replace(seen, invalid_spec=format_validation_error(err)), None
        if self.on_serving is not None and (
            served_before is None
            or (served_before.prefix, served_before.queues) != (spec.prefix, spec.queues)
        ):  # flows that wait for workers on these queues need not wait for a resync
            self.on_serving(ref.namespace, spec.prefix, spec.queues)
        conn: BullRedis | None = None
        unavailable: Unavailable | None = None
        try:
            resolved = await self.pool.resolve(ref.namespace, spec.connection)
            if refusal := cluster_prefix_refusal(resolved.topology, spec.prefix):
                raise ConnectionUnresolved(CLUSTER_PREFIX_NOT_HASH_TAGGED, refusal)
            conn = resolved
        except ConnectionUnresolved as err:
            unavailable = Unavailable(err.reason, err.message)
        kind, name = scale_target(ref.name, spec)
        scale = await self.apps.scale(kind, ref.namespace, name)
        seen = replace(seen, spec=spec, scale=scale, unavailable=unavailable)
        if scale is None and spec.worker is None:
            return seen, conn
        if conn is not None:
            seen = await self._read_backlog(state, seen, conn, spec)
        if spec.worker is not None and spec.connection is None and self.pool.default_url:
            try:
                seen = replace(seen, secret=await self.secrets.ensure(ref))
            except ManagedSecretConflict as err:
                seen = replace(seen, secret_conflict=str(err))
        return seen, conn

    async def _read_backlog(
        self, state: PoolState, seen: Observed, conn: BullRedis, spec: WorkerPoolSpec
    ) -> Observed:
        reader = self._reader(conn)
        await state.new_work.follow(reader, spec)
        try:
            per_queue = {q: await reader.counts(spec.prefix, q) for q in spec.queues}
        except REDIS_ERRORS as err:
            metrics.REDIS_ERRORS.labels("backlog").inc()
            failure = classify_redis_failure(err, conn.url)
            return replace(seen, unavailable=Unavailable(failure.reason, failure.message))
        redis = metrics.redis_label(conn.url)
        metrics.QUEUES.export(
            state.ref.uid, {(redis, spec.prefix, q): b.model_dump() for q, b in per_queue.items()}
        )
        return replace(seen, backlog=sum(per_queue.values(), Backlog()))

    def _reader(self, conn: BullRedis) -> QueueReader:
        if conn.url not in self._readers or self._readers[conn.url].conn is not conn:
            self._readers[conn.url] = QueueReader(conn)
        return self._readers[conn.url]

    # -- act ------------------------------------------------------------------------------------

    async def _act(
        self, state: PoolState, seen: Observed, turn: Turn, conn: BullRedis | None
    ) -> None:
        """Metrics for what was read; the rescale, if any; the status (its readiness as the
        workload reports it after the rescale)."""
        ref = state.ref
        if seen.backlog is not None:
            export_backlog(ref, seen.backlog)
        plan = turn.rescale
        if plan is None:
            await state.report.write(turn.status, force=turn.force_status)
            return
        activity = (self._reader(conn), seen.spec.prefix) if conn and seen.spec else None
        scale = await self.workloads.rescale(ref, plan, seen.scale, activity)
        ready = scale.ready_replicas if scale is not None else 0
        export_replicas(ref, current=plan.desired, desired=plan.desired, ready=ready)
        problem = None
        if scale is not None and ready < plan.desired:
            problem = await self.workloads.pod_problem(ref.namespace, scale.selector)
        await state.report.write(turn.reported(ready, problem), force=turn.force_status)


def failure_backoff(failures: int) -> float:
    """Seconds to wait after the `failures`-th failed turn in a row: 1, 2, 4 ... capped."""
    return float(min(2 ** min(failures - 1, 16), FAILURE_BACKOFF_MAX_SECONDS))
