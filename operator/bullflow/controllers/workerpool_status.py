"""What a WorkerPool reports: its status subresource and its Prometheus gauges."""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException
from pydantic import ValidationError

from .. import metrics
from ..logs import about
from ..models.workerpool import Backlog, WorkerPoolStatus
from ..redaction import scrub
from ..services.conditions import set_condition
from ..services.workerpool_decision import status_write_due
from ..storage.kube import KubeApi, ObjectRef

log = logging.getLogger(__name__)


class PoolReport:
    """One pool's status as last written, and the writes (coalesced: see status_write_due)."""

    def __init__(self, kube: KubeApi, ref: ObjectRef, body: Any) -> None:
        self.kube = kube
        self.ref = ref
        self.written = _status_of(body)
        self.written_at: float | None = None  # monotonic; None: not written by this loop yet

    async def write(self, status: WorkerPoolStatus, force: bool = False) -> None:
        """Patch the status subresource when due; a failed patch is logged and retried at the
        next turn (the status it carried is not taken as written)."""
        now = time.monotonic()
        if not status_write_due(status, self.written, self.written_at, now, force):
            return
        try:
            await self.kube.patch_status(self.ref, status.to_wire())
        except ApiException as err:
            log.warning(
                "WorkerPool %s/%s: status patch failed: %s",
                self.ref.namespace,
                self.ref.name,
                err.reason,
                extra=about(self.ref.namespace, self.ref.name),
            )
            return
        metrics.STATUS_PATCHES.labels("workerpool").inc()
        self.written = status
        self.written_at = now

    async def condition(
        self, type_: str, ok: bool, reason: str, message: str, generation: int | None
    ) -> None:
        """Set one condition on the last written status and write it, whatever happens
        (the error path: the message is scrubbed and cut to 1000 characters)."""
        status = self.written.model_copy(deep=True)
        status.conditions = set_condition(
            status.conditions, type_, ok, reason, scrub(message)[:1000], generation
        )
        with contextlib.suppress(Exception):
            await self.write(status, force=True)


def _status_of(body: Any) -> WorkerPoolStatus:
    try:
        return WorkerPoolStatus.model_validate(body.get("status") or {})
    except ValidationError:
        return WorkerPoolStatus()


def export_backlog(ref: ObjectRef, backlog: Backlog) -> None:
    metrics.WORKERPOOL_BACKLOG.labels(ref.namespace, ref.name).set(backlog.total)


def export_replicas(ref: ObjectRef, **values: int) -> None:
    for which, value in values.items():
        metrics.WORKERPOOL_REPLICAS.labels(ref.namespace, ref.name, which).set(value)


def drop_metrics(ref: ObjectRef) -> None:
    metrics.QUEUES.drop(ref.uid)
    with contextlib.suppress(KeyError):
        metrics.WORKERPOOL_BACKLOG.remove(ref.namespace, ref.name)
    for which in ("current", "desired", "ready"):
        with contextlib.suppress(KeyError):
            metrics.WORKERPOOL_REPLICAS.remove(ref.namespace, ref.name, which)
