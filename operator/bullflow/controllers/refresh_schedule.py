"""When each tracked flow's status is refreshed next. Pure: the caller passes the time.

The invariant the tracker keeps with it: a flow marked dirty stays scheduled until a refresh
that *started after the mark* ended with the written status equal to what Redis says (or the
flow finished or went away). A refresh that failed (Redis unreadable, the API server refusing or
unreachable) is retried after a backoff, however long the fault lasts; nothing waits for the
slow resync.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field


class Outcome(enum.Enum):
    CURRENT = "current"  # the written status says what Redis says
    FINISHED = "finished"  # ... and the flow has ended: stop following it
    RETRY = "retry"  # a read or a write failed: try again after a backoff
    GONE = "gone"  # the Flow object no longer exists


@dataclass
class RefreshSchedule:
    """Dirty flows, each refreshed at most once per `patch_interval` (events coalesce), and
    failed ones retried with exponential backoff and jitter.

    The backoff cap grows with the number of failing flows so that an outage costs about
    `retry_rate` attempts per second in all, whatever the number of flows. A flow that failed
    and then succeeds is a recovery: it pulls every backed-off flow forward, so after an outage
    the first retry that works (due within about 1/retry_rate s when many flows wait, within
    `retry_max` s when few do) releases all the others at once. Successes of flows that never
    failed release nothing: a flow that keeps failing for a reason of its own stays backed off.
    """

    patch_interval: float
    retry_base: float = 0.25
    retry_max: float = 1.0
    retry_rate: float = 50.0
    rng: random.Random = field(default_factory=random.Random)
    dirty: set[str] = field(default_factory=set)
    in_flight: set[str] = field(default_factory=set)
    not_before: dict[str, float] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)  # token -> failed refreshes in a row

    def mark(self, token: str) -> None:
        self.dirty.add(token)

    def drop(self, token: str) -> None:
        self.dirty.discard(token)
        self.not_before.pop(token, None)
        self.failures.pop(token, None)

    def pending(self) -> bool:
        return bool(self.dirty - self.in_flight)

    def take_due(self, now: float) -> tuple[list[str], float | None]:
        """The tokens to refresh now (marked in flight), and when the next one falls due."""
        due: list[str] = []
        next_due: float | None = None
        for token in self.dirty - self.in_flight:
            at = self.not_before.get(token, 0.0)
            if at > now:
                next_due = at if next_due is None else min(next_due, at)
                continue
            self.dirty.discard(token)
            self.in_flight.add(token)
            self.not_before[token] = now + self.patch_interval
            due.append(token)
        return due, next_due

    def done(self, token: str, outcome: Outcome, now: float) -> None:
        """A refresh of `token` ended. A mark that arrived meanwhile stays: it is refreshed
        again once its interval has passed."""
        self.in_flight.discard(token)
        if outcome is Outcome.RETRY:
            attempt = self.failures.get(token, 0) + 1
            self.failures[token] = attempt
            self.not_before[token] = now + self.backoff(attempt)
            self.dirty.add(token)
            return
        recovered = self.failures.pop(token, None) is not None and outcome is not Outcome.GONE
        if outcome in (Outcome.FINISHED, Outcome.GONE):
            self.drop(token)
        if recovered:
            for waiting in self.failures:
                if waiting not in self.in_flight:
                    self.not_before[waiting] = min(self.not_before.get(waiting, now), now)

    def backoff(self, attempt: int) -> float:
        cap = max(self.retry_max, len(self.failures) / self.retry_rate)
        full = min(self.retry_base * 2 ** min(attempt - 1, 30), cap)
        return full * self.rng.uniform(0.5, 1.0)
