"""The code blocks of the user docs, and what each one promises to the tests.

Every shell block carries a directive in an HTML comment on the line before it:

- `<!-- doc-test: scenario=NAME[,NAME...] [background] [expect="TEXT"] -->`: run by
  tests/e2e/test_doc_snippets.py. The blocks of one scenario run in document order in one shell
  environment, on a fresh local cluster and Redis (`KUBECONFIG`, `BULLFLOW_REDIS_URL` set, the
  working directory a copy of the repository). `background` blocks keep running until the
  scenario ends (an operator, a worker); `expect` is text the block's output must contain.
- `<!-- doc-test: not-run (WHY) -->`: not run, for the reason given (it needs the public
  repository, a container engine...). Its commands are still checked: `make` targets exist,
  repository paths exist, the flags given to bullflow's own commands exist.

YAML blocks need no directive: each is parsed, every bullflow object in it is validated by the
models and, in the e2e test, every Kubernetes object is applied with `--dry-run=server`. A YAML
block of Helm values is marked `<!-- doc-test: helm-values -->` and rendered with the chart.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHELL_LANGUAGES = {"sh", "bash", "shell"}
YAML_LANGUAGES = {"yaml", "yml"}

_FENCE = re.compile(r"^(?P<indent> {0,3})```(?P<lang>[\w-]*)\s*$")
_DIRECTIVE = re.compile(r"^<!--\s*doc-test:\s*(?P<body>.*?)\s*-->$")
_NOT_RUN = re.compile(r"^not-run\s*\((?P<why>.+)\)$")
_EXPECT = re.compile(r'expect="(?P<text>[^"]*)"')


class DirectiveError(ValueError):
    """A `doc-test:` comment that says nothing the tests understand."""


@dataclass(frozen=True)
class Directive:
    scenarios: tuple[str, ...] = ()
    background: bool = False
    expect: str | None = None
    not_run_reason: str | None = None
    helm_values: bool = False


@dataclass(frozen=True)
class Snippet:
    path: Path
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    directive: Directive | None = field(default=None)

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def user_docs() -> list[Path]:
    """Every Markdown file a user reads: the READMEs and docs/."""
    paths = [ROOT / "README.md", ROOT / "worker-image" / "README.md", ROOT / "bench" / "README.md"]
    chart_readme = ROOT / "charts" / "bullflow" / "README.md"
    if chart_readme.exists():
        paths.append(chart_readme)
    paths.extend(sorted((ROOT / "docs").glob("*.md")))
    return paths


def parse_directive(body: str) -> Directive:
    body = body.strip()
    not_run = _NOT_RUN.match(body)
    if not_run:
        return Directive(not_run_reason=not_run.group("why").strip())
    if body == "helm-values":
        return Directive(helm_values=True)
    expect_match = _EXPECT.search(body)
    expect = expect_match.group("text") if expect_match else None
    words = _EXPECT.sub("", body).split()
    scenarios: tuple[str, ...] = ()
    background = False
    for word in words:
        if word.startswith("scenario="):
            scenarios = tuple(name for name in word.removeprefix("scenario=").split(",") if name)
        elif word == "background":
            background = True
        else:
            raise DirectiveError(f"unknown doc-test word {word!r} in {body!r}")
    if not scenarios:
        raise DirectiveError(f"doc-test directive without scenario= or not-run: {body!r}")
    return Directive(scenarios=scenarios, background=background, expect=expect)


def snippets(path: Path) -> list[Snippet]:
    """The fenced code blocks of one Markdown file, each with the directive just above it."""
    found: list[Snippet] = []
    lines = path.read_text().splitlines()
    index = 0
    while index < len(lines):
        fence = _FENCE.match(lines[index])
        if not fence:
            index += 1
            continue
        start = index
        body: list[str] = []
        index += 1
        while index < len(lines) and not lines[index].strip().startswith("```"):
            body.append(lines[index])
            index += 1
        index += 1
        directive = None
        above = start - 1
        while above >= 0 and not lines[above].strip():
            above -= 1
        if above >= 0:
            match = _DIRECTIVE.match(lines[above].strip())
            if match:
                directive = parse_directive(match.group("body"))
        found.append(
            Snippet(path, start + 1, fence.group("lang").lower(), "\n".join(body) + "\n", directive)
        )
    return found


def all_snippets() -> list[Snippet]:
    return [snippet for path in user_docs() for snippet in snippets(path)]


def commands(script: str) -> list[list[str]]:
    """The simple commands of a shell snippet, split into words (continuations joined; `&&`,
    `;`, `|` separate commands; comments dropped). Good enough for the docs' plain commands."""
    joined = re.sub(r"\\\n", " ", script)
    result: list[list[str]] = []
    for line in joined.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        words: list[str] = []
        for token in lexer:
            if token and set(token) <= set(";&|"):
                if words:
                    result.append(words)
                words = []
            else:
                words.append(token)
        if words:
            result.append(words)
    return result


def console_commands(text: str) -> str:
    """The commands of a console block (the lines after `$ `), as a shell script."""
    return "\n".join(line[2:] for line in text.splitlines() if line.startswith("$ "))


def scenario_names(found: list[Snippet]) -> list[str]:
    names: list[str] = []
    for snippet in found:
        for name in snippet.directive.scenarios if snippet.directive else ():
            if name not in names:
                names.append(name)
    return names


def scenario(found: list[Snippet], name: str) -> list[Snippet]:
    return [s for s in found if s.directive and name in s.directive.scenarios]
