"""The tracker's events reader and the submission marker against a real redis-server: errors
that are not connection errors (NOPERM) do not end the reader; the marker update is atomic."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from urllib.parse import urlparse

import pytest
import redis.asyncio as aioredis

from bullflow.controllers.refresh_schedule import Outcome
from bullflow.controllers.tracker import FlowTracker, TrackedFlow
from bullflow.models.flow import FlowStatus
from bullflow.services.flowtree import PlannedJob, job_id
from bullflow.storage.kube import ObjectRef
from bullflow.storage.redis_jobs import BullRedis, events_key, marker_key
from tests.harness.aio import until


@pytest.fixture
async def admin(redis_url):
    client = aioredis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


async def test_the_events_reader_survives_noperm_and_reads_on_once_allowed(
    admin, redis_url, redis_prefix, caplog
):
    user, password = f"reader-{uuid.uuid4().hex[:6]}", f"pw-{uuid.uuid4().hex}"
    await admin.execute_command(
        "ACL", "SETUSER", user, "on", f">{password}", "~*", "+@all", "-xread"
    )
    parsed = urlparse(redis_url)
    conn = BullRedis(f"redis://{user}:{password}@{parsed.hostname}:{parsed.port}/0")
    token = str(uuid.uuid4())
    stream = events_key(redis_prefix, "q")
    await admin.xadd(stream, {"event": "added", "jobId": "someone-else"})
    refreshes: list[float] = []

    async def refresh(_flow: TrackedFlow) -> Outcome:
        refreshes.append(asyncio.get_running_loop().time())
        return Outcome.CURRENT

    tracker = FlowTracker(refresh, patch_interval=0.05, resync_interval=600, block_ms=100)
    tracker.start()
    job = PlannedJob("0", None, job_id(token, "0"), "root", "q", False, False, False, False)
    flow = TrackedFlow(
        ObjectRef("Flow", "flows", "ns", "f", token), conn, redis_prefix, [job], 1, FlowStatus()
    )
    try:
        with caplog.at_level(logging.WARNING, logger="bullflow.controllers.tracker"):
            await tracker.track(flow)
            await until(lambda: len(refreshes) == 1, "the first refresh")
            await until(lambda: "no permissions" in caplog.text, "the reader to log NOPERM")
        assert password not in caplog.text
        await admin.xadd(stream, {"event": "completed", "jobId": job.job_id})
        await admin.execute_command("ACL", "SETUSER", user, "+xread")
        await until(lambda: len(refreshes) >= 2, "a refresh once the reader may read again")
        assert not tracker._readers[conn.url].done()
    finally:
        await tracker.stop()
        await conn.close()
        await admin.execute_command("ACL", "DELUSER", user)


async def test_the_marker_update_merges_fields_and_never_brings_a_deleted_marker_back(
    admin, redis_url, redis_prefix
):
    conn = BullRedis(redis_url)
    token = uuid.uuid4().hex
    key = marker_key(redis_prefix, token)
    try:
        await admin.set(key, json.dumps({"uid": "u1", "name": "a", "submittedAt": "t"}))
        await asyncio.gather(
            conn.update_marker(redis_prefix, token, final_status={"phase": "Completed"}),
            conn.update_marker(redis_prefix, token, owner=("u2", "b")),
        )
        merged = json.loads(await admin.get(key))
        assert merged == {
            "uid": "u2",
            "name": "b",
            "submittedAt": "t",
            "status": {"phase": "Completed"},
        }
        await admin.delete(key)
        await conn.update_marker(redis_prefix, token, final_status={"phase": "Failed"})
        assert not await admin.exists(key)
    finally:
        await conn.close()


async def test_a_submission_whose_scripts_redis_lost_is_taken_back_and_retried(
    admin, redis_url, redis_prefix, monkeypatch
):
    """Redis restarts between redis-py's script check and the MULTI/EXEC (re-sent on a new
    connection): every EVALSHA fails with NOSCRIPT while the marker's SET succeeds. The marker
    must not stay (the flow would count as submitted with no jobs): it is taken back and the
    submission fails as retriable; the retry adds every job once."""
    from redis.asyncio.client import Pipeline

    from bullflow.models.flow import FlowSpec
    from bullflow.models.marker import SubmissionMarker
    from bullflow.services.flowtree import plan, to_flowproducer
    from bullflow.storage.redis_jobs import ScriptsLost

    spec = FlowSpec.model_validate(
        {"root": {"name": "p", "queueName": "s", "children": [{"name": "c", "queueName": "s"}]}}
    )
    token = str(uuid.uuid4())
    marker = SubmissionMarker(flow_uid=token, name="f", namespace="ns", submitted_at="t", jobs=2)
    load_scripts = Pipeline.load_scripts

    async def load_then_lose(self: Pipeline) -> None:
        await load_scripts(self)
        await admin.script_flush()

    conn = BullRedis(redis_url)
    try:
        monkeypatch.setattr(Pipeline, "load_scripts", load_then_lose)
        with pytest.raises(ScriptsLost):
            await conn.submit(redis_prefix, to_flowproducer(spec, token), token, marker)
        assert not await admin.exists(marker_key(redis_prefix, token))
        monkeypatch.setattr(Pipeline, "load_scripts", load_scripts)
        assert await conn.submit(redis_prefix, to_flowproducer(spec, token), token, marker)
        snaps = await conn.snapshots(redis_prefix, plan(spec, token))
        assert sorted(s.state for s in snaps.values()) == ["waiting", "waiting-children"]
        added = [
            f for _, f in await admin.xrange(events_key(redis_prefix, "s")) if f["event"] == "added"
        ]
        assert len(added) == 2
    finally:
        await conn.close()
