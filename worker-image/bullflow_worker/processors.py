"""Built-in processors for demos and tests.

Use them as ``--processor bullflow_worker.processors:<name>``.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

EXEC_LOG_ENV = "BULLFLOW_EXEC_LOG"


class ProcessorFailure(Exception):
    """Raised by the ``fail`` processor."""


def _data(job: Any) -> Any:
    return job.data if job.data is not None else {}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


async def echo(job: Any) -> Any:
    """Return the job's data unchanged."""
    return job.data


async def sum_children(job: Any) -> float | int:
    """Sum the numeric children return values plus ``data["value"]`` (default 0)."""
    data = _data(job)
    total: float | int = data.get("value", 0) if isinstance(data, dict) else 0
    values = await job.getChildrenValues()
    for value in values.values():
        if _is_number(value):
            total += value
    return total


async def collect_children(job: Any) -> dict[str, Any]:
    """Return the children values, keyed ``<prefix>:<queue>:<jobId>``."""
    return dict(await job.getChildrenValues())


async def fail(job: Any) -> None:
    """Always fail, with the message from ``data["reason"]``."""
    data = _data(job)
    reason = data.get("reason") if isinstance(data, dict) else None
    raise ProcessorFailure(str(reason) if reason else "job failed on purpose")


async def sleep(job: Any) -> Any:
    """Sleep ``data["seconds"]`` (default 1) and return the data."""
    data = _data(job)
    seconds = float(data.get("seconds", 1)) if isinstance(data, dict) else 1.0
    await asyncio.sleep(seconds)
    return job.data


async def count_executions(job: Any) -> Any:
    """Append the job id to the file named by $BULLFLOW_EXEC_LOG, return the data.

    Each execution writes one line, so duplicate lines reveal double execution.
    """
    path = os.environ.get(EXEC_LOG_ENV)
    if not path:
        raise ProcessorFailure(f"{EXEC_LOG_ENV} is not set")
    line = f"{job.id}\n".encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    return job.data


async def scripted(job: Any) -> Any:
    """Behaviour chosen by the job's data, mirrored by the Node.js interop worker.

    ``sleepSeconds``: sleep first. ``failTimes``: fail the first N attempts (retries).
    ``fail``: always fail with this reason. ``combine``: ``sum`` adds the numeric children
    values to ``result``; ``collect`` returns the children values. Else returns ``result``.
    """
    data = _data(job) if isinstance(_data(job), dict) else {}
    if data.get("sleepSeconds"):
        await asyncio.sleep(float(data["sleepSeconds"]))
    if job.attemptsMade < int(data.get("failTimes", 0)):
        raise ProcessorFailure(f"attempt {job.attemptsMade + 1} failed on purpose")
    if data.get("fail"):
        raise ProcessorFailure(str(data["fail"]))
    result = data.get("result")
    combine = data.get("combine")
    if combine == "sum":
        children = await job.getChildrenValues()
        return (result or 0) + sum(v for v in children.values() if _is_number(v))
    if combine == "collect":
        return dict(await job.getChildrenValues())
    return result
