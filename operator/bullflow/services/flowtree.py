"""The Flow spec as a tree of BullMQ jobs: paths, deterministic job ids, FlowProducer input."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass

from ..models.flow import MAX_DEPTH, FlowNode, FlowSpec

JOB_ID_PREFIX = "bf-"
_JOB_ID = re.compile(r"^bf-(?P<token>[0-9a-f]{32}|[0-9a-f-]{36})-(?P<path>\d+(?:\.\d+)*)$")


@dataclass(frozen=True, slots=True)
class PlannedJob:
    """One node of the tree, flattened: where it is and which BullMQ job it becomes."""

    path: str
    parent_path: str | None
    job_id: str
    name: str
    queue: str
    has_children: bool
    tolerates_failure: bool  # ignore/remove dependency or continue parent on failure
    fails_parent: bool
    removed_on_complete: bool
    removed_on_fail: bool = False
    # The state BullMQ's add scripts put it in: what the status can say right after submission.
    initial_state: str = "waiting"


def flow_token(uid: str, namespace: str, idempotency_key: str | None) -> str:
    """What job ids derive from: the Flow's uid, or its namespace + idempotencyKey (so that a
    re-created Flow finds the jobs of its earlier self)."""
    if idempotency_key is None:
        return uid
    return hashlib.sha256(f"{namespace}/{idempotency_key}".encode()).hexdigest()[:32]


def job_id(uid: str, path: str) -> str:
    """Deterministic per Flow and node: never ':' and never all digits (BullMQ rules)."""
    return f"{JOB_ID_PREFIX}{uid}-{path}"


def parse_job_id(value: str) -> tuple[str, str] | None:
    """(flow token, node path) of a job id made by `job_id`, else None."""
    match = _JOB_ID.match(value)
    return (match["token"], match["path"]) if match else None


def _walk(
    node: FlowNode, path: str, parent: str | None, uid: str
) -> Iterator[tuple[FlowNode, PlannedJob]]:
    opts = node.opts
    yield (
        node,
        PlannedJob(
            path=path,
            parent_path=parent,
            job_id=job_id(uid, path),
            name=node.name,
            queue=node.queue_name,
            has_children=bool(node.children),
            tolerates_failure=bool(
                opts
                and (
                    opts.ignore_dependency_on_failure
                    or opts.remove_dependency_on_failure
                    or opts.continue_parent_on_failure
                )
            ),
            fails_parent=bool(opts and opts.fail_parent_on_failure),
            removed_on_complete=bool(opts and opts.remove_on_complete),
            removed_on_fail=bool(opts and opts.remove_on_fail),
            initial_state=_initial_state(node),
        ),
    )
    for index, child in enumerate(node.children):
        yield from _walk(child, f"{path}.{index}", path, uid)


def _initial_state(node: FlowNode) -> str:
    """Where addParentJob / addDelayedJob / addPrioritizedJob / addStandardJob leave a new job
    (an existing parent key aside, which a fresh submission never has)."""
    if node.children:
        return "waiting-children"
    if node.opts and node.opts.delay:
        return "delayed"
    if node.opts and node.opts.priority:
        return "prioritized"
    return "waiting"


def plan(spec: FlowSpec, uid: str) -> list[PlannedJob]:
    """Every job of the flow in pre-order (parents before children)."""
    return [
        job
        for index, tree in enumerate(spec.trees())
        for _, job in _walk(tree, str(index), None, uid)
    ]


def depth(node: FlowNode) -> int:
    """Levels in the tree, iteratively (a deep tree must not hit Python's recursion limit)."""
    deepest, stack = 0, [(node, 1)]
    while stack:
        current, level = stack.pop()
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in current.children)
    return deepest


def structural_errors(spec: FlowSpec, max_nodes: int) -> list[str]:
    """What the CRD schema cannot check: depth and total size."""
    errors = []
    for index, tree in enumerate(spec.trees()):
        levels = depth(tree)
        if levels > MAX_DEPTH:
            errors.append(f"tree {index} is {levels} levels deep; BullMQ's limit is {MAX_DEPTH}")
    total = sum(1 for _ in _iter_nodes(spec))
    if total > max_nodes:
        errors.append(f"the flow has {total} jobs; this operator accepts at most {max_nodes}")
    return errors


def _iter_nodes(spec: FlowSpec) -> Iterator[FlowNode]:
    stack = list(spec.trees())
    while stack:
        node = stack.pop()
        yield node
        stack.extend(node.children)


def to_flowproducer(spec: FlowSpec, uid: str) -> list[dict]:
    """FlowProducer.add/addBulk input for every tree, with bullflow's job ids."""
    return [_node_dict(tree, str(index), uid) for index, tree in enumerate(spec.trees())]


def _node_dict(node: FlowNode, path: str, uid: str) -> dict:
    opts = node.opts.to_wire() if node.opts else {}
    opts["jobId"] = job_id(uid, path)
    out: dict = {
        "name": node.name,
        "queueName": node.queue_name,
        "data": {} if node.data is None else node.data,
        "opts": opts,
    }
    if node.children:
        out["children"] = [
            _node_dict(child, f"{path}.{index}", uid) for index, child in enumerate(node.children)
        ]
    return out
