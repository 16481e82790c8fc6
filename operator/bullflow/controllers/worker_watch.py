"""Flows that say NoWorkers, looked at again every few seconds until a worker serves them.

Events cannot tell: a worker connecting writes nothing to the queues' event streams, and the
slow resync would leave NoWorkers up for a minute after the worker came. So while any flow
says NoWorkers, one CLIENT LIST per Redis and prefix, for all such flows at once, looks for
workers of their queues; a flow one of whose queues now has one is refreshed at once (its
cached answer dropped first). A WorkerPool created or changed for their queues refreshes them
at once too (pool_serves, called by the WorkerPool controller).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ..cancellation import raise_if_cancelling
from ..services.no_workers import Unserved, lookups, newly_served, served_by_pool
from ..storage.queues import queues_without_workers
from .queue_workers import QueueWorkers
from .tracker import FlowTracker, TrackedFlow

log = logging.getLogger(__name__)
RECHECK_SECONDS = 2.0


class NoWorkersWatch:
    def __init__(
        self,
        tracker: FlowTracker,
        queue_workers: QueueWorkers,
        interval: float = RECHECK_SECONDS,
    ) -> None:
        self.tracker = tracker
        self.queue_workers = queue_workers
        self.interval = interval
        self.waiting: dict[str, Unserved] = {}  # flow token -> what it waits for
        self._task: asyncio.Task[None] | None = None

    def note(self, flow: TrackedFlow, unserved: list[str]) -> None:
        """What the flow's last refresh found: the queues of its waiting jobs nobody serves."""
        if not unserved:
            self.waiting.pop(flow.token, None)
            return
        self.waiting[flow.token] = Unserved(
            flow.conn.url, flow.ref.namespace, flow.prefix, frozenset(unserved)
        )
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())

    def forget(self, token: str) -> None:
        self.waiting.pop(token, None)

    def pool_serves(self, namespace: str, prefix: str, queues: list[str]) -> None:
        """A WorkerPool of `namespace` now covers these queues: refresh the flows waiting on
        them now."""
        self.queue_workers.forget(namespace, prefix, queues)
        for token in served_by_pool(self.waiting, namespace, prefix, queues):
            self.tracker.mark_dirty(token)

    async def check_once(self) -> None:
        """One look for workers of every queue a NoWorkers flow waits on."""
        for token in [t for t in self.waiting if t not in self.tracker.flows]:
            del self.waiting[token]  # finished or deleted meanwhile
        conns = {self.tracker.flows[t].conn.url: self.tracker.flows[t].conn for t in self.waiting}
        still_unserved: dict[tuple[str, str], set[str]] = {}
        for (url, prefix), queues in lookups(self.waiting).items():
            try:
                still_unserved[(url, prefix)] = set(
                    await queues_without_workers(conns[url], prefix, queues)
                )
            except Exception as err:  # Redis away: the refreshes say so; look again later
                log.debug("looking for workers of queues %s failed: %s", sorted(queues), err)
        for token in newly_served(self.waiting, still_unserved):
            flow = self.waiting[token]
            self.queue_workers.forget(flow.namespace, flow.prefix, flow.queues, flow.url)
            self.tracker.mark_dirty(token)

    async def _run(self) -> None:
        """Runs while some flow says NoWorkers; ends when none does."""
        while self.waiting:
            raise_if_cancelling()
            await asyncio.sleep(self.interval)
            try:
                await self.check_once()
            except Exception:  # the watch must outlive any error
                raise_if_cancelling()
                log.exception("looking for workers of flows without any failed; carrying on")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
