"""ai_inference without a cluster: the exact binomial statistics, the split and header judgements, the request client
(against the real TEST inference server on 127.0.0.1, in-process and as the client pod's ``python3 -c`` script), and
whole runs against a fake API whose Gateway address is a small local gateway stand-in that routes honestly, ignores
the weights, or ignores the header match."""

from __future__ import annotations

import copy
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from aiconf.checks import ai_inference as ai
from aiconf.errors import WaitTimeout
from aiconf.execute import run_check
from aiconf.model import Verdict
from aiconf.params import Params, load_parameters
from aiconf.workloads import inference_stub

# --- statistics ----------------------------------------------------------------------------------------------------


def test_clopper_pearson_closed_forms_at_the_edges():
    # closed forms at the edges: k = 0 -> upper = 1 - (alpha/2)^(1/n); k = n -> lower = (alpha/2)^(1/n)
    assert ai.clopper_pearson(0, 10, 0.95) == (0.0, pytest.approx(1 - 0.025 ** (1 / 10), abs=1e-9))
    assert ai.clopper_pearson(50, 50, 0.99) == (pytest.approx(0.005 ** (1 / 50), abs=1e-9), 1.0)
    assert ai.clopper_pearson(0, 0, 0.99) == (0.0, 1.0)


def test_clopper_pearson_bounds_put_alpha_half_in_each_tail():
    for k, n in ((1, 7), (13, 60), (161, 200), (39, 200)):
        lo, hi = ai.clopper_pearson(k, n, 0.99)
        assert 1 - ai.binom_cdf(k - 1, n, lo) == pytest.approx(0.005, rel=1e-6)
        assert ai.binom_cdf(k, n, hi) == pytest.approx(0.005, rel=1e-6)
        assert lo < k / n < hi


def test_exact_binomial_test_matches_published_values():
    # 7 of 20 at p = 0.5: by symmetry 2 * P(X <= 7) = 0.2631760 (R's binom.test gives the same)
    assert ai.binom_test(7, 20, 0.5) == pytest.approx(0.2631760, abs=1e-6)
    assert ai.binom_test(40, 200, 0.2) == pytest.approx(1.0)
    assert ai.binom_test(0, 200, 0.2) == pytest.approx(0.8**200, rel=1e-6)  # nothing is less likely than 0 of 200
    assert ai.binom_test(3, 0, 0.2) == 1.0


# --- judgements ----------------------------------------------------------------------------------------------------


def rows(kind: str, **counts: int) -> list[dict]:
    out = []
    for version, n in counts.items():
        for _ in range(n):
            if version == "refused":
                out.append(
                    {"kind": kind, "status": 0, "version": "", "error": "ConnectionRefusedError", "latency_ms": None}
                )
            elif version == "http503":
                out.append({"kind": kind, "status": 503, "version": "", "error": "", "latency_ms": 1.0})
            else:
                out.append({"kind": kind, "status": 200, "version": version, "error": "", "latency_ms": 1.0})
    return out


def test_a_deterministic_80_20_split_passes():
    j = ai.judge_split(rows("split", v1=160, v2=40), 0.2, 0.99, 0.0)
    assert j.passed and j.observed == 0.2 and j.failures == {}


@pytest.mark.parametrize(
    ("counts", "why"),
    [
        ({"v1": 200}, "v2 never served"),
        ({"v2": 200}, "v1 never served"),
        ({"v1": 100, "v2": 100}, "50/50 is not 80/20"),
        ({"v1": 159, "v2": 40, "http503": 1}, "one request not answered by a backend"),
        ({"refused": 200}, "nothing answered"),
        ({}, "nothing sent"),
    ],
    ids=["weights-ignored", "only-canary", "even-split", "one-503", "unreachable", "empty"],
)
def test_splits_that_must_not_pass(counts, why):
    j = ai.judge_split(rows("split", **counts), 0.2, 0.99, 0.0)
    assert not j.passed, why


