"""4. Many flows: `many_flows` Flows (10,000 by default, 3 jobs each) live at once, one run.

Measured: the operator's RSS (VmRSS) empty, submitting, idle over `idle_seconds` and during a
completion wave (target: peak < 300 MiB); its CPU (utime+stime) idle and during the wave; wave
A: half the Flows completed by two Python workers; then the operator is SIGKILLed, wave B
completes in Redis without it, and it restarts: restart → every Flow Completed (target < 60 s),
with the Flows finished per second meanwhile (does the status follow the jobs' events or jump at
the resync?); every execution the workers logged (count_executions): duplicates and missing
(target 0). No baseline: BullMQ keeps no per-flow state to hold or catch up."""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .common import PY_ENV, create_flows, flow_doc, job_ids, short_id, tree, zcard
from .env import BenchEnv, FlowWatcher, Sampler, kube_clients
from .params import Params
from .rows import row

PROCESSOR = "bullflow_worker.processors:count_executions"
Progress = list[tuple[float, int]]  # (seconds since the phase began, Flows finished)


@dataclass
class Run:
    """The one run's Flows and what each phase measured."""

    n: int
    prefix: str
    exec_log: Path
    names_a: list[str] = field(init=False)  # completed with the operator running
    names_b: list[str] = field(init=False)  # completed while it is down
    created: dict[str, Any] = field(default_factory=dict)
    samplers: dict[str, Sampler] = field(default_factory=dict)  # by phase
    numbers: dict[str, Any] = field(default_factory=dict)  # by phase, see the phases
    wave_progress: Progress = field(default_factory=list)
    restart_progress: Progress = field(default_factory=list)

    def __post_init__(self) -> None:
        half = self.n // 2
        self.names_a = [f"a{i:05d}" for i in range(half)]
        self.names_b = [f"b{i:05d}" for i in range(self.n - half)]

    @property
    def names(self) -> list[str]:
        return self.names_a + self.names_b


async def many_flows(env: BenchEnv, prm: Params) -> dict[str, Any]:
    """Scenario 4: submit and idle, wave A, wave B without the operator, its catch-up."""
    spaces = env.namespaces("many", 1)
    operator = env.start_operator("many")
    sid = short_id()
    ns, run = spaces[0], Run(prm.many_flows, f"bm{sid}", env.workdir / f"exec-many-{sid}.log")
    async with kube_clients(env.cluster.kubeconfig) as (custom, _core):
        watcher = await FlowWatcher(custom, ns).start()
        await submit_and_idle(env, prm, custom, ns, watcher, run)
        await wave_a(env, watcher, run)
        operator.kill9()
        await wave_b_without_operator(env, watcher, run)
        await restart_and_catch_up(env, operator, watcher, run)
        await watcher.stop()
    log = run.exec_log
    executions = collections.Counter(log.read_text().split()) if log.exists() else {}
    env.stop_operator()
    return summary(prm, run, executions)


# -- measure ---------------------------------------------------------------------------------


def start_two_workers(ws: Any, queues: list[str], run: Run) -> None:
    """Two Python workers on `queues` (concurrency 50 each), logging every execution."""
    for _ in range(2):
        ws.start(
            "python",
            queues,
            run.prefix,
            concurrency=50,
            processor=PROCESSOR,
            env={**PY_ENV, "BULLFLOW_EXEC_LOG": str(run.exec_log)},
        )


async def submit_and_idle(
    env: BenchEnv, prm: Params, custom: Any, ns: str, watcher: FlowWatcher, run: Run
) -> None:
    """RSS with no Flow, then every Flow created at once until Submitted, then idle."""
    n, prefix = run.n, run.prefix
    async with Sampler(env.operator_pid) as run.samplers["empty"]:
        await asyncio.sleep(min(3.0, prm.idle_seconds))
    docs = [flow_doc(nm, prefix, tree("ma-parent", "ma-child", 2)) for nm in run.names_a]
    docs += [flow_doc(nm, prefix, tree("mb-parent", "mb-child", 2)) for nm in run.names_b]
    names = run.names
    snap0, t_snap0 = env.cpu_snapshot(), time.time()
    async with Sampler(env.operator_pid) as run.samplers["submit"]:
        run.created = await create_flows(custom, ns, docs, prm.concurrency)
        first = min(c.start for c in run.created.values())
        run.numbers["creates_wall"] = max(c.done for c in run.created.values()) - first
        await watcher.wait(
            lambda: watcher.count_submitted(names) >= n, 300 + n / 5, f"{n} Flows Submitted"
        )
    run.numbers["submit_wall"] = max(watcher.submitted_at.values()) - first
    run.numbers["cpu_share"] = env.cpu_share(snap0, env.cpu_snapshot(), time.time() - t_snap0)
    async with Sampler(env.operator_pid) as run.samplers["idle"]:
        await asyncio.sleep(prm.idle_seconds)


async def wave_a(env: BenchEnv, watcher: FlowWatcher, run: Run) -> None:
    """Two Python workers complete the first half of the Flows; the operator follows."""
    half, names_a = len(run.names_a), run.names_a
    ws_a = env.workers("many-a")
    start_two_workers(ws_a, ["ma-parent", "ma-child"], run)
    async with Sampler(env.operator_pid) as run.samplers["wave"]:
        t_wave = time.time()
        tracker = asyncio.create_task(progress(watcher, names_a, t_wave, run.wave_progress))
        await watcher.wait(
            lambda: watcher.count_finished(names_a) >= half, 300 + run.n / 10, "wave A Completed"
        )
        run.numbers["wave_wall"] = time.time() - t_wave
        tracker.cancel()
    env.stop_workers(ws_a)


