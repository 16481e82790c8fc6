"""The chaos run: one control plane, one Redis, one operator and one set of workers shared by
every fault of tests/chaos/test_faults.py, and what each fault step checks afterwards."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client

from tests.chaos import workload
from tests.chaos.workload import GROUP, PREFIX, VERSION, Planned
from tests.e2e.operator_proc import ROOT, OperatorProcess, WorkerSet, http_ok
from tests.harness.bullmq_events import added_events
from tests.harness.cluster import LocalCluster
from tests.harness.process import ManagedProcess, wait_for
from tests.harness.redis import RedisServer
from tests.harness.status_truth import (
    Convergence,
    FlowCache,
    Limits,
    StatusTruthChecker,
    planned_jobs,
)

DEADLINE = float(os.environ.get("BULLFLOW_CHAOS_DEADLINE", "30"))
TARGET_P99 = 2.0
# `make bench`'s faults scenario runs this suite with its own results directory.
RESULTS_DIR = Path(
    os.environ.get("BULLFLOW_CHAOS_RESULTS_DIR") or Path(__file__).resolve().parent / "results"
)


@dataclass
class Row:
    fault: str
    passed: bool = False
    down_seconds: float = 0.0  # how long the fault lasted
    since_fault_end: float | None = None  # fault over -> every status true
    after_last_change: float | None = None  # max(fault over, last job change) -> every status true
    rounds: int = 0
    round_seconds: float = 0.0
    flows: int = 0
    jobs: int = 0
    notes: list[str] = field(default_factory=list)


class ChaosRun:
    def __init__(
        self,
        cluster: LocalCluster,
        redis: RedisServer,
        operator: OperatorProcess,
        workers: WorkerSet,
        namespace: str,
        workdir: Path,
    ) -> None:
        self.cluster, self.redis, self.operator = cluster, redis, operator
        self.workers, self.namespace, self.workdir = workers, namespace, workdir
        self.api = cluster.api_client()
        self.custom: Any = client.CustomObjectsApi(self.api)
        self.watch_api = cluster.api_client()
        self.cache = FlowCache(self.watch_api, [namespace]).start()
        self.checker = StatusTruthChecker(
            self.api, redis.url, [namespace], Limits(), cache=self.cache
        )
        self.rows: list[Row] = []
        self.broken: set[str] = set()  # flows left disagreeing by a failed step
        self.expected_phase: dict[str, str] = {}
        self.created = 0  # flows of the 300-flow run created so far
        self.flows: dict[str, dict[str, Any]] = {}  # name -> metadata (uid) + spec, as created
        self.data_lost_at: float | None = None
        self.lost_ids: set[str] = set()  # jobs in Redis (added) when it lost its data
        self.operator_pid = operator.proc.pid if operator.proc else None
        self.operator_starts = operator.starts

    # -- workload --------------------------------------------------------------------------

    def create(self, planned: list[Planned], threads: int = 8) -> float:
        """Creates the Flows through the API server (concurrently); returns when the last create
        was answered (time.time())."""

        def one(p: Planned) -> str:
            made = self.custom.create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, "flows", p.body
            )
            return str(made["metadata"]["uid"])

        with ThreadPoolExecutor(max_workers=threads) as pool:
            uids = list(pool.map(one, planned))
        for p, uid in zip(planned, uids, strict=True):
            self.expected_phase[f"{self.namespace}/{p.name}"] = p.phase
            self.flows[p.name] = {
                "metadata": {"name": p.name, "namespace": self.namespace, "uid": uid},
                "spec": p.body["spec"],
            }
        return time.time()

    def batch(
        self, step: str, count: int = 25, slow: float = 1.0, every_shape: bool = False
    ) -> list[Planned]:
        """This step's share of the 300-flow run, created now: the fault hits it in flight."""
        planned = workload.batch(step, count, slow, every_shape=every_shape)
        self.create(planned)
        self.created += len(planned)
        return planned

    # -- one fault ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def step(
        self,
        fault: str,
        *,
        operator_restarts: bool = False,
        settle_seconds: float = 0.0,
        fresh_watch: bool = False,
    ) -> Iterator[Row]:
        """`with run.step("...") as row:` apply the fault inside (the block returns once both
        sides are reachable again, setting row.down_seconds); afterwards: every status matches
        Redis within DEADLINE (timed), no job was added twice, the operator did not restart
        (unless the fault restarted it) and answers its liveness probe. `settle_seconds`: extra
        time BullMQ itself needs to finish the flows after this fault (its stalled-job check);
        the status must still be true within DEADLINE of the last job change. `fresh_watch`:
        the checker lists and watches anew once the fault is over (the API server restarted:
        its own requests from the outage may be answered late)."""
        row = Row(fault)
        self.rows.append(row)
        try:
            yield row
            fault_end = time.time()
            if fresh_watch:
                self.cache.restart()
            self.revive_workers(row)
            conv = self.converge(row, fault_end, settle_seconds)
            row.since_fault_end = round(conv.seconds, 3)
            row.after_last_change = round(conv.lag_seconds, 3)
            row.rounds, row.round_seconds = conv.rounds, round(conv.round_seconds, 3)
            row.flows, row.jobs = conv.flows, conv.jobs
            self.check_final_phases()
            self.check_added_once(row)
            self.check_operator(row, operator_restarts)
            row.passed = True
        except BaseException as exc:
            row.notes.append(f"FAILED: {str(exc).splitlines()[0][:300]}")
            raise
        finally:
            self.write_results()

    def converge(self, row: Row, fault_end: float, settle_seconds: float = 0.0) -> Convergence:
        try:
            conv = self.checker.wait_until_true(
                DEADLINE + settle_seconds,
                since=fault_end,
                settled=True,
                exclude=self.broken,
                check=self.operator_alive,
            )
        except AssertionError:
            report = self.checker.check(self.broken)
            self.broken |= set(report.by_flow)
            raise
        assert conv.lag_seconds <= DEADLINE, (
            f"statuses true only {conv.lag_seconds:.1f}s after the last job change"
        )
        return conv

    def operator_alive(self) -> None:
        if self.operator.exited():
            assert self.operator.proc is not None
            raise AssertionError(f"the operator exited: {self.operator.proc.log_tail(40)}")

    def check_final_phases(self) -> None:
        """Redis itself (as the statuses now say) ends each flow as its shape says: a worker
        misbehaving would otherwise pass as consistent."""
        wrong = []
        for flow in self.checker.read_flows():
            key = f"{flow['metadata']['namespace']}/{flow['metadata']['name']}"
            want = self.expected_phase.get(key)
            phase = (flow.get("status") or {}).get("phase")
            reason = _ready_reason(flow)
            if want and key not in self.broken and phase != want and reason != "JobsLost":
                message = next(
                    (
                        c.get("message")
                        for c in flow["status"].get("conditions", [])
                        if c.get("type") == "Ready"
                    ),
                    "",
                )
                wrong.append(
                    f"{key}: {phase} ({reason}: {str(message)[:200]}), its shape ends {want}"
                )
        self.broken |= {line.split(":", 1)[0] for line in wrong}  # reported once
        assert not wrong, "flows ended wrong:\n" + "\n".join(wrong[:20])

    def added_events(self) -> tuple[Counter[str], Counter[str], int]:
        """Per job id, its `added` and `duplicated` events across the queues' event streams,
        and the longest stream (BullMQ trims them near 10,000 events)."""
        seen = added_events(self.redis.url, PREFIX, workload.ALL_QUEUES)
        return seen.added, seen.duplicated, seen.longest

    def check_added_once(self, row: Row) -> None:
        added, duplicated, longest = self.added_events()
        twice = {job: n for job, n in added.items() if n > 1}
        assert not twice, f"jobs added more than once: {list(twice.items())[:10]}"
        assert not duplicated, f"jobs submitted again (duplicated events): {list(duplicated)[:10]}"
        expected_ids = set()
        for flow in self.checker.read_flows():
            expected_ids |= {j.job_id for j in planned_jobs(flow)[1]}
        if self.data_lost_at is not None:
            # Redis lost its data and its streams restarted empty: none of the jobs it had may
            # be added again (the operator must say JobsLost, not run them anew). Flows not
            # submitted yet when it happened are submitted now, rightly.
            again = sorted(j for j in added if j in self.lost_ids)
            assert not again, f"{len(again)} lost jobs submitted again: {again[:10]}"
        elif longest < 9000:  # not trimmed yet: every job of every Flow is there, once
            absent = expected_ids - set(added)
            assert not absent, f"{len(absent)} jobs never added: {sorted(absent)[:5]}"
        else:
            row.notes.append(
                f"an events stream has {longest} entries (trimmed): presence not checked"
            )

    def check_operator(self, row: Row, restarted: bool) -> None:
        proc = self.operator.proc
        assert proc is not None and proc.running(), "the operator is not running"
        if restarted:
            assert self.operator.starts == self.operator_starts + 1
            self.operator_starts, self.operator_pid = self.operator.starts, proc.pid
        else:
            assert self.operator.starts == self.operator_starts, "the operator was restarted"
            assert proc.pid == self.operator_pid, f"operator pid {self.operator_pid} -> {proc.pid}"
        assert http_ok(self.liveness_url(), timeout=2), (
            "the operator's liveness endpoint does not answer"
        )

    def liveness_url(self) -> str:
        assert self.operator.proc is not None
        arg = next(a for a in self.operator.proc.argv if a.startswith("--liveness="))
        return arg.split("=", 1)[1]

    def revive_workers(self, row: Row) -> None:
        """A worker that exited during the fault is started again, as its Deployment would be
        (noted in the row)."""
        for i, proc in enumerate(list(self.workers.procs)):
            if proc.running():
                continue
            code = proc.proc.returncode if proc.proc else None
            row.notes.append(f"{proc.name} exited ({code}) during the fault; restarted")
            proc.stop()
            proc.start()
            self.workers.procs[i] = proc

    # -- faults ------------------------------------------------------------------------------

    def kill_operator(self) -> None:
        self.operator.kill9()
        self.operator.start()

    def stall_worker(self, name: str) -> ManagedProcess:
        argv = [
            sys.executable,
            "-m",
            "tests.chaos.stall_worker",
            "--lock-ms",
            "2000",
            "--stalled-ms",
            "1000",
            "--queue",
            workload.STALL,
            "--processor",
            "bullflow_worker.processors:scripted",
            "--prefix",
            PREFIX,
            "--redis-url",
            self.redis.url,
            "--concurrency",
            "2",
            "--http-port",
            "0",
        ]
        proc = ManagedProcess(
            name, argv, self.workdir / f"{name}.log", env=dict(os.environ), cwd=ROOT
        )
        proc.start()
        return proc

    def job_states(self, names: list[str], path: str = "0") -> dict[str, str]:
        """BullMQ's getState of one node's job per flow (the checker's bullmq reads), without
        the API server (the flows as created)."""
        planned = [(self.flows[n], *planned_jobs(self.flows[n])) for n in names]
        truths = _run(self.checker._read_truths(planned))
        out = {}
        for name, (_, _, jobs), truth in zip(names, planned, truths, strict=True):
            node = next(j for j in jobs if j.path == path)
            out[name] = truth.truth(node).state
        return out

    def check_reads_match_getters(self) -> int:
        """The checker's batched Redis reads give what bullmq's getters (Job.fromId,
        job.getState(), getChildrenValues) give, one job at a time. Run when nothing moves."""
        flows = [f for f, _ in self.cache.snapshot()]
        planned = [(f, *planned_jobs(f)) for f in flows]
        batched = _run(self.checker._read_truths(planned))
        one_by_one = _run(self.checker._read_truths(planned, True))
        differ = [
            f["metadata"]["name"]
            for f, a, b in zip(flows, batched, one_by_one, strict=True)
            if a != b
        ]
        assert not differ, f"batched reads differ from bullmq's getters for {differ[:5]}"
        return len(flows)

    def finished_in_redis(self, planned: list[Planned]) -> int:
        """How many of these flows have their root completed or failed in Redis."""
        states = self.job_states([p.name for p in planned])
        return sum(s in ("completed", "failed") for s in states.values())

    # -- results -----------------------------------------------------------------------------

    def table(self) -> str:
        lines = [
            "| fault | down | fault over → statuses true | last job change → true | rounds "
            "(s each) | flows / jobs checked | result |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in self.rows:
            since = "-" if r.since_fault_end is None else f"{r.since_fault_end:.2f} s"
            lag = "-" if r.after_last_change is None else f"{r.after_last_change:.2f} s"
            verdict = "pass" if r.passed else "FAIL"
            if r.notes:
                verdict += " (" + "; ".join(r.notes) + ")"
            lines.append(
                f"| {r.fault} | {r.down_seconds:.1f} s | {since} | {lag} | {r.rounds} "
                f"({r.round_seconds:.2f}) | {r.flows} / {r.jobs} | {verdict} |"
            )
        lags = sorted(r.after_last_change for r in self.rows if r.after_last_change is not None)
        if lags:
            worst = lags[-1]
            lines.append("")
            lines.append(
                f"worst convergence after the last change: {worst:.2f} s (target p99 ≤ "
                f"{TARGET_P99:.0f} s: {'met' if worst <= TARGET_P99 else 'NOT met'}); "
                f"deadline {DEADLINE:.0f} s"
            )
        return "\n".join(lines)

    def write_results(self) -> None:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        (RESULTS_DIR / "latest.md").write_text(self.table() + "\n")
        (RESULTS_DIR / "latest.json").write_text(
            json.dumps([asdict(r) for r in self.rows], indent=2, ensure_ascii=False) + "\n"
        )

    def close(self) -> None:
        self.cache.stop()
        self.api.close()
        self.watch_api.close()


def _run(coro: Any) -> Any:
    import asyncio

    return asyncio.run(coro)


def _ready_reason(flow: dict[str, Any]) -> str | None:
    for cond in (flow.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return str(cond.get("reason"))
    return None


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    wait_for(predicate, timeout, what, interval=0.05)


def kill_group(proc: ManagedProcess) -> None:
    assert proc.proc is not None
    os.killpg(proc.proc.pid, signal.SIGKILL)
    proc.proc.wait(10)
