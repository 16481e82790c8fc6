"""bullflow-worker on Redis Sentinel and Redis Cluster: real `bullflow-worker` processes (the
console script, as the image runs it) on the harness' real topologies (tests/harness/
topology_fixtures.py: 1 master + 1 replica + 3 sentinels; 3 masters + 3 replicas), flows added
by Python bullmq's FlowProducer, a drain on SIGTERM, a Sentinel failover by kill -9 of the
master, and the refusal of an untagged prefix on a cluster URL."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from bullmq import FlowProducer, Queue

from bullflow_worker.redis_address import parse_redis_address
from bullflow_worker.redis_clients import async_client
from tests.harness.redis_topologies import RedisClusterTopology, RedisSentinelTopology
from tests.integration.test_worker_runtime import WorkerProc, _wait

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).with_name("bullflow-worker")
COUNTING = "tests.e2e.workerpool_processors:sleep_and_count"
Topology = RedisClusterTopology | RedisSentinelTopology

HELD_PROCESSOR = """
import asyncio, pathlib, time

async def held(job):
    release = pathlib.Path(job.data["release"])
    deadline = time.monotonic() + 120
    while not release.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{release} was never created")
        await asyncio.sleep(0.05)
    return job.data
"""


async def _await(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.2)


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., WorkerProc]]:
    procs: list[WorkerProc] = []

    def start(url: str, *args: str, env: dict[str, str] | None = None) -> WorkerProc:
        # PYTHONPATH: the processors these tests load live in the repository (or tmp_path).
        worker_env = {"PYTHONPATH": str(ROOT), **(env or {})}
        w = WorkerProc(list(args), url, tmp_path / f"worker{len(procs)}.log", worker_env)
        procs.append(w)
        w.wait_ready(60)
        return w

    yield start
    for w in procs:
        w.stop()


def _producer_client(topology: Topology, prefix: str) -> aioredis.Redis:
    """What adds the flows. On Sentinel: the factory's client, as any producer would use.
    On Cluster: a plain client to the master that owns the prefix's hash slot, because
    redis-py's ClusterPipeline refuses the EVALSHAs FlowProducer pipelines (the operator's
    storage does the same, see operator/bullflow/storage/redis_nodes.py); every key of the
    flow is in that slot."""
    if isinstance(topology, RedisSentinelTopology):
        client = async_client(parse_redis_address(topology.url), decode_responses=True)
        assert isinstance(client, aioredis.Redis)
        return client
    node = topology.master_for(prefix)
    return aioredis.Redis(
        host="127.0.0.1", port=node.port, password=topology.password, decode_responses=True
    )


@pytest.fixture(params=["sentinel", "cluster"])
def topology(request: pytest.FixtureRequest) -> Topology:
    name = "redis_sentinel" if request.param == "sentinel" else "redis_cluster"
    found: Topology = request.getfixturevalue(name)
    return found


@pytest.fixture
async def producer(topology: Topology) -> AsyncIterator[tuple[aioredis.Redis, str]]:
    prefix = f"{{bf-{uuid.uuid4().hex[:8]}}}"
    client = _producer_client(topology, prefix)
    yield client, prefix
    await client.aclose()


async def _add_flows(client: aioredis.Redis, prefix: str, count: int, tag: str) -> list[str]:
    """`count` flows of a parent on `parent` and 3 children on `child`; returns every job id."""
    flow = FlowProducer({"connection": client, "prefix": prefix})
    ids: list[str] = []
    try:
        for i in range(count):
            kids = [f"{tag}-c{i}-{j}" for j in range(3)]
            await flow.add(
                {
                    "name": "parent",
                    "queueName": "parent",
                    "data": {"seconds": 0},
                    "opts": {"jobId": f"{tag}-p{i}"},
                    "children": [
                        {
                            "name": "c",
                            "queueName": "child",
                            "data": {"seconds": 0.01},
                            "opts": {"jobId": k},
                        }
                        for k in kids
                    ],
                }
            )
            ids += [f"{tag}-p{i}", *kids]
    finally:
        await flow.close()
    return ids


async def _completed(client: aioredis.Redis, prefix: str, queue: str) -> set[str]:
    return set(await client.zrange(f"{prefix}:{queue}:completed", 0, -1))


def _executions(log: Path) -> collections.Counter[str]:
    return collections.Counter(log.read_text().split() if log.exists() else [])


async def test_worker_runs_flows_and_drains(
    topology: Topology,
    producer: tuple[aioredis.Redis, str],
    start_worker: Callable[..., WorkerProc],
    tmp_path: Path,
) -> None:
    client, prefix = producer
    exec_log = tmp_path / "executions.log"
    worker = start_worker(
        topology.url,
        *("-q", "parent", "-q", "child", "-p", COUNTING, "-c", "4", "--prefix", prefix),
        env={"BULLFLOW_EXEC_LOG": str(exec_log)},
    )
    ids = await _add_flows(client, prefix, 10, "a")
    parents = {i for i in ids if "-p" in i}

    async def all_parents_done() -> bool:
        return parents <= await _completed(client, prefix, "parent")

    await _await(all_parents_done, 60, "every parent completed")
    runs = _executions(exec_log)
    assert set(runs) == set(ids) and set(runs.values()) == {1}, runs
    assert topology.password is not None and topology.password not in worker.logs()

    # Drain on SIGTERM: the job in hand finishes, a job added meanwhile is left for later.
    (tmp_path / "held_proc.py").write_text(HELD_PROCESSOR)
    release = tmp_path / "release"
    held = start_worker(
        topology.url,
        *("-q", "held", "-p", "held_proc:held", "--prefix", prefix),
        env={"PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"},
    )
    queue = Queue("held", {"connection": client, "prefix": prefix})
    try:
        job = await queue.add("slow", {"release": str(release)})

        async def active() -> bool:
            return str(job.id) in await client.lrange(f"{prefix}:held:active", 0, -1)

        await _await(active, 30, "the held job active")
        held.proc.send_signal(signal.SIGTERM)
        _wait(lambda: held.get("/readyz")[0] == 503, 30, "/readyz to report draining")
        late = await queue.add("late", {"release": str(release)})
        assert held.proc.poll() is None, held.logs()
        release.write_text("go\n")
        assert await asyncio.to_thread(held.proc.wait, 60) == 0, held.logs()
        assert await queue.getJobState(str(job.id)) == "completed"
        assert await queue.getJobState(str(late.id)) == "waiting"
    finally:
        await queue.close()
    worker.proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(worker.proc.wait, 60) == 0, worker.logs()


async def test_worker_survives_a_sentinel_failover(
    fresh_redis_sentinel: RedisSentinelTopology,
    start_worker: Callable[..., WorkerProc],
    tmp_path: Path,
) -> None:
    """kill -9 of the master: the sentinels promote the replica, the worker's clients ask the
    sentinels again on reconnect and the worker goes on with the new master's jobs."""
    topology = fresh_redis_sentinel
    prefix = "bull"
    client = _producer_client(topology, prefix)
    exec_log = tmp_path / "executions.log"
    try:
        worker = start_worker(
            topology.url,
            *("-q", "parent", "-q", "child", "-p", COUNTING, "-c", "4"),
            env={"BULLFLOW_EXEC_LOG": str(exec_log)},
        )
        before = await _add_flows(client, prefix, 5, "before")

        async def done(ids: list[str]) -> bool:
            parents = {i for i in ids if "-p" in i}
            return parents <= await _completed(client, prefix, "parent")

        await _await(lambda: done(before), 60, "the flows added before the failover")
        old = topology.kill_master()
        new = topology.wait_for_new_master(old)
        assert new.port != old.port
        # The producer's client asks the first sentinel that answers; one that has not yet
        # heard of the promotion would still name the killed master. The worker retries
        # through that on its own (its reconnects span minutes); the producer here does not.
        _wait(
            lambda: _sentinels_name(topology, new.port), 30, "every sentinel naming the new master"
        )
        after = await _add_flows(client, prefix, 5, "after")
        await _await(lambda: done(after), 90, "the flows added after the failover")
        runs = _executions(exec_log)
        assert set(runs) == set(before) | set(after), runs
        assert set(runs.values()) == {1}, runs
        assert worker.proc.poll() is None and worker.ready(), worker.logs()
        worker.proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(worker.proc.wait, 60) == 0, worker.logs()
    finally:
        await client.aclose()


def _sentinels_name(topology: RedisSentinelTopology, port: int) -> bool:
    for sentinel in topology.sentinels:
        addr = topology.sentinel_command(
            sentinel, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", topology.master_name
        )
        if not addr or int(addr[1]) != port:
            return False
    return True


def test_untagged_prefix_on_a_cluster_url_exits_2() -> None:
    """Refused before connecting (no cluster needed): one line naming the fix, no password."""
    url = "redis+cluster://:pw-never-shown@127.0.0.1:7000,127.0.0.1:7001"
    args = [str(BIN), "-q", "work", "-p", "bullflow_worker.processors:echo", "--http-port", "0"]
    for prefix_args in ([], ["--prefix", "bull"]):
        done = subprocess.run(
            [*args, *prefix_args],
            env={**os.environ, "BULLFLOW_REDIS_URL": url},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1, done.stderr
        assert "has no hash tag" in done.stderr and '--prefix: "{bull}"' in done.stderr
        assert "pw-never-shown" not in done.stderr + done.stdout
