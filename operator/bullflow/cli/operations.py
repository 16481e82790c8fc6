"""Day-2 operations on a Flow, the pure part: what `retry`, `stop` and `resubmit` check before
they write, what they write, and how they read the operator's answer.

The operator acts on annotations (so that plain kubectl and GitOps can do the same):
`bullflow.io/retry` (a new value per retry, with `retry-nodes` and `retry-reset-attempts`
beside it, written in one patch) and `bullflow.io/stop`. It checks everything again; the
checks here only turn an obvious mistake into an error before anything is written.
"""

from __future__ import annotations

import copy
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from .. import GROUP, VERSION
from ..models.flow import FlowSpec, FlowStatus
from ..services.flow_from_template import recorded_spec
from ..services.template_expansion import TemplateError
from .tree import condition

RETRY = "bullflow.io/retry"
RETRY_NODES = "bullflow.io/retry-nodes"
RETRY_RESET_ATTEMPTS = "bullflow.io/retry-reset-attempts"
STOP = "bullflow.io/stop"
RETRYABLE_PHASES = ("Failed", "Stopped")
FINISHED_PHASES = ("Completed", "Failed", "Stopped")
# Annotations a resubmitted Flow does not inherit: the operator's bookkeeping and requests,
# the last applied manifest (of the old name), and Argo CD's tracking id (Argo CD would count
# the copy as its own resource and prune it).
DROPPED_ANNOTATIONS = (
    "bullflow.io/",
    "kubectl.kubernetes.io/last-applied-configuration",
    "argocd.argoproj.io/tracking-id",
)


class OperationError(Exception):
    """A request refused before anything was written; the message is one line for the user."""


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def phase_of(flow: dict[str, Any]) -> str:
    return str((flow.get("status") or {}).get("phase") or "Pending")


def ref(flow: dict[str, Any]) -> str:
    return f"flow/{flow.get('metadata', {}).get('name', '')}"


def retry_token(now: datetime, random_hex: str | None = None) -> str:
    """A value no earlier retry of the flow had: the time and 6 random hex digits."""
    return f"{rfc3339(now)}/{random_hex or secrets.token_hex(3)}"


def _running_spec(flow: dict[str, Any]) -> dict[str, Any]:
    """The spec whose tree the flow runs: its own, or for a `templateRef` the expansion its
    status recorded (the live template may have changed since)."""
    spec = flow.get("spec") or {}
    if not spec.get("templateRef"):
        return spec
    try:
        # Only the record is read: the rest of the status is not needed to expand it.
        record = (flow.get("status") or {}).get("template")
        recorded = recorded_spec(
            FlowSpec.model_validate(spec), FlowStatus.model_validate({"template": record})
        )
    except (TemplateError, ValidationError) as err:
        raise OperationError(f"{ref(flow)}: cannot read its recorded template: {err}") from None
    return recorded.to_wire() if recorded is not None else {}


def _spec_nodes(flow: dict[str, Any]) -> list[tuple[str, str]]:
    """(path, name) of every node of the spec, paths as the operator numbers them."""
    spec = _running_spec(flow)
    trees = [spec["root"]] if spec.get("root") else list(spec.get("roots") or [])
    stack = [(str(i), node) for i, node in enumerate(trees)]
    found = []
    while stack:
        path, node = stack.pop()
        found.append((path, str(node.get("name", ""))))
        stack.extend((f"{path}.{i}", c) for i, c in enumerate(node.get("children") or []))
    return found


def known_nodes(flow: dict[str, Any]) -> list[tuple[str, str]]:
    """(path, name) of the flow's jobs: the status lists them, unless it lists only some (a
    large flow), then the spec does."""
    status = flow.get("status") or {}
    listed = [(str(n.get("path")), str(n.get("name"))) for n in status.get("nodes") or []]
    if status.get("nodesTruncated") or not listed:
        return _spec_nodes(flow)
    return listed


def resolve_nodes(flow: dict[str, Any], wanted: list[str]) -> list[str]:
    """The paths of the nodes named by path or job name (a name: every node of that name, as
    the operator reads it)."""
    nodes = known_nodes(flow)
    paths = {path for path, _ in nodes}
    resolved: list[str] = []
    for item in wanted:
        match = [item] if item in paths else [path for path, name in nodes if name == item]
        if not match:
            raise OperationError(f"{ref(flow)} has no node with path or name {item!r}")
        resolved.extend(p for p in match if p not in resolved)
    return resolved


