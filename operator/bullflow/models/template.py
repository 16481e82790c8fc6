"""The FlowTemplate custom resource: a Flow's tree with declared parameters, for Flows (and
CronFlows) to run with arguments. Expansion: services/template_expansion.py."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, JsonValue, field_validator, model_validator

from .common import CEL, CamelModel, SecretKeyRef, cel, connection_field, prefix_field
from .flow import MAX_CHILDREN, MAX_ROOTS

MAX_PARAMETERS = 100
PARAMETER_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
ParameterType = Literal["string", "number", "boolean", "array", "object"]


class TemplateParameter(CamelModel):
    """One parameter: `${params.NAME}` in the template's strings."""

    name: str = Field(
        min_length=1, max_length=63, pattern=PARAMETER_NAME_PATTERN, description="Its name."
    )
    description: str | None = Field(default=None, max_length=1024, description="What it is.")
    default: JsonValue = Field(
        default=None, description="Its value when the Flow gives none (any JSON)."
    )
    required: bool | None = Field(default=None, description="The Flow must give a value.")
    type: ParameterType | None = Field(default=None, description="The value's JSON type.")
    enum: list[JsonValue] | None = Field(
        default=None, min_length=1, max_length=1000, description="The values allowed."
    )


class TemplateNode(CamelModel):
    """A FlowNode whose strings may hold placeholders, repeated over `withItems` if set."""

    name: str = Field(min_length=1, max_length=1024, description="BullMQ job name.")
    queue_name: str = Field(min_length=1, max_length=1024, description="Queue (no ':').")
    data: JsonValue = Field(default=None, description="Job data: any JSON value.")
    opts: dict[str, JsonValue] | None = Field(
        default=None, description="BullMQ job options (a Flow's opts, placeholders allowed)."
    )
    with_items: JsonValue = Field(
        default=None,
        description=(
            "Repeat this node once per item, in order, with ${item} (and ${item.FIELD}) bound: "
            "a list, or a string that is exactly one placeholder naming a list, e.g. "
            '"${params.items}".'
        ),
    )
    children: list[TemplateNode] = Field(
        default_factory=list,
        max_length=MAX_CHILDREN,
        description="Jobs that must complete before this one runs.",
    )


class FlowTemplateSpec(CamelModel):
    """Parameters, and the Flow spec they are used in (root or roots, prefix, ...)."""

    # A Flow with a templateRef takes root/roots from here, and prefix, connection,
    # deletionPolicy and ttlSecondsAfterFinished from here unless it sets its own (for prefix
    # and deletionPolicy, which the API server defaults on a Flow: a value other than the
    # default). See controllers/flow_template.py.

    model_config = {
        "json_schema_extra": {
            CEL: [
                cel("has(self.root) != has(self.roots)", "exactly one of root or roots is required")
            ]
        }
    }

    parameters: list[TemplateParameter] = Field(
        default_factory=list,
        max_length=MAX_PARAMETERS,
        description="The parameters, unique by name.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    root: TemplateNode | None = Field(default=None, description="The flow's root job.")
    roots: list[TemplateNode] | None = Field(
        default=None, min_length=1, max_length=MAX_ROOTS, description="Independent trees."
    )
    prefix: str | None = prefix_field(None)
    connection: SecretKeyRef | None = connection_field()
    deletion_policy: Literal["Delete", "Orphan"] | None = Field(
        default=None, description="Delete removes the flow's jobs from Redis with the Flow."
    )
    ttl_seconds_after_finished: int | None = Field(
        default=None, ge=0, le=31_536_000, description="Delete the Flow this long after it ends."
    )

    @field_validator("parameters")
    @classmethod
    def _unique_names(cls, value: list[TemplateParameter]) -> list[TemplateParameter]:
        names = [p.name for p in value]
        if duplicated := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"parameter names must be unique: {', '.join(duplicated)}")
        return value

    @model_validator(mode="after")
    def _exactly_one_tree(self) -> FlowTemplateSpec:
        if (self.root is None) == (self.roots is None):
            raise ValueError("exactly one of root or roots is required")
        return self


TemplateNode.model_rebuild()
