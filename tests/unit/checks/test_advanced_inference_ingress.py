"""advanced_inference_ingress without a cluster: pool status rows, manifests, and the check against a fake client
whose 'gateway' writes a chosen status on the probe route."""

from __future__ import annotations

import copy
import http.client
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from aiconf import display
from aiconf.checks import advanced_inference_ingress as aii
from aiconf.errors import WaitTimeout
from aiconf.execute import run_check
from aiconf.model import Verdict
from aiconf.params import load_parameters
from aiconf.workloads import inference_stub


def test_pool_rows_show_each_gateway_verdict_and_pools_without_status():
    pools = [
        {
            "metadata": {"name": "a", "namespace": "x"},
            "status": {
                "parents": [
                    {
                        "parentRef": {"name": "gw", "namespace": "infra"},
                        "conditions": [
                            {"type": "Accepted", "status": "True"},
                            {"type": "ResolvedRefs", "status": "False"},
                        ],
                    }
                ]
            },
        },
        {"metadata": {"name": "b", "namespace": "x"}},
    ]
    rows = aii.pool_rows(pools)
    assert rows[0] == {"pool": "x/a", "parent": "infra/gw", "accepted": "True", "resolved_refs": "False"}
    assert rows[1]["parent"] == "(no gateway status)"


def test_probe_route_points_only_at_the_pool():
    gw = {"metadata": {"name": "gw", "namespace": "infra"}}
    route = aii.probe_route("r", "ns", gw, "pool")
    assert route["spec"]["parentRefs"] == [{"name": "gw", "namespace": "infra"}]
    assert route["spec"]["rules"][0]["backendRefs"] == [
        {"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": "pool"}
    ]
    pool = aii.probe_pool("pool", "ns")
    assert pool["spec"]["endpointPickerRef"]["port"] == {"number": 9002}


class FakeKube:
    """GAIE served or not; one Gateway of an accepted class; the probe route's status chosen by ``route_status``."""

    def __init__(self, *, gaie: bool = True, gateway: bool = True, route_status: list[dict] | None = None):
        self.gaie, self.gateway, self.route_status = gaie, gateway, route_status
        self.created: list[dict] = []

    def version(self) -> dict:
        return {"gitVersion": "v1.36.0"}

    def served_versions(self, group: str) -> list[str]:
        if group == "gateway.networking.k8s.io":
            return ["v1"]
        if self.gaie and group == aii.GAIE_GROUP:
            return ["v1"]
        if self.gaie and group == aii.GAIE_X_GROUP:
            return ["v1alpha2"]
        return []

    def has_kind(self, api_version: str, kind: str) -> bool:
        return self.gaie and (api_version, kind) in {
            (f"{aii.GAIE_GROUP}/v1", "InferencePool"),
            (f"{aii.GAIE_X_GROUP}/v1alpha2", "InferenceObjective"),
        }

    def list(self, api_version: str, kind: str, namespace: str | None = None, **_: Any) -> list[dict]:
        if kind == "GatewayClass":
            return [
                {
                    "metadata": {"name": "gaie"},
                    "spec": {"controllerName": "x/y"},
                    "status": {"conditions": [{"type": "Accepted", "status": "True"}]},
                }
            ]
        if kind == "Gateway" and self.gateway:
            return [
                {
                    "metadata": {"name": "gw", "namespace": "infra"},
                    "spec": {"gatewayClassName": "gaie"},
                    "status": {"conditions": [{"type": "Programmed", "status": "True"}]},
                }
            ]
        return []

    def create(self, obj: dict) -> dict:
        self.created.append(copy.deepcopy(obj))
        return copy.deepcopy(obj)

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict | None:
        if kind == "CustomResourceDefinition":
            annotations = {aii.BUNDLE_ANNOTATION: "v1.4.0"}
            return {"metadata": {"name": name, "annotations": annotations}} if self.gaie else None
        route = next((o for o in self.created if o["kind"] == kind and o["metadata"]["name"] == name), None)
        if route is not None and self.route_status is not None:
            route = copy.deepcopy(route)
            route["status"] = {
                "parents": [{"parentRef": {"name": "gw", "namespace": "infra"}, "conditions": self.route_status}]
            }
        return route

    def wait_for(self, api_version, kind, name, namespace, predicate, timeout_s, what, describe=None):
        obj = self.get(api_version, kind, name, namespace)
        if predicate(obj):
            return obj
        raise WaitTimeout(what, timeout_s, "")

    def delete(self, *a: Any, **kw: Any) -> bool:
        return True

    def delete_namespace(self, *a: Any, **kw: Any) -> None:
        pass

    def wait_for_deletion(self, *a: Any, **kw: Any) -> None:
        pass

    def events(self, namespace: str) -> list[dict]:
        return []

    def pod_logs(self, *a: Any, **kw: Any) -> str:
        return ""


