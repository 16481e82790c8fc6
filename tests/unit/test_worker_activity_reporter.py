"""The worker runtime's background loops end when cancelled, whatever the timing."""

from __future__ import annotations

import asyncio
import socket
from typing import Any, Literal

import pytest

from bullflow_worker.runtime import Settings, WorkerApp

pytestmark = pytest.mark.unit


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _never_called(job: Any, token: str) -> Any:
    raise AssertionError("no job runs here")


class WatchedEvent(asyncio.Event):
    """An Event that tells when someone is waiting on it."""

    def __init__(self) -> None:
        super().__init__()
        self.waited_on = asyncio.Event()

    async def wait(self) -> Literal[True]:
        self.waited_on.set()
        try:
            return await super().wait()
        finally:
            self.waited_on.clear()


async def test_activity_reporter_ends_when_cancelled_as_activity_changes() -> None:
    """A drain cancels the reporter just as the last job's end changes the activity. On
    Python 3.11 `asyncio.wait_for` swallowed a cancel landing in that tick: the reporter
    looped on, the drained worker never exited and was SIGKILLed at the end of its grace."""
    url = f"redis://127.0.0.1:{_closed_port()}/0"  # the SET fails at once; it is only logged
    app = WorkerApp(Settings(queues=["q"], processor_spec="m:f", redis_url=url), _never_called)
    changed = app._activity_changed = WatchedEvent()
    for _ in range(3):
        reporter = asyncio.create_task(app._report_activity("activity"))
        # Until the reporter waits for a change (it has tried its SET first), checked again
        # right before the set: its wait may have timed out and looped in between.
        while not changed.waited_on.is_set():
            await asyncio.wait_for(changed.waited_on.wait(), 30)
        app._activity_changed.set()
        await asyncio.sleep(0)  # its wait has finished; the reporter has not resumed yet
        reporter.cancel()
        done, _ = await asyncio.wait([reporter], timeout=30)
        assert reporter in done, "the reporter ignored its cancel"
        assert reporter.cancelled()
