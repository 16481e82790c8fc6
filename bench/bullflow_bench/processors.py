"""Processors for the benchmark's Python workers (`bullflow-worker --processor ...`)."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

_next_slot = 0.0


async def paced(job: Any) -> Any:
    """Complete jobs at no more than $BENCH_RATE per second per process (a rate limit that
    does not depend on the worker's own overhead), returning data["result"]."""
    global _next_slot
    rate = float(os.environ.get("BENCH_RATE", "50"))
    now = time.monotonic()
    _next_slot = max(_next_slot + 1.0 / rate, now)
    await asyncio.sleep(_next_slot - now)
    data = job.data if isinstance(job.data, dict) else {}
    return data.get("result")
