"""Shared model plumbing: camelCase aliases and Kubernetes conditions."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue
from pydantic.alias_generators import to_camel

CEL = "x-kubernetes-validations"


def cel(rule: str, message: str) -> dict[str, JsonValue]:
    """One CEL validation rule for the CRD schema."""
    return {"rule": rule, "message": message}


class CamelModel(BaseModel):
    """Base model: camelCase on the wire, snake_case in Python, unknown fields rejected."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class SecretKeyRef(CamelModel):
    """A key of a Secret in the resource's own namespace holding a redis:// or rediss:// URL."""

    name: str = Field(min_length=1, max_length=253, description="Secret name.")
    key: str = Field(
        default="url", min_length=1, max_length=253, description="Key holding the URL."
    )


class Condition(CamelModel):
    """A Kubernetes-style status condition."""

    type: str = Field(description="Condition type, e.g. Submitted, Completed, Failed.")
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(description="CamelCase machine-readable reason.")
    message: str = Field(default="", description="Human-readable details.")
    observed_generation: int | None = Field(default=None, description="Spec generation seen.")
    last_transition_time: str = Field(description="RFC 3339 time of the last status change.")


# A BullMQ key prefix: no `:` (BullMQ's separator); `{}` allowed for Redis Cluster hash tags.
PREFIX_PATTERN = r"^[A-Za-z0-9_.{}-]+$"


def prefix_field(default: str | None) -> Any:
    """The `prefix` field of every resource naming BullMQ queues."""
    return Field(
        default=default,
        min_length=1,
        max_length=64,
        pattern=PREFIX_PATTERN,
        description="BullMQ key prefix.",
    )


def connection_field() -> Any:
    """The `connection` field of every resource that talks to Redis."""
    return Field(
        default=None, description="Secret with the Redis URL; default: the operator's own."
    )