def run_fake(tmp_path, kube: FakeKube, **overrides: Any):
    params = load_parameters(None, {"checklist_version": "1.36", "gaie_route_timeout_s": 1, **overrides})
    return run_check("advanced_inference_ingress", params, kube=kube, run_dir=tmp_path, progress=lambda m: None)


def verdicts(result) -> dict[str, Verdict]:
    return {s.id: s.verdict for s in result.subchecks}


ACCEPTED = [
    {"type": "Accepted", "status": "True", "reason": "Accepted"},
    {"type": "ResolvedRefs", "status": "True", "reason": "ResolvedRefs"},
]


def test_no_inference_pool_api_is_not_applicable(tmp_path):
    kube = FakeKube(gaie=False)
    result = run_fake(tmp_path, kube)
    assert result.verdict is Verdict.NOT_APPLICABLE
    assert "inference.networking.k8s.io" in result.not_applicable.justification
    assert set(verdicts(result)) == set(aii.SUBCHECKS) and kube.created == []


def test_a_gateway_that_resolves_pools_is_still_unknown_without_routing_evidence(tmp_path):
    result = run_fake(tmp_path, FakeKube(route_status=ACCEPTED))
    v = verdicts(result)
    assert v["gateway_resolves_pool_backend"] is Verdict.PASS
    assert (
        v["metric_aware_routing"] is Verdict.UNKNOWN
        and "conformance" in result.subcheck("metric_aware_routing").summary
    )
    assert result.verdict is Verdict.UNKNOWN  # never PASS on APIs and route status alone


@pytest.mark.parametrize(
    "status",
    [
        [
            {"type": "Accepted", "status": "True", "reason": "Accepted"},
            {"type": "ResolvedRefs", "status": "False", "reason": "InvalidKind", "message": "unsupported backend kind"},
        ],
        None,  # the gateway never writes a status
    ],
    ids=["invalid-kind", "no-status"],
)
def test_a_gateway_that_does_not_resolve_pools_fails(tmp_path, status):
    result = run_fake(tmp_path, FakeKube(route_status=status))
    assert result.verdict is Verdict.FAIL
    assert result.subcheck("gateway_resolves_pool_backend").verdict is Verdict.FAIL


def test_gaie_apis_without_a_gateway_fail(tmp_path):
    kube = FakeKube(gateway=False)
    result = run_fake(tmp_path, kube)
    assert result.verdict is Verdict.FAIL
    assert result.subcheck("gateway_class_accepted").verdict is Verdict.FAIL
    assert set(verdicts(result)) == set(aii.SUBCHECKS) and kube.created == []


def test_preflight_needs_the_inference_pool_api():
    p = load_parameters(None, {"checklist_version": "1.36"})
    assert aii.preflight(FakeKube(gaie=False), p)[0] is False
    ok, detail = aii.preflight(FakeKube(), p)
    assert ok and "inference.networking.k8s.io/v1" in detail and "manual evidence" in detail


def report(version: str = "v1.4.0", result: str = "success", passed: int = 13, failed: int = 0) -> dict:
    """The shape of the upstream suite's report (as published under conformance/reports/ upstream)."""
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "ConformanceReport",
        "GatewayAPIInferenceExtensionVersion": version,
        "date": "2026-11-01T10:00:00Z",
        "implementation": {"project": "some-gateway", "version": "1.2.3"},
        "profiles": [
            {
                "name": "Gateway",
                "core": {"result": result, "statistics": {"Passed": passed, "Failed": failed, "Skipped": 0}},
            }
        ],
    }