def retry_annotations(
    flow: dict[str, Any], nodes: list[str], reset_attempts: bool, token: str
) -> dict[str, str]:
    """The three retry annotations for `flow`, or OperationError when it cannot be retried."""
    phase = phase_of(flow)
    if phase not in RETRYABLE_PHASES:
        raise OperationError(
            f"{ref(flow)} is {phase}: only a Failed or Stopped flow can be retried"
        )
    paths = resolve_nodes(flow, nodes)
    return {
        RETRY: token,
        RETRY_NODES: ",".join(paths),
        RETRY_RESET_ATTEMPTS: "true" if reset_attempts else "false",
    }


def stop_annotation(flow: dict[str, Any], user: str, now: datetime) -> dict[str, str]:
    """The stop annotation for `flow`, or OperationError when it has already finished."""
    phase = phase_of(flow)
    if phase in FINISHED_PHASES:
        raise OperationError(f"{ref(flow)} is {phase}: only an unfinished flow can be stopped")
    return {STOP: f"by {user} at {rfc3339(now)}"}


def merge_patch(annotations: dict[str, str], resource_version: str | None) -> dict[str, Any]:
    """A JSON merge patch writing `annotations`; with the resourceVersion the checks were made
    on, so that the API server refuses it (409) if the flow changed since."""
    meta: dict[str, Any] = {"annotations": annotations}
    if resource_version:
        meta["resourceVersion"] = resource_version
    return {"metadata": meta}


@dataclass(frozen=True)
class Outcome:
    ok: bool
    text: str


def retry_outcome(flow: dict[str, Any], token: str) -> Outcome | None:
    """How the operator answered the retry `token`: None while it has not handled it (also
    while it waits for Redis)."""
    status = flow.get("status") or {}
    if status.get("lastHandledRetry") != token:
        return None
    retried = condition(status, "Retried") or {}
    if retried.get("status") == "True":
        return Outcome(True, f"{ref(flow)} retry applied: phase {phase_of(flow)}")
    message = retried.get("message") or f"retry {token!r} refused ({retried.get('reason')})"
    return Outcome(False, f"{ref(flow)}: {message}")


def stop_outcome(flow: dict[str, Any], value: str) -> Outcome | None:
    """Whether the stop `value` took effect: None while the flow stops (running jobs finish)
    or the operator has not handled it; a refusal, or a flow that ended otherwise first, is an
    Outcome that is not ok."""
    status = flow.get("status") or {}
    phase = phase_of(flow)
    stopped = condition(status, "Stopped") or {}
    if phase == "Stopped":
        said = f": {stopped['message']}" if stopped.get("message") else ""
        return Outcome(True, f"{ref(flow)} stopped{said}")
    if status.get("lastHandledStop") == value and stopped.get("reason") == "StopRefused":
        return Outcome(False, f"{ref(flow)}: {stopped.get('message') or 'stop refused'}")
    if phase in FINISHED_PHASES:
        return Outcome(False, f"{ref(flow)} ended {phase} before the stop took effect")
    return None


def resubmitted(flow: dict[str, Any], name: str | None) -> tuple[dict[str, Any], list[str]]:
    """A new Flow with `flow`'s spec and labels (named `name`, else generated from the old
    name) and the notes to print about what was left out."""
    meta = flow.get("metadata") or {}
    spec = copy.deepcopy(flow.get("spec") or {})
    notes = []
    key = spec.pop("idempotencyKey", None)
    if key is not None:
        notes.append(
            f"spec.idempotencyKey {key!r} is not copied: with it the new flow would count as "
            "the run already made and not run again"
        )
    annotations = {
        k: v
        for k, v in (meta.get("annotations") or {}).items()
        if not any(k.startswith(d) for d in DROPPED_ANNOTATIONS)
    }
    new_meta: dict[str, Any] = {"name": name} if name else {"generateName": f"{meta['name']}-"}
    if meta.get("labels"):
        new_meta["labels"] = dict(meta["labels"])
    if annotations:
        new_meta["annotations"] = annotations
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Flow",
        "metadata": new_meta,
        "spec": spec,
    }
    return body, notes
