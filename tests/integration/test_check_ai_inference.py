"""ai_inference end to end on the sandbox: Traefik (the ``traefik`` add-on) as the Gateway API implementation,
the TEST inference server's two versions on the real node, real requests from the runner through 127.0.0.1.

Positive: the sandbox profile (the add-on's shared Gateway) and the check's own Gateway on the class both PASS.
Broken on purpose, each must not PASS:

- a GatewayClass whose controller does not exist (never Accepted);
- a Gateway whose listener port Traefik has no entry point for (never Programmed);
- an implementation that ignores the weights: a MutatingAdmissionPolicy sets the canary's weight to 0 in the check's
  HTTPRoute, which is still Accepted, so v2 never receives unlabelled traffic;
- an implementation that ignores the header match: a policy renames the matched header, so the header requests are
  split instead of routed.

Skipped without a real node or without the traefik add-on (nothing could serve the traffic).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from aiconf.execute import run_check
from aiconf.kube import Kube
from aiconf.model import Verdict
from aiconf.params import load_parameters
from aiconf.sandbox import realnode
from aiconf.sandbox.addons import traefik

pytestmark = pytest.mark.sandbox

ADMISSION = "admissionregistration.k8s.io/v1"
GW_V1 = "gateway.networking.k8s.io/v1"


@pytest.fixture(scope="module")
def kube(kube_sandbox) -> Kube:
    k = Kube.connect(str(kube_sandbox.kubeconfig))
    if not k.list("v1", "Node", label_selector=f"{realnode.REAL_NODE_LABEL}=true"):
        pytest.skip("the cluster has no real node (AICONF_TEST_REAL_NODE=0?): no backend can serve traffic")
    return k


@pytest.fixture(scope="module")
def gateway_info(kube_sandbox, kube) -> dict:
    state_dir = (
        Path(kube_sandbox.sandbox.state_dir)
        if kube_sandbox.sandbox is not None
        else Path(kube_sandbox.kubeconfig).parent
    )
    meta = traefik.info(SimpleNamespace(state_dir=state_dir))
    if not meta or meta.get("skipped"):
        pytest.skip(
            f"the traefik add-on is not running in this sandbox: {meta.get('skipped') if meta else 'no info.json'}"
        )
    return meta


def params(kube_sandbox, **overrides):
    return load_parameters("sandbox", {"kubeconfig": str(kube_sandbox.kubeconfig), **overrides})


def run(kube_sandbox, tmp_path, **overrides):
    rid = f"itest-inf-{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    result = run_check("ai_inference", params(kube_sandbox, **overrides), run_id=rid, run_dir=tmp_path)
    return result, rid, time.monotonic() - started


def summary(result) -> list:
    return [(s.id, s.verdict, s.summary) for s in result.subchecks]


def assert_cleaned_up(kube: Kube, rid: str) -> None:
    assert kube.list("v1", "Namespace", label_selector=f"aiconf.io/run-id={rid}") == []


def test_weighted_split_and_header_routing_pass_through_the_sandbox_gateway(kube_sandbox, kube, gateway_info, tmp_path):
    result, rid, took = run(kube_sandbox, tmp_path)
    print(f"\n[measure] ai_inference on the sandbox (existing Gateway, 200 + 50 requests): {took:.1f}s")
    assert result.verdict is Verdict.PASS, (result.reason, summary(result))
    traffic = result.metrics["traffic"]
    split = traffic["split"]
    assert split["sent"] == split["answered"] == 200 and split["failures"] == {}
    assert split["interval"][0] <= 0.2 <= split["interval"][1]
    assert 0 < split["to_v2"] < 200
    assert traffic["header"]["outcomes"] == {"v2": 50}
    assert result.metrics["client"]["mode"] == "runner"
    assert result.metrics["client"]["url"] == gateway_info["url"]
    assert result.metrics["gateway_class"] == {"name": traefik.GATEWAY_CLASS, "controller": traefik.CONTROLLER}
    assert result.subcheck("mesh_integration").verdict is Verdict.NOT_APPLICABLE
    # the pods themselves counted what the client saw them answer (read through the API server's pod proxy)
    assert result.subcheck("backends_counted").verdict is Verdict.PASS, result.subcheck("backends_counted").summary
    assert "evidence/ai_inference/requests.csv" in result.evidence
    assert took < 60, f"the check took {took:.0f}s on the sandbox"
    assert_cleaned_up(kube, rid)


def test_the_checks_own_gateway_on_the_class_passes(kube_sandbox, kube, gateway_info, tmp_path):
    result, rid, took = run(
        kube_sandbox,
        tmp_path,
        inference_gateway="",
        inference_gateway_class=traefik.GATEWAY_CLASS,
        inference_gateway_port=gateway_info["web_port"],
        inference_requests=60,
        inference_header_requests=10,
    )
    print(f"\n[measure] ai_inference with its own Gateway (60 + 10 requests): {took:.1f}s")
    assert result.verdict is Verdict.PASS, (result.reason, summary(result))
    assert "inference-gateway" in result.subcheck("gateway_programmed").summary
    assert_cleaned_up(kube, rid)


@pytest.fixture
def orphan_class(kube) -> Iterator[str]:
    name = f"aiconf-itest-orphan-{uuid.uuid4().hex[:6]}"
    kube.create(
        {
            "apiVersion": GW_V1,
            "kind": "GatewayClass",
            "metadata": {"name": name},
            "spec": {"controllerName": "example.com/no-such-controller"},
        }
    )
    yield name
    kube.delete(GW_V1, "GatewayClass", name)


def test_a_gateway_class_no_controller_accepted_fails(kube_sandbox, kube, gateway_info, orphan_class, tmp_path):
    result, rid, took = run(kube_sandbox, tmp_path, inference_gateway="", inference_gateway_class=orphan_class)
    assert result.verdict is Verdict.FAIL, (result.reason, summary(result))
    sub = result.subcheck("gateway_class_accepted")
    assert sub.verdict is Verdict.FAIL and orphan_class in sub.summary and "not Accepted" in sub.summary
    assert "example.com/no-such-controller" in sub.observed
    for later in ("gateway_programmed", "route_accepted", "weighted_split", "header_routing"):
        assert result.subcheck(later).verdict is Verdict.UNKNOWN, summary(result)
    assert took < 30, f"the check took {took:.0f}s without an implementation"
    assert_cleaned_up(kube, rid)


def test_a_gateway_that_is_never_programmed_fails(kube_sandbox, kube, gateway_info, tmp_path):
    # Traefik maps listeners to entry points by port: a port it does not listen on is never programmed.
    port = gateway_info["web_port"] + 1 if gateway_info["web_port"] < 65535 else gateway_info["web_port"] - 1
    result, rid, _ = run(
        kube_sandbox,
        tmp_path,
        inference_gateway="",
        inference_gateway_class=traefik.GATEWAY_CLASS,
        inference_gateway_port=port,
        inference_gateway_timeout_s=10,
    )
    assert result.verdict is Verdict.FAIL, (result.reason, summary(result))
    sub = result.subcheck("gateway_programmed")
    assert sub.verdict is Verdict.FAIL and "not Accepted and Programmed" in sub.summary, summary(result)
    assert result.subcheck("weighted_split").verdict is Verdict.UNKNOWN
    assert "traffic" not in result.metrics
    assert_cleaned_up(kube, rid)


def route_policy(name: str, patch_expression: str) -> list[dict]:
    """A MutatingAdmissionPolicy (+ binding) applying a JSON patch to the check's HTTPRoutes at creation."""
    return [
        {
            "apiVersion": ADMISSION,
            "kind": "MutatingAdmissionPolicy",
            "metadata": {"name": name},
            "spec": {
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": ["gateway.networking.k8s.io"],
                            "apiVersions": ["v1"],
                            "operations": ["CREATE"],
                            "resources": ["httproutes"],
                        }
                    ]
                },
                "failurePolicy": "Fail",
                "reinvocationPolicy": "Never",
                "matchConditions": [
                    {
                        "name": "the-check",
                        "expression": "has(object.metadata.labels) && "
                        "object.metadata.labels[?'aiconf.io/requirement'].orValue('') == 'ai_inference'",
                    }
                ],
                "mutations": [{"patchType": "JSONPatch", "jsonPatch": {"expression": patch_expression}}],
            },
        },
        {
            "apiVersion": ADMISSION,
            "kind": "MutatingAdmissionPolicyBinding",
            "metadata": {"name": name},
            "spec": {"policyName": name},
        },
    ]


