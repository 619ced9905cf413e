"""advanced_inference_ingress without a cluster: pool status rows, manifests, and the check against a fake client
whose 'gateway' writes a chosen status on the probe route."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from aiconf.checks import advanced_inference_ingress as aii
from aiconf.errors import WaitTimeout
from aiconf.execute import run_check
from aiconf.model import Verdict
from aiconf.params import load_parameters


def test_pool_rows_show_each_gateway_verdict_and_pools_without_status():
    pools = [
        {
            "metadata": {"name": "a", "namespace": "x"},
            "status": {
                "parents": [
                    {
                        "parentRef": {"name": "gw", "namespace": "infra"},
                        "conditions": [
                            {"type": "Accepted", "status": "True"},
                            {"type": "ResolvedRefs", "status": "False"},
                        ],
                    }
                ]
            },
        },
        {"metadata": {"name": "b", "namespace": "x"}},
    ]
    rows = aii.pool_rows(pools)
    assert rows[0] == {"pool": "x/a", "parent": "infra/gw", "accepted": "True", "resolved_refs": "False"}
    assert rows[1]["parent"] == "(no gateway status)"


def test_probe_route_points_only_at_the_pool():
    gw = {"metadata": {"name": "gw", "namespace": "infra"}}
    route = aii.probe_route("r", "ns", gw, "pool")
    assert route["spec"]["parentRefs"] == [{"name": "gw", "namespace": "infra"}]
    assert route["spec"]["rules"][0]["backendRefs"] == [
        {"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": "pool"}
    ]
    pool = aii.probe_pool("pool", "ns")
    assert pool["spec"]["endpointPickerRef"]["port"] == {"number": 9002}


class FakeKube:
    """GAIE served or not; one Gateway of an accepted class; the probe route's status chosen by ``route_status``."""

    def __init__(self, *, gaie: bool = True, gateway: bool = True, route_status: list[dict] | None = None):
        self.gaie, self.gateway, self.route_status = gaie, gateway, route_status
        self.created: list[dict] = []

    def version(self) -> dict:
        return {"gitVersion": "v1.36.0"}

    def served_versions(self, group: str) -> list[str]:
        if group == "gateway.networking.k8s.io":
            return ["v1"]
        if self.gaie and group == aii.GAIE_GROUP:
            return ["v1"]
        if self.gaie and group == aii.GAIE_X_GROUP:
            return ["v1alpha2"]
        return []

    def has_kind(self, api_version: str, kind: str) -> bool:
        return self.gaie and (api_version, kind) in {
            (f"{aii.GAIE_GROUP}/v1", "InferencePool"),
            (f"{aii.GAIE_X_GROUP}/v1alpha2", "InferenceObjective"),
        }

    def list(self, api_version: str, kind: str, namespace: str | None = None, **_: Any) -> list[dict]:
        if kind == "GatewayClass":
            return [
                {
                    "metadata": {"name": "gaie"},
                    "spec": {"controllerName": "x/y"},
                    "status": {"conditions": [{"type": "Accepted", "status": "True"}]},
                }
            ]
        if kind == "Gateway" and self.gateway:
            return [
                {
                    "metadata": {"name": "gw", "namespace": "infra"},
                    "spec": {"gatewayClassName": "gaie"},
                    "status": {"conditions": [{"type": "Programmed", "status": "True"}]},
                }
            ]
        return []

    def create(self, obj: dict) -> dict:
        self.created.append(copy.deepcopy(obj))
        return copy.deepcopy(obj)

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict | None:
        if kind == "CustomResourceDefinition":
            annotations = {aii.BUNDLE_ANNOTATION: "v1.4.0"}
            return {"metadata": {"name": name, "annotations": annotations}} if self.gaie else None
        route = next((o for o in self.created if o["kind"] == kind and o["metadata"]["name"] == name), None)
        if route is not None and self.route_status is not None:
            route = copy.deepcopy(route)
            route["status"] = {
                "parents": [{"parentRef": {"name": "gw", "namespace": "infra"}, "conditions": self.route_status}]
            }
        return route

    def wait_for(self, api_version, kind, name, namespace, predicate, timeout_s, what, describe=None):
        obj = self.get(api_version, kind, name, namespace)
        if predicate(obj):
            return obj
        raise WaitTimeout(what, timeout_s, "")

    def delete(self, *a: Any, **kw: Any) -> bool:
        return True

    def delete_namespace(self, *a: Any, **kw: Any) -> None:
        pass

    def wait_for_deletion(self, *a: Any, **kw: Any) -> None:
        pass

    def events(self, namespace: str) -> list[dict]:
        return []

    def pod_logs(self, *a: Any, **kw: Any) -> str:
        return ""


def run_fake(tmp_path, kube: FakeKube, **overrides: Any):
    params = load_parameters(None, {"checklist_version": "1.36", "gaie_route_timeout_s": 1, **overrides})
    return run_check("advanced_inference_ingress", params, kube=kube, run_dir=tmp_path, progress=lambda m: None)


def verdicts(result) -> dict[str, Verdict]:
    return {s.id: s.verdict for s in result.subchecks}


ACCEPTED = [
    {"type": "Accepted", "status": "True", "reason": "Accepted"},
    {"type": "ResolvedRefs", "status": "True", "reason": "ResolvedRefs"},
]


