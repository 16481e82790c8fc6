"""Queue backlog, new-work events and worker activity, read from Redis.

Counts come from Python bullmq's `Queue.getJobCounts` (its own Lua `getCounts`, so the key
layout stays bullmq's business). One number has no getter: how many *delayed* jobs are already
due. BullMQ scores the `<prefix>:<queue>:delayed` zset with `timestamp * 0x1000 + counter`
(see addDelayedJob.lua), and a worker promotes due jobs only when it polls, so with zero
replicas due jobs would sit in `delayed` forever and never show in `wait`. A ZCOUNT up to
`(now_ms + 1) * 0x1000 - 1` counts exactly those, in O(log n).

Worker activity (for pod-deletion-cost): each bullflow worker started with `--activity-key`
writes its active-job count to `<prefix>:bullflow:activity:<namespace>:<pod>` with a short TTL
(refreshed while it runs, deleted on exit). Redis is the one place both the worker and the
operator already reach: no pod IPs, ports or network policies involved, and a dead worker's key
simply expires.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterable, Sequence

from bullmq import Queue

from ..models.workerpool import Backlog
from ..services.worker_deployment import activity_key
from .redis_jobs import BullRedis, StreamEntry, events_key

COUNT_TYPES = ("wait", "paused", "prioritized", "active", "waiting-children", "delayed")
DELAY_SCORE_FACTOR = 0x1000
# Events that mean "a worker could take a job now (or soon)".
NEW_WORK_EVENTS = frozenset({"added", "waiting", "prioritized", "delayed", "retries-exhausted"})


def due_delayed_max_score(now_ms: int) -> int:
    """The highest delayed-zset score of a job due at `now_ms` (bullmq: ts * 0x1000 + n)."""
    return (now_ms + 1) * DELAY_SCORE_FACTOR - 1


class QueueReader:
    """Backlog and events of some queues of one Redis connection."""

    def __init__(self, conn: BullRedis) -> None:
        self.conn = conn
        self._queues: dict[tuple[str, str], Queue] = {}

    def _queue(self, prefix: str, name: str) -> Queue:
        key = (prefix, name)
        if key not in self._queues:
            self._queues[key] = Queue(name, {"connection": self.conn.client, "prefix": prefix})
        return self._queues[key]

    async def counts(self, prefix: str, queue: str, now_ms: int | None = None) -> Backlog:
        counts = await self._queue(prefix, queue).getJobCounts(*COUNT_TYPES)
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        due = await self.conn.client.zcount(
            f"{prefix}:{queue}:delayed", 0, due_delayed_max_score(now_ms)
        )
        return Backlog(
            waiting=int(counts.get("wait", 0)),
            prioritized=int(counts.get("prioritized", 0)),
            delayed=int(counts.get("delayed", 0)),
            delayed_due=int(due),
            active=int(counts.get("active", 0)),
            waiting_children=int(counts.get("waiting-children", 0)),
            paused=int(counts.get("paused", 0)),
        )

    async def stream_tails(self, prefix: str, queues: Iterable[str]) -> dict[str, str]:
        return {
            events_key(prefix, q): await self.conn.stream_tail(events_key(prefix, q))
            for q in queues
        }

    async def wait_for_new_work(
        self, streams: dict[str, str], block_ms: int
    ) -> tuple[bool, dict[str, str]]:
        """Block up to `block_ms` on the events streams. (new work seen?, advanced ids)."""
        entries: list[StreamEntry] = await self.conn.read_events(streams, block_ms)
        advanced = dict(streams)
        seen = False
        for entry in entries:
            advanced[entry.stream] = entry.entry_id
            if entry.fields.get("event") in NEW_WORK_EVENTS:
                seen = True
        return seen, advanced

    async def activity(
        self, prefix: str, namespace: str, pods: Sequence[str]
    ) -> dict[str, int | None]:
        """Pod name -> active jobs it reported (None: no report)."""
        if not pods:
            return {}
        raw = await self.conn.client.mget([activity_key(prefix, namespace, p) for p in pods])
        out: dict[str, int | None] = {}
        for pod, value in zip(pods, raw, strict=True):
            try:
                out[pod] = int(value) if value is not None else None
            except ValueError:
                out[pod] = None
        return out


async def queues_without_workers(
    conn: BullRedis, prefix: str, queues: Iterable[str], covered: Iterable[str] = ()
) -> list[str]:
    """Queues (sorted) that no WorkerPool covers and no BullMQ worker is connected to.

    `covered`: queues a WorkerPool scales (it may be at zero replicas on purpose: scale to
    zero is not "no workers"). Workers of any language are seen through BullMQ's CLIENT LIST
    naming convention, with one CLIENT LIST for all queues (on every master of a Cluster).
    Raises REDIS_ERRORS (storage/redis_jobs.py) when Redis is unreachable.
    """
    wanted = sorted(set(queues) - set(covered))
    if not wanted:
        return []
    names = await conn.client_names()
    return [q for q in wanted if not any(_is_worker_of(n, prefix, q) for n in names)]


def _is_worker_of(client_name: str, prefix: str, queue: str) -> bool:
    """BullMQ names a worker's connections `<prefix>:<queue>` (Python bullmq) or
    `<prefix>:<base64(queue)>` (Node.js bullmq 5), plus `:w:<worker name>` when named.
    Python bullmq's Queue.getWorkers only knows the first form, so Node workers would be
    missed; both are matched here."""
    for base in (f"{prefix}:{queue}", f"{prefix}:{base64.b64encode(queue.encode()).decode()}"):
        if client_name == base or client_name.startswith(f"{base}:w:"):
            return True
    return False
