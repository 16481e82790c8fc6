"""3. Large flow: one Flow with `large_children` children (10,000 by default).

Measured: submit time = create → every job in Redis (the last `added` event of its jobs, Redis's
clock: where workers can start), against one `FlowProducer.add` of the same tree, Python
(the ratio's denominator; target ≤ 1.5x) and Node.js; of which the create request, the
operator's own Redis transaction (bullflow_flow_submit_seconds) and Redis running BullMQ's
scripts (INFO commandstats, also for the Python baseline); create → Submitted seen in the
status, beside its floor (`large_flow_floor`: the same Flow created where no operator watches
plus one status write, floor.py's ideal_operator; + the scripts' time); the status object's
size (target < 256 KiB); last job finished → Flow Completed."""

from __future__ import annotations

import time
from typing import Any

from .common import (
    added_ms_by_uid,
    create_flows,
    flow_doc,
    hash_field,
    node_flowproducer,
    python_flowproducer,
    script_seconds,
    short_id,
    tree,
)
from .env import BenchEnv, FlowWatcher, kube_clients, metric_sum
from .floor import ideal_operator
from .params import Params
from .rows import row
from .stats import over_runs, summarize

SUBMIT_SECONDS = "bullflow_flow_submit_seconds_sum"


async def large_flow(env: BenchEnv, prm: Params) -> dict[str, Any]:
    """Scenario 3: `large_repeats` runs with the operator, then the floor without it."""
    spaces = env.namespaces("large", prm.large_repeats)
    env.start_operator("large")
    runs: list[dict[str, Any]] = []
    async with kube_clients(env.cluster.kubeconfig) as (custom, _core):
        for r in range(prm.large_repeats):
            prefix = f"bl{r}{short_id()}"
            runs.append(await one_run(env, prm, custom, spaces[r], prefix, r))
    env.stop_operator()
    floor = await large_flow_floor(env, prm)
    metrics = summary_metrics(runs, floor)
    return {
        "status": "ok",
        "params": {"children": prm.large_children, "repeats": prm.large_repeats},
        "runs": runs,
        "metrics": metrics,
        "rows": summary_rows(prm.large_children, runs, metrics),
        "notes": notes(prm.large_children),
    }


async def one_run(
    env: BenchEnv, prm: Params, custom: Any, ns: str, prefix: str, r: int
) -> dict[str, Any]:
    """The baselines add the tree, then the operator submits it as a Flow; Node.js workers run
    it to completion."""
    k = prm.large_children
    py_scripts0 = await script_seconds(env.redis_url)
    py = await python_flowproducer(env.redis_url, f"{prefix}py", [tree("lp", "lc", k, "big-0")], 1)
    py_scripts_s = await script_seconds(env.redis_url) - py_scripts0
    nd = await node_flowproducer(env.redis_url, f"{prefix}nd", 1, k, 1, "lp", "lc")
    watcher = await FlowWatcher(custom, ns).start()
    submit0 = metric_sum(env.metrics(), SUBMIT_SECONDS)
    scripts0 = await script_seconds(env.redis_url)
    created = await create_flows(custom, ns, [flow_doc("large", prefix, tree("lp", "lc", k))], 1)
    c = created["large"]
    await watcher.wait(lambda: "large" in watcher.submitted_at, 300, "Submitted")
    submit_s = watcher.submitted_at["large"] - c.start
    redis_s = metric_sum(env.metrics(), SUBMIT_SECONDS) - submit0
    scripts_s = await script_seconds(env.redis_url) - scripts0
    added = [
        await added_ms_by_uid(env.redis_url, f"{prefix}:{q}:events", latest=True)
        for q in ("lp", "lc")
    ]
    in_redis_s = max(last[c.uid] for last in added) / 1000 - c.start
    ws = env.workers(f"large-{r}")
    t_workers = time.time()
    ws.start("node", ["lp", "lc"], prefix, concurrency=100)
    await watcher.wait(lambda: "large" in watcher.finished_at, 600, "Completed")
    env.stop_workers(ws)
    root_done = await hash_field(env.redis_url, prefix, [("lp", f"bf-{c.uid}-0")], "finishedOn")
    last_job = int(root_done[f"bf-{c.uid}-0"] or 0) / 1000
    await watcher.stop()
    return {
        "children": k,
        "create_to_submitted_s": submit_s,
        "create_to_in_redis_s": in_redis_s,
        "create_request_s": c.done - c.start,
        "operator_redis_submit_s": redis_s,
        "operator_scripts_s": scripts_s,
        "python_scripts_s": py_scripts_s,
        "python_add_s": py["wall_s"],
        "node_add_s": nd["wall_s"],
        "ratio_vs_python": in_redis_s / py["wall_s"],
        "status_bytes": watcher.status_bytes.get("large", 0),
        "object_bytes": watcher.object_bytes.get("large", 0),
        "last_job_to_completed_s": watcher.finished_at["large"] - last_job,
        "workers_to_completed_s": watcher.finished_at["large"] - t_workers,
        "phase": watcher.phase.get("large"),
    }


