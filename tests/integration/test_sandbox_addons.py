"""The sandbox add-ons against a running sandbox (``kube_sandbox``, started with the default add-ons).

Each test works in its own namespace and deletes it at the end. Waits are bounded polls. The first tests need no
cluster: they pin the manifest transformations and the metrics adapter's value handling.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aiconf.errors import SandboxError
from aiconf.sandbox.addons import ALL, DEFAULT, custom_metrics, gatewayapi, karpenter, kuberay, kueue
from aiconf.sandbox.addons._common import create_custom_object
from aiconf.sandbox.addons.metrics_adapter_server import format_quantity, parse_value

# --- no cluster needed -------------------------------------------------------------------------------------------


def test_registry_order_and_defaults():
    names = list(ALL)
    assert names.index("kuberay") < names.index("kueue"), (
        "Kueue enables its Ray integration only if KubeRay is up first"
    )
    assert {"gateway-api", "kuberay", "kueue", "custom-metrics", "karpenter"} <= set(DEFAULT)
    for addon in ALL.values():
        assert addon.summary and callable(addon.start)


@pytest.mark.parametrize(
    ("text", "value", "quantity"),
    [("42", 42.0, "42"), ("0.5", 0.5, "500m"), ("500m", 0.5, "500m"), ("2k", 2000.0, "2000"), ("1.25", 1.25, "1250m")],
)
def test_adapter_values(text, value, quantity):
    assert parse_value(text) == pytest.approx(value)
    assert format_quantity(parse_value(text)) == quantity


def test_adapter_rejects_non_numbers():
    with pytest.raises(ValueError):
        parse_value("fast")


class _FakeHandle:
    ca_cert = __file__  # any readable file stands for the CA in caBundle


def test_kueue_webhooks_are_rewired_and_scoped():
    docs = kueue.webhook_configurations(_FakeHandle(), 12345)
    assert [d["metadata"]["name"] for d in docs] == [
        "kueue-mutating-webhook-configuration",
        "kueue-validating-webhook-configuration",
    ]
    hooks = {w["name"]: w for d in docs for w in d["webhooks"]}
    for w in hooks.values():
        assert w["clientConfig"]["url"].startswith("https://127.0.0.1:12345/")
        assert "service" not in w["clientConfig"]
        assert base64.b64decode(w["clientConfig"]["caBundle"])
    excluded = hooks["mjob.kb.io"]["namespaceSelector"]["matchExpressions"][0]
    assert excluded["operator"] == "NotIn" and set(excluded["values"]) == {"kube-system", "kueue-system"}
    assert "namespaceSelector" not in hooks["vclusterqueue.kb.io"]
    assert hooks["mpod.kb.io"]["objectSelector"]["matchExpressions"][0]["key"] == "kueue.x-k8s.io/queue-name"
    assert "objectSelector" not in hooks["mjob.kb.io"]


def test_kueue_crds_keep_only_the_stored_version():
    crds = kueue.crds()
    assert len(crds) >= 10
    for crd in crds:
        assert [v["name"] for v in crd["spec"]["versions"]] == ["v1beta2"]
        assert "conversion" not in crd["spec"]


def test_kuberay_registers_only_the_raycluster_validator():
    doc = kuberay.webhook_configuration(_FakeHandle(), 23456)
    assert [w["name"] for w in doc["webhooks"]] == ["vraycluster.kb.io"]
    assert doc["webhooks"][0]["clientConfig"]["url"] == "https://127.0.0.1:23456/validate-ray-io-v1-raycluster"


class _FakePodMetrics:
    def metric_names(self):
        return ["requests_per_second"]

    def values(self, namespace, name, metric, label_selector):
        if name not in ("*", "web-1"):
            return None
        item = {
            "describedObject": {"kind": "Pod", "namespace": namespace, "name": "web-1", "apiVersion": "/v1"},
            "metric": {"name": metric},
            "timestamp": "2026-01-01T00:00:00Z",
            "windowSeconds": 60,
            "value": f"7:{label_selector}",
        }
        return [item]


@pytest.fixture
def adapter(tmp_path):
    """The adapter's HTTPS server on a free loopback port with fake pod metrics; yields (base URL, CA, client cert)."""
    import socket
    import ssl
    import threading

    from aiconf.sandbox import pki
    from aiconf.sandbox.addons.metrics_adapter_server import AdapterServer

    ca, ca_key = pki.create_ca(tmp_path, "ca", "test-ca")
    cert, key = pki.issue_cert(
        tmp_path, "serving", ca_cert=ca, ca_key=ca_key, dns_names=["localhost"], ip_addresses=["127.0.0.1"]
    )
    client = pki.issue_cert(tmp_path, "front-proxy-client", ca_cert=ca, ca_key=ca_key, client=True)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    tls.load_verify_locations(cafile=str(ca))
    tls.verify_mode = ssl.CERT_OPTIONAL
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = AdapterServer(port, _FakePodMetrics(), tls, Path(ca).read_text(), ["front-proxy-client"])
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{port}", ca, client
    finally:
        server.shutdown()
        server.server_close()