def test_no_inference_pool_api_is_not_applicable(tmp_path):
    kube = FakeKube(gaie=False)
    result = run_fake(tmp_path, kube)
    assert result.verdict is Verdict.NOT_APPLICABLE
    assert "inference.networking.k8s.io" in result.not_applicable.justification
    assert set(verdicts(result)) == set(aii.SUBCHECKS) and kube.created == []


def test_a_gateway_that_resolves_pools_is_still_unknown_without_routing_evidence(tmp_path):
    result = run_fake(tmp_path, FakeKube(route_status=ACCEPTED))
    v = verdicts(result)
    assert v["gateway_resolves_pool_backend"] is Verdict.PASS
    assert (
        v["metric_aware_routing"] is Verdict.UNKNOWN
        and "conformance" in result.subcheck("metric_aware_routing").summary
    )
    assert result.verdict is Verdict.UNKNOWN  # never PASS on APIs and route status alone


@pytest.mark.parametrize(
    "status",
    [
        [
            {"type": "Accepted", "status": "True", "reason": "Accepted"},
            {"type": "ResolvedRefs", "status": "False", "reason": "InvalidKind", "message": "unsupported backend kind"},
        ],
        None,  # the gateway never writes a status
    ],
    ids=["invalid-kind", "no-status"],
)
def test_a_gateway_that_does_not_resolve_pools_fails(tmp_path, status):
    result = run_fake(tmp_path, FakeKube(route_status=status))
    assert result.verdict is Verdict.FAIL
    assert result.subcheck("gateway_resolves_pool_backend").verdict is Verdict.FAIL


def test_gaie_apis_without_a_gateway_fail(tmp_path):
    kube = FakeKube(gateway=False)
    result = run_fake(tmp_path, kube)
    assert result.verdict is Verdict.FAIL
    assert result.subcheck("gateway_class_accepted").verdict is Verdict.FAIL
    assert set(verdicts(result)) == set(aii.SUBCHECKS) and kube.created == []


def test_preflight_needs_the_inference_pool_api():
    p = load_parameters(None, {"checklist_version": "1.36"})
    assert aii.preflight(FakeKube(gaie=False), p)[0] is False
    ok, detail = aii.preflight(FakeKube(), p)
    assert ok and "inference.networking.k8s.io/v1" in detail and "manual evidence" in detail


def report(version: str = "v1.4.0", result: str = "success", passed: int = 13, failed: int = 0) -> dict:
    """The shape of the upstream suite's report (as published under conformance/reports/ upstream)."""
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "ConformanceReport",
        "GatewayAPIInferenceExtensionVersion": version,
        "date": "2026-11-01T10:00:00Z",
        "implementation": {"project": "some-gateway", "version": "1.2.3"},
        "profiles": [
            {
                "name": "Gateway",
                "core": {"result": result, "statistics": {"Passed": passed, "Failed": failed, "Skipped": 0}},
            }
        ],
    }


@pytest.mark.parametrize(
    ("doc", "installed", "expected"),
    [
        (report(), "v1.4.0", Verdict.PASS),
        (report(result="failure", passed=11, failed=2), "v1.4.0", Verdict.FAIL),
        (report(passed=0), "v1.4.0", Verdict.FAIL),  # success with nothing run proves nothing
        (report(version="v1.0.1"), "v1.4.0", Verdict.UNKNOWN),  # another release than the installed one
        ({"kind": "Something"}, "v1.4.0", Verdict.UNKNOWN),
        ({**report(), "profiles": []}, "v1.4.0", Verdict.UNKNOWN),
    ],
    ids=["success", "failures", "nothing-passed", "other-version", "not-a-report", "no-gateway-profile"],
)
def test_conformance_report_judgement(doc, installed, expected):
    verdict, summary = aii.judge_conformance_report(doc, installed)
    assert verdict is expected, summary
    if doc.get("kind") == "ConformanceReport" and doc.get("profiles"):
        assert "some-gateway 1.2.3" in summary


def test_a_matching_passing_report_and_a_resolving_gateway_pass(tmp_path):
    path = tmp_path / "report.yaml"
    path.write_text(yaml.safe_dump(report()))
    result = run_fake(tmp_path, FakeKube(route_status=ACCEPTED), gaie_conformance_report=str(path))
    assert result.verdict is Verdict.PASS, [(s.id, s.verdict, s.summary) for s in result.subchecks]
    assert any("judged from the report" in t for t in result.does_not_prove)  # the result says where PASS came from


def test_a_passing_report_does_not_hide_a_gateway_that_refuses_pools(tmp_path):
    path = tmp_path / "report.yaml"
    path.write_text(yaml.safe_dump(report()))
    refused = [
        {"type": "Accepted", "status": "True"},
        {"type": "ResolvedRefs", "status": "False", "reason": "InvalidKind"},
    ]
    result = run_fake(tmp_path, FakeKube(route_status=refused), gaie_conformance_report=str(path))
    assert result.verdict is Verdict.FAIL
    assert result.subcheck("metric_aware_routing").verdict is Verdict.PASS


def test_an_unreadable_report_is_a_config_error(tmp_path):
    result = run_fake(tmp_path, FakeKube(route_status=ACCEPTED), gaie_conformance_report=str(tmp_path / "missing.yaml"))
    assert result.verdict is Verdict.ERROR and "gaie_conformance_report" in result.error["message"]
