"""One version for the operator, the worker runtime and the chart: bullflow.__version__.

The two pyproject.toml files read it from the packages (setuptools dynamic metadata); the chart
cannot, so its version and appVersion are checked against it here, as is the default image tag
(empty: the chart's appVersion) and the changelog's entry for it.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

import bullflow
import bullflow_worker

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "bullflow"

pytestmark = pytest.mark.unit


def test_worker_version_is_the_operator_version() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", bullflow.__version__), bullflow.__version__
    assert bullflow_worker.__version__ == bullflow.__version__


@pytest.mark.parametrize(
    ("pyproject", "attr"),
    [
        (ROOT / "pyproject.toml", "bullflow.__version__"),
        (ROOT / "worker-image" / "pyproject.toml", "bullflow_worker.__version__"),
    ],
    ids=["operator", "worker"],
)
def test_pyproject_reads_the_package_version(pyproject: Path, attr: str) -> None:
    meta = tomllib.loads(pyproject.read_text())
    assert "version" not in meta["project"], f"{pyproject}: a literal version drifts"
    assert "version" in meta["project"]["dynamic"]
    assert meta["tool"]["setuptools"]["dynamic"]["version"] == {"attr": attr}
    assert meta["project"]["license"] == "Apache-2.0"


def test_operator_requires_the_worker_package_of_its_own_release() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pins = [d for d in meta["project"]["dependencies"] if d.startswith("bullflow-worker")]
    assert pins == [f"bullflow-worker=={bullflow.__version__}"]


def test_chart_version_and_app_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["version"] == bullflow.__version__
    assert chart["appVersion"] == bullflow.__version__


def test_default_image_tag_is_the_app_version() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["image"]["tag"] == "" and values["image"]["digest"] == ""
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    # The rendered image is checked by tests/integration/test_chart.py; this pins the rule.
    assert "(default .Chart.AppVersion .Values.image.tag)" in helpers


def test_changelog_has_the_version() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in text
    assert re.search(
        rf"^## \[{re.escape(bullflow.__version__)}\] - \d{{4}}-\d{{2}}-\d{{2}}$", text, re.M
    ), f"CHANGELOG.md: no '## [{bullflow.__version__}] - YYYY-MM-DD' entry"


def test_worker_license_is_the_repository_license() -> None:
    # worker-image/ is built on its own (its sdist cannot reach ../LICENSE), so it has a copy.
    assert (ROOT / "worker-image" / "LICENSE").read_text() == (ROOT / "LICENSE").read_text()
