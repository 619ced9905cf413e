"""dra_support end to end on the sandbox: the real scheduler allocates claims against the sandbox's ResourceSlices.

Broken variants: a DeviceClass whose selector matches no device (the claim is never allocated: the functional
sub-check FAILs, and the verdict FAILs when the functional part is required) and a CEL selector no device satisfies.
"""

from __future__ import annotations

import uuid

import pytest

from aiconf.context import LABEL_RUN_ID
from aiconf.execute import new_run_id, run_check
from aiconf.kube import Kube
from aiconf.model import Verdict
from aiconf.params import load_parameters

pytestmark = pytest.mark.sandbox

#: Kinds a dra_support run may create (namespaced ones are searched in every namespace).
CREATED_KINDS = (("v1", "Namespace"), ("v1", "Pod"), ("resource.k8s.io/v1", "ResourceClaim"),
                 ("resource.k8s.io/v1", "ResourceClaimTemplate"), ("resource.k8s.io/v1", "DeviceClass"))


@pytest.fixture(scope="module")
def kube(kube_sandbox) -> Kube:
    return Kube.connect(str(kube_sandbox.kubeconfig))


def run(kube_sandbox, tmp_path, **overrides):
    run_id = new_run_id()
    params = load_parameters("sandbox", {"kubeconfig": str(kube_sandbox.kubeconfig), **overrides})
    return run_check("dra_support", params, run_id=run_id, run_dir=tmp_path), run_id


def leftovers(kube: Kube, run_id: str) -> list[str]:
    out = []
    for api_version, kind in CREATED_KINDS:
        for o in kube.list(api_version, kind, label_selector=f"{LABEL_RUN_ID}={run_id}"):
            out.append(f"{kind}/{o['metadata'].get('namespace', '')}/{o['metadata']['name']}")
    return out


def test_dra_passes_with_attribute_selected_claim(kube_sandbox, kube, tmp_path):
    result, run_id = run(kube_sandbox, tmp_path, checklist_version="1.35")
    assert result.level == "MUST"
    assert result.verdict is Verdict.PASS, (result.reason, result.error)
    for sub in ("api_group_served", "api_resources_verbs", "devices_published", "claim_allocated",
                "pod_started_with_claim", "selector_enforced", "claim_released"):
        assert result.subcheck(sub).verdict is Verdict.PASS, (sub, result.subcheck(sub).summary)
    alloc = result.metrics["dra_allocation"][0]
    assert alloc["driver"] == "gpu.sandbox.aiconf.io" and alloc["pool"].startswith("sandbox-gpu-")
    assert "productName" in result.metrics["dra_cel_selector"] and "compareTo(quantity(" in result.metrics["dra_cel_selector"]
    assert "verified" in result.subcheck("claim_allocated").summary
    assert any("simulated" in n for n in result.notes)
    assert (tmp_path / "evidence" / "dra_support" / "resourceslices.yaml").exists()
    assert leftovers(kube, run_id) == []


def test_dra_on_1_36_is_informational(kube_sandbox, kube, tmp_path):
    result, run_id = run(kube_sandbox, tmp_path, checklist_version="1.36", dra_functional=False)
    assert result.level is None
    assert result.verdict is Verdict.PASS
    assert any("not part of checklist 1.36" in n for n in result.notes)
    assert result.subcheck("claim_allocated").verdict is Verdict.NOT_APPLICABLE
    assert leftovers(kube, run_id) == []


@pytest.fixture
def broken_device_class(kube):
    """A DeviceClass of the sandbox driver whose selector no device satisfies (deleted afterwards)."""
    name = f"aiconf-test-broken-{uuid.uuid4().hex[:6]}"
    kube.create({
        "apiVersion": "resource.k8s.io/v1", "kind": "DeviceClass",
        "metadata": {"name": name, "labels": {"aiconf.io/test": "dra-broken"}},
        "spec": {"selectors": [{"cel": {"expression": 'device.driver == "gpu.sandbox.aiconf.io" && '
                                                      'device.attributes["gpu.sandbox.aiconf.io"].productName == "no-such-gpu"'}}]},
    })
    try:
        yield name
    finally:
        kube.delete("resource.k8s.io/v1", "DeviceClass", name)


def test_device_class_matching_nothing_fails_the_functional_subcheck(kube_sandbox, kube, tmp_path, broken_device_class):
    result, run_id = run(kube_sandbox, tmp_path, checklist_version="1.35", dra_device_class=broken_device_class,
                         dra_allocation_timeout_s=15)
    sub = result.subcheck("claim_allocated")
    assert sub.verdict is Verdict.FAIL
    assert "cannot allocate all claims" in sub.summary or "Unschedulable" in sub.summary
    assert result.subcheck("claim_released").verdict is Verdict.UNKNOWN
    # informational by default: the API part still decides the verdict, and a note says what failed
    assert result.verdict is Verdict.PASS
    assert any("functional DRA sub-checks failed" in n for n in result.notes)
    assert leftovers(kube, run_id) == []


def test_required_functional_part_turns_the_broken_class_into_fail(kube_sandbox, kube, tmp_path, broken_device_class):
    result, run_id = run(kube_sandbox, tmp_path, checklist_version="1.35", dra_device_class=broken_device_class,
                         dra_allocation_timeout_s=15, dra_functional_required=True)
    assert result.verdict is Verdict.FAIL
    assert "claim_allocated" in result.reason
    assert leftovers(kube, run_id) == []


def test_unsatisfiable_cel_selector_is_not_allocated(kube_sandbox, kube, tmp_path):
    result, run_id = run(kube_sandbox, tmp_path, checklist_version="1.35", dra_allocation_timeout_s=15,
                         dra_cel_selector='device.capacity["gpu.sandbox.aiconf.io"].memory.compareTo(quantity("1Ti")) >= 0')
    assert result.subcheck("claim_allocated").verdict is Verdict.FAIL
    assert result.verdict is Verdict.PASS and result.subcheck("claim_allocated").required is False
    assert leftovers(kube, run_id) == []
