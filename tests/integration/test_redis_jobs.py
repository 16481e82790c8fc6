"""The Redis adapter against a real redis-server and Python bullmq."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from bullmq import Queue

from bullflow.models.flow import FlowSpec
from bullflow.models.marker import SubmissionMarker
from bullflow.services.flowtree import plan, to_flowproducer
from bullflow.storage.redis_jobs import (
    REDIS_ERRORS,
    BullRedis,
    SubmissionRejected,
    events_key,
    marker_key,
)
from tests.harness.process import free_port

SPEC = FlowSpec.model_validate(
    {
        "root": {
            "name": "parent",
            "queueName": "ra",
            "data": {"x": 1},
            "children": [
                {"name": "c0", "queueName": "rb"},
                {"name": "c1", "queueName": "rb", "opts": {"priority": 3}},
            ],
        }
    }
)


def marker(token: str) -> SubmissionMarker:
    return SubmissionMarker(flow_uid=token, name="f", namespace="ns", submitted_at="t", jobs=3)


@pytest.fixture
async def conn(redis_url):
    bull = BullRedis(redis_url)
    yield bull
    await bull.close()


async def test_submit_is_one_transaction_with_its_marker_and_happens_once(conn, redis_prefix):
    uid = str(uuid.uuid4())
    jobs = plan(SPEC, uid)
    assert await conn.submit(redis_prefix, to_flowproducer(SPEC, uid), uid, marker(uid))
    assert await conn.client.exists(marker_key(redis_prefix, uid))
    assert not await conn.submit(redis_prefix, to_flowproducer(SPEC, uid), uid, marker(uid))
    snaps = await conn.snapshots(redis_prefix, jobs)
    assert [snaps[j.job_id].state for j in jobs] == ["waiting-children", "waiting", "prioritized"]
    queue = Queue("rb", {"connection": conn.client, "prefix": redis_prefix})
    counts = await queue.getJobCounts("waiting", "prioritized")
    assert counts == {"waiting": 1, "prioritized": 1}  # no duplicates


async def test_snapshots_of_missing_jobs_are_unknown(conn, redis_prefix):
    jobs = plan(SPEC, str(uuid.uuid4()))
    snaps = await conn.snapshots(redis_prefix, jobs)
    assert {s.state for s in snaps.values()} == {"unknown"}


async def test_remove_trees_removes_children_too(conn, redis_prefix):
    uid = str(uuid.uuid4())
    jobs = plan(SPEC, uid)
    await conn.submit(redis_prefix, to_flowproducer(SPEC, uid), uid, marker(uid))
    assert await conn.remove_trees(redis_prefix, [jobs[0]]) == []
    snaps = await conn.snapshots(redis_prefix, jobs)
    assert {s.state for s in snaps.values()} == {"unknown"}


async def test_a_child_owned_by_another_parent_is_a_rejection_not_silence(conn, redis_prefix):
    uid = str(uuid.uuid4())
    await conn.submit(redis_prefix, to_flowproducer(SPEC, uid), uid, marker(uid))
    other = str(uuid.uuid4())
    trees = to_flowproducer(SPEC, other)
    trees[0]["children"][0]["opts"]["jobId"] = f"bf-{uid}-0.0"  # steal a live child's id
    with pytest.raises(SubmissionRejected, match="BullMQ refused 1 job"):
        await conn.submit(redis_prefix, trees, other, marker(other))


async def test_initial_states_match_what_bullmq_scripts_really_did(conn, redis_prefix):
    """flowstatus.just_submitted (the first status, written without reading back) says what a
    read of the fresh jobs says."""
    from bullflow.services.flowstatus import just_submitted

    spec = FlowSpec.model_validate(
        {
            "root": {
                "name": "p",
                "queueName": "ia",
                "children": [
                    {"name": "w", "queueName": "ib"},
                    {"name": "d", "queueName": "ib", "opts": {"delay": 60000, "priority": 2}},
                    {"name": "pr", "queueName": "ib", "opts": {"priority": 5}},
                    {
                        "name": "m",
                        "queueName": "ia",
                        "children": [{"name": "l", "queueName": "ib"}],
                    },
                ],
            }
        }
    )
    uid = str(uuid.uuid4())
    jobs = plan(spec, uid)
    assert await conn.submit(redis_prefix, to_flowproducer(spec, uid), uid, marker(uid))
    read = await conn.snapshots(redis_prefix, jobs)
    assumed = just_submitted(jobs)
    assert {k: v.state for k, v in read.items()} == {k: v.state for k, v in assumed.items()}


async def test_submit_returns_where_its_own_events_end(conn, redis_prefix):
    """The tracker ignores the events at or before these ids for this flow: they must be all the
    submission wrote, and a later change must come after them."""
    from bullflow.controllers.tracker import stream_id
    from bullflow.services.flowtree import parse_job_id
    from bullflow.storage.redis_jobs import events_key

    uid = str(uuid.uuid4())
    own = await conn.submit(redis_prefix, to_flowproducer(SPEC, uid), uid, marker(uid))
    assert own is not None
    assert set(own) == {events_key(redis_prefix, "ra"), events_key(redis_prefix, "rb")}
    for stream, last in own.items():
        entries = await conn.client.xrange(stream)
        ours = [i for i, f in entries if (parse_job_id(f.get("jobId", "")) or ("",))[0] == uid]
        assert ours and entries[-1][0] == last
        assert all(stream_id(i) <= stream_id(last) for i in ours)
    await Queue("rb", {"connection": conn.client, "prefix": redis_prefix}).add("later", {})
    newest = (await conn.client.xrevrange(events_key(redis_prefix, "rb"), count=1))[0][0]
    assert stream_id(newest) > stream_id(own[events_key(redis_prefix, "rb")])


async def _exec_calls(conn: BullRedis) -> int:
    stats = await conn.client.info("commandstats")
    return int(stats.get("cmdstat_exec", {}).get("calls", 0))


async def test_flows_submitted_together_share_one_transaction_each_with_its_marker(
    conn, redis_prefix
):
    uids = [str(uuid.uuid4()) for _ in range(20)]
    before = await _exec_calls(conn)
    owns = await asyncio.gather(
        *(conn.submit(redis_prefix, to_flowproducer(SPEC, u), u, marker(u)) for u in uids)
    )
    assert await _exec_calls(conn) - before == 1
    for uid, own in zip(uids, owns, strict=True):
        assert own is not None and set(own) == {
            events_key(redis_prefix, "ra"),
            events_key(redis_prefix, "rb"),
        }
        assert await conn.marker(redis_prefix, uid) == marker(uid)
        snaps = await conn.snapshots(redis_prefix, plan(SPEC, uid))
        assert [s.state for s in snaps.values()] == ["waiting-children", "waiting", "prioritized"]


async def test_the_same_flow_twice_in_one_batch_is_added_once(conn, redis_prefix):
    uid = str(uuid.uuid4())
    owns = await asyncio.gather(
        *(conn.submit(redis_prefix, to_flowproducer(SPEC, uid), uid, marker(uid)) for _ in "ab")
    )
    assert owns[0] is not None and owns[1] is None
    queue = Queue("rb", {"connection": conn.client, "prefix": redis_prefix})
    assert await queue.getJobCounts("waiting", "prioritized") == {"waiting": 1, "prioritized": 1}


async def test_a_refused_flow_does_not_fail_the_others_in_its_transaction(conn, redis_prefix):
    taken = str(uuid.uuid4())
    await conn.submit(redis_prefix, to_flowproducer(SPEC, taken), taken, marker(taken))
    good, bad, also_good = (str(uuid.uuid4()) for _ in range(3))
    thief = to_flowproducer(SPEC, bad)
    thief[0]["children"][0]["opts"]["jobId"] = f"bf-{taken}-0.0"  # a live child of another flow
    before = await _exec_calls(conn)
    outcomes = await asyncio.gather(
        conn.submit(redis_prefix, to_flowproducer(SPEC, good), good, marker(good)),
        conn.submit(redis_prefix, thief, bad, marker(bad)),
        conn.submit(redis_prefix, to_flowproducer(SPEC, also_good), also_good, marker("")),
        return_exceptions=True,
    )
    assert await _exec_calls(conn) - before == 1
    assert isinstance(outcomes[1], SubmissionRejected)
    assert isinstance(outcomes[0], dict) and isinstance(outcomes[2], dict)
    for uid in (good, also_good):
        snaps = await conn.snapshots(redis_prefix, plan(SPEC, uid))
        assert "unknown" not in {s.state for s in snaps.values()}


async def test_unreachable_redis_fails_every_submission_of_the_batch(redis_prefix):
    down = BullRedis(f"redis://127.0.0.1:{free_port()}", timeout=1.0)  # nobody listens
    try:
        uids = [str(uuid.uuid4()) for _ in range(3)]
        outcomes = await asyncio.gather(
            *(down.submit(redis_prefix, to_flowproducer(SPEC, u), u, marker("")) for u in uids),
            return_exceptions=True,
        )
        assert all(isinstance(o, REDIS_ERRORS) for o in outcomes), outcomes
    finally:
        await down.close()


async def test_a_flow_whose_commands_redis_refuses_fails_alone_with_what_redis_said(
    conn, redis_prefix
):
    """Its events stream is a string, so BullMQ's scripts cannot XADD to it; a flow on other
    queues in the same transaction is added."""
    spec = FlowSpec.model_validate({"root": {"name": "p", "queueName": "broken"}})
    await conn.client.set(events_key(redis_prefix, "broken"), "not a stream")
    bad, good = str(uuid.uuid4()), str(uuid.uuid4())
    outcomes = await asyncio.gather(
        conn.submit(redis_prefix, to_flowproducer(spec, bad), bad, marker(bad)),
        conn.submit(redis_prefix, to_flowproducer(SPEC, good), good, marker(good)),
        return_exceptions=True,
    )
    assert isinstance(outcomes[0], SubmissionRejected)
    assert "Redis refused" in str(outcomes[0]) and "WRONGTYPE" in str(outcomes[0])
    assert isinstance(outcomes[1], dict)
    snaps = await conn.snapshots(redis_prefix, plan(SPEC, good))
    assert "unknown" not in {s.state for s in snaps.values()}
