"""A templated Flow's spec: the Flow's own settings over the template's, and the recorded
template as the only source once recorded."""

from __future__ import annotations

import pytest

from bullflow.models.flow import FlowSpec, FlowStatus
from bullflow.services.flow_from_template import (
    expanded_spec,
    record,
    recorded_spec,
    with_flow_settings,
)
from bullflow.services.template_expansion import TemplateError

TEMPLATE = {
    "parameters": [{"name": "n", "type": "number", "required": True}],
    "prefix": "tplprefix",
    "deletionPolicy": "Orphan",
    "ttlSecondsAfterFinished": 60,
    "root": {"name": "job-${params.n}", "queueName": "q", "data": {"n": "${params.n}"}},
}


def flow(**extra) -> FlowSpec:
    return FlowSpec.model_validate({"templateRef": {"name": "t"}, "arguments": {"n": 1}, **extra})


def template_object(spec: dict, generation: int = 1) -> dict:
    return {"metadata": {"name": "t", "uid": "u-1", "generation": generation}, "spec": spec}


def test_the_template_settings_apply_unless_the_flow_sets_its_own():
    spec = expanded_spec(flow(), TEMPLATE, 100)
    assert (spec.prefix, spec.deletion_policy, spec.ttl_seconds_after_finished) == (
        "tplprefix",
        "Orphan",
        60,
    )
    assert spec.root is not None and spec.root.data == {"n": 1}
    own = expanded_spec(flow(prefix="mine", ttlSecondsAfterFinished=5), TEMPLATE, 100)
    assert (own.prefix, own.deletion_policy, own.ttl_seconds_after_finished) == (
        "mine",
        "Orphan",
        5,
    )
    assert with_flow_settings(flow(), {"root": {}})["prefix"] == "bull"  # the Flow's default


def test_a_flow_spec_needs_exactly_one_of_root_roots_template_ref():
    with pytest.raises(ValueError, match="exactly one of root, roots or templateRef"):
        FlowSpec.model_validate(
            {"templateRef": {"name": "t"}, "root": {"name": "a", "queueName": "q"}}
        )
    with pytest.raises(ValueError, match="arguments are for a templateRef"):
        FlowSpec.model_validate({"root": {"name": "a", "queueName": "q"}, "arguments": {}})


def test_an_expansion_that_is_no_valid_flow_is_an_invalid_template():
    bad = {**TEMPLATE, "root": {"name": "x", "queueName": "a:${params.n}"}}
    with pytest.raises(TemplateError) as err:
        expanded_spec(flow(), bad, 100)
    assert err.value.reason == "InvalidTemplate"
    assert "root.queueName" in err.value.message
    with pytest.raises(TemplateError, match=r"the template: .*parameters"):
        expanded_spec(flow(), {**TEMPLATE, "parameters": [{"name": "n"}, {"name": "n"}]}, 100)


def test_once_recorded_the_live_template_no_longer_matters():
    expanded, made = record(template_object(TEMPLATE), flow(), 100)
    assert (made.name, made.uid, made.generation) == ("t", "u-1", 1)
    status = FlowStatus(template=made)
    assert recorded_spec(flow(), status) == expanded
    assert recorded_spec(flow(), FlowStatus()) is None  # not expanded yet
    plain = FlowSpec.model_validate({"root": {"name": "a", "queueName": "q"}})
    assert recorded_spec(plain, FlowStatus()) is plain


def test_a_record_that_no_longer_gives_its_digest_is_reported():
    _, made = record(template_object(TEMPLATE), flow(), 100)
    tampered = FlowStatus(template=made.model_copy(update={"digest": "sha256:0"}))
    with pytest.raises(TemplateError, match="no longer expands to digest sha256:0"):
        recorded_spec(flow(), tampered)
    broken = FlowStatus(template=made.model_copy(update={"source": "nope"}))
    with pytest.raises(TemplateError, match=r"status\.template"):
        recorded_spec(flow(), broken)
