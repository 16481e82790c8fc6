"""Is a queue served? The one rule: a WorkerPool of the namespace lists it under the same
prefix, or a live BullMQ worker of any language is connected to it (storage.queues)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from kubernetes_asyncio.client.exceptions import ApiException

from ..models.workerpool import WorkerPoolSpec
from ..storage.kube import KubeApi
from ..storage.queues import queues_without_workers
from ..storage.redis_jobs import BullRedis

CACHE_SECONDS = 3.0
DEFAULT_POOL_PREFIX = WorkerPoolSpec.model_fields["prefix"].default

_Key = tuple[str, str, str, str]  # Redis URL, namespace, prefix, queue


class QueueWorkers:
    """Answers are cached briefly and looked up once for all the flows that ask meanwhile: a
    burst of new flows on one queue would otherwise send as many WorkerPool LISTs and CLIENT
    LISTs as status writes."""

    def __init__(self, kube: KubeApi, cache_seconds: float = CACHE_SECONDS) -> None:
        self.kube = kube
        self.cache_seconds = cache_seconds
        self._answers: dict[_Key, tuple[float, asyncio.Future[bool]]] = {}

    async def served(self, conn: BullRedis, namespace: str, prefix: str, queue: str) -> bool:
        key = (conn.url, namespace, prefix, queue)
        cached = self._answers.get(key)
        if cached is None or cached[0] <= time.monotonic():
            lookup = asyncio.ensure_future(self._look_up(conn, namespace, prefix, queue))
            lookup.add_done_callback(lambda done: self._forget_failed(key, done))
            cached = (time.monotonic() + self.cache_seconds, lookup)
            self._answers[key] = cached
        return await asyncio.shield(cached[1])

    def forget(
        self, namespace: str, prefix: str, queues: Iterable[str], url: str | None = None
    ) -> None:
        """Drop cached answers for these queues (of one Redis, or of any): a worker or a
        WorkerPool appeared for them, and the next question must look again."""
        wanted = set(queues)
        for key in [
            k
            for k in self._answers
            if k[1] == namespace and k[2] == prefix and k[3] in wanted and url in (None, k[0])
        ]:
            del self._answers[key]

    def _forget_failed(self, key: _Key, lookup: asyncio.Future[bool]) -> None:
        failed = lookup.cancelled() or lookup.exception() is not None
        entry = self._answers.get(key)
        if failed and entry is not None and entry[1] is lookup:
            del self._answers[key]

    async def _look_up(self, conn: BullRedis, namespace: str, prefix: str, queue: str) -> bool:
        try:
            pools = await self.kube.list_custom(namespace, "workerpools")
        except ApiException:  # no WorkerPool CRD installed: only live workers count
            pools = []
        covered = {
            q
            for p in pools
            if (p.get("spec") or {}).get("prefix", DEFAULT_POOL_PREFIX) == prefix
            for q in (p.get("spec") or {}).get("queues", [])
        }
        return not await queues_without_workers(conn, prefix, [queue], covered)
