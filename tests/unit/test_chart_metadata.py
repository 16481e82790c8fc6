"""Chart.yaml's Artifact Hub metadata matches the repository: every CRD, real examples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from bullflow import GROUP

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "bullflow"

pytestmark = pytest.mark.unit


def annotations() -> dict[str, Any]:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    return {k: v for k, v in chart["annotations"].items() if k.startswith("artifacthub.io/")}


def test_every_crd_is_listed() -> None:
    crds = [
        doc
        for path in sorted((ROOT / "crds").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]
    expected = {
        (crd["spec"]["names"]["kind"], crd["metadata"]["name"], version["name"])
        for crd in crds
        if crd["kind"] == "CustomResourceDefinition" and crd["spec"]["group"] == GROUP
        for version in crd["spec"]["versions"]
        if version.get("served")
    }
    listed = yaml.safe_load(annotations()["artifacthub.io/crds"])
    assert {(c["kind"], c["name"], c["version"]) for c in listed} == expected
    assert all(c["displayName"] and c["description"] for c in listed)


def test_crd_examples_are_the_repository_examples() -> None:
    examples = yaml.safe_load(annotations()["artifacthub.io/crdsExamples"])
    sources = [
        yaml.safe_load((ROOT / "examples" / name).read_text())
        for name in (
            "basic.yaml",
            "workerpools/etl-workers.yaml",
            "templates/map-reduce-template.yaml",
            "cron/nightly-etl.yaml",
        )
    ]
    assert examples == sources
    listed = {c["kind"] for c in yaml.safe_load(annotations()["artifacthub.io/crds"])}
    assert {e["kind"] for e in examples} == listed


def test_license_links_icon_and_maintainers() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert annotations()["artifacthub.io/license"] == "Apache-2.0"
    assert "Apache License" in (ROOT / "LICENSE").read_text()
    links = yaml.safe_load(annotations()["artifacthub.io/links"])
    assert all(link["url"].startswith("https://") for link in links)
    # A repository link points at a file that exists (the path after .../blob/main/).
    for link in links:
        _, _, path = link["url"].partition("/blob/main/")
        assert not path or (ROOT / path).is_file(), link
    assert chart["icon"].startswith("https://")
    assert chart["icon"].endswith("/main/charts/bullflow/icon.svg")
    assert (CHART / "icon.svg").read_text().lstrip().startswith("<svg")
    assert chart["maintainers"] and all(m["name"] for m in chart["maintainers"])
    changes = yaml.safe_load(annotations()["artifacthub.io/changes"])
    kinds = {"added", "changed", "deprecated", "removed", "fixed", "security"}
    assert changes and all(c["kind"] in kinds and c["description"] for c in changes)
