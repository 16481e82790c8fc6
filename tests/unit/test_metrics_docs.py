"""docs/metrics.md documents exactly the metrics the operator and the worker runtime register,
each with all its labels."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from prometheus_client.metrics import MetricWrapperBase

from bullflow import metrics as operator_metrics
from bullflow_worker.metrics import Metrics

pytestmark = pytest.mark.unit

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
HEADING = re.compile(r"^### `([a-z_:]+)`$", re.M)


def exported(collector: MetricWrapperBase) -> tuple[str, tuple[str, ...]]:
    """(the name as scraped, the label names); a counter is scraped with `_total`."""
    name = collector._name
    if collector._type == "counter":
        name += "_total"
    return name, tuple(collector._labelnames)


def registered() -> dict[str, tuple[str, ...]]:
    worker = Metrics()
    collectors = [
        *(v for v in vars(operator_metrics).values() if isinstance(v, MetricWrapperBase)),
        *(v for v in vars(worker).values() if isinstance(v, MetricWrapperBase)),
    ]
    return dict(exported(c) for c in collectors)


def sections() -> dict[str, str]:
    text = DOC.read_text()
    heads = list(HEADING.finditer(text))
    out = {}
    for i, head in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else text.find("\n## ", head.end())
        out[head.group(1)] = text[head.end() : end if end != -1 else len(text)]
    return out


def test_the_registry_is_found():
    names = registered()
    assert "bullflow_flows_finished_total" in names
    assert names["bullflow_queue_backlog"] == ("redis", "prefix", "queue", "state")
    assert "bullflow_worker_jobs_completed_total" in names


def test_every_registered_metric_is_documented_with_its_labels():
    docs = sections()
    missing = sorted(set(registered()) - set(docs))
    assert not missing, f"not in docs/metrics.md: {missing}"
    for name, labels in registered().items():
        labels_line = next(
            (line for line in docs[name].splitlines() if line.startswith("- Labels:")), None
        )
        assert labels_line is not None, f"{name}: no '- Labels:' line"
        if not labels:
            assert "none" in labels_line, name
        paragraph = docs[name].split("- Meaning:")[0]
        for label in labels:
            assert f"`{label}`" in paragraph, f"{name}: label {label} not documented"


def test_no_documented_metric_is_missing_from_the_code():
    extra = sorted(set(sections()) - set(registered()))
    assert not extra, f"documented but not registered: {extra}"


def test_the_alerts_are_documented():
    text = DOC.read_text()
    for alert in (
        "BullflowFlowsFailing",
        "BullflowRedisUnavailable",
        "BullflowBacklogGrowing",
        "BullflowOperatorDown",
    ):
        assert f"**{alert}**" in text and f"`{alert}`" in text