def test_tolerance_accepts_a_share_just_outside_the_interval():
    # 160 of 1000 is outside the 99 % interval around 20 % ...
    j = ai.judge_split(rows("split", v1=840, v2=160), 0.2, 0.99, 0.0)
    assert not j.consistent and j.interval[1] < 0.2
    # ... but within a 5-point tolerance
    assert ai.judge_split(rows("split", v1=840, v2=160), 0.2, 0.99, 0.05).passed


def test_header_routing_must_be_exact():
    assert ai.judge_header(rows("header", v2=50), "v2") == (True, {"v2": 50})
    ok, counts = ai.judge_header(rows("header", v2=49, v1=1), "v2")
    assert not ok and counts == {"v1": 1, "v2": 49}
    assert not ai.judge_header(rows("header", v2=49, http503=1), "v2")[0]
    assert not ai.judge_header([], "v2")[0]


# --- reading the cluster -------------------------------------------------------------------------------------------


def test_class_rows_say_why_a_class_is_not_accepted():
    classes = [
        {"metadata": {"name": "b"}, "spec": {"controllerName": "example.com/nobody"}},
        {
            "metadata": {"name": "a"},
            "spec": {"controllerName": "traefik.io/gateway-controller"},
            "status": {"conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted"}]},
        },
    ]
    rows_ = ai.class_rows(classes)
    assert [r["gateway_class"] for r in rows_] == ["a", "b"]
    assert rows_[0]["accepted"] and not rows_[1]["accepted"]
    assert "no controller" in rows_[1]["reason"]


def test_route_host_fits_the_listener():
    assert ai.route_host({"hostname": "*.example.com"}, "ns") == "ns.example.com"
    assert ai.route_host({"hostname": "infer.example.com"}, "ns") == "infer.example.com"
    assert ai.route_host({}, "ns") == "ns.inference.aiconf.test"


def test_route_status_is_read_per_parent():
    route = {
        "metadata": {"namespace": "ns"},
        "status": {
            "parents": [
                {
                    "parentRef": {"name": "other", "namespace": "x"},
                    "conditions": [{"type": "Accepted", "status": "True"}],
                },
                {
                    "parentRef": {"name": "gw"},  # namespace defaults to the route's
                    "conditions": [
                        {"type": "Accepted", "status": "True"},
                        {"type": "ResolvedRefs", "status": "False", "reason": "BackendNotFound", "message": "no svc"},
                    ],
                },
            ]
        },
    }
    assert not ai.route_ready(route, ("ns", "gw"))
    assert "ResolvedRefs=False (BackendNotFound: no svc)" in ai.condition_text(
        ai.route_parent_status(route, ("ns", "gw"))
    )
    route["status"]["parents"][1]["conditions"][1]["status"] = "True"
    assert ai.route_ready(route, ("ns", "gw")) and not ai.route_ready(route, ("ns", "missing"))


def test_route_changes_name_weights_and_header_matches_admission_changed():
    p = fast_params()
    intended = ai.http_route("r", "ns", ("g", "gw"), "h", p)
    stored = copy.deepcopy(intended)
    stored["spec"]["rules"][0]["backendRefs"][0]["weight"] = 1  # the API server's default: not a change
    stored["spec"]["rules"][0]["matches"][0]["path"] = {"type": "PathPrefix", "value": "/"}
    assert ai.route_changes(intended, stored) == []
    stored["spec"]["rules"][1]["backendRefs"][1]["weight"] = 0
    stored["spec"]["rules"][0]["matches"][0]["headers"][0]["name"] = "x-other"
    changes = ai.route_changes(intended, stored)
    assert any("weight 20 stored as inference-v2 weight 0" in c for c in changes)
    assert any("header matches" in c for c in changes)


def test_process_nodes_skip_kwok_not_ready_and_prefer_untainted():
    def node(name, *, kwok=False, ready=True, taints=None):
        return {
            "metadata": {"name": name, "annotations": {"kwok.x-k8s.io/node": "fake"} if kwok else {}},
            "spec": {"taints": taints or []},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
        }

    nodes = [
        node("a-tainted", taints=[{"key": "t", "effect": "NoSchedule"}]),
        node("b"),
        node("c", kwok=True),
        node("d", ready=False),
    ]
    assert [n["metadata"]["name"] for n in ai.process_nodes(nodes)] == ["b", "a-tainted"]
    pod = ai.backend_pod("v1", "ns", fast_params(), nodes[0])
    assert pod["spec"]["nodeSelector"] == {"kubernetes.io/hostname": "a-tainted"}
    assert pod["spec"]["tolerations"] == [{"key": "t", "operator": "Exists", "effect": "NoSchedule"}]


