"""Group commit: what is asked while one batch is being written goes out together in the next.

Nothing waits to fill a batch: the first request is written at once, alone, and whatever arrives
while that write is in flight is taken in one go by the next. Batches grow with the load and
stay single requests when there is none.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

# One outcome per item, in order: its result, or the exception its caller gets.
WriteBatch = Callable[[list[Item]], Awaitable[list[Result | Exception]]]


class GroupCommit(Generic[Item, Result]):
    def __init__(
        self,
        write: WriteBatch[Item, Result],
        *,
        weight: Callable[[Item], int] = lambda _: 1,
        max_weight: int = 1000,
    ) -> None:
        """`write` handles a batch; a batch stops growing at `max_weight` (an item heavier
        than that goes alone)."""
        self._write = write
        self._weight = weight
        self._max_weight = max_weight
        self._queue: list[tuple[Item, asyncio.Future[Result]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def __call__(self, item: Item) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._writer is None:
            self._writer = asyncio.create_task(self._drain())
        return await future

    def _take(self) -> list[tuple[Item, asyncio.Future[Result]]]:
        taken, weight = 0, 0
        for item, _ in self._queue:
            weight += self._weight(item)
            if taken and weight > self._max_weight:
                break
            taken += 1
        batch, self._queue = self._queue[:taken], self._queue[taken:]
        return [(item, future) for item, future in batch if not future.done()]  # not cancelled

    async def _drain(self) -> None:
        batch: list[tuple[Item, asyncio.Future[Result]]] = []
        try:
            while self._queue:
                batch = self._take()
                if not batch:
                    continue
                try:
                    outcomes = await self._write([item for item, _ in batch])
                except Exception as err:  # the whole batch failed (Redis unreachable...)
                    outcomes = [err] * len(batch)
                for (_, future), outcome in zip(batch, outcomes, strict=True):
                    if future.done():
                        continue
                    if isinstance(outcome, Exception):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
        except asyncio.CancelledError:
            for _, future in batch + self._queue:
                future.cancel()
            self._queue.clear()
            raise
        finally:
            self._writer = None

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
