"""The six scenarios. Each returns {"status", "params", "runs", "metrics", "rows", "notes"};
`rows` are what the summary and the Markdown table show (value, baselines, ratio, target)."""

# ruff: noqa: B023 - every lambda below is awaited before its loop variables change
from __future__ import annotations

import asyncio
import collections
import math
import time
from dataclasses import dataclass
from typing import Any

from .common import (
    added_ms_by_uid,
    create_flows,
    flow_doc,
    hash_field,
    job_ids,
    node_flowproducer,
    python_flowproducer,
    script_seconds,
    short_id,
    tree,
    zcard,
)
from .env import (
    ROOT,
    BenchEnv,
    FlowWatcher,
    Sampler,
    kube_clients,
    main_thread_schedstat,
    metric_sum,
    proc_cpu_seconds,
)
from .floor import creates_alone, ideal_operator
from .stats import ratio, summarize

PY_ENV = {"PYTHONPATH": str(ROOT)}


@dataclass
class Params:
    repeats: int = 3
    # The burst's keep-pace ratio moves by ±0.1 from run to run on a shared 2-core machine: its
    # median needs more runs than the other scenarios' numbers.
    sub_repeats: int = 5
    probe_flows: int = 20
    concurrency: int = 64
    sub_flows: int = 1000
    wb_flows: int = 150
    wb_rate: float = 50.0
    large_children: int = 10_000
    large_repeats: int = 3
    many_flows: int = 10_000
    idle_seconds: float = 60.0
    as_jobs: int = 1000
    as_job_seconds: float = 1.0
    as_max_replicas: int = 5
    as_jobs_per_replica: int = 100
    as_poll_seconds: int = 5
    as_down_stabilization_seconds: int = 60
    as_repeats: int = 2


SMOKE = Params(
    repeats=1,
    sub_repeats=1,
    probe_flows=3,
    concurrency=8,
    sub_flows=10,
    wb_flows=5,
    wb_rate=50,
    large_children=50,
    large_repeats=1,
    many_flows=20,
    idle_seconds=1,
    as_jobs=20,
    as_job_seconds=0.2,
    as_max_replicas=2,
    as_jobs_per_replica=10,
    as_poll_seconds=1,
    as_down_stabilization_seconds=1,
    as_repeats=1,
)


def row(
    metric: str,
    value: float,
    unit: str,
    *,
    py: float | None = None,
    node: float | None = None,
    vs: str = "",
    target: str | None = None,
    met: bool | None = None,
) -> dict[str, Any]:
    """One line of the report. `vs` names the ratio's denominator (python/node)."""
    base = {"python": py, "node": node}.get(vs)
    return {
        "metric": metric,
        "value": value,
        "unit": unit,
        "baseline_python": py,
        "baseline_node": node,
        "ratio": ratio(value, base) if base else None,
        "ratio_vs": vs or None,
        "target": target,
        "met": met,
    }


# -- 1. submission + 6. resource cost --------------------------------------------------------


