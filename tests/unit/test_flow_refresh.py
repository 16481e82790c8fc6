"""FlowStatusWriter.refresh: the written status changes only when the API server took it, and
every failure asks to be retried (stub API server and Redis: the decisions, not the I/O)."""

from __future__ import annotations

from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException
from redis.exceptions import ConnectionError as RedisConnectionError

from bullflow.config import Settings
from bullflow.controllers.flow import FlowController
from bullflow.controllers.refresh_schedule import Outcome
from bullflow.controllers.tracker import TrackedFlow
from bullflow.models.flow import FlowSpec, FlowStatus
from bullflow.services.flowstatus import JobSnapshot
from bullflow.services.flowtree import plan
from bullflow.storage.kube import ObjectRef

UID = "0b5c2a3e-1111-4222-8333-444455556666"
REF = ObjectRef("Flow", "flows", "ns", "f", UID)


class StubKube:
    def __init__(self) -> None:
        self.failures: list[BaseException] = []
        self.written: list[dict[str, Any]] = []
        self.events: list[str] = []

    async def patch_status(self, _ref: ObjectRef, status: dict[str, Any]) -> bool:
        if self.failures:
            raise self.failures.pop(0)
        self.written.append(status)
        return True

    async def event(self, _ref: ObjectRef, _type: str, reason: str, _message: str) -> None:
        self.events.append(reason)

    async def list_custom(self, _namespace: str, _plural: str) -> list[dict[str, Any]]:
        return [{"spec": {"prefix": "bull", "queues": ["q"]}}]


class StubRedis:
    url = "redis://:secret@127.0.0.1:6379/0"

    def __init__(self, states: dict[str, str]) -> None:
        self.states = states
        self.down = False

    async def snapshots(self, _prefix: str, jobs: list[Any]) -> dict[str, JobSnapshot]:
        if self.down:
            raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused")
        return {j.job_id: JobSnapshot(self.states.get(j.path, "unknown")) for j in jobs}


def setup(
    states: dict[str, str], children: int = 1
) -> tuple[FlowController, StubKube, StubRedis, TrackedFlow]:
    kube = StubKube()
    controller = FlowController(Settings(redis_url=None), kube, None)  # type: ignore[arg-type]
    redis = StubRedis(states)
    kids = [{"name": f"c{i}", "queueName": "q"} for i in range(children)]
    spec = FlowSpec.model_validate({"root": {"name": "p", "queueName": "q", "children": kids}})
    flow = TrackedFlow(REF, redis, "bull", plan(spec, UID), 1, FlowStatus(phase="Submitted"))  # type: ignore[arg-type]
    controller.tracker.flows[flow.token] = flow
    return controller, kube, redis, flow


async def refresh(controller: FlowController, flow: TrackedFlow) -> Outcome:
    return await controller.statuses.refresh(flow)


def ready(status: FlowStatus) -> tuple[str, str]:
    cond = next(c for c in status.conditions if c.type == "Ready")
    return cond.reason, cond.message


async def test_a_failed_status_write_is_retried_and_the_written_status_is_kept():
    controller, kube, _redis, flow = setup({"0": "completed", "0.0": "completed"})
    kube.failures = [ApiException(status=503, reason="Service Unavailable")]
    assert await refresh(controller, flow) is Outcome.RETRY
    assert flow.status.phase == "Submitted"  # not what it failed to write
    assert await refresh(controller, flow) is Outcome.FINISHED
    assert flow.status.phase == "Completed" and kube.written[-1]["phase"] == "Completed"


async def test_a_connection_error_while_writing_is_retried_too():
    controller, kube, _redis, flow = setup({"0": "waiting-children", "0.0": "active"})
    kube.failures = [ConnectionRefusedError("the API server is down")]
    assert await refresh(controller, flow) is Outcome.RETRY
    assert await refresh(controller, flow) is Outcome.CURRENT
    assert flow.status.phase == "Running"
    assert await refresh(controller, flow) is Outcome.CURRENT and len(kube.written) == 1


async def test_redis_unavailable_is_written_then_cleared_when_redis_answers_again():
    controller, kube, redis, flow = setup({"0": "waiting-children", "0.0": "waiting"})
    assert await refresh(controller, flow) is Outcome.CURRENT
    redis.down = True
    assert await refresh(controller, flow) is Outcome.RETRY
    reason, message = ready(flow.status)
    assert reason == "RedisUnavailable" and "secret" not in message
    assert await refresh(controller, flow) is Outcome.RETRY  # still down: nothing new written
    assert len(kube.written) == 2
    redis.down = False
    assert await refresh(controller, flow) is Outcome.CURRENT
    assert ready(flow.status)[0] == "Submitted"


async def test_a_status_too_large_for_the_api_server_is_written_again_smaller():
    controller, kube, _redis, flow = setup({"0": "waiting-children", "0.0": "active"})
    too_large = ApiException(status=500, reason="Internal Server Error")
    too_large.body = '{"message":"etcdserver: request is too large"}'
    kube.failures = [too_large]
    assert await refresh(controller, flow) is Outcome.RETRY
    assert flow.status_budget == controller.statuses.limits.max_status_bytes // 2
    assert await refresh(controller, flow) is Outcome.CURRENT and flow.status.phase == "Running"


async def test_jobs_lost_from_redis_end_the_flow_with_the_count():
    controller, _kube, _redis, flow = setup({})
    assert await refresh(controller, flow) is Outcome.FINISHED
    assert flow.status.phase == "Failed"
    reason, message = ready(flow.status)
    assert reason == "JobsLost" and message.startswith("2 of 2 jobs are missing from Redis")


async def test_an_event_that_cannot_be_posted_does_not_undo_the_written_status():
    controller, kube, _redis, flow = setup({"0": "completed", "0.0": "completed"})

    async def refuse(*_args: Any) -> None:
        raise ApiException(status=500, reason="etcd is down")

    kube.event = refuse  # type: ignore[method-assign]
    assert await refresh(controller, flow) is Outcome.FINISHED
    assert flow.status.phase == "Completed"


async def test_what_was_read_for_a_flow_deleted_meanwhile_is_not_written():
    controller, kube, _redis, flow = setup({})
    controller.tracker.untrack(flow.token)
    assert await refresh(controller, flow) is Outcome.GONE
    assert kube.written == [] and kube.events == []


async def test_a_flow_failed_by_one_child_is_followed_until_its_sibling_ends():
    # The failed child decides the phase at once; the sibling still running must still show
    # its end (an outage had made it finish last, and the status kept it active for good).
    controller, kube, redis, flow = setup(
        {"0": "waiting-children", "0.0": "failed", "0.1": "active"}, children=2
    )
    assert await refresh(controller, flow) is Outcome.CURRENT
    assert flow.status.phase == "Failed" and flow.status.counts == {
        "active": 1,
        "failed": 1,
        "waiting-children": 1,
    }
    assert kube.events.count("ChildFailed") == 1
    redis.states["0.1"] = "completed"
    assert await refresh(controller, flow) is Outcome.FINISHED
    sibling = next(n for n in flow.status.nodes if n.path == "0.1")
    assert sibling.state == "completed" and flow.status.phase == "Failed"
    assert kube.events.count("ChildFailed") == 1  # the flow ended once
