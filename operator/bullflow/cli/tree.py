"""`kubectl bullflow tree`: a Flow drawn as a tree of its jobs, like `argo get`.

Three styles: `unicode` (✔/✖ markers, box lines: a terminal), `ascii` (OK/XX markers, ASCII
lines: --ascii) and `plain` (no markers, the state column says it, ASCII lines: what a pipe or
a log gets from `--watch`). Every line fits `width` columns: long names and values end in ….
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

Style = Literal["unicode", "ascii", "plain"]
WIDTH = 80
SYMBOLS = {
    "completed": ("✔", "OK"),
    "failed": ("✖", "XX"),
    "active": ("●", ">>"),
    "waiting": ("◷", ".."),
    "prioritized": ("◷", ".."),
    "delayed": ("◷", ".."),
    "waiting-children": ("⧗", "<<"),
    "removed": ("○", "--"),
    "unknown": ("?", "??"),
}
PHASE_SYMBOLS = {
    "Completed": ("✔", "OK"),
    "Failed": ("✖", "XX"),
    "Stopped": ("■", "[]"),
    "Running": ("●", ">>"),
    "Submitted": ("◷", ".."),
    "Pending": ("◷", ".."),
}
LINES = {
    "unicode": ("├─", "└─", "│ ", "  "),
    "ascii": ("|-", "`-", "| ", "  "),
    "plain": ("|-", "`-", "| ", "  "),
}
LABEL = "{:<13}"
# A Stopped condition that is not True still says something while it has these reasons.
STOP_REASONS = ("Stopping", "StopPending", "StopRefused")
# Step and queue columns give way (down to MIN_NAME_WIDTH) until the details have this much.
MIN_DETAIL_WIDTH = 16
MIN_NAME_WIDTH = 8
REMOVED_DETAIL = "stopped before it ran"


def marker(symbols: tuple[str, str], style: Style) -> str:
    """The state marker and its separating space; nothing in plain style."""
    if style == "plain":
        return ""
    return (symbols[0] if style == "unicode" else symbols[1]) + " "


def one_line(text: str) -> str:
    return " ".join(text.split())


def cut(text: str, width: int) -> str:
    """`text` in at most `width` columns: a longer one ends in …."""
    if len(text) <= width:
        return text
    return text[: max(width - 1, 0)] + "…" if width > 0 else ""


def short(value: Any, width: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return cut(one_line(text), width)


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 string or BullMQ's milliseconds since the epoch, else None."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return datetime.fromtimestamp(value / 1000, UTC)
    if not value or not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def format_duration(seconds: float) -> str:
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def span(start: Any, end: Any, now: datetime) -> str:
    """The duration from `start` to `end` (to `now` while not ended), '' without a start."""
    began = parse_time(start)
    if began is None:
        return ""
    return format_duration(((parse_time(end) or now) - began).total_seconds())


def condition(status: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == type_), None)


@dataclass
class _Node:
    path: str
    data: dict[str, Any] | None = None
    children: list[_Node] = field(default_factory=list)


def _path_key(path: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else -1 for p in path.split("."))


def _build(nodes: list[dict[str, Any]]) -> list[_Node]:
    """The forest of the listed nodes; a node whose parent is not listed hangs from the nearest
    listed ancestor (large flows list only their failed/active jobs)."""
    by_path = {n["path"]: _Node(n["path"], n) for n in nodes if "path" in n}
    roots: list[_Node] = []
    for path in sorted(by_path, key=_path_key):
        parts = path.split(".")
        parent = None
        for i in range(len(parts) - 1, 0, -1):
            parent = by_path.get(".".join(parts[:i]))
            if parent is not None:
                break
        (parent.children if parent is not None else roots).append(by_path[path])
    return roots


def _entries(node: dict[str, Any], field: str, item: str) -> list[dict[str, Any]]:
    """A node's childrenValues / ignoredFailures entries (also from an operator that wrote
    BullMQ's own map, child key -> value)."""
    entries = node.get(field) or []
    if isinstance(entries, dict):
        return [{"key": k, item: v} for k, v in entries.items()]
    return [e for e in entries if isinstance(e, dict)]


def _children_values(node: dict[str, Any]) -> str:
    """`<- name=value, ...`: what the children returned to this job, by the children's names."""
    values = _entries(node, "childrenValues", "value")
    text = ", ".join(f"{e.get('name') or e.get('key')}={short(e.get('value'), 20)}" for e in values)
    return f"<- {text}" if values else ""


def details(node: dict[str, Any], width: int) -> str:
    """The failure reason of a failed job; what a stop did to a removed one; else its value,
    its children's and ignored failures; cut to `width` (a cut value still says `(truncated)`
    when the status cut it)."""
    if node.get("state") == "failed":
        return cut(one_line(node.get("failedReason") or ""), width)
    if node.get("state") == "removed":  # the state alone reads like a deleted Flow's job
        return cut(REMOVED_DETAIL, width)
    parts = []
    if node.get("state") == "completed" and "returnValue" in node:
        parts.append(short(node["returnValue"]))
    if children := _children_values(node):
        parts.append(children)
    ignored = _entries(node, "ignoredFailures", "reason")
    if ignored:
        names = ", ".join(str(e.get("name") or e.get("key")) for e in ignored)
        noun = "failure" if len(ignored) == 1 else "failures"
        parts.append(f"({len(ignored)} ignored child {noun}: {names})")
    tail = " (truncated)" if node.get("truncated") else ""
    return cut(one_line(" ".join(parts)), width - len(tail)) + tail if parts or tail else ""


