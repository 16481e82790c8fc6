"""FlowTemplate expansion: placeholders, types, fan-out, errors, determinism."""

from __future__ import annotations

import pytest

from bullflow.models.flow import FlowSpec
from bullflow.services.template_expansion import (
    PlaceholderError,
    TemplateError,
    expand,
    pack,
    spec_digest,
    substitute,
    unpack,
)

MAP_REDUCE = {
    "parameters": [
        {"name": "items", "type": "array", "required": True},
        {"name": "queue", "type": "string", "default": "work"},
        {"name": "mode", "type": "string", "enum": ["sum", "max"], "default": "sum"},
    ],
    "prefix": "bull",
    "root": {
        "name": "reduce-${params.mode}",
        "queueName": "${params.queue}",
        "data": {"mode": "${params.mode}", "count": "${params.items}"},
        "children": [
            {
                "name": "map",
                "queueName": "${params.queue}",
                "data": {"value": "${item}", "label": "item ${item} of ${params.mode}"},
                "withItems": "${params.items}",
            }
        ],
    },
}


def test_whole_placeholder_keeps_the_json_type_and_text_interpolates():
    variables = {"params": {"n": 3, "flag": True, "obj": {"a": [1]}, "s": "x"}}
    assert substitute("${params.n}", variables) == 3
    assert substitute("${params.flag}", variables) is True
    assert substitute("${params.obj}", variables) == {"a": [1]}
    assert substitute("n=${params.n} o=${params.obj} s=${params.s}", variables) == (
        'n=3 o={"a":[1]} s=x'
    )
    assert substitute({"${params.s}": ["${params.n}", 1]}, variables) == {"${params.s}": [3, 1]}


def test_escaped_placeholder_is_literal():
    assert substitute("$${params.n} is ${params.n}", {"params": {"n": 1}}) == "${params.n} is 1"


def test_argument_values_are_never_substituted_again():
    variables = {"params": {"evil": "${params.secret}", "secret": "s3cret"}}
    assert substitute("${params.evil}", variables) == "${params.secret}"
    assert substitute("say ${params.evil}", variables) == "say ${params.secret}"
    spec = expand(
        {
            "parameters": [{"name": "evil"}, {"name": "secret", "default": "s3cret"}],
            "root": {"name": "n", "queueName": "q", "data": "${params.evil}"},
        },
        {"evil": "${params.secret} $${x}"},
    )
    assert spec["root"]["data"] == "${params.secret} $${x}"


@pytest.mark.parametrize(
    "text",
    [
        "${__import__('os')}",
        "${params.a.b}",
        "${params['a']}",
        "${item.__class__}",
        "${nope.x}",
        "${params.missing}",
        "unclosed ${params.a",
        "${}",
    ],
)
def test_anything_but_a_name_and_one_field_is_refused(text):
    with pytest.raises(PlaceholderError):
        substitute(text, {"params": {"a": {"b": 1}}, "item": "x"})


def test_map_reduce_fan_out_one_child_per_item_in_order():
    spec = expand(MAP_REDUCE, {"items": [1, 2, 3]})
    root = spec["root"]
    assert root["name"] == "reduce-sum" and root["queueName"] == "work"
    assert root["data"] == {"mode": "sum", "count": [1, 2, 3]}
    assert [c["data"] for c in root["children"]] == [
        {"value": 1, "label": "item 1 of sum"},
        {"value": 2, "label": "item 2 of sum"},
        {"value": 3, "label": "item 3 of sum"},
    ]
    assert "parameters" not in spec and "withItems" not in root["children"][0]
    FlowSpec.model_validate(spec)  # a valid Flow spec


def test_item_fields_nested_fan_out_and_a_fanned_root():
    template = {
        "roots": [
            {
                "name": "${item.name}",
                "queueName": "q",
                "withItems": [{"name": "a", "parts": [1, 2]}, {"name": "b", "parts": [3]}],
                "children": [
                    {"name": "part", "queueName": "q", "data": "${item}", "withItems": [7, 8]},
                    {"name": "outer-${item.name}", "queueName": "q"},
                ],
            }
        ]
    }
    spec = expand(template, {})
    assert [r["name"] for r in spec["roots"]] == ["a", "b"]
    assert [c.get("data") for c in spec["roots"][0]["children"]] == [7, 8, None]
    assert spec["roots"][1]["children"][2]["name"] == "outer-b"
    fanned = expand({"root": {"name": "r", "queueName": "q", "withItems": [1, 2]}}, {})
    assert "root" not in fanned and len(fanned["roots"]) == 2


