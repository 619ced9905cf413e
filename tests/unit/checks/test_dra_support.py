"""dra_support without a cluster: discovery judgement, selector building, manifests, and the API part of the check
run against a fake client built from constructed discovery documents."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from aiconf.checks import dra_support as dra
from aiconf.execute import run_check
from aiconf.model import ProductStatus, Verdict, product_status
from aiconf.params import load_parameters

ALL_VERBS = list(dra.REQUIRED_VERBS)


def resources(verbs: list[str] | None = None, drop: str | None = None, without_verb: tuple[str, str] | None = None) -> list[dict]:
    """An APIResourceList.resources for resource.k8s.io as a 1.34+ server publishes it."""
    kinds = {"deviceclasses": ("DeviceClass", False), "resourceclaims": ("ResourceClaim", True),
             "resourceclaimtemplates": ("ResourceClaimTemplate", True), "resourceslices": ("ResourceSlice", False)}
    out = []
    for name, (kind, namespaced) in kinds.items():
        if name == drop:
            continue
        v = list(verbs or ALL_VERBS)
        if without_verb and without_verb[0] == name:
            v.remove(without_verb[1])
        out.append({"name": name, "kind": kind, "namespaced": namespaced, "verbs": v})
    out.append({"name": "resourceclaims/status", "kind": "ResourceClaim", "namespaced": True, "verbs": ["get", "patch", "update"]})
    return out


# --- discovery judgement ---------------------------------------------------------------------------------------------


def test_v1_complete_passes_on_1_35_must():
    a = dra.assess_api({"v1": resources(), "v1beta2": resources()}, "1.35", "MUST")
    assert (a.group_verdict, a.resources_verdict) == (Verdict.PASS, Verdict.PASS)
    assert a.chosen == "v1" and a.missing == {} and a.status_suggestion is None
    assert {r["resource"] for r in a.table if r["version"] == "v1"} == set(dra.DRA_RESOURCES)
    assert next(r for r in a.table if r["resource"] == "resourceclaims")["subresources"] == "status"


@pytest.mark.parametrize(
    ("resource", "verb"),
    [("resourceclaims", "watch"), ("deviceclasses", "create"), ("resourceslices", "deletecollection")],
    ids=["claims-no-watch", "classes-no-create", "slices-no-deletecollection"],
)
def test_v1_missing_a_verb_fails(resource, verb):
    a = dra.assess_api({"v1": resources(without_verb=(resource, verb))}, "1.34", "MUST")
    assert a.group_verdict is Verdict.PASS
    assert a.resources_verdict is Verdict.FAIL
    assert a.missing == {resource: [verb]}
    assert resource in a.resources_summary and verb in a.resources_summary


def test_v1_missing_a_resource_fails():
    a = dra.assess_api({"v1": resources(drop="resourceclaimtemplates")}, "1.35", "MUST")
    assert a.resources_verdict is Verdict.FAIL
    assert a.missing == {"resourceclaimtemplates": ["*"]}
    assert "resource absent" in a.resources_summary


def test_only_beta_on_1_34_must_fails():
    a = dra.assess_api({"v1beta1": resources(), "v1beta2": resources()}, "1.34", "MUST")
    assert a.group_verdict is Verdict.FAIL and a.resources_verdict is Verdict.FAIL
    assert "v1 is not served" in a.group_summary


def test_only_beta_on_1_33_should_suggests_partially_implemented():
    a = dra.assess_api({"v1beta1": resources(), "v1beta2": resources()}, "1.33", "SHOULD")
    assert (a.group_verdict, a.resources_verdict) == (Verdict.PASS, Verdict.PASS)
    assert a.chosen == "v1beta2"
    assert a.status_suggestion == "Partially Implemented"
    assert any("beta" in n for n in a.notes)


def test_v1_on_1_33_is_implemented_without_suggestion():
    a = dra.assess_api({"v1": resources(), "v1beta2": resources()}, "1.33", "SHOULD")
    assert a.chosen == "v1" and a.status_suggestion is None


@pytest.mark.parametrize(
    ("version", "level", "verdict"),
    [("1.33", "SHOULD", Verdict.NOT_APPLICABLE), ("1.34", "MUST", Verdict.FAIL), ("1.35", "MUST", Verdict.FAIL),
     ("1.36", None, Verdict.NOT_APPLICABLE)],
    ids=["1.33-should-na", "1.34-must-fail", "1.35-must-fail", "1.36-informational-na"],
)
def test_group_not_served(version, level, verdict):
    a = dra.assess_api({}, version, level)
    assert a.group_verdict is verdict and a.chosen is None
    if verdict is Verdict.NOT_APPLICABLE:
        code, text = a.not_applicable
        assert code == "dra_api_not_served" and text
    else:
        assert a.not_applicable is None


def test_only_alpha_served_is_not_dra():
    a = dra.assess_api({"v1alpha3": [{"name": "devicetaintrules", "verbs": ALL_VERBS}]}, "1.35", "MUST")
    assert a.group_verdict is Verdict.FAIL and "none of" in a.group_summary


# --- devices and selectors -------------------------------------------------------------------------------------------


def slice_v1(node: str, driver: str = "gpu.example.com", n: int = 2, product: str = "H100", memory: str = "80Gi") -> dict:
    return {
        "apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice", "metadata": {"name": f"{node}-{driver}"},
        "spec": {"driver": driver, "nodeName": node, "pool": {"name": node, "generation": 1, "resourceSliceCount": 1},
                 "devices": [{"name": f"gpu-{i}", "attributes": {"productName": {"string": product}, "index": {"int": i}},
                              "capacity": {"memory": {"value": memory}}} for i in range(n)]},
    }


def test_devices_per_node_counts_by_node_and_driver():
    slices = [slice_v1("a", n=8), slice_v1("b", n=4), slice_v1("a", driver="nic.example.com", n=2)]
    slices.append({"spec": {"driver": "net.example.com", "allNodes": True, "devices": [{"name": "x"}]}})
    rows = dra.devices_per_node(slices)
    assert {"node": "a", "driver": "gpu.example.com", "devices": 8} in rows
    assert {"node": "(all nodes)", "driver": "net.example.com", "devices": 1} in rows
    assert sum(r["devices"] for r in rows) == 15


def test_v1beta1_devices_are_read_under_basic():
    s = {"spec": {"driver": "d", "nodeName": "n", "devices": [{"name": "g0", "basic": {"attributes": {"model": {"string": "A"}}}}]}}
    assert dra.slice_devices(s) == [{"name": "g0", "attributes": {"model": {"string": "A"}}, "capacity": {}}]


def test_selector_uses_product_name_and_memory_capacity():
    sel = dra.build_selector([slice_v1("n0")], "gpu.example.com")
    assert sel.expression == ('device.attributes["gpu.example.com"].productName == "H100" && '
                              'device.capacity["gpu.example.com"].memory.compareTo(quantity("80Gi")) >= 0')
    assert sel.impossible == f'device.attributes["gpu.example.com"].productName == "H100{dra.NO_SUCH_SUFFIX}"'
    assert sel.attribute == "gpu.example.com/productName" and sel.value == "H100"


def test_selector_keeps_qualified_attribute_domain_and_escapes_quotes():
    s = slice_v1("n0")
    s["spec"]["devices"][0]["attributes"] = {"vendor.example.com/model": {"string": 'A"B'}}
    sel = dra.build_selector([s], None)
    assert sel.expression.startswith('device.attributes["vendor.example.com"].model == "A\\"B"')


def test_selector_none_without_string_attributes():
    s = slice_v1("n0")
    for d in s["spec"]["devices"]:
        d["attributes"] = {"index": {"int": 0}}
    assert dra.build_selector([s], "gpu.example.com") is None


def test_class_driver_is_read_from_cel():
    dc = {"spec": {"selectors": [{"cel": {"expression": "device.driver == 'gpu.sandbox.aiconf.io'"}}]}}
    assert dra.class_driver(dc) == "gpu.sandbox.aiconf.io"
    assert dra.class_driver({"spec": {}}) is None


def test_allocated_device_is_checked_against_the_selector():
    slices = [slice_v1("n0", product="H100"), slice_v1("n1", product="A100")]
    sel = dra.build_selector(slices[:1], "gpu.example.com")
    good = dra.device_attributes(slices, "gpu.example.com", "n0", "gpu-1")
    bad = dra.device_attributes(slices, "gpu.example.com", "n1", "gpu-0")
    assert dra.satisfies(good, sel, "gpu.example.com") is True
    assert dra.satisfies(bad, sel, "gpu.example.com") is False
    assert dra.satisfies(None, sel, "gpu.example.com") is None


def test_claim_template_shapes_per_version():
    labels = {"aiconf.io/run-id": "r1"}
    v1 = dra.claim_template("t", "ns", "resource.k8s.io/v1", "gpu.example.com", "true", labels)
    req = v1["spec"]["spec"]["devices"]["requests"][0]
    assert req["exactly"]["count"] == 1 and req["exactly"]["selectors"][0]["cel"]["expression"] == "true"
    assert v1["spec"]["metadata"]["labels"] == labels
    b1 = dra.claim_template("t", "ns", "resource.k8s.io/v1beta1", "gpu.example.com", "", labels)
    req = b1["spec"]["spec"]["devices"]["requests"][0]
    assert "exactly" not in req and req["deviceClassName"] == "gpu.example.com" and "selectors" not in req


def test_allocation_results_reads_status():
    claim = {"status": {"allocation": {"devices": {"results": [{"request": "accelerator", "driver": "d", "pool": "p", "device": "g"}]}}}}
    assert dra.allocation_results(claim)[0]["device"] == "g"
    assert dra.allocation_results({"status": {}}) == [] and dra.allocation_results(None) == []


# --- the API part end to end against a fake client ------------------------------------------------------------------


class FakeKube:
    """Answers discovery and list calls from constructed documents; creates nothing."""

    def __init__(self, by_version: dict[str, list[dict]], objects: dict[str, list[dict]] | None = None):
        self.by_version = by_version
        self.objects = objects or {}
        self.created: list[dict] = []

    def version(self) -> dict[str, Any]:
        return {"gitVersion": "v1.35.0"}

    def served_versions(self, group: str) -> list[str]:
        return list(self.by_version) if group == dra.GROUP else []

    def api_resources(self, gv: str) -> list[dict]:
        return copy.deepcopy(self.by_version.get(gv.split("/", 1)[1], []))

    def list(self, api_version: str, kind: str, namespace: str | None = None, **_: Any) -> list[dict]:
        return copy.deepcopy(self.objects.get(kind, []))

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict | None:
        return next((o for o in self.objects.get(kind, []) if o["metadata"]["name"] == name), None)

    def create(self, obj: dict) -> dict:  # pragma: no cover - a functional run would reach it
        self.created.append(obj)
        raise AssertionError("the API-only run must not create objects")


def run_fake(tmp_path, kube: FakeKube, version: str, **overrides: Any):
    params = load_parameters(None, {"checklist_version": version, "dra_functional": False, **overrides})
    return run_check("dra_support", params, kube=kube, run_dir=tmp_path, progress=lambda m: None)


def test_check_passes_on_complete_v1_and_charts_devices(tmp_path):
    kube = FakeKube({"v1": resources()}, {"ResourceSlice": [slice_v1("n0", n=8)], "DeviceClass": []})
    result = run_fake(tmp_path, kube, "1.35")
    assert result.verdict is Verdict.PASS, result.reason
    assert result.subcheck("claim_allocated").verdict is Verdict.NOT_APPLICABLE
    assert not result.subcheck("claim_allocated").required
    assert result.metrics["dra_devices"] == 8
    assert (tmp_path / result.metrics["series"]["devices_per_node"]).exists()
    assert kube.created == []


def test_check_fails_when_v1_lacks_a_verb(tmp_path):
    result = run_fake(tmp_path, FakeKube({"v1": resources(without_verb=("resourceclaims", "watch"))}), "1.34")
    assert result.verdict is Verdict.FAIL
    assert "api_resources_verbs" in result.reason
    assert result.subcheck("api_resources_verbs").details["missing"] == {"resourceclaims": ["watch"]}


def test_check_on_1_33_beta_only_is_partially_implemented(tmp_path):
    result = run_fake(tmp_path, FakeKube({"v1beta1": resources()}), "1.33")
    assert result.verdict is Verdict.PASS
    assert product_status(result)[0] == ProductStatus.PARTIALLY_IMPLEMENTED


def test_check_without_dra_is_na_on_1_33_and_fail_on_1_34(tmp_path):
    na = run_fake(tmp_path / "a", FakeKube({}), "1.33")
    assert na.verdict is Verdict.NOT_APPLICABLE and na.not_applicable.reason_code == "dra_api_not_served"
    fail = run_fake(tmp_path / "b", FakeKube({}), "1.34")
    assert fail.verdict is Verdict.FAIL
    assert all(s.verdict is not Verdict.PASS for s in fail.subchecks)


def test_functional_part_without_device_class_is_informational_na(tmp_path):
    kube = FakeKube({"v1": resources()}, {"ResourceSlice": [slice_v1("n0")], "DeviceClass": []})
    result = run_fake(tmp_path, kube, "1.35", dra_functional=True)
    assert result.verdict is Verdict.PASS
    for sub in dra.FUNCTIONAL:
        s = result.subcheck(sub)
        assert s.verdict is Verdict.NOT_APPLICABLE and not s.required and "does not exist" in s.summary
