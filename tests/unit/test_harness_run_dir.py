"""The local cluster's run dir is per clone (tests/harness/__main__.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness import __main__ as harness_cli


def test_clone_run_name_is_basename_and_a_hash_of_the_absolute_path(tmp_path: Path) -> None:
    a, b = tmp_path / "a" / "bullflow", tmp_path / "b" / "bullflow"
    name_a, name_b = harness_cli.clone_run_name(a), harness_cli.clone_run_name(b)
    assert name_a.startswith("bullflow-") and name_b.startswith("bullflow-")
    assert name_a != name_b
    assert harness_cli.clone_run_name(a) == name_a  # stable across calls
    # The same clone reached through a relative path is the same clone.
    assert harness_cli.clone_run_name(a / ".." / "bullflow") == name_a


def test_run_dir_is_per_clone_under_the_shared_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BULLFLOW_RUN_DIR", raising=False)
    monkeypatch.setenv("BULLFLOW_CACHE", str(tmp_path / "cache"))
    expected = tmp_path / "cache" / "run" / harness_cli.clone_run_name(harness_cli.CLONE_ROOT)
    assert harness_cli.run_dir() == expected
    assert harness_cli.state_path() == expected / "state.json"
    monkeypatch.setenv("BULLFLOW_RUN_DIR", str(tmp_path / "mine"))
    assert harness_cli.run_dir() == tmp_path / "mine"


def test_legacy_shared_state_is_pointed_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BULLFLOW_RUN_DIR", raising=False)
    monkeypatch.setenv("BULLFLOW_CACHE", str(tmp_path))
    assert harness_cli.legacy_state_hint() is None
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "state.json").write_text("{}")
    hint = harness_cli.legacy_state_hint()
    assert hint is not None and f"BULLFLOW_RUN_DIR={tmp_path / 'run'} " in hint
