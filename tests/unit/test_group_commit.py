"""GroupCommit: batches form from what arrives during a write, and each caller gets its own
outcome."""

from __future__ import annotations

import asyncio

import pytest

from bullflow.storage.batching import GroupCommit


class Writer:
    """Records batches; the first write can be held open to let others queue meanwhile."""

    def __init__(self, hold_first: bool = False) -> None:
        self.batches: list[list[str]] = []
        self.release = asyncio.Event()
        if not hold_first:
            self.release.set()
        self.fail_next: Exception | None = None

    async def __call__(self, items: list[str]) -> list[str | Exception]:
        self.batches.append(list(items))
        await self.release.wait()
        if self.fail_next is not None:
            err, self.fail_next = self.fail_next, None
            raise err
        return [ValueError(i) if i.startswith("bad") else i.upper() for i in items]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_lone_request_is_written_at_once_and_alone():
    writer = Writer()
    commit = GroupCommit(writer)
    assert await commit("a") == "A"
    assert writer.batches == [["a"]]


async def test_requests_made_during_a_write_go_together_in_the_next():
    writer = Writer(hold_first=True)
    commit = GroupCommit(writer)
    first = asyncio.ensure_future(commit("a"))
    await settle()
    assert writer.batches == [["a"]]
    rest = [asyncio.ensure_future(commit(x)) for x in "bcd"]
    await settle()
    assert writer.batches == [["a"]]  # nothing is written while a write is in flight
    writer.release.set()
    assert await first == "A"
    assert await asyncio.gather(*rest) == ["B", "C", "D"]
    assert writer.batches == [["a"], ["b", "c", "d"]]


async def test_a_batch_stops_at_max_weight_and_a_heavier_item_goes_alone():
    writer = Writer(hold_first=True)
    commit = GroupCommit(writer, weight=len, max_weight=4)
    calls = [asyncio.ensure_future(commit(x)) for x in ("a", "bb", "cc", "d", "eeeeee", "f")]
    await settle()
    writer.release.set()
    assert await asyncio.gather(*calls) == ["A", "BB", "CC", "D", "EEEEEE", "F"]
    assert writer.batches == [["a", "bb"], ["cc", "d"], ["eeeeee"], ["f"]]


async def test_each_caller_gets_its_own_outcome():
    writer = Writer(hold_first=True)
    commit = GroupCommit(writer)
    calls = [asyncio.ensure_future(commit(x)) for x in ("a", "bad1", "c")]
    await settle()
    writer.release.set()
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert outcomes[0] == "A" and outcomes[2] == "C"
    assert isinstance(outcomes[1], ValueError) and str(outcomes[1]) == "bad1"
    assert writer.batches == [["a", "bad1", "c"]]


async def test_a_failed_write_fails_its_batch_only():
    writer = Writer(hold_first=True)
    writer.fail_next = ConnectionError("redis is down")
    commit = GroupCommit(writer)
    first = asyncio.ensure_future(commit("a"))
    await settle()
    later = asyncio.ensure_future(commit("b"))
    await settle()
    writer.release.set()
    with pytest.raises(ConnectionError, match="redis is down"):
        await first
    assert await later == "B"


async def test_a_cancelled_caller_is_not_written_and_the_others_are_served():
    writer = Writer(hold_first=True)
    commit = GroupCommit(writer)
    first = asyncio.ensure_future(commit("a"))
    await settle()
    gone, kept = asyncio.ensure_future(commit("b")), asyncio.ensure_future(commit("c"))
    await settle()
    gone.cancel()
    writer.release.set()
    assert await first == "A"
    assert await kept == "C"
    assert writer.batches == [["a"], ["c"]]


async def test_writing_starts_again_after_the_queue_ran_dry():
    writer = Writer()
    commit = GroupCommit(writer)
    assert await commit("a") == "A"
    await settle()
    assert await commit("b") == "B"
    assert writer.batches == [["a"], ["b"]]


async def test_close_cancels_what_is_pending():
    writer = Writer(hold_first=True)
    commit = GroupCommit(writer)
    calls = [asyncio.ensure_future(commit(x)) for x in "ab"]
    await settle()
    queued = asyncio.ensure_future(commit("c"))
    await settle()
    await commit.close()
    for call in [*calls, queued]:
        with pytest.raises(asyncio.CancelledError):
            await call