def _https_get(url: str, ca, client=None) -> tuple[int, dict | str]:
    import ssl
    import urllib.error
    import urllib.request

    ctx = ssl.create_default_context(cafile=str(ca))
    if client:
        ctx.load_cert_chain(*map(str, client))
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=5) as r:
            body = r.read().decode()
            return r.status, json.loads(body) if r.headers.get_content_type() == "application/json" else body
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read().decode())


def test_adapter_serves_discovery_and_pod_metrics(adapter):
    base, ca, client = adapter
    assert _https_get(f"{base}/readyz", ca) == (200, "ok")
    code, doc = _https_get(f"{base}/apis/custom.metrics.k8s.io/v1beta2", ca, client)
    assert code == 200 and [r["name"] for r in doc["resources"]] == ["pods/requests_per_second"]
    code, doc = _https_get(
        f"{base}/apis/custom.metrics.k8s.io/v1beta2/namespaces/ns/pods/*/requests_per_second?labelSelector=app%3Dweb",
        ca,
        client,
    )
    assert code == 200 and doc["kind"] == "MetricValueList"
    assert doc["items"][0]["value"] == "7:app=web" and doc["items"][0]["describedObject"]["name"] == "web-1"
    code, doc = _https_get(
        f"{base}/apis/custom.metrics.k8s.io/v1beta2/namespaces/ns/pods/other/requests_per_second", ca, client
    )
    assert code == 404 and doc["kind"] == "Status"
    code, _ = _https_get(
        f"{base}/apis/custom.metrics.k8s.io/v1beta2/namespaces/ns/services/x/requests_per_second", ca, client
    )
    assert code == 404


def test_adapter_requires_the_request_header_client_cert(adapter):
    base, ca, _ = adapter
    code, doc = _https_get(f"{base}/apis/custom.metrics.k8s.io/v1beta2", ca)
    assert code == 401 and doc["reason"] == "Unauthorized"


# --- against the sandbox -----------------------------------------------------------------------------------------

sandbox = pytest.mark.sandbox


