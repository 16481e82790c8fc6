"""Shared pieces of the scenarios: Flow manifests, concurrent creates, the FlowProducer baselines
(Python bullmq in-process, Node.js bullmq as a subprocess), and reads of BullMQ's keys."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from bullmq import FlowProducer

from bullflow import GROUP, VERSION

from .env import NODE_BASELINE, ROOT

API_VERSION = f"{GROUP}/{VERSION}"
# The environment of worker processes that import from this checkout (e.g. bench's processors).
PY_ENV = {"PYTHONPATH": str(ROOT)}


def short_id() -> str:
    return uuid.uuid4().hex[:6]


def tree(parent_queue: str, child_queue: str, children: int, root_id: str | None = None) -> dict:
    """One parent summing `children` children: the shape every scenario submits."""
    kids: list[dict[str, Any]] = [
        {"name": f"c{j}", "queueName": child_queue, "data": {"result": 1}} for j in range(children)
    ]
    root: dict[str, Any] = {
        "name": "sum",
        "queueName": parent_queue,
        "data": {"combine": "sum"},
        "children": kids,
    }
    if root_id is not None:  # a FlowProducer input (the operator derives ids from the uid)
        root["opts"] = {"jobId": root_id}
        for j, kid in enumerate(kids):
            kid["opts"] = {"jobId": f"{root_id}.{j}"}
    return root


def flow_doc(
    name: str, prefix: str, root: dict[str, Any], deletion_policy: str | None = "Orphan"
) -> dict[str, Any]:
    """A Flow manifest. Orphan unless told: the bench's namespaces go with the whole cluster at
    the end, after the operators stopped; None leaves the default (Delete, with a finalizer)."""
    spec: dict[str, Any] = {"prefix": prefix, "root": root}
    if deletion_policy is not None:
        spec["deletionPolicy"] = deletion_policy
    return {"apiVersion": API_VERSION, "kind": "Flow", "metadata": {"name": name}, "spec": spec}


def job_ids(uid: str, children: int) -> list[str]:
    """The operator's job ids of a one-parent flow (see bullflow.services.flowtree.job_id)."""
    return [f"bf-{uid}-0", *(f"bf-{uid}-0.{j}" for j in range(children))]


@dataclass
class Created:
    name: str
    uid: str
    start: float  # time.time() when the create request was sent
    done: float  # ... and when the API server answered


async def create_namespace(core: Any, name: str) -> None:
    await core.create_namespace({"metadata": {"name": name, "labels": {"bullflow.bench": "1"}}})


async def create_flows(
    custom: Any, namespace: str, docs: list[dict[str, Any]], concurrency: int
) -> dict[str, Created]:
    """Creates every Flow, `concurrency` requests in flight (as fast as this client can)."""
    out: dict[str, Created] = {}
    queue = list(reversed(docs))

    async def lane() -> None:
        while queue:
            doc = queue.pop()
            start = time.time()
            obj = await custom.create_namespaced_custom_object(
                GROUP, VERSION, namespace, "flows", doc
            )
            meta = obj["metadata"]
            out[meta["name"]] = Created(meta["name"], meta["uid"], start, time.time())

    await asyncio.gather(*(lane() for _ in range(min(concurrency, len(docs)))))
    return out


async def python_flowproducer(
    redis_url: str, prefix: str, trees: list[dict], concurrency: int
) -> dict[str, Any]:
    """Baseline: Python bullmq FlowProducer.add of the same trees, straight to Redis."""
    client = aioredis.from_url(redis_url, decode_responses=True)
    producer = FlowProducer(client, {"prefix": prefix})
    latencies: list[float] = []
    queue = list(reversed(trees))

    async def lane() -> None:
        while queue:
            t = queue.pop()
            t0 = time.perf_counter()
            await producer.add(t)
            latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    try:
        await asyncio.gather(*(lane() for _ in range(min(concurrency, len(trees)))))
        wall = time.perf_counter() - start
    finally:
        await client.aclose()
    return {"wall_s": wall, "latencies_s": latencies}


async def node_flowproducer(
    redis_url: str,
    prefix: str,
    flows: int,
    children: int,
    concurrency: int,
    parent_queue: str,
    child_queue: str,
) -> dict[str, Any]:
    """Baseline: Node.js bullmq FlowProducer.add of the same trees (bench/flowproducer.mjs)."""
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(NODE_BASELINE),
        "--redis-url",
        redis_url,
        "--prefix",
        prefix,
        "--flows",
        str(flows),
        "--children",
        str(children),
        "--concurrency",
        str(concurrency),
        "--parent-queue",
        parent_queue,
        "--child-queue",
        child_queue,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"node baseline failed ({proc.returncode}): {err.decode()[-2000:]}")
    result = json.loads(out.decode().strip().splitlines()[-1])
    return {
        "wall_s": result["wall_s"],
        "latencies_s": [ms / 1000 for ms in result["latencies_ms"]],
        "bullmq": result["bullmq"],
    }


async def added_ms_by_uid(redis_url: str, stream: str, *, latest: bool = False) -> dict[str, int]:
    """Flow uid -> the earliest (or `latest`) `added` event (stream id ms: Redis's clock at
    XADD) of its jobs in one queue's events stream."""
    pick = max if latest else min
    client = aioredis.from_url(redis_url, decode_responses=True)
    out: dict[str, int] = {}
    try:
        start = "-"
        while True:
            entries: Any = await client.xrange(stream, min=start, count=5000)
            for entry_id, fields in entries:
                job = fields.get("jobId", "")
                if fields.get("event") != "added" or not job.startswith("bf-"):
                    continue
                uid = job[3:39]
                ms = int(entry_id.split("-")[0])
                out[uid] = pick(ms, out.get(uid, ms))
            if len(entries) < 5000:
                return out
            start = "(" + entries[-1][0]
    finally:
        await client.aclose()


async def hash_field(
    redis_url: str, prefix: str, keys: list[tuple[str, str]], name: str
) -> dict[str, str | None]:
    """job id -> HGET <prefix>:<queue>:<job id> <name>, for (queue, job id) pairs."""
    client = aioredis.from_url(redis_url, decode_responses=True)
    out: dict[str, str | None] = {}
    try:
        for i in range(0, len(keys), 2000):
            chunk = keys[i : i + 2000]
            async with client.pipeline(transaction=False) as pipe:
                for queue, job in chunk:
                    pipe.hget(f"{prefix}:{queue}:{job}", name)
                values = await pipe.execute()
            out.update({job: v for (_, job), v in zip(chunk, values, strict=True)})
    finally:
        await client.aclose()
    return out


async def script_seconds(redis_url: str) -> float:
    """Redis's own time running Lua scripts so far (INFO commandstats: EVALSHA and EVAL usec),
    where BullMQ's job additions run whoever sends them."""
    client = aioredis.from_url(redis_url, decode_responses=True)
    try:
        stats: Any = await client.info("commandstats")
    finally:
        await client.aclose()
    return sum(stats.get(f"cmdstat_{c}", {}).get("usec", 0) for c in ("evalsha", "eval")) / 1e6


async def zcard(redis_url: str, key: str) -> int:
    client = aioredis.from_url(redis_url, decode_responses=True)
    try:
        return int(await client.zcard(key))
    finally:
        await client.aclose()
