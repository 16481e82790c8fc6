"""FlowController.reconcile's branches without a cluster: stub API server and Redis (the
decisions; their I/O is exercised against real servers by the integration and e2e tiers)."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from bullflow.config import Settings
from bullflow.controllers.flow import FlowController
from bullflow.storage.redis_jobs import SubmissionRejected

UID = "0b5c2a3e-1111-4222-8333-444455556666"
ROOT = {"name": "p", "queueName": "q", "children": [{"name": "c", "queueName": "q"}]}


class StubKube:
    def __init__(self) -> None:
        self.written: list[dict[str, Any]] = []
        self.events: list[str] = []

    async def patch_status(self, _ref: Any, status: dict[str, Any]) -> bool:
        self.written.append(status)
        return True

    async def event(self, _ref: Any, _type: str, reason: str, _message: str) -> None:
        self.events.append(reason)


class StubRedis:
    url = "redis://127.0.0.1:1/0"
    topology = "standalone"

    def __init__(self, submit_outcome: Any) -> None:
        self.submit_outcome = submit_outcome
        self.submitted = 0

    async def submit(self, *_args: Any) -> dict[str, str] | None:
        self.submitted += 1
        if isinstance(self.submit_outcome, BaseException):
            raise self.submit_outcome
        return self.submit_outcome

    async def marker(self, *_args: Any) -> None:
        return None


class StubPool:
    def __init__(self, conn: StubRedis) -> None:
        self.conn = conn

    async def resolve(self, *_args: Any) -> StubRedis:
        return self.conn


def controller(outcome: Any = None) -> tuple[FlowController, StubKube, StubRedis]:
    kube, conn = StubKube(), StubRedis(outcome if outcome is not None else {})
    return FlowController(Settings(redis_url=None), kube, StubPool(conn)), kube, conn  # type: ignore[arg-type]


def body(spec: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    meta = {"namespace": "ns", "name": "f", "uid": UID, "generation": 1}
    return {"metadata": meta, "spec": spec, "status": status or {}}


def ready(status: dict[str, Any]) -> tuple[str, str]:
    cond = next(c for c in status["conditions"] if c["type"] == "Ready")
    return cond["reason"], cond["message"]


async def test_an_invalid_spec_is_reported_once():
    flows, kube, conn = controller()
    await flows.reconcile(body({"prefix": "bull"}))  # neither root nor roots
    assert ready(kube.written[-1])[0] == "InvalidSpec" and kube.events == ["InvalidSpec"]
    await flows.reconcile(body({"prefix": "bull"}, kube.written[-1]))
    assert len(kube.written) == 1 and conn.submitted == 0


async def test_a_fresh_submission_is_tracked_from_the_states_it_left():
    flows, kube, _conn = controller({"bull:q:events": "1-0"})
    woken: list[tuple[str, str]] = []
    flows.on_submit = lambda ns, prefix, _queues: woken.append((ns, prefix))
    await flows.reconcile(body({"root": ROOT}))
    tracked = flows.tracker.flows[UID]
    assert tracked.just_submitted and tracked.status.phase == "Submitted"
    assert woken == [("ns", "bull")] and kube.written == []  # the tracker writes it
    assert flows.bookkeeper.backlog() == 1  # the finalizer follows (deletionPolicy Delete)


async def test_redis_unreachable_makes_the_flow_wait_for_it_not_for_kopf():
    flows, kube, _conn = controller(RedisConnectionError("Connection refused"))
    await flows.reconcile(body({"root": ROOT}))  # no exception: nothing for kopf to retry
    assert ready(kube.written[-1])[0] == "RedisUnavailable"
    assert flows.redis_wait.waiting() == 1 and UID not in flows.tracker.flows
    await flows.close()


async def test_a_refused_submission_ends_the_flow():
    flows, kube, _conn = controller(SubmissionRejected("BullMQ refused 1 job(s)"))
    await flows.reconcile(body({"root": ROOT}))
    assert kube.written[-1]["phase"] == "Failed" and kube.events == ["SubmitRejected"]
    assert UID not in flows.tracker.flows


async def test_a_finished_flow_is_not_followed_and_its_ttl_runs():
    flows, _kube, conn = controller()
    finished = {"phase": "Completed", "submittedAt": "t", "finishedAt": "2026-01-01T00:00:00Z"}
    await flows.reconcile(body({"root": ROOT, "ttlSecondsAfterFinished": 3600}, finished))
    assert conn.submitted == 0 and UID not in flows.tracker.flows
    assert UID in flows.ttl._tasks
    flows.ttl.close()
    await asyncio.sleep(0)


@pytest.mark.parametrize("prefix", ["bull", "{bull}"])
async def test_an_untagged_prefix_on_a_cluster_is_refused_before_any_write(prefix: str):
    flows, kube, conn = controller({"{bull}:q:events": "1-0"})
    conn.topology = "cluster"
    if prefix == "{bull}":  # tagged: submitted as anywhere else
        await flows.reconcile(body({"root": ROOT, "prefix": prefix}))
        assert conn.submitted == 1 and UID in flows.tracker.flows
        return
    with pytest.raises(kopf.TemporaryError):  # kopf comes back later, with its backoff
        await flows.reconcile(body({"root": ROOT, "prefix": prefix}))
    reason, message = ready(kube.written[-1])
    assert reason == "ClusterPrefixNotHashTagged" and 'spec.prefix: "{bull}"' in message
    assert conn.submitted == 0 and UID not in flows.tracker.flows
