"""The chart README is generated from values.yaml's `# --` comments (hack/chart_readme.py)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "hack" / "chart_readme.py"

pytestmark = pytest.mark.unit


def chart_readme() -> ModuleType:
    spec = importlib.util.spec_from_file_location("chart_readme", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_readme_in_sync_with_values() -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, f"{proc.stderr} (the chart README is generated: make chart-docs)"


VALUES = """\
# A section comment (no `--`): not a description.
image:
  # -- Repository of the image,
  # on two lines.
  repository: ghcr.io/x
  # -- Tag | or digest.
  tag: ""
# -- Resources, documented as a whole.
resources:
  requests: {cpu: 50m}
# -- A null setting.
timeout: null
"""

SCHEMA = {"properties": {"timeout": {"type": ["number", "null"]}}}


def test_rows_from_described_keys() -> None:
    rows = chart_readme().value_rows(VALUES, SCHEMA)
    assert [(r.key, r.type, r.default, r.description) for r in rows] == [
        ("image.repository", "string", '"ghcr.io/x"', "Repository of the image, on two lines."),
        ("image.tag", "string", '""', "Tag | or digest."),
        (
            "resources",
            "object",
            '{"requests": {"cpu": "50m"}}',
            "Resources, documented as a whole.",
        ),
        ("timeout", "float or null", "null", "A null setting."),
    ]


def test_undocumented_value_is_an_error() -> None:
    text = VALUES + "# a plain comment\nverbose: false\n\n# -- Cut by a blank line.\n\nport: 1\n"
    with pytest.raises(ValueError, match="verbose, port"):
        chart_readme().value_rows(text, SCHEMA)


def test_table_cells_escape_pipes() -> None:
    chart = {
        "name": "c",
        "description": "d",
        "version": "1.0.0",
        "appVersion": "1.0.0",
        "kubeVersion": ">=1.30",
    }
    text = chart_readme().render(chart, VALUES, SCHEMA)
    assert '| `image.tag` | string | `""` | Tag \\| or digest. |' in text
    assert "helm install c charts/c" in text and "helm uninstall c" in text
