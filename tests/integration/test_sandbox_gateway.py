"""The sandbox's Gateway API data plane (Traefik, :mod:`aiconf.sandbox.addons.traefik`) routes real HTTP to pods
on the real node: GatewayClass Accepted, Gateway Programmed at 127.0.0.1, an 80/20 HTTPRoute splits real traffic
within binomial tolerance, a header match routes exactly, and a route to a kwok pod never reaches a fake IP.

The first tests need no cluster (the EndpointSlice filter of the API view). The ``sandbox`` tests use the session
sandbox and skip when it has no real node or the ``traefik`` add-on did not start.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import json
import math
import ssl
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from kubernetes import client, watch

from aiconf.sandbox import images, realnode
from aiconf.sandbox.addons import traefik

POD_TIMEOUT_S = 120
REQUESTS = 200
CANARY_WEIGHT = 20  #: of 100

#: A tiny HTTP server: answers every path with its own name (env BACKEND) and counts what it served;
#: ``/metrics`` (not counted) exposes the count in the Prometheus text format.
ECHO_SERVER = r"""
import http.server, json, os, socket, threading
NAME = os.environ.get("BACKEND", "?")
lock = threading.Lock()
served = {"n": 0}
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def _send(self, code, body, ctype):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        if self.path == "/metrics":
            with lock:
                n = served["n"]
            text = ("# HELP aiconf_test_requests_total Requests served, /metrics excluded.\n"
                    "# TYPE aiconf_test_requests_total counter\n"
                    f'aiconf_test_requests_total{{backend="{NAME}"}} {n}\n')
            return self._send(200, text.encode(), "text/plain; version=0.0.4; charset=utf-8")
        if self.path == "/healthz":
            return self._send(200, b"ok\n", "text/plain")
        with lock:
            served["n"] += 1
        body = json.dumps({"backend": NAME, "pod": socket.gethostname(), "path": self.path}).encode()
        self._send(200, body, "application/json")
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("", int(os.environ.get("PORT", "8080"))), H).serve_forever()
"""


# --- the API view's EndpointSlice filter (no cluster) ------------------------------------------------------------

NET = ipaddress.ip_network("10.244.3.0/24")
NODE = "sandbox-real-0"


def _ep(ip: str, node: str | None = NODE, ready: bool = True) -> dict:
    e = {"addresses": [ip], "conditions": {"ready": ready}}
    if node:
        e["nodeName"] = node
    return e


def test_filter_keeps_only_real_node_endpoints():
    es = {
        "kind": "EndpointSlice",
        "metadata": {"name": "s"},
        "endpoints": [
            _ep("10.244.3.7"),
            _ep("10.99.0.5", node="sandbox-gpu-0"),  # a kwok fake pod IP
            _ep("10.244.3.8", node="sandbox-gpu-1"),  # right range, wrong node
            _ep("127.0.0.1", node=None),
            _ep("10.244.3.9", node=None),  # a hand-made slice inside the pod CIDR
            {"addresses": ["10.244.3.10", "10.99.0.6"], "nodeName": NODE},  # one bad address spoils it
            {"addresses": ["not-an-ip"]},
        ],
    }
    out = traefik.filter_document(json.loads(json.dumps(es)), NET, NODE)
    assert [e["addresses"] for e in out["endpoints"]] == [["10.244.3.7"], ["10.244.3.9"]]
    assert out["metadata"]["annotations"][traefik.HIDDEN_ANNOTATION] == "5"


def test_filter_handles_lists_watch_events_and_bookmarks():
    lst = {"kind": "EndpointSliceList", "items": [{"kind": "EndpointSlice", "endpoints": [_ep("10.99.1.1")]}]}
    assert traefik.filter_document(lst, NET, NODE)["items"][0]["endpoints"] == []
    # list items carry no kind of their own
    lst = {"kind": "EndpointSliceList", "items": [{"endpoints": [_ep("10.99.1.1"), _ep("10.244.3.2")]}]}
    assert len(traefik.filter_document(lst, NET, NODE)["items"][0]["endpoints"]) == 1
    ev = {"type": "MODIFIED", "object": {"kind": "EndpointSlice", "endpoints": [_ep("10.99.1.1"), _ep("10.244.3.2")]}}
    assert [e["addresses"][0] for e in traefik.filter_document(ev, NET, NODE)["object"]["endpoints"]] == ["10.244.3.2"]
    bookmark = {"type": "BOOKMARK", "object": {"kind": "EndpointSlice", "metadata": {"resourceVersion": "7"}}}
    assert traefik.filter_document(json.loads(json.dumps(bookmark)), NET, NODE) == bookmark
    error = {"type": "ERROR", "object": {"kind": "Status", "code": 410}}
    assert traefik.filter_document(json.loads(json.dumps(error)), NET, NODE) == error


def test_filtered_paths_are_recognised():
    for path in (
        "/apis/discovery.k8s.io/v1/endpointslices",
        "/apis/discovery.k8s.io/v1/namespaces/ns/endpointslices",
        "/apis/discovery.k8s.io/v1/namespaces/ns/endpointslices/web-abc12",
    ):
        assert traefik.filtered_kind(path) == "EndpointSlice", path
    for path in ("/api/v1/services", "/api/v1/namespaces/ns/services", "/api/v1/namespaces/ns/services/web"):
        assert traefik.filtered_kind(path) == "Service", path
    for path in (
        "/api/v1/namespaces/ns/services/web/proxy/x",
        "/api/v1/namespaces/ns/secrets",
        "/apis/gateway.networking.k8s.io/v1/httproutes",
    ):
        assert traefik.filtered_kind(path) is None, path


def test_services_lose_the_native_lb_switch():
    svc = {"metadata": {"name": "web", "annotations": {"traefik.io/service.nativeLB": "true", "keep": "me"}}}
    lst = {"kind": "ServiceList", "items": [svc]}
    out = traefik.filter_document(lst, NET, NODE, "Service")["items"][0]["metadata"]["annotations"]
    assert out == {"keep": "me", traefik.NATIVE_LB_IGNORED: "true"}
    ev = {
        "type": "ADDED",
        "object": {"kind": "Service", "metadata": {"annotations": {traefik.NATIVE_LB_ANNOTATION: "1"}}},
    }
    assert (
        traefik.NATIVE_LB_ANNOTATION
        not in traefik.filter_document(ev, NET, NODE, "Service")["object"]["metadata"]["annotations"]
    )


def test_static_config_listens_on_loopback_only_and_never_phones_home():
    cfg = traefik.static_config(18000, 18001)
    assert {ep["address"] for ep in cfg["entryPoints"].values()} == {"127.0.0.1:18000", "127.0.0.1:18001"}
    assert cfg["global"] == {"checkNewVersion": False, "sendAnonymousUsage": False}
    assert cfg["providers"]["kubernetesGateway"]["statusAddress"] == {"ip": "127.0.0.1"}


# --- against the sandbox ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api(kube_sandbox):
    c = kube_sandbox.api_client()
    yield c
    c.close()


def _state_dir(kube_sandbox) -> Path:
    """The sandbox's state dir: the session's own, or (AICONF_TEST_KUBECONFIG=<state>/kubeconfig) the folder of
    an ``aiconf sandbox up`` started outside the test session."""
    if kube_sandbox.sandbox is not None:
        return Path(kube_sandbox.sandbox.state_dir)
    return Path(kube_sandbox.kubeconfig).parent


@pytest.fixture(scope="module")
def gw(kube_sandbox, api) -> dict:
    nodes = client.CoreV1Api(api).list_node(label_selector=f"{realnode.REAL_NODE_LABEL}=true").items
    if not nodes:
        pytest.skip("the sandbox has no real node (AICONF_TEST_REAL_NODE=0?): no pod can receive gateway traffic")
    state_dir = _state_dir(kube_sandbox)
    meta = traefik.info(SimpleNamespace(state_dir=state_dir))
    if not meta:
        pytest.skip(f"the traefik add-on is not running in this sandbox (no {state_dir}/traefik/info.json)")
    if meta.get("skipped"):
        pytest.skip(f"the traefik add-on skipped: {meta['skipped']}")
    return {**meta, "state_dir": str(state_dir)}


@pytest.fixture
def namespace(api):
    name = f"aiconf-gw-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": name}})
    yield name
    with contextlib.suppress(client.ApiException):
        core.delete_namespace(name, grace_period_seconds=0)


def _echo_pod(name: str, labels: dict[str, str]) -> dict:
    """An echo server pinned to the real node (nodeSelector + toleration), never pulling its image."""
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "nodeSelector": {realnode.REAL_NODE_LABEL: "true"},
            "tolerations": [{"key": realnode.REAL_NODE_LABEL, "operator": "Exists", "effect": "NoSchedule"}],
            "terminationGracePeriodSeconds": 1,
            "enableServiceLinks": False,
            "automountServiceAccountToken": False,
            "containers": [
                {
                    "name": "echo",
                    "image": images.PYTHON,
                    "imagePullPolicy": "Never",
                    "command": ["python3", "-c", ECHO_SERVER],
                    "env": [{"name": "BACKEND", "value": name}],
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1},
                }
            ],
        },
    }


def _service(name: str, selector: dict[str, str]) -> dict:
    return {
        "metadata": {"name": name},
        "spec": {"selector": selector, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    }


def _wait_ready(api, namespace: str, names: list[str], timeout_s: float = POD_TIMEOUT_S) -> dict[str, client.V1Pod]:
    core = client.CoreV1Api(api)
    deadline = time.monotonic() + timeout_s
    pods: dict[str, client.V1Pod] = {}

    def ready(p) -> bool:
        return any(c.type == "Ready" and c.status == "True" for c in (p.status.conditions or []))

    while time.monotonic() < deadline:
        listing = core.list_namespaced_pod(namespace)
        pods = {p.metadata.name: p for p in listing.items}
        if all(n in pods and ready(pods[n]) for n in names):
            return pods
        w = watch.Watch()
        for ev in w.stream(
            core.list_namespaced_pod,
            namespace,
            resource_version=listing.metadata.resource_version,
            timeout_seconds=max(1, min(10, int(deadline - time.monotonic()))),
        ):
            pods[ev["object"].metadata.name] = ev["object"]
            if all(n in pods and ready(pods[n]) for n in names):
                w.stop()
                return pods
    raise AssertionError(f"pods {names} not Ready after {timeout_s}s: {[(n, pods.get(n)) for n in names]}")


def _route(namespace: str, host: str, rules: list[dict]) -> dict:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "split", "namespace": namespace},
        "spec": {
            "parentRefs": [{"name": traefik.GATEWAY_NAME, "namespace": traefik.GATEWAY_NAMESPACE}],
            "hostnames": [host],
            "rules": rules,
        },
    }


def _ref(name: str, weight: int | None = None) -> dict:
    ref = {"name": name, "port": 80}
    if weight is not None:
        ref["weight"] = weight
    return ref


def _get(url: str, host: str, headers: dict[str, str] | None = None, timeout_s: float = 5) -> tuple[int, str]:
    req = urllib.request.Request(url, headers={"Host": host, **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:  # sandbox loopback address only
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def _route_accepted(api, namespace: str, name: str, timeout_s: float = 60) -> dict:
    co = client.CustomObjectsApi(api)
    deadline = time.monotonic() + timeout_s
    conds: dict = {}
    while time.monotonic() < deadline:
        obj = co.get_namespaced_custom_object("gateway.networking.k8s.io", "v1", namespace, "httproutes", name)
        parents = (obj.get("status") or {}).get("parents") or []
        conds = {c["type"]: c["status"] for p in parents for c in p.get("conditions", [])}
        if conds.get("Accepted") == "True" and conds.get("ResolvedRefs") == "True":
            return obj
        time.sleep(0.5)
    raise AssertionError(f"HTTPRoute {namespace}/{name} not Accepted/ResolvedRefs after {timeout_s}s: {conds}")


def _until_served(url: str, host: str, want: set[str], timeout_s: float = 60, headers=None) -> None:
    """Bounded: request until every backend in ``want`` has answered once (Traefik applies routes within ~1 s)."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline and not want <= seen:
        try:
            last = _get(url, host, headers)
            if last[0] == 200:
                seen.add(json.loads(last[1])["backend"])
        except OSError as e:
            last = e
        time.sleep(0.05)
    assert want <= seen, f"backends {want - seen} never answered through the gateway in {timeout_s}s (last: {last})"


