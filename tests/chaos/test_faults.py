"""Chaos: faults applied in turn during a run of 300 flows (mixed shapes, Node.js and Python
BullMQ workers, processor `scripted`). After each fault every Flow's status must match Redis
(tests/harness/status_truth.py) within the deadline, timed from the moment both sides are
reachable again; no job may be added twice; the operator must not have restarted (unless the
fault killed it) and must answer its liveness probe. Faults that lose data come last.

Each fault's convergence time is printed at the end of the run (terminal summary) and written
to tests/chaos/results/latest.md (and .json)."""

from __future__ import annotations

import time

import pytest
import redis as redis_sync

from tests.chaos import workload
from tests.chaos.chaos import ChaosRun, kill_group, wait_until
from tests.harness.status_truth import TRUNCATED_MARK, utf8_len

TOTAL_FLOWS = 300


def test_00_baseline(chaos: ChaosRun) -> None:
    with chaos.step("none (baseline: 25 flows, every shape)"):
        chaos.batch("base", every_shape=True)


def test_01_burst_of_50(chaos: ChaosRun) -> None:
    with chaos.step("burst of 50 one-job flows") as row:
        chaos.batch("b50")
        started = time.time()
        chaos.create(workload.burst("b50x", 50), threads=16)
        row.down_seconds = time.time() - started


def test_02_burst_of_400(chaos: ChaosRun) -> None:
    with chaos.step("burst of 400 one-job flows") as row:
        chaos.batch("b400")
        started = time.time()
        chaos.create(workload.burst("b400x", 400), threads=16)
        row.down_seconds = time.time() - started


def test_03_status_over_the_budget_with_multibyte_text(chaos: ChaosRun) -> None:
    big = workload.over_budget("budget-emoji")
    with chaos.step("status over the 256 KiB budget (199 emoji/CJK values)") as row:
        chaos.batch("budget")
        started = time.time()
        chaos.create([big], threads=1)
        row.down_seconds = time.time() - started
    status = chaos.custom.get_namespaced_custom_object(
        workload.GROUP, workload.VERSION, chaos.namespace, "flows", big.name
    )["status"]
    assert status["phase"] == "Completed"
    assert status.get("nodesTruncated") is True
    assert status["counts"] == {"completed": 200}
    assert str(status["result"]).endswith(TRUNCATED_MARK)
    assert utf8_len(status) <= 256 * 1024
    chaos.check_reads_match_getters()


def test_04_worker_sigkilled_mid_job(chaos: ChaosRun) -> None:
    survivor = workload.stalled("wkill-stalled", seconds=3)
    first = chaos.stall_worker("stall-worker-a")
    second = None
    try:
        with chaos.step("SIGKILL a worker mid-job (BullMQ stall handling)") as row:
            chaos.batch("wkill")
            chaos.create([survivor], threads=1)
            wait_until(
                lambda: chaos.job_states([survivor.name], "0.0")[survivor.name] == "active",
                30,
                "the stall queue's job active on worker a",
            )
            started = time.time()
            kill_group(first)
            second = chaos.stall_worker("stall-worker-b")
            row.down_seconds = time.time() - started
        r = redis_sync.Redis.from_url(chaos.redis.url, decode_responses=True)
        try:
            events = [f["event"] for _, f in r.xrange(f"{workload.PREFIX}:stall:events")]
        finally:
            r.close()
        assert "stalled" in events, f"no stalled event: {events}"
    finally:
        first.stop()
        if second is not None:
            second.stop()


def test_05_operator_sigkilled(chaos: ChaosRun) -> None:
    with chaos.step("SIGKILL the operator (restarted)", operator_restarts=True) as row:
        chaos.batch("opkill", slow=2)
        started = time.time()
        chaos.kill_operator()
        row.down_seconds = time.time() - started


def test_06_kube_apiserver_down_15s(chaos: ChaosRun) -> None:
    with chaos.step("kube-apiserver down 15 s", fresh_watch=True) as row:
        planned = chaos.batch("api", slow=3)
        started = time.time()
        chaos.cluster.stop_component("kube-apiserver", timeout=3)
        time.sleep(max(0.0, 15 - (time.time() - started)))  # the outage's length
        finished = chaos.finished_in_redis(planned)
        chaos.cluster.start_component("kube-apiserver")
        row.down_seconds = time.time() - started
        row.notes.append(f"{finished}/{len(planned)} flows finished in Redis meanwhile")


def test_07_etcd_restarted(chaos: ChaosRun) -> None:
    with chaos.step("etcd restarted", fresh_watch=True) as row:
        chaos.batch("etcd", slow=2)
        started = time.time()
        chaos.cluster.restart_component("etcd", stop_timeout=3)
        row.down_seconds = time.time() - started


def test_08_redis_sigstopped_20s(chaos: ChaosRun) -> None:
    # Jobs whose locks a worker could not renew while Redis was frozen are finished by BullMQ's
    # stalled-job check (every 30 s by default), not by bullflow: Redis may need that long to
    # finish the flows; their statuses must still follow within the deadline of each change.
    with chaos.step("Redis SIGSTOPped 20 s", settle_seconds=45) as row:
        chaos.batch("rstop", slow=2)
        started = time.time()
        with chaos.redis.paused():
            time.sleep(20)  # the freeze's length
        row.down_seconds = time.time() - started


def test_09_redis_restarted_keeping_its_data(chaos: ChaosRun) -> None:
    with chaos.step("Redis restarted, data kept") as row:
        chaos.batch("rrest", slow=2)
        started = time.time()
        chaos.redis.restart(keep_data=True)
        row.down_seconds = time.time() - started


def test_10_redis_down_75s(chaos: ChaosRun) -> None:
    # As with the SIGSTOP: jobs that were active when Redis went away finish only after
    # BullMQ's stalled-job check moved them back; bullflow's part is the status after each move.
    with chaos.step("Redis down 75 s, data kept", settle_seconds=45) as row:
        chaos.batch("rdown", slow=2)
        started = time.time()
        with chaos.redis.outage(keep_data=True):
            time.sleep(75)  # the outage's length
        row.down_seconds = time.time() - started


def test_11_redis_restarted_without_its_data(chaos: ChaosRun) -> None:
    """Last: every flow unfinished when Redis lost its data must end JobsLost."""
    with chaos.step("Redis restarted WITHOUT its data") as row:
        planned = chaos.batch("rlost", count=TOTAL_FLOWS - chaos.created, slow=8)
        wait_until(
            lambda: chaos.finished_in_redis(planned) < len(planned),
            10,
            "some of the batch still running",
        )
        chaos.lost_ids = set(chaos.added_events()[0])
        started = time.time()
        chaos.redis.restart(keep_data=False)
        chaos.data_lost_at = time.time()
        row.down_seconds = chaos.data_lost_at - started
    lost = [
        f
        for f in chaos.checker.read_flows()
        if any(
            c.get("reason") == "JobsLost" for c in (f.get("status") or {}).get("conditions") or []
        )
    ]
    assert lost, "no flow says JobsLost"
    row.notes.append(f"{len(lost)} flows JobsLost")
    assert chaos.created == TOTAL_FLOWS


@pytest.fixture(autouse=True)
def _no_exited_workers(chaos: ChaosRun) -> None:
    """Every test starts with the shared workers running."""
    for proc in chaos.workers.procs:
        proc.check_running()
