"""ai_service_metrics without a cluster: discovery of the monitoring system, the registration plan for Prometheus
Operator selectors, the judgements, and whole runs against a fake API whose workload counts with the real test
inference server's counters (aiconf.workloads.inference_stub.Stats) and whose "Prometheus" only collects them when
the workload was registered the way it selects. Broken variants must not PASS: no monitoring system, only an
OpenTelemetry collector, only a toolkit-deployed Prometheus, a query endpoint that does not answer, a monitor the
Prometheus does not select, a counter that differs from the requests sent, a histogram without buckets."""

from __future__ import annotations

import copy
import re
import time
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from matplotlib.figure import Figure

from aiconf import display
from aiconf.checks import ai_service_metrics as asm
from aiconf.execute import run_check
from aiconf.kube import Kube
from aiconf.model import Verdict
from aiconf.params import Params, load_parameters
from aiconf.workloads.inference_stub import Stats

PROM_SERVICE = {
    "metadata": {
        "name": "prometheus",
        "namespace": "monitoring",
        "labels": {"app.kubernetes.io/name": "prometheus"},
    },
    "spec": {"ports": [{"name": "web", "port": 9090}]},
}


def toolkit_service() -> dict:
    svc = copy.deepcopy(PROM_SERVICE)
    svc["metadata"].update(
        namespace="aiconf-mine", labels={"app": "prometheus", "app.kubernetes.io/managed-by": "aiconf"}
    )
    return svc


def operator_instance(**spec: Any) -> dict:
    return {"metadata": {"name": "k8s", "namespace": "monitoring", "labels": {}}, "spec": spec}


class FakeKube:
    """A cluster with an optional monitoring system. The workload's counters are the real stub's ``Stats``; the fake
    Prometheus returns them only when ``collects(created objects)`` says the registration matches what it selects."""

    def __init__(
        self,
        *,
        services: list[dict] | None = None,
        instances: list[dict] | None = None,
        monitor_kinds: tuple[str, ...] = (),
        otel_pods: list[dict] | None = None,
        collects: Any = None,
        counter_offset: int = 0,
        buckets: int = 13,
        query_down: bool = False,
        scrapes_stop: bool = False,
    ):
        self.services = services or []
        self.instances = instances or []
        self.monitor_kinds = monitor_kinds
        self.otel_pods = otel_pods or []
        self.collects = collects or (lambda created: True)
        self.counter_offset, self.buckets, self.query_down = counter_offset, buckets, query_down
        self.scrapes_stop = scrapes_stop  # the last scrape is from before the sends ended
        self.stats = Stats("v1", "serve", "stub-0")
        self.created: list[dict] = []
        self.patched: list[tuple] = []
        self.deleted: list[tuple] = []
        self.queries: list[str] = []
        self.posts = 0
        self.waiting_for = ""

    sample = Kube.sample  # the real bounded poll

    def has_kind(self, api_version: str, kind: str) -> bool:
        if kind == "Prometheus":
            return bool(self.instances)
        return kind in self.monitor_kinds

    def list(self, api_version: str, kind: str, namespace: str | None = None, *, label_selector: str = "", **_: Any):
        if kind == "Prometheus":
            return copy.deepcopy(self.instances)
        if kind == "Service":
            key, _, value = (label_selector or "=").partition("=")
            return [copy.deepcopy(s) for s in self.services if (s["metadata"].get("labels") or {}).get(key) == value]
        if kind == "Pod" and label_selector == asm.OTEL_POD_SELECTOR:
            return copy.deepcopy(self.otel_pods)
        return []

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None):
        if kind == "Service":
            for s in self.services:
                if s["metadata"]["name"] == name and s["metadata"]["namespace"] == namespace:
                    return copy.deepcopy(s)
            if name == "prometheus-operated" and self.instances:
                return {"metadata": {"name": name, "namespace": namespace, "labels": {}}}
        return None

    def create(self, obj: dict) -> dict:
        self.created.append(copy.deepcopy(obj))
        return copy.deepcopy(obj)

    def patch(self, api_version: str, kind: str, name: str, patch: dict, namespace: str | None = None, **_: Any):
        self.patched.append((kind, name, patch))
        return {}

    def delete(self, *args: Any, **_: Any) -> bool:
        self.deleted.append(args)
        return True

    def delete_namespace(self, name: str, timeout_s: float = 0) -> None:
        pass

    def events(self, namespace: str) -> list:
        return []

    def wait_until(self, api_version, kind, namespace, predicate, timeout_s, what, **_: Any):
        pods = [{"metadata": {"name": "stub-0"}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}]
        assert predicate(pods)
        return pods

    # -- the proxy: completions to the stub, queries to the fake Prometheus ------------------------------------------
    def raw(self, method: str, path: str, body: Any = None, *, query: dict | None = None, **_: Any) -> Any:
        if method == "POST":
            assert path.endswith(f"/services/{asm.APP}:{asm.PORT_NAME}/proxy/v1/completions"), path
            self.posts += 1
            self.stats.started()
            self.stats.finished(body["model"], 200, 0.003, 4, 5)
            return {"object": "text_completion"}
        assert path.endswith("/proxy/api/v1/query"), path
        if self.query_down:
            raise ApiException(status=503, reason="Service Unavailable")
        promql = query["query"]
        self.queries.append(promql)
        if promql == "time()":
            return {"status": "success", "data": {"resultType": "scalar", "result": [time.time(), str(time.time())]}}
        return {"status": "success", "data": {"resultType": "vector", "result": self.answer(promql)}}

    def answer(self, promql: str) -> list[dict]:
        def one(value: float, **labels: str) -> list[dict]:
            return [{"metric": labels, "value": [0, str(value)]}]

        if promql == "count(up)":
            return one(3)
        if not self.collects(self.created):
            return []
        ns = re.search(r'namespace="([^"]+)"', promql).group(1)
        job = f"{ns}/{asm.APP}"
        served = sum(n for (model, _), n in self.stats.requests.items() if model == asm.MODEL)
        if promql.startswith("count(aiconf_inference_stub_info"):
            return one(1)
        if "timestamp(" in promql:  # each query is a fresh scrape, unless scrapes stopped before the sends ended
            return one(1.0 if self.scrapes_stop else time.time(), job=job) if served else []
        if "aiconf_requests_total" in promql:
            return one(served + self.counter_offset, job=job) if served else []
        if "aiconf_request_duration_seconds_count" in promql:
            return one(served, job=job) if served else []
        if "aiconf_request_duration_seconds_bucket" in promql:
            return one(self.buckets) if served and self.buckets else []
        if "aiconf_requests_running" in promql:
            return one(1)
        raise AssertionError(promql)


