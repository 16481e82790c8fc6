"""Summaries of py-spy's collapsed stacks (`--format raw`): where the operator's CPU goes."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

_LINE = re.compile(r":\d+\)$")


def _frame(raw: str) -> str:
    """'reconcile (bullflow/controllers/flow.py:87)' -> 'reconcile (bullflow/controllers/flow.py)'
    with site-packages paths shortened."""
    frame = _LINE.sub(")", raw.strip())
    return re.sub(r"\(.*?site-packages/", "(", frame)


def summarize_profile(paths: list[Path], top: int = 15) -> dict[str, Any]:
    total = 0
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            frames = [_frame(f) for f in stack.split(";") if f.strip()]
            frames = [f for f in frames if not f.startswith(("process ", "thread "))]
            if not frames:
                continue
            total += n
            own[frames[-1]] += n
            for f in set(frames):
                inclusive[f] += n
            mine = [f for f in frames if "bullflow/" in f]
            if mine:
                ours[mine[-1]] += n
            packages[_package(stack)] += n

    def pct(counter: Counter[str]) -> list[dict[str, Any]]:
        return [
            {"frame": f, "samples": c, "percent": round(100.0 * c / max(total, 1), 1)}
            for f, c in counter.most_common(top)
        ]

    return {
        "samples": total,
        "top_self": pct(own),
        "top_inclusive": pct(inclusive),
        "top_bullflow": pct(ours),
        "by_package": pct(packages),
    }


THIRD_PARTY = (
    "kopf",
    "aiohttp",
    "kubernetes_asyncio",
    "redis",
    "bullmq",
    "pydantic",
    "pydantic_core",
    "prometheus_client",
    "yarl",
    "multidict",
    "msgpack",
    "yaml",
    "pythonjsonlogger",
    "iso8601",
    "frozenlist",
    "aiosignal",
    "propcache",
    "aiohappyeyeballs",
    "certifi",
    "semver",
)


def _package(stack: str) -> str:
    """Who the sample's CPU is for: the innermost frame of bullflow or of a third-party package
    (py-spy prints paths relative to sys.path: `kopf/_core/...`), else `stdlib <module>`."""
    frames = [f for f in stack.split(";") if f.strip()]
    for raw in reversed(frames):
        path = raw.rsplit("(", 1)[-1]
        if "bullflow/" in path:
            return "bullflow"
        top = path.split("/", 1)[0]
        if top in THIRD_PARTY:
            return top
    leaf = frames[-1].rsplit("(", 1)[-1] if frames else "?"
    return "stdlib " + leaf.split("/", 1)[0].split(".py", 1)[0].split(":", 1)[0]
