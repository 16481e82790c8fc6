"""10. CronFlow: how close to its scheduled time a CronFlow's run exists, and what idle
CronFlows cost the operator.

Accuracy: one CronFlow firing every second (`* * * * * *`, a one-job tree on a queue with no
worker) until `cron_fires` Flows exist. For each, from its scheduled time (the Flow's
bullflow.io/scheduled-time label): the Flow's ADDED watch event here (this machine's clock), and
its job's `added` event in the queue's events stream (stream id ms, Redis's clock; same machine).

Idle cost: `cron_idle` CronFlows on `@yearly` (none fires) are created; once each shows its
nextScheduleTime, the operator's CPU (utime+stime) over `idle_seconds` and its RSS, beside its
RSS before they existed (the fires' Flows deleted first). An idle CronFlow is one timer
handle in the operator. No baseline:
BullMQ has no scheduled flows."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bullflow import GROUP, VERSION

from .common import added_ms_by_uid, short_id
from .env import BenchEnv, FlowWatcher, kube_clients, proc_cpu_seconds, proc_rss_bytes
from .params import Params
from .rows import row
from .stats import summarize

QUEUE = "cr-fire"
SCHEDULED = "bullflow.io/scheduled-time"


def cronflow(name: str, schedule: str, prefix: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "CronFlow",
        "metadata": {"name": name},
        "spec": {
            "schedule": schedule,
            "successfulFlowsHistoryLimit": 1000,
            "flowTemplate": {
                "spec": {"prefix": prefix, "root": {"name": "tick", "queueName": QUEUE}}
            },
        },
    }


async def _fires(
    custom: Any, env: BenchEnv, ns: str, prm: Params
) -> tuple[list[float], list[float]]:
    """(scheduled → Flow seen, scheduled → job added) in ms, one sample per fire."""
    from bullflow.storage.redis_jobs import events_key

    prefix = f"cr{short_id()}"
    watcher = await FlowWatcher(custom, ns).start()
    try:
        await custom.create_namespaced_custom_object(
            GROUP, VERSION, ns, "cronflows", cronflow("fire", "* * * * * *", prefix)
        )
        await watcher.wait(
            lambda: len(watcher.added_at) >= prm.cron_fires, prm.cron_fires + 60, "the fires"
        )
        patch = {"spec": {"suspend": True}}
        await custom.patch_namespaced_custom_object(
            GROUP, VERSION, ns, "cronflows", "fire", patch,
            _content_type="application/merge-patch+json",
        )  # fmt: skip
        listing = await custom.list_namespaced_custom_object(GROUP, VERSION, ns, "flows")
        await _clear(custom, ns)
    finally:
        await watcher.stop()
    added = await added_ms_by_uid(env.redis_url, events_key(prefix, QUEUE))
    to_flow, to_job = [], []
    for flow in listing["items"]:
        meta = flow["metadata"]
        scheduled_ms = int(meta["labels"][SCHEDULED]) * 1000
        if meta["name"] in watcher.added_at:
            to_flow.append(watcher.added_at[meta["name"]] * 1000 - scheduled_ms)
        if meta["uid"] in added:
            to_job.append(added[meta["uid"]] - scheduled_ms)
    return to_flow, to_job


async def _clear(custom: Any, ns: str) -> None:
    """The fires' CronFlow and Flows deleted (and gone), so that the idle part measures idle
    CronFlows only, not Flows the operator still follows."""
    for plural in ("cronflows", "flows"):
        await custom.delete_collection_namespaced_custom_object(GROUP, VERSION, ns, plural)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        left = await custom.list_namespaced_custom_object(GROUP, VERSION, ns, "flows")
        if not left["items"]:
            return
        await asyncio.sleep(0.5)
    raise TimeoutError(f"{len(left['items'])} Flows of the fires still there after 60 s")


async def _idle(custom: Any, env: BenchEnv, ns: str, prm: Params) -> dict[str, float]:
    pid = env.operator_pid
    rss_before = proc_rss_bytes(pid) / 2**20
    names = [f"idle-{i:05d}" for i in range(prm.cron_idle)]
    pending = list(names)

    async def lane() -> None:
        while pending:
            doc = cronflow(pending.pop(), "@yearly", "cridle")
            await custom.create_namespaced_custom_object(GROUP, VERSION, ns, "cronflows", doc)

    await asyncio.gather(*(lane() for _ in range(min(prm.concurrency, len(names)))))
    deadline = time.monotonic() + 120 + prm.cron_idle / 10
    while time.monotonic() < deadline:
        listing = await custom.list_namespaced_custom_object(GROUP, VERSION, ns, "cronflows")
        armed = sum(bool((c.get("status") or {}).get("nextScheduleTime")) for c in listing["items"])
        if armed >= len(names):
            break
        await asyncio.sleep(1)
    else:
        raise TimeoutError(f"only {armed}/{len(names)} CronFlows scheduled")
    cpu0, t0 = proc_cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(prm.idle_seconds)
    cpu = proc_cpu_seconds(pid) - cpu0
    return {
        "cpu_percent": 100.0 * cpu / (time.monotonic() - t0),
        "rss_mib": proc_rss_bytes(pid) / 2**20,
        "rss_mib_before": rss_before,
    }


async def cron(env: BenchEnv, prm: Params) -> dict[str, Any]:
    fire_ns, idle_ns = env.namespaces("cron", 2)
    env.start_operator("cron")
    try:
        async with kube_clients(env.cluster.kubeconfig) as (custom, _core):
            to_flow, to_job = await _fires(custom, env, fire_ns, prm)
            idle = await _idle(custom, env, idle_ns, prm)
    finally:
        env.stop_operator()
    return summary(prm, to_flow, to_job, idle)


def summary(
    prm: Params, to_flow: list[float], to_job: list[float], idle: dict[str, float]
) -> dict[str, Any]:
    flow, job = summarize(to_flow), summarize(to_job)
    rows = [
        row("scheduled time → Flow created p50", flow["p50"], "ms"),
        row("scheduled time → Flow created p99", flow["p99"], "ms"),
        row("scheduled time → job in Redis p50", job["p50"], "ms"),
        row("scheduled time → job in Redis p99", job["p99"], "ms"),
        row(f"operator CPU, {prm.cron_idle:,} idle CronFlows", idle["cpu_percent"], "% core"),
        row(f"operator RSS, {prm.cron_idle:,} idle CronFlows", idle["rss_mib"], "MiB"),
    ]
    return {
        "status": "ok",
        "params": {"fires": prm.cron_fires, "idle": prm.cron_idle, "idle_s": prm.idle_seconds},
        "runs": [{"to_flow_ms": to_flow, "to_job_ms": to_job, "idle": idle}],
        "metrics": {"to_flow_ms": flow, "to_job_ms": job, "idle": idle},
        "rows": rows,
        "notes": [
            f"One CronFlow firing every second until {prm.cron_fires} runs; latency from the "
            "scheduled time to the Flow's ADDED watch event here and to its job's `added` event "
            f"(stream id ms). Then {prm.cron_idle} CronFlows on @yearly: operator CPU over "
            f"{prm.idle_seconds:.0f} s once all were scheduled, RSS then (before them: "
            f"{idle['rss_mib_before']:.0f} MiB)."
        ],
    }
