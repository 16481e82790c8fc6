"""A CronFlow's decisions about its Flows: what is active, what the concurrency policy does with
a due run, which finished Flows the history limits prune, and the `${schedule.*}` substitution.
Pure: Flows are given as their wire dicts."""

from __future__ import annotations

from typing import Any, Literal

from .template_expansion import substitute

TERMINAL_PHASES = ("Completed", "Failed", "Stopped")
# Stopped counts as failed for the history limits, as a CronJob's Job that did not succeed:
# a stopped run is one that did not deliver, and failedFlowsHistoryLimit keeps it for a look.
FAILED_PHASES = ("Failed", "Stopped")
CRONFLOW_LABEL = "bullflow.io/cronflow"
SCHEDULED_LABEL = "bullflow.io/scheduled-time"
SCHEDULED_ANNOTATION = "bullflow.io/scheduled-at"
STOP_ANNOTATION = "bullflow.io/stop"
Action = Literal["create", "skip", "replace"]


def phase_of(flow: dict[str, Any]) -> str:
    return str((flow.get("status") or {}).get("phase") or "Pending")


def is_active(flow: dict[str, Any]) -> bool:
    """Not ended yet (a Flow just created, without status, is active: it is about to run)."""
    return phase_of(flow) not in TERMINAL_PHASES and not flow["metadata"].get("deletionTimestamp")


def concurrency_action(policy: str, active: list[dict[str, Any]]) -> Action:
    """Allow: always create. Forbid: skip while a run is active. Replace: stop the active runs,
    then create."""
    if not active or policy == "Allow":
        return "create"
    return "skip" if policy == "Forbid" else "replace"


def can_stop(flow: dict[str, Any]) -> bool:
    """The stop operation needs a submitted flow; a Pending one (not in Redis yet, or refused)
    is deleted instead."""
    return phase_of(flow) in ("Submitted", "Running")


def _run_time(flow: dict[str, Any]) -> str:
    status = flow.get("status") or {}
    meta = flow["metadata"]
    return str(status.get("finishedAt") or meta.get("creationTimestamp") or "")


def history_to_prune(
    flows: list[dict[str, Any]], successful_limit: int, failed_limit: int
) -> list[str]:
    """Names of the finished Flows beyond the limits: the oldest first, by finish time."""
    doomed: list[str] = []
    for phases, limit in ((("Completed",), successful_limit), (FAILED_PHASES, failed_limit)):
        ended = sorted((f for f in flows if phase_of(f) in phases), key=_run_time)
        if len(ended) > limit:
            doomed += [f["metadata"]["name"] for f in ended[: len(ended) - limit]]
    return doomed


def last_successful_time(flows: list[dict[str, Any]], previous: str | None) -> str | None:
    times = [str(f["status"]["finishedAt"]) for f in flows if _completed_with_time(f)]
    return max([*times, *([previous] if previous else [])], default=None)


def _completed_with_time(flow: dict[str, Any]) -> bool:
    return phase_of(flow) == "Completed" and bool((flow.get("status") or {}).get("finishedAt"))


def build_flow(cronflow: dict[str, Any], name: str, schedule: dict[str, Any]) -> dict[str, Any]:
    """The Flow a CronFlow creates: its flowTemplate with `${schedule.*}` substituted (in the
    inline tree's strings, or in a templateRef's arguments), labelled with the CronFlow and
    the scheduled time, owned by it (deleted with it). Raises PlaceholderError."""
    meta = cronflow["metadata"]
    template = cronflow["spec"]["flowTemplate"]
    template_meta = template.get("metadata") or {}
    labels = {**(template_meta.get("labels") or {}), CRONFLOW_LABEL: meta["name"]}
    annotations = dict(template_meta.get("annotations") or {})
    labels[SCHEDULED_LABEL] = str(schedule["unix"])
    annotations[SCHEDULED_ANNOTATION] = schedule["time"]
    owner = {
        "apiVersion": cronflow.get("apiVersion", "bullflow.io/v1alpha1"),
        "kind": "CronFlow",
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    return {
        "apiVersion": "bullflow.io/v1alpha1",
        "kind": "Flow",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [owner],
        },
        # The template expansion's own substitution (one syntax for users): a string that is
        # exactly `${schedule.unix}` becomes a number; `$${` writes a literal `${`.
        "spec": substitute(template["spec"], {"schedule": schedule}),
    }
