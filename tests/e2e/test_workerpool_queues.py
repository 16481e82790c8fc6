"""queues_without_workers (for the Flow controller): real Redis, real BullMQ workers."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bullflow.storage.queues import QueueReader, queues_without_workers
from bullflow.storage.redis_jobs import BullRedis
from tests.e2e.workerpool_support import add_jobs
from tests.harness.process import wait_for


def _missing(url: str, prefix: str, queues: list[str], covered: tuple[str, ...] = ()) -> list:
    async def run() -> list[str]:
        conn = BullRedis(url)
        try:
            return await queues_without_workers(conn, prefix, queues, covered)
        finally:
            await conn.close()

    return asyncio.run(run())


def test_queues_without_workers(workers: Any, redis_url: str, redis_prefix: str) -> None:
    queues = ["a", "b", "c"]
    assert _missing(redis_url, redis_prefix, queues) == ["a", "b", "c"]
    assert _missing(redis_url, redis_prefix, queues, covered=("b",)) == ["a", "c"]
    workers.start("node", ["a"], redis_prefix)
    workers.start("python", ["c"], redis_prefix)
    wait_for(lambda: _missing(redis_url, redis_prefix, queues) == ["b"], 30, "workers seen")


def test_backlog_counts_due_delayed_jobs(redis_url: str, redis_prefix: str) -> None:
    add_jobs(redis_url, redis_prefix, "d", [("now", {}), ("p1", {})])

    async def run() -> Any:
        conn = BullRedis(redis_url)
        try:
            from bullmq import Queue

            q = Queue("d", {"connection": conn.client, "prefix": redis_prefix})
            # The clock is the reader's `now_ms`: "soon" is due 300 ms after it was added,
            # whatever the time the reads below take.
            added_from = round(time.time() * 1000)  # as bullmq stamps a job
            await q.add("later", {}, {"jobId": "later", "delay": 3_600_000})
            await q.add("soon", {}, {"jobId": "soon", "delay": 300})
            await q.add("prio", {}, {"jobId": "prio", "priority": 5})
            added_until = round(time.time() * 1000)
            before = await QueueReader(conn).counts(redis_prefix, "d", now_ms=added_from)
            after = await QueueReader(conn).counts(redis_prefix, "d", now_ms=added_until + 300)
            return before, after
        finally:
            await conn.close()

    before, after = asyncio.run(run())
    assert (before.waiting, before.prioritized, before.delayed, before.delayed_due) == (2, 1, 2, 0)
    assert before.total == 3
    # No worker promotes delayed jobs here: "soon" is due, still in the delayed zset, counted.
    assert (after.delayed, after.delayed_due, after.total) == (2, 1, 4)
