"""disaggregated_inference on the sandbox: absent (NOT_APPLICABLE), a framework API with nothing deployed (UNKNOWN),
a working simulated prefill/decode deployment behind the sandbox's Gateway (PASS), and one whose decode pods never
call prefill (FAIL).

The P/D deployment is simulated: no model, no KV cache. The toolkit's TEST inference server
(aiconf.workloads.inference_stub) on the real node plays llm-d's roles: the decode pod (behind the HTTPRoute, as
llm-d's routing sidecar is) first sends the request to the prefill Service with the same X-Request-Id
(``--prefill-url``), then answers; each logs one JSON line per request with the id. The check is
unchanged: it finds the pods by llm-d's role label, the route by its backend Service, and greps both roles' logs.

LeaderWorkerSet's CRD comes from the ``sigs.k8s.io/lws`` Go module (through the Go module proxy), applied and removed
around its test. Skipped without the real node or the Traefik add-on.
"""

from __future__ import annotations

import http.client
import time
import uuid

import pytest

from aiconf.execute import run_check
from aiconf.kube import Kube, condition
from aiconf.model import Verdict
from aiconf.params import load_parameters
from aiconf.sandbox import realnode
from aiconf.sandbox.addons._common import go_module_dir, load_yaml_docs

pytestmark = pytest.mark.sandbox

GATEWAY = ("aiconf-gateway", "aiconf-gateway")
LWS_VERSION = "v0.7.0"
PORT = 8000

@pytest.fixture(scope="module")
def kube(kube_sandbox) -> Kube:
    k = Kube.connect(str(kube_sandbox.kubeconfig))
    if not k.list("v1", "Node", label_selector=f"{realnode.REAL_NODE_LABEL}=true"):
        pytest.skip("the cluster has no real node: the simulated P/D roles need processes")
    if (
        not k.has_kind("gateway.networking.k8s.io/v1", "Gateway")
        or k.get("gateway.networking.k8s.io/v1", "Gateway", GATEWAY[1], GATEWAY[0]) is None
    ):
        pytest.skip("the sandbox's Traefik Gateway (add-on traefik) is not running")
    return k


def params(kube_sandbox, **overrides):
    return load_parameters(
        "sandbox", {"kubeconfig": str(kube_sandbox.kubeconfig), "checklist_version": "1.36", **overrides}
    )


def check(kube_sandbox, tmp_path, **overrides):
    started = time.monotonic()
    result = run_check(
        "disaggregated_inference",
        params(kube_sandbox, **overrides),
        run_dir=tmp_path,
        run_id=f"itest-pd-{uuid.uuid4().hex[:6]}",
        progress=lambda m: None,
    )
    print(f"\n[measure] disaggregated_inference {result.verdict} in {time.monotonic() - started:.1f}s")
    return result


def role_deployment(ns: str, role: str, image: str, prefill_url: str = "") -> dict:
    # The toolkit's TEST inference server plays the role; a decode server hands each request to prefill first.
    command = ["python3", "-m", "aiconf.workloads.inference_stub", "--port", str(PORT), "--role", role,
               "--model", "tiny-pd", *(["--prefill-url", prefill_url] if prefill_url else [])]
    labels = {"app": "pd", "llm-d.ai/role": role}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": role, "namespace": ns},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": {realnode.REAL_NODE_LABEL: "true"},
                    "tolerations": [{"key": realnode.REAL_NODE_LABEL, "operator": "Exists", "effect": "NoSchedule"}],
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {
                            "name": "server",
                            "image": image,
                            "imagePullPolicy": "Never",
                            "command": command,
                            "ports": [{"containerPort": PORT}],
                            "readinessProbe": {"httpGet": {"path": "/healthz", "port": PORT}, "periodSeconds": 1},
                            "resources": {"requests": {"cpu": "10m", "memory": "24Mi"}, "limits": {"memory": "64Mi"}},
                        }
                    ],
                },
            },
        },
    }


def service(ns: str, role: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": role, "namespace": ns},
        "spec": {"selector": {"app": "pd", "llm-d.ai/role": role}, "ports": [{"port": PORT, "targetPort": PORT}]},
    }


def route(ns: str) -> dict:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "llm", "namespace": ns},
        "spec": {
            "parentRefs": [{"name": GATEWAY[1], "namespace": GATEWAY[0]}],
            "hostnames": [f"{ns}.pd.example"],
            "rules": [{"backendRefs": [{"name": "decode", "port": PORT}]}],
        },
    }


