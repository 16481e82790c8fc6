"""Failover during a 200-flow run, on real Redis Sentinel and Redis Cluster topologies.

The session operator runs 200 Flows (a parent and two children each) through a connection
Secret, real Python and Node BullMQ workers process them, and mid-run the master goes:
Sentinel: kill -9 of the master; Cluster: kill -9 of the master owning the flows' hash-tag
slot, and apart from that a manual `CLUSTER FAILOVER` to its replica.

Asserted: every Flow ends Completed; no job was `added` twice (BullMQ's event streams); each
job executed once (its `active` events) unless BullMQ reported it stalled (`stalled` events;
the count is printed); a Flow's Ready says RedisUnavailable at most from the fault until a
new master answers (plus the operator's retry interval) and clears by itself; the statuses
equal what Redis holds; the operator neither crashed nor restarted.

A kill -9 loses what the dead master had not yet replicated (Redis replicates
asynchronously); on loopback that window is a fraction of a millisecond, so a lost write shows
up here as a failure to investigate, not as noise to tolerate.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from bullflow import GROUP, VERSION
from tests.e2e.operator_proc import OperatorProcess, WorkerSet
from tests.e2e.topology_support import (
    Topology,
    operator_identity,
    prefix_for,
    put_secret,
    topology_client,
)
from tests.harness.redis_topologies import RedisClusterTopology, RedisSentinelTopology
from tests.harness.status_truth import StatusTruthChecker, planned_jobs

FLOWS = 200
QUEUES = ("fo-parent", "fo-child")
CHILD_SECONDS = 0.3  # long enough that the fault lands mid-run
MID_RUN_COMPLETED = FLOWS // 5
RUN_TIMEOUT = 420
# After a new master answers, the operator may need its next attempt to notice: its client
# retries with a backoff and the e2e operator resyncs every 5 s.
RECOVERY_GRACE_SECONDS = 20


def flow_body(index: int, prefix: str, connection: dict[str, str]) -> dict[str, Any]:
    """Processors that never touch Redis themselves (no `combine`): whatever goes wrong in the
    failover is BullMQ's or the operator's, not a processor's Redis error."""
    child = {"queueName": QUEUES[1], "data": {"sleepSeconds": CHILD_SECONDS}}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Flow",
        "metadata": {"name": f"fo-{index:03d}"},
        "spec": {
            "prefix": prefix,
            "connection": connection,
            # The fresh topology is gone after the test: a Delete policy's finalizer would
            # leave the session operator retrying against dead nodes while the namespace goes.
            "deletionPolicy": "Orphan",
            "root": {
                "name": "parent",
                "queueName": QUEUES[0],
                "data": {"result": index},
                "children": [
                    {**child, "name": "a", "data": {**child["data"], "result": 1}},
                    {**child, "name": "b", "data": {**child["data"], "result": 2}},
                ],
            },
        },
    }


@dataclass
class UnavailableWatch:
    """Polls the Flows' Ready conditions in a thread; keeps every RedisUnavailable seen."""

    custom: Any
    namespace: str
    # Flow name -> when RedisUnavailable was first and last seen (time.time() of the LIST).
    # Not lastTransitionTime: Ready was already False (Submitted, Running), and a condition's
    # transition time moves only when its status does, not its reason.
    seen: dict[str, tuple[float, float]] = field(default_factory=dict)
    phases: Counter[str] = field(default_factory=Counter)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> UnavailableWatch:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):  # a failed LIST: the next round retries
                self.poll()
            self._stop.wait(0.3)

    def poll(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.custom.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "flows"
        )["items"]
        now = time.time()
        self.phases = Counter((f.get("status") or {}).get("phase") for f in items)
        for flow in items:
            for cond in (flow.get("status") or {}).get("conditions") or []:
                if cond.get("type") == "Ready" and cond.get("reason") == "RedisUnavailable":
                    name = flow["metadata"]["name"]
                    self.seen[name] = (self.seen.get(name, (now, now))[0], now)
        return items


@dataclass
class JobEvents:
    added: Counter[str] = field(default_factory=Counter)
    active: Counter[str] = field(default_factory=Counter)
    stalled: Counter[str] = field(default_factory=Counter)
    longest: int = 0


def job_events(url: str, prefix: str) -> JobEvents:
    """Per job id, from the queues' event streams: `added`, `active` (one per execution
    start) and `stalled` (BullMQ moved it back to wait after its lock expired)."""
    redis = topology_client(url)
    out = JobEvents()
    try:
        for queue in QUEUES:
            entries = redis.xrange(f"{prefix}:{queue}:events")
            out.longest = max(out.longest, len(entries))
            for _, fields in entries:
                counter = getattr(out, fields.get("event", ""), None)
                if isinstance(counter, Counter):
                    counter[fields["jobId"]] += 1
    finally:
        redis.close()
    return out


def create_flows(custom: Any, namespace: str, bodies: list[dict[str, Any]]) -> None:
    def one(body: dict[str, Any]) -> None:
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "flows", body)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(one, bodies))


