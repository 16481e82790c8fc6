"""Which Flow bodies predate a retry/stop request the operator handled (and must be left to the
newer body the status write brings)."""

from __future__ import annotations

from bullflow.services.operation_status import predates_handled


def test_nothing_handled_means_no_body_is_stale() -> None:
    assert not predates_handled({}, None)
    assert not predates_handled({}, {"phase": "Running"})


def test_a_body_whose_status_does_not_show_the_handled_token_is_stale() -> None:
    assert predates_handled({"stop": "s1"}, {"phase": "Running"})
    assert predates_handled({"stop": "s1"}, None)
    assert predates_handled({"retry": "r2"}, {"phase": "Failed", "lastHandledRetry": "r1"})
    both = {"retry": "r1", "stop": "s2"}
    assert predates_handled(both, {"lastHandledRetry": "r1", "lastHandledStop": "s1"})


def test_a_body_showing_every_handled_token_is_current() -> None:
    assert not predates_handled({"stop": "s1"}, {"phase": "Stopped", "lastHandledStop": "s1"})
    shown = {"lastHandledRetry": "r1", "lastHandledStop": "s1"}
    assert not predates_handled({"retry": "r1", "stop": "s1"}, shown)
    # A newer request not handled yet does not make the body stale: it is pending.
    assert not predates_handled({"retry": "r1"}, {"lastHandledRetry": "r1", "phase": "Failed"})