@pytest.mark.parametrize(
    ("doc", "installed", "expected"),
    [
        (report(), "v1.4.0", Verdict.PASS),
        (report(result="failure", passed=11, failed=2), "v1.4.0", Verdict.FAIL),
        (report(passed=0), "v1.4.0", Verdict.FAIL),  # success with nothing run proves nothing
        (report(version="v1.0.1"), "v1.4.0", Verdict.UNKNOWN),  # another release than the installed one
        ({"kind": "Something"}, "v1.4.0", Verdict.UNKNOWN),
        ({**report(), "profiles": []}, "v1.4.0", Verdict.UNKNOWN),
    ],
    ids=["success", "failures", "nothing-passed", "other-version", "not-a-report", "no-gateway-profile"],
)
def test_conformance_report_judgement(doc, installed, expected):
    verdict, summary = aii.judge_conformance_report(doc, installed)
    assert verdict is expected, summary
    if doc.get("kind") == "ConformanceReport" and doc.get("profiles"):
        assert "some-gateway 1.2.3" in summary


def test_a_matching_passing_report_and_a_resolving_gateway_pass(tmp_path):
    path = tmp_path / "report.yaml"
    path.write_text(yaml.safe_dump(report()))
    result = run_fake(tmp_path, FakeKube(route_status=ACCEPTED), gaie_conformance_report=str(path))
    assert result.verdict is Verdict.PASS, [(s.id, s.verdict, s.summary) for s in result.subchecks]
    assert any("judged from the report" in t for t in result.does_not_prove)  # the result says where PASS came from


def test_a_passing_report_does_not_hide_a_gateway_that_refuses_pools(tmp_path):
    path = tmp_path / "report.yaml"
    path.write_text(yaml.safe_dump(report()))
    refused = [
        {"type": "Accepted", "status": "True"},
        {"type": "ResolvedRefs", "status": "False", "reason": "InvalidKind"},
    ]
    result = run_fake(tmp_path, FakeKube(route_status=refused), gaie_conformance_report=str(path))
    assert result.verdict is Verdict.FAIL
    assert result.subcheck("metric_aware_routing").verdict is Verdict.PASS


def test_an_unreadable_report_is_a_config_error(tmp_path):
    result = run_fake(tmp_path, FakeKube(route_status=ACCEPTED), gaie_conformance_report=str(tmp_path / "missing.yaml"))
    assert result.verdict is Verdict.ERROR and "gaie_conformance_report" in result.error["message"]


# --- routing that follows advertised metrics: a local gateway + endpoint picker stand-in ----------------------------

POOL_PODS = ("gaie-endpoint-0", "gaie-endpoint-1", "gaie-endpoint-2")
REAL_NODE = {
    "metadata": {"name": "node-a", "annotations": {}},
    "spec": {},
    "status": {"conditions": [{"type": "Ready", "status": "True"}]},
}


def advertised_queue(server) -> float:
    """What an endpoint picker reads: the pod's vllm:num_requests_waiting, over HTTP from its /metrics."""
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=5)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    return next(
        s.value
        for f in text_string_to_metric_families(text)
        if f.name == "vllm:num_requests_waiting"
        for s in f.samples
    )


