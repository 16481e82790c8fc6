"""The operator's command line."""

import subprocess
import sys

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


FULL_COLLECTIONS_WHILE_PLANNING = """
import gc, sys
from bullflow.__main__ import tune_garbage_collector
from bullflow.models.flow import FlowSpec
from bullflow.services.flowtree import plan, to_flowproducer

if sys.argv[1] == "tuned":
    tune_garbage_collector()
full = []


def count_full(phase, info):
    if phase == "stop" and info["generation"] == 2:
        full.append(1)


gc.callbacks.append(count_full)
kids = [{"name": f"c{i}", "queueName": "c", "data": {"n": i}} for i in range(10_000)]
for attempt in range(3):
    spec = FlowSpec.model_validate({"root": {"name": "p", "queueName": "p", "children": kids}})
    kept = (plan(spec, f"u{attempt}"), to_flowproducer(spec, f"u{attempt}"))
print(len(full))
"""


@pytest.mark.parametrize("gc_mode", ["default", "tuned"])
def test_a_large_flow_does_not_trigger_full_collections(gc_mode):
    """Three 10,000-job flows planned one after the other: CPython's default thresholds run
    full collections over everything the process holds; the operator's tuning runs none."""
    out = subprocess.run(
        [sys.executable, "-c", FULL_COLLECTIONS_WHILE_PLANNING, gc_mode],
        capture_output=True,
        text=True,
        check=True,
    )
    full_collections = int(out.stdout)
    if gc_mode == "tuned":
        assert full_collections == 0
    else:  # the control: what the tuning is for still happens without it
        assert full_collections > 0
