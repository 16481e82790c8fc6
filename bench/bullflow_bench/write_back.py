"""2. Write-back: how soon a Flow's status shows that one of its jobs completed.

Each run submits `wb_flows` Flows (3 jobs each, one queue), then one Python worker, paced to
`wb_rate` completions/s, runs them. Measured: job completed (the job hash's `finishedOn`, the
worker's clock) → the watch event in which the Flow's status first lists the job `completed`,
p50/p95/p99, against the targets (p50 < 0.5 s, p99 < 2 s); the completion rate reached; status
patches per Flow, whole life and while running (the operator's
bullflow_status_patches_total). No baseline: BullMQ has no status to write back."""

from __future__ import annotations

import asyncio
import math
from typing import Any

from .common import PY_ENV, create_flows, flow_doc, hash_field, job_ids, short_id, tree
from .env import BenchEnv, FlowWatcher, kube_clients, metric_sum
from .params import Params
from .rows import row
from .stats import over_runs, summarize

PATCHES = "bullflow_status_patches_total"


async def write_back(env: BenchEnv, prm: Params) -> dict[str, Any]:
    """Scenario 2: `repeats` runs, then the latencies pooled over them."""
    spaces = env.namespaces("wb", prm.repeats)
    env.start_operator("wb")
    latencies: list[float] = []
    runs: list[dict[str, Any]] = []
    async with kube_clients(env.cluster.kubeconfig) as (custom, _core):
        for r in range(prm.repeats):
            prefix = f"bw{r}{short_id()}"
            run, run_lat = await one_run(env, prm, custom, spaces[r], prefix, r)
            latencies += run_lat
            runs.append(run)
    env.stop_operator()
    return summary(prm, runs, summarize(latencies))


async def one_run(
    env: BenchEnv, prm: Params, custom: Any, ns: str, prefix: str, r: int
) -> tuple[dict[str, Any], list[float]]:
    """Submit every Flow, let the paced worker complete their jobs; returns the run's record
    and its latencies (job completed → status shows it)."""
    n = prm.wb_flows
    watcher = await FlowWatcher(custom, ns).start()
    names = [f"w{i:04d}" for i in range(n)]
    patches0 = metric_sum(env.metrics(), PATCHES)
    created = await create_flows(
        custom,
        ns,
        [flow_doc(nm, prefix, tree("wb", "wb", 2)) for nm in names],
        prm.concurrency,
    )
    await watcher.wait(lambda: watcher.count_submitted(names) >= n, 120 + n, "Submitted")
    await asyncio.sleep(1.0)  # let the post-submit refresh settle
    patches1 = metric_sum(env.metrics(), PATCHES)
    modified1 = sum(watcher.modified[nm] for nm in names)
    ws = env.workers(f"wb-{r}")
    ws.start(
        "python",
        ["wb"],
        prefix,
        concurrency=4,
        processor="bench.bullflow_bench.processors:paced",
        env={**PY_ENV, "BENCH_RATE": str(prm.wb_rate)},
    )
    await watcher.wait(
        lambda: watcher.count_finished(names) >= n, 120 + 6 * n / prm.wb_rate, "Completed"
    )
    await asyncio.sleep(0.5)
    env.stop_workers(ws)
    patches2 = metric_sum(env.metrics(), PATCHES)
    modified2 = sum(watcher.modified[nm] for nm in names)
    ids = [(nm, j) for nm in names for j in job_ids(created[nm].uid, 2)]
    finished_on = await hash_field(env.redis_url, prefix, [("wb", j) for _, j in ids], "finishedOn")
    run_lat = [
        watcher.job_completed_at[j] - int(finished_on[j] or 0) / 1000
        for _, j in ids
        if finished_on.get(j) and j in watcher.job_completed_at
    ]
    ends = sorted(int(v) for v in finished_on.values() if v)
    rate = (len(ends) - 1) / ((ends[-1] - ends[0]) / 1000) if len(ends) > 1 else math.nan
    await watcher.stop()
    run = {
        "flows": n,
        "jobs": len(ids),
        "completions_per_s": rate,
        "latency_p50_s": summarize(run_lat)["p50"],
        "latency_p99_s": summarize(run_lat)["p99"],
        "status_patches_per_flow": (patches2 - patches0) / n,
        "progress_patches_per_flow": (patches2 - patches1) / n,
        "modified_events_per_flow_while_running": (modified2 - modified1) / n,
        "jobs_measured": len(run_lat),
    }
    return run, run_lat


def summary(prm: Params, runs: list[dict[str, Any]], lat: dict[str, float]) -> dict[str, Any]:
    def median(key: str) -> float:
        return over_runs(runs, key)["p50"]

    rows = [
        row(
            "job completed → status shows it p50",
            lat["p50"],
            "s",
            target="< 0.5 s",
            met=lat["p50"] < 0.5,
        ),
        row("job completed → status shows it p95", lat["p95"], "s"),
        row(
            "job completed → status shows it p99",
            lat["p99"],
            "s",
            target="< 2 s",
            met=lat["p99"] < 2,
        ),
        row("completion rate (measured)", median("completions_per_s"), "jobs/s"),
        row(
            "status patches per flow (3 jobs, whole life)",
            median("status_patches_per_flow"),
            "patches",
        ),
        row(
            "status patches per flow while running",
            median("progress_patches_per_flow"),
            "patches",
        ),
    ]
    return {
        "status": "ok",
        "params": {"flows": prm.wb_flows, "rate": prm.wb_rate, "repeats": prm.repeats},
        "runs": runs,
        "metrics": {"latency_s": lat},
        "rows": rows,
        "notes": [
            f"{prm.wb_flows} Flows x 3 jobs per run on one queue; one Python worker paced to "
            f"{prm.wb_rate:g} completions/s. Latency: job hash `finishedOn` (the worker's clock) "
            "→ the watch event in which the Flow's status first lists the job `completed`.",
            "Patches from the operator's bullflow_status_patches_total.",
        ],
    }