def test_context_variables_for_a_schedule():
    spec = expand(
        {"root": {"name": "report-${schedule.date}", "queueName": "q"}},
        {},
        {"schedule": {"date": "2024-05-01", "time": "2024-05-01T00:00:00Z"}},
    )
    assert spec["root"]["name"] == "report-2024-05-01"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({}, "parameter 'items' is required"),
        ({"items": "1,2"}, "parameter 'items' must be a array, got string"),
        ({"items": [], "mode": "avg"}, 'parameter \'mode\' must be one of ["sum","max"]'),
        ({"items": [], "queue": 5}, "parameter 'queue' must be a string, got number"),
        ({"items": [], "extra": 1}, "unknown parameter 'extra'"),
    ],
)
def test_bad_arguments(arguments, message):
    with pytest.raises(TemplateError) as err:
        expand(MAP_REDUCE, arguments)
    assert err.value.reason == "InvalidArguments"
    assert message in err.value.message


def test_a_boolean_is_not_a_number():
    template = {
        "parameters": [{"name": "n", "type": "number"}],
        "root": {"name": "x", "queueName": "q"},
    }
    with pytest.raises(TemplateError, match="must be a number, got boolean"):
        expand(template, {"n": True})
    assert expand(template, {"n": 1.5})["root"]["name"] == "x"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ({"root": {"name": "${params.nope}", "queueName": "q"}}, "spec.root.name"),
        ({"root": {"name": "x", "queueName": "q", "withItems": "${params.s}"}}, "must be a list"),
        ({"root": {"name": "x", "queueName": "q", "bogus": 1}}, "unknown field"),
        ({"roots": [{"name": "x", "queueName": "q", "withItems": []}]}, "no jobs"),
        ({"prefix": "bull"}, "no root or roots"),
    ],
)
def test_bad_templates(template, message):
    template = {"parameters": [{"name": "s", "default": "text"}], **template}
    with pytest.raises(TemplateError) as err:
        expand(template, {})
    assert err.value.reason == "InvalidTemplate"
    assert message in err.value.message


def test_expansion_above_max_nodes_stops_early():
    items = list(range(1000))
    template = {
        "root": {
            "name": "r",
            "queueName": "q",
            "children": [
                {
                    "name": "a",
                    "queueName": "q",
                    "withItems": items,
                    "children": [{"name": "b", "queueName": "q", "withItems": items}],
                }
            ],
        }
    }
    with pytest.raises(TemplateError, match="more than 500 jobs"):
        expand(template, {}, max_nodes=500)


def test_depth_above_bullmq_limit():
    node: dict = {"name": "leaf", "queueName": "q"}
    for _ in range(150):
        node = {"name": "n", "queueName": "q", "children": [node]}
    with pytest.raises(TemplateError, match="deeper than BullMQ's limit of 100"):
        expand({"root": node}, {})


def test_deterministic_digest_and_pack_round_trip():
    first = expand(MAP_REDUCE, {"items": [{"b": 1, "a": 2}]})
    second = expand(MAP_REDUCE, {"items": [{"a": 2, "b": 1}]})
    assert spec_digest(first) == spec_digest(second)
    assert spec_digest(first) != spec_digest(expand(MAP_REDUCE, {"items": [{"a": 3}]}))
    assert pack(first) == pack(second)
    assert unpack(pack(first)) == first
    with pytest.raises(ValueError):
        unpack("not base64!")


def test_a_recorded_template_re_expands_identically_after_an_edit_of_the_live_one():
    recorded = pack(MAP_REDUCE)
    first = expand(MAP_REDUCE, {"items": [1, 2]})
    edited = {**MAP_REDUCE, "prefix": "other"}
    assert expand(edited, {"items": [1, 2]}) != first
    assert expand(unpack(recorded), {"items": [1, 2]}) == first
