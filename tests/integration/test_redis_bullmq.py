"""The harness Redis works with the Python BullMQ client: one job round-trips."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from bullmq import Job, Queue, Worker

from tests.harness.redis import RedisServer


async def test_queue_worker_round_trip(redis_url: str, redis_prefix: str) -> None:
    opts = {"connection": redis_url, "prefix": redis_prefix}
    queue = Queue("roundtrip", opts)
    done: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    seen: list[dict[str, object]] = []

    async def process(job: Job, token: str) -> dict[str, object]:
        seen.append(dict(job.data))
        return {"sum": job.data["a"] + job.data["b"]}

    worker = Worker("roundtrip", process, opts)
    worker.on("completed", lambda job, result: done.done() or done.set_result(result))
    worker.on("failed", lambda job, err: done.done() or done.set_exception(RuntimeError(err)))
    try:
        job = await queue.add("add", {"a": 2, "b": 40})
        result = await asyncio.wait_for(done, timeout=20)
        assert result == {"sum": 42}
        assert seen == [{"a": 2, "b": 40}]
        stored = await Job.fromId(queue, job.id)
        assert stored is not None
        assert stored.returnvalue == {"sum": 42}
        assert stored.finishedOn
        counts = await queue.getJobCounts("completed", "waiting", "active", "failed")
        assert counts == {"completed": 1, "waiting": 0, "active": 0, "failed": 0}
    finally:
        await worker.close()
        await queue.close()

    # The job's keys live under the per-test prefix (which the fixture cleans up).
    r = aioredis.Redis.from_url(redis_url)
    try:
        keys = [k async for k in r.scan_iter(match=f"{redis_prefix}:roundtrip:*")]
        assert keys, "expected BullMQ keys under the test prefix"
    finally:
        await r.aclose()


async def test_redis_restart_keeps_port(redis_server: RedisServer) -> None:
    r = aioredis.Redis.from_url(redis_server.url)
    try:
        await r.set("bullflow-restart-probe", "1")
        port = redis_server.port
        redis_server.restart()
        assert redis_server.port == port
    finally:
        await r.aclose()
    r = aioredis.Redis.from_url(redis_server.url)
    try:
        # Not persisted: the restart is a clean outage.
        assert await r.get("bullflow-restart-probe") is None
        assert await r.ping()
    finally:
        await r.aclose()