def _poll(what: str, probe: Callable[[], Any], timeout_s: float, interval_s: float = 1.0) -> Any:
    """Call ``probe`` until it returns a truthy value (returned); bounded; fails the test with the last value."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except SandboxError as e:
            last = str(e)
        else:
            if last:
                return last
        time.sleep(interval_s)
    pytest.fail(f"timed out after {timeout_s:g}s waiting for {what}; last: {str(last)[:600]}")


def _get(sb, *args: str) -> dict:
    return json.loads(sb.kubectl("get", *args, "-o", "json"))


class _Kube:
    """kubectl/apply against a kubeconfig, for an external cluster (``kube_sandbox.sandbox`` is None there)."""

    def __init__(self, kubeconfig):
        self.kubeconfig = kubeconfig

    def kubectl(self, *args: str, input: str | None = None) -> str:
        import subprocess

        from aiconf.sandbox.cluster import find_kubectl

        proc = subprocess.run(
            [find_kubectl(), f"--kubeconfig={self.kubeconfig}", *args],
            check=False,
            input=input,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if proc.returncode != 0:
            raise SandboxError(f"kubectl {' '.join(args)} failed (exit {proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout

    def apply(self, docs: list[dict]) -> None:
        self.kubectl(
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=aiconf-test",
            "-f",
            "-",
            input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}),
        )


@pytest.fixture
def sb(kube_sandbox):
    return kube_sandbox.sandbox or _Kube(kube_sandbox.kubeconfig)


#: How to tell that an add-on runs in the cluster under test: a kind/name that only it installs.
_ADDON_MARKERS = {
    "gateway-api": ("crd", "gateways.gateway.networking.k8s.io"),
    "kueue": ("clusterqueue", kueue.CLUSTER_QUEUE),
    "kuberay": ("validatingwebhookconfiguration", kuberay.WEBHOOK_CONFIGURATION),
    "custom-metrics": ("apiservice", custom_metrics.APISERVICE),
    "karpenter": ("nodepool", karpenter.NODE_POOL),
}


def _require(sb, addon: str) -> None:
    kind, name = _ADDON_MARKERS[addon]
    try:
        sb.kubectl("get", kind, name, "-o", "name")
    except SandboxError:
        pytest.skip(
            f"add-on {addon} is not running in this cluster (start it: AICONF_TEST_SANDBOX_ADDONS={','.join(DEFAULT)})"
        )


@pytest.fixture
def namespace(sb) -> Iterator[str]:
    name = f"addons-{uuid.uuid4().hex[:8]}"
    sb.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        sb.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")


def _conditions(obj: dict) -> dict[str, dict]:
    return {c["type"]: c for c in obj.get("status", {}).get("conditions", [])}


KWOK_ONLY = {"type": "kwok"}  # fake pods must never land on a real node (no images can be pulled)


@sandbox
def test_gateway_api_crds_established(sb):
    _require(sb, "gateway-api")
    for name in gatewayapi.CORE_CRDS:
        crd = _get(sb, "crd", name)
        assert _conditions(crd)["Established"]["status"] == "True", name
        assert any(v["name"] == "v1" and v["served"] for v in crd["spec"]["versions"]), name


def _job(name: str, queue: str, *, parallelism: int, gpus: int, hold_s: int = 20) -> dict:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {"kueue.x-k8s.io/queue-name": queue}},
        "spec": {
            "parallelism": parallelism,
            "completions": parallelism,
            "suspend": True,
            "template": {
                # kwok completes Job pods after this delay (see the sandbox's kwok stages)
                "metadata": {"annotations": {"pod-complete.stage.kwok.x-k8s.io/delay": f"{hold_s}s"}},
                "spec": {
                    "restartPolicy": "Never",
                    "nodeSelector": KWOK_ONLY,
                    "containers": [
                        {
                            "name": "train",
                            "image": "registry.invalid/train:1",
                            "resources": {
                                "requests": {"cpu": "100m", "memory": "128Mi"},
                                "limits": {"nvidia.com/gpu": str(gpus)},
                            },
                        }
                    ],
                },
            },
        },
    }


def _workload_for(sb, namespace: str, job: str) -> dict | None:
    for wl in _get(sb, "workloads.kueue.x-k8s.io", "-n", namespace).get("items", []):
        if any(o.get("name") == job for o in wl["metadata"].get("ownerReferences", [])):
            return wl
    return None


@sandbox
def test_kueue_admits_a_job_and_holds_back_an_oversized_gang(sb, namespace):
    _require(sb, "kueue")
    cq = _get(sb, "clusterqueue", kueue.CLUSTER_QUEUE)
    assert _conditions(cq)["Active"]["status"] == "True"
    gpu_quota = next(
        int(r["nominalQuota"])
        for r in cq["spec"]["resourceGroups"][0]["flavors"][0]["resources"]
        if r["name"] == "nvidia.com/gpu"
    )
    assert gpu_quota > 0, "the ClusterQueue should cover the fake GPU nodes"
    sb.apply(
        [
            {
                "apiVersion": "kueue.x-k8s.io/v1beta2",
                "kind": "LocalQueue",
                "metadata": {"name": "lq", "namespace": namespace},
                "spec": {"clusterQueue": kueue.CLUSTER_QUEUE},
            }
        ]
    )
    fits = _job("fits", "lq", parallelism=2, gpus=1)
    too_big = _job("too-big", "lq", parallelism=gpu_quota + 1, gpus=1)
    sb.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [fits, too_big]}),
    )

    def admitted():
        wl = _workload_for(sb, namespace, "fits")
        if wl and _conditions(wl).get("Admitted", {}).get("status") == "True":
            return wl
        return None

    wl = _poll("the fitting Job's Workload to be admitted", admitted, 60)
    assert wl["status"]["admission"]["clusterQueue"] == kueue.CLUSTER_QUEUE
    _poll(
        "the admitted Job to be unsuspended",
        lambda: _get(sb, "job", "fits", "-n", namespace)["spec"].get("suspend") is False,
        30,
    )

    def pods_ready():
        w = _workload_for(sb, namespace, "fits")
        return w and _conditions(w).get("PodsReady", {}).get("status") == "True"

    _poll("waitForPodsReady to mark the admitted gang PodsReady", pods_ready, 60)

    big = _poll("the oversized Job's Workload", lambda: _workload_for(sb, namespace, "too-big"), 30)
    assert _conditions(big).get("Admitted", {}).get("status") != "True"
    assert _get(sb, "job", "too-big", "-n", namespace)["spec"]["suspend"] is True
    pods = _get(sb, "pods", "-n", namespace, "-l", "job-name=too-big")["items"]
    assert pods == [], "no pod of a gang that does not fit may start"


@sandbox
def test_kuberay_webhook_rejects_invalid_and_valid_cluster_gets_ready(sb, namespace):
    _require(sb, "kuberay")
    bad = kuberay.raycluster("dup", namespace, worker_groups=("g", "g"), node_selector=KWOK_ONLY)
    # Through the API, not kubectl: kubectl drops the "admission webhook ... denied" part of a 422 message.
    code, message = create_custom_object(sb, "ray.io", "v1", "rayclusters", bad, namespace=namespace)
    assert code == 422, message
    assert 'admission webhook "vraycluster.kb.io" denied' in message
    assert kuberay.DUPLICATE_GROUP_MESSAGE in message

    good = kuberay.raycluster("ok", namespace, worker_groups=("cpu",), replicas=2, node_selector=KWOK_ONLY)
    sb.kubectl("create", "-f", "-", input=json.dumps(good))

    def ready():
        rc = _get(sb, "raycluster", "ok", "-n", namespace)
        return rc if rc.get("status", {}).get("state") == "ready" else None

    rc = _poll("RayCluster ok to reach state ready", ready, 120, interval_s=2)
    assert rc["status"]["readyWorkerReplicas"] == 2
    assert len(_get(sb, "pods", "-n", namespace, "-l", "ray.io/cluster=ok")["items"]) == 3


METRIC = "requests_per_second"


def _metric_values(sb, namespace: str, selector: str) -> dict[str, float]:
    raw = sb.kubectl(
        "get",
        "--raw",
        f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{namespace}/pods/*/{METRIC}?labelSelector={selector}",
    )
    doc = json.loads(raw)
    assert doc["kind"] == "MetricValueList"
    return {i["describedObject"]["name"]: parse_value(i["value"]) for i in doc["items"]}


def _annotate_pods(sb, namespace: str, selector: str, value: str) -> None:
    sb.kubectl(
        "annotate",
        "pods",
        "-n",
        namespace,
        "-l",
        selector,
        "--overwrite",
        f"{custom_metrics.ANNOTATION_PREFIX}{METRIC}={value}",
    )


@sandbox
def test_custom_metrics_api_serves_annotations_and_drives_an_hpa(sb, namespace):
    _require(sb, "custom-metrics")
    svc = _get(sb, "apiservice", custom_metrics.APISERVICE)
    assert _conditions(svc)["Available"]["status"] == "True"
    assert (
        json.loads(sb.kubectl("get", "--raw", "/apis/custom.metrics.k8s.io/v1beta2"))["groupVersion"]
        == "custom.metrics.k8s.io/v1beta2"
    )

    deploy = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {
                    "labels": {"app": "web"},
                    "annotations": {f"{custom_metrics.ANNOTATION_PREFIX}{METRIC}": "1"},
                },
                "spec": {
                    "nodeSelector": KWOK_ONLY,
                    "containers": [
                        {"name": "web", "image": "registry.invalid/web:1", "resources": {"requests": {"cpu": "50m"}}}
                    ],
                },
            },
        },
    }
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 1,
            "maxReplicas": 4,
            "metrics": [
                {
                    "type": "Pods",
                    "pods": {"metric": {"name": METRIC}, "target": {"type": "AverageValue", "averageValue": "5"}},
                }
            ],
            "behavior": {
                "scaleUp": {"stabilizationWindowSeconds": 0},
                "scaleDown": {
                    "stabilizationWindowSeconds": 0,
                    "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
                },
            },
        },
    }
    sb.apply([deploy])
    _poll("one web pod with its metric", lambda: len(_metric_values(sb, namespace, "app=web")) == 1, 60)
    assert list(_metric_values(sb, namespace, "app=web").values()) == [1.0]

    sb.apply([hpa])
    _poll(
        "the HPA to read the metric",
        lambda: _get(sb, "hpa", "web", "-n", namespace).get("status", {}).get("currentMetrics"),
        90,
        interval_s=2,
    )

    _annotate_pods(sb, namespace, "app=web", "20")
    _poll(
        "the HPA to scale web up to 4",
        lambda: _get(sb, "deployment", "web", "-n", namespace)["spec"]["replicas"] == 4,
        120,
        interval_s=2,
    )

    _poll("4 web pods", lambda: len(_metric_values(sb, namespace, "app=web")) == 4, 60)
    _annotate_pods(sb, namespace, "app=web", "1")
    _poll(
        "the HPA to scale web back down to 1",
        lambda: _get(sb, "deployment", "web", "-n", namespace)["spec"]["replicas"] == 1,
        150,
        interval_s=2,
    )


@sandbox
def test_kueue_admits_a_raycluster_through_its_ray_integration(sb, namespace):
    _require(sb, "kueue")
    _require(sb, "kuberay")
    sb.apply(
        [
            {
                "apiVersion": "kueue.x-k8s.io/v1beta2",
                "kind": "LocalQueue",
                "metadata": {"name": "lq", "namespace": namespace},
                "spec": {"clusterQueue": kueue.CLUSTER_QUEUE},
            }
        ]
    )
    rc = kuberay.raycluster("queued", namespace, worker_groups=("gpu",), replicas=2, node_selector=KWOK_ONLY)
    rc["metadata"]["labels"] = {"kueue.x-k8s.io/queue-name": "lq"}
    for tpl in [rc["spec"]["headGroupSpec"]["template"], *(w["template"] for w in rc["spec"]["workerGroupSpecs"])]:
        tpl["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = "1"
    sb.kubectl("create", "-f", "-", input=json.dumps(rc))

    def admitted():
        for wl in _get(sb, "workloads.kueue.x-k8s.io", "-n", namespace).get("items", []):
            if _conditions(wl).get("Admitted", {}).get("status") == "True":
                return wl
        return None

    wl = _poll("the RayCluster's Workload to be admitted", admitted, 60)
    assert sum(ps["count"] for ps in wl["spec"]["podSets"]) == 3, "head + 2 workers form one gang"
    _poll(
        "the admitted RayCluster to reach state ready",
        lambda: _get(sb, "raycluster", "queued", "-n", namespace).get("status", {}).get("state") == "ready",
        120,
        interval_s=2,
    )


@sandbox
def test_karpenter_adds_a_gpu_node_for_a_pending_pod_and_removes_it(sb, namespace):
    _require(sb, "karpenter")
    pool_label = f"karpenter.sh/nodepool={karpenter.NODE_POOL}"
    before = {n["metadata"]["name"] for n in _get(sb, "nodes", "-l", pool_label)["items"]}
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "needs-gpus", "namespace": namespace},
        "spec": {
            # only an autoscaled node matches, so the pod is pending until Karpenter adds one
            "nodeSelector": {"karpenter.sh/nodepool": karpenter.NODE_POOL},
            "containers": [
                {"name": "c", "image": "registry.invalid/cuda:1", "resources": {"limits": {"nvidia.com/gpu": "4"}}}
            ],
        },
    }
    sb.apply([pod])

    def running_on_new_node():
        p = _get(sb, "pod", "needs-gpus", "-n", namespace)
        node = p["spec"].get("nodeName")
        return node if node and node not in before and p["status"].get("phase") == "Running" else None

    node = _poll("Karpenter to add a GPU node and the pod to run on it", running_on_new_node, 120, interval_s=2)
    labels = _get(sb, "node", node)["metadata"]["labels"]
    assert labels.get("nvidia.com/gpu.present") == "true"
    assert labels.get("node.kubernetes.io/instance-type") == karpenter.INSTANCE_TYPE

    sb.kubectl("delete", "pod", "needs-gpus", "-n", namespace, "--wait=false")

    def node_gone():
        return node not in {n["metadata"]["name"] for n in _get(sb, "nodes", "-l", pool_label)["items"]}

    _poll("Karpenter to remove the empty node", node_gone, 180, interval_s=3)
