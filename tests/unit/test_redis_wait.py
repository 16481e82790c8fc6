"""RedisWait: a flow whose submission met an unreachable Redis is reconciled again as soon as
the connection answers, not after kopf's growing backoff."""

from __future__ import annotations

from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError

from bullflow.controllers.redis_wait import RedisWait
from tests.harness.aio import until


class StubClient:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.pings = 0

    async def ping(self) -> bool:
        self.pings += 1
        if self.pings <= self.failures:
            raise RedisConnectionError("Connection refused")
        return True


class StubConn:
    url = "redis://127.0.0.1:1/0"

    def __init__(self, failures: int) -> None:
        self.client = StubClient(failures)


def body(uid: str) -> dict[str, Any]:
    return {"metadata": {"uid": uid, "namespace": "ns", "name": uid}, "spec": {}}


async def test_waiting_flows_are_reconciled_once_redis_answers_and_deleted_ones_are_not():
    reconciled: list[str] = []

    async def reconcile(b: Any) -> None:
        reconciled.append(b["metadata"]["uid"])

    wait = RedisWait(reconcile, probe_max=0.05)
    conn: Any = StubConn(failures=5)
    for uid in ("a", "b", "gone"):
        wait.add(conn, body(uid))
    wait.discard("gone")
    await until(lambda: sorted(reconciled) == ["a", "b"], "both flows reconciled")
    assert conn.client.pings == 6 and wait.waiting() == 0
    await wait.close()


async def test_a_flow_whose_reconcile_fails_does_not_stop_the_others():
    reconciled: list[str] = []

    async def reconcile(b: Any) -> None:
        if b["metadata"]["uid"] == "bad":
            raise RuntimeError("the API server refused the status")
        reconciled.append(b["metadata"]["uid"])

    wait = RedisWait(reconcile, probe_max=0.05)
    conn: Any = StubConn(failures=0)
    wait.add(conn, body("bad"))
    wait.add(conn, body("good"))
    await until(lambda: reconciled == ["good"], "the good flow reconciled")
    await wait.close()
