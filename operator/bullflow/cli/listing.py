"""`kubectl bullflow list`: one line per Flow with its phase, progress, age and duration."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from .tree import WIDTH, condition, cut, one_line, parse_time, span

MIN_NAME_WIDTH = 12


def format_age(seconds: float) -> str:
    """kubectl's short age: 45s, 3m20s, 25m, 2h5m, 20h, 3d4h, 12d."""
    total = max(0, int(seconds))
    minutes, hours, days = total // 60, total // 3600, total // 86400
    if total < 120:
        return f"{total}s"
    if minutes < 10:
        return f"{minutes}m{total % 60}s" if total % 60 else f"{minutes}m"
    if hours < 3:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if days < 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    return f"{days}d"


def _row(flow: dict[str, Any], now: datetime, with_namespace: bool) -> list[str]:
    meta = flow.get("metadata") or {}
    status = flow.get("status") or {}
    created = parse_time(meta.get("creationTimestamp"))
    ready = condition(status, "Ready") or {}
    cells = [
        meta.get("name", ""),
        status.get("phase") or "Pending",
        status.get("progress") or "-",
        format_age((now - created).total_seconds()) if created else "-",
        span(status.get("submittedAt"), status.get("finishedAt"), now) or "-",
        one_line(str(ready.get("reason") or "")),
    ]
    return [meta.get("namespace", ""), *cells] if with_namespace else cells


def render_list(
    flows: Iterable[dict[str, Any]], now: datetime, all_namespaces: bool, width: int = WIDTH
) -> str:
    """The table `kubectl bullflow list` prints; names are cut (…) so that lines fit `width`
    and the reason takes what is left."""
    header = ["NAME", "PHASE", "PROGRESS", "AGE", "DURATION", "REASON"]
    if all_namespaces:
        header = ["NAMESPACE", *header]
    rows = [_row(f, now, all_namespaces) for f in flows]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    names = [0, 1] if all_namespaces else [0]
    reason = max(len(r[-1]) for r in [header, *rows])
    # The name columns give way, the wider first, until the reason fits or they are narrow.
    while sum(widths) + 2 * len(widths) + reason > width:
        widest = max(names, key=lambda i: widths[i])
        if widths[widest] <= MIN_NAME_WIDTH:
            break
        widths[widest] -= 1
    lines = []
    for row in [header, *rows]:
        cells = [cut(c, w).ljust(w) for c, w in zip(row, widths, strict=False)]
        lines.append(cut("  ".join([*cells, row[-1]]).rstrip(), width))
    return "\n".join(lines) + "\n"
