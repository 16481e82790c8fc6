"""Retry and stop in Redis: BullMQ's scripts and ours, with the submission marker, in ONE
MULTI/EXEC each.

The marker (redis_jobs.marker_key) records the last applied retry and stop tokens under its
"operations" key, written in the same transaction as the jobs' moves: after a crash at any
moment either both happened or neither did, so a token is applied exactly once.

The transaction runs under WATCH of the marker and of every job's hash: the decision is made
from states read after the WATCH, and a worker that takes a job meanwhile (moveToActive writes
the job's hash) or another operator applying the same token makes EXEC abort; the decision is
then taken again from fresh states. Scripts inside MULTI/EXEC cannot be rolled back, so this
is what keeps them from running against states that changed under them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import WatchError

from ..services.flowstatus import JobSnapshot
from ..services.flowtree import PlannedJob
from ..services.stop_plan import ReAddPlan
from .redis_jobs import BullRedis, job_key, marker_key

log = logging.getLogger(__name__)
OPERATIONS_FIELD = "operations"
MAX_CONFLICTS = 20

# OURS, not BullMQ's: BullMQ (reprocessJob, Job.retry) moves a failed job back to wait only; a
# parent that a failParentOnFailure child failed must go back to waiting-children instead, with
# its failure fields cleared, and back into its own parent's dependencies when that parent
# holds it as unsuccessful/failed (what reprocessJob's moveChildBackToParentDependencies does
# for a retried child). BullMQ has no script for failed -> waiting-children.
#   KEYS: job hash, queue's failed zset, queue's waiting-children zset, queue's events stream
#   ARGV: job id, timestamp (ms), "1" to reset attemptsMade/attemptsStarted
REOPEN_PARENT_LUA = """
local rcall = redis.call
if rcall("EXISTS", KEYS[1]) == 0 then return -1 end
if rcall("ZREM", KEYS[2], ARGV[1]) == 0 then return -3 end
local fields = {"finishedOn", "processedOn", "failedReason", "defa"}
if ARGV[3] == "1" then
  table.insert(fields, "atm")
  table.insert(fields, "ats")
end
rcall("HDEL", KEYS[1], unpack(fields))
rcall("ZADD", KEYS[3], ARGV[2], ARGV[1])
local parentKey = rcall("HGET", KEYS[1], "parentKey")
if parentKey and rcall("EXISTS", parentKey) == 1 then
  if rcall("ZREM", parentKey .. ":unsuccessful", KEYS[1]) == 1 or
    rcall("HDEL", parentKey .. ":failed", KEYS[1]) == 1 then
    rcall("SADD", parentKey .. ":dependencies", KEYS[1])
  end
end
rcall("XADD", KEYS[4], "MAXLEN", "~", 10000, "*", "event", "waiting-children",
  "jobId", ARGV[1], "prev", "failed")
