"""driver_runtime_management end to end on the sandbox: the real node's probe pod (one simulated GPU, the fake
``nvidia-smi`` the device plugin mounts) against the GFD-style labels the sandbox puts on it, the kwok GPU nodes
declared-only (labels and DRA ``driverVersion``).

Broken on purpose (the node's labels are restored, and test objects deleted, afterwards):
- the real node declares another driver version (label), or a DRA device on it does: FAIL;
- the real node declares no driver version: UNKNOWN;
- the probe image has no python3 (busybox): the mounted nvidia-smi's sh fallback lists the GPU but no version:
  UNKNOWN;
- a vendor without a probe: UNKNOWN, nothing created.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator

import pytest

from aiconf.execute import run_check
from aiconf.kube import Kube
from aiconf.model import Verdict
from aiconf.params import load_parameters
from aiconf.sandbox import realnode

pytestmark = pytest.mark.sandbox
CHECK = "driver_runtime_management"


@pytest.fixture(scope="module")
def kube(kube_sandbox) -> Kube:
    k = Kube.connect(str(kube_sandbox.kubeconfig))
    if not k.list("v1", "Node", label_selector=f"{realnode.REAL_NODE_LABEL}=true"):
        pytest.skip("the cluster has no real node (AICONF_TEST_REAL_NODE=0?): no probe can run")
    return k


@pytest.fixture(scope="module")
def real_node(kube) -> str:
    return kube.list("v1", "Node", label_selector=f"{realnode.REAL_NODE_LABEL}=true")[0]["metadata"]["name"]


@contextlib.contextmanager
def labels_changed(kube: Kube, node: str, changes: dict[str, str | None]) -> Iterator[None]:
    """Set (or, with None, remove) node labels; put the original values back afterwards."""
    before = kube.get("v1", "Node", node)["metadata"].get("labels") or {}
    kube.patch("v1", "Node", node, {"metadata": {"labels": changes}})
    try:
        yield
    finally:
        kube.patch("v1", "Node", node, {"metadata": {"labels": {k: before.get(k) for k in changes}}})


def run(kube_sandbox, tmp_path, **overrides):
    rid = f"itest-drm-{uuid.uuid4().hex[:6]}"
    params = load_parameters("sandbox", {"kubeconfig": str(kube_sandbox.kubeconfig), **overrides})
    started = time.monotonic()
    result = run_check(CHECK, params, run_id=rid, run_dir=tmp_path / rid)
    print(f"\n[measure] {CHECK} {overrides or ''}: {result.verdict} in {time.monotonic() - started:.1f}s")
    return result, rid


def why(result) -> tuple:
    return result.reason, [(s.id, s.verdict, s.summary) for s in result.subchecks]


def assert_cleaned_up(kube: Kube, rid: str) -> None:
    assert kube.list("v1", "Namespace", label_selector=f"aiconf.io/run-id={rid}") == []


def test_declared_versions_match_what_the_real_node_runs(kube_sandbox, kube, real_node, tmp_path):
    result, rid = run(kube_sandbox, tmp_path)
    assert result.verdict is Verdict.PASS, why(result)
    subs = {s.id: s for s in result.subchecks}
    assert subs["accelerator_nodes"].details["probed"] == [real_node]
    assert f"{real_node}=580.95.05" in subs["actual_versions_read"].summary
    rows = result.metrics["versions"]
    mine = [r for r in rows if r["node"] == real_node]
    assert {(r["field"], r["match"]) for r in mine} == {("driver", True), ("cuda", True)}
    kwok = [r for r in rows if r["simulated"]]
    assert kwok and all(r["match"] == "" and not r["actual"] for r in kwok)  # declared only, never a match
    assert {r["source"] for r in kwok} == {"label", "DRA"}
    assert any("SIMULATED" in n for n in result.notes)
    assert "evidence/driver_runtime_management/versions.csv" in result.evidence
    assert_cleaned_up(kube, rid)


def test_a_node_declaring_another_driver_version_fails(kube_sandbox, kube, real_node, tmp_path):
    with labels_changed(kube, real_node, {"nvidia.com/cuda.driver.minor": "90"}):
        result, rid = run(kube_sandbox, tmp_path)
    sub = result.subcheck("declared_matches_actual")
    assert result.verdict is Verdict.FAIL and sub.verdict is Verdict.FAIL, why(result)
    assert "580.90.5" in sub.summary and "580.95.05" in sub.summary
    assert_cleaned_up(kube, rid)


def test_a_dra_device_declaring_another_driver_version_fails(kube_sandbox, kube, real_node, tmp_path):
    name = f"aiconf-itest-drm-{uuid.uuid4().hex[:6]}"
    kube.create(
        {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceSlice",
            "metadata": {"name": name},
            "spec": {
                "driver": "drm-itest.aiconf.io",  # no DeviceClass selects it: nothing can be allocated from it
                "nodeName": real_node,
                "pool": {"name": name, "generation": 1, "resourceSliceCount": 1},
                "devices": [{"name": "gpu-0", "attributes": {"driverVersion": {"version": "550.54.15"}}}],
            },
        }
    )
    try:
        result, _ = run(kube_sandbox, tmp_path)
    finally:
        kube.delete("resource.k8s.io/v1", "ResourceSlice", name)
    sub = result.subcheck("declared_matches_actual")
    assert result.verdict is Verdict.FAIL and "(DRA)" in sub.summary and "550.54.15" in sub.summary, why(result)


def test_a_node_declaring_no_driver_version_is_unknown(kube_sandbox, kube, real_node, tmp_path):
    gone = {f"nvidia.com/cuda.driver.{k}": None for k in ("major", "minor", "rev")}
    with labels_changed(kube, real_node, gone):
        result, _ = run(kube_sandbox, tmp_path)
    assert result.verdict is Verdict.UNKNOWN, why(result)
    assert result.subcheck("versions_declared").verdict is Verdict.UNKNOWN
    assert real_node in result.subcheck("versions_declared").summary
    assert result.subcheck("declared_matches_actual").verdict is Verdict.UNKNOWN


def test_a_probe_that_cannot_read_a_version_is_unknown(kube_sandbox, kube, tmp_path):
    result, rid = run(kube_sandbox, tmp_path, driver_probe_image="localhost/aiconf-utility:0.1")
    sub = result.subcheck("actual_versions_read")
    assert result.verdict is Verdict.UNKNOWN and sub.verdict is Verdict.UNKNOWN, why(result)
    assert "no python3" in sub.summary and "no driver version read" in sub.summary
    assert_cleaned_up(kube, rid)


def test_a_vendor_without_a_probe_is_unknown_and_creates_nothing(kube_sandbox, kube, tmp_path):
    result, _ = run(kube_sandbox, tmp_path, accelerator_vendor="amd")
    assert result.verdict is Verdict.UNKNOWN, why(result)
    assert "no driver probe" in result.subcheck("actual_versions_read").summary
    assert result.metrics.get("steps") and not any("probe" in s["step"] for s in result.metrics["steps"])
