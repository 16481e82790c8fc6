"""kopf peering (one active operator among several) or standalone: decided once, at start.

kopf with a peering name pauses every watch until the peering CRD is served *and* the peering
object exists, saying why only at debug level: an operator started by hand on a cluster without
them silently did nothing. So the operator looks first, and:

- `--standalone`: no peering, nothing looked at.
- `--peering NAME` (explicit, as the chart passes with more than one replica): peering is
  required. No CRD: exit with one line naming it. No peering object yet: peering anyway (the
  object may be created right after the operator, as Helm does) and one warning that the
  operator stays paused until it exists.
- neither (a first run): peering named `bullflow` when the CRD and the object are there, else
  standalone with one warning that HA peering is off and how to turn it on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from .storage.kube import KubeApi

DEFAULT_NAME = "bullflow"
GROUP, VERSION = "kopf.dev", "v1"
CRDS_FILE = "crds/kopf-peerings.yaml"


@dataclass(frozen=True)
class PeeringKind:
    kind: str
    plural: str

    @property
    def crd(self) -> str:
        return f"{self.plural}.{GROUP}"


CLUSTER = PeeringKind("ClusterKopfPeering", "clusterkopfpeerings")
NAMESPACED = PeeringKind("KopfPeering", "kopfpeerings")


def peering_kind(namespaces: Sequence[str]) -> PeeringKind:
    """kopf peers a cluster-wide operator in a ClusterKopfPeering, a namespaced one in a
    KopfPeering of each namespace it watches."""
    return NAMESPACED if namespaces else CLUSTER


@dataclass(frozen=True)
class PeeringFound:
    """What the cluster holds: whether the CRD is served, and where the object is missing
    (namespaces; "" for the cluster-wide object)."""

    crd_served: bool
    missing_in: tuple[str, ...] = ()


@dataclass(frozen=True)
class PeeringPlan:
    name: str | None  # the peering name; None: standalone
    warning: str | None = None  # to log once at start
    error: str | None = None  # to exit with (status 2), nothing started


def plan_peering(
    standalone: bool,
    explicit_name: str | None,
    namespaces: Sequence[str],
    found: PeeringFound | None,
) -> PeeringPlan:
    """How to run kopf, from the flags and what the cluster holds (`found`: None when
    standalone, since nothing is looked at then)."""
    if standalone:
        return PeeringPlan(None)
    assert found is not None, "look at the cluster unless standalone"
    kind = peering_kind(namespaces)
    name = explicit_name or DEFAULT_NAME
    missing = _missing_object(kind, name, found.missing_in)
    if explicit_name:
        if not found.crd_served:
            return PeeringPlan(
                None,
                error=f"bullflow-operator: --peering {name} needs the CRD {kind.crd}, which the "
                f"cluster does not serve; install it (kubectl apply -f {CRDS_FILE}) or pass "
                "--standalone",
            )
        warning = f"{missing}: the operator stays paused until it exists" if missing else None
        return PeeringPlan(name, warning=warning)
    if not found.crd_served:
        why = f"the CRD {kind.crd} is not installed"
        how = f"kubectl apply -f {CRDS_FILE}, create a {kind.kind} named {name}"
    elif missing:
        why, how = missing, f"create it (apiVersion: {GROUP}/{VERSION}, kind: {kind.kind})"
    else:
        return PeeringPlan(name)
    return PeeringPlan(
        None,
        warning=f"HA peering is off: {why}, so this operator runs standalone (run only one). "
        f"To enable it: {how}, and restart the operator; --standalone silences this warning.",
    )


def _missing_object(kind: PeeringKind, name: str, missing_in: tuple[str, ...]) -> str | None:
    if not missing_in:
        return None
    if kind is CLUSTER:
        return f"there is no {kind.kind} named {name}"
    return f"there is no {kind.kind} named {name} in namespace(s) {', '.join(missing_in)}"


async def look_for_peering(namespaces: Sequence[str], name: str) -> PeeringFound:
    """Ask the API server: is the peering CRD served (API discovery, which every user may
    read), and which peering objects are missing (a 403 counts as missing: kopf could not use
    an object it cannot read either)."""
    kind = peering_kind(namespaces)
    kube = await KubeApi.connect()
    try:
        try:
            served = await kube.custom.get_api_resources(GROUP, VERSION)
        except ApiException as err:
            if err.status != 404:
                raise
            return PeeringFound(crd_served=False)
        if kind.plural not in {r.name for r in served.resources or []}:
            return PeeringFound(crd_served=False)
        missing = [
            namespace
            for namespace in (namespaces or [""])
            if not await _object_exists(kube.custom, kind, namespace, name)
        ]
        return PeeringFound(crd_served=True, missing_in=tuple(missing))
    finally:
        await kube.close()


async def _object_exists(
    api: client.CustomObjectsApi, kind: PeeringKind, namespace: str, name: str
) -> bool:
    try:
        if namespace:
            await api.get_namespaced_custom_object(GROUP, VERSION, namespace, kind.plural, name)
        else:
            await api.get_cluster_custom_object(GROUP, VERSION, kind.plural, name)
    except ApiException as err:
        if err.status in (403, 404):
            return False
        raise
    return True
