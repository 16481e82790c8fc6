"""crds/ is generated from the pydantic models; this keeps them in sync and structural."""

from pathlib import Path

import yaml

from bullflow.crdgen import all_crds, all_policies, render

CRDS = Path(__file__).resolve().parents[2] / "crds"


def test_crds_dir_matches_the_models():
    for filename, crd in {**all_crds(), **all_policies()}.items():
        on_disk = (CRDS / filename).read_text()
        assert on_disk == render(crd), f"crds/{filename} is stale: run `make crds`"


def _walk(schema, path="$"):
    yield path, schema
    for name, prop in (schema.get("properties") or {}).items():
        yield from _walk(prop, f"{path}.{name}")
    if "items" in schema:
        yield from _walk(schema["items"], f"{path}[]")


def test_every_schema_node_is_structural():
    for crd in all_crds().values():
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for path, node in _walk(schema):
            assert "$ref" not in node and "anyOf" not in node and "title" not in node, path
            assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), path


def test_flow_crd_has_cel_rules_printer_columns_and_category():
    crd = yaml.safe_load(render(all_crds()["flows.bullflow.io.yaml"]))
    version = crd["spec"]["versions"][0]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    messages = [r["message"] for r in spec["x-kubernetes-validations"]]
    assert "exactly one of root, roots or templateRef is required" in messages
    opts = spec["properties"]["root"]["properties"]["opts"]
    assert any("mutually exclusive" in r["message"] for r in opts["x-kubernetes-validations"])
    assert [c["name"] for c in version["additionalPrinterColumns"]][:2] == ["Phase", "Progress"]
    assert crd["spec"]["names"]["categories"] == ["bullflow"]
    assert version["subresources"] == {"status": {}}


def test_spec_immutability_is_an_admission_policy_not_a_crd_rule():
    """A CRD rule on the spec runs on every status write too: the policy matches `flows` updates
    only, never `flows/status`."""
    crd = all_crds()["flows.bullflow.io.yaml"]
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert "oldSelf" not in yaml.safe_dump(spec)
    (policy,) = [p for p in all_policies().values() if p["kind"] == "ValidatingAdmissionPolicy"]
    (rule,) = policy["spec"]["matchConstraints"]["resourceRules"]
    assert rule["resources"] == ["flows"] and rule["operations"] == ["UPDATE"]
    assert policy["spec"]["validations"][0]["expression"] == "object.spec == oldObject.spec"
