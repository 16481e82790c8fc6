"""Follow submitted flows through BullMQ's event streams; write coalesced status patches.

One reader per Redis connection XREADs the `<prefix>:<queue>:events` streams of every queue a
live flow uses; an event naming a bullflow job id marks its flow dirty. A writer re-reads dirty
flows from Redis, each at most once per `patch_interval`, and patches their status when it
changed. A slow resync marks every flow dirty: the safety net for what events cannot show (a
failed child leaves its parent in waiting-children with no event) and for trimmed streams.

Convergence does not rest on the resync. Each TrackedFlow holds the status the API server last
took (`status`); a refresh compares it with what Redis says and writes the difference, and a
refresh that could not read or write is retried with backoff (RefreshSchedule) until the two
agree. Events read before their flow was tracked are kept and replayed when it is. The readers
and the write loop survive any error. So after any fault ends, every live Flow's status matches
Redis within a few seconds, without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable

from .. import metrics
from ..cancellation import raise_if_cancelling
from ..logs import about
from ..services.flowtree import parse_job_id
from ..storage.redis_identity import Change, ServerIdentity, classify_change
from ..storage.redis_jobs import BullRedis, StreamEntry, events_key
from .connections import redacted_url
from .refresh_schedule import Outcome, RefreshSchedule
from .tracked_flow import TrackedFlow, is_submission_event, stream_id

__all__ = ["FlowTracker", "TrackedFlow", "stream_id"]

log = logging.getLogger(__name__)
# The write loop's shortest pause: marks that arrive together are handled together.
WRITE_LOOP_TICK = 0.02
# Events of flows not tracked yet (read between their submission and track()), kept this many.
EARLY_EVENTS_KEPT = 50_000
READER_RETRY_MAX_SECONDS = 1.0
# How often a reader asks Redis for its run id: a Redis restarted without its data (or with
# an older snapshot) is noticed within this, even when the client reconnected silently
# (storage/redis_identity.py: and how a failover differs).
RESTART_CHECK_SECONDS = 1.0


RefreshFn = Callable[[TrackedFlow], Awaitable[Outcome]]
Clock = Callable[[], float]


class FlowTracker:
    def __init__(
        self,
        refresh: RefreshFn,
        *,
        patch_interval: float,
        resync_interval: float,
        block_ms: int,
        max_concurrent_refreshes: int = 64,
        retry_max: float = 1.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self._refresh = refresh
        self.resync_interval = resync_interval
        self.block_ms = block_ms
        self.flows: dict[str, TrackedFlow] = {}
        self.schedule = RefreshSchedule(patch_interval, retry_max=retry_max)
        self._clock = clock
        self._positions: dict[str, dict[str, str]] = {}  # url -> stream key -> last id
        self._watchers: dict[str, Counter[str]] = {}  # url -> stream key -> live flows using it
        # token -> {stream: newest id} of events read while the token's flow was not tracked
        self._early: OrderedDict[str, dict[str, StreamEntry]] = OrderedDict()
        self._limit = asyncio.Semaphore(max_concurrent_refreshes)
        self._readers: dict[str, asyncio.Task[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self._refreshing: set[asyncio.Task[None]] = set()
        # (url, prefix) -> the server last seen holding the prefix's keys; url -> checked at
        self._identities: dict[tuple[str, str], ServerIdentity] = {}
        self._identities_checked: dict[str, float] = {}

    @property
    def dirty(self) -> set[str]:
        return self.schedule.dirty

    async def track(self, flow: TrackedFlow) -> None:
        """Follow a flow; reads its events from now on and refreshes it soon. No I/O, so it
        cannot fail: a stream whose position is unknown gets it from the reader."""
        positions = self._positions.setdefault(flow.conn.url, {})
        flow.streams = sorted({events_key(flow.prefix, j.queue) for j in flow.jobs})
        for key in flow.streams:
            if key not in positions and key in flow.own_events:
                positions[key] = flow.own_events[key]
        self.untrack(flow.token)
        self.flows[flow.token] = flow
        self._watchers.setdefault(flow.conn.url, Counter()).update(flow.streams)
        if flow.conn.url not in self._readers:
            self._readers[flow.conn.url] = asyncio.create_task(self._read_events(flow.conn))
        early = self._early.pop(flow.token, {})
        if any(not self._own_event(flow.token, entry) for entry in early.values()):
            # Its jobs moved before it was tracked (a fast worker): read them for real.
            flow.just_submitted = False
        self.mark_dirty(flow.token)

    def untrack(self, token: str) -> None:
        """Stop following a flow (finished, deleted, or about to be tracked anew)."""
        flow = self.flows.pop(token, None)
        self.schedule.drop(token)
        if flow is not None:
            watchers = self._watchers.setdefault(flow.conn.url, Counter())
            watchers.subtract(flow.streams)
            for key in flow.streams:
                if watchers[key] <= 0:
                    del watchers[key]

    def mark_dirty(self, token: str) -> None:
        if token in self.flows:
            self.schedule.mark(token)
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

    async def _resolve_positions(self, conn: BullRedis) -> None:
        """Start each newly watched stream at its newest event; the flows on it are re-read,
        as events may have come before its position was known."""
        positions = self._positions.setdefault(conn.url, {})
        new = [key for key in self._watchers.get(conn.url, ()) if key not in positions]
        for key in new:
            positions[key] = await conn.stream_tail(key)
        if new:
            fresh = set(new)
            for token, flow in list(self.flows.items()):
                if flow.conn.url == conn.url and fresh.intersection(flow.streams):
                    self.mark_dirty(token)

    async def _read_events(self, conn: BullRedis) -> None:
        """Survives any error (a lost connection, NOPERM, WRONGTYPE, a bug): one log line per
        streak, a metric, a short backoff, and every flow of the connection re-read once it
        reads again (states may have moved unseen)."""
        delay = 0.0
        while True:
            raise_if_cancelling()  # a library may have swallowed the cancellation
            try:
                await self._notice_restart(conn)
                await self._resolve_positions(conn)
                streams = self._streams_for(conn.url)
                if not streams:
                    await asyncio.sleep(0.2)
                    continue
                entries = await conn.read_events(streams, self.block_ms)
            except Exception as err:  # the reader must outlive any error
                raise_if_cancelling()
                metrics.TASK_FAILURES.labels("events-reader").inc()
                if not delay:
                    log.warning(
                        "reading BullMQ events from %s failed, retrying: %s",
                        redacted_url(conn.url),
                        err,
                    )
                delay = min(max(delay * 2, 0.1), READER_RETRY_MAX_SECONDS)
                await asyncio.sleep(delay)
                continue
            if delay:
                log.info("reading BullMQ events from %s again", redacted_url(conn.url))
                self._mark_connection_dirty(conn.url)
                delay = 0.0
            self._dispatch(conn.url, entries)

    async def _notice_restart(self, conn: BullRedis) -> None:
        """A restarted Redis may have lost jobs (and their events) with no error on this side:
        redis-py reconnects and retries on its own. Its run id changes, so every flow of the
        connection is re-read then (and a lost one ends as JobsLost). Asked of the server that
        holds each prefix's keys (on a Cluster, its slot's master); a failover to a replica of
        the same data is re-read too, but not reported as a restart (redis_identity)."""
        checked = self._identities_checked.get(conn.url)
        now = self._clock()
        if checked is not None and now - checked < RESTART_CHECK_SECONDS:
            return
        changes: set[Change] = set()
        for prefix in sorted({f.prefix for f in self.flows.values() if f.conn.url == conn.url}):
            seen = await conn.identity(prefix)
            before = self._identities.get((conn.url, prefix))
            self._identities[(conn.url, prefix)] = seen
            if before is not None and (change := classify_change(before, seen)).reread:
                changes.add(change)
        self._identities_checked[conn.url] = now
        if not changes:
            return
        where = redacted_url(conn.url)
        if Change.RESTARTED in changes:
            log.warning("Redis at %s restarted: re-reading its flows", where)
        else:
            what = " and ".join(sorted(c.value for c in changes))
            log.info("Redis at %s: %s: re-reading its flows", where, what)
        self._mark_connection_dirty(conn.url)

    def _dispatch(self, url: str, entries: list[StreamEntry]) -> None:
        positions = self._positions[url]
        for entry in entries:
            positions[entry.stream] = entry.entry_id
            parsed = parse_job_id(entry.fields.get("jobId", ""))
            if parsed is None:
                continue
            token = parsed[0]
            flow = self.flows.get(token)
            if flow is not None:
                if not self._own_event(token, entry):
                    # Its jobs moved: a refresh not started yet must read them, not take the
                    # states the submission left (this mark may be merged into its own).
                    flow.just_submitted = False
                    self.mark_dirty(token)
            else:
                self._remember_early(token, entry)

    def _remember_early(self, token: str, entry: StreamEntry) -> None:
        """Per stream, the event that decides whether the flow moved: a job's own move
        (active, completed...) once one was seen, else the newest."""
        kept = self._early.setdefault(token, {})
        before = kept.get(entry.stream)
        if before is None or is_submission_event(before):
            kept[entry.stream] = entry
        self._early.move_to_end(token)
        while len(self._early) > EARLY_EVENTS_KEPT:
            self._early.popitem(last=False)

    def _own_event(self, token: str, entry: StreamEntry) -> bool:
        """An event the flow's own submission wrote: of a kind a submission writes, at or
        before the stream's tail right after it. Only adds write those kinds: a redis-py retry
        that re-sent the transaction (its first run having added the jobs) leaves a later
        tail, and the moves workers made meanwhile must still count."""
        flow = self.flows.get(token)
        own = flow.own_events.get(entry.stream) if flow is not None else None
        return (
            own is not None
            and is_submission_event(entry)
            and stream_id(entry.entry_id) <= stream_id(own)
        )

    def _mark_connection_dirty(self, url: str) -> None:
        for token, flow in self.flows.items():
            if flow.conn.url == url:
                self.mark_dirty(token)

    async def _write_loop(self) -> None:
        """Start a refresh of each flow that is due (RefreshSchedule): a continuous pipeline
        bounded by the semaphore, never waiting for a whole round to finish; a new flow's first
        status goes out at once. Survives any error."""
        while True:
            raise_if_cancelling()  # a library may have swallowed the cancellation
            try:
                await self._wake.wait()
                self._wake.clear()
                now = self._clock()
                due, next_due = self.schedule.take_due(now)
                for token in due:
                    task = asyncio.create_task(self._refresh_one(token))
                    self._refreshing.add(task)
                    task.add_done_callback(self._refreshing.discard)
                if next_due is not None:
                    asyncio.get_running_loop().call_later(next_due - now, self._wake.set)
                await asyncio.sleep(WRITE_LOOP_TICK)
            except Exception:  # the status writer must outlive any error
                raise_if_cancelling()
                metrics.TASK_FAILURES.labels("status-writer").inc()
                log.exception("the status write loop failed; carrying on")
                self._wake.set()
                await asyncio.sleep(1.0)

    async def _refresh_one(self, token: str) -> None:
        outcome = Outcome.RETRY
        flow = self.flows.get(token)
        try:
            async with self._limit:
                flow = self.flows.get(token)
                if flow is None:
                    outcome = Outcome.GONE
                    return
                try:
                    outcome = await self._refresh(flow)
                except Exception as err:  # one flow's trouble stops no other
                    raise_if_cancelling()
                    metrics.TASK_FAILURES.labels("status-refresh").inc()
                    if not flow.failing:
                        log.exception(
                            "refreshing flow %s/%s failed, retrying: %s",
                            flow.ref.namespace,
                            flow.ref.name,
                            err,
                            extra=about(flow.ref.namespace, flow.ref.name),
                        )
                    outcome = Outcome.RETRY
                flow.failing = outcome is Outcome.RETRY
        finally:
            if outcome in (Outcome.FINISHED, Outcome.GONE) and (
                flow is None or self.flows.get(token) is flow
            ):
                self.untrack(token)
            self.schedule.done(token, outcome, self._clock())
            if self.schedule.pending():
                self._wake.set()

    async def _resync_loop(self) -> None:
        while True:
            raise_if_cancelling()  # a library may have swallowed the cancellation
            await asyncio.sleep(self.resync_interval)
            for token in list(self.flows):
                self.mark_dirty(token)
