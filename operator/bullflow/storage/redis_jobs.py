"""BullMQ in Redis: atomic flow submission, job snapshots, events, removal.

Submission and state reads go through Python bullmq (FlowProducer's tree building, its Lua
scripts). A few reads use BullMQ's keys directly because Python bullmq 3.x has no getter for
them: the `:failed` hash behind Node's getIgnoredChildrenFailures, and the events stream tail.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import redis.asyncio as aioredis
from bullmq import FlowProducer
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import Connection as AsyncConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import (
    AskError,
    ClusterDownError,
    NoScriptError,
    ReadOnlyError,
    RedisClusterException,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bullflow_worker.redis_address import parse_redis_address
from bullflow_worker.redis_clients import async_client

from ..models.marker import SubmissionMarker
from ..redaction import scrub
from ..services.flowstatus import JobSnapshot
from ..services.flowtree import PlannedJob
from .batching import GroupCommit
from .redis_identity import ServerIdentity
from .redis_nodes import SlotRouter
from .redis_packing import with_hiredis_packing

T = TypeVar("T")

# Redis could not be reached or did not answer in time; redis-py wraps socket errors in its own
# ConnectionError, the builtin ones cover what escapes it (asyncio timeouts, resets mid-read).
# Not OSError at large: a file or TLS-configuration error is not "Redis unreachable". On a
# Cluster also: no master for the slot yet (an election), a slot still moving after the
# retries of redis_nodes.SlotRouter, and RedisClusterException: what redis-py raises when no
# seed node answers or accepts the credentials (at startup, or after losing every node), the
# ConnectionError or AuthenticationError as its cause. (Sentinel's MasterNotFoundError is a
# ConnectionError.)
REDIS_ERRORS = (
    RedisConnectionError,
    RedisTimeoutError,
    ConnectionError,
    TimeoutError,
    ClusterDownError,
    TryAgainError,
    AskError,
    RedisClusterException,  # SlotNotCoveredError is one
)
MARKER_PREFIX = "bullflow:flow"
# Flows submitted together share one MULTI/EXEC up to this many jobs (a bigger flow goes alone):
# Redis runs a transaction's scripts without serving anyone else: the cap bounds that wait.
MAX_JOBS_PER_TRANSACTION = 2000


class SubmissionRejected(Exception):
    """BullMQ's scripts refused some jobs (negative codes); the others were added."""


class ScriptsLost(RedisConnectionError):
    """Redis lost its script cache (it restarted) between redis-py's script check and the
    transaction, which redis-py re-sent on a new connection: BullMQ's EVALSHAs failed while the
    marker was set. The marker is taken back and the submission is retried like any other
    connection error; jobs that did get added are not added twice (BullMQ keeps a job id once)."""


# Deletes the marker only if it is still the one this submission wrote. EVAL, not EVALSHA: it
# runs right after Redis proved it lost its scripts.
_UNDO_MARKER = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end"


@dataclass(frozen=True)
class StreamEntry:
    stream: str
    entry_id: str
    fields: dict[str, str]


# The lists BullMQ's getState looks a job up in, in its order (Scripts.getState's keys).
STATE_LISTS = [
    "completed",
    "failed",
    "delayed",
    "active",
    "wait",
    "paused",
    "waiting-children",
    "prioritized",
]


def marker_key(prefix: str, token: str) -> str:
    """Written in the same MULTI/EXEC as the jobs: proof that this flow was submitted."""
    return f"{MARKER_PREFIX}:{prefix}:{token}"


def events_key(prefix: str, queue: str) -> str:
    return f"{prefix}:{queue}:events"


def job_key(prefix: str, queue: str, job_id: str) -> str:
    return f"{prefix}:{queue}:{job_id}"


def _newest_id(reply: Any) -> str:
    """The id in an `XREVRANGE <key> + - COUNT 1` reply; "0-0" (before any) for an empty stream."""
    return reply[0][0] if reply else "0-0"


def _decode(raw: str | None) -> Any:
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw


