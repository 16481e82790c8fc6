"""The submission scenario's report (submission.py measures): its rows, each against its
baseline (the Python and Node.js FlowProducer), target or floor, and its notes."""

from __future__ import annotations

from typing import Any

from .params import Params
from .rows import row
from .stats import over_runs


def latency_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """One at a time and in the burst: create → Submitted against the FlowProducer baselines,
    apply → in Redis against its target and its floor (the ADDED event at a bare watcher)."""
    pred, psub = metrics["unloaded_apply_to_redis_s"], metrics["unloaded_create_to_submitted_s"]
    sub, red = metrics["create_to_submitted_s"], metrics["apply_to_redis_s"]
    seen = metrics["create_to_watch_event_s"]
    pyl, ndl = metrics["python_add_latency_s"], metrics["node_add_latency_s"]
    return [
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
    ]


def pace_rows(n: int, runs: list[dict[str, Any]], metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Flows/s against the baselines; the keep-pace ratio against its target and its floor (the
    stand-in operator); the operator's event loop meanwhile."""
    fps, pace = metrics["flows_per_s"], metrics["keep_pace_ratio"]
    floor_ratio = metrics["floor_ideal_operator_ratio"]["p50"]
    pace_runs = ", ".join(f"{run['keep_pace_ratio']:.2f}" for run in runs)
    in_redis_runs = ", ".join(f"{run['in_redis_ratio']:.2f}" for run in runs)
    return [
        row(
            f"flows/s sustained (N={n}, median of runs)",
            fps["p50"],
            "flows/s",
            py=metrics["python_flows_per_s"]["p50"],
            node=metrics["node_flows_per_s"]["p50"],
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
            over_runs(runs, "in_redis_ratio")["p50"],
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
    ]


def delete_policy_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """The burst at deletionPolicy Delete (+ finalizer); how long the creates took with bullflow
    running and with nothing reacting."""
    with_finalizers = metrics["delete_policy_burst"]
    return [
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


def notes(prm: Params, metrics: dict[str, Any]) -> list[str]:
    n, conc = prm.sub_flows, prm.concurrency
    return [
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
            f"{i + 1}: " + "/".join(f"{v:.0f}" for v in tenth.values())
            for i, tenth in enumerate(metrics["timeline_ms"])
            if tenth
        )
        + ".",
        "floor: the same creates with no bullflow, and a stand-in operator with no logic and "
        "no Redis that answers each ADDED watch event with one status write "
        f"({conc} in flight): the API server's share of the ratio on this machine.",
    ]
