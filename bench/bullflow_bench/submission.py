"""1. Submission: how fast Flows become BullMQ jobs, one at a time and in a burst.

Each run creates `probe_flows` Flows (1 parent + 2 children) one at a time (unloaded latency),
then `sub_flows` at once (`concurrency` creates in flight), then lets Node.js workers run every
job. Measured: create → `status.submittedAt` seen on a watch and apply → in Redis (the jobs'
earliest `added` event), p50/p99; flows/s; the keep-pace ratio (all Submitted / creates took);
the operator's CPU and its event loop's time on a CPU and waiting for one; where each Flow of
the burst spent its time (a timeline by tenth of the creates). One more burst uses the default
deletionPolicy (Delete, + bullflow's finalizer).

Baselines: Python bullmq and Node.js bullmq `FlowProducer.add` of the same trees at the same
concurrency, on the same Redis, while the operator idles. Floors: the creates with nothing
reacting and a stand-in operator that only writes one status per Flow (floor.py, `api_floor`),
and the ADDED watch event at the bench's own watcher, which does nothing but record.

The rows (each against its baseline, target or floor) and notes: submission_report.py."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from .common import (
    added_ms_by_uid,
    create_flows,
    flow_doc,
    node_flowproducer,
    python_flowproducer,
    short_id,
    tree,
)
from .env import (
    BenchEnv,
    FlowWatcher,
    kube_clients,
    main_thread_schedstat,
    proc_cpu_seconds,
)
from .floor import creates_alone, ideal_operator
from .params import Params
from .stats import over_runs, summarize
from .submission_report import delete_policy_rows, latency_rows, notes, pace_rows

TENTHS = 10
TIMELINE_STEPS = ("create_request", "to_added_seen", "to_in_redis", "to_submitted_seen")
Steps = tuple[float, float, float, float]  # one Flow's time in each of TIMELINE_STEPS


@dataclass
class Pooled:
    """Latency samples pooled over the runs (seconds)."""

    submit: list[float] = field(default_factory=list)  # burst: create → Submitted seen
    redis: list[float] = field(default_factory=list)  # burst: apply → in Redis
    watch: list[float] = field(default_factory=list)  # burst: create → ADDED seen (the floor)
    create: list[float] = field(default_factory=list)  # burst: the create request
    timeline: list[list[Steps]] = field(default_factory=lambda: [[] for _ in range(TENTHS)])
    python: list[float] = field(default_factory=list)  # one FlowProducer.add, Python
    node: list[float] = field(default_factory=list)  # one FlowProducer.add, Node.js
    probe_submit: list[float] = field(default_factory=list)  # one at a time: → Submitted
    probe_redis: list[float] = field(default_factory=list)  # one at a time: → in Redis


@dataclass
class Burst:
    """One run's burst: what its run record and the end-to-end phase need."""

    names: list[str]
    pid: int
    first: float  # the first create request sent
    cpu0: float  # the operator's CPU-seconds before the first create
    creates_wall: float
    submit_wall: float
    in_redis_wall: float
    cpu_submit: float
    on_cpu_share: float
    waiting_share: float
    cpu_share: dict[str, Any]
    submit_p50: float
    redis_p50: float


async def submission(env: BenchEnv, prm: Params) -> dict[str, Any]:
    """Scenario 1: the floors (no operator), `sub_repeats` runs, the Delete-policy burst."""
    spaces = env.namespaces("sub", prm.sub_repeats + 1)  # the last: deletionPolicy Delete
    floors = await api_floor(env, prm)
    operator = env.start_operator("sub")
    pooled = Pooled()
    runs: list[dict[str, Any]] = []
    async with kube_clients(env.cluster.kubeconfig) as (custom, _core):
        for r in range(prm.sub_repeats):
            prefix = f"bs{r}{short_id()}"
            runs.append(await one_run(env, prm, custom, spaces[r], prefix, r, pooled))
        with_finalizers = await burst_with_delete_policy(env, prm, custom, spaces[-1])
    env.stop_operator()
    del operator
    metrics = summary_metrics(runs, pooled, floors, with_finalizers)
    return {
        "status": "ok",
        "params": {
            "flows": prm.sub_flows,
            "repeats": prm.sub_repeats,
            "concurrency": prm.concurrency,
        },
        "runs": runs,
        "metrics": metrics,
        "rows": [
            *latency_rows(metrics),
            *pace_rows(prm.sub_flows, runs, metrics),
            *delete_policy_rows(metrics),
        ],
        "notes": notes(prm, metrics),
        "cost": {"cpu_s_per_1000_flows": metrics["cpu_s_per_1000_flows"]},
    }


