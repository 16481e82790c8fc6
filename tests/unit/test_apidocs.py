"""docs/api.md is generated from crds/ by bullflow.apidocs and says every rule the CRDs hold."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bullflow import apidocs

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.unit


def test_api_reference_in_sync() -> None:
    expected = apidocs.render(apidocs.load_documents(ROOT / "crds"))
    actual = (ROOT / "docs" / "api.md").read_text()
    assert actual == expected, "docs/api.md is out of date: run `make docs`"


def paths(schema: dict[str, Any], path: str) -> list[str]:
    """Every field path of a schema, array items under `path[]`."""
    target = schema.get("items", schema) if schema.get("type") == "array" else schema
    prefix = f"{path}[]." if target is not schema else f"{path}."
    out = [path]
    for name, sub in target.get("properties", {}).items():
        out += paths(sub, prefix + name)
    return out


@pytest.mark.parametrize("kind", ["Flow", "WorkerPool"])
def test_every_top_level_field_and_rule_documented(kind: str) -> None:
    docs = apidocs.load_documents(ROOT / "crds")
    text = apidocs.render(docs)
    crd = next(
        d
        for d in docs
        if d.get("kind") == "CustomResourceDefinition" and d["spec"]["names"]["kind"] == kind
    )
    assert f"## {kind}" in text
    root = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for top in ("spec", "status"):
        documented = [p for p in paths(root["properties"][top], top) if p.count(".") <= 2]
        rows = {line.split("`")[1]: line for line in text.splitlines() if line.startswith("| `")}
        for path in documented:
            # A repeated job schema is documented once; its later places name the first.
            ancestors = [path.rsplit(".", i)[0].removesuffix("[]") for i in range(1, 3)]
            referenced = any("Same fields as" in rows.get(a, "") for a in ancestors)
            assert path in rows or referenced, path
    for column in crd["spec"]["versions"][0]["additionalPrinterColumns"]:
        assert f"| {column['name']} |" in text
    for short in crd["spec"]["names"].get("shortNames", []):
        assert f"`kubectl get {short}`" in text


SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["spec"],
    "properties": {
        "spec": {
            "type": "object",
            "required": ["mode"],
            "x-kubernetes-validations": [{"rule": "self.a != self.b", "message": "a | b differ"}],
            "properties": {
                "mode": {"type": "string", "enum": ["A", "B"], "default": "A"},
                "count": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 5,
                    "description": "How\n many.",
                },
                "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "size": {"x-kubernetes-int-or-string": True},
                "data": {"x-kubernetes-preserve-unknown-fields": True},
            },
        }
    },
}
CRD: dict[str, Any] = {
    "kind": "CustomResourceDefinition",
    "spec": {
        "group": "bullflow.io",
        "scope": "Namespaced",
        "names": {"kind": "Thing", "plural": "things", "shortNames": ["th"]},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Mode", "type": "string", "jsonPath": ".spec.mode", "priority": 1}
                ],
                "schema": {"openAPIV3Schema": SCHEMA},
            }
        ],
    },
}


def test_render_types_defaults_and_validation() -> None:
    other = {**CRD, "spec": {**CRD["spec"], "group": "kopf.dev"}}
    text = apidocs.render([CRD, other])
    assert text.count("## Thing") == 1  # only bullflow's group
    assert "| `spec` | object |  | required; a \\| b differ |" in text
    assert '| `spec.mode` | string | `"A"` | required; one of `A`, `B` |' in text
    assert "| `spec.count` | integer |  | 1-5 | How many. |" in text
    assert "| `spec.tags` | []string |  | <= 3 items |" in text
    assert "| `spec.labels` | map[string]string |" in text
    assert "| `spec.size` | int or string |" in text and "| `spec.data` | any JSON |" in text
    assert "| Mode | string | `.spec.mode` | `-o wide` |" in text
    assert "`kubectl get things`, `kubectl get th`" in text and "subresources: status" in text
