"""NoWorkers: which queues a flow waits on, the conditions it says, which flows to re-check."""

from bullflow.models.common import Condition
from bullflow.models.flow import FlowSpec
from bullflow.services.conditions import set_condition
from bullflow.services.flowstatus import JobSnapshot
from bullflow.services.flowtree import plan
from bullflow.services.no_workers import (
    Unserved,
    lookups,
    newly_served,
    served_by_pool,
    waiting_queues,
    workers_conditions,
)

UID = "0b5c2a3e-1111-4222-8333-444455556666"


def cond(conditions: list[Condition], type_: str) -> Condition:
    return next(c for c in conditions if c.type == type_)


def running() -> list[Condition]:
    return set_condition([], "Ready", False, "Running", "jobs are being processed", 1, "t0")


def test_waiting_queues_are_those_with_jobs_waiting_for_a_worker():
    root = {
        "name": "p",
        "queueName": "parent",
        "children": [
            {"name": "a", "queueName": "qa"},
            {"name": "b", "queueName": "qb"},
            {"name": "c", "queueName": "qc"},
            {"name": "d", "queueName": "qd"},
        ],
    }
    jobs = plan(FlowSpec.model_validate({"root": root}), UID)
    states = {"0": "waiting-children", "0.0": "prioritized", "0.1": "delayed", "0.2": "active"}
    snaps = {j.job_id: JobSnapshot(states[j.path]) for j in jobs if j.path in states}
    # 0.3 was not read: nothing is concluded about its queue.
    assert waiting_queues(jobs, snaps) == ["qa", "qb"]


def test_no_workers_says_which_queues_in_both_conditions():
    conds = workers_conditions(running(), ["q1"], "bull", 1)
    available, ready = cond(conds, "WorkersAvailable"), cond(conds, "Ready")
    assert (available.status, available.reason) == ("False", "NoWorkers")
    assert available.message == (
        "no BullMQ worker is connected to queue q1 (prefix bull) and no WorkerPool serves it"
    )
    assert (ready.status, ready.reason, ready.message) == ("False", "NoWorkers", available.message)
    assert ready.last_transition_time == "t0"  # still False: no transition
    two = cond(workers_conditions(running(), ["q1", "q2"], "bull", 1), "Ready").message
    assert "to queues q1, q2 (prefix bull)" in two and two.endswith("serves them")


def test_served_queues_leave_ready_to_the_flows_progress():
    conds = workers_conditions(running(), [], "bull", 1)
    assert cond(conds, "WorkersAvailable").status == "True"
    assert cond(conds, "Ready").reason == "Running"


def test_a_failed_lookup_keeps_what_was_said():
    said = workers_conditions(running(), ["q1"], "bull", 1)
    rebuilt = set_condition(said, "Ready", False, "Running", "jobs are being processed", 1)
    kept = workers_conditions(rebuilt, None, "bull", 1)
    assert cond(kept, "Ready").reason == "NoWorkers"
    assert cond(kept, "WorkersAvailable") == cond(said, "WorkersAvailable")
    assert workers_conditions(running(), None, "bull", 1) == running()
    fine = workers_conditions(running(), [], "bull", 1)
    assert workers_conditions(fine, None, "bull", 1) == fine


WAITING = {
    "f1": Unserved("redis://a", "ns1", "bull", frozenset({"q1", "q2"})),
    "f2": Unserved("redis://a", "ns2", "bull", frozenset({"q2"})),
    "f3": Unserved("redis://a", "ns1", "other", frozenset({"q1"})),
    "f4": Unserved("redis://b", "ns1", "bull", frozenset({"q3"})),
}


def test_one_lookup_per_redis_and_prefix_for_all_flows():
    assert lookups(WAITING) == {
        ("redis://a", "bull"): {"q1", "q2"},
        ("redis://a", "other"): {"q1"},
        ("redis://b", "bull"): {"q3"},
    }


def test_flows_with_a_queue_that_got_a_worker_are_rechecked():
    still = {("redis://a", "bull"): {"q1"}, ("redis://a", "other"): {"q1"}}
    # q2 got a worker: f1 (q1, q2) and f2 (q2); redis://b was not looked up: f4 stays.
    assert newly_served(WAITING, still) == ["f1", "f2"]
    nothing = {key: set(queues) for key, queues in lookups(WAITING).items()}
    assert newly_served(WAITING, nothing) == []


def test_a_workerpool_rechecks_the_flows_of_its_namespace_prefix_and_queues():
    assert served_by_pool(WAITING, "ns1", "bull", ["q1"]) == ["f1"]
    assert served_by_pool(WAITING, "ns1", "bull", ["q3", "q9"]) == ["f4"]
    assert served_by_pool(WAITING, "ns2", "bull", ["q1"]) == []
    assert served_by_pool(WAITING, "ns1", "other", ["q1"]) == ["f3"]