async def large_flow_floor(env: BenchEnv, prm: Params) -> dict[str, float]:
    """The same Flow created where no operator watches, answered by one status write."""
    spaces = env.namespaces("floorlarge", prm.large_repeats)
    walls = []
    async with kube_clients(env.cluster.kubeconfig) as (custom, _core):
        for ns in spaces:
            doc = flow_doc("large", f"fl{short_id()}", tree("lp", "lc", prm.large_children))
            walls.append((await ideal_operator(custom, ns, [doc], 1))["submitted_wall_s"])
    return summarize(walls)


def summary_metrics(runs: list[dict[str, Any]], floor: dict[str, float]) -> dict[str, Any]:
    keys = (
        "create_to_submitted_s",
        "create_to_in_redis_s",
        "operator_redis_submit_s",
        "operator_scripts_s",
        "python_scripts_s",
        "python_add_s",
        "node_add_s",
        "status_bytes",
        "last_job_to_completed_s",
    )
    return {**{key: over_runs(runs, key) for key in keys}, "floor_create_and_status_s": floor}


def summary_rows(k: int, runs: list[dict[str, Any]], metrics: dict[str, Any]) -> list[dict]:
    """Every time against the Python and Node.js FlowProducer (the ratio's is Python)."""
    baselines: dict[str, Any] = {
        "py": metrics["python_add_s"]["p50"],
        "node": metrics["node_add_s"]["p50"],
        "vs": "python",
    }
    return [*submit_rows(k, runs, metrics, baselines), *status_rows(runs, metrics, baselines)]


def submit_rows(
    k: int, runs: list[dict[str, Any]], metrics: dict[str, Any], baselines: dict[str, Any]
) -> list[dict]:
    """Create → every job in Redis (the target), and where that time went."""
    in_redis, py = metrics["create_to_in_redis_s"], metrics["python_add_s"]
    return [
        row(
            f"submit {k:,} children (create → every job in Redis)",
            in_redis["p50"],
            "s",
            **baselines,
            target="≤ 1.5x Python FlowProducer",
            met=in_redis["p50"] <= 1.5 * py["p50"],
        ),
        row("… of which the create request", over_runs(runs, "create_request_s")["p50"], "s"),
        row(
            "… of which the operator's Redis transaction",
            metrics["operator_redis_submit_s"]["p50"],
            "s",
            **baselines,
        ),
        row(
            "… of which Redis running BullMQ's scripts (FlowProducer: the same work)",
            metrics["operator_scripts_s"]["p50"],
            "s",
            py=metrics["python_scripts_s"]["p50"],
            vs="python",
        ),
    ]


def status_rows(
    runs: list[dict[str, Any]], metrics: dict[str, Any], baselines: dict[str, Any]
) -> list[dict]:
    """Create → Submitted seen beside its floors; the status's size; the completion's lag."""
    floor, py_scripts = metrics["floor_create_and_status_s"], metrics["python_scripts_s"]
    size = metrics["status_bytes"]
    return [
        row(
            "create → Submitted seen in the Flow's status",
            metrics["create_to_submitted_s"]["p50"],
            "s",
            **baselines,
        ),
        row(
            "floor: create + 1 status write, no operator",
            floor["p50"],
            "s",
            **baselines,
        ),
        row(
            "floor: same + Redis running BullMQ's scripts (least create → Submitted can take)",
            floor["p50"] + py_scripts["p50"],
            "s",
            **baselines,
        ),
        row(
            "status object size (max seen)",
            size["max"] / 1024,
            "KiB",
            target="< 256 KiB",
            met=size["max"] < 256 * 1024,
        ),
        row("last job finished → Flow Completed", metrics["last_job_to_completed_s"]["p50"], "s"),
        row(
            "workers started → Flow Completed",
            over_runs(runs, "workers_to_completed_s")["p50"],
            "s",
        ),
    ]


def notes(k: int) -> list[str]:
    return [
        f"One Flow: a parent with {k:,} children; baselines add the same tree with one "
        "FlowProducer.add call. The operator's time starts when the create request is "
        "sent (it includes the API server storing a large object).",
        "Submit time: create → every job in Redis ends at the last `added` event of the "
        "Flow's jobs (Redis's clock): the moment workers can start, where "
        "FlowProducer.add returns; the target is judged on it, like for like. "
        "create → Submitted seen adds writing that news into the 600 KB Flow and the "
        "watch delivering it: its floor (no operator: the create, one status write, and "
        "Redis running BullMQ's scripts for the jobs) is shown beside it.",
        "Redis running BullMQ's scripts: INFO commandstats, EVALSHA/EVAL time spent "
        "while each side added the tree; what any producer of these jobs costs Redis.",
        "floor: the same Flow created where no operator watches, and one small status "
        "write answering its ADDED event (floor.py): what the API server alone costs "
        "before any job reaches Redis.",
    ]
