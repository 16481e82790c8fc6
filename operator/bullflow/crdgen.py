"""Generate the CRD manifests in crds/ from the pydantic models (their single source), and the
admission policy that keeps a Flow's spec immutable.

Usage: python -m bullflow.crdgen OUTPUT_DIR
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel

from . import GROUP, VERSION
from .models.common import CEL
from .models.cronflow import CronFlowSpec, CronFlowStatus
from .models.flow import SPEC_IMMUTABLE_MESSAGE, FlowSpec, FlowStatus, Phase
from .models.template import FlowTemplateSpec
from .models.workerpool import (
    ScaleTargetRef,
    Scaling,
    WorkerPoolSpec,
    WorkerPoolStatus,
    WorkerTemplate,
)

# A CRD schema cannot recurse, so the FlowNode tree is typed down to this many levels; deeper
# children are kept as-is and validated by the operator (reported as InvalidSpec).
TYPED_DEPTH = 4
# The apiserver multiplies a rule's cost by how many times it can run (the product of the
# enclosing lists' maxItems), so rules are kept only where that stays within its budget; the
# operator applies the same rules (pydantic) everywhere and reports InvalidSpec.
CEL_MAX_CARDINALITY = 20_000
TREE_NODES = ("FlowNode", "TemplateNode")  # recursive: typed down to TYPED_DEPTH
ANY_JSON: dict[str, Any] = {"x-kubernetes-preserve-unknown-fields": True}
DROPPED_KEYS = {"title", "default", "additionalProperties", "nullable"}


def _resolve(
    schema: dict[str, Any], defs: dict[str, Any], depth: int, cardinality: int = 1
) -> dict[str, Any]:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        extra = {k: v for k, v in schema.items() if k not in {"$ref", "default"}}
        if name == "JsonValue":
            return {**ANY_JSON, **_only_description(extra)}
        node_depth = depth + 1 if name in TREE_NODES else depth
        if name in TREE_NODES and node_depth > TYPED_DEPTH:
            return {
                "type": "object",
                **ANY_JSON,
                "description": f"A {name} (validated by the operator below this depth).",
            }
        resolved = _resolve(copy.deepcopy(defs[name]), defs, node_depth, cardinality)
        return {**resolved, **_only_description(extra)}
    if "anyOf" in schema:
        options = [o for o in schema["anyOf"] if o.get("type") != "null"]
        rest = {k: v for k, v in schema.items() if k != "anyOf"}
        if len(options) == 1:
            return _resolve({**options[0], **rest}, defs, depth, cardinality)
        return {**ANY_JSON, **_only_description(rest)}
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in DROPPED_KEYS:
            continue
        if key == CEL and cardinality > CEL_MAX_CARDINALITY:
            continue
        if key == "properties":
            out[key] = {
                name: _resolve(prop, defs, depth, cardinality) for name, prop in value.items()
            }
        elif key == "const":  # not part of the CRD schema language
            out["enum"] = [value]
        elif key == "items":
            out[key] = _resolve(value, defs, depth, cardinality * schema.get("maxItems", 10**9))
        else:
            out[key] = value
    if "type" not in out or (out["type"] == "object" and "properties" not in out):
        out.update(ANY_JSON)  # Any / dict[str, Any]: any JSON value
    return out


def _only_description(extra: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in extra.items() if k == "description"}


def _null_as_string(schema: dict[str, Any]) -> dict[str, Any]:
    # Fields typed `None` (jobId) stay in the schema so a CEL rule can reject them by name.
    if schema.get("type") == "null":
        return {"type": "string", "description": schema.get("description", "")}
    return schema


def openapi_schema(model: type[BaseModel], depth: int = 0) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True)
    defs = raw.pop("$defs", {})
    schema = _resolve(raw, defs, depth)
    return _fix_nulls(schema)


def _fix_nulls(schema: Any) -> Any:
    if isinstance(schema, dict):
        schema = _null_as_string(schema)
        return {k: _fix_nulls(v) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_fix_nulls(v) for v in schema]
    return schema


def _server_defaults(properties: dict[str, Any], model: type[BaseModel], *names: str) -> None:
    """Give the schema of each field of `model` named here the field's own default, so that the
    apiserver fills in what the operator would assume (one source: the model)."""
    for name in names:
        field = model.model_fields[name]
        properties[field.alias or name]["default"] = field.default


def flow_crd() -> dict[str, Any]:
    spec = openapi_schema(FlowSpec)
    _server_defaults(spec["properties"], FlowSpec, "prefix", "deletion_policy")
    status = openapi_schema(FlowStatus)
    return _crd(
        kind="Flow",
        plural="flows",
        short_names=["bflow"],
        description="A BullMQ flow (a tree of jobs) submitted atomically and followed to its end.",
        spec=spec,
        status=status,
        columns=[
            ("Phase", "string", ".status.phase", ", ".join(get_args(Phase))),
            ("Progress", "string", ".status.progress", "Jobs finished / total"),
            ("Reason", "string", '.status.conditions[?(@.type=="Ready")].reason', "Why"),
            # Not the result: a JSON value of any size would push the table past a terminal.
            ("Finished", "date", ".status.finishedAt", "When the flow ended", 1),
            ("Age", "date", ".metadata.creationTimestamp", ""),
        ],
    )


def workerpool_crd() -> dict[str, Any]:
    spec = openapi_schema(WorkerPoolSpec)
    _server_defaults(spec["properties"], WorkerPoolSpec, "prefix")
    # Server-side defaults, so the CEL rules (minReplicas <= maxReplicas) always see values.
    # The object default must be complete: the apiserver checks CEL rules against it as is.
    scaling = spec["properties"]["scaling"]["properties"]
    scaling_default = {}
    for name, field in Scaling.model_fields.items():
        if field.default is not None and isinstance(field.default, int):
            scaling[field.alias or name]["default"] = field.default
            scaling_default[field.alias or name] = field.default
    spec["properties"]["scaling"]["default"] = scaling_default
    worker = spec["properties"]["worker"]["properties"]
    _server_defaults(worker, WorkerTemplate, "concurrency", "termination_grace_period_seconds")
    target = spec["properties"]["scaleTargetRef"]["properties"]
    _server_defaults(target, ScaleTargetRef, "api_version", "kind")
    status = openapi_schema(WorkerPoolStatus)
    return _crd(
        kind="WorkerPool",
        plural="workerpools",
        short_names=["wpool"],
        description="BullMQ workers for some queues, autoscaled by their backlog.",
        spec=spec,
        status=status,
        columns=[
            ("Queues", "string", ".spec.queues", "Queues consumed"),
            (
                "Backlog",
                "integer",
                ".status.backlog.total",
                "waiting + prioritized + due delayed + active",
            ),
            ("Desired", "integer", ".status.desiredReplicas", "Replicas wanted"),
            ("Replicas", "integer", ".status.replicas", "Replicas set on the target"),
            ("Ready", "integer", ".status.readyReplicas", "Ready replicas"),
            ("Reason", "string", ".status.lastScaleReason", "Last scaling decision", 1),
            ("Age", "date", ".metadata.creationTimestamp", ""),
        ],
    )


def cronflow_crd() -> dict[str, Any]:
    spec = openapi_schema(CronFlowSpec)
    _server_defaults(
        spec["properties"],
        CronFlowSpec,
        "concurrency_policy",
        "suspend",
        "successful_flows_history_limit",
        "failed_flows_history_limit",
    )
    flow_spec = spec["properties"]["flowTemplate"]["properties"]["spec"]["properties"]
    _server_defaults(flow_spec, FlowSpec, "prefix", "deletion_policy")
    return _crd(
        kind="CronFlow",
        plural="cronflows",
        short_names=["cflow"],
        description="A Flow created on a schedule (Kubernetes CronJob's semantics).",
        spec=spec,
        status=openapi_schema(CronFlowStatus),
        columns=[
            ("Schedule", "string", ".spec.schedule", "Cron schedule"),
            ("Suspend", "boolean", ".spec.suspend", "No new runs while true"),
            ("Active", "integer", ".status.activeCount", "Runs not ended"),
            ("Last Schedule", "date", ".status.lastScheduleTime", "Last run's scheduled time"),
            ("Next", "string", ".status.nextScheduleTime", "Next scheduled time"),
            ("Age", "date", ".metadata.creationTimestamp", ""),
        ],
    )


def flowtemplate_crd() -> dict[str, Any]:
    crd = _crd(
        kind="FlowTemplate",
        plural="flowtemplates",
        short_names=["bftpl"],
        description="A Flow's tree with parameters, for Flows and CronFlows (spec.templateRef).",
        spec=openapi_schema(FlowTemplateSpec),
        status={"type": "object", **ANY_JSON},
        columns=[
            ("Parameters", "string", ".spec.parameters[*].name", "Parameter names"),
            ("Age", "date", ".metadata.creationTimestamp", ""),
        ],
    )
    version = crd["spec"]["versions"][0]
    del version["subresources"]  # no status: nothing to report about a template itself
    del version["schema"]["openAPIV3Schema"]["properties"]["status"]
    return crd


def _crd(
    *,
    kind: str,
    plural: str,
    short_names: list[str],
    description: str,
    spec: dict[str, Any],
    status: dict[str, Any],
    columns: list[tuple[Any, ...]],
) -> dict[str, Any]:
    printer_columns = []
    for name, type_, path, desc, *priority in columns:
        column = {"name": name, "type": type_, "jsonPath": path}
        if desc:
            column["description"] = desc
        if priority:
            column["priority"] = priority[0]
        printer_columns.append(column)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": short_names,
                "categories": ["bullflow"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": printer_columns,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": description,
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec,
                                "status": status,
                            },
                        }
                    },
                }
            ],
        },
    }


def all_crds() -> dict[str, dict[str, Any]]:
    """File name -> CRD manifest."""
    return {
        "flows.bullflow.io.yaml": flow_crd(),
        "workerpools.bullflow.io.yaml": workerpool_crd(),
        "cronflows.bullflow.io.yaml": cronflow_crd(),
        "flowtemplates.bullflow.io.yaml": flowtemplate_crd(),
    }


SPEC_IMMUTABLE_POLICY = f"flows.{GROUP}-immutable-spec"


def spec_immutable_policy() -> dict[str, Any]:
    """A Flow's spec cannot change once created: the flow was submitted as it was.

    An admission policy, not a CRD rule: it matches updates of `flows` only, so the operator's
    status writes (`flows/status`) do not compare the whole spec every time.
    """
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": SPEC_IMMUTABLE_POLICY},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": [GROUP],
                        "apiVersions": ["*"],
                        "operations": ["UPDATE"],
                        "resources": ["flows"],
                    }
                ]
            },
            "validations": [
                {
                    "expression": "object.spec == oldObject.spec",
                    "message": SPEC_IMMUTABLE_MESSAGE,
                    "reason": "Invalid",
                }
            ],
        },
    }


def spec_immutable_binding() -> dict[str, Any]:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": SPEC_IMMUTABLE_POLICY},
        "spec": {"policyName": SPEC_IMMUTABLE_POLICY, "validationActions": ["Deny"]},
    }


def all_policies() -> dict[str, dict[str, Any]]:
    """File name -> admission policy manifest (installed with the CRDs)."""
    return {
        f"{SPEC_IMMUTABLE_POLICY}.policy.yaml": spec_immutable_policy(),
        f"{SPEC_IMMUTABLE_POLICY}.binding.yaml": spec_immutable_binding(),
    }


def render(crd: dict[str, Any]) -> str:
    header = "# Generated by `make crds` from operator/bullflow/models: do not edit by hand.\n"
    return header + yaml.safe_dump(crd, sort_keys=False, width=100)


def main(argv: list[str]) -> int:
    out_dir = Path(argv[1] if len(argv) > 1 else "crds")
    out_dir.mkdir(parents=True, exist_ok=True)
    for filename, crd in {**all_crds(), **all_policies()}.items():
        (out_dir / filename).write_text(render(crd))
        print(f"wrote {out_dir / filename}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
