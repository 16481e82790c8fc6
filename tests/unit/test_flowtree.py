import pytest

from bullflow.models.flow import FlowSpec
from bullflow.services.flowtree import (
    job_id,
    parse_job_id,
    plan,
    structural_errors,
    to_flowproducer,
)

UID = "0b5c2a3e-1111-4222-8333-444455556666"


def spec(**kwargs):
    return FlowSpec.model_validate(kwargs)


def chain(levels: int) -> dict:
    node: dict = {"name": f"n{levels}", "queueName": "q"}
    for level in range(levels - 1, 0, -1):
        node = {"name": f"n{level}", "queueName": "q", "children": [node]}
    return node


def test_job_ids_are_valid_bullmq_ids_and_round_trip():
    value = job_id(UID, "0.1.12")
    assert ":" not in value and not value.isdigit()
    assert parse_job_id(value) == (UID, "0.1.12")
    assert parse_job_id("12345") is None
    assert parse_job_id("bf-notauid-0") is None


def test_plan_is_preorder_with_paths_and_parents():
    jobs = plan(
        spec(
            root={
                "name": "p",
                "queueName": "a",
                "children": [
                    {"name": "c0", "queueName": "b"},
                    {"name": "c1", "queueName": "b", "children": [{"name": "g", "queueName": "c"}]},
                ],
            }
        ),
        UID,
    )
    assert [(j.path, j.parent_path, j.name) for j in jobs] == [
        ("0", None, "p"),
        ("0.0", "0", "c0"),
        ("0.1", "0", "c1"),
        ("0.1.0", "0.1", "g"),
    ]
    assert [j.has_children for j in jobs] == [True, False, True, False]
    assert len({j.job_id for j in jobs}) == 4


def test_roots_are_separate_trees():
    jobs = plan(spec(roots=[{"name": "a", "queueName": "q"}, {"name": "b", "queueName": "q"}]), UID)
    assert [(j.path, j.parent_path) for j in jobs] == [("0", None), ("1", None)]


def test_flowproducer_input_carries_ids_options_and_data():
    trees = to_flowproducer(
        spec(
            root={
                "name": "p",
                "queueName": "a",
                "data": {"x": 1},
                "children": [
                    {
                        "name": "c",
                        "queueName": "b",
                        "opts": {
                            "attempts": 3,
                            "failParentOnFailure": True,
                            "backoff": {"type": "fixed", "delay": 10},
                        },
                    },
                ],
            }
        ),
        UID,
    )
    assert trees == [
        {
            "name": "p",
            "queueName": "a",
            "data": {"x": 1},
            "opts": {"jobId": job_id(UID, "0")},
            "children": [
                {
                    "name": "c",
                    "queueName": "b",
                    "data": {},
                    "opts": {
                        "attempts": 3,
                        "failParentOnFailure": True,
                        "backoff": {"type": "fixed", "delay": 10},
                        "jobId": job_id(UID, "0.0"),
                    },
                }
            ],
        }
    ]


def test_failure_options_are_mutually_exclusive():
    with pytest.raises(ValueError, match="mutually exclusive"):
        spec(
            root={
                "name": "p",
                "queueName": "a",
                "opts": {"failParentOnFailure": True, "ignoreDependencyOnFailure": True},
            }
        )


def test_job_id_is_not_settable():
    with pytest.raises(ValueError, match="jobId is not user-settable"):
        spec(root={"name": "p", "queueName": "a", "opts": {"jobId": "mine"}})


def test_exactly_one_of_root_and_roots():
    with pytest.raises(ValueError, match="exactly one of root, roots or templateRef"):
        spec(root={"name": "p", "queueName": "a"}, roots=[{"name": "p", "queueName": "a"}])
    with pytest.raises(ValueError, match="exactly one of root, roots or templateRef"):
        spec()


def test_queue_names_cannot_contain_colons():
    with pytest.raises(ValueError, match="queueName"):
        spec(root={"name": "p", "queueName": "a:b"})


def test_depth_limit_is_100_levels_and_deep_trees_do_not_recurse_too_far():
    assert structural_errors(spec(root=chain(100)), max_nodes=1000) == []
    errors = structural_errors(spec(root=chain(101)), max_nodes=1000)
    assert errors == ["tree 0 is 101 levels deep; BullMQ's limit is 100"]


def test_size_limit():
    wide = {"name": "p", "queueName": "q", "children": [{"name": "c", "queueName": "q"}] * 10}
    assert structural_errors(spec(root=wide), max_nodes=5) == [
        "the flow has 11 jobs; this operator accepts at most 5"
    ]


def test_idempotency_key_tokens_are_stable_per_namespace_and_parse_back():
    from bullflow.services.flowtree import flow_token

    token = flow_token(UID, "team-a", "nightly-2026-11-28")
    assert token == flow_token("another-uid", "team-a", "nightly-2026-11-28")
    assert token != flow_token(UID, "team-b", "nightly-2026-11-28")
    assert flow_token(UID, "team-a", None) == UID
    assert parse_job_id(job_id(token, "0.3")) == (token, "0.3")


def test_initial_states_are_where_bullmq_add_scripts_put_new_jobs():
    from bullflow.services.flowstatus import just_submitted

    spec = FlowSpec.model_validate(
        {
            "root": {
                "name": "p",
                "queueName": "q",
                "children": [
                    {"name": "plain", "queueName": "q"},
                    {"name": "later", "queueName": "q", "opts": {"delay": 1000, "priority": 2}},
                    {"name": "urgent", "queueName": "q", "opts": {"priority": 1}},
                    {"name": "zero", "queueName": "q", "opts": {"priority": 0, "delay": 0}},
                    {
                        "name": "mid",
                        "queueName": "q",
                        "children": [{"name": "leaf", "queueName": "q"}],
                    },
                ],
            }
        }
    )
    jobs = plan(spec, "a" * 32)
    states = {j.name: j.initial_state for j in jobs}
    assert states == {
        "p": "waiting-children",
        "plain": "waiting",
        "later": "delayed",
        "urgent": "prioritized",
        "zero": "waiting",
        "mid": "waiting-children",
        "leaf": "waiting",
    }
    snaps = just_submitted(jobs)
    assert {snaps[j.job_id].state for j in jobs} == set(states.values())
    assert all(s.attempts_made == 0 and s.return_value is None for s in snaps.values())
