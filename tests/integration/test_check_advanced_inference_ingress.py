"""advanced_inference_ingress on the sandbox: without the Gateway API Inference Extension (NOT_APPLICABLE), and with
GAIE's CRDs installed but a gateway that does not implement it (the sandbox's Traefik: the probe route's InferencePool
backend is refused with ResolvedRefs=False/InvalidKind -> FAIL, never PASS).

The CRDs come from the ``sigs.k8s.io/gateway-api-inference-extension`` Go module (through the Go module proxy),
applied before and removed after the test. No endpoint picker is run: the sandbox has no GAIE implementation, so the
measured routing (``gaie_epp_deploy``) stays UNKNOWN without deploying anything; it is unit-tested against a local
gateway and picker stand-in instead.
"""

from __future__ import annotations

import time
import uuid

import pytest

from aiconf.execute import run_check
from aiconf.kube import Kube, condition
from aiconf.model import Verdict
from aiconf.params import load_parameters
from aiconf.sandbox.addons._common import go_module_dir, load_yaml_docs

pytestmark = pytest.mark.sandbox

GAIE_VERSION = "v1.4.0"
CRD_FILES = (
    "inference.networking.k8s.io_inferencepools.yaml",
    "inference.networking.x-k8s.io_inferenceobjectives.yaml",
)
GATEWAY = ("aiconf-gateway", "aiconf-gateway")


@pytest.fixture(scope="module")
def kube(kube_sandbox) -> Kube:
    return Kube.connect(str(kube_sandbox.kubeconfig))


def check(kube_sandbox, tmp_path, **overrides):
    params = load_parameters(
        "sandbox",
        {
            "kubeconfig": str(kube_sandbox.kubeconfig),
            "checklist_version": "1.36",
            "gaie_route_timeout_s": 20,
            **overrides,
        },
    )
    started = time.monotonic()
    result = run_check(
        "advanced_inference_ingress",
        params,
        run_dir=tmp_path,
        run_id=f"itest-gaie-{uuid.uuid4().hex[:6]}",
        progress=lambda m: None,
    )
    print(f"\n[measure] advanced_inference_ingress {result.verdict} in {time.monotonic() - started:.1f}s")
    return result


@pytest.fixture
def gaie_crds(kube):
    folder = go_module_dir("sigs.k8s.io/gateway-api-inference-extension", GAIE_VERSION) / "config" / "crd" / "bases"
    crds = [doc for name in CRD_FILES for doc in load_yaml_docs(folder / name)]
    for crd in crds:
        kube.apply(crd)
    try:
        for crd in crds:
            kube.wait_for(
                "apiextensions.k8s.io/v1",
                "CustomResourceDefinition",
                crd["metadata"]["name"],
                None,
                lambda o: condition(o, "Established") == "True",
                30,
                f"CRD {crd['metadata']['name']} Established",
            )
        yield crds
    finally:
        for crd in crds:
            kube.delete("apiextensions.k8s.io/v1", "CustomResourceDefinition", crd["metadata"]["name"])


def test_without_gaie_the_check_is_not_applicable(kube, kube_sandbox, tmp_path):
    if kube.served_versions("inference.networking.k8s.io"):
        pytest.skip("this cluster serves InferencePool")
    result = check(kube_sandbox, tmp_path)
    assert result.verdict is Verdict.NOT_APPLICABLE, [(s.id, s.verdict, s.summary) for s in result.subchecks]
    assert result.not_applicable.reason_code == "no_gateway_api_inference_extension"


def test_gaie_crds_with_a_gateway_that_cannot_route_to_pools_fail(kube, kube_sandbox, tmp_path, gaie_crds):
    if kube.get("gateway.networking.k8s.io/v1", "Gateway", GATEWAY[1], GATEWAY[0]) is None:
        pytest.skip("the sandbox's Traefik Gateway (add-on traefik) is not running")
    # The endpoint picker is opted into, but a gateway that refuses pools gets none: nothing is deployed for it.
    result = check(kube_sandbox, tmp_path, gaie_epp_deploy=True)
    subs = {s.id: (s.verdict, s.summary) for s in result.subchecks}
    assert result.verdict is Verdict.FAIL, subs
    assert subs["inference_pool_api_served"][0] is Verdict.PASS
    assert subs["inference_objective_api_served"][0] is Verdict.PASS
    assert subs["gateway_class_accepted"][0] is Verdict.PASS
    assert (
        subs["gateway_resolves_pool_backend"][0] is Verdict.FAIL
        and "InvalidKind" in subs["gateway_resolves_pool_backend"][1]
    )
    assert subs["metric_aware_routing"][0] is Verdict.UNKNOWN
    assert subs["routing_follows_metrics"][0] is Verdict.UNKNOWN
    assert "does not resolve an InferencePool backend" in subs["routing_follows_metrics"][1]
    assert "endpoint_picker" not in result.metrics  # no picker, no pool pods were deployed