def fast_params(**overrides: Any) -> Params:
    base = load_parameters(None, {"checklist_version": "1.36"}).to_dict()
    base.update(
        service_metrics_requests=7,
        service_metrics_send_s=0.2,
        service_metrics_query_interval_s=0.05,
        service_metrics_discovery_timeout_s=0.5,
        service_metrics_query_timeout_s=0.5,
        **overrides,
    )
    return Params(base)


def run_fake(tmp_path, kube: FakeKube, **overrides: Any):
    return run_check(
        "ai_service_metrics", fast_params(**overrides), kube=kube, run_dir=tmp_path / "run", progress=lambda m: None
    )


def subs(result) -> dict:
    return {s.id: s for s in result.subchecks}


def created(kube: FakeKube, kind: str) -> list[dict]:
    return [o for o in kube.created if o["kind"] == kind]


def explain(result) -> tuple:
    return result.reason, [(s.id, s.verdict, s.summary) for s in result.subchecks]


# --- whole runs --------------------------------------------------------------------------------------------------------


def test_annotated_workload_collected_exactly_passes_and_charts_the_counter(tmp_path):
    kube = FakeKube(services=[PROM_SERVICE])
    result = run_fake(tmp_path, kube)
    assert result.verdict is Verdict.PASS, explain(result)
    assert {s.id for s in result.subchecks} == set(asm.SUBCHECKS)
    assert kube.posts == 7 and result.metrics["requests_sent"] == 7
    (dep,) = created(kube, "Deployment")
    annotations = dep["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "8000",
        "prometheus.io/path": "/metrics",
    }
    assert not created(kube, "ServiceMonitor") and not created(kube, "PodMonitor")
    (cm,) = created(kube, "ConfigMap")
    assert "class Stats" in cm["data"]["inference_stub.py"]  # the stub itself, mounted: any python3 image runs it
    frame = display.series(result, "counter")
    assert frame["sent"].iloc[-1] == 7 and frame["counter"].iloc[-1] == 7
    assert list(frame["sent"]) == sorted(frame["sent"])  # the client side only grows
    assert result.metrics["milestones_s"]["counter == K"] >= result.metrics["milestones_s"]["first sample collected"]
    assert isinstance(display.chart(result, "counter"), Figure)
    assert isinstance(display.chart(result, "discovery"), Figure)


def test_operator_selectors_label_the_service_monitor_and_the_namespace(tmp_path):
    instance = operator_instance(
        serviceMonitorSelector={"matchLabels": {"release": "kps"}},
        serviceMonitorNamespaceSelector={
            "matchExpressions": [{"key": "monitoring", "operator": "In", "values": ["on"]}]
        },
    )

    def collects(objs: list[dict]) -> bool:  # what the Operator would select
        return any(o["kind"] == "ServiceMonitor" and o["metadata"]["labels"].get("release") == "kps" for o in objs)

    kube = FakeKube(instances=[instance], monitor_kinds=("ServiceMonitor", "PodMonitor"), collects=collects)
    result = run_fake(tmp_path, kube)
    assert result.verdict is Verdict.PASS, explain(result)
    (sm,) = created(kube, "ServiceMonitor")
    assert sm["metadata"]["labels"]["release"] == "kps"
    assert sm["spec"]["endpoints"] == [{"port": "http", "path": "/metrics"}]
    assert [(k, p["metadata"]["labels"]) for k, _, p in kube.patched] == [("Namespace", {"monitoring": "on"})]
    assert "Prometheus Operator instance monitoring/k8s" in subs(result)["monitoring_detected"].summary