# -- measure ---------------------------------------------------------------------------------


async def one_run(
    env: BenchEnv, prm: Params, custom: Any, ns: str, prefix: str, r: int, pooled: Pooled
) -> dict[str, Any]:
    """Flows one at a time, the burst, workers running every job, then the baselines."""
    n = prm.sub_flows
    watcher = await FlowWatcher(custom, ns).start()
    probe_uids = await one_at_a_time(prm, custom, ns, prefix, watcher, pooled)
    burst = await measure_burst(env, prm, custom, ns, prefix, watcher, pooled)
    probe_added = await added_ms_by_uid(env.redis_url, f"{prefix}:probe-child:events")
    pooled.probe_redis.extend(
        probe_added[uid] / 1000 - start for uid, start in probe_uids.items() if uid in probe_added
    )
    e2e_wall, cpu_total = await end_to_end(env, prefix, r, watcher, burst)
    await watcher.stop()
    py, nd = await baselines(env, prm, prefix, pooled)
    return {
        "flows": n,
        "creates_wall_s": burst.creates_wall,
        "submitted_wall_s": burst.submit_wall,
        "keep_pace_ratio": burst.submit_wall / burst.creates_wall,
        "in_redis_ratio": burst.in_redis_wall / burst.creates_wall,
        "flows_per_s": n / burst.submit_wall,
        "create_to_submitted_p50_s": burst.submit_p50,
        "apply_to_redis_p50_s": burst.redis_p50,
        "e2e_wall_s": e2e_wall,
        "operator_cpu_s_submit": burst.cpu_submit,
        "event_loop_on_cpu_share": burst.on_cpu_share,
        "event_loop_waiting_for_cpu_share": burst.waiting_share,
        "cpu_percent_by_process_while_submitting": burst.cpu_share,
        "operator_cpu_s_end_to_end": cpu_total,
        "cpu_s_per_1000_flows": cpu_total / n * 1000,
        "python_wall_s": py["wall_s"],
        "python_flows_per_s": n / py["wall_s"],
        "node_wall_s": nd["wall_s"],
        "node_flows_per_s": n / nd["wall_s"],
        "node_bullmq": nd["bullmq"],
    }


async def one_at_a_time(
    prm: Params, custom: Any, ns: str, prefix: str, watcher: FlowWatcher, pooled: Pooled
) -> dict[str, float]:
    """Unloaded latency: Flows created one at a time, each awaited until Submitted. Returns
    their uids → create request's start (their jobs' `added` events are read later)."""
    probe_uids: dict[str, float] = {}
    for i in range(prm.probe_flows):
        name = f"probe{i:03d}"
        one = await create_flows(
            custom, ns, [flow_doc(name, prefix, tree("probe", "probe-child", 2))], 1
        )
        await watcher.wait(lambda: name in watcher.submitted_at, 60, f"{name} Submitted")  # noqa: B023
        pooled.probe_submit.append(watcher.submitted_at[name] - one[name].start)
        probe_uids[one[name].uid] = one[name].start
        await asyncio.sleep(0.1)
    return probe_uids


async def measure_burst(
    env: BenchEnv,
    prm: Params,
    custom: Any,
    ns: str,
    prefix: str,
    watcher: FlowWatcher,
    pooled: Pooled,
) -> Burst:
    """`sub_flows` Flows created at once: until every one is Submitted, the operator's CPU, its
    event loop's schedstat and every process's CPU share; then when their jobs reached Redis."""
    n = prm.sub_flows
    names = [f"f{i:05d}" for i in range(n)]
    docs = [flow_doc(nm, prefix, tree("parent", "child", 2)) for nm in names]
    pid = env.operator_pid
    cpu0 = proc_cpu_seconds(pid)
    sched0 = main_thread_schedstat(pid)
    snap0, t_snap0 = env.cpu_snapshot(), time.time()
    created = await create_flows(custom, ns, docs, prm.concurrency)
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
    pooled.submit += run_submit
    pooled.redis += run_redis
    pooled.watch += [watcher.added_at[nm] - created[nm].start for nm in names]
    pooled.create += [created[nm].done - created[nm].start for nm in names]
    for tenth, steps in enumerate(burst_timeline(created, watcher, added)):
        pooled.timeline[tenth] += steps
    return Burst(
        names=names,
        pid=pid,
        first=first,
        cpu0=cpu0,
        creates_wall=creates_wall,
        submit_wall=submit_wall,
        in_redis_wall=max(added[created[nm].uid] for nm in names) / 1000 - first,
        cpu_submit=cpu_submit,
        on_cpu_share=(sched1[0] - sched0[0]) / window,
        waiting_share=(sched1[1] - sched0[1]) / window,
        cpu_share=cpu_share,
        submit_p50=summarize(run_submit)["p50"],
        redis_p50=summarize(run_redis)["p50"],
    )


