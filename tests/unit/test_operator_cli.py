"""The operator's command line."""

import pytest

from bullflow.__main__ import parse_args, peering_priority


def test_peering_priority_flag():
    args = parse_args(["--priority=random", "--peering-lifetime=15"])
    assert args.peering_lifetime == 15
    draws = {peering_priority("random") for _ in range(5)}
    assert len(draws) > 1 and all(1 <= p < 2**31 for p in draws)
    assert peering_priority("7") == 7 and peering_priority(None) is None
    with pytest.raises(SystemExit, match="must be an integer or 'random'"):
        peering_priority("high")


def test_phase_book_counts_flows_by_phase():
    from bullflow.metrics import FLOWS_BY_PHASE, PhaseBook

    book = PhaseBook()
    book.set("a", "Running")
    book.set("b", "Running")
    book.set("a", "Completed")
    book.set("a", "Completed")
    book.drop("b")
    book.drop("missing")
    values = {p: FLOWS_BY_PHASE.labels(p)._value.get() for p in ("Running", "Completed")}
    assert values == {"Running": 0, "Completed": 1}
