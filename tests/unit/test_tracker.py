"""FlowTracker: which events make a flow dirty, events read before a flow is tracked, and the
long-lived tasks outliving errors. Waits are on observables with deadlines, never margins."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import pytest

from bullflow.controllers.refresh_schedule import Outcome
from bullflow.controllers.tracker import FlowTracker, TrackedFlow, stream_id
from bullflow.models.flow import FlowStatus
from bullflow.services.flowtree import PlannedJob
from bullflow.storage.kube import ObjectRef
from bullflow.storage.redis_identity import NO_REPLID, ServerIdentity
from bullflow.storage.redis_jobs import StreamEntry
from tests.harness.aio import until

TOKEN = "0b5c2a3e-1111-4222-8333-444455556666"
STREAM = "bull:q:events"


async def _current(_flow: TrackedFlow) -> Outcome:
    return Outcome.CURRENT


def tracked(own_events: dict[str, str], conn: Any = None, token: str = TOKEN) -> TrackedFlow:
    job = PlannedJob("0", None, f"bf-{token}-0", "root", "q", False, False, False, False)
    return TrackedFlow(
        ObjectRef("Flow", "flows", "ns", "f", token),
        conn,
        "bull",
        [job],
        1,
        FlowStatus(),
        token=token,
        own_events=own_events,
    )


def tracker_with(own_events: dict[str, str], refresh: Any = _current) -> FlowTracker:
    tracker = FlowTracker(refresh, patch_interval=0.1, resync_interval=600, block_ms=100)
    flow = tracked(own_events)
    tracker.flows[flow.token] = flow
    return tracker


def entry(stream: str, entry_id: str, token: str = TOKEN, event: str = "added") -> StreamEntry:
    return StreamEntry(stream, entry_id, {"event": event, "jobId": f"bf-{token}-0"})


def test_stream_ids_compare_in_stream_order():
    assert stream_id("1700000000000-9") < stream_id("1700000000000-10")
    assert stream_id("1700000000001-0") > stream_id("1700000000000-99")
    assert stream_id("5") == (5, 0)


def test_only_events_after_the_submission_count():
    tracker = tracker_with({STREAM: "1700000000000-5"})
    assert tracker._own_event(TOKEN, entry(STREAM, "1700000000000-5"))
    assert tracker._own_event(TOKEN, entry(STREAM, "1699999999999-70"))
    assert not tracker._own_event(TOKEN, entry(STREAM, "1700000000000-6"))
    assert not tracker._own_event(TOKEN, entry("bull:other:events", "1600000000000-0"))
    assert not tracker._own_event("gone", entry(STREAM, "1600000000000-0"))


def test_a_worker_s_move_is_never_the_submission_s_own_even_before_its_tail():
    """redis-py re-sent a transaction whose first run had added the jobs: workers moved them
    before the tail taken by the second run. Those moves must count."""
    tracker = tracker_with({STREAM: "1700000000000-50"})
    assert not tracker._own_event(TOKEN, entry(STREAM, "1700000000000-7", event="active"))
    assert not tracker._own_event(TOKEN, entry(STREAM, "1700000000000-8", event="completed"))
    assert tracker._own_event(TOKEN, entry(STREAM, "1700000000000-9", event="duplicated"))


def test_a_flow_read_for_real_counts_every_event():
    assert not tracker_with({})._own_event(TOKEN, entry(STREAM, "1-0"))


class StubConn:
    """What the tracker asks of a Redis connection; read_events replays a script."""

    url = "redis://127.0.0.1:1/0"

    def __init__(self, script: list[Any] | None = None) -> None:
        self.script = list(script or [])
        self.reads = 0

    async def stream_tail(self, _key: str) -> str:
        return "1700000000000-0"

    async def identity(self, _prefix: str) -> ServerIdentity:
        return ServerIdentity("127.0.0.1:1", self.server_run_id, self.replid, self.replid2)

    server_run_id = "first"
    replid = "a" * 40
    replid2 = NO_REPLID

    async def read_events(self, _streams: dict[str, str], _block_ms: int) -> list[StreamEntry]:
        self.reads += 1
        if not self.script:
            await asyncio.sleep(0.05)
            return []
        step = self.script.pop(0)
        if isinstance(step, BaseException):
            raise step
        return list(step)


async def test_an_event_read_before_its_flow_is_tracked_makes_the_first_refresh_read_redis():
    """A fast worker finishes a job between the submission and track(): the reader (already
    past that event for another flow on the same queue) must not drop it."""
    tracker = FlowTracker(_current, patch_interval=0.1, resync_interval=600, block_ms=100)
    tracker._positions[StubConn.url] = {STREAM: "1700000000000-0"}
    tracker._dispatch(StubConn.url, [entry(STREAM, "1700000000000-9", event="completed")])
    flow = tracked({STREAM: "1700000000000-5"}, StubConn())
    flow.just_submitted = True
    await tracker.track(flow)
    assert not flow.just_submitted and TOKEN in tracker.dirty
    await tracker.stop()


async def test_only_its_own_submission_events_read_early_keep_the_shortcut():
    tracker = FlowTracker(_current, patch_interval=0.1, resync_interval=600, block_ms=100)
    tracker._positions[StubConn.url] = {STREAM: "1700000000000-0"}
    tracker._dispatch(StubConn.url, [entry(STREAM, "1700000000000-5")])  # its own "added"
    flow = tracked({STREAM: "1700000000000-5"}, StubConn())
    flow.just_submitted = True
    await tracker.track(flow)
    assert flow.just_submitted
    await tracker.stop()


async def test_the_events_reader_outlives_any_error():
    """Connection errors, NOPERM, a bug: the reader logs, backs off and reads on; the flows of
    the connection are re-read once it reads again."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import NoPermissionError

    refreshed: list[str] = []

    async def refresh(flow: TrackedFlow) -> Outcome:
        refreshed.append(flow.token)
        return Outcome.CURRENT

    conn = StubConn(
        [
            RedisConnectionError("Connection refused"),
            NoPermissionError("NOPERM this user has no permissions to run the 'xread' command"),
            RuntimeError("a bug"),
            [entry(STREAM, "1700000000000-7")],
        ]
    )
    tracker = FlowTracker(refresh, patch_interval=0.05, resync_interval=600, block_ms=100)
    tracker.start()
    try:
        await tracker.track(tracked({}, conn))
        await until(lambda: conn.reads >= 5, "the reader to read past three errors")
        await until(lambda: len(refreshed) >= 2, "a refresh after the reader recovered")
        assert not tracker._readers[conn.url].done()
    finally:
        await tracker.stop()


