"""The API write that follows a submission but that nobody waits on: bullflow's finalizer.

Under a burst of creations the API server is the bottleneck, and what users wait on is create ->
jobs in Redis -> `Submitted` in the status. So the status goes first (the tracker writes it with
up to 64 requests in flight) and finalizers trail on a few workers, in order. Until a Flow has
its finalizer, a deletion is still seen (the DELETED watch event, FlowController.gone); only a
Flow deleted while the operator is down in that window would keep its jobs in Redis.

There is no Submitted Event: the Submitted condition says the same with its time, and an Event
per Flow was a large share of the operator's API writes in a burst. Events mark what needs attention
or ends a flow (JobFailed, Completed, Failed, InvalidSpec, SubmitRejected).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, replace

from .. import metrics
from ..cancellation import raise_if_cancelling
from ..logs import about
from ..storage.kube import KubeApi, ObjectRef, describe_api_error

log = logging.getLogger(__name__)
RETRY_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)  # then every 30 s, until it works or the Flow is gone


@dataclass(frozen=True, slots=True)
class AfterSubmit:
    ref: ObjectRef
    has_finalizer_list: bool  # the object already has metadata.finalizers
    attempt: int = 0


class Bookkeeper:
    def __init__(self, kube: KubeApi, finalizer: str, workers: int = 2) -> None:
        self.kube = kube
        self.finalizer = finalizer
        self._queue: asyncio.Queue[AfterSubmit] = asyncio.Queue()
        self._pending: set[str] = set()
        self._workers = workers
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._work()) for _ in range(self._workers)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def add(self, item: AfterSubmit) -> None:
        if item.ref.uid in self._pending:
            return
        self._pending.add(item.ref.uid)
        self._queue.put_nowait(item)

    def backlog(self) -> int:
        return self._queue.qsize()

    async def _work(self) -> None:
        while True:
            raise_if_cancelling()  # a library may have swallowed the cancellation
            item = await self._queue.get()
            try:
                await self._apply(item)
                self._pending.discard(item.ref.uid)
            except Exception as err:  # a worker must outlive any error
                raise_if_cancelling()
                metrics.TASK_FAILURES.labels("finalizer").inc()
                self._retry_later(item, err)
            finally:
                self._queue.task_done()

    async def _apply(self, item: AfterSubmit) -> None:
        await self.kube.add_finalizer(item.ref, self.finalizer, item.has_finalizer_list)

    def _retry_later(self, item: AfterSubmit, err: Exception) -> None:
        """Never given up: a Flow without its finalizer would keep its jobs in Redis if deleted
        while the operator is down."""
        delay = RETRY_SECONDS[min(item.attempt, len(RETRY_SECONDS) - 1)]
        if item.attempt == 0:
            log.warning(
                "adding the finalizer of flow %s/%s failed, retrying: %s",
                *_names(item),
                describe_api_error(err),
                extra=about(*_names(item)),
            )
        again = replace(item, attempt=item.attempt + 1)
        asyncio.get_running_loop().call_later(delay, self._queue.put_nowait, again)


def _names(item: AfterSubmit) -> tuple[str, str]:
    return item.ref.namespace, item.ref.name
