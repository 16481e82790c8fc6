"""Flows whose submission found Redis unreachable, waiting for it to answer again.

Not kopf's retry: its backoff grows to minutes after a long outage (and each retry touches the
object, an API write), so flows created just before an outage would stay unsubmitted long after
Redis is back. Here one probe per connection asks Redis every second at most; the moment it
answers, every waiting flow's reconcile runs again.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from .. import metrics
from ..cancellation import raise_if_cancelling
from ..logs import about
from ..redaction import redacted_url
from ..storage.redis_jobs import BullRedis

log = logging.getLogger(__name__)
PROBE_MAX_SECONDS = 1.0

Reconcile = Callable[[Any], Awaitable[None]]


class RedisWait:
    def __init__(self, reconcile: Reconcile, probe_max: float = PROBE_MAX_SECONDS) -> None:
        self.reconcile = reconcile
        self.probe_max = probe_max
        self._waiting: dict[str, dict[str, Any]] = {}  # url -> flow uid -> body
        self._probes: dict[str, asyncio.Task[None]] = {}

    def add(self, conn: BullRedis, body: Any) -> None:
        """Run this Flow's reconcile again once `conn` answers (a copy of its body, as seen)."""
        uid = body["metadata"]["uid"]
        self._waiting.setdefault(conn.url, {})[uid] = copy.deepcopy(dict(body))
        if conn.url not in self._probes or self._probes[conn.url].done():
            self._probes[conn.url] = asyncio.create_task(self._probe(conn))

    def discard(self, uid: str) -> None:
        for waiting in self._waiting.values():
            waiting.pop(uid, None)

    def waiting(self) -> int:
        return sum(len(w) for w in self._waiting.values())

    async def _probe(self, conn: BullRedis) -> None:
        delay = 0.1
        while self._waiting.get(conn.url):
            raise_if_cancelling()  # a library may have swallowed the cancellation
            await asyncio.sleep(delay)
            try:
                await conn.client.ping()
            except Exception:  # still down (or refusing): ask again, at most every probe_max s
                raise_if_cancelling()
                delay = min(delay * 2, self.probe_max)
                continue
            bodies = self._waiting.pop(conn.url, {})
            log.info(
                "Redis at %s answers again: submitting %d flow(s)",
                redacted_url(conn.url),
                len(bodies),
            )
            for body in bodies.values():
                try:
                    await self.reconcile(body)  # adds it back if Redis failed again
                except Exception as err:  # one flow's trouble stops no other
                    raise_if_cancelling()
                    metrics.TASK_FAILURES.labels("redis-wait").inc()
                    meta = body["metadata"]
                    log.warning(
                        "submitting flow %s/%s failed: %s",
                        meta["namespace"],
                        meta["name"],
                        err,
                        extra=about(meta["namespace"], meta["name"]),
                    )
            delay = 0.1

    async def close(self) -> None:
        for task in self._probes.values():
            task.cancel()
        for task in self._probes.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
