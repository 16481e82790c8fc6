"""hack/demo.py's pure parts: Helm ownership on the CRDs it applies, and its closing hint."""

from __future__ import annotations

import importlib.util
import shlex
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

from tests.harness.tools import expected_tools

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bullflow_demo", ROOT / "hack" / "demo.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_crds_get_helms_ownership_for_the_documented_release(demo: ModuleType) -> None:
    docs, plain = demo.crd_documents()
    assert sorted((d["kind"], d["metadata"]["name"]) for d in docs) == [
        ("CustomResourceDefinition", "cronflows.bullflow.io"),
        ("CustomResourceDefinition", "flows.bullflow.io"),
        ("CustomResourceDefinition", "flowtemplates.bullflow.io"),
        ("CustomResourceDefinition", "workerpools.bullflow.io"),
        ("ValidatingAdmissionPolicy", "flows.bullflow.io-immutable-spec"),
        ("ValidatingAdmissionPolicyBinding", "flows.bullflow.io-immutable-spec"),
    ]
    # Not templated by the chart (its crds/ folder): Helm never checks who owns them.
    assert all(d["metadata"]["name"].endswith(".kopf.dev") for d in plain)
    owned = demo.helm_owned(docs, "bullflow", "bullflow-system")
    for before, after in zip(docs, owned, strict=True):
        meta = after["metadata"]
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        assert meta["annotations"]["meta.helm.sh/release-name"] == "bullflow"
        assert meta["annotations"]["meta.helm.sh/release-namespace"] == "bullflow-system"
        assert after["spec"] == before["spec"] and meta["name"] == before["metadata"]["name"]
        assert "annotations" not in before["metadata"]  # the input is left as it was


def test_existing_labels_are_kept(demo: ModuleType) -> None:
    doc = {"kind": "X", "metadata": {"name": "x", "labels": {"team": "a"}}}
    (owned,) = demo.helm_owned([doc], "r", "ns")
    assert owned["metadata"]["labels"] == {"team": "a", "app.kubernetes.io/managed-by": "Helm"}


def test_crds_of_another_release_stay_that_release(demo: ModuleType) -> None:
    plain = {"metadata": {"name": "flows.bullflow.io"}}
    other = {
        "metadata": {
            "annotations": {
                "meta.helm.sh/release-name": "bf",
                "meta.helm.sh/release-namespace": "ops",
            }
        }
    }
    assert demo.owning_release([]) == ("bullflow", "bullflow-system")
    assert demo.owning_release([plain]) == ("bullflow", "bullflow-system")
    assert demo.owning_release([plain, other]) == ("bf", "ops")
    assert demo.closing_notes(False, ("bf", "ops")) == [
        "the CRDs belong to the Helm release ops/bf"
    ]


def test_the_install_hint_is_the_documented_command(demo: ModuleType) -> None:
    (note,) = demo.closing_notes(False, ("bullflow", "bullflow-system"))
    assert note.endswith(demo.HELM_INSTALL)
    documented = (ROOT / "docs" / "operations.md").read_text()
    assert demo.HELM_INSTALL.split(" --set")[0] in documented
    local = demo.closing_notes(True, ("bullflow", "bullflow-system"))
    assert local[0] == "the local cluster is left running; `make cluster-down` stops it"


def test_shell_tools_shadow_nothing_on_the_users_cluster(demo: ModuleType) -> None:
    tools = expected_tools()
    venv_bin = Path("/venv/bin")
    everything = demo.shell_tools(tools, venv_bin, True, lambda name: "/usr/bin/" + name)
    assert everything == {
        "kubectl": tools.kubectl,
        "kubectl-bullflow": venv_bin / "kubectl-bullflow",
        "helm": tools.helm,
    }
    missing = demo.shell_tools(tools, venv_bin, False, lambda n: None if n != "kubectl" else "/k")
    assert set(missing) == {"kubectl-bullflow", "helm"}
    assert demo.shell_tools(tools, venv_bin, False, lambda name: "/x") == {}


def test_link_bin_dir_replaces_old_links(demo: ModuleType, tmp_path: Path) -> None:
    assert demo.link_bin_dir(tmp_path / "bin", {}) is None
    first, second = tmp_path / "a", tmp_path / "b"
    demo.link_bin_dir(tmp_path / "bin", {"kubectl": first})
    assert demo.link_bin_dir(tmp_path / "bin", {"kubectl": second}) == tmp_path / "bin"
    assert (tmp_path / "bin" / "kubectl").readlink() == second


def test_shell_lines_survive_spaces_in_paths(demo: ModuleType, tmp_path: Path) -> None:
    kubeconfig = str(tmp_path / "my clone" / "admin.kubeconfig")
    bin_dir = tmp_path / "my clone" / "bin"
    lines = demo.shell_lines("order-1", kubeconfig, "redis://127.0.0.1:6379/0", bin_dir)
    assert lines[3:] == [
        "kubectl get flows -n bullflow-demo",
        "kubectl describe flow -n bullflow-demo order-1",
        "kubectl bullflow tree -n bullflow-demo order-1",
    ]
    script = "\n".join(lines[:3]) + '\nprintf "%s\\n" "$KUBECONFIG" "$BULLFLOW_REDIS_URL" "$PATH"'
    out = subprocess.run(
        ["/bin/bash", "-ec", script], env={"PATH": "/usr/bin"}, capture_output=True, text=True
    ).stdout.splitlines()
    assert out == [kubeconfig, "redis://127.0.0.1:6379/0", f"{bin_dir}:/usr/bin"]
    no_redis = demo.shell_lines("order-1", kubeconfig, None, None)
    assert no_redis[0] == f"export KUBECONFIG={shlex.quote(kubeconfig)}"
    assert not any("BULLFLOW_REDIS_URL" in line or "PATH" in line for line in no_redis)
