"""Percentiles and summaries of samples."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); q in [0, 100]."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(samples: Iterable[float]) -> dict[str, float]:
    """n, p50, p95, p99, min, max, mean of the samples (NaN-free input expected)."""
    values = [float(v) for v in samples if v is not None and not math.isnan(float(v))]
    if not values:
        return {
            "n": 0,
            "p50": math.nan,
            "p95": math.nan,
            "p99": math.nan,
            "min": math.nan,
            "max": math.nan,
            "mean": math.nan,
        }
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "min": min(values),
        "max": max(values),
        "mean": sum(values) / len(values),
    }


def ratio(a: float, b: float) -> float:
    if not b or math.isnan(a) or math.isnan(b):
        return math.nan
    return a / b


def over_runs(runs: Iterable[dict[str, Any]], key: str) -> dict[str, float]:
    """The summary of one number of every run (the runs' median is its p50)."""
    return summarize(run[key] for run in runs)
