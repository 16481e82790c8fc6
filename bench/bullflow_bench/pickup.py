"""Worker pickup: how long a job added to an idle queue waits before a worker takes it.

Three workers wait side by side, each on its own queue: bullflow-worker, a plain Python bullmq
Worker with its defaults (run by this module: `python -m bench.bullflow_bench.pickup worker URL
PREFIX QUEUE`) and Node's BullMQ worker (tests/interop/worker.mjs). Each sample lets the queues
idle (longer than drainDelay, 5 s, at several lengths so every phase of a worker's idle cycle is
hit), then adds one one-job flow to each queue as the operator does (BullRedis.submit: bullmq's
scripts in one MULTI/EXEC) and times, on Redis's clock (the events stream's ids), the
submission's first event → the job's "active" event."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from typing import Any

LANES = ("bullflow", "python", "node")  # bullflow-worker, plain Python bullmq Worker, Node
QUEUE = "pickup"


def idle_lengths(smoke: bool) -> list[float]:
    """Seconds of idleness before each sample: spread over 6-26 s (the idle cycle of a Python
    bullmq 3.4.4 worker on redis-py 8 without bullflow's fix went 0-5 s listening, 5-7 deaf,
    7-12 listening, 12-16 deaf, 16-21 listening, 21-29 deaf, ...)."""
    if smoke:
        return [6.0, 6.0]
    n = 10
    return [round(6.0 + 20.0 * i / (n - 1), 1) for i in range(n)]


async def _first_ms(r: Any, stream: str, after: str, event: str | None) -> tuple[int, str]:
    """The server-clock ms of the first entry after `after` (with `event`, if given)."""
    last = after
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        reply = await r.xread({stream: last}, block=500)
        for _key, entries in reply:
            for entry_id, fields in entries:
                last = entry_id
                if event is None or fields.get("event") == event:
                    return int(entry_id.split("-")[0]), entry_id
    raise TimeoutError(f"no {event or 'new'} event in {stream} within 60 s")


async def _sample(r: Any, bull: Any, prefix: str, queue: str) -> float:
    """Add one one-job flow to `queue`; ms from its first event to the job's "active" event.
    Returns once the job completed, so the next idle period starts with an idle worker."""
    from bullflow.models.marker import SubmissionMarker
    from bullflow.storage.redis_jobs import events_key

    stream = events_key(prefix, queue)
    tail = await bull.stream_tail(stream)  # after the last job's trailing "drained" event
    uid = str(uuid.uuid4())
    tree = {"name": "one", "queueName": queue, "data": {}, "opts": {"jobId": f"bf-{uid}-0"}}
    if not await bull.submit(prefix, [tree], uid, SubmissionMarker(flow_uid=uid, jobs=1)):
        raise RuntimeError("submission refused")
    added_ms, _ = await _first_ms(r, stream, tail, None)
    active_ms, active_id = await _first_ms(r, stream, tail, "active")
    await _first_ms(r, stream, active_id, "completed")
    return float(active_ms - added_ms)


async def worker_pickup(env: Any, prm: Any, *, smoke: bool = False) -> dict[str, Any]:
    import redis.asyncio as aioredis

    from bullflow.storage.redis_jobs import BullRedis
    from tests.harness.process import ManagedProcess

    from .rows import row
    from .stats import summarize

    prefix = f"pk{uuid.uuid4().hex[:6]}"
    queues = {lane: f"{QUEUE}-{lane}" for lane in LANES}
    ws = env.workers("pickup")
    ws.start("python", [queues["bullflow"]], prefix, 1, "bullflow_worker.processors:echo")
    ws.start("node", [queues["node"]], prefix, 1)
    plain = ManagedProcess(
        "python-bullmq-worker",
        [sys.executable, "-m", "bench.bullflow_bench.pickup", "worker", env.redis_url, prefix,
         queues["python"]],
        env.workdir / "logs" / "pickup" / "python-bullmq-worker.log",
    )  # fmt: skip
    plain.start()
    ws.procs.append(plain)  # stopped with the others
    r = aioredis.from_url(env.redis_url, decode_responses=True)
    bull = BullRedis(env.redis_url)
    idles = idle_lengths(smoke)
    samples: dict[str, list[float]] = {lane: [] for lane in LANES}
    try:
        # Warm-up: every worker has taken a job (so it is up), then found its queue empty.
        await asyncio.gather(*(_sample(r, bull, prefix, queues[lane]) for lane in LANES))
        for idle in idles:
            await asyncio.sleep(idle)  # the queues stay idle this long
            got = await asyncio.gather(*(_sample(r, bull, prefix, queues[lane]) for lane in LANES))
            for lane, ms in zip(LANES, got, strict=True):
                samples[lane].append(ms)
    finally:
        env.stop_workers(ws)
        await bull.close()
        await r.aclose()

    stats = {lane: summarize(samples[lane]) for lane in LANES}
    bf, py, node = (stats[lane] for lane in LANES)
    idle_text = f"{min(idles):g}-{max(idles):g} s" if len(set(idles)) > 1 else f"{idles[0]:g} s"
    rows = [
        row(
            f"added after {idle_text} idle → active p50",
            bf["p50"],
            "ms",
            py=py["p50"],
            node=node["p50"],
            vs="node",
        ),
        row(
            f"added after {idle_text} idle → active p99",
            bf["p99"],
            "ms",
            py=py["p99"],
            node=node["p99"],
            vs="node",
            target="≤ 500 ms",
            met=bf["p99"] <= 500,
        ),
    ]
    return {
        "status": "ok",
        "params": {"idle_seconds": idles},
        "runs": [{"lane": lane, "samples_ms": samples[lane], "ms": stats[lane]} for lane in LANES],
        "metrics": {lane: stats[lane] for lane in LANES},
        "rows": rows,
        "notes": [
            "The operator's column is bullflow-worker; the baselines are a plain "
            "Python bullmq Worker with default options (Python) and Node BullMQ's Worker (Node), "
            "each on its own queue, concurrency 1. One sample per idle length "
            f"({', '.join(f'{i:g}' for i in idles)} s): a one-job flow added with the "
            "operator's BullRedis.submit; latency = first event of the submission → the job's "
            "'active' event, both on Redis's clock (ms)."
        ],
    }


async def _plain_worker(url: str, prefix: str, queue: str) -> None:
    """A plain Python bullmq Worker, default options: the Python baseline."""
    import signal

    from bullmq import Worker

    async def process(job: Any, token: str) -> Any:
        return job.data

    worker = Worker(queue, process, {"connection": url, "prefix": prefix})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"python bullmq worker ready queue={queue} prefix={prefix}", flush=True)
    await stop.wait()
    await worker.close()


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] != "worker":
        sys.exit("usage: python -m bench.bullflow_bench.pickup worker URL PREFIX QUEUE")
    asyncio.run(_plain_worker(*sys.argv[2:5]))