async def end_to_end(
    env: BenchEnv, prefix: str, r: int, watcher: FlowWatcher, burst: Burst
) -> tuple[float, float]:
    """Real workers (Node.js, the fastest) run every job of the burst to completion. Returns
    first create → last Flow Completed, and the operator's CPU-seconds since the first create."""
    names, n = burst.names, len(burst.names)
    ws = env.workers(f"sub-{r}")
    ws.start("node", ["parent", "child"], prefix, concurrency=50)
    await watcher.wait(
        lambda: watcher.count_finished(names) >= n, 120 + n / 5, f"{n} Flows Completed"
    )
    e2e_wall = max(watcher.finished_at[nm] for nm in names) - burst.first
    cpu_total = proc_cpu_seconds(burst.pid) - burst.cpu0
    env.stop_workers(ws)
    return e2e_wall, cpu_total


async def baselines(
    env: BenchEnv, prm: Params, prefix: str, pooled: Pooled
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Python and Node.js FlowProducer: same trees, same concurrency, same Redis, while the
    operator idles."""
    n, conc = prm.sub_flows, prm.concurrency
    py = await python_flowproducer(
        env.redis_url,
        f"{prefix}py",
        [tree("parent", "child", 2, f"pb-{i}-0") for i in range(n)],
        conc,
    )
    nd = await node_flowproducer(env.redis_url, f"{prefix}nd", n, 2, conc, "parent", "child")
    pooled.python += py["latencies_s"]
    pooled.node += nd["latencies_s"]
    return py, nd


def apply_to_redis_s(created: dict[str, Any], added_ms: dict[str, int]) -> list[float]:
    """Per Flow: its jobs' earliest `added` event (Redis clock) minus its create request's start."""
    return [added_ms[c.uid] / 1000 - c.start for c in created.values() if c.uid in added_ms]


def burst_timeline(
    created: dict[str, Any], watcher: FlowWatcher, added_ms: dict[str, int]
) -> list[list[Steps]]:
    """Where each Flow of a burst spent its time, grouped by tenth of the creates: the create
    request, created → its ADDED event seen by the bench's watch (the operator's arrives about
    then), → its jobs in Redis, → `Submitted` seen."""
    flows = sorted(created.values(), key=lambda c: c.start)
    out: list[list[Steps]] = [[] for _ in range(TENTHS)]
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


def timeline_row(steps: list[Steps]) -> dict[str, float]:
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
    """The floors' runs without bullflow (see floor.py), in namespaces no operator watches."""
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


# -- summarise (the rows and notes: submission_report.py) -------------------------------------


def summary_metrics(
    runs: list[dict[str, Any]],
    pooled: Pooled,
    floors: list[dict[str, float]],
    with_finalizers: dict[str, float],
) -> dict[str, Any]:
    """Latencies pooled over the runs; rates and ratios summarised over the runs."""
    return {
        "create_to_submitted_s": summarize(pooled.submit),
        "apply_to_redis_s": summarize(pooled.redis),
        "create_to_watch_event_s": summarize(pooled.watch),
        "create_request_s": summarize(pooled.create),
        "unloaded_create_to_submitted_s": summarize(pooled.probe_submit),
        "unloaded_apply_to_redis_s": summarize(pooled.probe_redis),
        "python_add_latency_s": summarize(pooled.python),
        "node_add_latency_s": summarize(pooled.node),
        "keep_pace_ratio": over_runs(runs, "keep_pace_ratio"),
        "flows_per_s": over_runs(runs, "flows_per_s"),
        "python_flows_per_s": over_runs(runs, "python_flows_per_s"),
        "node_flows_per_s": over_runs(runs, "node_flows_per_s"),
        "creates_wall_s": over_runs(runs, "creates_wall_s"),
        "submitted_wall_s": over_runs(runs, "submitted_wall_s"),
        "cpu_s_per_1000_flows": over_runs(runs, "cpu_s_per_1000_flows"),
        "event_loop_on_cpu_share": over_runs(runs, "event_loop_on_cpu_share"),
        "event_loop_waiting_for_cpu_share": over_runs(runs, "event_loop_waiting_for_cpu_share"),
        "floor_creates_alone_wall_s": summarize(f["creates_alone_wall_s"] for f in floors),
        "floor_ideal_operator_ratio": summarize(f["ratio"] for f in floors),
        "delete_policy_burst": with_finalizers,
        "timeline_ms": [timeline_row(steps) for steps in pooled.timeline],
    }
