"""Waiting on an observable with a deadline, for async tests (never a fixed sleep)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest


async def until(predicate: Callable[[], object], what: str, timeout: float = 20.0) -> None:
    """Returns once predicate() is true; fails the test after `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)