async def submission(env: BenchEnv, prm: Params) -> dict[str, Any]:
    n, conc = prm.sub_flows, prm.concurrency
    spaces = env.namespaces("sub", prm.sub_repeats + 1)  # the last: deletionPolicy Delete
    floors = await api_floor(env, prm)
    operator = env.start_operator("sub")
    runs: list[dict[str, Any]] = []
    lat_submit: list[float] = []
    lat_redis: list[float] = []
    lat_watch: list[float] = []
    lat_create: list[float] = []
    timeline: list[list[tuple[float, float, float, float]]] = [[] for _ in range(TENTHS)]
    py_lat: list[float] = []
    node_lat: list[float] = []
    probe_submit: list[float] = []
    probe_redis: list[float] = []
    probe_uids: dict[str, float] = {}
    async with kube_clients(env.cluster.kubeconfig) as (custom, _core):
        for r in range(prm.sub_repeats):
            sid = short_id()
            ns, prefix = spaces[r], f"bs{r}{sid}"
            watcher = await FlowWatcher(custom, ns).start()
            # Unloaded latency first: flows created one at a time, each awaited.
            for i in range(prm.probe_flows):
                name = f"probe{i:03d}"
                one = await create_flows(
                    custom, ns, [flow_doc(name, prefix, tree("probe", "probe-child", 2))], 1
                )
                await watcher.wait(lambda: name in watcher.submitted_at, 60, f"{name} Submitted")
                probe_submit.append(watcher.submitted_at[name] - one[name].start)
                probe_uids[one[name].uid] = one[name].start
                await asyncio.sleep(0.1)
            names = [f"f{i:05d}" for i in range(n)]
            docs = [flow_doc(nm, prefix, tree("parent", "child", 2)) for nm in names]
            pid = env.operator_pid
            cpu0 = proc_cpu_seconds(pid)
            sched0 = main_thread_schedstat(pid)
            snap0, t_snap0 = env.cpu_snapshot(), time.time()
            created = await create_flows(custom, ns, docs, conc)
            first = min(c.start for c in created.values())
            creates_wall = max(c.done for c in created.values()) - first
            await watcher.wait(
                lambda: watcher.count_submitted(names) >= n, 120 + n / 5, f"{n} Flows Submitted"
            )
            submit_wall = max(watcher.submitted_at[nm] for nm in names) - first
            cpu_submit = proc_cpu_seconds(pid) - cpu0
            sched1, window = main_thread_schedstat(pid), time.time() - t_snap0
            cpu_share = env.cpu_share(snap0, env.cpu_snapshot(), window)
            run_submit = [watcher.submitted_at[nm] - created[nm].start for nm in names]
            added = await added_ms_by_uid(env.redis_url, f"{prefix}:child:events")
            run_redis = apply_to_redis_s(created, added)
            in_redis_wall = max(added[created[nm].uid] for nm in names) / 1000 - first
            lat_submit += run_submit
            lat_redis += run_redis
            lat_watch += [watcher.added_at[nm] - created[nm].start for nm in names]
            lat_create += [created[nm].done - created[nm].start for nm in names]
            for tenth, steps in enumerate(burst_timeline(created, watcher, added)):
                timeline[tenth] += steps
            probe_added = await added_ms_by_uid(env.redis_url, f"{prefix}:probe-child:events")
            probe_redis.extend(
                probe_added[uid] / 1000 - start
                for uid, start in probe_uids.items()
                if uid in probe_added
            )
            probe_uids.clear()

            # End to end: real workers (Node.js, the fastest) run every job to completion.
            ws = env.workers(f"sub-{r}")
            ws.start("node", ["parent", "child"], prefix, concurrency=50)
            await watcher.wait(
                lambda: watcher.count_finished(names) >= n, 120 + n / 5, f"{n} Flows Completed"
            )
            e2e_wall = max(watcher.finished_at[nm] for nm in names) - first
            cpu_total = proc_cpu_seconds(pid) - cpu0
            env.stop_workers(ws)
            await watcher.stop()

            # Baselines, same trees, same concurrency, same Redis, while the operator idles.
            py = await python_flowproducer(
                env.redis_url,
                f"{prefix}py",
                [tree("parent", "child", 2, f"pb-{i}-0") for i in range(n)],
                conc,
            )
            nd = await node_flowproducer(
                env.redis_url, f"{prefix}nd", n, 2, conc, "parent", "child"
            )
            py_lat += py["latencies_s"]
            node_lat += nd["latencies_s"]
            runs.append(
                {
                    "flows": n,
                    "creates_wall_s": creates_wall,
                    "submitted_wall_s": submit_wall,
                    "keep_pace_ratio": submit_wall / creates_wall,
                    "in_redis_ratio": in_redis_wall / creates_wall,
                    "flows_per_s": n / submit_wall,
                    "create_to_submitted_p50_s": summarize(run_submit)["p50"],
                    "apply_to_redis_p50_s": summarize(run_redis)["p50"],
                    "e2e_wall_s": e2e_wall,
                    "operator_cpu_s_submit": cpu_submit,
                    "event_loop_on_cpu_share": (sched1[0] - sched0[0]) / window,
                    "event_loop_waiting_for_cpu_share": (sched1[1] - sched0[1]) / window,
                    "cpu_percent_by_process_while_submitting": cpu_share,
                    "operator_cpu_s_end_to_end": cpu_total,
                    "cpu_s_per_1000_flows": cpu_total / n * 1000,
                    "python_wall_s": py["wall_s"],
                    "python_flows_per_s": n / py["wall_s"],
                    "node_wall_s": nd["wall_s"],
                    "node_flows_per_s": n / nd["wall_s"],
                    "node_bullmq": nd["bullmq"],
                }
            )
        with_finalizers = await burst_with_delete_policy(env, prm, custom, spaces[-1])
    env.stop_operator()
    del operator

    def over_runs(key: str) -> dict[str, float]:
        return summarize(run[key] for run in runs)

    sub, red, seen = summarize(lat_submit), summarize(lat_redis), summarize(lat_watch)
    psub, pred = summarize(probe_submit), summarize(probe_redis)
    pyl, ndl = summarize(py_lat), summarize(node_lat)
    pace, fps = over_runs("keep_pace_ratio"), over_runs("flows_per_s")
    py_fps, nd_fps = over_runs("python_flows_per_s"), over_runs("node_flows_per_s")
    metrics: dict[str, Any] = {
        "create_to_submitted_s": sub,
        "apply_to_redis_s": red,
        "create_to_watch_event_s": seen,
        "create_request_s": summarize(lat_create),
        "unloaded_create_to_submitted_s": psub,
        "unloaded_apply_to_redis_s": pred,
        "python_add_latency_s": pyl,
        "node_add_latency_s": ndl,
        "keep_pace_ratio": pace,
        "flows_per_s": fps,
        "python_flows_per_s": py_fps,
        "node_flows_per_s": nd_fps,
        "creates_wall_s": over_runs("creates_wall_s"),
        "submitted_wall_s": over_runs("submitted_wall_s"),
        "cpu_s_per_1000_flows": over_runs("cpu_s_per_1000_flows"),
        "event_loop_on_cpu_share": over_runs("event_loop_on_cpu_share"),
        "event_loop_waiting_for_cpu_share": over_runs("event_loop_waiting_for_cpu_share"),
        "floor_creates_alone_wall_s": summarize(f["creates_alone_wall_s"] for f in floors),
        "floor_ideal_operator_ratio": summarize(f["ratio"] for f in floors),
        "delete_policy_burst": with_finalizers,
        "timeline_ms": [timeline_row(steps) for steps in timeline],
    }
    floor_ratio = metrics["floor_ideal_operator_ratio"]["p50"]
    pace_runs = ", ".join(f"{run['keep_pace_ratio']:.2f}" for run in runs)
    in_redis_runs = ", ".join(f"{run['in_redis_ratio']:.2f}" for run in runs)
    rows = [
        row(
            "one at a time: apply → in Redis p50",
            pred["p50"],
            "s",
            target="< 0.1 s",
            met=pred["p50"] < 0.1,
        ),
        row(
            "one at a time: create → Submitted p50",
            psub["p50"],
            "s",
            py=pyl["p50"],
            node=ndl["p50"],
            vs="python",
        ),
        row(
            "burst: create → Submitted p50",
            sub["p50"],
            "s",
            py=pyl["p50"],
            node=ndl["p50"],
            vs="python",
        ),
        row(
            "burst: create → Submitted p99",
            sub["p99"],
            "s",
            py=pyl["p99"],
            node=ndl["p99"],
            vs="python",
        ),
        row("burst: apply → in Redis p50", red["p50"], "s", target="< 0.1 s", met=red["p50"] < 0.1),
        row("burst: apply → in Redis p99", red["p99"], "s"),
        row("floor: burst: create → ADDED event at a bare watcher p50", seen["p50"], "s"),
        row(
            "… of which the create request itself (sent → API server's reply) p50",
            metrics["create_request_s"]["p50"],
            "s",
        ),
        row("… bullflow's apply → in Redis above that floor, p50", red["p50"] - seen["p50"], "s"),
        row(
            f"flows/s sustained (N={n}, median of runs)",
            fps["p50"],
            "flows/s",
            py=py_fps["p50"],
            node=nd_fps["p50"],
            vs="python",
        ),
        row(
            f"all Submitted / creates took, median of runs ({pace_runs})",
            pace["p50"],
            "x",
            target="≤ 1.2x",
            met=pace["p50"] <= 1.2,
        ),
        row(
            f"… every Flow's jobs in Redis / creates took, median of runs ({in_redis_runs})",
            over_runs("in_redis_ratio")["p50"],
            "x",
        ),
        row(
            "floor: same, stand-in operator doing only 1 status write per Flow",
            floor_ratio,
            "x",
        ),
        row(
            "… bullflow above that floor",
            pace["p50"] / floor_ratio,
            "x",
        ),
        row(
            "… operator's event loop meanwhile: on a CPU",
            100 * metrics["event_loop_on_cpu_share"]["p50"],
            "% of the time",
        ),
        row(
            "… operator's event loop: waiting for a CPU",
            100 * metrics["event_loop_waiting_for_cpu_share"]["p50"],
            "% of the time",
        ),
        row(
            "deletionPolicy Delete (the default, + finalizer): all Submitted / creates took",
            with_finalizers["keep_pace_ratio"],
            "x",
        ),
        row(
            "… every finalizer added / creates took",
            with_finalizers["finalizers_ratio"],
            "x",
        ),
        row("… apply → in Redis p50", with_finalizers["apply_to_redis_p50_s"], "s"),
        row("creates took, bullflow running", metrics["creates_wall_s"]["p50"], "s"),
        row(
            "creates took, nothing reacting",
            metrics["floor_creates_alone_wall_s"]["p50"],
            "s",
        ),
    ]
    notes = [
        f"{n} Flows (1 parent + 2 children) per run, {prm.sub_repeats} run(s), {conc} concurrent "
        "creates (kubernetes_asyncio); latencies pooled over runs; ratio = operator / Python "
        "FlowProducer (the baseline's latency is one FlowProducer.add call at the same "
        "concurrency, the operator's is create request sent → status.submittedAt seen).",
        "apply → in Redis: the earliest `added` event id (Redis clock, ms) of the Flow's jobs in "
        "`<prefix>:child:events` minus the client's create time (same host clock). Its floor is "
        "when the API server delivers the Flow's ADDED watch event, the earliest any operator can "
        "act: measured by the bench's own watch (it does nothing but record) in the same burst.",
        "The operator's event loop (its main thread) from the first create to the last "
        "Submitted: time on a CPU and time runnable but queued for one (/proc/<pid>/schedstat). "
        "When the two add up to about 100 %, the loop had work all along and the waiting "
        "share is what the machine's other processes (API server, etcd, the bench) took "
        "from it.",
        "The runs use deletionPolicy Orphan; one more run uses the default, Delete, whose Flows "
        "also get bullflow's finalizer (one more write and watch event per Flow, after the "
        "status).",
        "Timeline of a burst, median per tenth of the creates (in creation order), pooled over "
        "runs, in ms: create request / created → ADDED seen by the bench's watch / → in Redis / "
        "→ Submitted seen: "
        + "; ".join(
            f"{i + 1}: " + "/".join(f"{v:.0f}" for v in row.values())
            for i, row in enumerate(metrics["timeline_ms"])
            if row
        )
        + ".",
        "floor: the same creates with no bullflow, and a stand-in operator with no logic and "
        "no Redis that answers each ADDED watch event with one status write "
        f"({conc} in flight): the API server's share of the ratio on this machine.",
    ]
    return {
        "status": "ok",
        "params": {"flows": n, "repeats": prm.sub_repeats, "concurrency": conc},
        "runs": runs,
        "metrics": metrics,
        "rows": rows,
        "notes": notes,
        "cost": {"cpu_s_per_1000_flows": metrics["cpu_s_per_1000_flows"]},
    }