def test_operator_without_namespace_selector_gets_the_monitor_in_its_own_namespace_and_it_is_deleted(tmp_path):
    instance = operator_instance(podMonitorSelector={})
    kube = FakeKube(instances=[instance], monitor_kinds=("ServiceMonitor", "PodMonitor"))
    result = run_fake(tmp_path, kube)
    assert result.verdict is Verdict.PASS, explain(result)
    (pm,) = created(kube, "PodMonitor")
    assert pm["metadata"]["namespace"] == "monitoring"
    assert pm["spec"]["namespaceSelector"]["matchNames"][0].startswith("aiconf-ai-service-metrics-")
    assert ("monitoring.coreos.com/v1", "PodMonitor", asm.APP, "monitoring") in kube.deleted


def test_monitor_the_prometheus_does_not_select_fails_and_sends_nothing(tmp_path):
    instance = operator_instance(
        serviceMonitorSelector={"matchLabels": {"release": "kps"}}, serviceMonitorNamespaceSelector={}
    )

    def collects(objs: list[dict]) -> bool:  # this Prometheus is also configured to want team=ml (not in its CR)
        return any(o["metadata"]["labels"].get("team") == "ml" for o in objs if o["kind"] == "ServiceMonitor")

    kube = FakeKube(instances=[instance], monitor_kinds=("ServiceMonitor",), collects=collects)
    result = run_fake(tmp_path, kube)
    assert result.verdict is Verdict.FAIL, explain(result)
    assert subs(result)["workload_discovered"].verdict is Verdict.FAIL
    assert subs(result)["counter_matches_requests"].verdict is Verdict.UNKNOWN
    assert kube.posts == 0
    # the same cluster passes once the monitor carries the label the platform needs (service_metrics_monitor_labels)
    kube = FakeKube(instances=[instance], monitor_kinds=("ServiceMonitor",), collects=collects)
    result = run_fake(tmp_path, kube, service_metrics_monitor_labels={"team": "ml"})
    assert result.verdict is Verdict.PASS, explain(result)


@pytest.mark.parametrize("offset", [1, -1])
def test_counter_that_differs_from_the_requests_sent_fails(tmp_path, offset):
    kube = FakeKube(services=[PROM_SERVICE], counter_offset=offset)
    result = run_fake(tmp_path, kube)
    assert result.verdict is Verdict.FAIL, explain(result)
    sub = subs(result)["counter_matches_requests"]
    assert sub.verdict is Verdict.FAIL and f"={7 + offset}" in sub.summary
    assert "counter == K" not in result.metrics["milestones_s"]


def test_a_counter_never_scraped_after_the_last_send_is_not_a_pass(tmp_path):
    result = run_fake(tmp_path, FakeKube(services=[PROM_SERVICE], scrapes_stop=True))
    sub = subs(result)["counter_matches_requests"]
    assert sub.verdict is Verdict.UNKNOWN and "no scrape after the last send" in sub.summary
    assert result.verdict is Verdict.UNKNOWN


def test_histogram_without_buckets_fails(tmp_path):
    result = run_fake(tmp_path, FakeKube(services=[PROM_SERVICE], buckets=0))
    assert subs(result)["histogram_reflects_requests"].verdict is Verdict.FAIL
    assert result.verdict is Verdict.FAIL


def test_no_monitoring_system_is_unknown_and_creates_nothing(tmp_path):
    kube = FakeKube()
    result = run_fake(tmp_path, kube)
    assert result.verdict is Verdict.UNKNOWN, explain(result)
    assert {s.id for s in result.subchecks} == set(asm.SUBCHECKS)
    assert not kube.created


def test_an_opentelemetry_collector_alone_is_unknown_and_named(tmp_path):
    otel = {"metadata": {"name": "otel-0", "namespace": "observability"}}
    result = run_fake(tmp_path, FakeKube(otel_pods=[otel]))
    assert result.verdict is Verdict.UNKNOWN
    assert "OpenTelemetry collector" in subs(result)["monitoring_detected"].summary
    assert "observability/otel-0" in subs(result)["monitoring_detected"].observed