def wait_phases(watch: UnavailableWatch, done: Any, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        watch.poll()
        if done(watch.phases):
            return
        time.sleep(0.3)
    unfinished = [describe(f) for f in watch.poll() if describe(f).split()[1] != "Completed"]
    raise AssertionError(
        f"{what} not reached after {timeout}s: {dict(watch.phases)}\n" + "\n".join(unfinished[:20])
    )


def describe(flow: dict[str, Any]) -> str:
    """`<name> <phase> <Ready reason>: <Ready message>`."""
    status = flow.get("status") or {}
    ready = {c["type"]: c for c in status.get("conditions") or []}.get("Ready", {})
    return (
        f"{flow['metadata']['name']} {status.get('phase')} "
        f"{ready.get('reason')}: {ready.get('message')}"
    )


def report(request: pytest.FixtureRequest, line: str) -> None:
    """Into the pytest output as it runs (the stalled count is a result, not a debug note)."""
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    if reporter is None or capture is None:
        print(line)
        return
    with capture.global_and_fixture_disabled():  # else the line is captured with the test's
        reporter.write_line(line)


SCENARIOS = {
    "sentinel-kill9": ("fresh_redis_sentinel", "kill"),
    "cluster-kill9": ("fresh_redis_cluster", "kill"),
    "cluster-failover": ("fresh_redis_cluster", "failover"),
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_failover_during_a_200_flow_run(
    scenario: str,
    request: pytest.FixtureRequest,
    operator: OperatorProcess,
    kube_client: Any,
    namespace: str,
    tmp_path: Path,
) -> None:
    fixture, fault = SCENARIOS[scenario]
    topology: Topology = request.getfixturevalue(fixture)
    before = operator_identity(operator)
    custom = client.CustomObjectsApi(kube_client)
    prefix = prefix_for(topology)
    connection = put_secret(kube_client, namespace, topology.url)
    workers = WorkerSet(topology.url, tmp_path / "workers")
    watch = UnavailableWatch(custom, namespace)
    try:
        workers.start("python", QUEUES, prefix, concurrency=20)
        workers.start("node", QUEUES, prefix, concurrency=20)
        started = time.time()
        create_flows(custom, namespace, [flow_body(i, prefix, connection) for i in range(FLOWS)])
        wait_phases(
            watch,
            lambda p: p["Completed"] >= MID_RUN_COMPLETED,
            f"{MID_RUN_COMPLETED} flows Completed",
            RUN_TIMEOUT,
        )
        watch.start()
        fault_at = time.time()
        completed_at_fault = watch.phases["Completed"]
        assert completed_at_fault < FLOWS, "every flow finished before the fault: not mid-run"
        new_master_at = inject(topology, fault, prefix)
        wait_phases(
            watch, lambda p: p["Completed"] == FLOWS, f"all {FLOWS} flows Completed", RUN_TIMEOUT
        )
        finished_at = time.time()
        watch.stop()
        final = watch.poll()

        assert all(f["status"]["phase"] == "Completed" for f in final)
        stuck = [name for name in watch.seen if not final_ok(final, name)]
        assert not stuck, f"RedisUnavailable did not clear by itself: {stuck}"
        early_or_late = {
            name: (round(first - fault_at, 1), round(last - fault_at, 1))
            for name, (first, last) in watch.seen.items()
            if first < fault_at or last > new_master_at + RECOVERY_GRACE_SECONDS
        }
        assert not early_or_late, (
            f"RedisUnavailable outside the outage (a new master answered "
            f"{new_master_at - fault_at:.1f}s after the fault); seen first/last, seconds "
            f"after the fault: {early_or_late}"
        )

        events = job_events(topology.url, prefix)
        job_ids = [j.job_id for f in final for j in planned_jobs(f)[1]]
        assert len(job_ids) == 3 * FLOWS
        duplicated = {j: n for j, n in events.added.items() if n > 1}
        assert not duplicated, f"jobs added more than once: {duplicated}"
        never_active = [j for j in job_ids if events.active[j] == 0]
        assert not never_active, f"completed jobs with no `active` event: {never_active[:10]}"
        twice = {j: events.active[j] for j in job_ids if events.active[j] > 1 + events.stalled[j]}
        assert not twice, f"jobs executed more often than BullMQ stalled them: {twice}"
        StatusTruthChecker(kube_client, topology.url, [namespace]).wait_until_true(
            120, settled=True
        )
        assert not operator.exited() and operator_identity(operator) == before

        stalled_jobs = sum(1 for j in job_ids if events.stalled[j])
        unavailable_until = max((last - fault_at for _, last in watch.seen.values()), default=0)
        report(
            request,
            f"[{scenario}] {FLOWS} flows / {len(job_ids)} jobs Completed in "
            f"{finished_at - started:.1f}s; fault after {completed_at_fault} flows Completed; "
            f"new master after {new_master_at - fault_at:.1f}s; executions "
            f"{sum(events.active[j] for j in job_ids)} (stalled jobs: {stalled_jobs}, re-run "
            f"after a stall: {sum(events.active[j] - 1 for j in job_ids)}); RedisUnavailable "
            f"seen on {len(watch.seen)} flow(s), last {unavailable_until:.1f}s after the fault; "
            f"longest event stream {events.longest}",
        )
    finally:
        watch.stop()
        workers.stop()


def final_ok(final: list[dict[str, Any]], name: str) -> bool:
    flow = next(f for f in final if f["metadata"]["name"] == name)
    conds = {c["type"]: c for c in flow["status"].get("conditions") or []}
    return conds.get("Ready", {}).get("reason") != "RedisUnavailable"


def inject(topology: Topology, fault: str, prefix: str) -> float:
    """Makes the fault; returns the time a new master answered."""
    if isinstance(topology, RedisSentinelTopology):
        old = topology.kill_master()
        topology.wait_for_new_master(old)
    elif fault == "kill":
        assert isinstance(topology, RedisClusterTopology)
        old = topology.kill_master(prefix)
        topology.wait_for_new_master(old, prefix)
    else:
        assert isinstance(topology, RedisClusterTopology)
        topology.cluster_failover(prefix)
    return time.time()
