"""pod_autoscaling end to end on the sandbox: kwok GPU nodes, the sandbox's custom metrics adapter (a *simulated*
metric source: it serves the value the check writes into the pods' annotations) and the real HPA controller.

Broken variants: the custom metrics APIService pointed at a dead port (restored afterwards) must not PASS, and a
cluster without the custom metrics API must not PASS either.
"""

from __future__ import annotations

import socket

import pytest

from aiconf.context import LABEL_RUN_ID
from aiconf.execute import new_run_id, run_check
from aiconf.kube import Kube
from aiconf.model import Verdict
from aiconf.params import load_parameters

pytestmark = pytest.mark.sandbox

APISERVICE = "v1beta2.custom.metrics.k8s.io"


@pytest.fixture(scope="module")
def kube(kube_sandbox) -> Kube:
    return Kube.connect(str(kube_sandbox.kubeconfig))


@pytest.fixture(scope="module")
def custom_metrics(kube):
    svc = kube.get("apiregistration.k8s.io/v1", "APIService", APISERVICE)
    if svc is None:
        pytest.skip("the sandbox was started without the custom-metrics add-on (it is a default add-on; AICONF_TEST_SANDBOX_ADDONS=none disables it)")
    return svc


def run(kube_sandbox, tmp_path, **overrides):
    run_id = new_run_id()
    params = load_parameters("sandbox", {"kubeconfig": str(kube_sandbox.kubeconfig), **overrides})
    return run_check("pod_autoscaling", params, run_id=run_id, run_dir=tmp_path), run_id


def leftovers(kube: Kube, run_id: str) -> list[str]:
    out = []
    for api_version, kind in (("v1", "Namespace"), ("v1", "Pod"), ("apps/v1", "Deployment"),
                              ("autoscaling/v2", "HorizontalPodAutoscaler")):
        out += [f"{kind}/{o['metadata']['name']}" for o in kube.list(api_version, kind, label_selector=f"{LABEL_RUN_ID}={run_id}")]
    return out


def available(svc) -> str | None:
    return next((c.get("status") for c in ((svc or {}).get("status") or {}).get("conditions") or [] if c.get("type") == "Available"), None)


def test_hpa_scales_gpu_pods_up_and_down(kube_sandbox, kube, tmp_path, custom_metrics):
    result, run_id = run(kube_sandbox, tmp_path)
    assert result.verdict is Verdict.PASS, (result.reason, result.error, [(s.id, s.summary) for s in result.subchecks])
    assert result.level == "MUST"
    summary = result.metrics["hpa_curve_summary"]
    assert summary["scaled_up"] and summary["scaled_down"] and summary["peak_ready"] == 3
    assert result.metrics["hpa_scale_up_s"] < 180 and result.metrics["hpa_scale_down_s"] < 180
    assert result.metrics["hpa_held_peak"] is True
    assert all(p["accelerator_node"] and p["requests_accelerator"] for p in result.metrics["placements"])
    assert "simulated metric source" in result.metrics["metric_source"]
    assert any("simulated" in n for n in result.notes)
    assert (tmp_path / result.metrics["series"]["hpa_curve"]).exists()
    assert leftovers(kube, run_id) == []


@pytest.fixture
def dead_custom_metrics_api(kube, custom_metrics):
    """Point the custom metrics APIService at a closed loopback port; restore it (and wait Available) afterwards."""
    port = custom_metrics["spec"]["service"]["port"]
    with socket.socket() as s:  # a port nothing listens on (bound, then released)
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    kube.patch("apiregistration.k8s.io/v1", "APIService", APISERVICE, {"spec": {"service": {"port": dead}}})
    try:
        kube.wait_for("apiregistration.k8s.io/v1", "APIService", APISERVICE, None, lambda o: available(o) == "False", 60,
                      "the APIService to become unavailable")
        yield dead
    finally:
        kube.patch("apiregistration.k8s.io/v1", "APIService", APISERVICE, {"spec": {"service": {"port": port}}})
        kube.wait_for("apiregistration.k8s.io/v1", "APIService", APISERVICE, None, lambda o: available(o) == "True", 90,
                      "the APIService to be Available again")


def test_unavailable_custom_metrics_api_does_not_pass(kube_sandbox, kube, tmp_path, dead_custom_metrics_api):
    result, run_id = run(kube_sandbox, tmp_path)
    assert result.verdict is Verdict.FAIL
    sub = result.subcheck("custom_metrics_api_available")
    assert sub.verdict is Verdict.FAIL
    assert APISERVICE in sub.summary and "FailedDiscoveryCheck" in sub.summary
    assert str(dead_custom_metrics_api) in sub.summary  # the APIService's message names the dead endpoint
    assert all(result.subcheck(s).verdict is Verdict.UNKNOWN for s in ("metric_visible", "scaled_up", "scaled_down"))
    assert leftovers(kube, run_id) == []


def test_workload_mode_on_simulated_nodes_is_still_labelled_simulated(kube_sandbox, kube, tmp_path, custom_metrics):
    # hpa_metric_source=workload adds the exporter container, but on kwok nodes no process runs: the value the HPA
    # sees still comes from the annotation, and the result must say so rather than claim a workload pipeline.
    result, run_id = run(kube_sandbox, tmp_path, hpa_metric_source="workload", hpa_peak_hold_s=0, hpa_scale_down_window_s=0)
    assert result.verdict is Verdict.PASS, result.reason
    assert "simulated metric source" in result.metrics["metric_source"]
    assert any("metric source here is simulated" in t for t in result.does_not_prove)
    assert leftovers(kube, run_id) == []


def test_without_custom_metrics_api_the_check_fails(kube_sandbox, kube, tmp_path):
    if kube.get("apiregistration.k8s.io/v1", "APIService", APISERVICE) is not None:
        pytest.skip("the custom metrics API is installed here (the dead-port test covers the unavailable case)")
    result, run_id = run(kube_sandbox, tmp_path)
    assert result.verdict is Verdict.FAIL
    assert "absent" in result.subcheck("custom_metrics_api_available").summary
    assert leftovers(kube, run_id) == []