def test_a_prometheus_the_toolkit_deployed_never_counts(tmp_path):
    kube = FakeKube(services=[toolkit_service()])
    result = run_fake(tmp_path, kube)
    assert result.verdict is Verdict.FAIL, explain(result)
    assert "deployed by aiconf itself" in subs(result)["monitoring_detected"].summary
    assert not kube.created and kube.posts == 0
    # beside the platform's own, the platform's is used
    kube = FakeKube(services=[toolkit_service(), PROM_SERVICE])
    result = run_fake(tmp_path, kube)
    assert result.verdict is Verdict.PASS, explain(result)
    assert "monitoring/prometheus" in subs(result)["monitoring_detected"].summary


def test_query_endpoint_that_does_not_answer_fails(tmp_path):
    kube = FakeKube(services=[PROM_SERVICE], query_down=True)
    result = run_fake(tmp_path, kube)
    assert result.verdict is Verdict.FAIL, explain(result)
    assert "503" in subs(result)["query_endpoint_reachable"].summary
    assert not kube.created


def test_node_selector_pins_the_pod_and_tolerates_the_same_keys():
    p = fast_params(service_metrics_node_selector="sandbox.aiconf.io/real-node=true")
    spec = asm.inference_deployment("ns", p, annotate=False)["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {"sandbox.aiconf.io/real-node": "true"}
    assert spec["tolerations"] == [{"key": "sandbox.aiconf.io/real-node", "operator": "Exists", "effect": "NoSchedule"}]
    assert spec["securityContext"]["runAsNonRoot"] is True
    with pytest.raises(ValueError):
        asm.selector_terms("no-equals-sign")


# --- pure parts --------------------------------------------------------------------------------------------------------


def test_selector_labels_follow_label_selector_semantics():
    assert asm.selector_labels(None) is None  # a nil selector selects nothing
    assert asm.selector_labels({}) == {}
    sel = {
        "matchLabels": {"release": "kps"},
        "matchExpressions": [
            {"key": "team", "operator": "In", "values": ["ml", "ai"]},
            {"key": "scrape", "operator": "Exists"},
            {"key": "legacy", "operator": "DoesNotExist"},
        ],
    }
    assert asm.selector_labels(sel) == {"release": "kps", "team": "ml", "scrape": "aiconf"}


def test_plan_registration_reads_the_instance_and_refuses_unknown_choices():
    inv = asm.Inventory(monitor_kinds=["ServiceMonitor", "PodMonitor"])
    assert asm.plan_registration("auto", inv, {}).how == "podmonitor"  # CRDs without an instance
    assert asm.plan_registration("auto", asm.Inventory(), {}).how == "annotations"
    inv.instances = [
        asm.OperatorInstance.from_object(operator_instance(podMonitorSelector={"matchLabels": {"a": "b"}}))
    ]
    reg = asm.plan_registration("auto", inv, {"x": "y"})
    assert (reg.how, reg.monitor_labels, reg.monitor_namespace) == ("podmonitor", {"a": "b", "x": "y"}, "monitoring")
    reg = asm.plan_registration("servicemonitor", inv, {})  # forced, but this instance selects no ServiceMonitor
    assert "selects none" in reg.why
    with pytest.raises(ValueError):
        asm.plan_registration("helm", inv, {})


def test_judge_counter():
    assert asm.judge_counter({"a": 5.0}, 5, 0)[0] is Verdict.PASS
    assert asm.judge_counter({"a": 5.0, "b": 5.0}, 5, 0)[0] is Verdict.PASS  # two jobs, each exact
    assert asm.judge_counter({"a": 10.0}, 5, 0)[0] is Verdict.FAIL  # double counted
    assert asm.judge_counter({}, 5, 0)[0] is Verdict.FAIL
    assert asm.judge_counter({"a": 6.0}, 5, 1)[0] is Verdict.UNKNOWN  # a failed send may have been served
    assert asm.judge_counter({"a": 5.0}, 5, 0, fresh=False)[0] is Verdict.UNKNOWN  # a lagging scrape shows fewer


def test_preflight(tmp_path):
    assert asm.preflight(FakeKube(services=[PROM_SERVICE]), fast_params())[0] is True
    assert asm.preflight(FakeKube(), fast_params())[0] is False
    ok, why = asm.preflight(FakeKube(services=[toolkit_service()]), fast_params())
    assert not ok and "deployed by aiconf" in why


def test_each_sample_reads_the_scrape_time_before_the_counter(tmp_path):
    """A scrape landing between two queries must not pair an old count with a new scrape time (a false PASS once):
    the time is read first, so the counter read after it is from that scrape or a newer one."""
    kube = FakeKube(services=[PROM_SERVICE])
    run_fake(tmp_path, kube)
    order = [q for q in kube.queries if "aiconf_requests_total" in q]
    assert order and len(order) % 2 == 0
    assert all("timestamp(" in first and "timestamp(" not in second for first, second in zip(order[::2], order[1::2]))