def test_mesh_detection_by_api_group_and_gamma_routes():
    assert ai.detect_mesh(["apps", "gateway.networking.k8s.io"], []) == []
    gamma = {"metadata": {"namespace": "ns", "name": "r"}, "spec": {"parentRefs": [{"kind": "Service", "name": "svc"}]}}
    found = ai.detect_mesh(["networking.istio.io", "security.istio.io"], [gamma])
    assert found[0] == "Istio (networking.istio.io)" and "GAMMA" in found[-1]


def test_backend_and_client_pods_run_restricted():
    p = fast_params()
    for pod in (ai.backend_pod("v2", "ns", p, None), ai.client_pod("ns", {"batches": []}, p, None)):
        spec = pod["spec"]
        assert (
            spec["securityContext"]["runAsNonRoot"]
            and spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        )
        c = spec["containers"][0]
        assert c["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        }
        assert not spec["automountServiceAccountToken"]


# --- the request client against the real TEST inference server ----------------------------------------------------


def serve(server) -> ThreadingHTTPServer:
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def stubs():
    servers = {
        v: serve(inference_stub.make_server("127.0.0.1", 0, version=v, model="m", pod=f"pod-{v}", log=lambda _: None))
        for v in ai.VERSIONS
    }
    yield servers
    for s in servers.values():
        s.shutdown()
        s.server_close()


class GatewayStandIn:
    """A local data plane for the fake cluster: the header rule and a smooth weighted round-robin (as Traefik's),
    optionally ignoring the weights (everything to v1) or the header match (header requests split too)."""

    def __init__(
        self, stubs: dict, mode: str = "honest", header: str = "x-gateway-model-name", value: str = "aiconf-demo-canary"
    ):
        self.stubs, self.mode = stubs, mode
        self.current = {"v1": 0, "v2": 0}
        self.lock = threading.Lock()
        gw = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get(header) == value and gw.mode != "ignore_header":
                    version = "v2"
                else:
                    version = gw.pick()
                if gw.mode == "impostor":  # answers in the backends' name without asking them
                    data = json.dumps({"aiconf": {"version": version}}).encode()
                    self.send_response(200)
                    self.send_header("X-Aiconf-Version", version)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                conn = http.client.HTTPConnection("127.0.0.1", gw.stubs[version].server_address[1], timeout=5)
                conn.request("POST", self.path, body=body, headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                self.send_response(resp.status)
                for k in ("Content-Type", "X-Aiconf-Version"):
                    if resp.getheader(k):
                        self.send_header(k, resp.getheader(k))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.server = serve(ThreadingHTTPServer(("127.0.0.1", 0), Handler))

    def pick(self) -> str:
        weights = {"v1": 100, "v2": 0} if self.mode == "ignore_weights" else {"v1": 80, "v2": 20}
        with self.lock:
            for v, w in weights.items():
                self.current[v] += w
            best = max(self.current, key=self.current.get)
            self.current[best] -= sum(weights.values())
            return best

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def plan(url: str, split: int = 10, header: int = 5, warmup_s: float = 2) -> dict:
    return {
        "url": url,
        "host": "h",
        "path": "/v1/chat/completions",
        "model": "m",
        "timeout_s": 2,
        "warmup_s": warmup_s,
        "budget_s": 30,
        "batches": [
            {"kind": "split", "count": split, "headers": {}},
            {
                "kind": "header",
                "count": header,
                "headers": {"x-gateway-model-name": "aiconf-demo-canary"},
                "model": "aiconf-demo-canary",
            },
        ],
    }


def test_the_client_counts_versions_through_a_gateway(stubs):
    gw = GatewayStandIn(stubs)
    try:
        out = ai.send_requests(plan(gw.url, split=50, header=10))
    finally:
        gw.close()
    measured = [r for r in out if r["kind"] != "warmup"]
    assert len(measured) == 60 and all(r["status"] == 200 and r["latency_ms"] is not None for r in measured)
    assert sum(r["version"] == "v2" for r in measured if r["kind"] == "split") == 10
    assert {r["version"] for r in measured if r["kind"] == "header"} == {"v2"}
    assert [r["kind"] for r in out if r["kind"] == "warmup"] == ["warmup", "warmup"]  # one per rule, answered at once


def test_the_client_reports_an_unreachable_gateway_as_errors_bounded_in_time():
    port = free_port()
    out = ai.send_requests(plan(f"http://127.0.0.1:{port}", split=3, header=2, warmup_s=0.5))
    measured = [r for r in out if r["kind"] != "warmup"]
    assert len(measured) == 5 and all(r["error"] and r["status"] == 0 for r in measured)
    assert all(ai.outcome(r).startswith("error:") for r in measured)
    assert 1 <= sum(r["kind"] == "warmup" for r in out) <= 10


def free_port() -> int:
    """A local port nothing listens on (bound, then closed again)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_client_pod_script_runs_stdlib_only(stubs):
    """The pod's ``python3 -c`` program, run as a separate interpreter: JSON lines, one per request."""
    gw = GatewayStandIn(stubs)
    try:
        cmd = ai.client_pod_command()
        assert cmd[:2] == ["python3", "-c"]
        env = {"PLAN": json.dumps(plan(gw.url, split=5, header=2)), "PATH": os.environ.get("PATH", "")}
        proc = subprocess.run(
            [sys.executable, "-I", "-c", cmd[2]], check=False, env=env, capture_output=True, text=True, timeout=60
        )
    finally:
        gw.close()
    assert proc.returncode == 0, proc.stderr
    out = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["kind"] for r in out if r["kind"] != "warmup"] == ["split"] * 5 + ["header"] * 2
    assert all(r["version"] == "v2" for r in out if r["kind"] == "header")


# --- whole runs against a fake API ---------------------------------------------------------------------------------

CRDS = {
    f"{plural}.gateway.networking.k8s.io": {
        "metadata": {
            "name": f"{plural}.gateway.networking.k8s.io",
            "annotations": {
                "gateway.networking.k8s.io/bundle-version": "v1.6.3",
                "gateway.networking.k8s.io/channel": "standard",
            },
        },
        "spec": {"versions": [{"name": "v1", "served": True}]},
        "status": {
            "conditions": [{"type": "Established", "status": "True"}, {"type": "NamesAccepted", "status": "True"}]
        },
    }
    for plural in ai.CORE_CRDS
}
REAL_NODE = {
    "metadata": {"name": "node-a", "annotations": {}},
    "spec": {"taints": [{"key": "sandbox.aiconf.io/real-node", "effect": "NoSchedule"}]},
    "status": {"conditions": [{"type": "Ready", "status": "True"}]},
}
KWOK_NODE = {
    "metadata": {"name": "kwok-0", "annotations": {"kwok.x-k8s.io/node": "fake"}},
    "spec": {},
    "status": {"conditions": [{"type": "Ready", "status": "True"}]},
}


def gateway_class(name: str, controller: str, accepted: bool) -> dict:
    gc = {"metadata": {"name": name}, "spec": {"controllerName": controller}}
    if accepted:
        gc["status"] = {"conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted"}]}
    return gc


