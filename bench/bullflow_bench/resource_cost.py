"""6. Resource cost: the operator's CPU-seconds per 1,000 flows end to end (created → Completed).

Not a run of its own: read from the submission scenario's runs (the median) and, when it ran,
the many-flows scenario's submit + completion wave. Operator process utime+stime
(/proc/<pid>/stat); no baseline (a FlowProducer has no process of its own to measure)."""

from __future__ import annotations

from typing import Any

from .rows import row


def resource_cost(sub: dict[str, Any], many: dict[str, Any] | None) -> dict[str, Any]:
    """6: operator CPU-seconds per 1,000 flows end to end (created → Completed)."""
    if sub.get("status") != "ok":
        return {"status": "skipped", "reason": "the submission scenario did not run", "rows": []}
    cost = sub["cost"]["cpu_s_per_1000_flows"]
    rows = [row("CPU-s per 1,000 flows (submission runs, median)", cost["p50"], "CPU-s")]
    metrics: dict[str, Any] = {"submission_cpu_s_per_1000_flows": cost}
    if many and many.get("status") == "ok":
        m = many["metrics"]["cpu_s_per_1000_flows"]
        rows.append(row("CPU-s per 1,000 flows (10k live flows, wave A)", m, "CPU-s"))
        metrics["many_cpu_s_per_1000_flows"] = m
    return {
        "status": "ok",
        "metrics": metrics,
        "rows": rows,
        "runs": [],
        "notes": [
            "Operator process utime+stime (/proc/<pid>/stat) from the first create to the "
            "last Flow seen Completed (submission, tracking, status writes, events), "
            "divided by the number of flows."
        ],
    }
