"""The WorkerPool custom resource: BullMQ workers for some queues, scaled by their backlog."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from .common import (
    CEL,
    CamelModel,
    Condition,
    SecretKeyRef,
    cel,
    connection_field,
    prefix_field,
)
from .flow import NAME_PATTERN

PROCESSOR_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_.]*$"
MIN_MAX_MESSAGE = "scaling.minReplicas must be <= scaling.maxReplicas"
FALLBACK_MESSAGE = "scaling.fallbackReplicas must be <= scaling.maxReplicas"
ONE_OF_MESSAGE = "exactly one of worker (bullflow worker image) or scaleTargetRef is required"
DEFAULT_IMAGE_REPO = "ghcr.io/bullflow/worker"
QueueName = Annotated[str, Field(min_length=1, max_length=200, pattern=NAME_PATTERN)]


class Scaling(CamelModel):
    """How many replicas: ceil(backlog / jobsPerReplica), clamped to [min, max]."""

    model_config = {
        "json_schema_extra": {
            CEL: [
                cel("self.minReplicas <= self.maxReplicas", MIN_MAX_MESSAGE),
                cel(
                    "!has(self.fallbackReplicas) || self.fallbackReplicas <= self.maxReplicas",
                    FALLBACK_MESSAGE,
                ),
            ]
        }
    }

    min_replicas: int = Field(default=0, ge=0, le=1000, description="0 allows scale to zero.")
    max_replicas: int = Field(default=10, ge=1, le=1000, description="Upper bound.")
    jobs_per_replica: int = Field(
        default=10, ge=1, le=1_000_000, description="Target backlog per replica."
    )
    activation_backlog: int = Field(
        default=0,
        ge=0,
        le=1_000_000,
        description="From zero replicas, scale up only when the backlog exceeds this.",
    )
    scale_up_stabilization_seconds: int = Field(
        default=0,
        ge=0,
        le=3600,
        description="Scale up to the lowest recommendation of this window (0: at once).",
    )
    scale_down_stabilization_seconds: int = Field(
        default=60,
        ge=0,
        le=3600,
        description="Scale down to the highest recommendation of this window.",
    )
    poll_interval_seconds: int = Field(
        default=5,
        ge=1,
        le=3600,
        description="Backlog poll period; queue events wake the operator earlier.",
    )
    fallback_replicas: int | None = Field(
        default=None,
        ge=0,
        le=1000,
        description="Replicas while Redis is unreachable; unset keeps the current count.",
    )

    @model_validator(mode="after")
    def _bounds(self) -> Scaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError(MIN_MAX_MESSAGE)
        if self.fallback_replicas is not None and self.fallback_replicas > self.max_replicas:
            raise ValueError(FALLBACK_MESSAGE)
        return self


class WorkerTemplate(CamelModel):
    """The bullflow worker image running a processor; the operator owns its Deployment."""

    processor: str = Field(
        min_length=3,
        max_length=256,
        pattern=PROCESSOR_PATTERN,
        description="module:function, sync or async, called with the job.",
    )
    concurrency: int = Field(default=1, ge=1, le=10_000, description="Jobs in parallel per queue.")
    image: str | None = Field(
        default=None,
        max_length=512,
        description=f"Worker image; default {DEFAULT_IMAGE_REPO}:<operator version>.",
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    args: list[str] = Field(
        default_factory=list, max_length=64, description="Extra bullflow-worker arguments."
    )
    termination_grace_period_seconds: int = Field(
        default=300,
        ge=1,
        le=86_400,
        description="Time a worker gets to finish its jobs after SIGTERM.",
    )
    env: list[dict[str, Any]] = Field(
        default_factory=list, max_length=256, description="Extra container env (core/v1 EnvVar)."
    )
    env_from: list[dict[str, Any]] = Field(
        default_factory=list, max_length=64, description="core/v1 EnvFromSource."
    )
    resources: dict[str, Any] | None = Field(
        default=None, description="core/v1 ResourceRequirements."
    )
    volumes: list[dict[str, Any]] = Field(
        default_factory=list, max_length=64, description="core/v1 Volume."
    )
    volume_mounts: list[dict[str, Any]] = Field(
        default_factory=list, max_length=64, description="core/v1 VolumeMount."
    )
    service_account_name: str | None = Field(default=None, max_length=253)
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, Any]] = Field(
        default_factory=list, max_length=64, description="core/v1 Toleration."
    )
    affinity: dict[str, Any] | None = Field(default=None, description="core/v1 Affinity.")
    pod_labels: dict[str, str] = Field(default_factory=dict, description="Extra pod labels.")
    pod_annotations: dict[str, str] = Field(
        default_factory=dict, description="Extra pod annotations."
    )


class ScaleTargetRef(CamelModel):
    """An existing workload the user manages (Node.js workers, custom images): only scaled."""

    api_version: Literal["apps/v1"] = "apps/v1"
    kind: Literal["Deployment", "StatefulSet"] = "Deployment"
    name: str = Field(min_length=1, max_length=253)


class WorkerPoolSpec(CamelModel):
    model_config = {
        "json_schema_extra": {
            CEL: [cel("has(self.worker) != has(self.scaleTargetRef)", ONE_OF_MESSAGE)]
        }
    }

    queues: list[QueueName] = Field(
        min_length=1, max_length=50, description="Queue names these workers consume."
    )
    prefix: str = prefix_field("bull")
    connection: SecretKeyRef | None = connection_field()
    worker: WorkerTemplate | None = Field(
        default=None, description="Run the bullflow worker image (an owned Deployment)."
    )
    scale_target_ref: ScaleTargetRef | None = Field(
        default=None, description="Scale an existing Deployment/StatefulSet instead."
    )
    scaling: Scaling = Field(default_factory=Scaling, description="Autoscaling policy.")

    @model_validator(mode="after")
    def _one_target(self) -> WorkerPoolSpec:
        if (self.worker is None) == (self.scale_target_ref is None):
            raise ValueError(ONE_OF_MESSAGE)
        return self


class Backlog(CamelModel):
    """Jobs per state, summed over the pool's queues."""

    # The docstring is the CRD's description. In Python a Backlog is also one queue's counts;
    # `a + b` sums them, and `total` is derived, never given (a value passed for it is replaced).

    waiting: int = 0
    prioritized: int = 0
    delayed: int = Field(default=0, description="All delayed jobs.")
    delayed_due: int = Field(default=0, description="Delayed jobs whose time has come.")
    active: int = 0
    waiting_children: int = 0
    paused: int = 0
    total: int = Field(
        default=0, description="What scaling uses: waiting + prioritized + delayedDue + active."
    )

    @model_validator(mode="after")
    def _derive_total(self) -> Backlog:
        self.total = self.waiting + self.prioritized + self.delayed_due + self.active
        return self

    def __add__(self, other: Backlog) -> Backlog:
        counted = (f for f in Backlog.model_fields if f != "total")
        return Backlog(**{f: getattr(self, f) + getattr(other, f) for f in counted})


class WorkerPoolStatus(CamelModel):
    """Written only by the operator, through the status subresource."""

    observed_generation: int | None = None
    target: str | None = Field(default=None, description="Kind/name of the scaled workload.")
    backlog: Backlog | None = None
    replicas: int | None = Field(default=None, description="Current spec.replicas of the target.")
    desired_replicas: int | None = None
    ready_replicas: int | None = None
    last_scale_time: str | None = None
    last_scale_reason: str | None = None
    conditions: list[Condition] = Field(default_factory=list)
