"""disaggregated_inference without a cluster: role detection, route finding, and the whole check against a fake
client and a local HTTP server standing in for the gateway (127.0.0.1 only)."""

from __future__ import annotations

import copy
import http.server
import json
import threading
from typing import Any

import pytest

from aiconf.checks import disaggregated_inference as di
from aiconf.errors import WaitTimeout
from aiconf.execute import run_check
from aiconf.model import Verdict
from aiconf.params import load_parameters

# --- pure helpers ----------------------------------------------------------------------------------------------------


def pod(name: str, labels: dict[str, str], *, ready: bool = True, node: str = "n1", ns: str = "llm") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"nodeName": node},
        "status": {
            "phase": "Running" if ready else "Pending",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({"llm-d.ai/role": "prefill"}, ("prefill", "llm-d.ai/role")),
        (
            {"nvidia.com/dynamo-sub-component-type": "VllmDecodeWorker"},
            ("decode", "nvidia.com/dynamo-sub-component-type"),
        ),
        ({"llm-d.ai/role": "both"}, None),
        ({"llm-d.ai/role": "prefill-decode"}, None),  # llm-d's aggregated server: both phases in one pod
        ({"app": "prefill-cache"}, None),  # a key not in disagg_role_labels never counts
    ],
    ids=["llm-d", "dynamo-style", "neither-role", "aggregated", "unlisted-key"],
)
def test_role_of(labels, expected):
    assert di.role_of(pod("p", labels), ["llm-d.ai/role", "nvidia.com/dynamo-sub-component-type"]) == expected


def test_pool_selector_reads_v1_and_v1alpha2_shapes():
    assert di.pool_selector({"spec": {"selector": {"matchLabels": {"a": "b"}}}}) == {"a": "b"}
    assert di.pool_selector({"spec": {"selector": {"a": "b"}}}) == {"a": "b"}
    assert di.selects({}, pod("p", {"a": "b"})) is False  # an empty selector selects nothing here


def test_completion_text_of_completion_and_chat_answers():
    assert di.completion_text(json.dumps({"choices": [{"text": "hi"}]})) == "hi"
    assert di.completion_text(json.dumps({"choices": [{"message": {"content": "yo"}}]})) == "yo"
    assert di.completion_text("not json") == "" and di.completion_text(json.dumps({"choices": []})) == ""


# --- the check against a fake cluster --------------------------------------------------------------------------------