class FakeKube:
    """Gateway API discovery from documents; the check's Gateway gets ``gateway_url``'s address when ``programmed``;
    routes are Accepted; pods become Ready at once."""

    def __init__(
        self,
        url: str,
        stubs: dict | None = None,
        *,
        served: bool = True,
        classes: list | None = None,
        programmed: bool = True,
        nodes: list | None = None,
    ):
        self.url, self.served, self.programmed, self.stubs = url, served, programmed, stubs or {}
        self.classes = (
            classes if classes is not None else [gateway_class("traefik", "traefik.io/gateway-controller", True)]
        )
        self.nodes = nodes if nodes is not None else [KWOK_NODE, REAL_NODE]
        self.created: list[dict] = []

    def version(self) -> dict:
        return {"gitVersion": "v1.36.0"}

    def served_versions(self, group: str) -> list[str]:
        return ["v1", "v1beta1"] if self.served and group == ai.GROUP else []

    def api_resources(self, gv: str) -> list[dict]:
        if not self.served or gv != ai.GW_V1:
            return []
        return [{"name": f"{k.lower()}s", "kind": k} for k in ("GatewayClass", "Gateway", "HTTPRoute", "GRPCRoute")]

    def has_kind(self, api_version: str, kind: str) -> bool:
        return any(r["kind"] == kind for r in self.api_resources(api_version))

    def raw(self, method: str, path: str, *a: Any, **k: Any) -> Any:
        if path.endswith("/proxy/metrics"):  # a backend pod's /metrics: the local TEST server of that version
            version = path.split("/pods/inference-")[1].split(":")[0]
            if version not in self.stubs:
                raise ApiException(status=503, reason="Service Unavailable")
            return self.stubs[version].stats.exposition()
        assert path == "/apis", path
        return {"groups": [{"name": "apps"}] + ([{"name": ai.GROUP}] if self.served else [])}

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict | None:
        if kind == "CustomResourceDefinition":
            return copy.deepcopy(CRDS.get(name)) if self.served else None
        if kind == "Node":
            return next((copy.deepcopy(n) for n in self.nodes if n["metadata"]["name"] == name), None)
        return None

    def list(self, api_version: str, kind: str, namespace: str | None = None, **_: Any) -> list[dict]:
        if kind == "GatewayClass":
            return copy.deepcopy(self.classes)
        if kind == "Node":
            return copy.deepcopy(self.nodes)
        return []

    def create(self, obj: dict, **_: Any) -> dict:
        self.created.append(copy.deepcopy(obj))
        return copy.deepcopy(obj)

    def kinds(self) -> list[str]:
        return [o["kind"] for o in self.created]

    def wait_until(self, api_version, kind, namespace, predicate, timeout_s, what, **_: Any) -> list[dict]:
        pods = [
            {**o, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
            for o in self.created
            if o["kind"] == "Pod"
        ]
        assert predicate(pods), what
        return pods

    def wait_for(self, api_version, kind, name, namespace, predicate, timeout_s, what, describe=None) -> dict:
        obj = next(o for o in self.created if o["kind"] == kind and o["metadata"]["name"] == name)
        obj = copy.deepcopy(obj)
        if kind == "Gateway":
            port = int(self.url.rsplit(":", 1)[1])
            obj["spec"]["listeners"][0]["port"] = port  # the stand-in listens where it can
            if self.programmed:
                obj["status"] = {
                    "addresses": [{"type": "IPAddress", "value": "127.0.0.1"}],
                    "conditions": [{"type": "Accepted", "status": "True"}, {"type": "Programmed", "status": "True"}],
                }
            else:
                obj["status"] = {
                    "conditions": [
                        {"type": "Accepted", "status": "False", "reason": "ListenersNotValid", "message": "port"}
                    ]
                }
        if kind == "HTTPRoute":
            parent = obj["spec"]["parentRefs"][0]
            obj["status"] = {
                "parents": [
                    {
                        "parentRef": parent,
                        "conditions": [
                            {"type": "Accepted", "status": "True"},
                            {"type": "ResolvedRefs", "status": "True"},
                        ],
                    }
                ]
            }
        if not predicate(obj):
            raise WaitTimeout(what, timeout_s, describe(obj) if describe else "")
        return obj

    def delete(self, *a: Any, **k: Any) -> bool:
        return True

    def delete_namespace(self, name: str, timeout_s: float = 0) -> None:
        pass

    def events(self, namespace: str) -> list[dict]:
        return []

    def pod_logs(self, *a: Any, **k: Any) -> str:
        return ""


def fast_params(**overrides: Any) -> Params:
    base = load_parameters(None, {"checklist_version": "1.36"}).to_dict()
    base.update(inference_requests=50, inference_header_requests=10, inference_route_timeout_s=2, **overrides)
    return Params(base)


def run_fake(tmp_path: Path, kube: FakeKube, **overrides: Any):
    return run_check(
        "ai_inference", fast_params(**overrides), kube=kube, run_dir=tmp_path / "run", progress=lambda m: None
    )


@pytest.fixture
def gateway(stubs):
    made: list[GatewayStandIn] = []

    def make(mode: str = "honest") -> GatewayStandIn:
        made.append(GatewayStandIn(stubs, mode))
        return made[-1]

    yield make
    for g in made:
        g.close()


def gw_args(stand_in: GatewayStandIn) -> tuple[str, dict]:
    return stand_in.url, stand_in.stubs


def verdicts(result) -> dict[str, Verdict]:
    return {s.id: s.verdict for s in result.subchecks}


def test_an_implementation_that_splits_and_routes_passes(tmp_path, gateway):
    kube = FakeKube(*gw_args(gateway()))
    result = run_fake(tmp_path, kube)
    assert result.verdict is Verdict.PASS, (result.reason, [(s.id, s.verdict, s.summary) for s in result.subchecks])
    assert kube.kinds().count("Pod") == 2 and "Gateway" in kube.kinds() and "HTTPRoute" in kube.kinds()
    pods = [o for o in kube.created if o["kind"] == "Pod"]
    assert {p["spec"]["nodeSelector"]["kubernetes.io/hostname"] for p in pods} == {"node-a"}  # never the kwok node
    assert result.metrics["traffic"]["split"]["to_v2"] == 10 and result.metrics["client"]["mode"] == "runner"
    assert result.proves and verdicts(result)["mesh_integration"] is Verdict.NOT_APPLICABLE
    for chart in ("split", "latency"):
        import matplotlib.pyplot as plt

        from aiconf import registry

        fig, ax = plt.subplots()
        registry.get("ai_inference").charts[chart](ax, result)
        assert ax.has_data(), chart
        plt.close(fig)


def test_weights_ignored_by_the_data_plane_fail(tmp_path, gateway):
    result = run_fake(tmp_path, FakeKube(*gw_args(gateway("ignore_weights"))))
    v = verdicts(result)
    assert result.verdict is Verdict.FAIL and v["route_accepted"] is Verdict.PASS
    assert v["weighted_split"] is Verdict.FAIL and v["header_routing"] is Verdict.PASS
    assert "v2 never received a request" in result.subcheck("weighted_split").summary


def test_a_header_rule_ignored_by_the_data_plane_fails(tmp_path, gateway):
    result = run_fake(tmp_path, FakeKube(*gw_args(gateway("ignore_header"))))
    v = verdicts(result)
    assert (
        result.verdict is Verdict.FAIL and v["header_routing"] is Verdict.FAIL and v["weighted_split"] is Verdict.PASS
    )


def test_an_unreachable_gateway_fails_the_traffic_not_the_toolkit(tmp_path):
    port = free_port()
    result = run_fake(tmp_path, FakeKube(f"http://127.0.0.1:{port}"), inference_client="runner")
    v = verdicts(result)
    assert (
        result.verdict is Verdict.FAIL and v["weighted_split"] is Verdict.FAIL and v["header_routing"] is Verdict.FAIL
    )
    assert "none of 50 requests was answered" in result.subcheck("weighted_split").summary
    assert any("never served" in n for n in result.notes)


def test_no_accepted_gateway_class_fails_before_creating_anything(tmp_path, gateway):
    kube = FakeKube(*gw_args(gateway()), classes=[gateway_class("orphan", "example.com/nobody", False)])
    result = run_fake(tmp_path, kube)
    v = verdicts(result)
    assert result.verdict is Verdict.FAIL and v["gateway_class_accepted"] is Verdict.FAIL
    assert all(
        v[s] is Verdict.UNKNOWN for s in ("gateway_programmed", "route_accepted", "weighted_split", "header_routing")
    )
    assert kube.created == []


def test_a_configured_class_that_is_not_accepted_fails_even_when_another_is(tmp_path, gateway):
    classes = [
        gateway_class("good", "traefik.io/gateway-controller", True),
        gateway_class("orphan", "example.com/nobody", False),
    ]
    result = run_fake(tmp_path, FakeKube(*gw_args(gateway()), classes=classes), inference_gateway_class="orphan")
    assert verdicts(result)["gateway_class_accepted"] is Verdict.FAIL
    assert "example.com/nobody" in result.subcheck("gateway_class_accepted").observed


def test_a_gateway_never_programmed_fails(tmp_path, gateway):
    result = run_fake(tmp_path, FakeKube(*gw_args(gateway()), programmed=False))
    v = verdicts(result)
    assert result.verdict is Verdict.FAIL and v["gateway_programmed"] is Verdict.FAIL
    assert "ListenersNotValid" in result.subcheck("gateway_programmed").summary
    assert v["weighted_split"] is Verdict.UNKNOWN


def test_no_gateway_api_fails(tmp_path, gateway):
    result = run_fake(tmp_path, FakeKube(*gw_args(gateway()), served=False))
    v = verdicts(result)
    assert result.verdict is Verdict.FAIL and v["gateway_api_served"] is Verdict.FAIL
    assert all(v[s] is not Verdict.PASS for s in ai.SUBCHECKS)
    assert set(v) == set(ai.SUBCHECKS)


def test_only_simulated_nodes_cannot_demonstrate_it(tmp_path, gateway):
    result = run_fake(tmp_path, FakeKube(*gw_args(gateway()), nodes=[KWOK_NODE]))
    assert result.verdict is Verdict.UNKNOWN
    assert "no Ready node runs containers" in result.subcheck("weighted_split").summary


def test_preflight_names_what_is_missing(gateway):
    p = fast_params()
    assert ai.preflight(FakeKube("http://127.0.0.1:1", served=False), p)[0] is False
    ok, why = ai.preflight(FakeKube("http://127.0.0.1:1", classes=[gateway_class("o", "x/y", False)]), p)
    assert not ok and "Accepted" in why
    assert ai.preflight(FakeKube("http://127.0.0.1:1", nodes=[KWOK_NODE]), p)[0] is False
    assert ai.preflight(FakeKube("http://127.0.0.1:1"), p) == (True, "Accepted GatewayClass(es): traefik")


def test_backend_counters_match_what_the_client_saw(tmp_path, gateway):
    result = run_fake(tmp_path, FakeKube(*gw_args(gateway())))
    sub = result.subcheck("backends_counted")
    assert sub.verdict is Verdict.PASS and not sub.required, sub.summary
    counted = {
        v: (int(a), int(b)) for v, a, b in re.findall(r"(v\d): pod counted (\d+), client saw (\d+)", sub.summary)
    }
    assert set(counted) == {"v1", "v2"} and all(a == b for a, b in counted.values()), sub.summary
    assert counted["v1"][0] >= 40 and counted["v2"][0] >= 20  # 40 + 10 measured, plus the warm-up answers


def test_a_gateway_answering_in_the_backends_name_is_caught_by_their_counters(tmp_path, gateway):
    result = run_fake(tmp_path, FakeKube(*gw_args(gateway("impostor"))))
    sub = result.subcheck("backends_counted")
    assert sub.verdict is Verdict.FAIL and "pod counted 0" in sub.summary, sub.summary
    assert verdicts(result)["weighted_split"] is Verdict.PASS  # the header says v1/v2: only the counters tell


def test_served_count_reads_the_stub_counter(stubs):
    server = stubs["v1"]
    assert ai.served_count(server.stats.exposition()) == 0
    server.stats.started()
    server.stats.finished("m", 200, 0.01, 1, 1)
    server.stats.started()
    server.stats.finished("m", 400, 0.01, 0, 0)
    assert ai.served_count(server.stats.exposition()) == 2
    assert ai.judge_counted({"v1": 2, "v2": 0}, {"v1": 2, "v2": 0})[0] is Verdict.PASS
    assert ai.judge_counted({"v1": 2, "v2": 0}, {"v1": 2, "v2": None})[0] is Verdict.UNKNOWN
    assert ai.judge_counted({"v1": 2, "v2": 1}, {"v1": 2, "v2": 0})[0] is Verdict.FAIL
