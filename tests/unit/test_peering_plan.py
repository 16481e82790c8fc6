"""The operator's choice between kopf peering and standalone (bullflow/peering.py)."""

from pathlib import Path

import pytest

from bullflow.peering import CLUSTER, NAMESPACED, PeeringFound, peering_kind, plan_peering

ROOT = Path(__file__).resolve().parents[2]
SERVED = PeeringFound(crd_served=True)
NO_CRD = PeeringFound(crd_served=False)


def test_standalone_looks_at_nothing_and_never_peers():
    assert plan_peering(True, None, [], None).name is None
    plan = plan_peering(True, "ha", ["a"], None)
    assert plan.name is None and plan.warning is None and plan.error is None


def test_first_run_without_the_crd_runs_standalone_with_one_warning_saying_how_to_enable():
    plan = plan_peering(False, None, [], NO_CRD)
    assert plan.name is None and plan.error is None
    assert plan.warning.startswith("HA peering is off: the CRD clusterkopfpeerings.kopf.dev")
    assert "kubectl apply -f crds/kopf-peerings.yaml" in plan.warning
    assert "ClusterKopfPeering named bullflow" in plan.warning


def test_namespaced_operator_needs_the_namespaced_crd():
    assert peering_kind(["a"]) is NAMESPACED and peering_kind([]) is CLUSTER
    plan = plan_peering(False, None, ["a"], NO_CRD)
    assert "kopfpeerings.kopf.dev" in plan.warning and "clusterkopf" not in plan.warning


def test_crd_without_the_peering_object_runs_standalone_and_says_which_object():
    plan = plan_peering(False, None, ["a", "b"], PeeringFound(True, missing_in=("b",)))
    assert plan.name is None
    assert "no KopfPeering named bullflow in namespace(s) b" in plan.warning
    assert "restart the operator" in plan.warning


def test_crd_and_object_present_peer_as_bullflow_silently():
    plan = plan_peering(False, None, [], SERVED)
    assert plan.name == "bullflow" and plan.warning is None and plan.error is None


def test_explicit_peering_without_the_crd_fails_with_one_line_naming_it():
    plan = plan_peering(False, "ha", [], NO_CRD)
    assert plan.name is None and plan.warning is None
    assert plan.error == (
        "bullflow-operator: --peering ha needs the CRD clusterkopfpeerings.kopf.dev, which the "
        "cluster does not serve; install it (kubectl apply -f crds/kopf-peerings.yaml) or pass "
        "--standalone"
    )
    assert "\n" not in plan.error


def test_explicit_peering_waits_for_a_missing_object_and_says_so():
    """Helm creates the peering object with the Deployment: the operator may start first."""
    plan = plan_peering(False, "ha", ["ns"], PeeringFound(True, missing_in=("ns",)))
    assert plan.name == "ha" and plan.error is None
    assert plan.warning == (
        "there is no KopfPeering named ha in namespace(s) ns: the operator stays paused until "
        "it exists"
    )
    assert plan_peering(False, "ha", ["ns"], SERVED) == plan_peering(False, "ha", [], SERVED)


def test_not_standalone_requires_a_look_at_the_cluster():
    with pytest.raises(AssertionError):
        plan_peering(False, None, [], None)


def test_crds_dir_ships_the_peering_crds_the_chart_installs():
    """One source (crds/), copied verbatim into the chart's Helm crds/ folder."""
    source = (ROOT / "crds" / "kopf-peerings.yaml").read_text()
    assert source == (ROOT / "charts" / "bullflow" / "crds" / "kopf-peerings.yaml").read_text()
    assert "name: clusterkopfpeerings.kopf.dev" in source
    assert "name: kopfpeerings.kopf.dev" in source
    assert not (ROOT / "charts" / "bullflow" / "templates" / "crds" / "kopf-peerings.yaml").exists()
