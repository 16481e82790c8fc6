"""The Helm chart: lint, schema, rendering, and server-side dry runs on the real control plane."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import bullflow
from bullflow.config import Settings
from tests.harness.tools import Tools

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "bullflow"
CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))
KUBE_VERSION = "1.34.4"


def helm(tools: Tools, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(tools.helm), *args], capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stderr}{proc.stdout}")
    return proc


def render(tools: Tools, *args: str, namespace: str = "bullflow") -> list[dict[str, Any]]:
    out = helm(
        tools,
        "template",
        "bf",
        str(CHART),
        "--namespace",
        namespace,
        "--kube-version",
        KUBE_VERSION,
        *args,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


# --- static checks (helm only, no cluster) -------------------------------------------------------


def test_crd_templates_in_sync_with_crds_dir() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "sync-chart-crds.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr


# What crds.install renders from crds/: the CRDs and the Flow spec's admission policy.
CRDS_DIR_KINDS = (
    "CustomResourceDefinition",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
)


def crds_dir_objects(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs if d["kind"] in CRDS_DIR_KINDS}


def test_rendered_crds_equal_crds_dir(harness_tools: Tools) -> None:
    rendered = crds_dir_objects(render(harness_tools))
    sources = crds_dir_objects(
        [
            yaml.safe_load(path.read_text())
            for path in sorted((ROOT / "crds").glob("*.yaml"))
            if path.name != "kopf-peerings.yaml"  # in the chart's Helm crds/, not its templates
        ]
    )
    assert set(rendered) == set(sources)
    assert {kind for kind, _ in sources} == set(CRDS_DIR_KINDS)
    for key, doc in sources.items():
        assert rendered[key]["spec"] == doc["spec"], key
        assert rendered[key]["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    # crds.keep=false drops the annotation; crds.install=false drops them all.
    unkept = crds_dir_objects(render(harness_tools, "--set", "crds.keep=false"))
    assert unkept and all("annotations" not in d["metadata"] for d in unkept.values())
    assert not crds_dir_objects(render(harness_tools, "--set", "crds.install=false"))


@pytest.mark.parametrize("values", [None, *CI_VALUES], ids=lambda v: v.stem if v else "bare")
def test_helm_lint(harness_tools: Tools, values: Path | None) -> None:
    args = ["lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION]
    if values:
        args += ["-f", str(values)]
    out = helm(harness_tools, *args).stdout
    assert "0 chart(s) failed" in out


def test_helm_package(harness_tools: Tools, tmp_path: Path) -> None:
    """What `make release-check` ships: the packaged chart at the package version, with its
    README, icon, schema and test hook."""
    helm(harness_tools, "package", str(CHART), "--destination", str(tmp_path))
    archive = tmp_path / f"bullflow-{bullflow.__version__}.tgz"
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        chart_file = tar.extractfile("bullflow/Chart.yaml")
        assert chart_file is not None
        chart = yaml.safe_load(chart_file.read())
    assert chart["version"] == chart["appVersion"] == bullflow.__version__
    for name in (
        "README.md",
        "icon.svg",
        "values.schema.json",
        "templates/tests/test-operator-health.yaml",
        "templates/networkpolicy.yaml",
    ):
        assert f"bullflow/{name}" in names, name


@pytest.mark.parametrize(
    "typo",
    [
        "replicaCont=2",  # top level
        "image.tagg=v1",  # nested
        "redis.tls.enabeld=true",  # deeper
        "metrics.serviceMonitor.intervall=10s",
        "config.resyncInterval=5",
    ],
)
def test_typo_in_values_fails_schema_validation(harness_tools: Tools, typo: str) -> None:
    proc = helm(
        harness_tools,
        "template",
        "bf",
        str(CHART),
        "--kube-version",
        KUBE_VERSION,
        "--set",
        typo,
        check=False,
    )
    assert proc.returncode != 0
    assert "additional properties" in proc.stderr and typo.split("=")[0].split(".")[-1] in (
        proc.stderr
    ), proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "replicaCount=0"], "replicaCount"),
        (["--set", "logFormat=xml"], "logFormat"),
        (["--set", "watchNamespaces[0]=team-*"], "watchNamespaces"),
        (["--set", "redis.url=http://x"], "redis"),
        (
            ["--set", "redis.url=redis://a:6379", "--set", "redis.inCluster.enabled=true"],
            "only one",
        ),
        (["--set", "redis.url=redis://a:6379", "--set", "redis.tls.enabled=true"], "rediss://"),
    ],
)
def test_invalid_values_rejected(harness_tools: Tools, args: list[str], message: str) -> None:
    proc = helm(
        harness_tools,
        "template",
        "bf",
        str(CHART),
        "--kube-version",
        KUBE_VERSION,
        *args,
        check=False,
    )
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr


def test_every_value_documented_and_in_schema() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    text = (CHART / "values.yaml").read_text().splitlines()

    def walk(value: Any, node: dict[str, Any], path: str) -> None:
        assert node.get("additionalProperties") is False, f"{path or '<root>'}: not closed"
        for key, sub in value.items():
            assert key in node["properties"], f"{path}{key} missing from values.schema.json"
            child = node["properties"][key]
            if isinstance(sub, dict) and child.get("additionalProperties") is False:
                walk(sub, child, f"{path}{key}.")

    walk(values, schema, "")
    # Every value in values.yaml has a comment right above it or above an enclosing key.
    keys: list[tuple[int, bool]] = []  # (indent, commented) of the enclosing keys
    for i, line in enumerate(text):
        match = re.match(r"^(\s*)([A-Za-z][A-Za-z0-9]*):", line)
        if not match:
            continue
        indent = len(match.group(1))
        while keys and keys[-1][0] >= indent:
            keys.pop()
        commented = i > 0 and text[i - 1].strip().startswith("#")
        is_section = line.rstrip().endswith(":")
        if not is_section:
            assert commented or any(c for _, c in keys), f"values.yaml:{i + 1} undocumented"
        keys.append((indent, commented))


def test_config_keys_are_operator_settings() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    fields = set(Settings.model_fields)
    for key in values["config"]:
        snake = re.sub(r"([A-Z])", r"_\1", key).lower()
        assert snake in fields, f"config.{key} is not a bullflow Settings field"


def test_operator_arguments(harness_tools: Tools) -> None:
    def args_of(*values: str) -> list[str]:
        dep = next(
            d
            for d in by_kind(render(harness_tools, *values), "Deployment")
            if d["metadata"]["name"] == "bf-bullflow"
        )
        container = dep["spec"]["template"]["spec"]["containers"][0]
        assert container["command"] == ["bullflow-operator"]
        return list(container["args"])

    assert args_of() == [
        "--liveness=http://0.0.0.0:8080/healthz",
        "--metrics-port=9090",
        "--log-format=json",
        "--standalone",
    ]
    ha = args_of("-f", str(CHART / "ci" / "ha-values.yaml"))
    assert "--peering=bullflow" in ha and "--standalone" not in ha
    ns = args_of("-f", str(CHART / "ci" / "namespaced-values.yaml"))
    assert "--namespace=team-a" in ns and "--namespace=team-b" in ns
    assert "--metrics-port=0" in args_of("--set", "metrics.enabled=false")


def test_ha_renders_peering_pdb_and_rolling_update(harness_tools: Tools) -> None:
    docs = render(harness_tools, "-f", str(CHART / "ci" / "ha-values.yaml"))
    assert [d["metadata"]["name"] for d in by_kind(docs, "ClusterKopfPeering")] == ["bullflow"]
    assert by_kind(docs, "PodDisruptionBudget")[0]["spec"]["minAvailable"] == 1
    dep = next(d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == "bf-bullflow")
    assert dep["spec"]["strategy"]["type"] == "RollingUpdate"
    assert "podAntiAffinity" in dep["spec"]["template"]["spec"]["affinity"]
    single = render(harness_tools)
    assert not by_kind(single, "PodDisruptionBudget") and not by_kind(single, "ClusterKopfPeering")
    dep = next(d for d in by_kind(single, "Deployment"))
    assert dep["spec"]["strategy"]["type"] == "Recreate"
    nsha = render(
        harness_tools, "-f", str(CHART / "ci" / "namespaced-values.yaml"), "--set", "replicaCount=3"
    )
    assert sorted(d["metadata"]["namespace"] for d in by_kind(nsha, "KopfPeering")) == [
        "team-a",
        "team-b",
    ]


def test_redis_url_secret_and_tls(harness_tools: Tools) -> None:
    docs = render(harness_tools, "-f", str(CHART / "ci" / "tls-values.yaml"))
    secret = by_kind(docs, "Secret")[0]
    assert secret["stringData"]["url"] == "rediss://:p%40ss%20word@redis.example.internal:6380/0"
    pod = next(d for d in by_kind(docs, "Deployment"))["spec"]["template"]["spec"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["BULLFLOW_REDIS_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "bf-bullflow-redis-url",
        "key": "url",
    }
    assert env["SSL_CERT_FILE"]["value"] == "/etc/bullflow/redis-ca/ca.crt"
    assert any(v.get("secret", {}).get("secretName") == "redis-ca" for v in pod["volumes"])
    # The URL round-trips through redis-py's parser with the password intact.
    from redis.asyncio.connection import parse_url

    parsed = parse_url(secret["stringData"]["url"])
    assert parsed["password"] == "p@ss word" and parsed["host"] == "redis.example.internal"
    existing = render(harness_tools, "-f", str(CHART / "ci" / "namespaced-values.yaml"))
    assert not by_kind(existing, "Secret")


def test_service_monitor(harness_tools: Tools) -> None:
    docs = render(
        harness_tools,
        "--set",
        "metrics.serviceMonitor.enabled=true",
        "--set",
        "metrics.serviceMonitor.labels.release=prom",
    )
    monitor = by_kind(docs, "ServiceMonitor")[0]
    service = by_kind(docs, "Service")[0]
    labels = service["metadata"]["labels"]
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert all(labels[k] == v for k, v in monitor["spec"]["selector"]["matchLabels"].items())
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]


def operator_pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    dep = next(d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == "bf-bullflow")
    return dict(dep["spec"]["template"]["spec"])


def test_default_image_is_the_package_version(harness_tools: Tools) -> None:
    image = operator_pod(render(harness_tools))["containers"][0]["image"]
    assert image == f"ghcr.io/bullflow/bullflow-operator:{bullflow.__version__}"


def test_extra_args_volumes_and_env_from(harness_tools: Tools) -> None:
    plain = operator_pod(render(harness_tools))
    container = plain["containers"][0]
    assert "envFrom" not in container
    assert [v["name"] for v in plain["volumes"]] == ["tmp"]
    assert [m["name"] for m in container["volumeMounts"]] == ["tmp"]
    pod = operator_pod(render(harness_tools, "-f", str(CHART / "ci" / "extras-values.yaml")))
    container = pod["containers"][0]
    # Appended after the chart's own arguments (a later flag wins in argparse).
    assert container["args"][-1] == "--verbose"
    assert container["args"][:-1] == [
        "--liveness=http://0.0.0.0:8080/healthz",
        "--metrics-port=9090",
        "--log-format=json",
        "--standalone",
    ]
    assert container["envFrom"] == [
        {"configMapRef": {"name": "bullflow-settings", "optional": True}}
    ]
    assert pod["volumes"][-1] == {
        "name": "extra-ca",
        "configMap": {"name": "extra-ca", "optional": True},
    }
    assert container["volumeMounts"][-1] == {
        "name": "extra-ca",
        "mountPath": "/etc/extra-ca",
        "readOnly": True,
    }
    # The chart's own mounts stay (the read-only root filesystem needs /tmp).
    assert container["volumeMounts"][0] == {"name": "tmp", "mountPath": "/tmp"}


def test_network_policy(harness_tools: Tools) -> None:
    assert not by_kind(render(harness_tools), "NetworkPolicy")
    docs = render(harness_tools, "--set", "networkPolicy.enabled=true")
    (policy,) = by_kind(docs, "NetworkPolicy")
    spec = policy["spec"]
    pod_labels = next(iter(by_kind(docs, "Deployment")))["spec"]["template"]["metadata"]["labels"]
    assert all(pod_labels[k] == v for k, v in spec["podSelector"]["matchLabels"].items())
    # Ingress only; egress untouched unless asked for.
    assert spec["policyTypes"] == ["Ingress"] and "egress" not in spec
    assert spec["ingress"] == [
        {"ports": [{"port": "health", "protocol": "TCP"}, {"port": "metrics", "protocol": "TCP"}]}
    ]
    no_metrics = render(
        harness_tools, "--set", "networkPolicy.enabled=true", "--set", "metrics.enabled=false"
    )
    assert by_kind(no_metrics, "NetworkPolicy")[0]["spec"]["ingress"][0]["ports"] == [
        {"port": "health", "protocol": "TCP"}
    ]

    spec = by_kind(
        render(harness_tools, "-f", str(CHART / "ci" / "extras-values.yaml")), "NetworkPolicy"
    )[0]["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    sources = spec["ingress"][0]["from"]
    assert sources[0] == {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    }
    # The chart's helm test pod may still reach the ports.
    assert sources[1] == {
        "podSelector": {
            "matchLabels": {
                "app.kubernetes.io/instance": "bf",
                "app.kubernetes.io/component": "test",
            }
        }
    }
    dns, api, redis, in_cluster, extra = spec["egress"]
    assert dns == {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}
    assert api == {
        "ports": [{"port": 443, "protocol": "TCP"}],
        "to": [{"ipBlock": {"cidr": "10.96.0.1/32"}}, {"ipBlock": {"cidr": "192.168.0.0/24"}}],
    }
    assert redis == {
        "ports": [{"port": 6379, "protocol": "TCP"}, {"port": 6380, "protocol": "TCP"}],
        "to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}],
    }
    assert in_cluster["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == (
        "redis"
    )
    assert extra == {
        "to": [{"ipBlock": {"cidr": "10.30.0.0/16"}}],
        "ports": [{"port": 4317, "protocol": "TCP"}],
    }
    # Egress defaults: API server and Redis on their usual ports, to any address.
    defaults = by_kind(
        render(
            harness_tools,
            "--set",
            "networkPolicy.enabled=true",
            "--set",
            "networkPolicy.egress.enabled=true",
        ),
        "NetworkPolicy",
    )[0]["spec"]["egress"]
    assert [rule.get("to") for rule in defaults] == [None, None, None]
    assert [p["port"] for p in defaults[1]["ports"]] == [443, 6443]
    assert [p["port"] for p in defaults[2]["ports"]] == [6379]


def test_helm_test_hook_pod(harness_tools: Tools) -> None:
    docs = render(harness_tools)
    (pod,) = by_kind(docs, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (service,) = [
        s for s in by_kind(docs, "Service") if s["metadata"]["name"] == "bf-bullflow-metrics"
    ]
    # The Service must not select the test pod as an operator endpoint.
    labels = pod["metadata"]["labels"]
    assert not all(labels.get(k) == v for k, v in service["spec"]["selector"].items())
    ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
    assert ports == {"metrics": 9090, "health": 8080}
    container = pod["spec"]["containers"][0]
    # The operator's own image: nothing else to pull.
    assert container["image"] == operator_pod(docs)["containers"][0]["image"]
    assert container["command"][:2] == ["python", "-c"]
    assert container["args"] == [
        "http://bf-bullflow-metrics.bullflow.svc:8080/healthz",
        "http://bf-bullflow-metrics.bullflow.svc:9090/metrics",
    ]
    assert pod["spec"]["restartPolicy"] == "Never"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    ported = by_kind(
        render(harness_tools, "--set", "healthPort=8181", "--set", "metrics.port=9191"), "Pod"
    )[0]["spec"]["containers"][0]["args"]
    assert ported == [
        "http://bf-bullflow-metrics.bullflow.svc:8181/healthz",
        "http://bf-bullflow-metrics.bullflow.svc:9191/metrics",
    ]
    # No Service without metrics, so no test.
    assert not by_kind(render(harness_tools, "--set", "metrics.enabled=false"), "Pod")


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda v: v.stem)
def test_rbac_has_no_wildcards(harness_tools: Tools, values: Path) -> None:
    docs = render(harness_tools, "-f", str(values))
    roles = by_kind(docs, "ClusterRole") + by_kind(docs, "Role")
    assert roles
    for role in roles:
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                assert "*" not in rule.get(field, []), (role["metadata"]["name"], rule)
            assert not rule.get("nonResourceURLs"), rule


def test_every_rbac_rule_is_commented() -> None:
    lines = (CHART / "templates" / "rbac.yaml").read_text().splitlines()
    for i, line in enumerate(lines):
        if line.lstrip().startswith("- apiGroups:"):
            above = lines[i - 1].strip()
            assert above.startswith("#"), f"rbac.yaml:{i + 1}: rule without a comment"


def test_pod_security_restricted_values(harness_tools: Tools) -> None:
    for values in CI_VALUES:
        for dep in by_kind(render(harness_tools, "-f", str(values)), "Deployment"):
            pod = dep["spec"]["template"]["spec"]
            assert pod["securityContext"]["runAsNonRoot"] is True
            assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
            for c in pod["containers"]:
                sc = c["securityContext"]
                assert sc["readOnlyRootFilesystem"] is True
                assert sc["allowPrivilegeEscalation"] is False
                assert sc["capabilities"] == {"drop": ["ALL"]}
                assert c["resources"]["requests"] and c["resources"]["limits"]


def test_notes(harness_tools: Tools, local_cluster: Any) -> None:
    kc = f"--kubeconfig={local_cluster.kubeconfig}"
    notes = helm(
        harness_tools,
        "install",
        "bf",
        str(CHART),
        "--dry-run=server",
        kc,
        "--set",
        "redis.inCluster.enabled=true",
        # CRDs may already belong to a release installed by the e2e chart tests.
        "--set",
        "crds.install=false",
        "--namespace",
        "ops",
    ).stdout
    assert "It is for trying bullflow out only: do not use it in production." in notes
    assert "kubectl -n ops rollout status deployment/bf-bullflow" in notes
    assert "kubectl bullflow tree basic -n default" in notes
    bare = helm(
        harness_tools,
        "install",
        "bf",
        str(CHART),
        "--dry-run=server",
        kc,
        "--set",
        "crds.install=false",
    ).stdout
    assert "no default Redis is configured" in bare


# --- server-side dry runs on the real control plane -----------------------------------------------


@pytest.fixture(scope="module")
def chart_crds(kubectl: Any) -> None:
    """bullflow's CRDs (crds/) and kopf's peering CRDs (the chart's crds/ folder), installed."""
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CHART / "crds"))
    kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")


