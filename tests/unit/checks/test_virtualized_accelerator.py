"""virtualized_accelerator without a cluster: vGPU signals (labels as VMware's VKS evidence shows them, DRA brands,
vfio DeviceClasses), the drafted N/A justification, and whole runs against a fake API. Labels alone never PASS: vGPU
labels on simulated nodes or DRA-only vGPUs are UNKNOWN; a vGPU-labelled node whose pod sees a physical GPU, none or
two, FAILs; only a pod that sees one vGPU through the physical GPUs' request API passes."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import pytest
from matplotlib.figure import Figure

from aiconf import display
from aiconf.checks import virtualized_accelerator as va
from aiconf.execute import run_check
from aiconf.model import Verdict
from aiconf.params import load_parameters

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_driver_runtime_management import GPU, NO_PYTHON_LOG, SANDBOX_LOG, FakeKube, node

#: VMware VKS 1.35 evidence: the labels a vGPU node carries.
VGPU_LABELS = {
    "nvidia.com/vgpu.present": "true",
    "nvidia.com/vgpu.host-driver-version": "580.95.02",
    "nvidia.com/vgpu.host-driver-branch": "r580_00",
    "nvidia.com/gpu.product": "GRID-A100-40C",
}
#: What the probe prints when the container holds one vGPU (the sandbox's recorded log, renamed).
GRID_LOG = SANDBOX_LOG.replace("NVIDIA H100 80GB HBM3", "GRID A100-40C")
TWO_LOG = SANDBOX_LOG.replace(
    "580.95.05, NVIDIA H100 80GB HBM3, GPU-5ce55e57-2265-5aa2-bdec-df0a5c020532\\n",
    "580.95.05, GRID A100-40C, GPU-5ce55e57-2265-5aa2-bdec-df0a5c020532\\n580.95.05, GRID A100-40C, GPU-2\\n",
)


def vgpu_slice(node_name: str, driver: str = "gpu.nvidia.com", brand: str = "NvidiaVCS") -> dict:
    return {
        "metadata": {"name": f"{node_name}-{driver}"},
        "spec": {
            "driver": driver,
            "nodeName": node_name,
            "devices": [
                {
                    "name": "gpu-0",
                    "attributes": {"brand": {"string": brand}, "productName": {"string": "GRID A100-40C"}},
                }
            ],
        },
    }


def device_class(name: str, driver: str) -> dict:
    return {
        "metadata": {"name": name},
        "spec": {"selectors": [{"cel": {"expression": f'device.driver == "{driver}"'}}]},
    }


class VgpuKube(FakeKube):
    def __init__(
        self, nodes: list[dict], logs: dict[str, str] | None = None, *, classes: list[dict] | None = None, **kw: Any
    ):
        super().__init__(nodes, logs, **kw)
        self.classes = classes or []

    def list(self, api_version: str, kind: str, namespace: str | None = None, **kw: Any) -> list[dict]:
        if kind == "DeviceClass":
            return copy.deepcopy(self.classes)
        return super().list(api_version, kind, namespace, **kw)

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict | None:
        if kind == "DeviceClass":
            return next((copy.deepcopy(c) for c in self.classes if c["metadata"]["name"] == name), None)
        return super().get(api_version, kind, name, namespace)


def run_fake(tmp_path: Path, kube: VgpuKube, **overrides: Any):
    params = load_parameters(None, {"checklist_version": "1.36", **overrides})
    return run_check("virtualized_accelerator", params, kube=kube, run_dir=tmp_path, progress=lambda m: None)


def subs(result) -> dict[str, Any]:
    return {s.id: s for s in result.subchecks}


# --- detection -------------------------------------------------------------------------------------------------------


def test_vks_style_vgpu_labels_are_signals_and_a_physical_gpu_node_is_not():
    found = va.node_signals(node("vgpu-0", VGPU_LABELS))
    assert {s.what for s in found} >= {"nvidia.com/vgpu.present=true", "nvidia.com/gpu.product=GRID-A100-40C"}
    assert va.node_signals(node("h100")) == []  # NVIDIA-H100-80GB-HBM3 and GFD's driver labels
    assert va.node_signals(node("off", {"nvidia.com/vgpu.present": "false"})) == []


@pytest.mark.parametrize(
    ("product", "virtual"),
    [
        ("GRID-A100-40C", True),
        ("NVIDIA-A100-4C", True),
        ("GRID T4-2Q", True),
        ("NVIDIA-H100-80GB-HBM3", False),
        ("NVIDIA-A100-SXM4-40GB", False),
        ("NVIDIA-L40S", False),
        ("Tesla-T4", False),
    ],
)
def test_vgpu_product_names(product, virtual):
    assert bool(va.VGPU_PRODUCT_RE.search(product)) is virtual


def test_kubevirt_style_vgpu_resources_are_signals():
    n = node("kv", {}, gpus=0, extra={"nvidia.com/GRID_T4-2Q": "4"})
    assert [s.kind for s in va.node_signals(n)] == ["extended resource"]


def test_dra_brand_and_vfio_classes_are_signals():
    sig = va.slice_signals(vgpu_slice("n"))
    assert len(sig) == 1 and "brand=NvidiaVCS" in sig[0].what and sig[0].node == "n"
    physical = vgpu_slice("n", brand="Nvidia")
    physical["spec"]["devices"][0]["attributes"]["productName"] = {"string": "NVIDIA H100 80GB HBM3"}
    assert va.slice_signals(physical) == []
    assert va.class_signals(device_class("vfio.gpu.nvidia.com", "gpu.nvidia.com"))
    assert va.class_signals(device_class("gpu.nvidia.com", "gpu.nvidia.com")) == []


# --- whole runs --------------------------------------------------------------------------------------------------------


def test_nothing_virtualised_is_not_applicable_with_a_justification_naming_what_was_searched(tmp_path):
    kube = VgpuKube(
        [node("real-0"), node("kwok-0", kwok=True)],
        classes=[device_class("gpu.sandbox.aiconf.io", "gpu.sandbox.aiconf.io")],
    )
    result = run_fake(tmp_path, kube)
    assert (
        result.verdict is Verdict.NOT_APPLICABLE and result.not_applicable.reason_code == "no_virtualized_accelerator"
    )
    text = result.not_applicable.justification
    assert "Searched 2 node(s)" in text and "1 DeviceClass(es)" in text and "nvidia.com/vgpu." in text
    assert "without a providerID" in text and "1 simulated (kwok) node(s)" in text
    assert all(s.verdict is Verdict.NOT_APPLICABLE for s in result.subchecks) and len(result.subchecks) == 3
    assert not kube.created
    assert isinstance(display.chart(result, "signals"), Figure)


def test_cloud_nodes_are_named_in_the_hints():
    n = node("gke-0")
    n["spec"]["providerID"] = "gce://project/zone/gke-0"
    n["metadata"]["labels"]["node.kubernetes.io/instance-type"] = "a3-highgpu-8g"
    hints = va.hypervisor_hints([n])
    assert hints == ["1 on cloud provider 'gce' (providerID)", "instance types a3-highgpu-8g"]


def test_a_vgpu_node_whose_pod_sees_one_vgpu_passes(tmp_path):
    kube = VgpuKube([node("vgpu-0", VGPU_LABELS)], {"vgpu-0": GRID_LOG})
    result = run_fake(tmp_path, kube)
    assert result.verdict is Verdict.PASS, (result.reason, [(s.id, s.verdict, s.summary) for s in result.subchecks])
    s = subs(result)
    assert "nvidia.com/gpu" in s["same_request_api"].summary and "GRID A100-40C" in s["vgpu_pod_sees_device"].summary
    pod = next(o for o in kube.created if o["kind"] == "Pod")
    assert pod["spec"]["containers"][0]["resources"]["limits"][GPU] == "1"
    assert isinstance(display.chart(result, "signals"), Figure)


def test_vgpu_labels_on_a_node_whose_pod_sees_a_physical_gpu_fail(tmp_path):
    result = run_fake(tmp_path, VgpuKube([node("real-0", VGPU_LABELS)], {"real-0": SANDBOX_LOG}))
    assert result.verdict is Verdict.FAIL
    assert "not a virtual GPU" in subs(result)["vgpu_pod_sees_device"].summary


def test_a_vgpu_pod_that_sees_nothing_or_two_devices_fails(tmp_path):
    none = run_fake(tmp_path, VgpuKube([node("v", VGPU_LABELS)], {"v": NO_PYTHON_LOG.replace("GPU 0: ", "")}))
    assert none.verdict is Verdict.FAIL and "saw none" in subs(none)["vgpu_pod_sees_device"].summary
    two = run_fake(tmp_path, VgpuKube([node("v", VGPU_LABELS)], {"v": TWO_LOG}))
    assert two.verdict is Verdict.FAIL and "saw 2" in subs(two)["vgpu_pod_sees_device"].summary


def test_vgpu_labels_on_simulated_nodes_only_are_unknown_and_run_nothing(tmp_path):
    kube = VgpuKube([node("real-0"), node("kwok-0", VGPU_LABELS, kwok=True)])
    result = run_fake(tmp_path, kube)
    assert result.verdict is Verdict.UNKNOWN
    s = subs(result)
    assert s["virtualization_detected"].verdict is Verdict.PASS
    assert (
        s["vgpu_pod_sees_device"].verdict is Verdict.UNKNOWN
        and "simulated: kwok-0" in s["vgpu_pod_sees_device"].summary
    )
    assert not [o for o in kube.created if o["kind"] == "Pod"]


def test_a_dra_vgpu_is_claimed_through_the_physical_device_class_and_seen(tmp_path):
    kube = VgpuKube(
        [node("real-0")],
        {"real-0": GRID_LOG},
        slices=[vgpu_slice("real-0")],
        classes=[device_class("gpu.nvidia.com", "gpu.nvidia.com")],
    )
    result = run_fake(tmp_path, kube)
    s = subs(result)
    assert result.verdict is Verdict.PASS, (result.reason, [(x.id, x.verdict, x.summary) for x in result.subchecks])
    assert "selected by gpu.nvidia.com" in s["same_request_api"].summary
    tpl = next(o for o in kube.created if o["kind"] == "ResourceClaimTemplate")
    req = tpl["spec"]["spec"]["devices"]["requests"][0]["exactly"]
    assert req["deviceClassName"] == "gpu.nvidia.com"
    assert req["selectors"] == [{"cel": {"expression": 'device.attributes["gpu.nvidia.com"].brand == "NvidiaVCS"'}}]
    pod = next(o for o in kube.created if o["kind"] == "Pod")
    assert pod["spec"]["resourceClaims"] == [{"name": "vgpu", "resourceClaimTemplateName": "vgpu"}]
    assert GPU not in pod["spec"]["containers"][0]["resources"]["limits"]


def test_a_dra_vgpu_whose_pod_sees_a_physical_gpu_fails(tmp_path):
    kube = VgpuKube(
        [node("real-0")],
        {"real-0": SANDBOX_LOG},
        slices=[vgpu_slice("real-0")],
        classes=[device_class("gpu.nvidia.com", "gpu.nvidia.com")],
    )
    assert run_fake(tmp_path, kube).verdict is Verdict.FAIL


def test_dra_vgpus_on_simulated_nodes_only_are_unknown_without_a_pod(tmp_path):
    kube = VgpuKube(
        [node("real-0"), node("kwok-0", kwok=True)],
        slices=[vgpu_slice("kwok-0")],
        classes=[device_class("gpu.nvidia.com", "gpu.nvidia.com")],
    )
    result = run_fake(tmp_path, kube)
    sub = subs(result)["vgpu_pod_sees_device"]
    assert result.verdict is Verdict.UNKNOWN and "simulated: kwok-0" in sub.summary
    assert not [o for o in kube.created if o["kind"] == "Pod"]


def test_a_vgpu_under_its_own_resource_name_is_unknown(tmp_path):
    kv = node("kv", {}, gpus=0, extra={"nvidia.com/GRID_T4-2Q": "4"})
    result = run_fake(tmp_path, VgpuKube([kv]))
    assert result.verdict is Verdict.UNKNOWN
    assert subs(result)["same_request_api"].verdict is Verdict.UNKNOWN
    assert "nvidia.com/GRID_T4-2Q" in subs(result)["same_request_api"].summary


def test_another_vendor_is_unknown(tmp_path):
    kube = VgpuKube([node("vgpu-0", VGPU_LABELS)], {"vgpu-0": GRID_LOG})
    result = run_fake(tmp_path, kube, accelerator_vendor="amd")
    assert result.verdict is Verdict.UNKNOWN and not kube.created


def test_a_vgpu_pod_that_never_finishes_is_unknown(tmp_path):
    kube = VgpuKube([node("vgpu-0", VGPU_LABELS)], finish=False)
    result = run_fake(tmp_path, kube, driver_probe_timeout_s=1)
    assert result.verdict is Verdict.UNKNOWN and "did not finish" in subs(result)["vgpu_pod_sees_device"].summary