def render_tree(
    flow: dict[str, Any],
    now: datetime | None = None,
    style: Style = "unicode",
    width: int = WIDTH,
) -> str:
    """The text `kubectl bullflow tree` prints for a Flow object (as the API returns it)."""
    now = now or datetime.now(UTC)
    lines = _header(flow, now, style)
    nodes = (flow.get("status") or {}).get("nodes") or []
    if nodes:
        lines.append("")
        lines.extend(_job_table(nodes, style, now, width))
    return "".join(cut(line, width) + "\n" if line else "\n" for line in lines)


def _header(flow: dict[str, Any], now: datetime, style: Style) -> list[str]:
    meta = flow.get("metadata", {})
    status = flow.get("status") or {}
    phase = status.get("phase") or "Pending"
    rows = [
        ("Name:", meta.get("name", "")),
        ("Namespace:", meta.get("namespace", "")),
        ("Phase:", marker(PHASE_SYMBOLS.get(phase, ("?", "??")), style) + phase),
        ("Progress:", status.get("progress") or ""),
        ("Duration:", span(status.get("submittedAt"), status.get("finishedAt"), now)),
        ("Message:", _message(status, phase)),
        ("Retried:", _retries(status)),
    ]
    if phase == "Completed" and "result" in status:
        rows.append(("Result:", short(status["result"], WIDTH)))
    nodes = status.get("nodes") or []
    if status.get("nodesTruncated"):
        listed = f"({len(nodes)} of {status.get('totalNodes', '?')})"
        rows.append(("Note:", f"only failed/active jobs are listed {listed}"))
    return [(LABEL.format(label) + value).rstrip() for label, value in rows if value]


def _message(status: dict[str, Any], phase: str) -> str:
    """Why the flow is where it is: its failure, its stop (who, when, or why not), a retry
    refused or waiting, or why it waits (invalid, no workers)."""
    failed = condition(status, "Failed") or {}
    stopped = condition(status, "Stopped") or {}
    retried = condition(status, "Retried") or {}
    ready = condition(status, "Ready") or {}
    if failed.get("status") == "True":
        return one_line(str(failed.get("message", "")))
    if stopped.get("status") == "True" or stopped.get("reason") in STOP_REASONS:
        return one_line(str(stopped.get("message", "")))
    if retried.get("status") == "False" and retried.get("reason") != "Retried":
        return one_line(str(retried.get("message", "")))
    if (
        ready.get("status") == "False"
        and ready.get("message")
        and (phase == "Pending" or ready.get("reason") == "NoWorkers")
    ):
        return one_line(f"{ready.get('reason', '')}: {ready['message']}")
    return ""


def _retries(status: dict[str, Any]) -> str:
    """How often the flow was retried (the history keeps only the last ones) and when last."""
    history = [r for r in status.get("retries") or [] if isinstance(r, dict)]
    count = status.get("retryCount") or len(history)
    if not count:
        return ""
    times = "time" if count == 1 else "times"
    last = f", last at {history[-1]['time']}" if history and history[-1].get("time") else ""
    return f"{count} {times}{last}"


def _job_table(nodes: list[dict[str, Any]], style: Style, now: datetime, width: int) -> list[str]:
    """The jobs as a tree with their queue, state, attempts, duration (when the status has the
    jobs' processedOn) and details, one line each."""
    branch, last, pipe, blank = LINES[style]
    timed = any("processedOn" in n for n in nodes)
    rows: list[tuple[list[str], dict[str, Any]]] = []

    def walk(node: _Node, prefix: str, connector: str, child_prefix: str) -> None:
        data = node.data or {}
        state = data.get("state", "unknown")
        step = marker(SYMBOLS.get(state, SYMBOLS["unknown"]), style)
        cells = [
            f"{prefix}{connector}{step}{data.get('name', node.path)}",
            data.get("queue", ""),
            state,
            str(data.get("attemptsMade", 0)),
        ]
        if timed:
            cells.append(span(data.get("processedOn"), data.get("finishedOn"), now))
        rows.append((cells, data))
        for i, child in enumerate(node.children):
            end = i == len(node.children) - 1
            walk(child, prefix + child_prefix, last if end else branch, blank if end else pipe)

    for root in _build(nodes):
        walk(root, "", "", "")
    header = ["STEP", "QUEUE", "STATE", "ATTEMPTS"] + (["DURATION"] if timed else [])
    widths = [max(len(r[i]) for r in [header, *(c for c, _ in rows)]) for i in range(len(header))]
    _shrink_names(widths, width - MIN_DETAIL_WIDTH - 2 * len(widths))
    detail_width = max(MIN_DETAIL_WIDTH, width - sum(widths) - 2 * len(widths))
    lines = ["  ".join([*(h.ljust(w) for h, w in zip(header, widths, strict=True)), "DETAILS"])]
    for cells, data in rows:
        fitted = [cut(c, w).ljust(w) for c, w in zip(cells, widths, strict=True)]
        lines.append("  ".join([*fitted, details(data, detail_width)]).rstrip())
    return lines


def _shrink_names(widths: list[int], room: int) -> None:
    """Narrows the wider of the step and queue columns (widths[0], widths[1]) a column at a
    time until all columns fit in `room`, or both are MIN_NAME_WIDTH."""
    while sum(widths) > room and max(widths[0], widths[1]) > MIN_NAME_WIDTH:
        widths[0 if widths[0] >= widths[1] else 1] -= 1
