"""The finalizer workers and the TTL timers outlive any error: the failed call is retried until
it works (stub API server: the failures are injected; the real-server paths are e2e-tested)."""

from __future__ import annotations

from typing import Any

from bullflow.controllers.bookkeeping import AfterSubmit, Bookkeeper
from bullflow.controllers.flow_cleanup import TtlTimers
from bullflow.models.flow import FlowStatus
from bullflow.storage.kube import ObjectRef
from tests.harness.aio import until

REF = ObjectRef("Flow", "flows", "ns", "f", "0b5c2a3e-1111-4222-8333-444455556666")


class FlakyKube:
    """Fails the first `failures` calls with errors no code path expects."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def _call(self) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError(f"injected failure {self.calls}")

    async def add_finalizer(self, *_args: Any) -> bool:
        self._call()
        return True

    async def delete(self, *_args: Any) -> None:
        self._call()


async def test_a_ttl_deletion_that_fails_is_retried_until_it_works():
    kube = FlakyKube(failures=3)
    timers = TtlTimers(kube, backoff=lambda _attempt: 0.01)  # type: ignore[arg-type]
    finished = FlowStatus(phase="Completed", finished_at="2026-01-01T00:00:00Z")
    timers.schedule(REF, 0, finished)  # due long ago
    await until(lambda: kube.calls == 4 and not timers._tasks, "the fourth, successful delete")


async def test_a_finalizer_worker_outlives_an_unexpected_error_and_retries():
    kube = FlakyKube(failures=1)
    bookkeeper = Bookkeeper(kube, "bullflow.io/finalizer", workers=1)  # type: ignore[arg-type]
    bookkeeper.start()
    try:
        bookkeeper.add(AfterSubmit(REF, has_finalizer_list=False))
        await until(lambda: kube.calls == 2 and not bookkeeper._pending, "the retried finalizer")
        assert not any(task.done() for task in bookkeeper._tasks)
    finally:
        await bookkeeper.stop()
