"""The Flow custom resource: a declarative BullMQ flow (tree of jobs)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, JsonValue, ValidationInfo, field_validator, model_validator

from .common import (
    CEL,
    CamelModel,
    Condition,
    SecretKeyRef,
    cel,
    connection_field,
    prefix_field,
)

# BullMQ: priorities 0..2^21; queue names and job ids must not contain ':' (key separator).
MAX_PRIORITY = 2_097_152
MAX_DEPTH = 100
MAX_CHILDREN = 20_000
MAX_ROOTS = 1_000
NAME_PATTERN = r"^[^:]+$"
FAILURE_OPTIONS = (
    "failParentOnFailure",
    "ignoreDependencyOnFailure",
    "removeDependencyOnFailure",
    "continueParentOnFailure",
)
FAILURE_OPTIONS_MESSAGE = (
    "failParentOnFailure, ignoreDependencyOnFailure, removeDependencyOnFailure and "
    "continueParentOnFailure are mutually exclusive: set at most one"
)
TREE_MESSAGE = "exactly one of root, roots or templateRef is required"
ARGUMENTS_MESSAGE = "arguments are for a templateRef: set templateRef or drop arguments"
SPEC_IMMUTABLE_MESSAGE = "spec is immutable: the flow was submitted to Redis"
JOB_ID_MESSAGE = (
    "jobId is not user-settable: bullflow derives job ids from the Flow's uid and node path "
    "so that submission happens exactly once"
)

NodeState = Literal[
    "waiting",
    "delayed",
    "prioritized",
    "active",
    "waiting-children",
    "completed",
    "failed",
    "removed",
    "unknown",
]
# Stopped: ended by a `bullflow.io/stop` request (terminal, like Completed and Failed).
Phase = Literal["Pending", "Submitted", "Running", "Completed", "Failed", "Stopped"]


class Backoff(CamelModel):
    """Retry backoff between attempts."""

    type: Literal["fixed", "exponential"] = Field(description="Backoff strategy.")
    delay: int = Field(ge=0, le=86_400_000, description="Base delay in milliseconds.")


_FAILURE_RULE = (
    " + ".join(f"(has(self.{o}) && self.{o} ? 1 : 0)" for o in FAILURE_OPTIONS) + " <= 1"
)


class JobOpts(CamelModel):
    """BullMQ job options supported by bullflow."""

    model_config = {
        "json_schema_extra": {
            CEL: [
                cel(_FAILURE_RULE, FAILURE_OPTIONS_MESSAGE),
                cel("!has(self.jobId)", JOB_ID_MESSAGE),
            ]
        }
    }

    priority: int | None = Field(
        default=None, ge=0, le=MAX_PRIORITY, description="0 (highest, default) to 2^21."
    )
    delay: int | None = Field(
        default=None, ge=0, le=31_536_000_000, description="Milliseconds before it can run."
    )
    attempts: int | None = Field(default=None, ge=1, le=1000, description="Total tries.")
    backoff: Backoff | None = Field(default=None, description="Delay between retries.")
    lifo: bool | None = Field(default=None, description="Add to the head of the queue.")
    remove_on_complete: bool | None = Field(
        default=None, description="Remove the job from Redis when it completes."
    )
    remove_on_fail: bool | None = Field(
        default=None, description="Remove the job from Redis when it finally fails."
    )
    fail_parent_on_failure: bool | None = Field(
        default=None, description="A final failure of this job fails its parent too."
    )
    ignore_dependency_on_failure: bool | None = Field(
        default=None,
        description="A final failure lets the parent run; recorded as an ignored failure.",
    )
    remove_dependency_on_failure: bool | None = Field(
        default=None, description="A final failure removes this dependency from the parent."
    )
    continue_parent_on_failure: bool | None = Field(
        default=None, description="A final failure starts the parent at once."
    )
    job_id: None = Field(default=None, description="Not settable: derived by bullflow.")

    @field_validator("job_id", mode="before")
    @classmethod
    def _job_id_not_settable(cls, value: object) -> None:
        if value is not None:
            raise ValueError(JOB_ID_MESSAGE)
        return None

    @model_validator(mode="after")
    def _one_failure_option(self) -> JobOpts:
        if sum(bool(getattr(self, _snake(o))) for o in FAILURE_OPTIONS) > 1:
            raise ValueError(FAILURE_OPTIONS_MESSAGE)
        return self


def _snake(camel: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in camel)


class FlowNode(CamelModel):
    """One job of the flow; children must all complete before it runs."""

    name: str = Field(min_length=1, max_length=256, description="BullMQ job name.")
    queue_name: str = Field(
        min_length=1, max_length=200, pattern=NAME_PATTERN, description="Queue (no ':')."
    )
    data: JsonValue = Field(default=None, description="Job data: any JSON value.")
    opts: JobOpts | None = Field(default=None, description="BullMQ job options.")
    children: list[FlowNode] = Field(
        default_factory=list,
        max_length=MAX_CHILDREN,
        description="Jobs that must complete before this one runs.",
    )


class TemplateRef(CamelModel):
    """A FlowTemplate in the Flow's own namespace."""

    name: str = Field(min_length=1, max_length=253, description="The FlowTemplate's name.")


