"""pod_autoscaling without a cluster: curve analysis, metrics-API judgement, manifests, capacity arithmetic, and the
early (API-level) part of the check against a fake client."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from aiconf.checks import pod_autoscaling as pa
from aiconf.execute import run_check
from aiconf.model import Verdict
from aiconf.params import load_parameters

# --- the scaling curve -----------------------------------------------------------------------------------------------


def rows_from(points: list[tuple], events: dict[float, str]) -> list[dict[str, Any]]:
    """(t, metric, desired, ready, pods) samples plus marker rows, in time order."""
    rows = [{"t_s": t, "metric": m, "desired": d, "ready": r, "pods": n} for t, m, d, r, n in points]
    rows += [{"t_s": t, "event": e} for t, e in events.items()]
    return sorted(rows, key=lambda r: r["t_s"])


def test_curve_up_and_down_with_durations():
    rows = rows_from(
        [(0, 0, 1, 1, 1), (10, 45, 1, 1, 1), (20, 45, 3, 1, 3), (24, 15, 3, 3, 3), (40, 0, 3, 3, 3), (70, 0, 1, 1, 1)],
        {5: "load on", 35: "load off"},
    )
    s = pa.analyse_curve(rows, 1, 3)
    assert s.scaled_up and s.scaled_down
    assert s.scale_up_s == 19 and s.scale_down_s == 35
    assert s.peak_ready == 3 and s.peak_desired == 3 and s.metric_peak == 45 and s.dips_under_load == 0


def test_curve_without_scale_down_is_reported():
    rows = rows_from([(0, 0, 1, 1, 1), (20, 45, 3, 3, 3), (60, 0, 3, 3, 3)], {5: "load on", 30: "load off"})
    s = pa.analyse_curve(rows, 1, 3)
    assert s.scaled_up and not s.scaled_down and s.scale_down_s is None


def test_curve_that_never_reaches_max_is_not_scaled_up():
    rows = rows_from([(0, 0, 1, 1, 1), (20, 45, 2, 2, 2), (40, 45, 2, 2, 2)], {5: "load on"})
    s = pa.analyse_curve(rows, 1, 3)
    assert not s.scaled_up and s.scale_up_s is None and s.peak_ready == 2


def test_curve_counts_dips_under_load():
    rows = rows_from([(0, 0, 1, 1, 1), (10, 45, 3, 3, 3), (12, 45, 3, 2, 3), (14, 45, 3, 3, 3)], {5: "load on", 20: "load off"})
    assert pa.analyse_curve(rows, 1, 3).dips_under_load == 1


def test_scale_down_needs_the_pods_gone_not_only_ready_lower():
    # ready dropped to 1 but 3 pods still exist (terminating pods are no longer counted, pending ones are)
    rows = rows_from([(0, 0, 3, 3, 3), (10, 0, 1, 1, 3), (20, 0, 1, 1, 1)], {5: "load off"})
    assert pa.analyse_curve(rows, 1, 3).scale_down_s == 15


def test_curve_ignores_rows_with_missing_values():
    rows = [{"t_s": 0, "event": "load on"}, {"t_s": 1, "ready": None}, {"t_s": 2, "ready": float("nan")},
            {"t_s": 3, "ready": 3, "desired": 3, "pods": 3}]
    assert pa.analyse_curve(rows, 1, 3).scale_up_s == 3


# --- metrics APIs ----------------------------------------------------------------------------------------------------


def apiservice(name: str, available: str = "True", reason: str = "Passed", message: str = "", local: bool = False) -> dict:
    svc = {"metadata": {"name": name}, "spec": {} if local else {"service": {"namespace": "custom-metrics", "name": "adapter", "port": 6443}},
           "status": {"conditions": [{"type": "Available", "status": available, "reason": reason, "message": message}]}}
    return svc


def test_apiservice_rows_and_preference():
    rows = [pa.apiservice_row(apiservice("v1beta2.custom.metrics.k8s.io", "False", "FailedDiscoveryCheck", "connection refused"),
                              "v1beta2.custom.metrics.k8s.io"),
            pa.apiservice_row(apiservice("v1beta1.custom.metrics.k8s.io"), "v1beta1.custom.metrics.k8s.io"),
            pa.apiservice_row(None, "v1beta1.external.metrics.k8s.io")]
    assert rows[0]["available"] is False and rows[0]["message"] == "connection refused"
    assert rows[0]["backend"] == "custom-metrics/adapter:6443"
    assert rows[2] == {"apiservice": "v1beta1.external.metrics.k8s.io", "present": False, "available": False,
                       "reason": "absent", "message": "", "backend": ""}
    assert pa.best_available(rows, pa.CUSTOM)["apiservice"] == "v1beta1.custom.metrics.k8s.io"
    assert pa.best_available(rows, pa.EXTERNAL) is None


@pytest.mark.parametrize(("text", "value"), [("15", 15), ("1500m", 1.5), ("2k", 2000), ("0", 0), ("1Ki", 1024)])
def test_parse_quantity(text, value):
    assert pa.parse_quantity(text) == value


def test_format_value_and_metric_values():
    assert pa.format_value(45) == "45" and pa.format_value(15.0) == "15" and pa.format_value(1 / 3) == "0.333"
    assert pa.format_value(0) == "0"
    doc = {"items": [{"describedObject": {"name": "a"}, "value": "1500m"}, {"describedObject": {"name": "b"}, "value": "x"}]}
    assert pa.metric_values(doc) == {"a": 1.5}
    assert pa.metric_values("404 Not Found") == {}


# --- manifests and capacity ------------------------------------------------------------------------------------------


def params(**overrides: Any):
    return load_parameters(None, overrides)


def test_workload_requests_an_accelerator_and_carries_the_metric():
    p = params()
    d = pa.workload("inference", "ns", p, gpu=True, exporter=True)
    tpl = d["spec"]["template"]
    c = tpl["spec"]["containers"][0]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert tpl["metadata"]["annotations"][pa.ANNOTATION_PREFIX + p.hpa_metric_name] == "0"
    assert tpl["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert tpl["spec"]["volumes"][0]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"] == "metadata.annotations"
    assert d["spec"]["replicas"] == p.hpa_min_replicas
    compile(pa.EXPORTER, "exporter", "exec")  # the exporter the pods run is valid Python


def test_gpu_less_workload_requests_no_accelerator():
    c = pa.workload("inference", "ns", params(), gpu=False, exporter=False)["spec"]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in c["resources"]["limits"] and c["command"][0] == "sh"


def test_hpa_uses_pods_metric_and_short_scale_down_window():
    p = params(hpa_scale_down_window_s=20)
    h = pa.hpa("inference", "ns", "inference", p)
    metric = h["spec"]["metrics"][0]
    assert metric["type"] == "Pods" and metric["pods"]["metric"]["name"] == p.hpa_metric_name
    assert metric["pods"]["target"] == {"type": "AverageValue", "averageValue": str(p.hpa_target_value)}
    assert h["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 20
    assert h["apiVersion"] == "autoscaling/v2"


def node(name: str, gpus: int) -> dict:
    return {"metadata": {"name": name}, "status": {"allocatable": {"nvidia.com/gpu": str(gpus), "cpu": "8"}}}


def pod(name: str, node_name: str | None, gpus: int, phase: str = "Running", deleting: bool = False) -> dict:
    meta = {"name": name, **({"deletionTimestamp": "now"} if deleting else {})}
    return {"metadata": meta, "spec": {"nodeName": node_name, "containers": [{"resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}]},
            "status": {"phase": phase}}


def test_free_accelerators_subtracts_running_requests():
    nodes = pa.accelerator_nodes([node("g0", 8), node("g1", 8), node("cpu", 0)], "nvidia.com/gpu")
    assert set(nodes) == {"g0", "g1"}
    pods = [pod("a", "g0", 3), pod("b", "g1", 8), pod("c", "g0", 5, phase="Succeeded"), pod("d", "cpu", 0)]
    assert pa.free_accelerators(nodes, pods, "nvidia.com/gpu") == 5


def test_active_and_ready_pods():
    ready = pod("r", "g0", 1)
    ready["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    pods = [ready, pod("t", "g0", 1, deleting=True), pod("p", None, 1, phase="Pending"), pod("s", "g0", 1, phase="Succeeded")]
    assert [p["metadata"]["name"] for p in pa.active_pods(pods)] == ["r", "p"]
    assert [p["metadata"]["name"] for p in pa.ready_pods(pods)] == ["r"]


def test_hpa_metric_value_and_state():
    h = {"status": {"desiredReplicas": 3, "currentReplicas": 1,
                    "currentMetrics": [{"type": "Pods", "pods": {"metric": {"name": "q"}, "current": {"averageValue": "45"}}}],
                    "conditions": [{"type": "ScalingActive", "status": "True", "reason": "ValidMetricFound"}]}}
    assert pa.hpa_metric_value(h, "q") == 45 and pa.hpa_metric_value(h, "other") is None
    assert "desired=3" in pa.hpa_state(h) and "ScalingActive=True" in pa.hpa_state(h)


# --- the check against a fake client ---------------------------------------------------------------------------------


class FakeKube:
    def __init__(self, apiservices: list[dict], hpa: bool = True):
        self.apiservices, self.hpa = apiservices, hpa
        self.created: list[dict] = []

    def version(self) -> dict:
        return {"gitVersion": "v1.36.0"}

    def has_kind(self, api_version: str, kind: str) -> bool:
        return self.hpa and (api_version, kind) == ("autoscaling/v2", "HorizontalPodAutoscaler")

    def list(self, api_version: str, kind: str, namespace: str | None = None, **_: Any) -> list[dict]:
        return copy.deepcopy(self.apiservices) if kind == "APIService" else []

    def raw(self, method: str, path: str, **_: Any) -> dict:
        return {"resources": [{"name": "pods/aiconf_inference_queue_depth", "verbs": ["get"]}]}

    def create(self, obj: dict) -> dict:
        self.created.append(obj)
        raise AssertionError("nothing may be created when the metrics API is unavailable")


def run_fake(tmp_path, kube: FakeKube):
    return run_check("pod_autoscaling", load_parameters(None, {"checklist_version": "1.36"}), kube=kube, run_dir=tmp_path,
                     progress=lambda m: None)


def test_unavailable_custom_metrics_api_fails_with_the_reason(tmp_path):
    kube = FakeKube([apiservice("v1beta2.custom.metrics.k8s.io", "False", "FailedDiscoveryCheck",
                                "failing or missing response from https://127.0.0.1:1/apis/custom.metrics.k8s.io/v1beta2: connection refused"),
                     apiservice("v1beta1.metrics.k8s.io")])
    result = run_fake(tmp_path, kube)
    assert result.verdict is Verdict.FAIL
    sub = result.subcheck("custom_metrics_api_available")
    assert sub.verdict is Verdict.FAIL and "FailedDiscoveryCheck" in sub.summary and "connection refused" in sub.summary
    assert result.subcheck("scaled_up").verdict is Verdict.UNKNOWN
    assert result.subcheck("resource_metrics_api").verdict is Verdict.PASS
    assert result.subcheck("external_metrics_api").verdict is Verdict.NOT_APPLICABLE
    assert kube.created == []


def test_absent_custom_metrics_api_fails(tmp_path):
    result = run_fake(tmp_path, FakeKube([]))
    assert result.verdict is Verdict.FAIL
    assert "absent" in result.subcheck("custom_metrics_api_available").summary


def test_no_hpa_api_is_not_applicable(tmp_path):
    result = run_fake(tmp_path, FakeKube([], hpa=False))
    assert result.verdict is Verdict.NOT_APPLICABLE
    assert result.not_applicable.reason_code == "hpa_not_served"


def test_bad_replica_bounds_are_a_config_error(tmp_path):
    result = run_check("pod_autoscaling", load_parameters(None, {"checklist_version": "1.36", "hpa_max_replicas": 1}),
                       kube=FakeKube([]), run_dir=tmp_path, progress=lambda m: None)
    assert result.verdict is Verdict.ERROR and "hpa_max_replicas" in result.error["message"]
