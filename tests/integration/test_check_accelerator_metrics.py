"""accelerator_metrics end to end on the sandbox's real node (simulated DCGM exporter, simulated load file), and
against broken clusters: the exporter DaemonSet scaled to zero (a nodeSelector no node matches) and deleted. Both
leave the exporter's Service in place (what a presence check looks at); the check must FAIL. A name map that drops a
core metric must not PASS. The exporter is restored after each broken test.

Skipped when the cluster has no real node (kwok nodes run no exporter: every run there is UNKNOWN by design).
"""

from __future__ import annotations

import copy
import re
import time
import uuid

import pytest

from aiconf.checks import accelerator_metrics as am
from aiconf.execute import run_check
from aiconf.kube import Kube, condition
from aiconf.model import Verdict
from aiconf.params import load_parameters
from aiconf.sandbox import realnode

pytestmark = pytest.mark.sandbox

EXPORTER_SELECTOR = "app=nvidia-dcgm-exporter"


@pytest.fixture(scope="module")
def kube(kube_sandbox) -> Kube:
    k = Kube.connect(str(kube_sandbox.kubeconfig))
    if not k.list("v1", "Node", label_selector=f"{realnode.REAL_NODE_LABEL}=true"):
        pytest.skip("the cluster has no real node (AICONF_TEST_REAL_NODE=0?): kwok nodes run no exporter")
    if k.get("apps/v1", "DaemonSet", realnode.DCGM_NAME, realnode.DCGM_NAMESPACE) is None:
        pytest.skip("the real node runs without the simulated DCGM exporter")
    return k


def params(kube_sandbox, **overrides):
    return load_parameters("sandbox", {"kubeconfig": str(kube_sandbox.kubeconfig), **overrides})


def run_id() -> str:
    return f"itest-am-{uuid.uuid4().hex[:6]}"


def wait_for(what: str, probe, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout_s:g}s waiting for {what}")


def exporter_pods(kube: Kube) -> list[dict]:
    return [
        p
        for p in kube.list("v1", "Pod", realnode.DCGM_NAMESPACE, label_selector=EXPORTER_SELECTOR)
        if not p["metadata"].get("deletionTimestamp")
    ]


def exporter_ready(kube: Kube) -> bool:
    return any(condition(p, "Ready") == "True" for p in exporter_pods(kube))


@pytest.fixture(scope="module")
def original_exporter(kube) -> dict:
    """The exporter DaemonSet as the sandbox made it (read once, before any test breaks it)."""
    return copy.deepcopy(kube.get("apps/v1", "DaemonSet", realnode.DCGM_NAME, realnode.DCGM_NAMESPACE))


