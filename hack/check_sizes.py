#!/usr/bin/env python3
"""Keep modules and functions small enough to read: exit 1 and list every violation.

The limits:

- a module in operator/bullflow/controllers/ has at most 350 lines (the controllers are where
  the operator's logic piles up; split a bigger one by job, as flow*.py are);
- a function or method anywhere under operator/ and worker-image/ (tests and bench are not
  checked) has at most 60 lines, counted from its `def` line to its last line, docstring and
  nested functions included, decorators not.

A longer function is allowed when its docstring says why, on a line of its own that starts
with `Long because:`, e.g.

    def reconcile(self, body):
        \"\"\"Validate, submit, track.

        Long because: one linear story of the reconcile, each step a few lines; split, the
        steps would pass half a dozen locals around.
        \"\"\"

Usage: python hack/check_sizes.py [ROOT]   (ROOT: the repository, default this script's)
Output: one `path:line: what (N lines > limit)` per violation, then a count.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_CONTROLLER_MODULE_LINES = 350
MAX_FUNCTION_LINES = 60
CONTROLLERS = "operator/bullflow/controllers"
CHECKED = ("operator", "worker-image")
SKIPPED_PARTS = {"tests", "bench", "build", ".venv", "node_modules", "__pycache__"}
REASON_MARKER = "Long because:"


@dataclass(frozen=True)
class Violation:
    path: str  # relative to the root, with /
    line: int
    name: str  # "module" or the function's qualified name
    length: int
    limit: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.name} ({self.length} lines > {self.limit})"


def python_files(root: Path) -> Iterator[Path]:
    for top in CHECKED:
        for path in sorted((root / top).rglob("*.py")):
            parts = set(path.relative_to(root).parts)
            if not parts & SKIPPED_PARTS and not any(p.endswith(".egg-info") for p in parts):
                yield path


def states_its_reason(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    docstring = ast.get_docstring(node) or ""
    return any(line.strip().startswith(REASON_MARKER) for line in docstring.splitlines())


def long_functions(tree: ast.AST, path: str) -> Iterator[Violation]:
    def visit(node: ast.AST, prefix: str) -> Iterator[Violation]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{prefix}{child.name}"
                length = (child.end_lineno or child.lineno) - child.lineno + 1
                if length > MAX_FUNCTION_LINES and not states_its_reason(child):
                    yield Violation(path, child.lineno, name, length, MAX_FUNCTION_LINES)
                yield from visit(child, f"{name}.<locals>.")
            elif isinstance(child, ast.ClassDef):
                yield from visit(child, f"{prefix}{child.name}.")
            else:
                yield from visit(child, prefix)

    yield from visit(tree, "")


def violations(root: Path = ROOT) -> list[Violation]:
    found: list[Violation] = []
    for file in python_files(root):
        path = file.relative_to(root).as_posix()
        source = file.read_text()
        lines = len(source.splitlines())
        if path.startswith(f"{CONTROLLERS}/") and lines > MAX_CONTROLLER_MODULE_LINES:
            found.append(Violation(path, 1, "module", lines, MAX_CONTROLLER_MODULE_LINES))
        found.extend(long_functions(ast.parse(source, filename=path), path))
    return found


def main(argv: list[str]) -> int:
    root = Path(argv[1]).resolve() if len(argv) > 1 else ROOT
    found = violations(root)
    for violation in found:
        print(violation)
    print(f"{len(found)} size violation(s)" if found else "sizes ok")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
