"""The local control plane is a real Kubernetes: version, CRDs with CEL and status subresource,
RBAC, Deployments whose pods become Ready (kwok), and real processes following those pods."""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.harness.cluster import LocalCluster
from tests.harness.fixtures import Kubectl
from tests.harness.pods import PodProcessSupervisor
from tests.harness.tools import Tools


def eventually(fn: Callable[[], Any], timeout: float = 60, interval: float = 0.2) -> Any:
    """Retries fn until it returns a truthy value without raising; re-raises the last error."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = fn()
            if value:
                return value
            last: BaseException = AssertionError(f"condition still false: {value!r}")
        except (AssertionError, ApiException) as exc:
            last = exc
        if time.monotonic() > deadline:
            raise last
        time.sleep(interval)


def test_version_is_the_built_one(
    kube_client: Any, local_cluster: LocalCluster, harness_tools: Tools, kubectl: Kubectl
) -> None:
    info = client.VersionApi(kube_client).get_code()
    assert info.git_version == harness_tools.k8s_version == local_cluster.version
    assert info.git_version == os.environ.get("K8S_VERSION", "v1.34.4")
    assert info.major == "1"
    out = json.loads(kubectl("version", "-o", "json").stdout)
    assert out["clientVersion"]["gitVersion"] == harness_tools.k8s_version
    assert out["serverVersion"]["gitVersion"] == harness_tools.k8s_version


def test_nodes_are_fake_and_ready(kube_client: Any) -> None:
    nodes = client.CoreV1Api(kube_client).list_node().items
    assert len(nodes) == 2
    for node in nodes:
        assert node.metadata.annotations["kwok.x-k8s.io/node"] == "fake"
        assert node.status.allocatable["cpu"] == "32"
        assert node.status.allocatable["memory"] == "256Gi"
        ready = [c for c in node.status.conditions if c.type == "Ready"]
        assert ready and ready[0].status == "True"


CEL_MESSAGE = "minReplicas must not exceed maxReplicas"


@pytest.fixture
def widget_crd(kube_client: Any) -> Any:
    group = f"t{uuid.uuid4().hex[:6]}.bullflow.test"
    ext = client.ApiextensionsV1Api(kube_client)
    body = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "required": ["minReplicas", "maxReplicas"],
                                    "properties": {
                                        "minReplicas": {"type": "integer", "minimum": 0},
                                        "maxReplicas": {"type": "integer", "minimum": 0},
                                    },
                                    "x-kubernetes-validations": [
                                        {
                                            "rule": "self.minReplicas <= self.maxReplicas",
                                            "message": CEL_MESSAGE,
                                        }
                                    ],
                                },
                                "status": {
                                    "type": "object",
                                    "properties": {"phase": {"type": "string"}},
                                },
                            },
                        }
                    },
                }
            ],
        },
    }
    ext.create_custom_resource_definition(body)

    def established() -> bool:
        crd = ext.read_custom_resource_definition(f"widgets.{group}")
        conds = crd.status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conds)

    eventually(established, timeout=30)
    yield group
    ext.delete_custom_resource_definition(f"widgets.{group}")


def test_crd_with_cel_validation_and_status_subresource(
    kube_client: Any, namespace: str, widget_crd: str
) -> None:
    co = client.CustomObjectsApi(kube_client)
    group = widget_crd

    def widget(name: str, lo: int, hi: int) -> dict[str, Any]:
        return {
            "apiVersion": f"{group}/v1",
            "kind": "Widget",
            "metadata": {"name": name},
            "spec": {"minReplicas": lo, "maxReplicas": hi},
        }

    # The CEL rule rejects an invalid object, with the rule's message.
    def create_invalid() -> bool:
        with pytest.raises(ApiException) as err:
            co.create_namespaced_custom_object(
                group, "v1", namespace, "widgets", widget("bad", 5, 1)
            )
        if err.value.status == 404:  # discovery not yet caught up with the new CRD
            raise AssertionError("CRD not served yet")
        assert err.value.status == 422, err.value.body
        assert CEL_MESSAGE in err.value.body
        return True

    eventually(create_invalid, timeout=30)
    # The structural schema rejects a wrong type.
    with pytest.raises(ApiException) as err:
        co.create_namespaced_custom_object(
            group,
            "v1",
            namespace,
            "widgets",
            widget("bad-type", "one", 2),  # type: ignore[arg-type]
        )
    assert err.value.status == 422

    created = co.create_namespaced_custom_object(
        group, "v1", namespace, "widgets", {**widget("good", 1, 3), "status": {"phase": "Nope"}}
    )
    # With a status subresource, status in a create is dropped...
    assert "status" not in created or not created["status"].get("phase")
    # ... and only the status endpoint writes it.
    co.patch_namespaced_custom_object_status(
        group, "v1", namespace, "widgets", "good", {"status": {"phase": "Ready"}}
    )
    co.patch_namespaced_custom_object(
        group, "v1", namespace, "widgets", "good",
        {"spec": {"maxReplicas": 4}, "status": {"phase": "Ignored"}},
    )  # fmt: skip
    got = co.get_namespaced_custom_object(group, "v1", namespace, "widgets", "good")
    assert got["status"]["phase"] == "Ready"
    assert got["spec"] == {"minReplicas": 1, "maxReplicas": 4}
    assert got["metadata"]["generation"] == 2


def test_rbac_denies_serviceaccount_without_permissions(
    kube_client: Any, local_cluster: LocalCluster, namespace: str
) -> None:
    core = client.CoreV1Api(kube_client)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "nobody"}})
    token = core.create_namespaced_service_account_token(
        "nobody", namespace, {"spec": {"expirationSeconds": 600}}
    ).status.token
    assert token

    cfg = client.Configuration()
    cfg.host = local_cluster.server
    assert local_cluster.pki is not None
    cfg.ssl_ca_cert = str(local_cluster.pki.ca_cert)
    cfg.api_key = {"authorization": f"Bearer {token}"}
    sa_api = client.ApiClient(cfg)
    try:
        sa_core = client.CoreV1Api(sa_api)
        with pytest.raises(ApiException) as err:
            sa_core.list_namespaced_pod(namespace)
        # 403 (authenticated, not authorized), naming the ServiceAccount: not a 401.
        assert err.value.status == 403, err.value.body
        assert f"system:serviceaccount:{namespace}:nobody" in err.value.body

        # Granting a Role makes the same request succeed: the denial was RBAC's.
        rbac = client.RbacAuthorizationV1Api(kube_client)
        rbac.create_namespaced_role(
            namespace,
            {
                "metadata": {"name": "pod-reader"},
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}],
            },
        )
        rbac.create_namespaced_role_binding(
            namespace,
            {
                "metadata": {"name": "nobody-reads-pods"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": "pod-reader",
                },
                "subjects": [{"kind": "ServiceAccount", "name": "nobody", "namespace": namespace}],
            },
        )
        eventually(lambda: sa_core.list_namespaced_pod(namespace) is not None, timeout=15)
        # Still denied for what the Role does not grant.
        with pytest.raises(ApiException) as err:
            sa_core.list_namespaced_secret(namespace)
        assert err.value.status == 403
    finally:
        sa_api.close()


SLEEPER = (
    "import os, signal, sys, time\n"
    "signal.signal(signal.SIGTERM, lambda *a: sys.exit(int(os.environ.get('EXIT_CODE', '0'))))\n"
    "open(os.path.join(os.environ['OUT_DIR'], os.environ['POD_NAME']), 'w').write(\n"
    "    os.environ['GREETING'] + ' ' + os.environ['EXTRA'])\n"
    "while True:\n"
    "    time.sleep(0.1)\n"
)


def deployment(name: str, replicas: int, command: list[str], env: dict[str, str]) -> dict:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "containers": [
                        {
                            "name": "main",
                            "image": "bullflow/test:never-pulled",
                            "command": command,
                            "env": [{"name": k, "value": v} for k, v in env.items()]
                            + [
                                {
                                    "name": "POD_NAME",
                                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                                }
                            ],
                        }
                    ],
                },
            },
        },
    }


def ready_pods(core: client.CoreV1Api, namespace: str, selector: str) -> list[Any]:
    pods = core.list_namespaced_pod(namespace, label_selector=selector).items
    return [
        p
        for p in pods
        if p.status.phase == "Running"
        and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
    ]


def scale(kube_client: Any, namespace: str, name: str, replicas: int) -> None:
    client.AppsV1Api(kube_client).patch_namespaced_deployment_scale(
        name, namespace, {"spec": {"replicas": replicas}}
    )


def test_deployment_pods_become_ready_and_go_away(kube_client: Any, namespace: str) -> None:
    core = client.CoreV1Api(kube_client)
    apps = client.AppsV1Api(kube_client)
    apps.create_namespaced_deployment(
        namespace, deployment("web", 3, ["sleep", "infinity"], {"GREETING": "hi"})
    )
    pods = eventually(lambda: len(ready_pods(core, namespace, "app=web")) == 3 and
                      ready_pods(core, namespace, "app=web"))  # fmt: skip
    assert {p.spec.node_name for p in pods} <= {"kwok-node-0", "kwok-node-1"}
    assert all(p.status.pod_ip for p in pods)
    eventually(lambda: apps.read_namespaced_deployment("web", namespace).status.ready_replicas == 3)

    scale(kube_client, namespace, "web", 0)
    eventually(lambda: core.list_namespaced_pod(namespace, label_selector="app=web").items == [])
    dep = eventually(lambda: (d := apps.read_namespaced_deployment("web", namespace))
                     and not d.status.replicas and d)  # fmt: skip
    assert not dep.status.ready_replicas


def test_pod_process_supervisor_follows_deployment(
    kube_client: Any, local_cluster: LocalCluster, namespace: str, tmp_path: Path
) -> None:
    core = client.CoreV1Api(kube_client)
    apps = client.AppsV1Api(kube_client)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    apps.create_namespaced_deployment(
        namespace,
        deployment("workers", 0, [sys.executable, "-c", SLEEPER], {"GREETING": "hello"}),
    )
    supervisor = PodProcessSupervisor(
        local_cluster.kubeconfig,
        namespace,
        "app=workers",
        extra_env={"OUT_DIR": str(out_dir), "EXTRA": "from-test"},
        log_dir=tmp_path / "logs",
    )
    with supervisor:
        scale(kube_client, namespace, "workers", 2)
        running = supervisor.wait_for_running(2, timeout=60)
        pod_names = {p.metadata.name for p in ready_pods(core, namespace, "app=workers")}
        assert set(running) == pod_names
        for proc in running.values():
            os.kill(proc.pid, 0)  # a real live process
        # Each process got the container env (literal + fieldRef) and the test's extra env.
        eventually(lambda: sorted(p.name for p in out_dir.iterdir()) == sorted(pod_names), 15)
        for name in pod_names:
            assert (out_dir / name).read_text() == "hello from-test"

        scale(kube_client, namespace, "workers", 0)
        supervisor.wait_for_running(0, timeout=60)
        codes = supervisor.exit_codes()
        # SIGTERM was delivered and handled gracefully (exit 0, not -9 from SIGKILL).
        assert codes == {name: [0] for name in pod_names}, [p.log_text() for p in
                                                            supervisor.finished()]  # fmt: skip
        assert not supervisor.errors
    assert supervisor.alive() == []
