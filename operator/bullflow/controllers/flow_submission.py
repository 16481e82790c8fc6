"""Submitting a Flow's jobs exactly once, and adopting an earlier run of its idempotencyKey."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pydantic import ValidationError

from .. import metrics
from ..models.flow import FlowSpec, FlowStatus
from ..models.marker import SubmissionMarker
from ..services.conditions import now_rfc3339, set_condition
from ..services.flowstatus import jobs_at_rest, restored, submitted
from ..services.flowtree import PlannedJob, to_flowproducer
from ..storage.kube import KubeApi, ObjectRef
from ..storage.redis_jobs import BullRedis
from .flow_status import FlowStatusWriter, OnFinished

# Called with (namespace, prefix, queues) right after a submission: WorkerPools scale up from
# that instead of waiting for their next poll.
OnSubmit = Callable[[str, str, Iterable[str]], None]


@dataclass
class Submission:
    status: FlowStatus  # Submitted (not written yet: the tracker writes it with the states)
    # The marker of an earlier submission by another Flow object (same idempotencyKey).
    earlier: SubmissionMarker | None
    # If this call added the jobs: each events stream's last id right after (BullRedis.submit).
    own_events: dict[str, str] | None


class FlowSubmitter:
    def __init__(
        self,
        kube: KubeApi,
        statuses: FlowStatusWriter,
        phases: metrics.PhaseBook,
        on_finished: OnFinished,
    ) -> None:
        self.kube = kube
        self.statuses = statuses
        self.phases = phases
        self.on_finished = on_finished
        self.on_submit: OnSubmit | None = None

    async def submit(
        self,
        ref: ObjectRef,
        spec: FlowSpec,
        status: FlowStatus,
        generation: int | None,
        conn: BullRedis,
        jobs: list[PlannedJob],
        token: str,
    ) -> Submission:
        """Add the jobs with their marker in one transaction, unless the marker says they were
        added already. Raises SubmissionRejected or a Redis error."""
        marker = SubmissionMarker(
            namespace=ref.namespace,
            name=ref.name,
            flow_uid=ref.uid,
            submitted_at=now_rfc3339(),
            jobs=len(jobs),
        )
        with metrics.SUBMIT_SECONDS.time():
            own_events = await conn.submit(spec.prefix, to_flowproducer(spec, token), token, marker)
        fresh = own_events is not None
        metrics.SUBMISSIONS.labels("submitted" if fresh else "already-submitted").inc()
        if not fresh:
            marker = await conn.marker(spec.prefix, token) or marker
        # No status write here: the tracker writes the first full status (states, counts) right
        # after, one API write per flow instead of two. A crash before it is safe: the marker in
        # Redis says the flow was submitted, and the next reconcile writes the status.
        status = submitted(status, len(jobs), marker.submitted_at, generation)
        self.phases.set(ref.uid, status.phase)
        if fresh and self.on_submit is not None:
            self.on_submit(ref.namespace, spec.prefix, {j.queue for j in jobs})
        earlier = marker if marker.flow_uid != ref.uid else None
        return Submission(status, earlier, own_events)

    async def adopt(
        self,
        ref: ObjectRef,
        spec: FlowSpec,
        conn: BullRedis,
        token: str,
        submission: Submission,
        generation: int | None,
    ) -> bool:
        """A Flow whose idempotencyKey already ran. True if fully handled (nothing to track);
        False: follow the same jobs (submission.status then says where they came from)."""
        earlier = submission.earlier
        assert earlier is not None
        if earlier.name != ref.name and await self.kube.exists(
            ObjectRef("Flow", "flows", ref.namespace, earlier.name, earlier.flow_uid)
        ):
            await self.statuses.rejected(
                ref,
                submission.status,
                generation,
                f"idempotencyKey {spec.idempotency_key!r} is already used by Flow "
                f"{earlier.name} in this namespace",
                reason="DuplicateIdempotencyKey",
            )
            return True
        await conn.update_marker(spec.prefix, token, owner=(ref.uid, ref.name))
        message = (
            f"already run as {earlier.name} (uid {earlier.flow_uid}), submitted at "
            f"{earlier.submitted_at}: jobs not submitted again (idempotencyKey)"
        )
        final_status = status_from(earlier.final_status) if earlier.final_status else None
        # Still running, or ended with a job still running (a failed child's sibling): follow
        # the same jobs; a status recorded before they came to rest would stay behind.
        if final_status is None or not jobs_at_rest(final_status):
            submission.status.conditions = set_condition(
                submission.status.conditions,
                "Restored",
                True,
                "IdempotencyKey",
                message,
                generation,
            )
            return False
        final = restored(final_status, generation, message + "; status restored from Redis")
        await self.statuses.write(ref, final, "restored")
        self.on_finished(ref, spec.ttl_seconds_after_finished, final)
        return True


def status_from(raw: dict) -> FlowStatus:
    """A stored status; an empty one if it does not parse (written by another version)."""
    try:
        return FlowStatus.model_validate(raw)
    except ValidationError:
        return FlowStatus()