def _pod_counter(pod_ip: str) -> int:
    with urllib.request.urlopen(f"http://{pod_ip}:8080/metrics", timeout=5) as resp:  # real-node pod IP
        for line in resp.read().decode().splitlines():
            if line.startswith("aiconf_test_requests_total"):
                return int(float(line.rsplit(" ", 1)[1]))
    raise AssertionError("no counter in /metrics")


@pytest.mark.sandbox
def test_gateway_class_accepted_and_gateway_programmed_at_loopback(api, gw):
    co = client.CustomObjectsApi(api)
    gc = co.get_cluster_custom_object("gateway.networking.k8s.io", "v1", "gatewayclasses", traefik.GATEWAY_CLASS)
    assert gc["spec"]["controllerName"] == traefik.CONTROLLER
    assert {c["type"]: c["status"] for c in gc["status"]["conditions"]}.get("Accepted") == "True"
    gateway = co.get_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", traefik.GATEWAY_NAMESPACE, "gateways", traefik.GATEWAY_NAME
    )
    conds = {c["type"]: c["status"] for c in gateway["status"]["conditions"]}
    assert conds.get("Accepted") == "True" and conds.get("Programmed") == "True", conds
    assert [a["value"] for a in gateway["status"]["addresses"]] == ["127.0.0.1"]
    listener = gateway["spec"]["listeners"][0]
    assert listener["port"] == gw["web_port"] and listener["protocol"] == "HTTP"
    lst = {ls["name"]: ls for ls in gateway["status"]["listeners"]}
    assert {c["type"]: c["status"] for c in lst["http"]["conditions"]}.get("Programmed") == "True"
    # the address answers: an unknown host gets Traefik's own 404
    status, _ = _get(f"http://127.0.0.1:{listener['port']}/", "nothing-routes-here.sandbox.test")
    assert status == 404