async def test_a_refresh_that_failed_is_retried_until_it_succeeds():
    outcomes = [Outcome.RETRY, Outcome.RETRY, Outcome.RETRY, Outcome.CURRENT]
    calls: list[Outcome] = []

    async def refresh(_flow: TrackedFlow) -> Outcome:
        calls.append(outcomes[len(calls)])
        if len(calls) == 2:
            raise RuntimeError("an unexpected error is a failure like any other")
        return calls[-1]

    tracker = FlowTracker(refresh, patch_interval=0.01, resync_interval=600, block_ms=100)
    tracker.schedule.retry_base = 0.01
    tracker.start()
    try:
        await tracker.track(tracked({}, StubConn()))
        await until(lambda: len(calls) == 4, "four refreshes: three failures, then success")
        await until(lambda: not tracker.schedule.failures, "the failure streak to end")
        assert TOKEN in tracker.flows and not tracker.flows[TOKEN].failing
    finally:
        await tracker.stop()


async def test_a_finished_flow_is_no_longer_followed():
    async def finished(_flow: TrackedFlow) -> Outcome:
        return Outcome.FINISHED

    tracker = FlowTracker(finished, patch_interval=0.01, resync_interval=600, block_ms=100)
    tracker.start()
    try:
        await tracker.track(tracked({}, StubConn()))
        await until(lambda: TOKEN not in tracker.flows, "the finished flow to be forgotten")
    finally:
        await tracker.stop()