def apply_to_redis_s(created: dict[str, Any], added_ms: dict[str, int]) -> list[float]:
    """Per Flow: its jobs' earliest `added` event (Redis clock) minus its create request's start."""
    return [added_ms[c.uid] / 1000 - c.start for c in created.values() if c.uid in added_ms]


TENTHS = 10
TIMELINE_STEPS = ("create_request", "to_added_seen", "to_in_redis", "to_submitted_seen")


def burst_timeline(
    created: dict[str, Any], watcher: FlowWatcher, added_ms: dict[str, int]
) -> list[list[tuple[float, float, float, float]]]:
    """Where each Flow of a burst spent its time, grouped by tenth of the creates: the create
    request, created → its ADDED event seen by the bench's watch (the operator's arrives about
    then), → its jobs in Redis, → `Submitted` seen."""
    flows = sorted(created.values(), key=lambda c: c.start)
    out: list[list[tuple[float, float, float, float]]] = [[] for _ in range(TENTHS)]
    for i, c in enumerate(flows):
        if c.uid not in added_ms or c.name not in watcher.submitted_at:
            continue
        seen, redis = watcher.added_at[c.name], added_ms[c.uid] / 1000
        steps = (
            c.done - c.start,
            seen - c.done,
            redis - seen,
            watcher.submitted_at[c.name] - redis,
        )
        out[i * TENTHS // len(flows)].append(steps)
    return out


def timeline_row(steps: list[tuple[float, float, float, float]]) -> dict[str, float]:
    if not steps:
        return {}
    return {
        name: summarize(s[k] for s in steps)["p50"] * 1000 for k, name in enumerate(TIMELINE_STEPS)
    }


async def burst_with_delete_policy(
    env: BenchEnv, prm: Params, custom: Any, ns: str
) -> dict[str, float]:
    """One more burst, the Flows left at the default deletionPolicy (Delete): the same
    submission plus bullflow's finalizer on each Flow."""
    n, prefix = prm.sub_flows, f"bsd{short_id()}"
    watcher = await FlowWatcher(custom, ns).start()
    try:
        names = [f"d{i:05d}" for i in range(n)]
        docs = [
            flow_doc(nm, prefix, tree("parent", "child", 2), deletion_policy=None) for nm in names
        ]
        created = await create_flows(custom, ns, docs, prm.concurrency)
        first = min(c.start for c in created.values())
        creates_wall = max(c.done for c in created.values()) - first
        await watcher.wait(
            lambda: watcher.count_finalized(names) >= n, 120 + n / 5, f"{n} finalizers"
        )
        await watcher.wait(lambda: watcher.count_submitted(names) >= n, 60, f"{n} Submitted")
    finally:
        await watcher.stop()
    added = await added_ms_by_uid(env.redis_url, f"{prefix}:child:events")
    redis = apply_to_redis_s(created, added)
    return {
        "flows": n,
        "creates_wall_s": creates_wall,
        "keep_pace_ratio": (max(watcher.submitted_at[nm] for nm in names) - first) / creates_wall,
        "finalizers_ratio": (max(watcher.finalized_at[nm] for nm in names) - first) / creates_wall,
        "apply_to_redis_p50_s": summarize(redis)["p50"],
    }


async def api_floor(env: BenchEnv, prm: Params) -> list[dict[str, float]]:
    """Scenario 1's reference runs without bullflow (see floor.py), in namespaces no operator
    watches."""
    out = []
    spaces = env.namespaces("floor", 2 * prm.repeats)
    async with kube_clients(env.cluster.kubeconfig) as (custom, _core):
        for r in range(prm.repeats):
            prefix = f"fl{r}{short_id()}"
            docs = [
                flow_doc(f"f{i:05d}", prefix, tree("parent", "child", 2))
                for i in range(prm.sub_flows)
            ]
            alone = await creates_alone(custom, spaces[2 * r], docs, prm.concurrency)
            ideal = await ideal_operator(custom, spaces[2 * r + 1], docs, prm.concurrency)
            out.append({"creates_alone_wall_s": alone, **ideal})
    return out


def resource_cost(sub: dict[str, Any], many: dict[str, Any] | None) -> dict[str, Any]:
    """6: operator CPU-seconds per 1,000 flows end to end (created → Completed)."""
    if sub.get("status") != "ok":
        return {"status": "skipped", "reason": "the submission scenario did not run", "rows": []}
    cost = sub["cost"]["cpu_s_per_1000_flows"]
    rows = [row("CPU-s per 1,000 flows (submission runs, median)", cost["p50"], "CPU-s")]
    metrics: dict[str, Any] = {"submission_cpu_s_per_1000_flows": cost}
    if many and many.get("status") == "ok":
        m = many["metrics"]["cpu_s_per_1000_flows"]
        rows.append(row("CPU-s per 1,000 flows (10k live flows, wave A)", m, "CPU-s"))
        metrics["many_cpu_s_per_1000_flows"] = m
    return {
        "status": "ok",
        "metrics": metrics,
        "rows": rows,
        "runs": [],
        "notes": [
            "Operator process utime+stime (/proc/<pid>/stat) from the first create to the "
            "last Flow seen Completed (submission, tracking, status writes, events), "
            "divided by the number of flows."
        ],
    }


# -- 2. write-back ---------------------------------------------------------------------------


async def write_back(env: BenchEnv, prm: Params) -> dict[str, Any]:
    n = prm.wb_flows
    spaces = env.namespaces("wb", prm.repeats)
    env.start_operator("wb")
    latencies: list[float] = []
    runs: list[dict[str, Any]] = []
    async with kube_clients(env.cluster.kubeconfig) as (custom, _core):
        for r in range(prm.repeats):
            sid = short_id()
            ns, prefix = spaces[r], f"bw{r}{sid}"
            watcher = await FlowWatcher(custom, ns).start()
            names = [f"w{i:04d}" for i in range(n)]
            patches0 = metric_sum(env.metrics(), "bullflow_status_patches_total")
            created = await create_flows(
                custom,
                ns,
                [flow_doc(nm, prefix, tree("wb", "wb", 2)) for nm in names],
                prm.concurrency,
            )
            await watcher.wait(lambda: watcher.count_submitted(names) >= n, 120 + n, "Submitted")
            await asyncio.sleep(1.0)  # let the post-submit refresh settle
            patches1 = metric_sum(env.metrics(), "bullflow_status_patches_total")
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
            patches2 = metric_sum(env.metrics(), "bullflow_status_patches_total")
            modified2 = sum(watcher.modified[nm] for nm in names)
            ids = [(nm, j) for nm in names for j in job_ids(created[nm].uid, 2)]
            finished_on = await hash_field(
                env.redis_url, prefix, [("wb", j) for _, j in ids], "finishedOn"
            )
            run_lat = [
                watcher.job_completed_at[j] - int(finished_on[j] or 0) / 1000
                for _, j in ids
                if finished_on.get(j) and j in watcher.job_completed_at
            ]
            ends = sorted(int(v) for v in finished_on.values() if v)
            rate = (len(ends) - 1) / ((ends[-1] - ends[0]) / 1000) if len(ends) > 1 else math.nan
            latencies += run_lat
            await watcher.stop()
            runs.append(
                {
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
            )
    env.stop_operator()
    lat = summarize(latencies)

    def over_runs(key: str) -> float:
        return summarize(run[key] for run in runs)["p50"]

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
        row("completion rate (measured)", over_runs("completions_per_s"), "jobs/s"),
        row(
            "status patches per flow (3 jobs, whole life)",
            over_runs("status_patches_per_flow"),
            "patches",
        ),
        row(
            "status patches per flow while running",
            over_runs("progress_patches_per_flow"),
            "patches",
        ),
    ]
    return {
        "status": "ok",
        "params": {"flows": n, "rate": prm.wb_rate, "repeats": prm.repeats},
        "runs": runs,
        "metrics": {"latency_s": lat},
        "rows": rows,
        "notes": [
            f"{n} Flows x 3 jobs per run on one queue; one Python worker paced to "
            f"{prm.wb_rate:g} completions/s. Latency: job hash `finishedOn` (the worker's clock) "
            "→ the watch event in which the Flow's status first lists the job `completed`.",
            "Patches from the operator's bullflow_status_patches_total.",
        ],
    }


# -- 3. one large flow -----------------------------------------------------------------------


async def large_flow(env: BenchEnv, prm: Params) -> dict[str, Any]:
    k = prm.large_children
    spaces = env.namespaces("large", prm.large_repeats)
    env.start_operator("large")
    runs: list[dict[str, Any]] = []
    async with kube_clients(env.cluster.kubeconfig) as (custom, _core):
        for r in range(prm.large_repeats):
            sid = short_id()
            ns, prefix = spaces[r], f"bl{r}{sid}"
            py_scripts0 = await script_seconds(env.redis_url)
            py = await python_flowproducer(
                env.redis_url, f"{prefix}py", [tree("lp", "lc", k, "big-0")], 1
            )
            py_scripts_s = await script_seconds(env.redis_url) - py_scripts0
            nd = await node_flowproducer(env.redis_url, f"{prefix}nd", 1, k, 1, "lp", "lc")
            watcher = await FlowWatcher(custom, ns).start()
            submit0 = metric_sum(env.metrics(), "bullflow_flow_submit_seconds_sum")
            scripts0 = await script_seconds(env.redis_url)
            created = await create_flows(
                custom, ns, [flow_doc("large", prefix, tree("lp", "lc", k))], 1
            )
            c = created["large"]
            await watcher.wait(lambda: "large" in watcher.submitted_at, 300, "Submitted")
            submit_s = watcher.submitted_at["large"] - c.start
            redis_s = metric_sum(env.metrics(), "bullflow_flow_submit_seconds_sum") - submit0
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
            root_done = await hash_field(
                env.redis_url, prefix, [("lp", f"bf-{c.uid}-0")], "finishedOn"
            )
            last_job = int(root_done[f"bf-{c.uid}-0"] or 0) / 1000
            await watcher.stop()
            runs.append(
                {
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
            )
    env.stop_operator()
    floor = await large_flow_floor(env, prm)

    def m(key: str) -> dict[str, float]:
        return summarize(run[key] for run in runs)

    sub, in_redis, redis_s, py, nd = (
        m("create_to_submitted_s"),
        m("create_to_in_redis_s"),
        m("operator_redis_submit_s"),
        m("python_add_s"),
        m("node_add_s"),
    )
    scripts, py_scripts = m("operator_scripts_s"), m("python_scripts_s")
    size, lag = m("status_bytes"), m("last_job_to_completed_s")
    baselines: dict[str, Any] = {"py": py["p50"], "node": nd["p50"], "vs": "python"}
    rows = [
        row(
            f"submit {k:,} children (create → every job in Redis)",
            in_redis["p50"],
            "s",
            **baselines,
            target="≤ 1.5x Python FlowProducer",
            met=in_redis["p50"] <= 1.5 * py["p50"],
        ),
        row("… of which the create request", m("create_request_s")["p50"], "s"),
        row("… of which the operator's Redis transaction", redis_s["p50"], "s", **baselines),
        row(
            "… of which Redis running BullMQ's scripts (FlowProducer: the same work)",
            scripts["p50"],
            "s",
            py=py_scripts["p50"],
            vs="python",
        ),
        row(
            "create → Submitted seen in the Flow's status",
            sub["p50"],
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
        row("last job finished → Flow Completed", lag["p50"], "s"),
        row("workers started → Flow Completed", m("workers_to_completed_s")["p50"], "s"),
    ]
    return {
        "status": "ok",
        "params": {"children": k, "repeats": prm.large_repeats},
        "runs": runs,
        "metrics": {
            "create_to_submitted_s": sub,
            "create_to_in_redis_s": in_redis,
            "operator_redis_submit_s": redis_s,
            "operator_scripts_s": scripts,
            "python_scripts_s": py_scripts,
            "python_add_s": py,
            "node_add_s": nd,
            "status_bytes": size,
            "last_job_to_completed_s": lag,
            "floor_create_and_status_s": floor,
        },
        "rows": rows,
        "notes": [
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
        ],
    }


async def large_flow_floor(env: BenchEnv, prm: Params) -> dict[str, float]:
    spaces = env.namespaces("floorlarge", prm.large_repeats)
    walls = []
    async with kube_clients(env.cluster.kubeconfig) as (custom, _core):
        for ns in spaces:
            doc = flow_doc("large", f"fl{short_id()}", tree("lp", "lc", prm.large_children))
            walls.append((await ideal_operator(custom, ns, [doc], 1))["submitted_wall_s"])
    return summarize(walls)


# -- 4. many flows ---------------------------------------------------------------------------


async def many_flows(env: BenchEnv, prm: Params) -> dict[str, Any]:
    n = prm.many_flows
    half = n // 2
    spaces = env.namespaces("many", 1)
    operator = env.start_operator("many")
    sid = short_id()
    ns, prefix = spaces[0], f"bm{sid}"
    exec_log = env.workdir / f"exec-many-{sid}.log"
    result: dict[str, Any] = {}
    async with kube_clients(env.cluster.kubeconfig) as (custom, _core):
        watcher = await FlowWatcher(custom, ns).start()
        async with Sampler(env.operator_pid) as empty:
            await asyncio.sleep(min(3.0, prm.idle_seconds))
        names_a = [f"a{i:05d}" for i in range(half)]
        names_b = [f"b{i:05d}" for i in range(n - half)]
        docs = [flow_doc(nm, prefix, tree("ma-parent", "ma-child", 2)) for nm in names_a]
        docs += [flow_doc(nm, prefix, tree("mb-parent", "mb-child", 2)) for nm in names_b]
        names = names_a + names_b
        snap0, t_snap0 = env.cpu_snapshot(), time.time()
        async with Sampler(env.operator_pid) as submit:
            created = await create_flows(custom, ns, docs, prm.concurrency)
            first = min(c.start for c in created.values())
            creates_wall = max(c.done for c in created.values()) - first
            await watcher.wait(
                lambda: watcher.count_submitted(names) >= n, 300 + n / 5, f"{n} Flows Submitted"
            )
        submit_wall = max(watcher.submitted_at.values()) - first
        cpu_share = env.cpu_share(snap0, env.cpu_snapshot(), time.time() - t_snap0)
        async with Sampler(env.operator_pid) as idle:
            await asyncio.sleep(prm.idle_seconds)

        worker_env = {**PY_ENV, "BULLFLOW_EXEC_LOG": str(exec_log)}
        processor = "bullflow_worker.processors:count_executions"
        ws_a = env.workers("many-a")
        for _ in range(2):
            ws_a.start(
                "python",
                ["ma-parent", "ma-child"],
                prefix,
                concurrency=50,
                processor=processor,
                env=worker_env,
            )
        wave_progress: list[tuple[float, int]] = []
        async with Sampler(env.operator_pid) as wave:
            t_wave = time.time()
            tracker = asyncio.create_task(_progress(watcher, names_a, t_wave, wave_progress))
            await watcher.wait(
                lambda: watcher.count_finished(names_a) >= half, 300 + n / 10, "wave A Completed"
            )
            wave_wall = time.time() - t_wave
            tracker.cancel()
        env.stop_workers(ws_a)

        # Kill the operator, let wave B complete without it, restart, time the catch-up.
        operator.kill9()
        ws_b = env.workers("many-b")
        t_b = time.time()
        for _ in range(2):
            ws_b.start(
                "python",
                ["mb-parent", "mb-child"],
                prefix,
                concurrency=50,
                processor=processor,
                env=worker_env,
            )
        deadline = time.monotonic() + 300 + n / 10
        while await zcard(env.redis_url, f"{prefix}:mb-parent:completed") < len(names_b):
            if time.monotonic() > deadline:
                raise TimeoutError("wave B did not complete in Redis")
            await asyncio.sleep(0.2)
        wave_b_redis = time.time() - t_b
        env.stop_workers(ws_b)
        b_before = watcher.count_finished(names_b)
        t_restart = time.time()
        operator.start()
        env.profile("many-restart")
        restart_progress: list[tuple[float, int]] = []
        async with Sampler(env.operator_pid) as catchup:
            tracker = asyncio.create_task(_progress(watcher, names, t_restart, restart_progress))
            await watcher.wait(
                lambda: watcher.count_finished(names) >= n,
                600 + n / 10,
                "every Flow Completed after the restart",
            )
        caught_up = time.time() - t_restart
        tracker.cancel()
        await watcher.stop()

    executions = collections.Counter(exec_log.read_text().split()) if exec_log.exists() else {}
    duplicates = sum(c - 1 for c in executions.values() if c > 1)
    expected = {j for nm in names for j in job_ids(created[nm].uid, 2)}
    missing = len(expected - set(executions))
    env.stop_operator()
    s_empty, s_submit, s_idle = empty.result(), submit.result(), idle.result()
    s_wave, s_catch = wave.result(), catchup.result()
    rss_peak = max(
        s_submit["rss_mib_peak"],
        s_idle["rss_mib_peak"],
        s_wave["rss_mib_peak"],
        s_catch["rss_mib_peak"],
    )
    cpu_per_1000 = (s_submit["cpu_s"] / n + s_wave["cpu_s"] / half) * 1000
    result = {
        "flows": n,
        "creates_wall_s": creates_wall,
        "submitted_wall_s": submit_wall,
        "flows_per_s": n / submit_wall,
        "cpu_percent_by_process_while_submitting": cpu_share,
        "rss_mib_empty": s_empty["rss_mib_end"],
        "submit": s_submit,
        "idle": s_idle,
        "wave_a": {**s_wave, "flows": half, "wall_s": wave_wall},
        "wave_b_in_redis_s": wave_b_redis,
        "flows_b_finished_before_restart": b_before,
        "catch_up": {**s_catch, "caught_up_s": caught_up},
        "rss_mib_peak": rss_peak,
        "executions": sum(executions.values()),
        "unique_jobs_executed": len(executions),
        "expected_jobs": len(expected),
        "duplicates": duplicates,
        "missing": missing,
        "cpu_s_per_1000_flows": cpu_per_1000,
        "wave_a_progress": wave_progress,
        "restart_progress": restart_progress,
    }
    rows = [
        row(
            f"RSS idle with {n:,} live flows",
            s_idle["rss_mib_mean"],
            "MiB",
            target="< 300 MiB",
            met=s_idle["rss_mib_peak"] < 300,
        ),
        row(
            "RSS peak (submit, idle, wave, catch-up)",
            rss_peak,
            "MiB",
            target="< 300 MiB",
            met=rss_peak < 300,
        ),
        row(f"CPU idle ({prm.idle_seconds:g} s window)", s_idle["cpu_percent"], "% of a core"),
        row(f"CPU during completion wave ({half:,} flows)", s_wave["cpu_percent"], "% of a core"),
        row(f"submit {n:,} flows: flows/s", n / submit_wall, "flows/s"),
        row(f"wave A: {half:,} flows completed in", wave_wall, "s"),
        row("restart → every Flow Completed", caught_up, "s", target="< 60 s", met=caught_up < 60),
        row(
            "duplicate job executions",
            float(duplicates),
            "jobs",
            target="0",
            met=duplicates == 0 and missing == 0,
        ),
    ]
    return {
        "status": "ok",
        "params": {"flows": n, "idle_seconds": prm.idle_seconds, "repeats": 1},
        "runs": [result],
        "metrics": {
            "cpu_s_per_1000_flows": cpu_per_1000,
            **{k: v for k, v in result.items() if isinstance(v, int | float)},
        },
        "rows": rows,
        "notes": [
            f"{n:,} Flows (3 jobs each) live at once, one run. Wave A: half of them completed "
            "by two Python workers (count_executions, concurrency 50 each). Then the operator "
            "is SIGKILLed, wave B completes in Redis without it, the operator restarts; "
            "caught-up = restart → every Flow seen Completed.",
            f"Executions logged by the workers: {sum(executions.values())} for "
            f"{len(expected)} jobs ({duplicates} duplicate, {missing} missing).",
            "RSS = VmRSS of the operator process; CPU = utime+stime over the window.",
        ],
    }


async def _progress(
    watcher: FlowWatcher, names: list[str], t0: float, out: list[tuple[float, int]]
) -> None:
    """(seconds since t0, Flows finished) every second: shows whether the status follows the
    jobs (events) or jumps at the resync."""
    while True:
        out.append((round(time.time() - t0, 1), watcher.count_finished(names)))
        await asyncio.sleep(1.0)


# -- 5. autoscaling --------------------------------------------------------------------------

KEDA = {
    "polling_interval_s": 30,
    "hpa_sync_period_s": 15,
    "cooldown_period_s": 300,
    "hpa_scale_down_stabilization_s": 300,
}


def autoscaling(env: BenchEnv, prm: Params) -> dict[str, Any]:
    """Burst of jobs into an empty queue served by a WorkerPool at 0 replicas (sync code)."""
    try:
        from tests.e2e.workerpool_support import (
            Pools,
            add_jobs,
            pool_doc,
            read_exec_log,
            worker_supervisor,
        )
    except ImportError as err:
        return {"status": "skipped", "reason": f"WorkerPool support missing: {err}", "rows": []}
    spaces = env.namespaces("as", prm.as_repeats)
    env.start_operator("as")
    api = env.cluster.api_client()
    runs: list[dict[str, Any]] = []
    try:
        for r in range(prm.as_repeats):
            sid = short_id()
            ns, prefix = spaces[r], f"ba{r}{sid}"
            pools = Pools(api, lambda *a, **k: _kubectl(env, *a, **k), ns)
            exec_log = env.workdir / f"exec-as-{sid}.log"
            pools.apply(
                pool_doc(
                    "burst",
                    ["burst"],
                    prefix,
                    worker={
                        "processor": "tests.e2e.workerpool_processors:sleep_and_count",
                        "concurrency": 10,
                        "terminationGracePeriodSeconds": 30,
                    },
                    scaling={
                        "minReplicas": 0,
                        "maxReplicas": prm.as_max_replicas,
                        "jobsPerReplica": prm.as_jobs_per_replica,
                        "pollIntervalSeconds": prm.as_poll_seconds,
                        "scaleDownStabilizationSeconds": prm.as_down_stabilization_seconds,
                    },
                )
            )
            dep = "burst-workers"
            pools.wait_for("Deployment at 0", lambda: pools.replicas(dep) == 0, 60)
            target = min(prm.as_max_replicas, math.ceil(prm.as_jobs / prm.as_jobs_per_replica))

            def ready(dep: str = dep, pools: Any = pools) -> int:
                d = pools.apps.read_namespaced_deployment(dep, pools.namespace)
                return int(d.status.ready_replicas or 0)

            with worker_supervisor(
                env.cluster.kubeconfig,
                ns,
                "bullflow.io/workerpool=burst",
                {"BULLFLOW_REDIS_URL": env.redis_url, "BULLFLOW_EXEC_LOG": str(exec_log)},
                env.workdir / "logs" / f"as-{r}",
            ) as sup:
                jobs = [(f"j{i}", {"seconds": prm.as_job_seconds}) for i in range(prm.as_jobs)]
                t0 = time.monotonic()
                add_jobs(env.redis_url, prefix, "burst", jobs)
                t_added = time.monotonic() - t0
                pools.wait_for(
                    "replicas > 0", lambda: (pools.replicas(dep) or 0) > 0, 120, every=0.05
                )
                t_desired = time.monotonic() - t0
                pools.wait_for(
                    "replicas at target", lambda: pools.replicas(dep) == target, 120, every=0.05
                )
                t_desired_target = time.monotonic() - t0
                pools.wait_for("ready at target", lambda: ready() >= target, 120, every=0.05)
                t_ready = time.monotonic() - t0
                sup.wait_for_running(target, timeout=60)
                t_running = time.monotonic() - t0
                pools.wait_for(
                    "all jobs executed",
                    lambda: len(read_exec_log(exec_log)) >= prm.as_jobs,
                    600,
                    every=0.1,
                )
                t_drained = time.monotonic() - t0
                pools.wait_for(
                    "replicas back to 0",
                    lambda: pools.replicas(dep) == 0,
                    600 + prm.as_down_stabilization_seconds,
                    every=0.1,
                )
                t_zero = time.monotonic() - t0
            executed = collections.Counter(read_exec_log(exec_log))
            runs.append(
                {
                    "jobs": prm.as_jobs,
                    "target_replicas": target,
                    "add_s": t_added,
                    "to_desired_change_s": t_desired,
                    "to_desired_target_s": t_desired_target,
                    "to_ready_target_s": t_ready,
                    "to_workers_running_s": t_running,
                    "drained_s": t_drained,
                    "back_to_zero_s": t_zero,
                    "zero_after_drained_s": t_zero - t_drained,
                    "duplicates": sum(c - 1 for c in executed.values() if c > 1),
                }
            )
    finally:
        api.close()
        env.stop_operator()

    def m(key: str) -> dict[str, float]:
        return summarize(run[key] for run in runs)

    keda_first = KEDA["polling_interval_s"]
    keda_target = KEDA["polling_interval_s"] + KEDA["hpa_sync_period_s"]
    rows = [
        row(
            "burst → desired replicas change",
            m("to_desired_change_s")["p50"],
            "s",
            target=f"KEDA default: up to {keda_first} s (avg ~{keda_first // 2} s)",
        ),
        row(
            "burst → desired at target",
            m("to_desired_target_s")["p50"],
            "s",
            target=f"KEDA+HPA: up to ~{keda_target} s",
        ),
        row("burst → Ready replicas at target", m("to_ready_target_s")["p50"], "s"),
        row(
            "drained → back to 0",
            m("zero_after_drained_s")["p50"],
            "s",
            target=f"KEDA cooldown: {KEDA['cooldown_period_s']} s after the last activity",
        ),
    ]
    return {
        "status": "ok",
        "params": {
            k: getattr(prm, k)
            for k in (
                "as_jobs",
                "as_job_seconds",
                "as_max_replicas",
                "as_jobs_per_replica",
                "as_poll_seconds",
                "as_down_stabilization_seconds",
                "as_repeats",
            )
        },
        "runs": runs,
        "metrics": {
            k: m(k)
            for k in (
                "to_desired_change_s",
                "to_desired_target_s",
                "to_ready_target_s",
                "zero_after_drained_s",
            )
        },
        "keda_defaults": KEDA,
        "rows": rows,
        "notes": [
            f"{prm.as_jobs} jobs ({prm.as_job_seconds:g} s each) added at once to an empty queue;"
            f" WorkerPool min 0, max {prm.as_max_replicas}, {prm.as_jobs_per_replica} jobs per "
            f"replica, poll {prm.as_poll_seconds} s, scale-down stabilization "
            f"{prm.as_down_stabilization_seconds} s. Pods are kwok's; one real bullflow-worker "
            "runs per Ready pod (tests/harness/pods.py).",
            "KEDA figures are its documented defaults (pollingInterval 30 s, cooldownPeriod "
            "300 s, HPA --horizontal-pod-autoscaler-sync-period 15 s, HPA scale-down "
            "stabilization 300 s), not measurements.",
        ],
    }


def _kubectl(env: BenchEnv, *args: str, input: str | None = None, **_: Any) -> str:
    return env.kubectl(*args, input=input)
