"""The operator's Redis I/O (storage/redis_jobs.py, redis_retry.py, queues.py) on the three
topologies: standalone, Sentinel (1 master, 1 replica, 3 sentinels) and Redis Cluster (3 masters,
3 replicas), all real redis-server processes (tests/harness/redis_topologies.py).

The same operations everywhere: atomic submission with its marker, snapshots, events, removal,
update_marker, a stop applied through WATCH + MULTI/EXEC, the server identity, CLIENT LIST. On
the Cluster also what only it has: one MULTI/EXEC on the slot's master for a 2,000-job flow, the
slot moving under the client (CLUSTER FAILOVER between calls), workers on a master that is not
a seed of the URL.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis
from bullmq import Queue

from bullflow.models.flow import FlowSpec
from bullflow.models.marker import SubmissionMarker
from bullflow.services.flowtree import PlannedJob, plan, to_flowproducer
from bullflow.services.worker_deployment import activity_key
from bullflow.storage.queues import QueueReader, queues_without_workers
from bullflow.storage.redis_jobs import BullRedis, events_key, marker_key
from bullflow.storage.redis_retry import RetryScripts, StoredOperations, Writes, transact
from bullflow_worker.redis_address import parse_redis_address
from bullflow_worker.redis_clients import async_client
from tests.harness.redis_topologies import RedisClusterTopology, command

SPEC = FlowSpec.model_validate(
    {
        "root": {
            "name": "parent",
            "queueName": "ta",
            "data": {"x": 1},
            "children": [
                {"name": "c0", "queueName": "tb"},
                {"name": "c1", "queueName": "tb", "opts": {"priority": 3}},
            ],
        }
    }
)
FRESH_STATES = ["waiting-children", "waiting", "prioritized"]


def marker(token: str, jobs: int = 3) -> SubmissionMarker:
    return SubmissionMarker(flow_uid=token, name="f", namespace="ns", submitted_at="t", jobs=jobs)


def new_prefix() -> str:
    """Hash-tagged, as a Cluster requires (and harmless elsewhere)."""
    return "{t" + uuid.uuid4().hex[:8] + "}"


@pytest.fixture(params=["standalone", "sentinel", "cluster"])
def topology_url(request: pytest.FixtureRequest) -> str:
    if request.param == "standalone":
        return str(request.getfixturevalue("redis_url"))
    fixture = "redis_sentinel" if request.param == "sentinel" else "redis_cluster"
    return str(request.getfixturevalue(fixture).url)


@pytest.fixture
async def conn(topology_url: str) -> AsyncIterator[BullRedis]:
    bull = BullRedis(topology_url)
    yield bull
    await bull.close()


async def submit(conn: BullRedis, prefix: str, spec: FlowSpec = SPEC) -> tuple[str, Any]:
    token = str(uuid.uuid4())
    jobs = len(plan(spec, token))
    own = await conn.submit(prefix, to_flowproducer(spec, token), token, marker(token, jobs))
    return token, own


async def states(conn: BullRedis, prefix: str, jobs: list[PlannedJob]) -> list[str]:
    snaps = await conn.snapshots(prefix, jobs)
    return [snaps[j.job_id].state for j in jobs]


async def test_submission_is_atomic_with_its_marker_once_and_reads_back(conn: BullRedis):
    prefix = new_prefix()
    token, own = await submit(conn, prefix)
    jobs = plan(SPEC, token)
    assert own is not None and set(own) == {events_key(prefix, "ta"), events_key(prefix, "tb")}
    assert await conn.marker(prefix, token) == marker(token)
    again = await conn.submit(prefix, to_flowproducer(SPEC, token), token, marker(token))
    assert again is None  # the marker says it was done: nothing added twice
    assert await states(conn, prefix, jobs) == FRESH_STATES
    reader = QueueReader(conn)
    counts = await reader.counts(prefix, "tb")
    assert (counts.waiting, counts.prioritized) == (1, 1)
    await conn.client.set(activity_key(prefix, "ns", "pod-a"), "2")
    assert await reader.activity(prefix, "ns", ["pod-a", "pod-b"]) == {"pod-a": 2, "pod-b": None}


async def test_events_of_the_flow_are_read_from_its_streams(conn: BullRedis):
    prefix = new_prefix()
    token, own = await submit(conn, prefix)
    stream = events_key(prefix, "tb")
    read = await conn.read_events({stream: "0-0", events_key(prefix, "ta"): "0-0"}, 100)
    ours = [e for e in read if token in e.fields.get("jobId", "")]
    assert {e.fields["event"] for e in ours} >= {"waiting", "waiting-children"}
    assert max(e.entry_id for e in read if e.stream == stream) == own[stream]
    # Nothing new: the read blocks, then returns nothing.
    assert await conn.read_events({stream: own[stream]}, 50) == []
    await Queue("tb", {"connection": conn.client, "prefix": prefix}).add("later", {})
    later = await conn.read_events({stream: own[stream]}, 1000)
    assert [e.fields.get("event") for e in later] == ["added", "waiting"]


async def test_one_read_follows_the_streams_of_several_prefixes(conn: BullRedis):
    """The tracker reads every stream of a connection at once; on a Cluster two prefixes'
    streams are in two slots (each read on its own), elsewhere in one XREAD."""
    prefixes = [new_prefix(), new_prefix()]
    tokens = [(await submit(conn, p))[0] for p in prefixes]
    streams = {events_key(p, q): "0-0" for p in prefixes for q in ("ta", "tb")}
    read = await conn.read_events(streams, 100)
    for prefix, token in zip(prefixes, tokens, strict=True):
        ours = {e.stream for e in read if token in e.fields.get("jobId", "")}
        assert ours == {events_key(prefix, "ta"), events_key(prefix, "tb")}


async def test_remove_update_marker_and_identity(conn: BullRedis):
    prefix = new_prefix()
    token, _ = await submit(conn, prefix)
    jobs = plan(SPEC, token)
    await conn.update_marker(prefix, token, owner=("uid-2", "flow-2"))
    await conn.update_marker(prefix, token, final_status={"phase": "Completed"})
    raw = await conn.client.get(marker_key(prefix, token))
    assert '"uid": "uid-2"' in raw and '"phase": "Completed"' in raw and '"jobs": 3' in raw
    assert await conn.remove_trees(prefix, [jobs[0]]) == []
    assert set(await states(conn, prefix, jobs)) == {"unknown"}
    await conn.remove_marker(prefix, token)
    await conn.update_marker(prefix, token, owner=("uid-3", "flow-3"))  # gone: not brought back
    assert await conn.marker(prefix, token) is None
    identity = await conn.identity(prefix)
    assert len(identity.run_id) == 40 and len(identity.replid) == 40
    assert await conn.identity(prefix) == identity


def stop_child(token: str, child: PlannedJob, scripts: RetryScripts) -> Any:
    """A decision like a stop's: remove one waiting job, record the stop token."""

    def decide(ops: StoredOperations, snaps: dict[str, Any]) -> Any:
        if ops.stop == token:
            return "already applied"
        assert snaps[child.job_id].state == "waiting"

        async def queue(pipe: Any) -> None:
            await scripts.remove(pipe, child)

        stopped = {"removed": [child.job_id]}
        return Writes(StoredOperations(stop=token, stopped=stopped), queue, result="applied")

    return decide