class PickerGatewayStandIn:
    """A gateway whose endpoint picker chooses among the pool pods: ``metric`` scrapes each pod's advertised queue
    per request and picks the shortest (ties: first), ``uniform`` ignores metrics (round robin), ``fixed`` sends
    everything to the first pod whatever it advertises."""

    def __init__(self, pods: dict[str, Any], mode: str):
        self.pods, self.mode, self.turn = pods, mode, 0
        gw = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            wbufsize = -1  # one write per answer: no delayed-ACK stall per request

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                target = gw.pods[gw.pick()]
                conn = http.client.HTTPConnection("127.0.0.1", target.server_address[1], timeout=5)
                conn.request("POST", self.path, body=body, headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                self.send_response(resp.status)
                for k in ("Content-Type", "X-Aiconf-Version", "X-Aiconf-Pod"):
                    if resp.getheader(k):
                        self.send_header(k, resp.getheader(k))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def pick(self) -> str:
        names = sorted(self.pods)
        if self.mode == "metric":
            return min(names, key=lambda n: (advertised_queue(self.pods[n]), n))
        if self.mode == "uniform":
            self.turn += 1
            return names[self.turn % len(names)]
        return names[0]

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class RoutingKube(FakeKube):
    """A gateway that resolves pools, listening at the stand-in's port; a node that runs containers; pods Ready at
    once (or never, ``ready=False``); the pods' /aiconf/advertise reached through the 'pod proxy'."""

    def __init__(self, gateway_port: int, pods: dict[str, Any], ready: bool = True):
        super().__init__(route_status=ACCEPTED)
        self.port, self.pods, self.ready = gateway_port, pods, ready

    def list(self, api_version: str, kind: str, namespace: str | None = None, **kw: Any) -> list[dict]:
        if kind == "Node":
            return [copy.deepcopy(REAL_NODE)]
        found = super().list(api_version, kind, namespace, **kw)
        if kind == "Gateway":
            for gw in found:
                gw["spec"]["listeners"] = [{"name": "http", "protocol": "HTTP", "port": self.port}]
                gw["status"]["addresses"] = [{"type": "IPAddress", "value": "127.0.0.1"}]
        return found

    def wait_until(self, api_version, kind, namespace, predicate, timeout_s, what, **_: Any) -> list[dict]:
        status = {"conditions": [{"type": "Ready", "status": "True" if self.ready else "False"}]}
        pods = [{**o, "status": status} for o in self.created if o["kind"] == "Pod"]
        if not predicate(pods):
            raise WaitTimeout(what, timeout_s, "gaie-probe-pool-epp: ImagePullBackOff")
        return pods

    def raw(self, method: str, path: str, *a: Any, **kw: Any) -> Any:
        pod = path.split("/pods/")[1].split(":")[0]
        query = path.split("/proxy/")[1]
        conn = http.client.HTTPConnection("127.0.0.1", self.pods[pod].server_address[1], timeout=5)
        conn.request(method, "/" + query)
        data = conn.getresponse().read()
        conn.close()
        return json.loads(data)


@pytest.fixture
def pool():
    """The three pool pods, each the real TEST inference server advertising the check's default depths."""
    depths = load_parameters(None, {"checklist_version": "1.36"}).gaie_queue_depths
    servers = {
        name: inference_stub.make_server(
            "127.0.0.1",
            0,
            version="endpoint",
            model="m",
            pod=name,
            log=lambda _: None,
            queue_depth=d,
            kv_cache_usage=aii.kv_cache_for(d),
        )
        for name, d in zip(POOL_PODS, depths, strict=True)
    }
    for s in servers.values():
        threading.Thread(target=s.serve_forever, daemon=True).start()
    yield servers
    for s in servers.values():
        s.shutdown()
        s.server_close()


def run_routing(tmp_path, pool, mode: str, **overrides: Any):
    gw = PickerGatewayStandIn(pool, mode)
    try:
        kube = RoutingKube(gw.port, pool, ready=overrides.pop("ready", True))
        opts = {
            "gaie_epp_deploy": True,
            "gaie_routing_requests": 30,
            "gaie_route_timeout_s": 2,
            "gaie_settle_s": 1,
            **overrides,
        }
        return run_fake(tmp_path, kube, **opts), kube
    finally:
        gw.close()


def test_a_picker_that_follows_the_advertised_queue_passes(tmp_path, pool):
    result, kube = run_routing(tmp_path, pool, "metric")
    sub = result.subcheck("routing_follows_metrics")
    assert sub.verdict is Verdict.PASS and not sub.required, sub.summary
    assert result.subcheck("metric_aware_routing").verdict is Verdict.PASS
    assert result.verdict is Verdict.PASS, [(s.id, s.verdict, s.summary) for s in result.subchecks]
    # the shortest queue moved from endpoint-0 to endpoint-1 between the phases, and the requests followed it
    frame = display.series(result, "routing")
    winners = {int(r.phase): r.pod for r in frame.itertuples() if r.requests == 30}
    assert winners == {0: "gaie-endpoint-0", 1: "gaie-endpoint-1"}
    assert all(bool(r.shortest) == (r.requests == 30) for r in frame.itertuples())
    kinds = [o["kind"] for o in kube.created]
    assert {"ServiceAccount", "Role", "RoleBinding", "Service"} <= set(kinds) and kinds.count("Pod") == 4
    epp = next(o for o in kube.created if o["kind"] == "Pod" and o["metadata"]["name"] == "aiconf-probe-pool-epp")
    assert epp["spec"]["containers"][0]["image"] == "registry.k8s.io/gateway-api-inference-extension/epp:v1.4.0"
    assert any("not validated against a live" in n for n in result.notes)
    fig, ax = plt.subplots()
    aii.draw_routing(ax, result)
    assert len(ax.patches) == 6  # three pods, two phases
    plt.close(fig)


def test_a_picker_that_ignores_metrics_fails(tmp_path, pool):
    result, _ = run_routing(tmp_path, pool, "uniform")
    sub = result.subcheck("routing_follows_metrics")
    assert sub.verdict is Verdict.FAIL and "did not follow" in sub.summary, sub.summary
    assert result.subcheck("metric_aware_routing").verdict is Verdict.FAIL and result.verdict is Verdict.FAIL


def test_a_picker_that_sends_everything_to_one_pod_whatever_it_advertises_fails(tmp_path, pool):
    """FAIL, not UNKNOWN: after the rotation the favoured pod advertises the longest queue and still gets everything,
    which contradicts metric-aware routing (the first phase alone could not tell it from a correct picker)."""
    result, _ = run_routing(tmp_path, pool, "fixed")
    sub = result.subcheck("routing_follows_metrics")
    assert sub.verdict is Verdict.FAIL, sub.summary
    assert "phase 2: gaie-endpoint-0 (queue 30): 30" in sub.summary
    assert result.verdict is Verdict.FAIL


def test_without_an_endpoint_picker_routing_is_unknown(tmp_path, pool):
    result, kube = run_routing(tmp_path, pool, "metric", gaie_epp_deploy=False)
    sub = result.subcheck("routing_follows_metrics")
    assert sub.verdict is Verdict.UNKNOWN and "gaie_epp_deploy" in sub.summary
    assert result.subcheck("metric_aware_routing").verdict is Verdict.UNKNOWN and result.verdict is Verdict.UNKNOWN
    kinds = [o["kind"] for o in kube.created]
    assert "InferencePool" in kinds and not {"Pod", "Role", "RoleBinding", "ServiceAccount"} & set(kinds)


def test_an_endpoint_picker_that_never_gets_ready_is_unknown(tmp_path, pool):
    result, _ = run_routing(tmp_path, pool, "metric", ready=False)
    sub = result.subcheck("routing_follows_metrics")
    assert sub.verdict is Verdict.UNKNOWN and "ImagePullBackOff" in sub.summary
    assert result.verdict is Verdict.UNKNOWN


def test_a_measured_failure_outweighs_a_passing_report(tmp_path, pool):
    path = tmp_path / "report.yaml"
    path.write_text(yaml.safe_dump(report()))
    result, _ = run_routing(tmp_path, pool, "uniform", gaie_conformance_report=str(path))
    sub = result.subcheck("metric_aware_routing")
    assert sub.verdict is Verdict.FAIL and "success" in sub.summary and "measured" in sub.summary


def test_the_routing_judgement_needs_the_shortest_queue_clearly_ahead():
    depths = {"a": 0, "b": 10, "c": 30}

    def rows(**counts: int) -> list[dict]:
        return [{"status": 200, "pod": pod} for pod, n in counts.items() for _ in range(n)]

    assert aii.judge_phase(0, rows(a=60), depths, 0.99, 0.5).passed
    assert aii.judge_phase(0, rows(a=50, b=6, c=4), depths, 0.99, 0.5).passed
    assert not aii.judge_phase(0, rows(a=20, b=20, c=20), depths, 0.99, 0.5).passed  # even split
    assert not aii.judge_phase(0, rows(a=36, b=24), depths, 0.99, 0.5).passed  # ahead, but not clearly
    assert not aii.judge_phase(0, rows(c=60), depths, 0.99, 0.5).passed  # the longest queue favoured
    failed = aii.judge_phase(0, rows(a=59) + [{"status": 503, "pod": "", "error": ""}], depths, 0.99, 0.5)
    assert not failed.passed and "HTTP 503 x1" in failed.describe()
    assert not aii.judge_phase(0, [], depths, 0.99, 0.5).passed
    assert aii.phase_depths([0, 10, 30], 1) == [30, 0, 10]


def test_the_endpoint_picker_config_scores_on_load_only():
    config = yaml.safe_load(aii.epp_config())
    assert config["kind"] == "EndpointPickerConfig"
    refs = [x["pluginRef"] for x in config["schedulingProfiles"][0]["plugins"]]
    assert "queue-scorer" in refs and "prefix-cache-scorer" not in refs


def test_the_opt_in_role_lets_the_toolkit_create_the_pickers_role_without_escalating():
    """RBAC refuses a Role granting more than its creator holds: every rule of the picker's Role must be held by the
    main role plus rbac/aiconf-gaie-epp.yaml, which must also allow creating the objects the check makes for it."""
    root = Path(aii.__file__).resolve().parents[2] / "rbac"
    held = [
        (group, resource, verb)
        for name in ("aiconf-clusterrole.yaml", "aiconf-gaie-epp.yaml")
        for rule in yaml.safe_load((root / name).read_text())["rules"]
        for group in rule.get("apiGroups", [])
        for resource in rule.get("resources", [])
        for verb in rule["verbs"]
    ]
    p = load_parameters(None, {"checklist_version": "1.36"})
    objects = aii.epp_objects("pool", "ns", "img", p, None)
    role = next(o for o in objects if o["kind"] == "Role")
    wanted = {
        (g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]
    }
    plural = {"ServiceAccount": "serviceaccounts", "Role": "roles", "RoleBinding": "rolebindings"}
    plural |= {"Pod": "pods", "Service": "services"}
    group = {"Role": "rbac.authorization.k8s.io", "RoleBinding": "rbac.authorization.k8s.io"}
    wanted |= {(group.get(o["kind"], ""), plural[o["kind"]], "create") for o in objects}
    assert wanted - set(held) == set()
    main_only = {
        (g, r, v)
        for rule in yaml.safe_load((root / "aiconf-clusterrole.yaml").read_text())["rules"]
        for g in rule.get("apiGroups", [])
        for r in rule.get("resources", [])
        for v in rule["verbs"]
    }
    assert ("rbac.authorization.k8s.io", "roles", "create") not in main_only  # the least-privilege role stays so


def test_the_warm_up_lasts_until_the_named_pod_answers_and_is_bounded(pool):
    from aiconf.checks.ai_inference import send_requests

    gw = PickerGatewayStandIn(pool, "uniform")
    try:
        base = {"url": f"http://127.0.0.1:{gw.port}", "host": "h", "path": "/v1/completions", "model": "m"}
        batch = {"kind": "measured", "count": 2, "headers": {}, "warmup_pod": "gaie-endpoint-2"}
        rows = send_requests({**base, "timeout_s": 2, "warmup_s": 5, "budget_s": 5, "batches": [batch]})
        warm = [r for r in rows if r["kind"] == "warmup"]
        assert warm[-1]["pod"] == "gaie-endpoint-2" and all(r["pod"] != "gaie-endpoint-2" for r in warm[:-1])
        never = {**batch, "warmup_pod": "no-such-pod"}
        rows = send_requests({**base, "timeout_s": 2, "warmup_s": 0.5, "budget_s": 5, "batches": [never]})
        assert 1 <= sum(r["kind"] == "warmup" for r in rows) <= 4 and sum(r["kind"] == "measured" for r in rows) == 2
    finally:
        gw.close()
