"""The plugin's commands: read the Flow, check, write, and (with --wait/--watch) follow it."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

from . import operations as ops
from .cronflows import last_run, manual_run
from .kube import Kube
from .listing import render_list
from .tree import WIDTH, Style, render_tree
from .watch import watch_frames

CRONFLOW_KINDS = ("cronflow", "cronflows", "cflow", "cronflow.bullflow.io")
# A write refused because the flow changed since it was read (409) is tried again this often,
# each time on the flow as it is then.
WRITE_TRIES = 5


def out_width(stream: TextIO) -> int:
    """80 columns, or a wider terminal's width."""
    if stream.isatty():
        return max(WIDTH, shutil.get_terminal_size((WIDTH, 24)).columns)
    return WIDTH


def tree(kube: Kube, args: argparse.Namespace, out: TextIO) -> int:
    namespace = args.namespace or kube.namespace
    kind, _, name = args.flow.rpartition("/")
    if kind.lower() in CRONFLOW_KINDS:
        args.flow = last_run(kube.runs(namespace, name), name)
    width = out_width(out)
    if not args.watch:
        style: Style = "ascii" if args.ascii else "unicode"
        out.write(render_tree(kube.get(namespace, args.flow), style=style, width=width))
        return 0
    flows = kube.watch(namespace, args.flow)
    tty = out.isatty()
    frames = watch_frames(flows, tty, forever=args.forever, width=width, ascii=args.ascii)
    for frame in frames:
        out.write(frame)
        out.flush()
    return 0


def listing(kube: Kube, args: argparse.Namespace, out: TextIO) -> int:
    namespace = None if args.all_namespaces else args.namespace or kube.namespace
    flows = kube.list(namespace)
    if not flows:
        where = "any namespace" if namespace is None else f"namespace {namespace}"
        print(f"No flows found in {where}.", file=sys.stderr)
        return 0
    now = datetime.now(UTC)
    out.write(render_list(flows, now, all_namespaces=namespace is None, width=out_width(out)))
    return 0


def _annotate(
    kube: Kube, namespace: str, name: str, annotations: Callable[[dict[str, Any]], dict[str, str]]
) -> dict[str, Any]:
    """Writes the annotations made from the flow as read; again if it changed meanwhile."""
    from kubernetes.client.exceptions import ApiException

    for attempt in range(WRITE_TRIES):
        flow = kube.get(namespace, name)
        patch = ops.merge_patch(annotations(flow), flow["metadata"].get("resourceVersion"))
        try:
            return kube.patch(namespace, name, patch)
        except ApiException as err:
            if err.status != 409 or attempt == WRITE_TRIES - 1:
                raise
    raise AssertionError("unreachable")


def _follow(
    kube: Kube,
    namespace: str,
    name: str,
    outcome: Callable[[dict[str, Any]], ops.Outcome | None],
    timeout: float,
) -> ops.Outcome:
    for flow in kube.watch(namespace, name, deadline=time.monotonic() + timeout):
        found = outcome(flow)
        if found is not None:
            return found
    return ops.Outcome(False, f"flow/{name}: no answer from the operator after {timeout:.0f}s")


def _report(found: ops.Outcome, out: TextIO) -> int:
    if found.ok:
        print(found.text, file=out)
        return 0
    print(f"Error: {found.text}", file=sys.stderr)
    return 1


def retry(kube: Kube, args: argparse.Namespace, out: TextIO) -> int:
    namespace = args.namespace or kube.namespace
    token = ops.retry_token(datetime.now(UTC))
    nodes = [n for item in args.node for n in item.split(",") if n]

    def annotations(flow: dict[str, Any]) -> dict[str, str]:
        return ops.retry_annotations(flow, nodes, args.reset_attempts, token)

    _annotate(kube, namespace, args.flow, annotations)
    print(f"flow/{args.flow} retry requested (token {token})", file=out)
    if not args.wait:
        return 0
    out.flush()
    found = _follow(kube, namespace, args.flow, lambda f: ops.retry_outcome(f, token), args.timeout)
    return _report(found, out)


def stop(kube: Kube, args: argparse.Namespace, out: TextIO) -> int:
    namespace = args.namespace or kube.namespace
    user = kube.user

    def annotations(flow: dict[str, Any]) -> dict[str, str]:
        return ops.stop_annotation(flow, user, datetime.now(UTC))

    flow = _annotate(kube, namespace, args.flow, annotations)
    said = flow["metadata"]["annotations"][ops.STOP]
    print(f"flow/{args.flow} stop requested ({said})", file=out)
    if not args.wait:
        return 0
    out.flush()
    found = _follow(kube, namespace, args.flow, lambda f: ops.stop_outcome(f, said), args.timeout)
    return _report(found, out)


def resubmit(kube: Kube, args: argparse.Namespace, out: TextIO) -> int:
    namespace = args.namespace or kube.namespace
    body, notes = ops.resubmitted(kube.get(namespace, args.flow), args.name)
    for note in notes:
        print(f"Note: {note}", file=sys.stderr)
    created = kube.create(namespace, body)
    print(f"flow.bullflow.io/{created['metadata']['name']} created", file=out)
    return 0


def trigger(kube: Kube, args: argparse.Namespace, out: TextIO) -> int:
    """One run now, named CRONFLOW-manual-xxxxx, as the operator would create it."""
    namespace = args.namespace or kube.namespace
    body = manual_run(kube.get_cronflow(namespace, args.cronflow), datetime.now(UTC))
    created = kube.create(namespace, body)
    print(f"flow.bullflow.io/{created['metadata']['name']} created", file=out)
    return 0


COMMANDS: dict[str, Callable[[Kube, argparse.Namespace, TextIO], int]] = {
    "tree": tree,
    "list": listing,
    "retry": retry,
    "stop": stop,
    "resubmit": resubmit,
    "trigger": trigger,
}
