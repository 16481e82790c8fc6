"""hack/check_sizes.py: controllers stay under 350 lines a module, functions under 60 lines
unless their docstring says why (`Long because:`). See the script's docstring."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "hack" / "check_sizes.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_sizes", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


check_sizes = load_script()


def test_sizes() -> None:
    found = check_sizes.violations(ROOT)
    assert not found, "\n".join(
        ["too long (split it, or say why on a `Long because:` line of its docstring):"]
        + [str(v) for v in found]
    )


def test_the_script_prints_each_violation_and_fails(tmp_path: Path) -> None:
    controllers = tmp_path / "operator" / "bullflow" / "controllers"
    controllers.mkdir(parents=True)
    body = "\n".join(f"        x = {i}" for i in range(60))
    (controllers / "big.py").write_text(
        "class C:\n"
        f"    def long(self):\n{body}\n"  # 61 lines
        "    def explained(self):\n"
        '        """Why this long.\n\n        Long because: one table, one row a line."""\n'
        f"{body}\n" + "\n" * 300
    )
    short_body = "\n".join(f"    x = {i}" for i in range(59))
    worker = tmp_path / "worker-image" / "pkg"
    worker.mkdir(parents=True)
    (worker / "w.py").write_text(f"async def fine():\n{short_body}\n")  # 60 lines
    tests = tmp_path / "operator" / "tests"  # not checked
    tests.mkdir()
    (tests / "t.py").write_text(f"def long():\n{short_body}\n    y = 1\n    z = 2\n")

    run = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert run.returncode == 1
    assert run.stdout.splitlines() == [
        "operator/bullflow/controllers/big.py:1: module (426 lines > 350)",
        "operator/bullflow/controllers/big.py:2: C.long (61 lines > 60)",
        "2 size violation(s)",
    ]


def test_nested_functions_are_named_by_their_outer_function(tmp_path: Path) -> None:
    body = "\n".join(f"        x = {i}" for i in range(60))
    source = f"def outer():\n    def inner():\n{body}\n    return inner\n"
    tree = check_sizes.ast.parse(source)
    found = [str(v) for v in check_sizes.long_functions(tree, "m.py")]
    assert found == [
        "m.py:1: outer (63 lines > 60)",
        "m.py:2: outer.<locals>.inner (61 lines > 60)",
    ]
