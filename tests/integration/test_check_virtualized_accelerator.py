"""virtualized_accelerator end to end on the sandbox, where nothing is virtualised: NOT_APPLICABLE with a drafted
justification. Fake vGPU signals must flip the verdict away from N/A, never to PASS on labels alone (labels are
restored and test objects deleted afterwards):
- vGPU labels on a kwok GPU node (no process can run there): UNKNOWN, no pod created;
- vGPU labels on the real node: the pod requesting one nvidia.com/gpu sees the simulated H100, not a vGPU: FAIL;
- a ResourceSlice with vGPU device attributes (brand NvidiaVCS) and a vfio DeviceClass: UNKNOWN.
"""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path

import pytest

from aiconf.execute import run_check
from aiconf.kube import Kube
from aiconf.model import Verdict
from aiconf.params import load_parameters
from aiconf.sandbox import realnode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_check_driver_runtime_management import labels_changed, why

pytestmark = pytest.mark.sandbox
CHECK = "virtualized_accelerator"
DRA = "resource.k8s.io/v1"
VGPU_LABELS = {"nvidia.com/vgpu.present": "true", "nvidia.com/gpu.product": "GRID-A100-40C"}


@pytest.fixture(scope="module")
def kube(kube_sandbox) -> Kube:
    return Kube.connect(str(kube_sandbox.kubeconfig))


def run(kube_sandbox, tmp_path, **overrides):
    rid = f"itest-vgpu-{uuid.uuid4().hex[:6]}"
    params = load_parameters("sandbox", {"kubeconfig": str(kube_sandbox.kubeconfig), **overrides})
    started = time.monotonic()
    result = run_check(CHECK, params, run_id=rid, run_dir=tmp_path / rid)
    print(f"\n[measure] {CHECK}: {result.verdict} in {time.monotonic() - started:.1f}s")
    return result, rid


def kwok_gpu_node(kube: Kube) -> str:
    nodes = [
        n["metadata"]["name"]
        for n in kube.list("v1", "Node", label_selector="nvidia.com/gpu.present=true")
        if (n["metadata"].get("annotations") or {}).get("kwok.x-k8s.io/node") == "fake"
    ]
    if not nodes:
        pytest.skip("no kwok GPU node")
    return min(nodes)


def test_the_sandbox_is_not_applicable_with_a_drafted_justification(kube_sandbox, kube, tmp_path):
    result, _ = run(kube_sandbox, tmp_path)
    assert result.verdict is Verdict.NOT_APPLICABLE, why(result)
    text = result.not_applicable.justification
    nodes = len(kube.list("v1", "Node"))
    assert f"Searched {nodes} node(s)" in text and "ResourceSlice(s)" in text and "DeviceClass(es)" in text
    assert "simulated (kwok)" in text
    assert result.metrics["signals"] == []


def test_vgpu_labels_on_a_simulated_node_are_unknown_and_run_nothing(kube_sandbox, kube, tmp_path):
    node = kwok_gpu_node(kube)
    with labels_changed(kube, node, VGPU_LABELS):
        result, rid = run(kube_sandbox, tmp_path)
    assert result.verdict is Verdict.UNKNOWN, why(result)
    assert result.subcheck("virtualization_detected").verdict is Verdict.PASS
    assert result.subcheck("same_request_api").verdict is Verdict.PASS  # it advertises nvidia.com/gpu
    sub = result.subcheck("vgpu_pod_sees_device")
    assert sub.verdict is Verdict.UNKNOWN and f"simulated: {node}" in sub.summary
    assert kube.list("v1", "Namespace", label_selector=f"aiconf.io/run-id={rid}") == []


def test_vgpu_labels_on_a_node_serving_physical_gpus_fail(kube_sandbox, kube, tmp_path):
    reals = kube.list("v1", "Node", label_selector=f"{realnode.REAL_NODE_LABEL}=true")
    if not reals:
        pytest.skip("no real node: no pod can run")
    node = reals[0]["metadata"]["name"]
    with labels_changed(kube, node, VGPU_LABELS):
        result, rid = run(kube_sandbox, tmp_path)
    sub = result.subcheck("vgpu_pod_sees_device")
    assert result.verdict is Verdict.FAIL and sub.verdict is Verdict.FAIL, why(result)
    assert "H100" in sub.summary and "not a virtual GPU" in sub.summary
    assert kube.list("v1", "Namespace", label_selector=f"aiconf.io/run-id={rid}") == []


def test_vgpu_dra_devices_and_a_vfio_class_are_unknown(kube_sandbox, kube, tmp_path):
    if "v1" not in kube.served_versions("resource.k8s.io"):
        pytest.skip("resource.k8s.io/v1 is not served")
    suffix = uuid.uuid4().hex[:6]
    slice_name, class_name = f"aiconf-itest-vgpu-{suffix}", f"vfio.aiconf-itest-{suffix}.example.com"
    driver = f"vgpu-itest-{suffix}.aiconf.io"  # no DeviceClass of the sandbox selects it
    made = [
        kube.create(
            {
                "apiVersion": DRA,
                "kind": "ResourceSlice",
                "metadata": {"name": slice_name},
                "spec": {
                    "driver": driver,
                    "nodeName": kwok_gpu_node(kube),
                    "pool": {"name": slice_name, "generation": 1, "resourceSliceCount": 1},
                    "devices": [
                        {
                            "name": "vgpu-0",
                            "attributes": {
                                "brand": {"string": "NvidiaVCS"},
                                "productName": {"string": "GRID A100-40C"},
                            },
                        }
                    ],
                },
            }
        ),
        kube.create(
            {
                "apiVersion": DRA,
                "kind": "DeviceClass",
                "metadata": {"name": class_name},
                "spec": {"selectors": [{"cel": {"expression": f'device.driver == "{driver}"'}}]},
            }
        ),
    ]
    try:
        result, _ = run(kube_sandbox, tmp_path)
    finally:
        for obj in made:
            kube.delete(DRA, obj["kind"], obj["metadata"]["name"])
    assert result.verdict is Verdict.UNKNOWN, why(result)
    detected = result.subcheck("virtualization_detected")
    assert "brand=NvidiaVCS" in detected.observed and class_name in detected.observed
    # a driver of its own, not the one the physical GPUs' DeviceClass selects
    assert result.subcheck("same_request_api").verdict is Verdict.UNKNOWN
    assert result.subcheck("vgpu_pod_sees_device").verdict is Verdict.UNKNOWN
