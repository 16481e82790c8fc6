"""The chaos suite's flows: mixed shapes (nested trees, failing children under each failure
option, retries, emoji/CJK data and return values, values over the status value limit, several
roots, slow jobs still running when a fault hits), one-job burst flows, and the flow whose
status would exceed the 256 KiB budget. Every job runs the `scripted` processor (data drives
it: `result`, `combine`, `fail`, `failTimes`, `sleepSeconds`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

GROUP, VERSION = "bullflow.io", "v1alpha1"
PREFIX = "chaos"
PARENTS, CHILDREN, LEAVES, BURST, STALL = "cp", "cc", "cg", "burst", "stall"
NODE_QUEUES = (PARENTS, LEAVES, BURST)  # served by the Node.js worker
PYTHON_QUEUES = (CHILDREN, LEAVES, BURST)  # served by the Python worker
ALL_QUEUES = (PARENTS, CHILDREN, LEAVES, BURST, STALL)
UNICODE = "注文 ✅ 🚀 データ 🌸"


@dataclass(frozen=True)
class Planned:
    name: str
    body: dict[str, Any]
    phase: str  # the phase the flow must end in


def job(
    name: str,
    queue: str,
    data: Any,
    children: list[dict[str, Any]] | None = None,
    **opts: Any,
) -> dict[str, Any]:
    node: dict[str, Any] = {"name": name, "queueName": queue, "data": data}
    if opts:
        node["opts"] = opts
    if children:
        node["children"] = children
    return node


def flow_body(name: str, root: dict[str, Any] | None = None, roots: list | None = None) -> dict:
    spec: dict[str, Any] = {"prefix": PREFIX, "deletionPolicy": "Orphan"}
    if roots is not None:
        spec["roots"] = roots
    else:
        spec["root"] = root
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Flow",
        "metadata": {"name": name, "labels": {"bullflow.test/chaos": "true"}},
        "spec": spec,
    }


def _sum(i: int, slow: float) -> tuple[dict, str]:
    return (
        job(
            "sum",
            PARENTS,
            {"combine": "sum", "result": i},
            [job("one", CHILDREN, {"result": 1}), job("two", CHILDREN, {"result": 2})],
        ),
        "Completed",
    )


def _nested(i: int, slow: float) -> tuple[dict, str]:
    def mid(k: int) -> dict[str, Any]:
        leaves = [job(f"leaf-{k}-{n}", LEAVES, {"result": k * 10 + n}) for n in range(2)]
        return job(f"mid-{k}", CHILDREN, {"combine": "sum"}, leaves)

    return job("collect", PARENTS, {"combine": "collect"}, [mid(1), mid(2)]), "Completed"


def _child_fails(i: int, slow: float) -> tuple[dict, str]:
    children = [
        # Still running when its sibling has failed the flow: its end must reach the status too.
        job("ok", CHILDREN, {"result": 1, "sleepSeconds": slow or 1.0}),
        job("bad", CHILDREN, {"fail": f"💥 失敗 {i}"}),
    ]
    return job("blocked", PARENTS, {"combine": "sum"}, children), "Failed"


def _fail_parent(i: int, slow: float) -> tuple[dict, str]:
    child = job("bad", CHILDREN, {"fail": f"broken {i} ❌"}, failParentOnFailure=True)
    return job("parent", PARENTS, {"combine": "sum"}, [child]), "Failed"


def _ignore_failure(i: int, slow: float) -> tuple[dict, str]:
    children = [
        job("ok", CHILDREN, {"result": "ok ✅"}),
        job("bad", CHILDREN, {"fail": "ignored 🙈"}, ignoreDependencyOnFailure=True),
    ]
    return job("tolerant", PARENTS, {"combine": "collect"}, children), "Completed"


def _unicode(i: int, slow: float) -> tuple[dict, str]:
    children = [
        job("テキスト", CHILDREN, {"result": f"{UNICODE} {i}"}),
        job("structured", LEAVES, {"result": {"名前": "山田 🌸", "n": i, "emoji": "🚀" * 5}}),
    ]
    return job("集計", PARENTS, {"combine": "collect", "note": UNICODE}, children), "Completed"


def _retried(i: int, slow: float) -> tuple[dict, str]:
    child = job(
        "flaky",
        CHILDREN,
        {"result": 5, "failTimes": 1},
        attempts=3,
        backoff={"type": "fixed", "delay": 100},
    )
    return job("after-retry", PARENTS, {"combine": "sum"}, [child]), "Completed"


def _long_value(i: int, slow: float) -> tuple[dict, str]:
    # 700 x ("🚀" 4 bytes + "注文" 6 bytes) = 7,000 UTF-8 bytes, 2,100 characters: over the
    # 4,096-byte value limit in bytes, under it in characters.
    child = job("long", CHILDREN, {"result": f"{i}:" + "🚀注文" * 700})
    return job("long-parent", PARENTS, {"combine": "collect"}, [child]), "Completed"


def _slow(i: int, slow: float) -> tuple[dict, str]:
    seconds = slow or 1.0
    children = [
        job("slow-a", CHILDREN, {"result": 1, "sleepSeconds": seconds}),
        job("slow-b", LEAVES, {"result": 2, "sleepSeconds": seconds}),
    ]
    return job("slow-sum", PARENTS, {"combine": "sum"}, children), "Completed"


Shape = Callable[[int, float], tuple[dict, str]]
SHAPES: list[tuple[str, Shape]] = [
    ("sum", _sum),
    ("nested", _nested),
    ("childfails", _child_fails),
    ("failparent", _fail_parent),
    ("ignore", _ignore_failure),
    ("unicode", _unicode),
    ("retried", _retried),
    ("long", _long_value),
    ("slow", _slow),
    ("roots", lambda i, slow: ({}, "Completed")),  # several roots: built below
    ("slow", _slow),
]


# Shapes left out of the fault steps' batches (run by the baseline only); empty since the
# operator follows a failParentOnFailure flow until its parent has failed.
BASELINE_ONLY: frozenset[str] = frozenset()


def batch(step: str, count: int, slow: float = 1.0, *, every_shape: bool = False) -> list[Planned]:
    """`count` flows cycling through the shapes; the slow ones sleep `slow` seconds."""
    shapes = [s for s in SHAPES if every_shape or s[0] not in BASELINE_ONLY]
    out = []
    for i in range(count):
        shape, make = shapes[i % len(shapes)]
        name = f"{step}-{shape}-{i:03d}"
        if shape == "roots":
            roots = [
                job("first", PARENTS, {"result": f"a{i}"}),
                job("second", CHILDREN, {"result": {"b": i, "text": UNICODE}}),
            ]
            out.append(Planned(name, flow_body(name, roots=roots), "Completed"))
            continue
        root, phase = make(i, slow)
        out.append(Planned(name, flow_body(name, root), phase))
    return out


def burst(step: str, count: int) -> list[Planned]:
    """One-job flows on the fast `burst` queue."""
    return [
        Planned(
            f"{step}-{i:03d}",
            flow_body(f"{step}-{i:03d}", job("one", BURST, {"result": i})),
            "Completed",
        )
        for i in range(count)
    ]


def over_budget(name: str, children: int = 199) -> Planned:
    """A root collecting `children` long multi-byte return values: each is 4,500 UTF-8 bytes
    (1,350 characters), over the 4,096-byte value limit; the values and the children values
    together are ~1.8 MB, seven times the 256 KiB status budget, while the whole flow (root +
    199) is still within the 200 nodes listed one by one. The root's own result is the whole
    map (~900 KB in Redis)."""
    kids = [
        job(f"c{n:03d}", CHILDREN, {"result": f"{n}:" + "注文🚀" * 450}) for n in range(children)
    ]
    return Planned(
        name, flow_body(name, job("collect", PARENTS, {"combine": "collect"}, kids)), "Completed"
    )


def stalled(name: str, seconds: float) -> Planned:
    """A parent whose child sleeps on the `stall` queue: its worker is SIGKILLed mid-job."""
    child = job("survivor", STALL, {"result": "survived 🚀 生存", "sleepSeconds": seconds})
    return Planned(
        name,
        flow_body(name, job("after-stall", PARENTS, {"combine": "collect"}, [child])),
        "Completed",
    )
