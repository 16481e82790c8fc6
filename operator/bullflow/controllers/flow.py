"""Flow reconciliation: validate, submit exactly once, then follow (flow_status) and clean up
(flow_cleanup). One idempotent reconcile per Flow, called by the kopf handlers."""

from __future__ import annotations

import logging
from typing import Any

import kopf
from pydantic import ValidationError

from .. import metrics
from ..config import Settings
from ..logs import about
from ..models.flow import FlowSpec, FlowStatus
from ..services.cluster_prefix import CLUSTER_PREFIX_NOT_HASH_TAGGED, cluster_prefix_refusal
from ..services.flowstatus import FINISHED_PHASES, jobs_at_rest
from ..services.flowtree import PlannedJob, flow_token, plan, structural_errors
from ..services.redis_failure import REDIS_UNAVAILABLE, classify_redis_failure
from ..storage.kube import KubeApi, ObjectRef
from ..storage.redis_jobs import REDIS_ERRORS, BullRedis, SubmissionRejected
from .bookkeeping import AfterSubmit, Bookkeeper
from .connections import ConnectionUnresolved, RedisPool
from .flow_cleanup import FlowCleanup, TtlTimers, flow_ref, status_of
from .flow_operations import FlowContext, FlowOperations
from .flow_status import FlowStatusWriter
from .flow_submission import FlowSubmitter, OnSubmit
from .flow_template import FlowTemplates
from .queue_workers import QueueWorkers
from .redis_wait import RedisWait
from .tracker import TrackedFlow

log = logging.getLogger(__name__)
FINALIZER = "bullflow.io/finalizer"
NOT_IN_REDIS = (
    "the flow is {phase}: its jobs are not in Redis (not submitted yet, or its spec is "
    "invalid); only a submitted flow can be retried or stopped"
)


def format_validation_error(err: ValidationError) -> str:
    parts = []
    for issue in err.errors():
        where = "spec." + ".".join(str(p) for p in issue["loc"]) if issue["loc"] else "spec"
        message = issue["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}")
    return "; ".join(parts[:5]) + (f" (and {len(parts) - 5} more)" if len(parts) > 5 else "")


def has_finalizer(body: Any) -> bool:
    return FINALIZER in (body["metadata"].get("finalizers") or [])