def _mutated(kube: Kube, probe: dict) -> dict:
    """The HTTPRoute ``probe`` as admission would store it now (server-side dry run)."""
    return kube.create(probe, dry_run=True)


@pytest.fixture
def broken_implementation(kube) -> Iterator[callable]:
    """``install(patch_expression, is_active)``: the policy, waited for until admission applies it; removed after."""
    if not any(r.get("kind") == "MutatingAdmissionPolicy" for r in kube.api_resources(ADMISSION)):
        pytest.skip("MutatingAdmissionPolicy is not served: the broken implementation cannot be simulated")
    made: list[dict] = []
    probe = {
        "apiVersion": GW_V1,
        "kind": "HTTPRoute",
        "metadata": {"name": "probe", "namespace": "default", "labels": {"aiconf.io/requirement": "ai_inference"}},
        "spec": {
            "parentRefs": [{"name": traefik.GATEWAY_NAME, "namespace": traefik.GATEWAY_NAMESPACE}],
            "rules": [
                {
                    "matches": [{"headers": [{"type": "Exact", "name": "x-gateway-model-name", "value": "m"}]}],
                    "backendRefs": [{"name": "b", "port": 80}],
                },
                {"backendRefs": [{"name": "a", "port": 80, "weight": 80}, {"name": "b", "port": 80, "weight": 20}]},
            ],
        },
    }

    def install(expression: str, is_active) -> None:
        for doc in route_policy(f"aiconf-itest-inference-{uuid.uuid4().hex[:6]}", expression):
            made.append(kube.create(doc))
        deadline = time.monotonic() + 60
        # Admission policies take effect asynchronously (the API server's policy informer): probe with dry runs.
        while not is_active(_mutated(kube, probe)):
            assert time.monotonic() < deadline, "the admission policy never took effect"
            time.sleep(0.5)

    yield install
    for doc in reversed(made):
        kube.delete(ADMISSION, doc["kind"], doc["metadata"]["name"])


