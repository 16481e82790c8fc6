"""`kubectl bullflow`: a kubectl plugin for bullflow resources.

    kubectl bullflow tree <flow> [-n NAMESPACE] [--context CTX] [--kubeconfig FILE] [--ascii]

prints the Flow as a tree of its jobs, like `argo get`: each job's name, queue, state, attempts
and its return value or failure reason, under a header with the phase, progress and duration.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .. import GROUP, VERSION, __version__

SYMBOLS = {
    "completed": ("✔", "OK"),
    "failed": ("✖", "XX"),
    "active": ("●", ">>"),
    "waiting": ("◷", ".."),
    "prioritized": ("◷", ".."),
    "delayed": ("◷", ".."),
    "waiting-children": ("⧗", "<<"),
    "unknown": ("?", "??"),
}
PHASE_SYMBOLS = {
    "Completed": ("✔", "OK"),
    "Failed": ("✖", "XX"),
    "Running": ("●", ">>"),
    "Submitted": ("◷", ".."),
    "Pending": ("◷", ".."),
}
DETAIL_WIDTH = 60


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


def _short(value: Any, width: int = DETAIL_WIDTH) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _entries(node: dict[str, Any], field: str, item: str) -> list[dict[str, Any]]:
    """A node's childrenValues / ignoredFailures entries (also from an operator that wrote
    BullMQ's own map, child key -> value)."""
    entries = node.get(field) or []
    if isinstance(entries, dict):
        return [{"key": k, item: v} for k, v in entries.items()]
    return [e for e in entries if isinstance(e, dict)]


def _children_values(node: dict[str, Any]) -> str:
    """`name=value, ...`: what the children returned to this job, by the children's names."""
    values = _entries(node, "childrenValues", "value")
    text = ", ".join(
        f"{e.get('name') or e.get('key')}={_short(e.get('value'), 20)}" for e in values
    )
    return _short(f"<- {text}") if values else ""


def _details(node: dict[str, Any]) -> str:
    state = node.get("state")
    if state == "failed":
        return _short(node.get("failedReason") or "")
    parts = []
    if state == "completed" and "returnValue" in node:
        parts.append(_short(node["returnValue"]))
    if children := _children_values(node):
        parts.append(children)
    ignored = _entries(node, "ignoredFailures", "reason")
    if ignored:
        names = ", ".join(str(e.get("name") or e.get("key")) for e in ignored)
        noun = "failure" if len(ignored) == 1 else "failures"
        parts.append(_short(f"({len(ignored)} ignored child {noun}: {names})"))
    if node.get("truncated"):
        parts.append("(truncated)")
    return " ".join(parts)


def _parse_time(value: str | None) -> datetime | None:
    if not value:
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


def render_tree(flow: dict[str, Any], now: datetime | None = None, ascii: bool = False) -> str:
    """The text `kubectl bullflow tree` prints for a Flow object (as the API returns it)."""
    meta = flow.get("metadata", {})
    status = flow.get("status") or {}
    pick = 1 if ascii else 0
    phase = status.get("phase") or "Pending"
    lines = [
        f"Name:        {meta.get('name', '')}",
        f"Namespace:   {meta.get('namespace', '')}",
        f"Phase:       {PHASE_SYMBOLS.get(phase, ('?', '??'))[pick]} {phase}",
    ]
    if status.get("progress"):
        lines.append(f"Progress:    {status['progress']}")
    started = _parse_time(status.get("submittedAt"))
    if started is not None:
        ended = _parse_time(status.get("finishedAt")) or now or datetime.now(UTC)
        lines.append(f"Duration:    {format_duration((ended - started).total_seconds())}")
    failed = next((c for c in status.get("conditions", []) if c.get("type") == "Failed"), None)
    ready = next((c for c in status.get("conditions", []) if c.get("type") == "Ready"), None)
    if failed and failed.get("status") == "True":
        lines.append(f"Message:     {failed.get('message', '')}")
    elif (
        ready
        and ready.get("status") == "False"
        and ready.get("message")
        and (phase == "Pending" or ready.get("reason") == "NoWorkers")
    ):
        lines.append(f"Message:     {ready.get('reason', '')}: {ready['message']}")
    if phase == "Completed" and "result" in status:
        lines.append(f"Result:      {_short(status['result'])}")
    nodes = status.get("nodes") or []
    if status.get("nodesTruncated"):
        lines.append(
            f"Note:        only failed/active jobs are listed "
            f"({len(nodes)} of {status.get('totalNodes', '?')})"
        )
    if nodes:
        lines.append("")
        lines.extend(_job_table(nodes, ascii))
    return "\n".join(lines) + "\n"