class FlowController:
    def __init__(self, settings: Settings, kube: KubeApi, pool: RedisPool) -> None:
        self.settings = settings
        self.kube = kube
        self.pool = pool
        self.phases = metrics.PhaseBook()
        self.ttl = TtlTimers(kube, self.backoff)
        self.statuses = FlowStatusWriter(
            settings, kube, self.phases, QueueWorkers(kube), self.ttl.schedule
        )
        self.tracker = self.statuses.tracker
        self.submitter = FlowSubmitter(kube, self.statuses, self.phases, self.ttl.schedule)
        self.cleanup = FlowCleanup(pool, self.statuses, self.ttl, self.phases, self.backoff)
        self.redis_wait = RedisWait(self.reconcile)
        self.bookkeeper = Bookkeeper(kube, FINALIZER)
        self.operations = FlowOperations(kube, self.statuses)
        self.templates = FlowTemplates(kube, self.statuses, settings.max_nodes)

    @property
    def on_submit(self) -> OnSubmit | None:
        return self.submitter.on_submit

    @on_submit.setter
    def on_submit(self, callback: OnSubmit | None) -> None:
        self.submitter.on_submit = callback

    def backoff(self, retry: int) -> float:
        return float(min(2 ** min(retry, 16), self.settings.max_backoff_seconds))

    async def reconcile(self, body: Any, retry: int = 0) -> None:
        """Idempotent: safe to call any number of times for the same object."""
        ref = flow_ref(body)
        generation = body["metadata"].get("generation")
        status = status_of(body)
        if self.operations.is_stale(body):
            return  # the status write showing the retry brings a newer body
        operate = self.operations.is_pending(body)
        if operate and not status.submitted_at:
            status = await self.operations.refuse_unsubmitted(
                ref, body, status, generation, NOT_IN_REDIS.format(phase=status.phase)
            )
            operate = False
        if (valid := await self._valid_spec(body, ref, status, generation, retry)) is None:
            return
        spec, status = valid
        token = flow_token(ref.uid, ref.namespace, spec.idempotency_key)
        self.phases.set(ref.uid, status.phase)
        if status.phase in FINISHED_PHASES and not operate and jobs_at_rest(status):
            self._finished(body, spec, status, token)
            return
        try:
            conn = await self._connection(ref.namespace, spec)
        except ConnectionUnresolved as err:
            await self.statuses.not_ready(ref, status, generation, err.reason, err.message)
            raise kopf.TemporaryError(err.message, delay=self.backoff(retry)) from err
        jobs = plan(spec, token)
        ctx = FlowContext(ref, spec, conn, jobs, token, generation)
        if operate or (status.last_handled_stop and status.phase not in FINISHED_PHASES):
            operated = await self._operate(ctx, body, status, operate)
            if operated is None:
                return  # waiting for Redis, or a concurrent call handled the requests
            status = operated
            self.phases.set(ref.uid, status.phase)
            if status.phase in FINISHED_PHASES and jobs_at_rest(status):
                self._finished(body, spec, status, token)
                return
            self.ttl.cancel(ref.uid)
        own_events: dict[str, str] | None = None
        if not status.submitted_at:
            submitted = await self._submit_once(body, spec, status, conn, jobs, token, retry)
            if submitted is None:
                return  # adopted, rejected, or waiting for Redis
            status, own_events = submitted
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

    async def _connection(self, namespace: str, spec: FlowSpec) -> BullRedis:
        """The flow's Redis; a prefix a Redis Cluster cannot take is refused like a connection
        that does not resolve: reported, never submitted."""
        conn = await self.pool.resolve(namespace, spec.connection)
        if refusal := cluster_prefix_refusal(conn.topology, spec.prefix):
            raise ConnectionUnresolved(CLUSTER_PREFIX_NOT_HASH_TAGGED, refusal)
        return conn

    def _finished(self, body: Any, spec: FlowSpec, status: FlowStatus, token: str) -> None:
        self.tracker.untrack(token)
        self._keep_finalizer(body, spec, status)
        self.ttl.schedule(flow_ref(body), spec.ttl_seconds_after_finished, status)

    async def _operate(
        self, ctx: FlowContext, body: Any, status: FlowStatus, pending: bool
    ) -> FlowStatus | None:
        """Apply the pending retry/stop requests (or, for a flow stopped earlier, read the stop
        back from the marker). None while Redis is unreachable: the Flow then waits in
        RedisWait and is reconciled again, requests included, once Redis answers."""
        try:
            if pending:
                return await self.operations.handle(ctx, body, status)
            await self.operations.restore_stop(ctx)
            return status
        except REDIS_ERRORS as err:
            metrics.REDIS_ERRORS.labels("operation").inc()
            message = classify_redis_failure(err, ctx.conn.url).message
            self.redis_wait.add(ctx.conn, body)
            if pending:
                await self.operations.wait_for_redis(ctx.ref, body, status, ctx.generation, message)
            return None

    async def operate(self, body: Any) -> None:
        """A retry/stop annotation changed (handlers.flow): the reconcile handles it."""
        await self.reconcile(body)

    async def _submit_once(
        self,
        body: Any,
        spec: FlowSpec,
        status: FlowStatus,
        conn: BullRedis,
        jobs: list[PlannedJob],
        token: str,
        retry: int,
    ) -> tuple[FlowStatus, dict[str, str] | None] | None:
        """Submit the jobs (once: see FlowSubmitter). Returns the Submitted status and the
        submission's own events to track, or None when there is nothing to track: an earlier
        run adopted, the submission refused, or Redis unreachable (the Flow then waits in
        RedisWait and is reconciled again the moment Redis answers)."""
        ref = flow_ref(body)
        generation = body["metadata"].get("generation")
        try:
            submission = await self.submitter.submit(
                ref, spec, status, generation, conn, jobs, token
            )
            if submission.earlier is not None and await self.submitter.adopt(
                ref, spec, conn, token, submission, generation
            ):
                self._keep_finalizer(body, spec, submission.status)
                return None
            return submission.status, submission.own_events
        except SubmissionRejected as err:
            metrics.SUBMISSIONS.labels("rejected").inc()
            status = await self.statuses.rejected(ref, status, generation, str(err))
            self._keep_finalizer(body, spec, status)
            return None
        except REDIS_ERRORS as err:
            metrics.REDIS_ERRORS.labels("submit").inc()
            metrics.SUBMISSIONS.labels("error").inc()
            failure = classify_redis_failure(err, conn.url)
            message = failure.message
            if failure.reason != REDIS_UNAVAILABLE:
                # A wrong password or master name: this URL will never answer, so no RedisWait;
                # kopf's retry resolves the Secret again and so picks up its fix.
                await self.statuses.not_ready(ref, status, generation, failure.reason, message)
                raise kopf.TemporaryError(message, delay=self.backoff(retry)) from err
            log.warning(
                "flow %s/%s waits for Redis to be submitted: %s",
                ref.namespace,
                ref.name,
                message,
                extra=about(ref.namespace, ref.name),
            )
            self.redis_wait.add(conn, body)
            await self.statuses.not_ready(ref, status, generation, REDIS_UNAVAILABLE, message)
            return None

    async def _valid_spec(
        self, body: Any, ref: ObjectRef, status: FlowStatus, generation: int | None, retry: int
    ) -> tuple[FlowSpec, FlowStatus] | None:
        """The spec the Flow runs (for a templateRef: the template's tree, expanded and recorded
        in the status returned with it); None once a problem is reported (Ready=False)."""
        try:
            spec = FlowSpec.model_validate(body.get("spec") or {})
        except ValidationError as err:
            await self.statuses.invalid(ref, status, generation, format_validation_error(err))
            return None
        if spec.template_ref is not None:
            return await self.templates.effective_spec(
                ref, spec, status, generation, retry, self.backoff
            )
        if errors := structural_errors(spec, self.settings.max_nodes):
            await self.statuses.invalid(ref, status, generation, "; ".join(errors))
            return None
        return spec, status

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

    async def delete(self, body: Any, retry: int = 0) -> None:
        self.redis_wait.discard(body["metadata"]["uid"])
        await self.cleanup.delete(body, retry)

    async def gone(self, body: Any) -> None:
        self.redis_wait.discard(body["metadata"]["uid"])
        self.operations.forget(body["metadata"]["uid"])
        self.templates.forget(body["metadata"]["uid"])
        await self.cleanup.gone(body)

    def start(self) -> None:
        self.tracker.start()
        self.bookkeeper.start()

    async def close(self) -> None:
        self.ttl.close()
        await self.templates.close()
        await self.redis_wait.close()
        await self.tracker.stop()
        await self.statuses.no_workers.stop()
        await self.bookkeeper.stop()
