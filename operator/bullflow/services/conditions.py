"""Kubernetes conditions: set one, keeping lastTransitionTime when the status is unchanged."""

from __future__ import annotations

from datetime import UTC, datetime

from ..models.common import Condition


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: bool | None,
    reason: str,
    message: str = "",
    generation: int | None = None,
    now: str | None = None,
) -> list[Condition]:
    """A new list with `type_` set; other conditions are kept in order."""
    status_text = "Unknown" if status is None else ("True" if status else "False")
    previous = next((c for c in conditions if c.type == type_), None)
    transition = (
        previous.last_transition_time
        if previous is not None and previous.status == status_text
        else (now or now_rfc3339())
    )
    updated = Condition(
        type=type_,
        status=status_text,
        reason=reason,
        message=message,
        observed_generation=generation,
        last_transition_time=transition,
    )
    if previous is None:
        return [*conditions, updated]
    return [updated if c.type == type_ else c for c in conditions]