def _job_table(nodes: list[dict[str, Any]], ascii: bool) -> list[str]:
    """The jobs as a tree with their queue, state, attempts and details, one line each."""
    pick = 1 if ascii else 0
    rows: list[tuple[str, str, str, str, str]] = []
    branch, last, pipe, blank = ("|-", "`-", "| ", "  ") if ascii else ("├─", "└─", "│ ", "  ")

    def walk(node: _Node, prefix: str, connector: str, child_prefix: str) -> None:
        data = node.data or {}
        state = data.get("state", "unknown")
        symbol = SYMBOLS.get(state, SYMBOLS["unknown"])[pick]
        rows.append(
            (
                f"{prefix}{connector}{symbol} {data.get('name', node.path)}",
                data.get("queue", ""),
                state,
                str(data.get("attemptsMade", 0)),
                _details(data),
            )
        )
        for i, child in enumerate(node.children):
            is_last = i == len(node.children) - 1
            walk(
                child,
                prefix + child_prefix,
                last if is_last else branch,
                blank if is_last else pipe,
            )

    for root in _build(nodes):
        walk(root, "", "", "")
    header = ("STEP", "QUEUE", "STATE", "ATTEMPTS", "DETAILS")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    lines: list[str] = []
    for row in [header, *rows]:
        cells = [row[i].ljust(widths[i]) for i in range(4)] + [row[4]]
        lines.append("  ".join(cells).rstrip())
    return lines


def _load_flow(
    name: str, namespace: str | None, kubeconfig: str | None, context: str | None
) -> dict[str, Any]:
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=kubeconfig, context=context)
    if namespace is None:
        _, active = config.list_kube_config_contexts(config_file=kubeconfig)
        if context:
            contexts, _ = config.list_kube_config_contexts(config_file=kubeconfig)
            active = next((c for c in contexts if c["name"] == context), active)
        namespace = (active or {}).get("context", {}).get("namespace") or "default"
    try:
        return client.CustomObjectsApi(api).get_namespaced_custom_object(  # type: ignore[return-value]
            GROUP, VERSION, namespace, "flows", name
        )
    finally:
        api.close()


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="kubectl bullflow",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"bullflow {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    tree = sub.add_parser("tree", help="print a Flow as a tree of its jobs and their states")
    tree.add_argument("flow", help="the Flow's name")
    tree.add_argument(
        "-n",
        "--namespace",
        default=None,
        help="the Flow's namespace (default: the context's, else default)",
    )
    tree.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: $KUBECONFIG)")
    tree.add_argument("--context", default=None, help="kubeconfig context")
    tree.add_argument("--ascii", action="store_true", help="ASCII symbols and lines only")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from kubernetes.client.exceptions import ApiException

    try:
        flow = _load_flow(args.flow, args.namespace, args.kubeconfig, args.context)
    except ApiException as err:
        if err.status == 404:
            print(f"Error: flow {args.flow!r} not found", file=sys.stderr)
        else:
            print(f"Error: {err.status} {err.reason}", file=sys.stderr)
        return 1
    sys.stdout.write(render_tree(flow, ascii=args.ascii))
    return 0


if __name__ == "__main__":
    sys.exit(main())
