"""Both images install pinned dependencies only.

The operator image pins with the repository's constraints.txt, the worker image with
worker-image/constraints.txt (its build context cannot reach the root one). The worker's pins
must be the root's versions, and every distribution either image installs must be pinned, on
the Python of the public base (python:3.11-slim-bookworm, a recent 3.11) as well as on the one
`make images` builds from Debian bookworm's packages (3.11.2: redis-py then needs async-timeout).
"""

from __future__ import annotations

import contextlib
import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
ROOT_CONSTRAINTS = ROOT / "constraints.txt"
WORKER_CONSTRAINTS = ROOT / "worker-image" / "constraints.txt"
# Debian bookworm's python3.11, the base hack/build-base-image.sh makes.
DEBIAN_BOOKWORM_PYTHON = {"python_full_version": "3.11.2", "python_version": "3.11"}


def pins(path: Path) -> dict[str, str]:
    """name -> version of each `name==version` line (comments and blank lines skipped)."""
    found: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        assert match, f"{path.name}: not a plain pin: {line!r}"
        found[canonicalize_name(match[1])] = match[2]
    return found


def applies(req: Requirement) -> bool:
    """Whether pip installs req (no extras asked) on either base image's Python."""
    if req.marker is None:
        return True
    environments = [default_environment(), {**default_environment(), **DEBIAN_BOOKWORM_PYTHON}]
    return any(req.marker.evaluate({**env, "extra": ""}) for env in environments)


def closure(requirements: list[str]) -> set[str]:
    """Every distribution installed for these requirements, followed through the metadata of
    the tested .venv (a distribution not installed there is named but cannot be followed)."""
    seen: set[str] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in seen or not applies(req):
            continue
        seen.add(name)
        with contextlib.suppress(metadata.PackageNotFoundError):
            todo.extend(Requirement(r) for r in metadata.requires(req.name) or [])
    return seen


def project_dependencies(pyproject: Path) -> list[str]:
    return list(tomllib.loads(pyproject.read_text())["project"]["dependencies"])


@pytest.mark.unit
def test_worker_pins_equal_the_root_pins() -> None:
    root, worker = pins(ROOT_CONSTRAINTS), pins(WORKER_CONSTRAINTS)
    differing = {n: (v, root.get(n)) for n, v in worker.items() if root.get(n) != v}
    assert not differing, f"worker-image/constraints.txt vs constraints.txt: {differing}"


@pytest.mark.unit
def test_worker_image_installs_only_pinned_distributions() -> None:
    needed = closure(project_dependencies(ROOT / "worker-image" / "pyproject.toml"))
    assert {"bullmq", "redis", "async-timeout"} <= needed, needed
    unpinned = needed - set(pins(WORKER_CONSTRAINTS))
    assert not unpinned, f"add to worker-image/constraints.txt: {sorted(unpinned)}"


@pytest.mark.unit
def test_operator_image_installs_only_pinned_distributions() -> None:
    # The operator image installs ./worker-image too; bullflow-worker itself comes from the tree.
    needed = closure(
        project_dependencies(ROOT / "pyproject.toml")
        + project_dependencies(ROOT / "worker-image" / "pyproject.toml")
    ) - {"bullflow-worker"}
    unpinned = needed - set(pins(ROOT_CONSTRAINTS))
    assert not unpinned, f"add to constraints.txt: {sorted(unpinned)}"


@pytest.mark.unit
def test_closure_follows_markers() -> None:
    """The closure is what it claims: extras are left out, Python-version markers decide."""
    assert "async-timeout" in closure(["redis==8.1.0"])
    assert "hiredis" not in closure(["redis==8.1.0"])
    assert closure(["tomli; python_version < '3.0'"]) == set()


@pytest.mark.unit
@pytest.mark.parametrize(
    ("dockerfile", "constraints"),
    [("operator/Dockerfile", "constraints.txt"), ("worker-image/Dockerfile", "constraints.txt")],
)
def test_dockerfile_installs_with_its_constraints(dockerfile: str, constraints: str) -> None:
    text = (ROOT / dockerfile).read_text()
    assert f"--constraint {constraints}" in text
    copied = " ".join(ln for ln in text.splitlines() if ln.startswith("COPY "))
    assert constraints in copied, f"{dockerfile} does not COPY {constraints}"
