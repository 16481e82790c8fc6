"""FlowTracker's event filter: a flow's own submission events do not make it dirty."""

from __future__ import annotations

from typing import Any

from bullflow.controllers.tracker import FlowTracker, TrackedFlow, stream_id
from bullflow.models.flow import FlowStatus
from bullflow.storage.kube import ObjectRef
from bullflow.storage.redis_jobs import StreamEntry


async def _refresh(_flow: TrackedFlow) -> bool:
    return False


def tracker_with(own_events: dict[str, str]) -> FlowTracker:
    tracker = FlowTracker(_refresh, patch_interval=0.1, resync_interval=60, block_ms=100)
    conn: Any = None  # never used: nothing is read
    flow = TrackedFlow(
        ObjectRef("Flow", "flows", "ns", "f", "uid1"),
        conn,
        "bull",
        [],
        1,
        FlowStatus(),
        own_events=own_events,
    )
    tracker.flows[flow.token] = flow
    return tracker


def entry(stream: str, entry_id: str) -> StreamEntry:
    return StreamEntry(stream, entry_id, {"jobId": "bf-uid1-0.1"})


def test_stream_ids_compare_in_stream_order():
    assert stream_id("1700000000000-9") < stream_id("1700000000000-10")
    assert stream_id("1700000000001-0") > stream_id("1700000000000-99")
    assert stream_id("5") == (5, 0)


def test_only_events_after_the_submission_count():
    tracker = tracker_with({"bull:q:events": "1700000000000-5"})
    assert tracker._own_event("uid1", entry("bull:q:events", "1700000000000-5"))
    assert tracker._own_event("uid1", entry("bull:q:events", "1699999999999-70"))
    assert not tracker._own_event("uid1", entry("bull:q:events", "1700000000000-6"))
    assert not tracker._own_event("uid1", entry("bull:other:events", "1600000000000-0"))
    assert not tracker._own_event("gone", entry("bull:q:events", "1600000000000-0"))


def test_a_flow_read_for_real_counts_every_event():
    assert not tracker_with({})._own_event("uid1", entry("bull:q:events", "1-0"))


async def test_a_new_flow_is_written_at_once_then_at_most_once_per_interval():
    import asyncio
    import time

    refreshed: dict[str, list[float]] = {"a": [], "b": []}

    async def refresh(flow: TrackedFlow) -> bool:
        refreshed[flow.token].append(time.monotonic())
        return False

    tracker = FlowTracker(refresh, patch_interval=0.5, resync_interval=60, block_ms=100)
    template = tracker_with({}).flows["uid1"]
    for token in refreshed:
        tracker.flows[token] = TrackedFlow(
            template.ref, template.conn, "bull", [], 1, FlowStatus(), token=token
        )
    tracker.start()
    try:
        tracker.mark_dirty("a")
        await asyncio.sleep(0.1)
        assert len(refreshed["a"]) == 1
        tracker.mark_dirty("b")  # "a" was just written: a new flow must not wait for its turn
        await asyncio.sleep(0.1)
        assert len(refreshed["b"]) == 1 and refreshed["b"][0] < refreshed["a"][0] + 0.5
        for _ in range(5):  # "a" marked again and again: coalesced into one more, 0.5 s after
            tracker.mark_dirty("a")
            await asyncio.sleep(0.05)
        assert len(refreshed["a"]) == 1
        await asyncio.sleep(0.4)
        assert len(refreshed["a"]) == 2 and refreshed["a"][1] - refreshed["a"][0] >= 0.5
    finally:
        await tracker.stop()
