"""The docs' shell blocks run as a reader would run them, and their YAML is applied to a real API
server (dry run): the README's own-cluster path really takes a flow to `Completed`."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.doc_runner import ScenarioRun
from tests.harness import doc_snippets
from tests.harness.private import private_cluster
from tests.harness.tools import Tools

pytestmark = pytest.mark.e2e

SNIPPETS = doc_snippets.all_snippets()
SCENARIOS = doc_snippets.scenario_names(SNIPPETS)
YAML = [s for s in SNIPPETS if s.lang in doc_snippets.YAML_LANGUAGES]


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("name", SCENARIOS)
def test_docs_scenario_runs(name: str, harness_tools: Tools) -> None:
    # Outside pytest's basetemp (other sessions rotate it away); kept only when the scenario
    # failed, for its logs: a passing one leaves no repository copy or virtualenv behind.
    workdir = Path(tempfile.mkdtemp(prefix=f"bullflow-docs-{name}-"))
    with private_cluster(harness_tools, workdir) as (cluster, redis):
        run = ScenarioRun(harness_tools, cluster.kubeconfig, redis.url, workdir)
        try:
            for snippet in doc_snippets.scenario(SNIPPETS, name):
                run.run(snippet)
        finally:
            run.stop()
    shutil.rmtree(workdir, ignore_errors=True)


def api_group(api_version: str) -> str:
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""


def served_groups(kubectl: Any) -> set[str]:
    return {api_group(v) for v in kubectl("api-versions").stdout.split()}


@pytest.mark.parametrize("snippet", YAML, ids=[s.where for s in YAML])
def test_docs_yaml_is_accepted_by_the_api_server(
    snippet: doc_snippets.Snippet, flow_crds: None, kubectl: Any, namespace: str
) -> None:
    """Every Kubernetes object of the docs passes the real API server's validation (schema, CEL
    rules, admission policy) with a server-side dry run. Objects of APIs this cluster does not
    serve (Argo CD's) and fragments without a kind are only parsed (tests/unit)."""
    if snippet.directive and snippet.directive.helm_values:
        pytest.skip(f"{snippet.where}: Helm values, rendered by test_docs_helm_values_render")
    groups = served_groups(kubectl)
    objects = [
        d
        for d in yaml.safe_load_all(snippet.text)
        if isinstance(d, dict) and "apiVersion" in d and "kind" in d
    ]
    applicable = [d for d in objects if api_group(d["apiVersion"]) in groups]
    if not applicable:
        pytest.skip(f"{snippet.where}: no object of an API this cluster serves")
    kubectl(
        "apply",
        "--dry-run=server",
        "-n",
        namespace,
        "-f",
        "-",
        input=yaml.safe_dump_all(applicable),
    )


@pytest.mark.parametrize(
    "snippet",
    [s for s in SNIPPETS if s.directive and s.directive.helm_values],
    ids=lambda s: s.where,
)
def test_docs_helm_values_render(snippet: doc_snippets.Snippet, harness_tools: Tools) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as values:
        values.write(snippet.text)
        values.flush()
        subprocess.run(
            [
                str(harness_tools.helm),
                "template",
                "bullflow",
                str(doc_snippets.ROOT / "charts" / "bullflow"),
                "--kube-version",
                "1.34",
                "-f",
                values.name,
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