def test_weights_the_implementation_ignores_fail_the_split(
    kube_sandbox, kube, gateway_info, broken_implementation, tmp_path
):
    broken_implementation(
        "[JSONPatch{op: 'replace', path: '/spec/rules/1/backendRefs/1/weight', value: 0}]",
        lambda route: route["spec"]["rules"][1]["backendRefs"][1]["weight"] == 0,
    )
    result, rid, _ = run(kube_sandbox, tmp_path, inference_requests=100, inference_header_requests=10)
    assert result.verdict is Verdict.FAIL, (result.reason, summary(result))
    assert (
        result.subcheck("route_accepted").verdict is Verdict.PASS
    )  # Accepted, yet not split: what CRD-only suites miss
    split = result.subcheck("weighted_split")
    assert split.verdict is Verdict.FAIL and "v2 never received a request" in split.summary, summary(result)
    assert result.metrics["traffic"]["split"]["to_v2"] == 0
    assert result.subcheck("header_routing").verdict is Verdict.PASS
    assert any("weight 20 stored as inference-v2 weight 0" in n for n in result.notes), result.notes
    assert_cleaned_up(kube, rid)


def test_a_header_rule_the_implementation_ignores_fails(
    kube_sandbox, kube, gateway_info, broken_implementation, tmp_path
):
    broken_implementation(
        "[JSONPatch{op: 'replace', path: '/spec/rules/0/matches/0/headers/0/name', value: 'x-aiconf-ignored'}]",
        lambda route: route["spec"]["rules"][0]["matches"][0]["headers"][0]["name"] == "x-aiconf-ignored",
    )
    result, rid, _ = run(kube_sandbox, tmp_path, inference_requests=60, inference_header_requests=30)
    assert result.verdict is Verdict.FAIL, (result.reason, summary(result))
    header = result.subcheck("header_routing")
    assert header.verdict is Verdict.FAIL and "header rule not honoured" in header.summary, summary(result)
    outcomes = result.metrics["traffic"]["header"]["outcomes"]
    assert outcomes.get("v1", 0) > 0, outcomes  # split like unlabelled traffic instead of routed
    assert result.subcheck("weighted_split").verdict is Verdict.PASS
    assert_cleaned_up(kube, rid)


def test_the_client_pod_runs_in_the_image_and_an_address_pods_cannot_reach_fails(
    kube_sandbox, kube, gateway_info, tmp_path
):
    # The sandbox's data plane listens on the host's 127.0.0.1: a client pod's loopback is its own, so every request
    # is refused. The pod path still runs for real (the python3 -c client in image_python, restricted, logs parsed),
    # and an unreachable Gateway is a FAIL with the reason, not an ERROR and never a PASS.
    result, rid, _ = run(
        kube_sandbox,
        tmp_path,
        inference_client="pod",
        inference_route_timeout_s=3,
        inference_requests=20,
        inference_header_requests=5,
    )
    assert result.verdict is Verdict.FAIL, (result.reason, summary(result))
    assert result.metrics["client"]["mode"] == "pod"
    split = result.subcheck("weighted_split")
    assert split.verdict is Verdict.FAIL and "none of 20 requests was answered" in split.summary, summary(result)
    assert "Connection refused" in split.summary or "ConnectionRefusedError" in split.summary
    assert result.subcheck("header_routing").verdict is Verdict.FAIL
    assert result.metrics["traffic"]["split"]["sent"] == 20  # every planned request came back from the pod's log
    assert_cleaned_up(kube, rid)
