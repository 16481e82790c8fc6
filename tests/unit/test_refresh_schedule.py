"""RefreshSchedule: which flow is refreshed when, driven by an explicit clock (no sleeps)."""

from __future__ import annotations

import random

from bullflow.controllers.refresh_schedule import Outcome, RefreshSchedule


def schedule(**kwargs: float) -> RefreshSchedule:
    return RefreshSchedule(patch_interval=0.5, rng=random.Random(7), **kwargs)


def test_a_new_flow_is_due_at_once_and_then_at_most_once_per_interval():
    s = schedule()
    s.mark("a")
    assert s.take_due(100.0) == (["a"], None)
    s.done("a", Outcome.CURRENT, 100.1)
    s.mark("b")  # another flow is not held back by a's interval
    assert s.take_due(100.1) == (["b"], None)
    for _ in range(5):
        s.mark("a")  # marked again and again: one more refresh, due 0.5 s after the first
    assert s.take_due(100.2) == ([], 100.5)
    assert s.take_due(100.5) == (["a"], None)


def test_a_mark_that_arrives_during_a_refresh_is_not_lost():
    s = schedule()
    s.mark("a")
    s.take_due(0.0)
    s.mark("a")  # an event read while the refresh runs: the refresh may have read too early
    assert s.take_due(0.1) == ([], None)  # never twice at once
    s.done("a", Outcome.CURRENT, 0.2)
    assert s.take_due(0.5) == (["a"], None)


def test_a_failed_refresh_is_retried_with_growing_backoff_until_it_works():
    s = schedule(retry_base=0.25, retry_max=2.0)
    s.mark("a")
    now = 0.0
    waits = []
    for _ in range(6):
        (due, _next) = s.take_due(now)
        assert due == ["a"]
        s.done("a", Outcome.RETRY, now)
        (_due, next_due) = s.take_due(now)
        assert next_due is not None
        waits.append(next_due - now)
        now = next_due
    assert all(0.125 <= w <= 2.0 for w in waits)
    assert waits[0] <= 0.25 and waits[-1] >= 1.0  # exponential, capped
    s.take_due(now)
    s.done("a", Outcome.CURRENT, now)
    assert s.failures == {} and s.take_due(now + 10) == ([], None)  # nothing left to do


def test_one_recovery_releases_every_backed_off_flow():
    s = schedule(retry_max=2.0)
    for token in ("a", "b", "c"):
        s.mark(token)
    s.take_due(0.0)
    for token in ("a", "b", "c"):
        s.done(token, Outcome.RETRY, 0.0)
    s.take_due(0.0)
    s.failures["a"] = 1
    # "a" retried first and worked: the fault is over, "b" and "c" go now, not after backoff.
    s.dirty.add("a")
    s.not_before["a"] = 0.0
    assert s.take_due(0.01)[0] == ["a"]
    s.done("a", Outcome.CURRENT, 0.02)
    assert sorted(s.take_due(0.02)[0]) == ["b", "c"]


def test_successes_of_healthy_flows_do_not_release_a_flow_failing_on_its_own():
    s = schedule(retry_max=2.0)
    s.mark("bad")
    s.take_due(0.0)
    s.done("bad", Outcome.RETRY, 0.0)
    s.done("bad", Outcome.RETRY, 0.0)  # second failure: backoff 0.25-0.5 s
    backoff_until = s.not_before["bad"]
    s.mark("good")
    s.take_due(0.01)
    s.done("good", Outcome.CURRENT, 0.02)
    assert s.not_before["bad"] == backoff_until


def test_backoff_spreads_retries_to_a_total_rate_when_many_flows_fail():
    s = schedule(retry_base=0.25, retry_max=2.0, retry_rate=50.0)
    tokens = [f"f{i}" for i in range(5000)]
    for token in tokens:
        s.mark(token)
    s.take_due(0.0)
    for token in tokens:
        s.failures[token] = 12  # long into an outage
    s.done(tokens[0], Outcome.RETRY, 0.0)
    # 5,000 failing flows at 50 retries/s in all: each waits up to 100 s, not 2 s.
    assert s.not_before[tokens[0]] > 2.0


def test_a_finished_or_deleted_flow_is_dropped():
    s = schedule()
    for token in ("done", "gone"):
        s.mark(token)
    s.take_due(0.0)
    s.mark("done")
    s.done("done", Outcome.FINISHED, 0.1)
    s.done("gone", Outcome.GONE, 0.1)
    assert s.take_due(100.0) == ([], None) and not s.pending()