class _FlowProducer(FlowProducer):
    """FlowProducer that builds one queue object per queue, not one per job: for a big flow,
    bullmq's per-node backend and Scripts construction was a large share of the submission's
    Python time (bench/). The objects hold a name, keys and scripts; jobs can share them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._queues: dict[tuple[str, str], Any] = {}

    def queueFromNode(self, node: dict, prefix: str) -> Any:
        key = (node.get("queueName") or "", prefix)
        if key not in self._queues:
            self._queues[key] = super().queueFromNode(node, prefix)
        return self._queues[key]

    def scripts(self, queue: str) -> Any:
        """bullmq's Scripts (Lua scripts and keys) of one queue under this producer's prefix."""
        return self.queueFromNode({"queueName": queue}, self.prefix).backend.scripts


@dataclass(frozen=True)
class _Submission:
    marker_key: str
    marker: SubmissionMarker
    entries: list[dict]  # FlowProducer's: {"job": Job, "is_parent": bool}, parents first
    streams: list[str]  # the events streams its jobs write to


def _outcome(sub: _Submission, results: list[Any]) -> dict[str, str] | Exception:
    """One flow's part of a transaction's replies: its jobs', its marker's, its streams' tails."""
    jobs = len(sub.entries)
    # An error here is a command that ran and failed (a key of the wrong type...): the others,
    # the marker's SET included (it cannot fail once queued), did run, so a retry would not
    # submit again. What Redis refused before running anything aborts the whole transaction.
    errors = [r for r in results if isinstance(r, Exception)]
    if errors:
        refused = f"Redis refused {len(errors)} of the flow's commands: {scrub(str(errors[0]))}"
        return SubmissionRejected(refused)
    failures = [r for r in results[:jobs] if isinstance(r, int) and r < 0]
    if failures:
        return SubmissionRejected(
            f"BullMQ refused {len(failures)} job(s) (error codes {failures[:5]}); "
            "the flow cannot complete as specified"
        )
    tails = results[jobs + 1 :]
    return {key: _newest_id(tail) for key, tail in zip(sub.streams, tails, strict=True)}


def _pack_with_hiredis(client: aioredis.Redis | RedisCluster) -> None:
    """Every connection of `client` packs its commands with hiredis (redis_packing). A Cluster
    client creates its nodes, and their connections, from its nodes manager's settings on each
    refresh of the slot table: the class is set there (and on the seeds, made already)."""
    if isinstance(client, RedisCluster):
        kwargs = client.nodes_manager.connection_kwargs
        kwargs["connection_class"] = with_hiredis_packing(
            kwargs.get("connection_class", AsyncConnection)
        )
        for node in client.nodes_manager.startup_nodes.values():
            node.connection_class = with_hiredis_packing(node.connection_class)
        return
    pool = client.connection_pool
    pool.connection_class = with_hiredis_packing(pool.connection_class)