class FlowSpec(CamelModel):
    """What to run: one tree (root), several trees (roots), or a FlowTemplate (templateRef)."""

    model_config = {
        "json_schema_extra": {
            CEL: [
                cel(
                    "(has(self.root) ? 1 : 0) + (has(self.roots) ? 1 : 0)"
                    " + (has(self.templateRef) ? 1 : 0) == 1",
                    TREE_MESSAGE,
                ),
                cel("!has(self.arguments) || has(self.templateRef)", ARGUMENTS_MESSAGE),
                # Immutability is not a rule here but an admission policy (crdgen): a CRD rule
                # on the spec runs on every status write too, and `self == oldSelf` on a big
                # spec made every status write compare the whole tree.
            ]
        }
    }

    root: FlowNode | None = Field(default=None, description="The flow's root job.")
    roots: list[FlowNode] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_ROOTS,
        description="Independent trees submitted together in one transaction (addBulk).",
    )
    template_ref: TemplateRef | None = Field(
        default=None,
        description=(
            "Run a FlowTemplate's tree, expanded once with `arguments` when the Flow is "
            "submitted (recorded in status.template: a later template edit does not change it)."
        ),
    )
    arguments: dict[str, JsonValue] | None = Field(
        default=None,
        description="Values of the template's parameters (any JSON), by parameter name.",
    )
    prefix: str = prefix_field("bull")
    connection: SecretKeyRef | None = connection_field()
    deletion_policy: Literal["Delete", "Orphan"] = Field(
        default="Delete", description="Delete removes the flow's jobs from Redis with the Flow."
    )
    idempotency_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description=(
            "Makes a re-created Flow (deleted by TTL or an Argo CD prune, applied again) count as "
            "the same run: its jobs are not submitted again and its status is restored from "
            "Redis. Unique among the namespace's Flows."
        ),
    )
    ttl_seconds_after_finished: int | None = Field(
        default=None, ge=0, le=31_536_000, description="Delete the Flow this long after it ends."
    )

    @model_validator(mode="after")
    def _exactly_one_tree(self) -> FlowSpec:
        given = (self.root, self.roots, self.template_ref)
        if sum(part is not None for part in given) != 1:
            raise ValueError(TREE_MESSAGE)
        if self.arguments is not None and self.template_ref is None:
            raise ValueError(ARGUMENTS_MESSAGE)
        return self

    def trees(self) -> list[FlowNode]:
        return [self.root] if self.root is not None else list(self.roots or [])


class ChildValue(CamelModel):
    """A child's return value as its parent received it (BullMQ's getChildrenValues)."""

    path: str | None = Field(
        default=None, description="The child's position in the tree; absent if not of this flow."
    )
    name: str | None = Field(default=None, description="The child's job name, if of this flow.")
    key: str = Field(description="The child's BullMQ job key, <prefix>:<queue>:<job id>.")
    value: Any = Field(default=None, json_schema_extra={"nullable": True})


