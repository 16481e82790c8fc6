"""The user docs cannot rot: every code block is parsed and checked here without a cluster;
tests/e2e/test_doc_snippets.py runs the shell blocks and applies the YAML."""

from __future__ import annotations

import functools
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bullflow.models.cronflow import CronFlowSpec
from bullflow.models.flow import FlowSpec
from bullflow.models.template import FlowTemplateSpec
from bullflow.models.workerpool import WorkerPoolSpec
from tests.harness import doc_snippets
from tests.harness.doc_snippets import ROOT, Snippet

pytestmark = pytest.mark.unit

SNIPPETS = doc_snippets.all_snippets()
SHELL = [s for s in SNIPPETS if s.lang in doc_snippets.SHELL_LANGUAGES]
YAML = [s for s in SNIPPETS if s.lang in doc_snippets.YAML_LANGUAGES]
CONSOLE = [s for s in SNIPPETS if s.lang == "console"]
REPO_PATH = re.compile(
    r"^(examples|crds|charts|docs|hack|operator|worker-image|tests|bench|argocd)/[\w./*-]*$"
)
VENV_BIN = Path(sys.executable).parent
SPEC_MODELS = {
    "Flow": FlowSpec,
    "WorkerPool": WorkerPoolSpec,
    "FlowTemplate": FlowTemplateSpec,
    "CronFlow": CronFlowSpec,
}
# bullflow's own commands: their flags are checked against their --help.
OWN_COMMANDS = {
    "bullflow-operator": [str(VENV_BIN / "bullflow-operator")],
    "bullflow-worker": [str(VENV_BIN / "bullflow-worker")],
    "kubectl-bullflow": [str(VENV_BIN / "kubectl-bullflow")],
}


def ids(found: list[Snippet]) -> list[str]:
    return [s.where for s in found]


def test_the_docs_have_runnable_scenarios() -> None:
    names = doc_snippets.scenario_names(SNIPPETS)
    assert {"clone", "helm"} <= set(names), names


@pytest.mark.parametrize("snippet", SHELL, ids=ids(SHELL))
def test_every_shell_block_says_how_it_is_tested(snippet: Snippet) -> None:
    assert snippet.directive is not None, (
        f"{snippet.where}: add <!-- doc-test: scenario=NAME --> (run by the e2e test) or "
        "<!-- doc-test: not-run (why) --> on the line above the block"
    )
    assert snippet.directive.scenarios or snippet.directive.not_run_reason, snippet.where


@pytest.mark.parametrize("snippet", YAML, ids=ids(YAML))
def test_every_yaml_block_parses_and_bullflow_objects_are_valid(snippet: Snippet) -> None:
    documents = [d for d in yaml.safe_load_all(snippet.text) if d is not None]
    assert documents, f"{snippet.where}: empty YAML block"
    for document in documents:
        assert isinstance(document, dict), f"{snippet.where}: not a mapping"
        if document.get("apiVersion") != "bullflow.io/v1alpha1":
            continue
        model = SPEC_MODELS[document["kind"]]
        model.model_validate(document["spec"])


@pytest.mark.parametrize("snippet", SHELL + CONSOLE, ids=ids(SHELL + CONSOLE))
def test_commands_name_what_exists(snippet: Snippet) -> None:
    script = (
        doc_snippets.console_commands(snippet.text) if snippet.lang == "console" else snippet.text
    )
    for words in doc_snippets.commands(script):
        check_command(snippet, words)


def check_command(snippet: Snippet, words: list[str]) -> None:
    program = Path(words[0]).name
    if program == "make":
        for target in (w for w in words[1:] if not w.startswith("-") and "=" not in w):
            assert target in make_targets(), f"{snippet.where}: no make target {target!r}"
    if program in OWN_COMMANDS:
        check_flags(snippet, OWN_COMMANDS[program], words[1:])
    if program == "kubectl" and len(words) > 1 and words[1] == "bullflow":
        subcommand = words[2] if len(words) > 2 else "--help"
        check_flags(snippet, [*OWN_COMMANDS["kubectl-bullflow"], subcommand], words[3:])
    for word in words[1:]:
        value = word.split("=", 1)[-1]
        if REPO_PATH.match(value) and "registry.example.com" not in value:
            assert list(ROOT.glob(value.rstrip("/"))), f"{snippet.where}: no such path {value}"


def check_flags(snippet: Snippet, argv: list[str], args: list[str]) -> None:
    text = help_text(tuple(argv))
    for arg in args:
        flag = arg.split("=", 1)[0]
        if flag.startswith("--"):
            assert flag in text, f"{snippet.where}: {' '.join(argv)} has no flag {flag}"


@functools.cache
def help_text(argv: tuple[str, ...]) -> str:
    done = subprocess.run(
        [*argv, "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, f"{' '.join(argv)} --help failed: {done.stderr}"
    return done.stdout


@functools.cache
def make_targets() -> frozenset[str]:
    text = (ROOT / "Makefile").read_text()
    return frozenset(re.findall(r"^([A-Za-z0-9_-]+):", text, flags=re.MULTILINE))


LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")


def heading_anchors(path: Path) -> set[str]:
    anchors = set()
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            title = re.sub(r"[^\w\- ]", "", title)
            anchors.add(title.replace(" ", "-"))
    return anchors


@pytest.mark.parametrize("path", doc_snippets.user_docs(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_lead_somewhere(path: Path) -> None:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.DOTALL)
    for match in LINK.finditer(text):
        target = match.group("target")
        if re.match(r"^[a-z]+:", target):
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        assert linked.exists(), f"{path.relative_to(ROOT)}: broken link {target}"
        if anchor and linked.suffix == ".md":
            assert anchor in heading_anchors(linked), f"{path.relative_to(ROOT)}: no #{anchor}"