def _address_of(client: aioredis.Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    return f"{kwargs['host']}:{kwargs['port']}" if "host" in kwargs else ""


class BullRedis:
    """One Redis connection (a topology URL: standalone, Sentinel or Cluster) and the BullMQ
    producers that share it.

    `client` is redis-py's client for the topology (through Sentinel: the master, followed
    across failovers; a Cluster: RedisCluster). What runs BullMQ's scripts in a pipeline or a
    MULTI/EXEC goes through `on_data(prefix, ...)`: on a Cluster that is the master owning the
    prefix's hash slot (storage/redis_nodes.py says why), elsewhere `client` itself.
    """

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        self.url = url
        address = parse_redis_address(url)
        self.topology = address.topology
        # Our own client: bullmq's default retries for minutes, which would stall reconciles.
        self.client = async_client(
            address,
            decode_responses=True,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.1), 2),
            health_check_interval=30,
        )
        _pack_with_hiredis(self.client)
        self._router = SlotRouter(self.client) if isinstance(self.client, RedisCluster) else None
        self._producers: dict[str, _FlowProducer] = {}
        # One per prefix: a batch's MULTI/EXEC runs on one node, the one of its prefix's slot.
        self._submissions: dict[str, GroupCommit[_Submission, dict[str, str] | None]] = {}

    async def on_data(self, prefix: str, operation: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
        """`operation` with the client that holds the keys of `prefix` (see the class)."""
        if self._router is None:
            assert isinstance(self.client, aioredis.Redis)
            return await operation(self.client)
        return await self._router.run(prefix, operation)

    def producer(self, prefix: str) -> _FlowProducer:
        if prefix not in self._producers:
            self._producers[prefix] = _FlowProducer(self.client, {"prefix": prefix})
        return self._producers[prefix]

    async def marker(self, prefix: str, token: str) -> SubmissionMarker | None:
        """The submission marker, None if the flow was never submitted (or it was removed)."""
        raw = await self.client.get(marker_key(prefix, token))
        return SubmissionMarker.model_validate_json(raw) if raw else None

    async def submit(
        self, prefix: str, trees: list[dict], token: str, marker: SubmissionMarker
    ) -> dict[str, str] | None:
        """Add every tree and the submission marker in ONE MULTI/EXEC. None if already done.

        This is FlowProducer.add/addBulk's own tree building and Lua scripts; the additions are
        the marker in the same transaction, so a crash can never leave jobs without it, and a
        read of each touched events stream's last id: returned ({stream key: id}), it tells the
        events this very transaction wrote (at or before it) from any later change.

        Submissions made while others are being written share their round trips: one reads
        which were done already, one MULTI/EXEC adds all the others (FlowProducer.addBulk's
        way, each flow with its own marker; see GroupCommit).
        """
        producer = self.producer(prefix)
        entries: list[dict] = []
        for tree in trees:
            await producer._queue_tree(entries, tree, None)
        streams = sorted({events_key(prefix, entry["job"].queue.name) for entry in entries})
        submission = _Submission(marker_key(prefix, token), marker, entries, streams)
        return await self._submitter(prefix)(submission)

    def _submitter(self, prefix: str) -> GroupCommit[_Submission, dict[str, str] | None]:
        if prefix not in self._submissions:

            async def write(batch: list[_Submission]) -> list[dict[str, str] | Exception | None]:
                # Run again from the marker check when the slot moved: what the first run
                # did add is found done then, not added twice.
                return await self.on_data(prefix, lambda c: self._write_submissions(c, batch))

            self._submissions[prefix] = GroupCommit(
                write, weight=lambda sub: len(sub.entries), max_weight=MAX_JOBS_PER_TRANSACTION
            )
        return self._submissions[prefix]

    async def _write_submissions(
        self, client: aioredis.Redis, batch: list[_Submission]
    ) -> list[dict[str, str] | Exception | None]:
        keys = [s.marker_key for s in batch]
        async with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.exists(key)
            done = await pipe.execute()
        outcomes: dict[int, dict[str, str] | Exception | None] = {}
        first: dict[str, int] = {}
        again: list[int] = []  # a flow twice in one batch: the second must see the first's marker
        for i, (key, exists) in enumerate(zip(keys, done, strict=True)):
            if exists:
                outcomes[i] = None
            elif key in first:
                again.append(i)
            else:
                first[key] = i
        fresh = list(first.values())
        if fresh:
            added = await self._add(client, [batch[i] for i in fresh])
            outcomes.update(zip(fresh, added, strict=True))
        if again:
            retried = await self._write_submissions(client, [batch[i] for i in again])
            outcomes.update(zip(again, retried, strict=True))
        return [outcomes[i] for i in range(len(batch))]

    async def _add(
        self, client: aioredis.Redis, subs: list[_Submission]
    ) -> list[dict[str, str] | Exception]:
        spans: list[tuple[int, int]] = []
        async with client.pipeline(transaction=True) as pipe:
            for sub in subs:
                start = len(pipe)
                for entry in sub.entries:
                    job = entry["job"]
                    scripts = job.queue.backend.scripts
                    if entry["is_parent"]:
                        await scripts.addParentJob(job, pipe)
                    else:
                        await scripts.addJob(job, pipe)
                pipe.set(sub.marker_key, sub.marker.to_json())
                for key in sub.streams:
                    pipe.xrevrange(key, count=1)
                spans.append((start, len(pipe)))
            # A command's error is its flow's alone; an error of the whole transaction
            # (EXECABORT, a lost connection, MOVED) is raised for every flow in it.
            results = await pipe.execute(raise_on_error=False)
        outcomes: list[dict[str, str] | Exception] = []
        for sub, (a, b) in zip(subs, spans, strict=True):
            if any(isinstance(r, NoScriptError) for r in results[a:b]):
                await client.eval(_UNDO_MARKER, 1, sub.marker_key, sub.marker.to_json())
                outcomes.append(ScriptsLost("Redis lost its scripts (restarted?) mid-submission"))
            else:
                outcomes.append(_outcome(sub, results[a:b]))
        return outcomes

    async def snapshots(self, prefix: str, jobs: list[PlannedJob]) -> dict[str, JobSnapshot]:
        """State, attempts, return value and failure of every job, in one pipeline."""
        return await self.on_data(prefix, lambda c: self.read_snapshots(c, prefix, jobs))

    async def read_snapshots(
        self, client: aioredis.Redis, prefix: str, jobs: list[PlannedJob]
    ) -> dict[str, JobSnapshot]:
        """`snapshots` with `client` (of `on_data`), for a caller already on the node."""
        producer = self.producer(prefix)
        state_keys: dict[str, list[str]] = {}  # per queue: the lists getStateV2 looks in
        async with client.pipeline(transaction=False) as pipe:
            for job in jobs:
                scripts = producer.scripts(job.queue)
                if job.queue not in state_keys:
                    state_keys[job.queue] = scripts.getKeys(STATE_LISTS)
                keys = state_keys[job.queue]
                key = job_key(prefix, job.queue, job.job_id)
                await scripts.commands["getStateV2"](keys=keys, args=[job.job_id, key], client=pipe)
                pipe.hmget(key, ["returnvalue", "failedReason", "atm"])
                if job.has_children:
                    # Job.getChildrenValues reads `:processed`; `:failed` has no Python getter.
                    pipe.hgetall(f"{key}:processed")
                    pipe.hgetall(f"{key}:failed")
            results = await pipe.execute()
        out: dict[str, JobSnapshot] = {}
        cursor = 0
        for job in jobs:
            state, (returnvalue, failed_reason, atm) = results[cursor], results[cursor + 1]
            cursor += 2
            children_values: dict[str, Any] = {}
            ignored: dict[str, str] = {}
            if job.has_children:
                processed, failed = results[cursor], results[cursor + 1]
                cursor += 2
                children_values = {k: _decode(v) for k, v in processed.items()}
                ignored = dict(failed)
            out[job.job_id] = JobSnapshot(
                state=state,
                attempts_made=int(atm or 0),
                return_value=_decode(returnvalue),
                failed_reason=failed_reason or None,
                children_values=children_values,
                ignored_failures=ignored,
            )
        return out

    async def remove_trees(self, prefix: str, roots: list[PlannedJob]) -> list[str]:
        """Remove each root with its children (BullMQ's removeJob). Returns locked job ids."""
        locked = []
        producer = self.producer(prefix)
        for root in roots:
            scripts = producer.scripts(root.queue)
            if await scripts.remove(root.job_id, True) == 0:
                locked.append(root.job_id)
        return locked

    async def remove_marker(self, prefix: str, token: str) -> None:
        await self.client.delete(marker_key(prefix, token))

    async def update_marker(
        self,
        prefix: str,
        token: str,
        *,
        owner: tuple[str, str] | None = None,
        final_status: dict[str, Any] | None = None,
    ) -> None:
        """Record a new owning Flow (uid, name) or the final status in the submission marker,
        atomically: WATCH/MULTI, so a concurrent change (another operator adopting the same key,
        the marker removed with the Flow) is never overwritten with stale fields or brought
        back. Fields of the stored JSON this version does not know are kept."""
        key = marker_key(prefix, token)
        changes: dict[str, Any] = {}
        if owner is not None:
            changes["uid"], changes["name"] = owner
        if final_status is not None:
            changes["status"] = final_status

        async def merge(pipe: Any) -> None:
            raw = await pipe.get(key)
            pipe.multi()
            if raw:
                pipe.set(key, json.dumps({**json.loads(raw), **changes}))

        await self.on_data(prefix, lambda c: c.transaction(merge, key))

    async def identity(self, prefix: str) -> ServerIdentity:
        """Who holds the keys of `prefix` now: its run id (a new one after every restart) and
        replication ids (a promoted replica's tell the same data; see redis_identity)."""

        async def read(client: aioredis.Redis) -> ServerIdentity:
            info = await client.info("server", "replication")
            if info.get("role") != "master" and self.topology != "standalone":
                # A demoted master still answers INFO (no key: no MOVED; a read: no READONLY),
                # and its unchanged run id would hide the failover. Its connections are
                # dropped, so the next one asks the sentinels (or the slot table) anew.
                await client.connection_pool.disconnect()
                raise ReadOnlyError("the server that answered is no longer the master")
            return ServerIdentity.from_info(_address_of(client), info)

        if self.topology == "sentinel":  # once more, through the sentinels (a Cluster's
            try:  # router retries by itself)
                return await self.on_data(prefix, read)
            except ReadOnlyError:
                pass
        return await self.on_data(prefix, read)

    async def client_names(self) -> set[str]:
        """The names of the clients connected to Redis (CLIENT LIST): on a Cluster, of every
        master's, since a worker connects to the master of its queues' slot."""
        if self._router is None:
            return {c.get("name", "") for c in await self.client.client_list()}
        masters = await self._router.masters()
        lists = await asyncio.gather(
            *(self._router.client_of(node).client_list() for node in masters)
        )
        return {c.get("name", "") for clients in lists for c in clients}

    async def stream_tail(self, key: str) -> str:
        """The id of the newest event, so reading can resume right after it."""
        return _newest_id(await self.client.xrevrange(key, count=1))

    async def read_events(
        self, streams: dict[str, str], block_ms: int, count: int = 1000
    ) -> list[StreamEntry]:
        """New events of `streams` ({key: last id read}), blocking up to `block_ms` for some.

        On a Cluster one XREAD cannot span hash slots: the streams of each slot (each prefix's
        tag) are read on their own, all at once; a slot with events then waits for the others'
        blocks to end, so a Cluster with several prefixes sees events up to `block_ms` late.
        """
        if not streams:
            return []
        if self._router is None:
            assert isinstance(self.client, aioredis.Redis)
            return await _xread(self.client, streams, block_ms, count)
        router = self._router
        by_slot: dict[int, dict[str, str]] = {}
        for key, last in streams.items():
            by_slot.setdefault(router.cluster.keyslot(key), {})[key] = last

        async def read_slot(group: dict[str, str]) -> list[StreamEntry]:
            return await router.run(next(iter(group)), lambda c: _xread(c, group, block_ms, count))

        reads = await asyncio.gather(*(read_slot(group) for group in by_slot.values()))
        return [entry for read in reads for entry in read]

    async def close(self) -> None:
        for submissions in self._submissions.values():
            await submissions.close()
        if self._router is not None:
            await self._router.close()
        await self.client.aclose()


async def _xread(
    client: aioredis.Redis, streams: dict[str, str], block_ms: int, count: int
) -> list[StreamEntry]:
    reply: Any = await client.xread(
        streams,  # type: ignore[arg-type]
        count=count,
        block=block_ms,
    )
    return [
        StreamEntry(stream, entry_id, fields)
        for stream, entries in reply or []
        for entry_id, fields in entries
    ]