async def test_a_stop_runs_in_one_watched_transaction_and_applies_once(conn: BullRedis):
    prefix = new_prefix()
    token, _ = await submit(conn, prefix)
    jobs = plan(SPEC, token)
    scripts = RetryScripts(conn, prefix)
    decide = stop_child("stop-1", jobs[1], scripts)
    applied = await transact(conn, prefix, token, jobs, decide)
    assert isinstance(applied, Writes) and applied.result == "applied"
    assert await states(conn, prefix, jobs) == ["waiting-children", "unknown", "prioritized"]
    assert await transact(conn, prefix, token, jobs, decide) == "already applied"
    raw = await conn.client.get(marker_key(prefix, token))
    assert '"stop": "stop-1"' in raw


async def test_client_list_finds_a_bullmq_worker_of_the_queue(conn: BullRedis, topology_url):
    from bullmq import Worker

    prefix = new_prefix()

    async def process(job: Any, token: str) -> None:
        return None

    assert await queues_without_workers(conn, prefix, ["served", "alone"]) == [
        "alone",
        "served",
    ]
    worker_client = async_client(parse_redis_address(topology_url), decode_responses=True)
    worker = Worker("served", process, {"connection": worker_client, "prefix": prefix})
    try:
        for _ in range(100):
            if await queues_without_workers(conn, prefix, ["served", "alone"]) == ["alone"]:
                break
            await asyncio.sleep(0.1)
        assert await queues_without_workers(conn, prefix, ["served", "alone"]) == ["alone"]
    finally:
        await worker.close()
        await worker_client.aclose()


# --- Redis Cluster only ------------------------------------------------------------------


