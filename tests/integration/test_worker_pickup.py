"""bullflow-worker picks up a job added to a queue that has been idle for a while at once,
against a real redis-server, whether the job comes from Queue.add or from the operator's
flow submission (BullRedis.submit: bullmq's addParentJob/addJob scripts in one MULTI/EXEC).

Before bullflow_worker.bullmq_compat.fit_blocking_read_timeout, redis-py 8's 5 s read
timeout cut bullmq's 5 s BZPOPMIN short and bullmq's connection retry then slept 2, 4, 8,
16, 20 s between BZPOPMINs: from the first BZPOPMIN of an idle worker it listened during
0-5, 7-12, 16-21, 29-34 s... A job added 24 s in waited until ~29 s (~5 s); now it is
active within milliseconds. The 2.5 s bound leaves a wide margin on a loaded machine."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from bullmq import Queue

from bullflow.models.marker import SubmissionMarker
from bullflow.storage.redis_jobs import BullRedis, events_key
from tests.harness.process import free_port

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).with_name("bullflow-worker")
IDLE_S = 24.0  # in the broken worker's 21-29 s deaf window (see the module docstring)
PICKUP_BOUND_S = 2.5


async def _until(check: Callable[[], Awaitable[Any]], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
def worker(redis_url: str, tmp_path: Path) -> Any:
    procs: list[subprocess.Popen[bytes]] = []

    def start(prefix: str, *queues: str) -> tuple[subprocess.Popen[bytes], int]:
        port = free_port()
        args = [str(BIN), "--prefix", prefix, "--processor", "bullflow_worker.processors:echo"]
        for q in queues:
            args += ["--queue", q]
        args += ["--redis-url", redis_url, "--http-port", str(port), "--http-host", "127.0.0.1"]
        log = open(tmp_path / f"worker{len(procs)}.log", "wb")  # noqa: SIM115
        procs.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT))
        log.close()
        return procs[-1], port

    yield start
    for p in procs:
        p.kill()
        p.wait(10)


def _ready(proc: subprocess.Popen[bytes], port: int) -> bool:
    if proc.poll() is not None:
        raise AssertionError(f"bullflow-worker exited early with {proc.returncode}")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


async def _blocked_on_marker(redis: aioredis.Redis, prefix: str, queue: str) -> bool:
    """A client of this queue is blocked in BZPOPMIN: the worker found the queue empty."""
    name = f"{prefix}:{queue}"
    for client in await redis.client_list():
        if (
            client.get("cmd") == "bzpopmin"
            and "b" in client.get("flags", "")
            and (client.get("name") == name)
        ):
            return True
    return False


async def _active_after(redis: aioredis.Redis, stream: str, last: str, timeout: float) -> float:
    """Seconds until an "active" event appears in `stream` after id `last`."""
    start = time.monotonic()
    while True:
        left = timeout - (time.monotonic() - start)
        if left <= 0:
            raise AssertionError(f"no job became active within {timeout}s ({stream})")
        reply = await redis.xread({stream: last}, block=max(1, int(min(left, 0.5) * 1000)))
        for _key, entries in reply:
            for entry_id, fields in entries:
                last = entry_id
                if fields.get("event") == "active":
                    return time.monotonic() - start


async def test_job_added_to_a_long_idle_queue_is_active_at_once(
    redis: aioredis.Redis, redis_url: str, redis_prefix: str, worker: Any
) -> None:
    plain, flows = f"pick-{uuid.uuid4().hex[:6]}", f"pickflow-{uuid.uuid4().hex[:6]}"
    proc, port = worker(redis_prefix, plain, flows)
    await _until(lambda: asyncio.to_thread(_ready, proc, port), 30, "bullflow-worker /readyz")
    # Idle from here: both queues' workers found nothing and block on their markers.
    await _until(lambda: _blocked_on_marker(redis, redis_prefix, plain), 15, "worker idle")
    await _until(lambda: _blocked_on_marker(redis, redis_prefix, flows), 15, "worker idle")
    idle_since = time.monotonic()

    queue = Queue(plain, {"connection": redis_url, "prefix": redis_prefix})
    bull = BullRedis(redis_url)
    try:
        streams = {q: events_key(redis_prefix, q) for q in (plain, flows)}
        tails = {q: await bull.stream_tail(s) for q, s in streams.items()}
        await asyncio.sleep(IDLE_S - (time.monotonic() - idle_since))  # the queues stay idle

        uid = str(uuid.uuid4())
        tree = {
            "name": "parent",
            "queueName": flows,
            "data": {},
            "opts": {"jobId": f"{uid}-p"},
            "children": [{"name": "child", "queueName": flows, "opts": {"jobId": f"{uid}-c"}}],
        }
        # Started before the adds, so each clock runs from before its job was added.
        waits = [
            asyncio.create_task(_active_after(redis, streams[q], tails[q], PICKUP_BOUND_S + 20))
            for q in streams
        ]
        await asyncio.sleep(0)
        added = await asyncio.gather(
            queue.add("job", {"n": 1}),
            bull.submit(redis_prefix, [tree], uid, SubmissionMarker(flow_uid=uid, jobs=2)),
        )
        assert all(added)
        took = dict(zip(streams, await asyncio.gather(*waits), strict=True))
    finally:
        await queue.close()
        await bull.close()

    slow = {q: round(s, 2) for q, s in took.items() if s > PICKUP_BOUND_S}
    assert not slow, (
        f"jobs added after {IDLE_S:g}s idle took {slow} s to become active "
        f"(bound {PICKUP_BOUND_S}s; Queue.add queue {plain}, flow queue {flows})"
    )
