"""The Helm chart's Redis Sentinel and Cluster values: each mode rendered by the real `helm`,
the URL it hands the operator parsed by the worker's own parser (bullflow_worker.redis_address),
the password kept out of ConfigMaps, args and (with passwordSecret) every chart-made object."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from bullflow_worker.redis_address import parse_redis_address
from tests.harness.tools import Tools

pytestmark = pytest.mark.integration

CHART = Path(__file__).resolve().parents[2] / "charts" / "bullflow"
KUBE_VERSION = "1.34.4"
SECRET_PASSWORD = "Zt8qLw3xVb"  # what the user's Secret would hold (Bitnami-style: URL-safe)


def _helm(tools: Tools, values: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return subprocess.run(
        [
            *(str(tools.helm), "template", "bf", str(CHART), "--namespace", "bullflow"),
            *("--kube-version", KUBE_VERSION, "-f", str(path)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def render(tools: Tools, values: dict[str, Any], tmp_path: Path) -> list[dict[str, Any]]:
    proc = _helm(tools, values, tmp_path)
    assert proc.returncode == 0, proc.stderr
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def operator_env(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    env: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    return env


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion of an env value from the variables before it."""
    for name, replacement in env.items():
        value = value.replace(f"$({name})", replacement)
    return value


def assert_password_nowhere_but_secrets(docs: list[dict[str, Any]], password: str) -> None:
    for doc in docs:
        if doc["kind"] == "Secret":
            continue
        assert password not in json.dumps(doc), f"{doc['kind']} {doc['metadata']['name']}"


def test_sentinel_with_the_password_from_an_existing_secret(
    harness_tools: Tools, tmp_path: Path
) -> None:
    docs = render(
        harness_tools, yaml.safe_load((CHART / "ci" / "sentinel-values.yaml").read_text()), tmp_path
    )
    assert not [d for d in docs if d["kind"] == "Secret"], "the password stays in the user's Secret"
    env = operator_env(docs)
    names = [e["name"] for e in env]
    # Kubernetes expands $(VAR) only from variables defined earlier in the list.
    assert names.index("BULLFLOW_REDIS_PASSWORD") < names.index("BULLFLOW_REDIS_URL")
    by_name = {e["name"]: e for e in env}
    assert by_name["BULLFLOW_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "redis",
        "key": "redis-password",
    }
    url = by_name["BULLFLOW_REDIS_URL"]["value"]
    address = parse_redis_address(expand(url, {"BULLFLOW_REDIS_PASSWORD": SECRET_PASSWORD}))
    assert address.topology == "sentinel"
    assert address.nodes == (("redis.redis.svc.cluster.local", 26379),)
    assert address.master_name == "mymaster" and address.db == 0
    assert address.password == SECRET_PASSWORD == address.sentinel_password
    assert not address.tls
    policy = next(d for d in docs if d["kind"] == "NetworkPolicy")
    ports = [p["port"] for rule in policy["spec"]["egress"] for p in rule.get("ports", [])]
    assert ports.count(26379) == 1, ports


def test_cluster_with_an_inline_password_over_tls(harness_tools: Tools, tmp_path: Path) -> None:
    values = yaml.safe_load((CHART / "ci" / "cluster-values.yaml").read_text())
    docs = render(harness_tools, values, tmp_path)
    secret = next(d for d in docs if d["kind"] == "Secret")
    address = parse_redis_address(secret["stringData"]["url"])
    assert address.topology == "cluster" and address.tls
    assert [f"{host}:{port}" for host, port in address.nodes] == values["redis"]["cluster"]["nodes"]
    assert address.password == "p@ss word"
    env = {e["name"]: e for e in operator_env(docs)}
    assert (
        env["BULLFLOW_REDIS_URL"]["valueFrom"]["secretKeyRef"]["name"] == secret["metadata"]["name"]
    )
    assert_password_nowhere_but_secrets(docs, "p@ss word")
    assert_password_nowhere_but_secrets(docs, "p%40ss")


@pytest.mark.parametrize(
    ("redis", "topology", "expected"),
    [
        (
            {
                "sentinel": {
                    "enabled": True,
                    "hosts": ["s1", "[fd00::1]:26380"],
                    "masterName": "jobs",
                    "db": 2,
                }
            },
            "sentinel",
            {"nodes": (("s1", 26379), ("fd00::1", 26380)), "master_name": "jobs", "db": 2},
        ),
        (
            {
                "cluster": {"enabled": True, "nodes": ["c1:7000", "c2"]},
                "passwordSecret": {"name": "pw"},
            },
            "cluster",
            {"nodes": (("c1", 7000), ("c2", 6379)), "password": SECRET_PASSWORD},
        ),
        (
            {"url": "redis+sentinel://s1:26379,s2:26379/mymaster", "password": "pw 7Qx"},
            "sentinel",
            {"password": "pw 7Qx", "master_name": "mymaster"},
        ),
    ],
)
def test_every_mode_renders_a_url_the_parser_takes(
    harness_tools: Tools,
    tmp_path: Path,
    redis: dict[str, Any],
    topology: str,
    expected: dict[str, Any],
) -> None:
    docs = render(harness_tools, {"redis": redis}, tmp_path)
    env = {e["name"]: e for e in operator_env(docs)}
    if "value" in env["BULLFLOW_REDIS_URL"]:
        url = expand(
            env["BULLFLOW_REDIS_URL"]["value"], {"BULLFLOW_REDIS_PASSWORD": SECRET_PASSWORD}
        )
    else:
        url = next(d for d in docs if d["kind"] == "Secret")["stringData"]["url"]
    address = parse_redis_address(url)
    assert address.topology == topology
    for field, value in expected.items():
        assert getattr(address, field) == value, field
    for password in filter(None, [address.password, SECRET_PASSWORD, "pw%207Qx"]):
        assert_password_nowhere_but_secrets(docs, password)
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert "redis" not in " ".join(container.get("args", [])).lower()


@pytest.mark.parametrize(
    ("redis", "message"),
    [
        (
            {
                "sentinel": {"enabled": True, "hosts": ["s"]},
                "cluster": {"enabled": True, "nodes": ["c"]},
            },
            "only one",
        ),
        ({"sentinel": {"enabled": True}}, "redis.sentinel.hosts"),
        ({"cluster": {"enabled": True}}, "redis.cluster.nodes"),
        (
            {"url": "redis://r:6379", "passwordSecret": {"name": "pw"}},
            "redis.passwordSecret is for",
        ),
        (
            {
                "cluster": {"enabled": True, "nodes": ["c"]},
                "password": "x",
                "passwordSecret": {"name": "pw"},
            },
            "only one of redis.password",
        ),
        ({"cluster": {"enabled": True, "nodes": ["c/0"]}}, "nodes"),
        ({"sentinel": {"enabled": True, "hosts": ["s"], "masterName": ""}}, "masterName"),
        ({"url": "redis+sentinel://s/m", "tls": {"enabled": True}}, "rediss"),
    ],
)
def test_bad_redis_values_are_refused(
    harness_tools: Tools, tmp_path: Path, redis: dict[str, Any], message: str
) -> None:
    proc = _helm(harness_tools, {"redis": redis}, tmp_path)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr
