"""Burst write-back: many one-job Flows created at once while a fast worker is already
waiting, so jobs complete while their flows are still being submitted and tracked. Measures
job completed (its `finishedOn`) → the Flow's status shows it, p50/p99, per burst size.

This is where events that arrive between a flow's submission and its tracking matter: a flow
whose completion event was dropped would only be corrected by the slow resync (a minute)."""

from __future__ import annotations

from typing import Any

from .common import create_flows, flow_doc, hash_field, short_id
from .env import BenchEnv, FlowWatcher, kube_clients
from .rows import row
from .stats import summarize

QUEUE = "bwb"
LATE_SECONDS = 5.0  # far beyond any event-driven write; only a resync would be this slow


def one_job() -> dict[str, Any]:
    return {"name": "one", "queueName": QUEUE, "data": {"result": 1}}


def sizes(smoke: bool) -> tuple[int, ...]:
    return (5, 20) if smoke else (50, 400)


async def burst_write_back(env: BenchEnv, prm: Any, *, smoke: bool = False) -> dict[str, Any]:
    bursts = sizes(smoke)
    spaces = env.namespaces("bwb", len(bursts))
    env.start_operator("bwb")
    runs: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    latency_by_burst: dict[str, dict[str, float]] = {}
    async with kube_clients(env.cluster.kubeconfig) as (custom, _core):
        for ns, n in zip(spaces, bursts, strict=True):
            prefix = f"bb{n}{short_id()}"
            ws = env.workers(f"bwb-{n}")
            ws.start("python", [QUEUE], prefix, concurrency=50)
            watcher = await FlowWatcher(custom, ns).start()
            names = [f"b{i:04d}" for i in range(n)]
            docs = [flow_doc(name, prefix, one_job()) for name in names]
            created = await create_flows(custom, ns, docs, prm.concurrency)
            await watcher.wait(lambda: watcher.count_finished(names) >= n, 60 + n, "Completed")  # noqa: B023
            env.stop_workers(ws)
            await watcher.stop()
            ids = {name: f"bf-{c.uid}-0" for name, c in created.items()}
            finished_on = await hash_field(
                env.redis_url, prefix, [(QUEUE, j) for j in ids.values()], "finishedOn"
            )
            latencies = [
                watcher.job_completed_at[j] - int(finished_on[j]) / 1000
                for j in ids.values()
                if finished_on.get(j) and j in watcher.job_completed_at
            ]
            lat = summarize(latencies)
            latency_by_burst[str(n)] = lat
            late = sum(1 for v in latencies if v > LATE_SECONDS)
            runs.append({"flows": n, "measured": len(latencies), "late": late, "latency_s": lat})
            rows += [
                row(f"burst of {n}: job completed → status shows it p50", lat["p50"], "s"),
                row(
                    f"burst of {n}: job completed → status shows it p99",
                    lat["p99"],
                    "s",
                    target="≤ 2 s",
                    met=lat["p99"] <= 2.0,
                ),
                row(
                    f"burst of {n}: flows shown completed > {LATE_SECONDS:g} s late",
                    late,
                    "flows",
                    target="0",
                    met=late == 0,
                ),
            ]
    env.stop_operator()
    return {
        "status": "ok",
        "params": {"bursts": list(bursts)},
        "runs": runs,
        "metrics": {"latency_s_by_burst": latency_by_burst},
        "rows": rows,
        "notes": [
            "One-job Flows created at once (64 requests in flight) while a Python bullflow-worker "
            "(concurrency 50) already waits on the queue. Latency: the job hash's `finishedOn` "
            "(the worker's clock) → the watch event in which the Flow's status first lists the "
            "job `completed`."
        ],
    }
