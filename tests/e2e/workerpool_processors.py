"""Processors for the WorkerPool e2e tests (imported by real bullflow-worker processes)."""

from __future__ import annotations

import asyncio
from typing import Any

from bullflow_worker.processors import count_executions


async def sleep_and_count(job: Any) -> Any:
    """Sleep data["seconds"], then record the execution (one line per run, see
    bullflow_worker.processors.count_executions): a job cut short by a kill is not counted,
    a job run twice is counted twice."""
    data = job.data if isinstance(job.data, dict) else {}
    await asyncio.sleep(float(data.get("seconds", 0.5)))
    return await count_executions(job)
