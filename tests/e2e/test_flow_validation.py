"""Bad Flows: rejected at admission with the rule's message, or reported InvalidSpec by the
operator (what the schema cannot express), while good flows keep being served."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.e2e.flows import condition

GOOD_ROOT = {"name": "p", "queueName": "q", "children": [{"name": "c", "queueName": "q"}]}


def doc(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "bullflow.io/v1alpha1",
        "kind": "Flow",
        "metadata": {"name": name},
        "spec": spec,
    }


def with_opts(opts: dict[str, Any]) -> dict[str, Any]:
    root = copy.deepcopy(GOOD_ROOT)
    root["children"][0]["opts"] = opts
    return {"root": root}


def chain(levels: int, leaf: dict[str, Any] | None = None) -> dict[str, Any]:
    node: dict[str, Any] = {"name": f"n{levels}", "queueName": "q", **(leaf or {})}
    for level in range(levels - 1, 0, -1):
        node = {"name": f"n{level}", "queueName": "q", "children": [node]}
    return node


REJECTED_AT_ADMISSION = [
    (
        "both-trees",
        {"root": GOOD_ROOT, "roots": [GOOD_ROOT]},
        "exactly one of root, roots or templateRef is required",
    ),
    ("no-tree", {"prefix": "bull"}, "exactly one of root, roots or templateRef is required"),
    (
        "two-failure-options",
        with_opts({"failParentOnFailure": True, "continueParentOnFailure": True}),
        "mutually exclusive",
    ),
    ("job-id", with_opts({"jobId": "mine"}), "jobId is not user-settable"),
    ("colon-queue", {"root": {"name": "p", "queueName": "a:b"}}, "spec.root.queueName"),
    ("bad-policy", {"root": GOOD_ROOT, "deletionPolicy": "Sometimes"}, "Unsupported value"),
    ("bad-backoff", with_opts({"backoff": {"type": "linear", "delay": 1}}), "Unsupported value"),
    ("huge-priority", with_opts({"priority": 3_000_000}), "less than or equal to 2097152"),
    ("zero-attempts", with_opts({"attempts": 0}), "greater than or equal to 1"),
    ("empty-name", {"root": {"name": "", "queueName": "q"}}, "spec.root.name"),
    ("bad-prefix", {"root": GOOD_ROOT, "prefix": "a b"}, "spec.prefix"),
    ("unknown-field", {"root": {**GOOD_ROOT, "colour": "red"}}, "unknown field"),
]


@pytest.mark.parametrize(
    ("name", "spec", "message"), REJECTED_AT_ADMISSION, ids=[r[0] for r in REJECTED_AT_ADMISSION]
)
def test_rejected_at_admission(flow_crds, kubectl, namespace, name, spec, message):
    import yaml

    result = kubectl(
        "apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(doc(name, spec)), check=False
    )
    assert result.returncode != 0, result.stdout
    assert message in result.stderr, result.stderr


INVALID_SPEC = [
    ("too-deep", {"root": chain(101)}, "tree 0 is 101 levels deep; BullMQ's limit is 100"),
    (
        "deep-conflict",
        {
            "root": chain(
                6, {"opts": {"failParentOnFailure": True, "ignoreDependencyOnFailure": True}}
            )
        },
        "mutually exclusive",
    ),
    ("deep-job-id", {"root": chain(6, {"opts": {"jobId": "x"}})}, "jobId is not user-settable"),
    ("deep-colon", {"root": chain(6, {"queueName": "a:b"})}, "queueName"),
]


def test_what_admission_cannot_see_becomes_invalid_spec(operator, flows, workers, redis_prefix):
    for name, spec, _ in INVALID_SPEC:
        flows.apply(doc(name, {**spec, "prefix": redis_prefix}))
    workers.start("python", ["q"], redis_prefix)
    flows.apply(doc("good", {"root": {**GOOD_ROOT, "data": {"result": 1}}, "prefix": redis_prefix}))
    for name, _, message in INVALID_SPEC:
        flow = flows.wait_for(
            name,
            lambda f: any(
                c["reason"] == "InvalidSpec" for c in (f.get("status") or {}).get("conditions", [])
            ),
            "an InvalidSpec condition",
            timeout=30,
        )
        ready = condition(flow, "Ready")
        assert ready["status"] == "False" and message in ready["message"], ready
        assert "submittedAt" not in flow["status"]
    assert flows.wait("good", timeout=30)["status"]["phase"] == "Completed"


def test_missing_connection_secret_is_reported(operator, flows, redis_prefix):
    flows.apply(
        doc(
            "nosecret",
            {"root": GOOD_ROOT, "prefix": redis_prefix, "connection": {"name": "absent"}},
        )
    )
    flow = flows.wait_for(
        "nosecret",
        lambda f: any(
            c["reason"] == "ConnectionSecretNotFound"
            for c in (f.get("status") or {}).get("conditions", [])
        ),
        "a ConnectionSecretNotFound condition",
        timeout=30,
    )
    assert "absent" in condition(flow, "Ready")["message"]


def test_secret_with_a_bad_url_is_named_in_the_condition(
    operator, flows, kubectl, namespace, redis_prefix
):
    """InvalidConnection names the Secret and its key and what is wrong, never the value."""
    value = "http://admin:hunter2-e2e@redis:6379"
    kubectl(
        "create", "secret", "generic", "bad-url", "-n", namespace, f"--from-literal=url={value}"
    )
    flows.apply(
        doc(
            "badurl", {"root": GOOD_ROOT, "prefix": redis_prefix, "connection": {"name": "bad-url"}}
        )
    )
    flow = flows.wait_for(
        "badurl",
        lambda f: any(
            c["reason"] == "InvalidConnection"
            for c in (f.get("status") or {}).get("conditions", [])
        ),
        "an InvalidConnection condition",
        timeout=30,
    )
    message = condition(flow, "Ready")["message"]
    assert f"the key 'url' of Secret {namespace}/bad-url has a scheme other than" in message
    assert "hunter2-e2e" not in message and "hunter2-e2e" not in operator.log_text()


def test_spec_is_immutable(operator, flows, kubectl, namespace, redis_prefix):
    flows.apply(doc("frozen", {"root": GOOD_ROOT, "prefix": redis_prefix}))
    result = kubectl(
        "patch",
        "flow",
        "frozen",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"deletionPolicy":"Orphan"}}',
        check=False,
    )
    assert result.returncode != 0 and "spec is immutable" in result.stderr