@pytest.fixture
def restricted_namespace(namespace: str, kubectl: Any) -> Iterator[str]:
    """The per-test namespace, enforcing the restricted Pod Security Standard."""
    kubectl(
        "label",
        "namespace",
        namespace,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/warn=restricted",
    )
    yield namespace


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda v: v.stem)
def test_server_side_dry_run(
    harness_tools: Tools,
    kubectl: Any,
    chart_crds: None,
    restricted_namespace: str,
    values: Path,
) -> None:
    ns = restricted_namespace
    extra = ["--set", f"watchNamespaces={{{ns}}}"] if "namespaced" in values.stem else []
    out = helm(
        harness_tools,
        "template",
        "bf",
        str(CHART),
        "--namespace",
        ns,
        "--kube-version",
        KUBE_VERSION,
        "-f",
        str(values),
        *extra,
    ).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "ServiceAccount", "CustomResourceDefinition", "Service"} <= kinds
    proc = kubectl(
        "apply",
        "--dry-run=server",
        "--server-side",
        "--force-conflicts",
        "--field-manager=chart-test",
        "-f",
        "-",
        input=out,
    )
    applied = [line for line in proc.stdout.splitlines() if "(server dry run)" in line]
    assert len(applied) == len(docs), proc.stdout
    # PodSecurity admission warns (stderr) about Deployments whose pods would be rejected.
    assert "PodSecurity" not in proc.stderr and "violate" not in proc.stderr, proc.stderr
