"""The report's unit: every scenario returns {"status", "params", "runs", "metrics", "rows",
"notes"}; `rows` are what the summary and the Markdown table show, each made by `row()`."""

from __future__ import annotations

from typing import Any

from .stats import ratio


def row(
    metric: str,
    value: float,
    unit: str,
    *,
    py: float | None = None,
    node: float | None = None,
    vs: str = "",
    target: str | None = None,
    met: bool | None = None,
) -> dict[str, Any]:
    """One line of the report. `vs` names the ratio's denominator (python/node)."""
    base = {"python": py, "node": node}.get(vs)
    return {
        "metric": metric,
        "value": value,
        "unit": unit,
        "baseline_python": py,
        "baseline_node": node,
        "ratio": ratio(value, base) if base else None,
        "ratio_vs": vs or None,
        "target": target,
        "met": met,
    }