@pytest.mark.sandbox
def test_weighted_backend_refs_split_real_traffic_and_a_header_match_routes_exactly(api, gw, namespace):
    core = client.CoreV1Api(api)
    for name in ("stable", "canary"):
        core.create_namespaced_pod(namespace, _echo_pod(name, {"app": "echo", "track": name}))
        core.create_namespaced_service(namespace, _service(f"echo-{name}", {"app": "echo", "track": name}))
    pods = _wait_ready(api, namespace, ["stable", "canary"])
    ips = {n: p.status.pod_ip for n, p in pods.items()}
    assert all(ipaddress.ip_address(ip) in ipaddress.ip_network(gw["pod_cidr"]) for ip in ips.values()), ips

    host = f"{namespace}.sandbox.test"
    rules = [
        {
            "matches": [{"headers": [{"type": "Exact", "name": "x-canary", "value": "always"}]}],
            "backendRefs": [_ref("echo-canary")],
        },
        {
            "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
            "backendRefs": [_ref("echo-stable", 100 - CANARY_WEIGHT), _ref("echo-canary", CANARY_WEIGHT)],
        },
    ]
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", namespace, "httproutes", _route(namespace, host, rules)
    )
    _route_accepted(api, namespace, "split")
    url = gw["url"] + "/infer"
    _until_served(url, host, {"stable", "canary"})
    _until_served(url, host, {"canary"}, headers={"x-canary": "always"})
    before = {n: _pod_counter(ip) for n, ip in ips.items()}

    # 80/20 split of real requests
    counts = {"stable": 0, "canary": 0}
    for _ in range(REQUESTS):
        status, body = _get(url, host)
        assert status == 200, body
        counts[json.loads(body)["backend"]] += 1
    p = CANARY_WEIGHT / 100
    sigma = math.sqrt(REQUESTS * p * (1 - p))
    assert abs(counts["canary"] - REQUESTS * p) <= 3 * sigma, (counts, f"3 sigma = {3 * sigma:.1f}")
    assert counts["stable"] + counts["canary"] == REQUESTS
    print(f"80/20 split over {REQUESTS} requests: {counts} (3 sigma = {3 * sigma:.1f})")

    # the header match routes exactly; another value of the header falls through to the split
    exact = [json.loads(_get(url, host, {"x-canary": "always"})[1])["backend"] for _ in range(50)]
    assert exact == ["canary"] * 50
    other = {"stable": 0, "canary": 0}
    for _ in range(20):
        other[json.loads(_get(url, host, {"x-canary": "never"})[1])["backend"]] += 1
    assert other["stable"] > 0, other

    # the pods themselves counted exactly what the gateway sent them: the traffic was real
    after = {n: _pod_counter(ip) for n, ip in ips.items()}
    delivered = {n: after[n] - before[n] for n in ips}
    assert delivered == {
        "stable": counts["stable"] + other["stable"],
        "canary": counts["canary"] + 50 + other["canary"],
    }


