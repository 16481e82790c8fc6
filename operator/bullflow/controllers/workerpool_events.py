"""Wake a WorkerPool's loop as soon as one of its queues' event streams shows new work."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from .. import metrics
from ..cancellation import raise_if_cancelling
from ..logs import about
from ..models.workerpool import WorkerPoolSpec
from ..redaction import describe_error
from ..storage.kube import ObjectRef
from ..storage.queues import QueueReader
from ..storage.redis_jobs import REDIS_ERRORS

log = logging.getLogger(__name__)
EVENT_BLOCK_MS = 1000


class NewWorkWatch:
    """One task per pool blocking on its queues' streams; restarted when they change."""

    def __init__(self, ref: ObjectRef, wake: asyncio.Event) -> None:
        self.ref = ref
        self.wake = wake
        self._key: tuple[str, str, tuple[str, ...]] | None = None
        self._task: asyncio.Task[None] | None = None

    async def follow(self, reader: QueueReader, spec: WorkerPoolSpec) -> None:
        """Follow these queues (a no-op while the same ones are followed)."""
        key = (reader.conn.url, spec.prefix, tuple(spec.queues))
        if self._key == key and self._task and not self._task.done():
            return
        await self.stop()
        self._key = key
        self._task = asyncio.create_task(
            self._follow(reader, spec.prefix, list(spec.queues)),
            name=f"workerpool-events:{self.ref.namespace}/{self.ref.name}",
        )

    async def stop(self) -> None:
        task, self._task, self._key = self._task, None, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _follow(self, reader: QueueReader, prefix: str, queues: list[str]) -> None:
        streams: dict[str, str] | None = None
        while True:
            raise_if_cancelling()  # a library may have swallowed the cancellation
            try:
                if streams is None:
                    streams = await reader.stream_tails(prefix, queues)
                seen, streams = await reader.wait_for_new_work(streams, EVENT_BLOCK_MS)
                if seen:
                    self.wake.set()
            except asyncio.CancelledError:
                raise
            except REDIS_ERRORS:
                streams = None  # resume from the tail; the poll recounts the backlog anyway
                await asyncio.sleep(1.0)
            except Exception as err:  # the follower must outlive any error
                raise_if_cancelling()
                metrics.TASK_FAILURES.labels("workerpool-events").inc()
                log.warning(
                    "WorkerPool %s/%s: following the queues' events failed, retrying: %s",
                    self.ref.namespace,
                    self.ref.name,
                    describe_error(err),
                    extra=about(self.ref.namespace, self.ref.name),
                )
                streams = None
                await asyncio.sleep(1.0)