class Gateway:
    """A local HTTP server standing in for a Gateway in front of a P/D deployment: each completion is 'logged' by
    the roles listed in ``reaches`` (what a working deployment does: both)."""

    def __init__(self, reaches: tuple[str, ...] = ("prefill", "decode"), status: int = 200):
        self.logs: dict[str, list[str]] = {"prefill": [], "decode": []}
        gateway = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # /v1/models
                self._answer(200, {"data": [{"id": "tiny"}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                rid = self.headers.get("X-Request-Id", "")
                for role in reaches:
                    gateway.logs[role].append(json.dumps({"request_id": rid, "model": body["model"], "role": role}))
                self._answer(status, {"choices": [{"text": "hello there"}]})

            def _answer(self, code, doc):
                data = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.port = self.server.server_address[1]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class FakeKube:
    def __init__(
        self,
        pods: list[dict],
        *,
        groups: dict[str, list[str]] | None = None,
        gateway: Gateway | None = None,
        route: bool = True,
        backend: str = "decode",
        route_namespace: str = "llm",
    ):
        self.pods, self.groups, self.gateway, self.with_route = pods, groups or {}, gateway, route
        self.backend, self.route_namespace = backend, route_namespace

    def version(self) -> dict:
        return {"gitVersion": "v1.36.0"}

    def served_versions(self, group: str) -> list[str]:
        return ["v1"] if group in self.groups or (group == "gateway.networking.k8s.io" and self.gateway) else []

    def api_resources(self, gv: str) -> list[dict]:
        return [{"kind": k, "name": k.lower() + "s"} for k in self.groups.get(gv.split("/")[0], [])]

    def has_kind(self, api_version: str, kind: str) -> bool:
        return kind == "HTTPRoute" and self.gateway is not None

    def list(self, api_version: str, kind: str, namespace: str | None = None, **_: Any) -> list[dict]:
        if kind == "Pod":
            return copy.deepcopy(self.pods)
        if kind == "HTTPRoute" and self.with_route:
            return [self.route()]
        return []

    def route(self) -> dict:
        return {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "llm", "namespace": self.route_namespace},
            "spec": {
                "parentRefs": [{"name": "gw", "namespace": "infra"}],
                "rules": [{"backendRefs": [{"name": self.backend, "port": 8000}]}],
            },
            "status": {"parents": [{"conditions": [{"type": "Accepted", "status": "True"}]}]},
        }

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict | None:
        if kind == "Service" and name == "decode":
            return {"spec": {"selector": {"llm-d.ai/role": "decode"}}}
        if kind == "Service" and name == "frontend":  # a frontend that selects neither role (Dynamo style)
            return {"spec": {"selector": {"app": "frontend"}}}
        if kind == "Gateway" and self.gateway:
            return {
                "spec": {"listeners": [{"name": "http", "protocol": "HTTP", "port": self.gateway.port}]},
                "status": {"addresses": [{"value": "127.0.0.1"}]},
            }
        return None

    def pod_logs(self, name: str, namespace: str, container: str | None = None, tail_lines: int = 500) -> str:
        role = "prefill" if "prefill" in name else "decode"
        containers = next(p for p in self.pods if p["metadata"]["name"] == name)["spec"].get("containers") or []
        if container is None and len(containers) > 1:  # what the API server answers (Kube.pod_logs returns it)
            return "<logs unavailable: 400 a container name must be specified for pod " + name + ">"
        if container not in (None, "routing-proxy"):
            return "INFO engine started"  # the model server's own container logs no request ids here
        return "\n".join(self.gateway.logs[role]) if self.gateway else ""

    def sample(self, fn, interval_s, until, timeout_s, what):
        value = fn()
        if until(value):
            return value
        raise WaitTimeout(what, timeout_s, "")

    def create(self, obj: dict) -> dict:
        raise AssertionError("disaggregated_inference creates nothing")


PD_PODS = [
    pod("prefill-0", {"llm-d.ai/role": "prefill"}, node="n1"),
    pod("decode-0", {"llm-d.ai/role": "decode"}, node="n2"),
]


@pytest.fixture
def gateway_factory():
    made: list[Gateway] = []

    def make(**kw: Any) -> Gateway:
        made.append(Gateway(**kw))
        return made[-1]

    yield make
    for g in made:
        g.close()


def run_fake(tmp_path, kube: FakeKube, **overrides: Any):
    params = load_parameters(None, {"checklist_version": "1.36", "disagg_log_wait_s": 1, **overrides})
    return run_check("disaggregated_inference", params, kube=kube, run_dir=tmp_path, progress=lambda m: None)


def verdicts(result) -> dict[str, Verdict]:
    return {s.id: s.verdict for s in result.subchecks}


def test_nothing_found_is_not_applicable_with_what_was_searched(tmp_path):
    result = run_fake(tmp_path, FakeKube([pod("web", {"app": "web"})]))
    assert result.verdict is Verdict.NOT_APPLICABLE
    assert result.not_applicable.reason_code == "no_disaggregated_inference"
    assert (
        "LeaderWorkerSet" in result.not_applicable.justification
        and "llm-d.ai/role" in result.not_applicable.justification
    )
    assert set(verdicts(result)) == set(di.SUBCHECKS)


def test_framework_api_without_role_pods_is_unknown_not_pass(tmp_path):
    result = run_fake(tmp_path, FakeKube([], groups={"leaderworkerset.x-k8s.io": ["LeaderWorkerSet"]}))
    assert result.verdict is Verdict.UNKNOWN
    assert verdicts(result)["pd_framework_detected"] is Verdict.PASS
    assert verdicts(result)["separate_role_pods"] is Verdict.UNKNOWN
    assert set(verdicts(result)) == set(di.SUBCHECKS)


def test_request_through_both_roles_passes(tmp_path, gateway_factory):
    gw = gateway_factory()
    result = run_fake(tmp_path, FakeKube(PD_PODS, gateway=gw))
    assert result.verdict is Verdict.PASS, [(s.id, s.verdict, s.summary) for s in result.subchecks]
    rid = result.metrics["request"]["request_id"]
    assert rid in gw.logs["prefill"][0] and rid in gw.logs["decode"][0]
    assert result.metrics["request"]["model"] == "tiny"  # from GET /v1/models
    assert verdicts(result)["role_topology"] is Verdict.PASS


def test_request_that_skips_prefill_fails(tmp_path, gateway_factory):
    result = run_fake(tmp_path, FakeKube(PD_PODS, gateway=gateway_factory(reaches=("decode",))))
    assert result.verdict is Verdict.FAIL
    sub = result.subcheck("request_id_in_both_roles")
    assert sub.verdict is Verdict.FAIL and "no prefill pod logged it" in sub.summary


def test_request_id_logged_nowhere_is_unknown(tmp_path, gateway_factory):
    result = run_fake(tmp_path, FakeKube(PD_PODS, gateway=gateway_factory(reaches=())))
    assert result.verdict is Verdict.UNKNOWN
    assert result.subcheck("request_served").verdict is Verdict.PASS


def test_gateway_error_fails_the_request(tmp_path, gateway_factory):
    result = run_fake(tmp_path, FakeKube(PD_PODS, gateway=gateway_factory(status=503)))
    assert result.verdict is Verdict.FAIL and result.subcheck("request_served").verdict is Verdict.FAIL


def test_decode_not_ready_fails(tmp_path, gateway_factory):
    pods = [PD_PODS[0], pod("decode-0", {"llm-d.ai/role": "decode"}, ready=False)]
    result = run_fake(tmp_path, FakeKube(pods, gateway=gateway_factory()))
    assert result.verdict is Verdict.FAIL
    assert result.subcheck("separate_role_pods").verdict is Verdict.FAIL
    assert set(verdicts(result)) == set(di.SUBCHECKS)


def test_no_route_to_the_roles_is_unknown(tmp_path, gateway_factory):
    result = run_fake(tmp_path, FakeKube(PD_PODS, gateway=gateway_factory(), route=False))
    assert result.verdict is Verdict.UNKNOWN
    assert "no HTTPRoute" in result.subcheck("request_served").summary


def test_malformed_disagg_route_is_a_config_error(tmp_path, gateway_factory):
    result = run_fake(tmp_path, FakeKube(PD_PODS, gateway=gateway_factory()), disagg_route="just-a-name")
    assert result.verdict is Verdict.ERROR and "disagg_route" in result.error["message"]


def test_preflight_names_what_it_found():
    p = load_parameters(None, {"checklist_version": "1.36"})
    assert di.preflight(FakeKube([]), p) == (False, "no P/D framework or role pods")
    ok, detail = di.preflight(FakeKube([], groups={"nvidia.com": ["DynamoGraphDeployment"]}), p)
    assert not ok and "NVIDIA Dynamo served but no prefill/decode pods" in detail
    assert di.preflight(FakeKube(PD_PODS), p) == (True, "1 prefill and 1 decode pods")


def test_request_id_logged_by_a_sidecar_container_counts(tmp_path, gateway_factory):
    decode = pod("decode-0", {"llm-d.ai/role": "decode"})
    decode["spec"]["containers"] = [{"name": "vllm"}, {"name": "routing-proxy"}]
    result = run_fake(tmp_path, FakeKube([PD_PODS[0], decode], gateway=gateway_factory()))
    assert result.subcheck("request_id_in_both_roles").verdict is Verdict.PASS
    assert result.verdict is Verdict.PASS


def test_the_only_route_in_the_roles_namespace_is_used_for_a_frontend(tmp_path, gateway_factory):
    result = run_fake(tmp_path, FakeKube(PD_PODS, gateway=gateway_factory(), backend="frontend"))
    assert result.verdict is Verdict.PASS
    assert "the only route in the role pods' namespace" in result.metrics["request"]["route"]


def test_a_frontend_route_elsewhere_is_not_guessed(tmp_path, gateway_factory):
    kube = FakeKube(PD_PODS, gateway=gateway_factory(), backend="frontend", route_namespace="other")
    result = run_fake(tmp_path, kube)
    assert result.verdict is Verdict.UNKNOWN
    assert result.subcheck("request_served").verdict is Verdict.UNKNOWN