@pytest.fixture
def restore_exporter(kube, original_exporter):
    """Hand the test the exporter DaemonSet; put it back as it was and wait until its pod is Ready again."""
    original = original_exporter
    yield copy.deepcopy(original)
    current = kube.get("apps/v1", "DaemonSet", realnode.DCGM_NAME, realnode.DCGM_NAMESPACE)
    if current is None or current["metadata"].get("deletionTimestamp"):
        if current is not None:
            kube.wait_for_deletion("apps/v1", "DaemonSet", realnode.DCGM_NAME, realnode.DCGM_NAMESPACE, 60)
        meta = {
            k: original["metadata"][k]
            for k in ("name", "namespace", "labels", "annotations")
            if k in original["metadata"]
        }
        kube.create({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": meta, "spec": original["spec"]})
    else:
        want = original["spec"]["template"]["spec"].get("nodeSelector") or {}
        have = current["spec"]["template"]["spec"].get("nodeSelector") or {}
        selector = {**{k: None for k in have if k not in want}, **want}  # merge patch: None removes a key
        kube.patch(
            "apps/v1",
            "DaemonSet",
            realnode.DCGM_NAME,
            {"spec": {"template": {"spec": {"nodeSelector": selector}}}},
            realnode.DCGM_NAMESPACE,
        )
    wait_for("the simulated DCGM exporter to be Ready again", lambda: exporter_ready(kube))


def assert_cleaned_up(kube: Kube, rid: str) -> None:
    assert kube.list("v1", "Namespace", label_selector=f"aiconf.io/run-id={rid}") == []


def prometheus_holds_every_gpu(kube: Kube, p) -> bool:
    """The Prometheus the check would find has a utilisation series for every GPU of the real node (it may lag
    behind a restarted exporter for a scrape interval or two)."""
    target = am.find_prometheus(kube, p)
    node = kube.list("v1", "Node", label_selector=f"{realnode.REAL_NODE_LABEL}=true")[0]
    want = int(node["status"]["allocatable"].get("nvidia.com/gpu", 0))
    try:
        answer = am.query_prometheus(kube, target, 'count by (UUID) ({__name__="DCGM_FI_DEV_GPU_UTIL"})')
    except Exception:  # noqa: BLE001 - not answering yet
        return False
    return len(am.series_counts(answer)) >= want


def test_accelerator_metrics_pass_on_the_real_node(kube_sandbox, kube, tmp_path):
    wait_for("the simulated DCGM exporter", lambda: exporter_ready(kube))
    p = params(kube_sandbox)
    with_prometheus = am.find_prometheus(kube, p) is not None  # the sandbox's prometheus add-on
    if with_prometheus:
        wait_for("Prometheus to scrape the exporter", lambda: prometheus_holds_every_gpu(kube, p), 90)
    rid = run_id()
    result = run_check("accelerator_metrics", p, run_id=rid, run_dir=tmp_path)
    subs = {s.id: s for s in result.subchecks}
    why = (result.reason, [(s.id, s.verdict, s.summary) for s in result.subchecks], result.notes)
    assert result.verdict is Verdict.PASS, why
    assert "1 of 1 accelerator node(s)" in subs["exporter_found"].summary, why
    if kube.list("v1", "Node", label_selector="type=kwok"):
        assert "simulated nodes not covered" in subs["exporter_found"].summary
        assert any("simulated (kwok) node(s) are not covered" in n for n in result.notes)
    assert any("simulated exporter" in n for n in result.notes)
    assert result.metrics["simulated_exporter"] is True and result.metrics["load"]["mode"] == "simulated"
    analysis = result.metrics["load_analysis"]
    assert analysis["utilization"]["during_max"] >= 80 - 1 and analysis["utilization"]["after"] == 0
    assert analysis["memory_used"]["during_max"] >= 8192 - 1
    assert subs["workload_reflected"].details["device_identified"].startswith("attributed"), why
    assert subs["pod_attribution"].verdict is Verdict.PASS, why
    if with_prometheus:
        assert subs["prometheus_pipeline"].verdict is Verdict.PASS, subs["prometheus_pipeline"].summary
        found = re.search(r"UUIDs of the scraped accelerators found: (\d+)/(\d+)", subs["prometheus_pipeline"].observed)
        assert found and found.group(1) == found.group(2), subs["prometheus_pipeline"].observed
    else:
        assert subs["prometheus_pipeline"].verdict is Verdict.NOT_APPLICABLE
    for name in ("gpu_series.csv", "coverage.csv", "otel.csv", "load-analysis.yaml"):
        assert f"evidence/accelerator_metrics/{name}" in result.evidence, name
    assert_cleaned_up(kube, rid)


def test_exporter_scaled_to_zero_fails(kube_sandbox, kube, restore_exporter, tmp_path):
    kube.patch(
        "apps/v1",
        "DaemonSet",
        realnode.DCGM_NAME,
        {"spec": {"template": {"spec": {"nodeSelector": {"aiconf.io/no-such-node": "true"}}}}},
        realnode.DCGM_NAMESPACE,
    )
    wait_for("the exporter's pods to be gone", lambda: not exporter_pods(kube))
    assert kube.get("v1", "Service", realnode.DCGM_NAME, realnode.DCGM_NAMESPACE) is not None  # still "installed"
    result = run_check("accelerator_metrics", params(kube_sandbox), run_id=run_id(), run_dir=tmp_path)
    assert result.verdict is Verdict.FAIL, result.reason
    sub = result.subcheck("exporter_found")
    assert sub.verdict is Verdict.FAIL and "no exporter pod" in sub.summary
    assert result.subcheck("workload_reflected").verdict is Verdict.UNKNOWN
    ds = next(r for r in result.metrics["exporter_objects"] if r["kind"] == "DaemonSet")
    assert ds["desired"] == 0


def test_exporter_deleted_fails(kube_sandbox, kube, restore_exporter, tmp_path):
    kube.delete("apps/v1", "DaemonSet", realnode.DCGM_NAME, realnode.DCGM_NAMESPACE, propagation="Foreground")
    wait_for("the exporter's pods to be gone", lambda: not exporter_pods(kube))
    result = run_check("accelerator_metrics", params(kube_sandbox), run_id=run_id(), run_dir=tmp_path)
    assert result.verdict is Verdict.FAIL, result.reason
    assert result.subcheck("exporter_found").verdict is Verdict.FAIL
    assert result.subcheck("core_metrics_per_gpu").verdict is Verdict.UNKNOWN


def test_a_name_map_that_drops_a_core_metric_is_not_pass(kube_sandbox, kube, tmp_path):
    wait_for("the simulated DCGM exporter", lambda: exporter_ready(kube))
    dropped = {"name": "dcgm-without-memory", "classes": {"utilization": ["DCGM_FI_DEV_GPU_UTIL"]}}
    rid = run_id()
    result = run_check(
        "accelerator_metrics", params(kube_sandbox, accel_name_map=dropped), run_id=rid, run_dir=tmp_path
    )
    assert result.verdict is not Verdict.PASS
    assert result.verdict is Verdict.UNKNOWN, result.reason
    assert "memory_used" in result.subcheck("exporter_recognised").summary
    assert_cleaned_up(kube, rid)
