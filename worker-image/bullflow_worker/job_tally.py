"""Per-queue counts of finished jobs since the last summary line.

The worker logs each job at debug and these counts at info every `--summary-interval`
seconds: a per-job info line cost a measurable share of throughput on short jobs
(bench/results/2026-12-03-worker-throughput.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class QueueTally:
    queue: str
    completed: int = 0
    failed: int = 0


@dataclass
class JobTally:
    _counts: dict[str, QueueTally] = field(default_factory=dict)

    def _of(self, queue: str) -> QueueTally:
        tally = self._counts.get(queue)
        if tally is None:
            tally = self._counts[queue] = QueueTally(queue)
        return tally

    def completed(self, queue: str) -> None:
        self._of(queue).completed += 1

    def failed(self, queue: str) -> None:
        self._of(queue).failed += 1

    def take(self) -> list[QueueTally]:
        """The queues that finished a job since the last call, in first-seen order; resets."""
        taken = [t for t in self._counts.values() if t.completed or t.failed]
        self._counts = {}
        return taken