def _view_slices(gw, namespace: str, service: str) -> list[dict]:
    """The service's EndpointSlices as Traefik reads them (through the API view, with Traefik's certificate)."""
    pki = Path(gw["state_dir"]) / "pki"
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / f"{traefik.USER}.crt"), str(pki / f"{traefik.USER}.key"))
    conn = http.client.HTTPSConnection("127.0.0.1", gw["api_view_port"], context=ctx, timeout=10)
    try:
        conn.request(
            "GET",
            f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices"
            f"?labelSelector=kubernetes.io%2Fservice-name%3D{service}",
        )
        resp = conn.getresponse()
        assert resp.status == 200, resp.read()
        return json.loads(resp.read())["items"]
    finally:
        conn.close()


@pytest.mark.sandbox
def test_a_route_to_kwok_pods_never_reaches_a_fake_ip(api, gw, namespace):
    core = client.CoreV1Api(api)
    kwok_nodes = [
        n.metadata.name
        for n in core.list_node().items
        if (n.metadata.annotations or {}).get("kwok.x-k8s.io/node") == "fake"
    ]
    if not kwok_nodes:
        pytest.skip("no kwok node in this cluster")
    ghost = {
        "metadata": {"name": "ghost", "labels": {"app": "ghost"}},
        "spec": {
            "nodeName": kwok_nodes[0],
            "tolerations": [{"operator": "Exists"}],
            "containers": [{"name": "c", "image": images.UTILITY, "imagePullPolicy": "Never"}],
        },
    }
    core.create_namespaced_pod(namespace, ghost)
    # Asking Traefik to dial the ClusterIP instead (kube-proxy would DNAT it to the fake IP) is ignored too.
    svc = _service("ghost", {"app": "ghost"})
    svc["metadata"]["annotations"] = {traefik.NATIVE_LB_ANNOTATION: "true"}
    core.create_namespaced_service(namespace, svc)
    # The API server's EndpointSlice names the kwok pod's fake IP, ready ...
    disc = client.DiscoveryV1Api(api)
    deadline = time.monotonic() + 60
    fake: list[str] = []
    while time.monotonic() < deadline and not fake:
        slices = disc.list_namespaced_endpoint_slice(namespace, label_selector="kubernetes.io/service-name=ghost")
        fake = [a for s in slices.items for e in (s.endpoints or []) if e.conditions.ready for a in e.addresses]
        time.sleep(0.5)
    assert fake and all(ipaddress.ip_address(a) not in ipaddress.ip_network(gw["pod_cidr"]) for a in fake), fake
    # ... and Traefik's view of the same slice has no endpoint at all.
    seen = _view_slices(gw, namespace, "ghost")
    assert seen and all(not s.get("endpoints") for s in seen), seen
    assert seen[0]["metadata"]["annotations"][traefik.HIDDEN_ANNOTATION] == str(len(fake))

    host = f"ghost.{namespace}.sandbox.test"
    route = _route(namespace, host, [{"backendRefs": [_ref("ghost")]}])
    route["metadata"]["name"] = "ghost"
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", namespace, "httproutes", route
    )
    _route_accepted(api, namespace, "ghost")
    deadline = time.monotonic() + 30
    status, body = _get(gw["url"] + "/", host)
    while status == 404 and time.monotonic() < deadline:  # 404 until Traefik has the route
        time.sleep(0.2)
        status, body = _get(gw["url"] + "/", host)
    # 503 "no available server": Traefik has no server to dial (a dial to the fenced kwok range would give 502)
    assert status == 503, (status, body)
    # Every server Traefik knows, for every route, is a real-node pod
    with urllib.request.urlopen(f"http://127.0.0.1:{gw['admin_port']}/api/http/services", timeout=5) as resp:
        services = json.loads(resp.read())
    servers = [s["url"] for svc in services for s in (svc.get("loadBalancer") or {}).get("servers", [])]
    net = ipaddress.ip_network(gw["pod_cidr"])
    for url in servers:
        host_part = url.split("://", 1)[1].rsplit(":", 1)[0].strip("[]")
        assert ipaddress.ip_address(host_part) in net, (url, servers)