return 1
"""


@dataclass(frozen=True)
class StoredOperations:
    """What the marker says was applied."""

    retry: str | None = None  # the last applied retry token
    retry_count: int = 0
    stop: str | None = None  # the last applied stop token
    # The stop in effect (cleared by the retry that re-adds its removed jobs).
    stopped: dict[str, Any] | None = None

    @classmethod
    def from_marker(cls, marker: dict[str, Any]) -> StoredOperations:
        raw = marker.get(OPERATIONS_FIELD) or {}
        return cls(
            retry=raw.get("retry"),
            retry_count=int(raw.get("retryCount") or 0),
            stop=raw.get("stop"),
            stopped=raw.get("stopped"),
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"retryCount": self.retry_count}
        for key, value in (("retry", self.retry), ("stop", self.stop), ("stopped", self.stopped)):
            if value is not None:
                out[key] = value
        return out

    @property
    def removed_by_stop(self) -> set[str]:
        return set((self.stopped or {}).get("removed") or [])


@dataclass
class Writes:
    """What a decision queues in the transaction (`queue`), the marker's new operations, and
    what the caller gets back once EXEC took it."""

    operations: StoredOperations
    queue: Callable[[Any], Awaitable[None]]
    result: Any = None
    clear_final_status: bool = False  # the flow runs again: its kept outcome no longer holds
    replies: list[Any] = field(default_factory=list)


# decide(operations, snapshots) -> Writes to apply, or anything else: returned, nothing written
Decide = Callable[[StoredOperations, dict[str, JobSnapshot]], Any]


class MarkerGone(Exception):
    """The submission marker is missing: the flow's jobs are not (or no longer) bullflow's."""


class TooManyConflicts(Exception):
    """The jobs kept changing under the transaction (EXEC aborted MAX_CONFLICTS times)."""


async def read_operations(conn: BullRedis, prefix: str, token: str) -> StoredOperations | None:
    raw = await conn.client.get(marker_key(prefix, token))
    return StoredOperations.from_marker(json.loads(raw)) if raw else None


async def transact(
    conn: BullRedis, prefix: str, token: str, jobs: list[PlannedJob], decide: Decide
) -> Any:
    """Read the marker and the jobs under WATCH, decide, and write in one MULTI/EXEC.

    On the node that holds the prefix's keys (BullRedis.on_data): on a Cluster, run again from
    the start if the slot moved meanwhile; the WATCHed reads decide again."""
    return await conn.on_data(
        prefix, lambda client: _transact(client, conn, prefix, token, jobs, decide)
    )


async def _transact(
    client: Any, conn: BullRedis, prefix: str, token: str, jobs: list[PlannedJob], decide: Decide
) -> Any:
    mkey = marker_key(prefix, token)
    keys = [mkey, *(job_key(prefix, j.queue, j.job_id) for j in jobs)]
    for _ in range(MAX_CONFLICTS):
        async with client.pipeline(transaction=True) as pipe:
            await pipe.watch(*keys)
            raw = await pipe.get(mkey)
            if not raw:
                raise MarkerGone(f"the submission marker {mkey} is not in Redis")
            marker = json.loads(raw)
            snaps = await conn.read_snapshots(client, prefix, jobs)
            decision = decide(StoredOperations.from_marker(marker), snaps)
            if not isinstance(decision, Writes):
                await pipe.unwatch()
                return decision
            pipe.multi()
            await decision.queue(pipe)
            marker[OPERATIONS_FIELD] = decision.operations.to_json()
            if decision.clear_final_status:
                marker.pop("status", None)
            pipe.set(mkey, json.dumps(marker))
            try:
                decision.replies = await pipe.execute(raise_on_error=False)
            except WatchError:
                continue
            _log_refusals(decision.replies)
            return decision
    raise TooManyConflicts(f"the flow's jobs changed {MAX_CONFLICTS} times during the operation")


def _log_refusals(replies: list[Any]) -> None:
    """BullMQ's codes for a script that refused (-1 no job, -3 not in the expected state...).
    Under WATCH they mean a bug, not a race: logged loudly, the rest of EXEC did run."""
    refused = [
        r for r in replies[:-1] if isinstance(r, Exception) or (isinstance(r, int) and r < 0)
    ]
    if refused:
        log.error("a flow operation's scripts refused %d step(s): %s", len(refused), refused[:5])


class RetryScripts:
    """The commands of a retry, queued on a transaction's pipeline."""

    def __init__(self, conn: BullRedis, prefix: str) -> None:
        self.conn = conn
        self.prefix = prefix
        self.reopen_script = conn.client.register_script(REOPEN_PARENT_LUA)

    async def reopen(self, pipe: Any, job: PlannedJob, now_ms: int, reset: bool) -> None:
        """A failed parent back to waiting-children (ours, see REOPEN_PARENT_LUA)."""
        scripts = self.conn.producer(self.prefix).scripts(job.queue)
        keys = [
            scripts.toKey(job.job_id),
            scripts.keys["failed"],
            scripts.keys["waiting-children"],
            scripts.keys["events"],
        ]
        await self.reopen_script(
            keys=keys, args=[job.job_id, now_ms, "1" if reset else "0"], client=pipe
        )

    async def reprocess(self, pipe: Any, job: PlannedJob, reset: bool, lifo: bool) -> None:
        """BullMQ's reprocessJob (Job.retry('failed')): failed -> wait, back into its parent's
        dependencies. Its keys and arguments as bullmq's Scripts.reprocessJob builds them."""
        scripts = self.conn.producer(self.prefix).scripts(job.queue)
        keys = [scripts.toKey(job.job_id)] + [
            scripts.keys[k]
            for k in ("events", "failed", "wait", "meta", "active", "marker", "prioritized", "pc")
        ]
        flag = "1" if reset else "0"
        args = [job.job_id, ("R" if lifo else "L") + "PUSH", "failedReason", "failed", flag, flag]
        await scripts.commands["reprocessJob"](keys=keys, args=args, client=pipe)

    async def remove(self, pipe: Any, job: PlannedJob) -> None:
        """BullMQ's removeJob, without children (each job of a stop is removed on its own)."""
        scripts = self.conn.producer(self.prefix).scripts(job.queue)
        keys = [scripts.toKey(job.job_id), scripts.keys["repeat"]]
        await scripts.commands["removeJob"](
            keys=keys, args=[job.job_id, 0, scripts.keys[""]], client=pipe
        )

    async def readd(self, pipe: Any, plan: ReAddPlan) -> None:
        """The jobs a stop removed, added again by the submission's own code (FlowProducer's
        tree building, BullMQ's add scripts), then linked with the children the stop kept."""
        producer = self.conn.producer(self.prefix)
        entries: list[dict] = []
        for tree in plan.trees:
            await producer._queue_tree(entries, tree, None)
        for entry in entries:
            job = entry["job"]
            scripts = job.queue.backend.scripts
            if entry["is_parent"] or job.id in plan.must_wait:
                await scripts.addParentJob(job, pipe)
            else:
                await scripts.addJob(job, pipe)
        for parent, child, value in plan.processed:
            parent_key = job_key(self.prefix, parent.queue, parent.job_id)
            child_key = job_key(self.prefix, child.queue, child.job_id)
            pipe.hset(f"{parent_key}:processed", child_key, json.dumps(value))
        for parent, child in plan.depends:
            parent_key = job_key(self.prefix, parent.queue, parent.job_id)
            pipe.sadd(f"{parent_key}:dependencies", job_key(self.prefix, child.queue, child.job_id))