async def wave_b_without_operator(env: BenchEnv, watcher: FlowWatcher, run: Run) -> None:
    """With the operator killed, two Python workers complete the other half in Redis."""
    ws_b = env.workers("many-b")
    t_b = time.time()
    start_two_workers(ws_b, ["mb-parent", "mb-child"], run)
    deadline = time.monotonic() + 300 + run.n / 10
    while await zcard(env.redis_url, f"{run.prefix}:mb-parent:completed") < len(run.names_b):
        if time.monotonic() > deadline:
            raise TimeoutError("wave B did not complete in Redis")
        await asyncio.sleep(0.2)
    run.numbers["wave_b_redis"] = time.time() - t_b
    env.stop_workers(ws_b)
    run.numbers["b_before"] = watcher.count_finished(run.names_b)


async def restart_and_catch_up(
    env: BenchEnv, operator: Any, watcher: FlowWatcher, run: Run
) -> None:
    """The operator restarts: time until every Flow is seen Completed."""
    n, names = run.n, run.names
    t_restart = time.time()
    operator.start()
    env.profile("many-restart")
    async with Sampler(env.operator_pid) as run.samplers["catchup"]:
        tracker = asyncio.create_task(progress(watcher, names, t_restart, run.restart_progress))
        await watcher.wait(
            lambda: watcher.count_finished(names) >= n,
            600 + n / 10,
            "every Flow Completed after the restart",
        )
    run.numbers["caught_up"] = time.time() - t_restart
    tracker.cancel()


async def progress(watcher: FlowWatcher, names: list[str], t0: float, out: Progress) -> None:
    """(seconds since t0, Flows finished) every second: shows whether the status follows the
    jobs (events) or jumps at the resync."""
    while True:
        out.append((round(time.time() - t0, 1), watcher.count_finished(names)))
        await asyncio.sleep(1.0)


# -- summarise -------------------------------------------------------------------------------


def summary(prm: Params, run: Run, executions: dict[str, int]) -> dict[str, Any]:
    n, half, names = run.n, len(run.names_a), run.names
    duplicates = sum(c - 1 for c in executions.values() if c > 1)
    expected = {j for nm in names for j in job_ids(run.created[nm].uid, 2)}
    missing = len(expected - set(executions))
    s = {phase: sampler.result() for phase, sampler in run.samplers.items()}
    rss_peak = max(s[p]["rss_mib_peak"] for p in ("submit", "idle", "wave", "catchup"))
    cpu_per_1000 = (s["submit"]["cpu_s"] / n + s["wave"]["cpu_s"] / half) * 1000
    num = run.numbers
    result = {
        "flows": n,
        "creates_wall_s": num["creates_wall"],
        "submitted_wall_s": num["submit_wall"],
        "flows_per_s": n / num["submit_wall"],
        "cpu_percent_by_process_while_submitting": num["cpu_share"],
        "rss_mib_empty": s["empty"]["rss_mib_end"],
        "submit": s["submit"],
        "idle": s["idle"],
        "wave_a": {**s["wave"], "flows": half, "wall_s": num["wave_wall"]},
        "wave_b_in_redis_s": num["wave_b_redis"],
        "flows_b_finished_before_restart": num["b_before"],
        "catch_up": {**s["catchup"], "caught_up_s": num["caught_up"]},
        "rss_mib_peak": rss_peak,
        "executions": sum(executions.values()),
        "unique_jobs_executed": len(executions),
        "expected_jobs": len(expected),
        "duplicates": duplicates,
        "missing": missing,
        "cpu_s_per_1000_flows": cpu_per_1000,
        "wave_a_progress": run.wave_progress,
        "restart_progress": run.restart_progress,
    }
    return {
        "status": "ok",
        "params": {"flows": n, "idle_seconds": prm.idle_seconds, "repeats": 1},
        "runs": [result],
        "metrics": {
            "cpu_s_per_1000_flows": cpu_per_1000,
            **{k: v for k, v in result.items() if isinstance(v, int | float)},
        },
        "rows": summary_rows(prm, result),
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


def summary_rows(prm: Params, result: dict[str, Any]) -> list[dict[str, Any]]:
    n, half = result["flows"], result["wave_a"]["flows"]
    idle, rss_peak = result["idle"], result["rss_mib_peak"]
    caught_up, duplicates = result["catch_up"]["caught_up_s"], result["duplicates"]
    return [
        row(
            f"RSS idle with {n:,} live flows",
            idle["rss_mib_mean"],
            "MiB",
            target="< 300 MiB",
            met=idle["rss_mib_peak"] < 300,
        ),
        row(
            "RSS peak (submit, idle, wave, catch-up)",
            rss_peak,
            "MiB",
            target="< 300 MiB",
            met=rss_peak < 300,
        ),
        row(f"CPU idle ({prm.idle_seconds:g} s window)", idle["cpu_percent"], "% of a core"),
        row(
            f"CPU during completion wave ({half:,} flows)",
            result["wave_a"]["cpu_percent"],
            "% of a core",
        ),
        row(f"submit {n:,} flows: flows/s", result["flows_per_s"], "flows/s"),
        row(f"wave A: {half:,} flows completed in", result["wave_a"]["wall_s"], "s"),
        row("restart → every Flow Completed", caught_up, "s", target="< 60 s", met=caught_up < 60),
        row(
            "duplicate job executions",
            float(duplicates),
            "jobs",
            target="0",
            met=duplicates == 0 and result["missing"] == 0,
        ),
    ]