def slot_master_exec_calls(cluster: RedisClusterTopology, key: str) -> int:
    stats = command(cluster.master_for(key).port, cluster.password, "INFO", "commandstats")
    return int(stats.get("cmdstat_exec", {}).get("calls", 0))


async def test_a_2000_job_flow_is_one_transaction_on_the_slot_master(redis_cluster):
    spec = FlowSpec.model_validate(
        {
            "root": {
                "name": "reduce",
                "queueName": "big-parent",
                "children": [{"name": f"m{i}", "queueName": "big-map"} for i in range(1999)],
            }
        }
    )
    prefix = new_prefix()
    conn = BullRedis(redis_cluster.url)
    try:
        before = slot_master_exec_calls(redis_cluster, prefix)
        token, own = await submit(conn, prefix, spec)
        assert own is not None
        assert slot_master_exec_calls(redis_cluster, prefix) - before == 1
        counts = await QueueReader(conn).counts(prefix, "big-map")
        assert counts.waiting == 1999
        snaps = await conn.snapshots(prefix, plan(spec, token))
        assert len(snaps) == 2000 and "unknown" not in {s.state for s in snaps.values()}
    finally:
        await conn.close()


async def test_every_operation_follows_its_slot_to_the_new_master(fresh_redis_cluster):
    """CLUSTER FAILOVER between calls: the node each client knows for the slot is a replica
    now and answers MOVED; the next call refreshes the slot table and runs on the new master.
    One client per operation, each with the old slot table, so each meets MOVED itself."""
    from bullflow.storage.redis_identity import Change, classify_change

    cluster = fresh_redis_cluster
    prefix = new_prefix()
    conns = [BullRedis(cluster.url) for _ in range(5)]
    try:
        token, _ = await submit(conns[0], prefix)
        jobs = plan(SPEC, token)
        before = [await c.identity(prefix) for c in conns]  # each learns the slot's master
        old, new = await asyncio.to_thread(cluster.cluster_failover, prefix)
        assert old.port != new.port
        snapshots, marking, stopping, submitting, identifying = conns
        assert await states(snapshots, prefix, jobs) == FRESH_STATES
        await marking.update_marker(prefix, token, owner=("uid-9", "flow-9"))
        assert '"uid": "uid-9"' in await marking.client.get(marker_key(prefix, token))
        scripts = RetryScripts(stopping, prefix)
        decide = stop_child("s", jobs[1], scripts)
        assert isinstance(await transact(stopping, prefix, token, jobs, decide), Writes)
        other, own = await submit(submitting, prefix)
        assert own is not None
        assert await states(submitting, prefix, plan(SPEC, other)) == FRESH_STATES
        stream = events_key(prefix, "tb")
        read = await submitting.read_events({stream: "0-0"}, 100)
        assert any(other in e.fields.get("jobId", "") for e in read)
        after = await identifying.identity(prefix)
        assert after.address == f"127.0.0.1:{new.port}" != before[4].address
        assert classify_change(before[4], after) is Change.FAILOVER
    finally:
        for conn in conns:
            await conn.close()


def prefix_on_another_master(cluster: RedisClusterTopology, seed_port: int) -> str:
    for _ in range(200):
        prefix = new_prefix()
        if cluster.master_for(prefix).port != seed_port:
            return prefix
    raise AssertionError("every prefix hashed to the seed's slots")


async def test_client_list_looks_on_every_master_not_only_the_seeds(redis_cluster):
    """A URL with one seed; a worker connection (named the way BullMQ names them) on another
    master: the lookup must see it."""
    seed_port = redis_cluster.master_for("{seed}").port
    url = f"redis+cluster://:{redis_cluster.password}@127.0.0.1:{seed_port}"
    prefix = prefix_on_another_master(redis_cluster, seed_port)
    owner = redis_cluster.master_for(prefix)
    worker = redis.Redis(port=owner.port, password=redis_cluster.password)
    conn = BullRedis(url)
    try:
        worker.client_setname(f"{prefix}:mapq")
        assert await queues_without_workers(conn, prefix, ["mapq", "other"]) == ["other"]
    finally:
        worker.close()
        await conn.close()


