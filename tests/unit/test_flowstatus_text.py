"""Multi-byte text in the status: budgets count UTF-8 bytes, cuts fall between characters."""

from __future__ import annotations

import json

from bullflow.models.flow import FlowSpec, FlowStatus
from bullflow.services.flowstatus import (
    TRUNCATED_MARK,
    JobSnapshot,
    StatusLimits,
    bounded,
    build_status,
    status_bytes,
)
from bullflow.services.flowtree import plan

UID = "0b5c2a3e-1111-4222-8333-444455556666"
EMOJI = "🚀"  # 4 bytes in UTF-8, 12 as a JSON \\u escape pair
CJK = "漢字"  # 3 bytes each


def test_a_long_multibyte_string_is_cut_between_characters_of_the_text():
    value = EMOJI * 100 + CJK * 100
    cut, truncated = bounded(value, StatusLimits(max_value_bytes=202))
    assert truncated and isinstance(cut, str)
    text = cut.removesuffix(TRUNCATED_MARK)
    assert text == EMOJI * 50  # 200 bytes: 50 whole emoji, never half of one or a \\u escape
    assert "\\u" not in cut
    cut.encode()  # valid UTF-8 (a lone surrogate would raise)


def test_a_structured_value_is_cut_as_readable_json_text():
    value = {"名前": CJK * 50, "n": 1}
    cut, truncated = bounded(value, StatusLimits(max_value_bytes=64))
    assert truncated and cut.startswith('{"名前":"漢字')
    assert len(cut.removesuffix(TRUNCATED_MARK).encode()) <= 64


def test_values_within_the_limit_in_bytes_are_kept_whole():
    value = EMOJI * 16  # 64 bytes + quotes
    assert bounded(value, StatusLimits(max_value_bytes=66)) == (value, False)
    assert bounded(value, StatusLimits(max_value_bytes=65))[1]


def test_the_status_budget_counts_utf8_bytes_not_characters():
    children = [{"name": f"c{i}", "queueName": "q"} for i in range(200)]
    spec = FlowSpec.model_validate({"root": {"name": "p", "queueName": "q", "children": children}})
    jobs = plan(spec, UID)
    big = EMOJI * 1000  # 4,000 bytes, 1,000 characters
    snaps = {j.job_id: JobSnapshot("completed", 1, return_value=big) for j in jobs[1:]}
    snaps[jobs[0].job_id] = JobSnapshot("waiting-children")
    limits = StatusLimits(max_value_bytes=4096, max_listed_nodes=500, max_status_bytes=256 * 1024)
    status = build_status(FlowStatus(), jobs, snaps, generation=1, limits=limits, now="t")
    wire = status.model_dump(by_alias=True, mode="json", exclude_none=True)
    stored = len(json.dumps(wire, separators=(",", ":"), ensure_ascii=False).encode())
    assert stored == status_bytes(status) <= 256 * 1024
    assert status.nodes_truncated and status.counts == {"completed": 200, "waiting-children": 1}