def deploy_pd(kube: Kube, image: str, *, forwards: bool) -> str:
    """A namespace with prefill + decode Deployments, their Services and an HTTPRoute to decode; returns when the
    Gateway answers through it."""
    ns = f"aiconf-itest-pd-{uuid.uuid4().hex[:6]}"
    kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    prefill_svc = kube.create(service(ns, "prefill"))
    kube.create(service(ns, "decode"))
    url = f"http://{prefill_svc['spec']['clusterIP']}:{PORT}" if forwards else ""
    kube.create(role_deployment(ns, "prefill", image))
    kube.create(role_deployment(ns, "decode", image, url))
    kube.create(route(ns))
    kube.wait_until(
        "v1",
        "Pod",
        ns,
        lambda pods: (
            len(pods) == 2
            and all(
                any(
                    c.get("type") == "Ready" and c.get("status") == "True"
                    for c in (p.get("status") or {}).get("conditions") or []
                )
                for p in pods
            )
        ),
        90,
        "the P/D pods Ready",
    )
    gw = kube.get("gateway.networking.k8s.io/v1", "Gateway", GATEWAY[1], GATEWAY[0])
    port = gw["spec"]["listeners"][0]["port"]
    deadline = time.monotonic() + 30  # Traefik learns the endpoints a moment after they are Ready
    while True:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/v1/models", headers={"Host": f"{ns}.pd.example"})
        status = conn.getresponse().status
        conn.close()
        if status == 200 or time.monotonic() > deadline:
            assert status == 200, f"the gateway never routed to the P/D deployment ({status})"
            return ns
        time.sleep(0.5)


@pytest.fixture(scope="module")
def working_pd(kube, kube_sandbox):
    ns = deploy_pd(kube, params(kube_sandbox).image_python, forwards=True)
    yield ns
    kube.delete_namespace(ns)


@pytest.fixture(scope="module")
def prefill_skipped(kube, kube_sandbox):
    ns = deploy_pd(kube, params(kube_sandbox).image_python, forwards=False)
    yield ns
    kube.delete_namespace(ns)


def test_without_any_pd_framework_the_check_is_not_applicable(kube, kube_sandbox, tmp_path):
    result = check(kube_sandbox, tmp_path, disagg_namespace="aiconf-itest-no-such-namespace")
    assert result.verdict is Verdict.NOT_APPLICABLE, [(s.id, s.verdict, s.summary) for s in result.subchecks]
    assert "LeaderWorkerSet" in result.not_applicable.justification


def test_a_framework_api_with_nothing_deployed_is_unknown(kube, kube_sandbox, tmp_path):
    crds = [
        d
        for d in load_yaml_docs(
            go_module_dir("sigs.k8s.io/lws", LWS_VERSION)
            / "config"
            / "crd"
            / "bases"
            / "leaderworkerset.x-k8s.io_leaderworkersets.yaml"
        )
    ]
    for crd in crds:
        kube.apply(crd)
    try:
        kube.wait_for(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            crds[0]["metadata"]["name"],
            None,
            lambda crd: condition(crd, "Established") == "True",
            30,
            "the LeaderWorkerSet CRD Established",
        )
        result = check(kube_sandbox, tmp_path, disagg_namespace="aiconf-itest-no-such-namespace")
    finally:
        for crd in crds:
            kube.delete("apiextensions.k8s.io/v1", "CustomResourceDefinition", crd["metadata"]["name"])
    subs = {s.id: s.verdict for s in result.subchecks}
    assert result.verdict is Verdict.UNKNOWN, subs
    assert subs["pd_framework_detected"] is Verdict.PASS and subs["separate_role_pods"] is Verdict.UNKNOWN


def test_a_request_through_the_gateway_reaches_both_roles(kube_sandbox, working_pd, tmp_path):
    result = check(kube_sandbox, tmp_path, disagg_namespace=working_pd)
    subs = {s.id: (s.verdict, s.summary) for s in result.subchecks}
    assert result.verdict is Verdict.PASS, subs
    assert result.metrics["request"]["model"] == "tiny-pd" and result.metrics["request"]["status"] == 200
    assert f"HTTPRoute {working_pd}/llm" in result.metrics["request"]["route"]
    # The id the check generated is what both roles logged (evidence lines saved per pod).
    logs = [p for p in result.evidence if "/logs/" in p]
    assert {p.split("/logs/")[1].split("-")[0] for p in logs} == {"prefill", "decode"}


def test_a_deployment_whose_decode_skips_prefill_fails(kube_sandbox, prefill_skipped, tmp_path):
    result = check(kube_sandbox, tmp_path, disagg_namespace=prefill_skipped)
    sub = result.subcheck("request_id_in_both_roles")
    assert result.verdict is Verdict.FAIL, [(s.id, s.verdict, s.summary) for s in result.subchecks]
    assert sub.verdict is Verdict.FAIL and "no prefill pod logged it" in sub.summary
    assert result.subcheck("request_served").verdict is Verdict.PASS
