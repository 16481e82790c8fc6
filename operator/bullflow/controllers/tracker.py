"""Follow submitted flows through BullMQ's event streams; write coalesced status patches.

One reader per Redis connection XREADs the `<prefix>:<queue>:events` streams of every queue a
live flow uses; an event naming a bullflow job id marks its flow dirty. A writer re-reads dirty
flows from Redis, each at most once per `patch_interval`, and patches their status when it changed.
A slow resync marks every flow dirty: the safety net for what events cannot show (a failed
child leaves its parent in waiting-children with no event) and for trimmed streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import InitVar, dataclass, field

from ..models.flow import FlowStatus
from ..services.flowtree import PlannedJob, parse_job_id
from ..storage.kube import ObjectRef
from ..storage.redis_jobs import REDIS_ERRORS, BullRedis, StreamEntry, events_key

log = logging.getLogger(__name__)
# The write loop's shortest pause: marks that arrive together are handled together.
WRITE_LOOP_TICK = 0.02


@dataclass(slots=True)
class TrackedFlow:
    ref: ObjectRef
    conn: BullRedis
    prefix: str
    jobs: list[PlannedJob]
    generation: int | None
    initial_status: InitVar[FlowStatus]
    ttl_seconds: int | None = None
    token: str = ""  # what job ids derive from: the uid, or the idempotency key's digest
    keeps_outcome: bool = False  # record the final status in the marker (idempotencyKey)
    # Submitted by this very reconcile: the first status is built from the states the submission
    # left (flowstatus.just_submitted); the jobs are read for real once an event after
    # `own_events`, or the resync, marks the flow dirty.
    just_submitted: bool = False
    # {events stream: last id} right after the submission transaction: the events at or before
    # it are the submission's own ("added", "waiting"...), already in the first status.
    own_events: dict[str, str] = field(default_factory=dict)
    streams: list[str] = field(default_factory=list)
    # The last written status as JSON: thousands of live flows stay cheap in memory (a parsed
    # FlowStatus weighs several times more).
    _status_json: bytes = b""

    def __post_init__(self, initial_status: FlowStatus) -> None:
        self.token = self.token or self.ref.uid
        self.status = initial_status

    @property
    def status(self) -> FlowStatus:
        return FlowStatus.model_validate_json(self._status_json)

    @status.setter
    def status(self, value: FlowStatus) -> None:
        self._status_json = value.model_dump_json(by_alias=True).encode()


def stream_id(value: str) -> tuple[int, int]:
    """A Redis stream entry id ("<ms>-<seq>") in its order."""
    ms, _, seq = value.partition("-")
    return int(ms), int(seq or 0)


RefreshFn = Callable[[TrackedFlow], Awaitable[bool]]


class FlowTracker:
    def __init__(
        self,
        refresh: RefreshFn,
        *,
        patch_interval: float,
        resync_interval: float,
        block_ms: int,
        max_concurrent_refreshes: int = 64,
    ) -> None:
        self._refresh = refresh
        self.patch_interval = patch_interval
        self.resync_interval = resync_interval
        self.block_ms = block_ms
        self.flows: dict[str, TrackedFlow] = {}
        self.dirty: set[str] = set()
        self._positions: dict[str, dict[str, str]] = {}  # url -> stream key -> last id
        self._watchers: dict[str, Counter[str]] = {}  # url -> stream key -> live flows using it
        self._limit = asyncio.Semaphore(max_concurrent_refreshes)
        self._readers: dict[str, asyncio.Task[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self._in_flight: set[str] = set()
        self._not_before: dict[str, float] = {}  # token -> monotonic time of its next refresh
        self._refreshing: set[asyncio.Task[None]] = set()

    async def track(self, flow: TrackedFlow) -> None:
        """Follow a flow; reads its events from now on and refreshes it soon."""
        positions = self._positions.setdefault(flow.conn.url, {})
        flow.streams = sorted({events_key(flow.prefix, j.queue) for j in flow.jobs})
        for key in flow.streams:
            if key not in positions:
                positions[key] = flow.own_events.get(key) or await flow.conn.stream_tail(key)
        self.forget(flow.token)
        self.flows[flow.token] = flow
        self._watchers.setdefault(flow.conn.url, Counter()).update(flow.streams)
        if flow.conn.url not in self._readers:
            self._readers[flow.conn.url] = asyncio.create_task(self._read_events(flow.conn))
        self.mark_dirty(flow.token)

    def forget(self, token: str) -> None:
        flow = self.flows.pop(token, None)
        self.dirty.discard(token)
        self._not_before.pop(token, None)
        if flow is not None:
            watchers = self._watchers[flow.conn.url]
            watchers.subtract(flow.streams)
            for key in flow.streams:
                if watchers[key] <= 0:
                    del watchers[key]

    def mark_dirty(self, token: str) -> None:
        if token in self.flows:
            self.dirty.add(token)
            self._wake.set()

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._write_loop()),
            asyncio.create_task(self._resync_loop()),
        ]

    async def stop(self) -> None:
        tasks = [*self._tasks, *self._readers.values(), *self._refreshing]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._readers.clear()

    def _streams_for(self, url: str) -> dict[str, str]:
        positions = self._positions.get(url, {})
        return {key: positions[key] for key in self._watchers.get(url, ()) if key in positions}

    async def _read_events(self, conn: BullRedis) -> None:
        delay = 0.2
        while True:
            streams = self._streams_for(conn.url)
            if not streams:
                await asyncio.sleep(0.2)
                continue
            try:
                entries = await conn.read_events(streams, self.block_ms)
                if delay > 0.2:  # recovered from an outage: states may have moved unseen
                    self._mark_connection_dirty(conn.url)
                delay = 0.2
            except REDIS_ERRORS as err:
                log.warning("reading BullMQ events from %s failed: %s", conn.url, err)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30)
                continue
            positions = self._positions[conn.url]
            for entry in entries:
                positions[entry.stream] = entry.entry_id
                parsed = parse_job_id(entry.fields.get("jobId", ""))
                if parsed and not self._own_event(parsed[0], entry):
                    self.mark_dirty(parsed[0])

    def _own_event(self, token: str, entry: StreamEntry) -> bool:
        flow = self.flows.get(token)
        own = flow.own_events.get(entry.stream) if flow is not None else None
        return own is not None and stream_id(entry.entry_id) <= stream_id(own)

    def _mark_connection_dirty(self, url: str) -> None:
        for token, flow in self.flows.items():
            if flow.conn.url == url:
                self.mark_dirty(token)

    async def _write_loop(self) -> None:
        """Start a refresh of each dirty flow that is not being refreshed already and was not
        refreshed in the last `patch_interval` (the coalescing: one marked dirty meanwhile waits
        for its turn). A continuous pipeline bounded by the semaphore, never waiting for a whole
        round to finish; a new flow's first status goes out at once."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            now = time.monotonic()
            later: list[float] = []
            for token in list(self.dirty - self._in_flight):
                due = self._not_before.get(token, 0.0)
                if due > now:
                    later.append(due)
                    continue
                self.dirty.discard(token)
                self._not_before[token] = now + self.patch_interval
                self._in_flight.add(token)
                task = asyncio.create_task(self._refresh_one(token))
                self._refreshing.add(task)
                task.add_done_callback(self._refreshing.discard)
            if later:
                asyncio.get_running_loop().call_later(min(later) - now, self._wake.set)
            await asyncio.sleep(WRITE_LOOP_TICK)

    async def _refresh_one(self, token: str) -> None:
        try:
            async with self._limit:
                flow = self.flows.get(token)
                if flow is None:
                    return
                try:
                    finished = await self._refresh(flow)
                except Exception:  # one flow's trouble must not stop the others; resync retries
                    log.exception("refreshing flow %s/%s failed", flow.ref.namespace, flow.ref.name)
                    return
            if finished and self.flows.get(token) is flow:
                self.forget(token)
        finally:
            self._in_flight.discard(token)
            if token in self.dirty:
                self._wake.set()

    async def _resync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.resync_interval)
            for token in list(self.flows):
                self.mark_dirty(token)
