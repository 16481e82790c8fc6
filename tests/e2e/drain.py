"""Prove that real workers have run everything queued so far, instead of sleeping "long enough".

A test that checks that nothing ran twice must first know that anything which *could* have run
twice has had its turn. BullMQ hands waiting jobs out first in, first out, so a sentinel job
added to a queue after the jobs checked is taken after any job queued before it (a duplicate
submission included). Once every sentinel is completed and nothing is left waiting, active,
delayed, prioritized or waiting for children, the queues are drained: counts and execution logs
can be asserted.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence

from bullmq import Queue

# Everything a worker has yet to finish ("completed" and "failed" are done).
PENDING = ("waiting", "paused", "active", "delayed", "prioritized", "waiting-children")


def run_sentinels(
    redis_url: str, prefix: str, queues: Sequence[str], timeout: float = 60
) -> set[str]:
    """Add a sentinel job to each queue and wait until all are completed and the queues have
    nothing pending. Returns the sentinels' job ids (to leave out of execution logs)."""
    sentinels = {q: f"sentinel-{uuid.uuid4().hex[:12]}" for q in dict.fromkeys(queues)}

    async def run() -> None:
        opened = {q: Queue(q, {"connection": redis_url, "prefix": prefix}) for q in sentinels}
        try:
            for name, q in opened.items():
                await q.add("sentinel", {"sentinel": True}, {"jobId": sentinels[name]})
            deadline = time.monotonic() + timeout
            while True:
                states = {n: await q.getJobState(sentinels[n]) for n, q in opened.items()}
                pending = {}
                for name, q in opened.items():
                    counts = await q.getJobCounts(*PENDING)
                    pending[name] = {k: v for k, v in counts.items() if v}
                if all(s == "completed" for s in states.values()) and not any(pending.values()):
                    return
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"queues not drained after {timeout}s: sentinel states {states}, "
                        f"jobs still pending {pending}"
                    )
                await asyncio.sleep(0.1)
        finally:
            for q in opened.values():
                await q.close()

    asyncio.run(run())
    return set(sentinels.values())
