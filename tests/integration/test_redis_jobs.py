"""The Redis adapter against a real redis-server and Python bullmq."""

from __future__ import annotations

import uuid

import pytest
from bullmq import Queue

from bullflow.models.flow import FlowSpec
from bullflow.services.flowtree import plan, to_flowproducer
from bullflow.storage.redis_jobs import BullRedis, SubmissionRejected, marker_key

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


@pytest.fixture
async def conn(redis_url):
    bull = BullRedis(redis_url)
    yield bull
    await bull.close()


async def test_submit_is_one_transaction_with_its_marker_and_happens_once(conn, redis_prefix):
    uid = str(uuid.uuid4())
    jobs = plan(SPEC, uid)
    assert await conn.submit(redis_prefix, to_flowproducer(SPEC, uid), uid, {"uid": uid})
    assert await conn.client.exists(marker_key(redis_prefix, uid))
    assert not await conn.submit(redis_prefix, to_flowproducer(SPEC, uid), uid, {"uid": uid})
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
    await conn.submit(redis_prefix, to_flowproducer(SPEC, uid), uid, {"uid": uid})
    assert await conn.remove_trees(redis_prefix, [jobs[0]]) == []
    snaps = await conn.snapshots(redis_prefix, jobs)
    assert {s.state for s in snaps.values()} == {"unknown"}


async def test_a_child_owned_by_another_parent_is_a_rejection_not_silence(conn, redis_prefix):
    uid = str(uuid.uuid4())
    await conn.submit(redis_prefix, to_flowproducer(SPEC, uid), uid, {"uid": uid})
    other = str(uuid.uuid4())
    trees = to_flowproducer(SPEC, other)
    trees[0]["children"][0]["opts"]["jobId"] = f"bf-{uid}-0.0"  # steal a live child's id
    with pytest.raises(SubmissionRejected, match="BullMQ refused 1 job"):
        await conn.submit(redis_prefix, trees, other, {"uid": other})


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
    assert await conn.submit(redis_prefix, to_flowproducer(spec, uid), uid, {"uid": uid})
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
    own = await conn.submit(redis_prefix, to_flowproducer(SPEC, uid), uid, {"uid": uid})
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
