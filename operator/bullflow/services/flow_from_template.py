"""A Flow with a templateRef as the plain Flow spec it runs. Pure: no I/O.

The template is expanded once, from the live FlowTemplate, and its spec recorded in the Flow's
status (TemplateRecord); every later reading of the Flow (re-submission after a crash, the
tracker after a restart, retry/stop, deletion) expands the recorded spec again, which gives the
same tree: expansion is deterministic and the Flow's arguments are immutable with its spec.
"""

from __future__ import annotations

import sys
from typing import Any

from pydantic import ValidationError

from ..models.flow import FlowSpec, FlowStatus, TemplateRecord
from ..models.template import FlowTemplateSpec
from .template_expansion import TemplateError, expand, pack, spec_digest, unpack

# The Flow's own value wins when it sets one; for the fields the API server defaults on a Flow,
# a value other than the default counts as set.
FLOW_WINS_IF_SET = ("connection", "ttlSecondsAfterFinished", "idempotencyKey")
FLOW_WINS_IF_NOT_DEFAULT = {"prefix": "prefix", "deletionPolicy": "deletion_policy"}


def with_flow_settings(flow: FlowSpec, expanded: dict[str, Any]) -> dict[str, Any]:
    """The expanded template spec with the Flow's own settings laid over it."""
    own = flow.to_wire()
    out = dict(expanded)
    for key in FLOW_WINS_IF_SET:
        if key in own:
            out[key] = own[key]
    for key, field in FLOW_WINS_IF_NOT_DEFAULT.items():
        if own[key] != FlowSpec.model_fields[field].default or key not in out:
            out[key] = own[key]
    return out


def expanded_spec(flow: FlowSpec, template_spec: dict[str, Any], max_nodes: int) -> FlowSpec:
    """The Flow spec `flow` (with a templateRef) runs with this template spec (wire form).
    Raises TemplateError: InvalidTemplate / InvalidArguments with the precise problem."""
    try:
        checked = FlowTemplateSpec.model_validate(template_spec).to_wire()
    except ValidationError as err:
        raise TemplateError("InvalidTemplate", "the template: " + _first_errors(err)) from None
    tree = expand(checked, flow.arguments or {}, max_nodes=max_nodes)
    try:
        return FlowSpec.model_validate(with_flow_settings(flow, tree))
    except ValidationError as err:
        raise TemplateError(
            "InvalidTemplate", "the expanded flow is invalid: " + _first_errors(err)
        ) from None


def record(
    template: dict[str, Any], flow: FlowSpec, max_nodes: int
) -> tuple[FlowSpec, TemplateRecord]:
    """Expand a live FlowTemplate (the whole object) for `flow`, and what to record of it."""
    source = template.get("spec") or {}
    spec = expanded_spec(flow, source, max_nodes)
    meta = template["metadata"]
    return spec, TemplateRecord(
        name=meta["name"],
        uid=meta["uid"],
        generation=meta.get("generation"),
        digest=spec_digest(spec.to_wire()),
        source=pack(source),
    )


def recorded_spec(flow: FlowSpec, status: FlowStatus) -> FlowSpec | None:
    """The spec a Flow runs: its own, or (templateRef) the one its recorded template gives;
    None if it has a templateRef and no record yet (not expanded, so never submitted).
    Raises TemplateError if the record no longer expands to what it recorded."""
    if flow.template_ref is None:
        return flow
    if status.template is None:
        return None
    try:
        source = unpack(status.template.source)
    except ValueError as err:
        raise TemplateError("InvalidTemplate", f"status.template: {err}") from None
    # No node limit: the recorded expansion passed the one in force when it was made.
    spec = expanded_spec(flow, source, sys.maxsize)
    if spec_digest(spec.to_wire()) != status.template.digest:
        raise TemplateError(
            "InvalidTemplate",
            f"the recorded template no longer expands to digest {status.template.digest} "
            "(the expansion rules changed with the operator's version?)",
        )
    return spec


def _first_errors(err: ValidationError) -> str:
    parts = []
    for issue in err.errors()[:5]:
        where = ".".join(str(p) for p in issue["loc"]) or "spec"
        parts.append(f"{where}: {issue['msg'].removeprefix('Value error, ')}")
    more = len(err.errors()) - 5
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")
