"""The sandbox's monitoring system (Prometheus 3.16 with Kubernetes SD, :mod:`aiconf.sandbox.addons.prometheus`):
it answers the HTTP query API, discovers an annotated workload on the real node and reads its counter exactly,
picks up PodMonitors and ServiceMonitors, is found and queried through the API server's service proxy like a
platform's Prometheus, and never targets anything but real-node pods (and itself).

The first tests need no cluster (configuration rendering). The ``sandbox`` tests use the session sandbox and skip
when it has no real node or the ``prometheus`` add-on did not start.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import re
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from kubernetes import client

from aiconf.sandbox import cluster, images, realnode
from aiconf.sandbox.addons import prometheus as prom

SCOPE = prom.RealNodeScope(node="sandbox-real-0", pod_cidr="10.244.3.0/24")


# --- configuration (no cluster) ------------------------------------------------------------------------------------


def test_ip_regex_matches_exactly_the_pod_cidr():
    rx = re.compile(f"^(?:{SCOPE.ip_regex()})$")
    for ok in ("10.244.3.0", "10.244.3.7", "10.244.3.255"):
        assert rx.match(ok), ok
    for bad in ("10.244.30.7", "10.244.3.256", "10.99.0.5", "110.244.3.7", "10.244.3.7.1", "127.0.0.1", "10x244.3.7"):
        assert not rx.match(bad), bad


def _kubernetes_jobs(config: dict) -> list[dict]:
    return [j for j in config["scrape_configs"] if "kubernetes_sd_configs" in j]


def test_every_kubernetes_job_sees_only_real_node_pods_and_ends_with_the_address_guard():
    sm = {
        "metadata": {"name": "web", "namespace": "demo"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "Exists"}]},
            "endpoints": [{"port": "metrics", "interval": "10s", "bearerTokenSecret": {"name": "x", "key": "y"}}],
        },
    }
    pm = {
        "metadata": {"name": "workers", "namespace": "demo"},
        "spec": {
            "namespaceSelector": {"any": True},
            "selector": {"matchLabels": {"app.kubernetes.io/name": "w"}},
            "podMetricsEndpoints": [
                {
                    "port": "http",
                    "path": "/stats",
                    "relabelings": [{"targetLabel": "__address__", "replacement": "10.99.0.5:80"}],
                }
            ],
        },
    }
    base = prom.base_config("10.200.3.2:9090", SCOPE)
    config, report = prom.render(base, [sm], [pm], SCOPE)
    jobs = {j["job_name"]: j for j in _kubernetes_jobs(config)}
    assert set(jobs) == {
        "kubernetes-pods",
        "kubernetes-service-endpoints",
        "serviceMonitor/demo/web/0",
        "podMonitor/demo/workers/0",
    }
    guard = {"source_labels": ["__address__"], "regex": SCOPE.ip_regex() + r":[0-9]+", "action": "keep"}
    for name, job in jobs.items():
        (sd,) = job["kubernetes_sd_configs"]
        assert sd["selectors"] == [{"role": "pod", "field": "spec.nodeName=sandbox-real-0"}], name
        assert "kubeconfig_file" not in sd  # in-cluster credentials (the pod's service account)
        assert job["relabel_configs"][-1] == guard or guard in job["relabel_configs"], name
        node_keep = {
            "source_labels": ["__meta_kubernetes_pod_node_name"],
            "regex": "sandbox\\-real\\-0",
            "action": "keep",
        }
        assert node_keep in job["relabel_configs"], name
    # a monitor's own relabelings run before a last address guard: they cannot move a scrape off the pod CIDR
    assert jobs["podMonitor/demo/workers/0"]["relabel_configs"][-1] == guard
    assert jobs["podMonitor/demo/workers/0"]["metrics_path"] == "/stats"
    assert "namespaces" not in jobs["podMonitor/demo/workers/0"]["kubernetes_sd_configs"][0]  # any namespace
    assert jobs["serviceMonitor/demo/web/0"]["kubernetes_sd_configs"][0]["namespaces"] == {"names": ["demo"]}
    assert jobs["serviceMonitor/demo/web/0"]["scrape_interval"] == "10s"
    by_name = {r["name"]: r for r in report}
    assert by_name["demo/web"]["notes"] == ["endpoint 0: fields not translated: bearerTokenSecret"]
    # the only static target is Prometheus itself
    static = [j for j in config["scrape_configs"] if "kubernetes_sd_configs" not in j]
    assert static == [prom.self_job("10.200.3.2:9090") | {"fallback_scrape_protocol": prom.FALLBACK_PROTOCOL}]


def test_runs_as_a_platform_prometheus_pod_behind_a_service():
    scope = prom.RealNodeScope(node="sandbox-real-0", pod_cidr="10.244.3.0/24", node_ip="10.200.3.2")
    docs = {d["kind"]: d for d in prom.workload_objects(scope, Path("/state/prometheus"), Path("/cache/bin/p"))}
    svc, dep = docs["Service"], docs["Deployment"]
    assert svc["metadata"]["labels"]["app.kubernetes.io/name"] == "prometheus"
    assert svc["spec"]["ports"][0]["name"] == "web" and svc["spec"]["ports"][0]["port"] == 9090
    pod = dep["spec"]["template"]["spec"]
    assert pod["hostNetwork"] and pod["nodeSelector"] == {"kubernetes.io/hostname": "sandbox-real-0"}
    assert dep["spec"]["selector"]["matchLabels"].items() <= svc["spec"]["selector"].items()
    (c,) = pod["containers"]
    assert c["image"] == images.UTILITY and c["imagePullPolicy"] == "Never"
    assert "--web.listen-address=$(POD_IP):9090" in c["command"]


def test_selector_relabels_follow_label_selector_semantics():
    steps = prom._selector_relabels(
        {
            "matchLabels": {"app.kubernetes.io/name": "x"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["a", "b"]},
                {"key": "canary", "operator": "DoesNotExist"},
            ],
        },
        "pod",
    )
    assert steps == [
        {
            "source_labels": [
                "__meta_kubernetes_pod_label_app_kubernetes_io_name",
                "__meta_kubernetes_pod_labelpresent_app_kubernetes_io_name",
            ],
            "regex": "(x);true",
            "action": "keep",
        },
        {
            "source_labels": ["__meta_kubernetes_pod_label_tier", "__meta_kubernetes_pod_labelpresent_tier"],
            "regex": "(a|b);true",
            "action": "keep",
        },
        {"source_labels": ["__meta_kubernetes_pod_labelpresent_canary"], "regex": "true", "action": "drop"},
    ]
    with pytest.raises(ValueError):
        prom._selector_relabels({"matchExpressions": [{"key": "k", "operator": "Gt"}]}, "pod")


# --- against the sandbox ---------------------------------------------------------------------------------------

TARGET_TIMEOUT_S = 90  #: discovery (watch) + one 5 s scrape interval, with margin for a busy 2-core machine
POD_TIMEOUT_S = 120

#: A tiny workload: counts the requests it serves; ``/metrics`` (not counted) exposes the count.
COUNTER_SERVER = r"""
import http.server, os, threading
lock = threading.Lock()
served = {"n": 0}
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def _send(self, body, ctype):
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        if self.path == "/metrics":
            with lock:
                n = served["n"]
            text = ("# HELP aiconf_test_requests_total Requests served, /metrics and /healthz excluded.\n"
                    "# TYPE aiconf_test_requests_total counter\n"
                    f"aiconf_test_requests_total {n}\n")
            return self._send(text.encode(), "text/plain; version=0.0.4; charset=utf-8")
        if self.path != "/healthz":
            with lock:
                served["n"] += 1
        self._send(b"ok\n", "text/plain")
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("", 8080), H).serve_forever()
"""


@pytest.fixture(scope="module")
def api(kube_sandbox):
    c = kube_sandbox.api_client()
    yield c
    c.close()


@pytest.fixture(scope="module")
def pm(kube_sandbox, api) -> dict:
    nodes = client.CoreV1Api(api).list_node(label_selector=f"{realnode.REAL_NODE_LABEL}=true").items
    if not nodes:
        pytest.skip("the sandbox has no real node (AICONF_TEST_REAL_NODE=0?): nothing real to scrape")
    # the session's sandbox, or one started outside it (AICONF_TEST_KUBECONFIG=<state dir>/kubeconfig)
    sb = kube_sandbox.sandbox or SimpleNamespace(state_dir=Path(kube_sandbox.kubeconfig).parent)
    meta = prom.info(sb)
    if not meta:
        pytest.skip(f"the prometheus add-on is not running in this sandbox (no {sb.state_dir}/prometheus/info.json)")
    if meta.get("skipped"):
        pytest.skip(f"the prometheus add-on skipped: {meta['skipped']}")
    return meta


@pytest.fixture
def namespace(api):
    name = f"aiconf-prom-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": name}})
    yield name
    with contextlib.suppress(client.ApiException):
        core.delete_namespace(name, grace_period_seconds=0)


def _workload(name: str, annotations: dict[str, str] | None = None, labels: dict[str, str] | None = None) -> dict:
    return {
        "metadata": {"name": name, "labels": {"app": name, **(labels or {})}, "annotations": annotations or {}},
        "spec": {
            "nodeSelector": {realnode.REAL_NODE_LABEL: "true"},
            "tolerations": [{"key": realnode.REAL_NODE_LABEL, "operator": "Exists", "effect": "NoSchedule"}],
            "terminationGracePeriodSeconds": 1,
            "enableServiceLinks": False,
            "automountServiceAccountToken": False,
            "containers": [
                {
                    "name": "server",
                    "image": images.PYTHON,
                    "imagePullPolicy": "Never",
                    "command": ["python3", "-c", COUNTER_SERVER],
                    "ports": [{"name": "metrics", "containerPort": 8080}],
                    "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1},
                }
            ],
        },
    }


def _wait_ready(api, namespace: str, names: list[str], timeout_s: float = POD_TIMEOUT_S) -> dict[str, client.V1Pod]:
    core = client.CoreV1Api(api)
    deadline = time.monotonic() + timeout_s
    pods: dict = {}
    while time.monotonic() < deadline:
        pods = {p.metadata.name: p for p in core.list_namespaced_pod(namespace).items}
        if all(
            n in pods and any(c.type == "Ready" and c.status == "True" for c in (pods[n].status.conditions or []))
            for n in names
        ):
            return pods
        time.sleep(0.5)
    raise AssertionError(f"pods {names} not Ready after {timeout_s}s: {[(n, pods.get(n)) for n in names]}")


def _targets(url: str) -> list[dict]:
    with urllib.request.urlopen(f"{url}/api/v1/targets?state=active", timeout=10) as resp:
        return json.loads(resp.read())["data"]["activeTargets"]


def _wait_target(url: str, match: dict[str, str], timeout_s: float = TARGET_TIMEOUT_S) -> dict:
    """Bounded: until an active target whose labels include ``match`` has been scraped successfully."""
    deadline = time.monotonic() + timeout_s
    last: list[dict] = []
    while time.monotonic() < deadline:
        last = [t for t in _targets(url) if all(t["labels"].get(k) == v for k, v in match.items())]
        if any(t["health"] == "up" for t in last):
            return next(t for t in last if t["health"] == "up")
        time.sleep(1)
    raise AssertionError(f"no healthy target with labels {match} after {timeout_s}s: {last}")


def _wait_value(url: str, promql: str, want: float, timeout_s: float = 30) -> float:
    """Bounded: until ``promql`` (one series) equals ``want``; returns the last value seen."""
    deadline = time.monotonic() + timeout_s
    value = None
    while time.monotonic() < deadline:
        result = prom.query(url, promql)
        if len(result) == 1:
            value = float(result[0]["value"][1])
            if value == want:
                return value
        time.sleep(1)
    raise AssertionError(f"{promql} = {value} (wanted {want}) after {timeout_s}s")


def _hit(pod_ip: str, n: int) -> None:
    for i in range(n):
        with urllib.request.urlopen(f"http://{pod_ip}:8080/work/{i}", timeout=5) as resp:  # real-node pod IP
            assert resp.status == 200


@pytest.mark.sandbox
def test_prometheus_answers_the_query_api_directly_and_through_the_service_proxy(kube_sandbox, pm):
    node_ip = urllib.parse.urlsplit(pm["url"]).hostname
    assert re.fullmatch(r"10\.200\.\d+\.2", node_ip), pm["url"]  # the node's IP, inside its netns
    with urllib.request.urlopen(f"{pm['url']}/api/v1/status/buildinfo", timeout=5) as resp:
        build = json.loads(resp.read())["data"]
    assert build["version"].startswith("3.16"), build
    instance = urllib.parse.urlsplit(pm["url"]).netloc
    result = prom.query(pm["url"], f'up{{job="prometheus",instance="{instance}"}}')
    assert [r["value"][1] for r in result] == ["1"]
    # found and queried the way a check does on a real cluster: a Service labelled prometheus, service proxy
    svc = client.CoreV1Api(kube_sandbox.api_client()).list_service_for_all_namespaces(
        label_selector="app.kubernetes.io/name=prometheus"
    )
    assert [f"{s.metadata.namespace}/{s.metadata.name}" for s in svc.items] == [pm["service"].split(":")[0]]
    out = subprocess.run(
        [
            cluster.find_kubectl(),
            f"--kubeconfig={kube_sandbox.kubeconfig}",
            "get",
            "--raw",
            pm["service_proxy"] + "/api/v1/query?" + urllib.parse.urlencode({"query": f'up{{instance="{instance}"}}'}),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert answer["status"] == "success" and [r["value"][1] for r in answer["data"]["result"]] == ["1"], answer


@pytest.mark.sandbox
def test_annotated_workload_is_discovered_and_its_counter_equals_the_requests_sent(api, pm, namespace):
    core = client.CoreV1Api(api)
    annotations = {"prometheus.io/scrape": "true", "prometheus.io/port": "8080", "prometheus.io/path": "/metrics"}
    core.create_namespaced_pod(namespace, _workload("counted", annotations))
    pod = _wait_ready(api, namespace, ["counted"])["counted"]
    target = _wait_target(pm["url"], {"job": "kubernetes-pods", "namespace": namespace, "pod": "counted"})
    assert target["labels"]["node"] == realnode.NODE_NAME
    assert target["scrapeUrl"] == f"http://{pod.status.pod_ip}:8080/metrics"
    promql = f'aiconf_test_requests_total{{job="kubernetes-pods",namespace="{namespace}",pod="counted"}}'
    _wait_value(pm["url"], promql, 0)
    sent = 37
    _hit(pod.status.pod_ip, sent)
    assert _wait_value(pm["url"], promql, sent) == sent


@pytest.mark.sandbox
def test_pod_monitor_and_service_monitor_are_translated_into_scrape_jobs(api, pm, namespace):
    core = client.CoreV1Api(api)
    core.create_namespaced_pod(namespace, _workload("monitored", labels={"monitor": "yes"}))
    core.create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "monitored", "labels": {"monitor": "yes"}},
            "spec": {"selector": {"app": "monitored"}, "ports": [{"name": "metrics", "port": 80, "targetPort": 8080}]},
        },
    )
    pod = _wait_ready(api, namespace, ["monitored"])["monitored"]
    co = client.CustomObjectsApi(api)
    selector = {"matchLabels": {"monitor": "yes"}}
    co.create_namespaced_custom_object(
        "monitoring.coreos.com",
        "v1",
        namespace,
        "podmonitors",
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PodMonitor",
            "metadata": {"name": "pm"},
            "spec": {"selector": selector, "podMetricsEndpoints": [{"port": "metrics", "interval": "5s"}]},
        },
    )
    co.create_namespaced_custom_object(
        "monitoring.coreos.com",
        "v1",
        namespace,
        "servicemonitors",
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "ServiceMonitor",
            "metadata": {"name": "sm"},
            "spec": {"selector": selector, "endpoints": [{"port": "metrics", "interval": "5s"}]},
        },
    )
    pod_job = f"podMonitor/{namespace}/pm/0"
    svc_job = f"serviceMonitor/{namespace}/sm/0"
    t_pod = _wait_target(pm["url"], {"namespace": namespace, "pod": "monitored", "job": f"{namespace}/pm"})
    t_svc = _wait_target(pm["url"], {"namespace": namespace, "service": "monitored", "job": "monitored"})
    assert t_pod["scrapePool"] == pod_job and t_svc["scrapePool"] == svc_job
    sent = 11
    _hit(pod.status.pod_ip, sent)
    for job in (f"{namespace}/pm", "monitored"):
        promql = f'aiconf_test_requests_total{{namespace="{namespace}",job="{job}"}}'
        assert _wait_value(pm["url"], promql, sent) == sent


@pytest.mark.sandbox
def test_only_real_node_pods_are_ever_targets(api, pm, namespace):
    core = client.CoreV1Api(api)
    kwok_nodes = [
        n.metadata.name
        for n in core.list_node().items
        if (n.metadata.annotations or {}).get("kwok.x-k8s.io/node") == "fake"
    ]
    annotations = {"prometheus.io/scrape": "true", "prometheus.io/port": "8080"}
    if kwok_nodes:  # an annotated pod on a kwok node: its fake IP must never become a target
        ghost = _workload("ghost", annotations)
        ghost["spec"]["nodeName"] = kwok_nodes[0]
        ghost["spec"].pop("nodeSelector")
        ghost["spec"]["tolerations"] = [{"operator": "Exists"}]
        core.create_namespaced_pod(namespace, ghost)
    core.create_namespaced_pod(namespace, _workload("real", annotations))
    _wait_ready(api, namespace, ["real"])
    _wait_target(pm["url"], {"job": "kubernetes-pods", "namespace": namespace, "pod": "real"})
    net = ipaddress.ip_network(pm["pod_cidr"])
    itself = urllib.parse.urlsplit(pm["url"]).hostname
    for t in _targets(pm["url"]):
        host = urllib.parse.urlsplit(t["scrapeUrl"]).hostname
        assert (host == itself and t["labels"]["job"] == "prometheus") or ipaddress.ip_address(host) in net, t
        assert t["labels"].get("pod") != "ghost", t
        if t["labels"].get("node"):
            assert t["labels"]["node"] == realnode.NODE_NAME, t


@pytest.mark.sandbox
def test_simulated_dcgm_exporter_is_discovered_through_its_annotated_service(api, pm):
    services = client.CoreV1Api(api).list_namespaced_service(realnode.DCGM_NAMESPACE).items
    if not any((s.metadata.annotations or {}).get("prometheus.io/scrape") == "true" for s in services):
        pytest.skip("the real node runs no annotated DCGM exporter Service (no GPUs or DCGM off)")
    t = _wait_target(pm["url"], {"job": "kubernetes-service-endpoints", "namespace": realnode.DCGM_NAMESPACE})
    assert t["labels"]["node"] == realnode.NODE_NAME
    deadline = time.monotonic() + 30
    result: list = []
    while time.monotonic() < deadline and not result:
        result = prom.query(pm["url"], f'DCGM_FI_DEV_GPU_UTIL{{namespace="{realnode.DCGM_NAMESPACE}"}}')
        time.sleep(1)
    assert result, "no DCGM_FI_DEV_GPU_UTIL series in Prometheus"
