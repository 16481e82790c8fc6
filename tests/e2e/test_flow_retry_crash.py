"""Kill -9 of the operator in the middle of a retry of a 200-job flow: the retry is applied
exactly once (the token is in the marker, written in the retry's own transaction), no job is
duplicated or run twice, and every job ends completed."""

from __future__ import annotations

import pytest
import redis

from tests.e2e.flows import Flows, condition
from tests.e2e.test_flow_lifecycle import own_operator  # noqa: F401 (a fixture)
from tests.e2e.test_flow_retry import FLAKY, annotate, by_path, executions, flow_doc
from tests.harness.process import wait_for

CHILDREN = 199


def big_tree() -> dict:
    children = [
        {"name": f"c{i}", "queueName": "rc-child", "data": {"result": 1}}
        if i % 2
        else {
            "name": f"c{i}",
            "queueName": "rc-child",
            "data": {**FLAKY, "result": 1},
            "opts": {"attempts": 1},
        }
        for i in range(CHILDREN)
    ]
    return {
        "name": "sum",
        "queueName": "rc-parent",
        "data": {"combine": "sum"},
        "children": children,
    }


@pytest.mark.parametrize("crash", ["after-transaction"])
def test_kill_9_during_a_retry_applies_it_exactly_once(
    crash,
    own_operator,  # noqa: F811
    private_namespace,
    kube_client,
    kubectl,
    redis_server,
    redis_prefix,
    workers,
    tmp_path,
):
    crashed = tmp_path / "crashed"
    operator = own_operator(launcher=("-m", "tests.e2e.crash_in_retry", str(crashed))).start()
    flows = Flows(kube_client, kubectl, private_namespace)
    workers.start("python", ["rc-child", "rc-parent"], redis_prefix)
    flows.apply(flow_doc("big", redis_prefix, big_tree()))
    client = redis.Redis.from_url(redis_server.url)
    # The Flow is Failed at its first failure (and no longer followed): the other children
    # settle in Redis.
    wait_for(
        lambda: (
            client.zcard(f"{redis_prefix}:rc-child:failed") == 100
            and client.zcard(f"{redis_prefix}:rc-child:completed") == 99
        ),
        60,
        "every child to settle (100 failed, 99 completed)",
    )
    # Its status write may trail Redis by a moment on a loaded machine.
    assert flows.wait("big", ("Completed", "Failed"), timeout=30)["status"]["phase"] == "Failed"
    annotate(kubectl, private_namespace, "big", retry="after-fix")
    wait_for(operator.exited, 30, "the operator to SIGKILL itself right after the retry")
    assert crashed.exists()
    assert (flows.get("big").get("status") or {}).get("lastHandledRetry") is None

    operator.launcher = ["-m", "bullflow"]
    operator.start()
    flow = flows.wait("big", ("Completed",), timeout=120)
    status = flow["status"]
    assert status["result"] == CHILDREN
    assert status["lastHandledRetry"] == "after-fix" and status["retryCount"] == 1
    assert "after-fix" in condition(flow, "Retried")["message"]
    runs = by_path(flow, executions(redis_server.url, redis_prefix, {"rc-child", "rc-parent"}))
    expected = {"0": 1} | {f"0.{i}": 1 if i % 2 else 2 for i in range(CHILDREN)}
    assert runs == expected
    assert operator.starts == 2
