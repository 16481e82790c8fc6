"""Every operator log line about one object says which (issue: "log lines with time, level and
the object's namespace/name"): a call whose message names an object (`%s/%s`) passes
`extra=about(namespace, name)`, which the text and JSON formats print as the object."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "bullflow"
LEVELS = {"debug", "info", "warning", "error", "exception", "critical"}


def object_log_calls_without_object() -> list[str]:
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in LEVELS
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id in {"log", "logger"}
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                continue
            if "%s/%s" in node.args[0].value and not any(k.arg == "extra" for k in node.keywords):
                missing.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    return missing


@pytest.mark.unit
def test_log_lines_about_an_object_carry_it() -> None:
    assert object_log_calls_without_object() == []