async def test_every_operation_follows_a_sentinel_failover(fresh_redis_sentinel):
    """SENTINEL FAILOVER between calls: each client is still connected to the old master, a
    replica now; each next call reaches the new one (redis-py's Sentinel pool reconnects on
    READONLY, the identity check on a master that is not one any more)."""
    from bullflow.storage.redis_identity import Change, classify_change

    sentinel = fresh_redis_sentinel
    prefix = new_prefix()
    conns = [BullRedis(sentinel.url) for _ in range(5)]
    try:
        token, _ = await submit(conns[0], prefix)
        jobs = plan(SPEC, token)
        before = [await c.identity(prefix) for c in conns]
        old, new = await asyncio.to_thread(sentinel.failover)
        assert old.port != new.port
        snapshots, marking, stopping, submitting, identifying = conns
        # For a moment both may say role:master (the sentinels demote the old one after the
        # promotion): the check, once a second in the tracker, sees the change on a next look.
        after = await identifying.identity(prefix)
        for _ in range(100):
            if after.run_id != before[4].run_id:
                break
            await asyncio.sleep(0.1)
            after = await identifying.identity(prefix)
        assert classify_change(before[4], after) is Change.FAILOVER
        await marking.update_marker(prefix, token, owner=("uid-9", "flow-9"))
        assert '"uid": "uid-9"' in await marking.client.get(marker_key(prefix, token))
        scripts = RetryScripts(stopping, prefix)
        decide = stop_child("s", jobs[1], scripts)
        assert isinstance(await transact(stopping, prefix, token, jobs, decide), Writes)
        other, own = await submit(submitting, prefix)
        assert own is not None
        assert await states(snapshots, prefix, plan(SPEC, other)) == FRESH_STATES
        assert await snapshots.identity(prefix) == after
    finally:
        for conn in conns:
            await conn.close()


async def test_a_killed_cluster_master_is_redis_unavailable_until_its_replica_takes_over(
    fresh_redis_cluster,
):
    """kill -9 of the slot's master: every call fails with one of REDIS_ERRORS (what the
    controllers report as RedisUnavailable and retry) until the replica is promoted; then the
    same client works again, with the data the replica had."""
    from bullflow.storage.redis_identity import Change, classify_change
    from bullflow.storage.redis_jobs import REDIS_ERRORS

    cluster = fresh_redis_cluster
    prefix = new_prefix()
    conn = BullRedis(cluster.url, timeout=1.0)
    try:
        token, _ = await submit(conn, prefix)
        jobs = plan(SPEC, token)
        # Replication is asynchronous: the replica must have the flow before its master dies.
        master = cluster.master_for(prefix)
        assert command(master.port, cluster.password, "WAIT", 1, 10000) == 1
        before = await conn.identity(prefix)
        cluster.kill_master(prefix)
        failures: list[BaseException] = []
        read: list[str] | None = None
        for _ in range(120):
            try:
                read = await states(conn, prefix, jobs)
                break
            except Exception as err:  # what the controllers would see
                failures.append(err)
                await asyncio.sleep(0.5)
        assert read == FRESH_STATES, failures[-3:]
        assert all(isinstance(f, REDIS_ERRORS) for f in failures), failures
        _, own = await submit(conn, prefix)
        assert own is not None
        assert classify_change(before, await conn.identity(prefix)) is Change.FAILOVER
        names = await conn.client_names()  # every live master answers
        assert names
    finally:
        await conn.close()


@pytest.mark.parametrize("case", ["no seed answers", "wrong password"])
async def test_a_cluster_that_cannot_be_used_fails_every_call_with_redis_errors(
    redis_cluster, case: str
):
    """What the controllers report (RedisUnavailable, RedisAuthFailed) instead of crashing:
    redis-py's RedisCluster wraps both in RedisClusterException when it cannot initialize."""
    from bullflow.storage.redis_jobs import REDIS_ERRORS
    from tests.harness.process import free_port

    if case == "no seed answers":
        url = f"redis+cluster://127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    else:
        url = redis_cluster.url_with_password("not-the-password")
    conn = BullRedis(url, timeout=1.0)
    prefix = new_prefix()
    calls = {
        "submit": lambda: submit(conn, prefix),
        "snapshots": lambda: conn.snapshots(prefix, plan(SPEC, "t")),
        "marker": lambda: conn.marker(prefix, "t"),
        "identity": lambda: conn.identity(prefix),
        "client_names": conn.client_names,
        "events": lambda: conn.read_events({events_key(prefix, "q"): "0-0"}, 10),
        "counts": lambda: QueueReader(conn).counts(prefix, "q"),
    }
    try:
        for name, call in calls.items():
            with pytest.raises(REDIS_ERRORS) as raised:
                await call()
            said = str(raised.value).lower()
            if case == "wrong password":
                assert any(w in said for w in ("auth", "wrongpass", "username-password")), (
                    name,
                    said,
                )
            assert "not-the-password" not in said
    finally:
        await conn.close()
