"""Long-lived loops catch every Exception to survive errors; they must still stop when asked.

redis-py (8.x) can turn a cancellation that lands inside a command into a connection error
(it disconnects and raises its own exception), so the CancelledError never reaches the loop:
a loop that catches Exception and goes on would then run forever, and whoever awaits the
cancelled task (shutdown) waits forever too. Each such `except Exception` calls this first.
"""

from __future__ import annotations

import asyncio


def raise_if_cancelling() -> None:
    """Re-raise the cancellation a library swallowed, if this task was asked to stop."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
