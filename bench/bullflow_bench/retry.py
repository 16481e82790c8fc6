"""9. Retry: how soon a `bullflow.io/retry` annotation puts a failed flow's job back in wait.

`retry_flows` Flows (a parent and one child that fails its first run, attempts 1) run on a
Python worker until every one is Failed. Then, one flow at a time, the retry annotation is
patched and the child's `waiting` event (BullMQ's reprocessJob writes it in the operator's
retry transaction) is awaited in `<prefix>:<queue>:events`. Measured: the patch's response (this
machine's clock) → the event's stream id (Redis's clock, ms; same machine). The floor beside it
is a bare annotation patch's round trip (send → response): what the request alone costs. The
flows then complete (the retry really applied). No baseline: BullMQ has no declarative retry."""

from __future__ import annotations

import time
from typing import Any

from bullflow import GROUP, VERSION

from .common import create_flows, flow_doc, short_id
from .env import BenchEnv, FlowWatcher, kube_clients
from .params import Params
from .rows import row
from .stats import summarize

PARENT, CHILD = "rt-parent", "rt-child"


def failing_tree() -> dict[str, Any]:
    return {
        "name": "sum",
        "queueName": PARENT,
        "data": {"combine": "sum"},
        "children": [
            {
                "name": "flaky",
                "queueName": CHILD,
                "data": {"failTimes": 1, "result": 1},
                "opts": {"attempts": 1},
            }
        ],
    }


async def _annotate(custom: Any, ns: str, name: str, key: str, value: str) -> tuple[float, float]:
    """(sent, answered) times of a merge patch of one annotation."""
    body = {"metadata": {"annotations": {key: value}}}
    sent = time.time()
    await custom.patch_namespaced_custom_object(
        GROUP, VERSION, ns, "flows", name, body, _content_type="application/merge-patch+json"
    )
    return sent, time.time()


async def _waiting_ms(r: Any, stream: str, after: str, job_id: str) -> int:
    """Redis-clock ms of the first `waiting` event of `job_id` after stream id `after`."""
    last = after
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for _key, entries in await r.xread({stream: last}, block=500):
            for entry_id, fields in entries:
                last = entry_id
                if fields.get("event") == "waiting" and fields.get("jobId") == job_id:
                    return int(entry_id.split("-")[0])
    raise TimeoutError(f"no waiting event of {job_id} in {stream} within 60 s")


async def retry(env: BenchEnv, prm: Params) -> dict[str, Any]:
    import redis.asyncio as aioredis

    from bullflow.storage.redis_jobs import BullRedis, events_key

    (ns,) = env.namespaces("retry", 1)
    env.start_operator("retry")
    prefix = f"rt{short_id()}"
    names = [f"r{i:03d}" for i in range(prm.retry_flows)]
    stream = events_key(prefix, CHILD)
    r = aioredis.from_url(env.redis_url, decode_responses=True)
    bull = BullRedis(env.redis_url)
    ws = env.workers("retry")
    to_wait: list[float] = []  # the patch's response → waiting event
    sent_to_wait: list[float] = []  # the patch sent → waiting event (comparable to the floor)
    floor: list[float] = []
    try:
        async with kube_clients(env.cluster.kubeconfig) as (custom, _core):
            watcher = await FlowWatcher(custom, ns).start()
            ws.start("python", [PARENT, CHILD], prefix, concurrency=8)
            docs = [flow_doc(n, prefix, failing_tree()) for n in names]
            created = await create_flows(custom, ns, docs, prm.concurrency)
            await watcher.wait(
                lambda: watcher.count_finished(names) >= len(names), 120, "every flow Failed"
            )
            if any(watcher.phase.get(n) != "Failed" for n in names):
                raise RuntimeError(f"not every flow failed: {watcher.phase}")
            for name in names:
                sent, answered = await _annotate(custom, ns, name, "bench.bullflow.io/n", name)
                floor.append((answered - sent) * 1000)
                tail = await bull.stream_tail(stream)
                sent, answered = await _annotate(custom, ns, name, "bullflow.io/retry", "b1")
                waiting_ms = await _waiting_ms(r, stream, tail, f"bf-{created[name].uid}-0.0")
                to_wait.append(waiting_ms - answered * 1000)
                sent_to_wait.append(waiting_ms - sent * 1000)
            await watcher.wait(
                lambda: sum(watcher.phase.get(n) == "Completed" for n in names) >= len(names),
                120,
                "every retried flow Completed",
            )
            await watcher.stop()
    finally:
        env.stop_workers(ws)
        env.stop_operator()
        await bull.close()
        await r.aclose()
    return summary(prm, to_wait, sent_to_wait, floor)


def summary(
    prm: Params, to_wait: list[float], sent_to_wait: list[float], floor: list[float]
) -> dict[str, Any]:
    lat, whole, base = summarize(to_wait), summarize(sent_to_wait), summarize(floor)
    rows = [
        row("retry annotated → job back in wait p50", lat["p50"], "ms"),
        row("retry annotated → job back in wait p99", lat["p99"], "ms"),
        row("retry patch sent → job back in wait p50", whole["p50"], "ms"),
        row("floor: annotation patch round trip p50", base["p50"], "ms"),
    ]
    return {
        "status": "ok",
        "params": {"flows": prm.retry_flows},
        "runs": [
            {
                "flows": prm.retry_flows,
                "samples_ms": to_wait,
                "sent_samples_ms": sent_to_wait,
                "floor_samples_ms": floor,
            }
        ],
        "metrics": {"to_wait_ms": lat, "sent_to_wait_ms": whole, "patch_round_trip_ms": base},
        "rows": rows,
        "notes": [
            f"{prm.retry_flows} failed Flows (a parent, one child failing its first run), retried "
            "one at a time. Latency: the retry annotation patch's response → the child's "
            "`waiting` event in the queue's events stream (stream id ms, Redis's clock); also from "
            "the patch sent. Floor: a patch of another annotation, sent → answered (what the "
            "request alone costs). Every retried flow then completed."
        ],
    }
