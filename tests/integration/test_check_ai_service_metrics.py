"""ai_service_metrics end to end on the sandbox: its Prometheus 3.16 (Service aiconf-monitoring/prometheus, Kubernetes
SD of the real node, PodMonitors translated) collects the test inference server's counter exactly, registered by a
PodMonitor (auto) and by annotations. Then broken on purpose, and the check must not PASS:

- a PodMonitor whose selector matches no pod (registered, but the Prometheus selects nothing: the counter never
  appears) -> FAIL;
- one completion more than the check sent (a stray client) -> the counter is not K -> FAIL;
- the Prometheus Service pointing nowhere (selector matching no pod) -> FAIL; not discoverable (its labels gone)
  -> UNKNOWN; labelled as deployed by aiconf (a toolkit-deployed Prometheus) -> FAIL.

The Service is restored after each broken test. Skipped without the real node or the prometheus add-on.
"""

from __future__ import annotations

import copy
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

from aiconf.checks import ai_service_metrics as asm
from aiconf.execute import run_check
from aiconf.kube import Kube
from aiconf.model import Verdict
from aiconf.params import load_parameters
from aiconf.sandbox import realnode
from aiconf.sandbox.addons import prometheus as prom

pytestmark = pytest.mark.sandbox

#: The whole check on the sandbox (5 s scrape interval) must stay well under a minute.
POSITIVE_BUDGET_S = 60


@pytest.fixture(scope="module")
def kube(kube_sandbox) -> Kube:
    k = Kube.connect(str(kube_sandbox.kubeconfig))
    if not k.list("v1", "Node", label_selector=f"{realnode.REAL_NODE_LABEL}=true"):
        pytest.skip("the cluster has no real node (AICONF_TEST_REAL_NODE=0?): nothing real to scrape")
    sb = kube_sandbox.sandbox or SimpleNamespace(state_dir=Path(kube_sandbox.kubeconfig).parent)
    meta = prom.info(sb)
    if not meta or meta.get("skipped"):
        pytest.skip(f"the prometheus add-on does not run in this sandbox ({meta.get('skipped') if meta else 'absent'})")
    return k


def check(kube_sandbox, **overrides):
    params = load_parameters("sandbox", {"kubeconfig": str(kube_sandbox.kubeconfig), **overrides})
    run_id = f"itest-asm-{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    result = run_check("ai_service_metrics", params, run_id=run_id, progress=lambda m: None, run_dir=f"/tmp/{run_id}")
    return result, time.monotonic() - started


def explain(result) -> tuple:
    return result.reason, [(s.id, s.verdict, s.summary) for s in result.subchecks]


def subs(result) -> dict:
    return {s.id: s for s in result.subchecks}


@pytest.mark.parametrize("registration", ["auto", "annotations"])
def test_the_sandbox_prometheus_collects_exactly_the_requests_sent(kube, kube_sandbox, registration):
    result, seconds = check(kube_sandbox, service_metrics_registration=registration)
    assert result.verdict is Verdict.PASS, explain(result)
    how = result.metrics["registration"]["how"]
    assert how == ("podmonitor" if registration == "auto" else "annotations")
    k = load_parameters("sandbox").service_metrics_requests
    assert result.metrics["requests_sent"] == k and not result.metrics["send_failures"]
    assert f"aiconf_requests_total = {k} =" in subs(result)["counter_matches_requests"].summary
    assert any("sandbox's Prometheus" in n for n in result.notes)
    assert seconds < POSITIVE_BUDGET_S, (seconds, result.metrics.get("steps"))
    leftover = kube.list("v1", "Namespace", label_selector=f"aiconf.io/run-id={result.run_id}")
    assert [n for n in leftover if not n["metadata"].get("deletionTimestamp")] == []


def test_a_monitor_that_selects_no_pod_fails(kube_sandbox, kube, monkeypatch):
    original = asm.pod_monitor

    def unmatched(namespace, workload_namespace, labels):  # registered, but its selector matches no pod
        monitor = original(namespace, workload_namespace, labels)
        monitor["spec"]["selector"] = {"matchLabels": {asm.APP_LABEL: "nothing-has-this-label"}}
        return monitor

    monkeypatch.setattr(asm, "pod_monitor", unmatched)
    result, _ = check(kube_sandbox, service_metrics_discovery_timeout_s=15)
    assert result.verdict is Verdict.FAIL, explain(result)
    assert subs(result)["workload_discovered"].verdict is Verdict.FAIL
    assert result.metrics["registration"]["how"] == "podmonitor"


def test_a_counter_that_is_not_the_number_sent_fails(kube_sandbox, kube, monkeypatch):
    original = asm.send_requests

    def with_a_stray_request(k, namespace, p):
        k.raw("POST", f"/api/v1/namespaces/{namespace}/services/{asm.APP}:http/proxy/v1/completions", {"prompt": "x"})
        return original(k, namespace, p)

    monkeypatch.setattr(asm, "send_requests", with_a_stray_request)
    result, _ = check(kube_sandbox)
    assert result.verdict is Verdict.FAIL, explain(result)
    sub = subs(result)["counter_matches_requests"]
    assert sub.verdict is Verdict.FAIL
    assert f"={result.metrics['requests_sent'] + 1}" in sub.summary


@pytest.fixture
def prometheus_service(kube):
    """The sandbox Prometheus Service, restored (labels and selector) after the test broke it."""
    svc = kube.get("v1", "Service", prom.SERVICE, prom.NAMESPACE)
    original = copy.deepcopy({"labels": svc["metadata"]["labels"], "selector": svc["spec"]["selector"]})
    yield svc
    now = kube.get("v1", "Service", prom.SERVICE, prom.NAMESPACE)
    labels = {k: None for k in now["metadata"].get("labels") or {}} | original["labels"]
    selector = {k: None for k in now["spec"].get("selector") or {}} | original["selector"]
    kube.patch(
        "v1", "Service", prom.SERVICE, {"metadata": {"labels": labels}, "spec": {"selector": selector}}, prom.NAMESPACE
    )


@pytest.mark.parametrize(
    ("broken", "patch", "verdict", "failed"),
    [
        (
            "pointing nowhere",
            {"spec": {"selector": {"app.kubernetes.io/name": "nothing"}}},
            Verdict.FAIL,
            "query_endpoint_reachable",
        ),
        (
            "not discoverable",
            {"metadata": {"labels": {"app.kubernetes.io/name": None, "app": None}}},
            Verdict.UNKNOWN,
            "monitoring_detected",
        ),
        (
            "deployed by the toolkit",
            {"metadata": {"labels": {"app.kubernetes.io/managed-by": "aiconf"}}},
            Verdict.FAIL,
            "monitoring_detected",
        ),
    ],
)
def test_a_broken_or_missing_monitoring_system_does_not_pass(
    kube_sandbox, kube, prometheus_service, broken, patch, verdict, failed
):
    kube.patch("v1", "Service", prom.SERVICE, patch, prom.NAMESPACE)
    result, seconds = check(kube_sandbox)
    assert result.verdict is verdict, (broken, explain(result))
    assert subs(result)[failed].verdict is verdict
    assert {s.id for s in result.subchecks} == set(asm.SUBCHECKS)
    assert seconds < 30, seconds  # nothing to wait for