async def test_an_event_read_before_the_first_refresh_makes_it_read_redis():
    """The event's mark merges into the one track() made: the refresh that takes both must
    read the jobs, not write the states the submission left."""
    tracker = FlowTracker(_current, patch_interval=0.1, resync_interval=600, block_ms=100)
    flow = tracked({STREAM: "1700000000000-5"}, StubConn())
    flow.just_submitted = True
    await tracker.track(flow)
    tracker._dispatch(StubConn.url, [entry(STREAM, "1700000000000-5")])  # its own "added"
    assert flow.just_submitted
    tracker._dispatch(StubConn.url, [entry(STREAM, "1700000000000-9", event="completed")])
    assert not flow.just_submitted and tracker.dirty == {TOKEN}
    await tracker.stop()


@pytest.mark.parametrize("failover", [False, True], ids=["restart", "failover"])
async def test_a_redis_restart_the_client_hid_makes_every_flow_be_read_again(
    failover: bool, caplog: pytest.LogCaptureFixture
):
    """redis-py reconnects and retries by itself: no error reaches the reader, but Redis may
    have lost the jobs. Its run id tells. A replica that took over (Sentinel, Cluster) has a
    new run id too: its flows are re-read (the last writes may not have reached it), but it
    is not reported as a restart."""
    caplog.set_level(logging.INFO, logger="bullflow.controllers.tracker")
    refreshed: list[str] = []

    async def refresh(flow: TrackedFlow) -> Outcome:
        refreshed.append(flow.token)
        return Outcome.CURRENT

    now = [100.0]
    conn = StubConn()
    tracker = FlowTracker(
        refresh, patch_interval=0.01, resync_interval=600, block_ms=100, clock=lambda: now[0]
    )
    tracker.start()
    try:
        await tracker.track(tracked({}, conn))
        await until(lambda: len(refreshed) >= 1 and conn.reads >= 1, "the first refresh")
        now[0] += 0.5  # marks held back by the patch interval go out; no run id check yet
        reads = conn.reads
        await until(lambda: conn.reads > reads + 1, "the reader going on")
        before = len(refreshed)
        conn.server_run_id = "after-restart"
        if failover:  # the promoted replica keeps its old master's replication id as replid2
            conn.replid, conn.replid2 = "b" * 40, conn.replid
        else:  # a fresh process: a new replication history
            conn.replid = "c" * 40
        now[0] += 5  # the next check is due
        await until(lambda: len(refreshed) > before, "a refresh after the restart was noticed")
        await until(lambda: conn.reads > reads + 4, "the reader going on")
    finally:
        await tracker.stop()
    said = [r.getMessage() for r in caplog.records if "re-reading its flows" in r.getMessage()]
    assert said, "nothing logged"
    assert ("restarted" in said[0]) is not failover, said
    assert ("a replica took over" in said[0]) is failover, said


async def test_the_reader_stops_even_when_a_library_swallows_its_cancellation():
    """redis-py can catch a cancellation inside a command and return (or raise its own
    error): the reader must still stop, or the operator's shutdown waits forever."""

    class Swallowing(StubConn):
        async def identity(self, prefix: str) -> ServerIdentity:
            with contextlib.suppress(asyncio.CancelledError):  # what a library may do
                await asyncio.sleep(0.05)
            return await super().identity(prefix)

        async def read_events(self, streams: dict[str, str], block_ms: int) -> list[StreamEntry]:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0.05)
            return []

    conn = Swallowing()
    tracker = FlowTracker(_current, patch_interval=0.05, resync_interval=600, block_ms=100)
    tracker.start()
    await tracker.track(tracked({}, conn))
    await asyncio.sleep(0.2)
    await asyncio.wait_for(tracker.stop(), 10)