class IgnoredFailure(CamelModel):
    """A child whose final failure the parent ignored (BullMQ's getIgnoredChildrenFailures)."""

    path: str | None = Field(
        default=None, description="The child's position in the tree; absent if not of this flow."
    )
    name: str | None = Field(default=None, description="The child's job name, if of this flow.")
    key: str = Field(description="The child's BullMQ job key, <prefix>:<queue>:<job id>.")
    reason: str = Field(description="The child's failure reason.")


class NodeStatus(CamelModel):
    """The state of one job of the flow."""

    path: str = Field(description="Position in the tree, e.g. 0, 0.1, 0.1.3.")
    name: str
    queue: str
    job_id: str
    state: NodeState
    attempts_made: int = 0
    return_value: Any = Field(default=None, json_schema_extra={"nullable": True})
    failed_reason: str | None = None
    children_values: list[ChildValue] | None = Field(
        default=None, description="The values of the children that completed, in tree order."
    )
    ignored_failures: list[IgnoredFailure] | None = Field(
        default=None, description="The children whose failure was ignored, in tree order."
    )
    truncated: bool | None = Field(default=None, description="A value was cut to the size limit.")

    @field_validator("children_values", "ignored_failures", mode="before")
    @classmethod
    def _from_key_map(cls, value: object, info: ValidationInfo) -> object:
        """Statuses written before these were lists (a Flow's, or one kept in Redis for its
        idempotencyKey) held BullMQ's own map, child key -> value: read as entries by key."""
        if not isinstance(value, dict):
            return value
        field = "value" if info.field_name == "children_values" else "reason"
        return [{"key": key, field: item} for key, item in value.items()]


class RetryRecord(CamelModel):
    """One applied `bullflow.io/retry` request."""

    value: str = Field(description="The annotation's value (the request's token).")
    time: str = Field(description="When the operator applied it.")
    nodes: list[str] = Field(
        default_factory=list, description="Paths of the jobs that run again (retried, re-added)."
    )
    reset_attempts: bool = Field(default=False, description="attemptsMade was reset.")


class TemplateRecord(CamelModel):
    """The FlowTemplate a Flow's tree was made from, as it was when the Flow first expanded it:
    the Flow expands from this record ever after (a re-submission after a crash, an operator
    restart), never from the live template, which may have been edited or deleted since."""

    name: str = Field(description="The FlowTemplate's name.")
    uid: str = Field(description="The FlowTemplate's uid.")
    generation: int | None = Field(default=None, description="Its generation then.")
    digest: str = Field(description="sha256 of the expanded spec (canonical JSON).")
    source: str = Field(description="The template's spec then: gzip'd JSON, base64.")


class FlowStatus(CamelModel):
    """Written only by the operator, through the status subresource."""

    phase: Phase = "Pending"
    progress: str | None = Field(
        default=None,
        description=(
            "finished/total jobs. A job is finished when it completed or failed (a failure the "
            "flow tolerates included). A Completed flow reads total/total: jobs still pending "
            "when its roots completed (beside a continueParentOnFailure child) no longer hold "
            "it up; a Failed flow reads the jobs that ended."
        ),
    )
    submitted_at: str | None = None
    finished_at: str | None = None
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)
    result: Any = Field(default=None, description="The root's return value.")
    total_nodes: int | None = None
    counts: dict[str, int] | None = Field(default=None, description="Jobs per state.")
    nodes: list[NodeStatus] = Field(default_factory=list)
    nodes_truncated: bool | None = Field(
        default=None, description="Only failed/active nodes are listed (large flow)."
    )
    retries: list[RetryRecord] | None = Field(
        default=None, description="The last 20 applied retries, oldest first."
    )
    retry_count: int | None = Field(default=None, description="Retries applied in all.")
    last_handled_retry: str | None = Field(
        default=None,
        description="The last bullflow.io/retry value the operator handled (applied or refused).",
    )
    last_handled_stop: str | None = Field(
        default=None,
        description="The last bullflow.io/stop value the operator handled (applied or refused).",
    )
    template: TemplateRecord | None = Field(
        default=None, description="For a Flow with a templateRef: what it was expanded from."
    )


FlowNode.model_rebuild()
