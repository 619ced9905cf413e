"""driver_runtime_management without a cluster: version parsing and comparison, what labels and DRA attributes
declare, the probe's log (recorded on an H200 host and on the sandbox's real node), the probe pod, and whole runs
against a fake API. Broken platforms must not PASS: a declared version that differs from the probe's (FAIL), a
probe that reads nothing, a node that declares nothing, a vendor without a probe, only simulated nodes (UNKNOWN)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from matplotlib.figure import Figure

from aiconf import display
from aiconf.checks import driver_runtime_management as drm
from aiconf.errors import WaitTimeout
from aiconf.execute import run_check
from aiconf.model import Verdict
from aiconf.params import load_parameters
from aiconf.runner import plan_run

GPU = "nvidia.com/gpu"
DATA = Path(__file__).resolve().parents[2] / "data" / "driver_probe"
H200_LOG = (DATA / "h200-host.log").read_text()
SANDBOX_LOG = (DATA / "sandbox-real-node.log").read_text()
#: The sandbox's fake nvidia-smi without python3 (busybox image): the sh fallback lists devices, no versions.
NO_PYTHON_LOG = (
    f"{drm.BEGIN}\n"
    '{"error": "no python3 in the probe image: nvidia-smi output only"}\n'
    f"{drm.SMI}\nGPU 0: NVIDIA-H100-80GB-HBM3 (UUID: GPU-5ce55e57-2265-5aa2-bdec-df0a5c020532)\n{drm.END} rc=0\n"
)
GFD_580 = {
    "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
    "nvidia.com/cuda.driver.major": "580",
    "nvidia.com/cuda.driver.minor": "95",
    "nvidia.com/cuda.driver.rev": "5",
    "nvidia.com/cuda.runtime.major": "13",
    "nvidia.com/cuda.runtime.minor": "0",
}
REAL_TAINT = {"key": "sandbox.aiconf.io/real-node", "value": "true", "effect": "NoSchedule"}


def node(
    name: str, labels: dict | None = None, *, gpus: int = 2, kwok: bool = False, extra: dict | None = None
) -> dict:
    meta: dict[str, Any] = {"name": name, "labels": dict(GFD_580 if labels is None else labels)}
    if kwok:
        meta["annotations"] = {"kwok.x-k8s.io/node": "fake"}
    alloc = {GPU: str(gpus), **(extra or {})} if gpus or extra else {}
    return {
        "metadata": meta,
        "spec": {"taints": [] if kwok else [REAL_TAINT]},
        "status": {"allocatable": alloc, "conditions": [{"type": "Ready", "status": "True"}]},
    }


def rslice(node_name: str, driver_version: str = "580.95.5", key: str = "driverVersion") -> dict:
    return {
        "metadata": {"name": f"{node_name}-slice"},
        "spec": {
            "driver": "gpu.example.com",
            "nodeName": node_name,
            "devices": [{"name": "gpu-0", "attributes": {key: {"version": driver_version}}}],
        },
    }


# --- versions --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("declared", "actual", "expected"),
    [
        ("580.95.5", "580.95.05", True),  # GFD's label vs nvidia-smi's zero-padded revision
        ("580.95.05", "580.95.05", True),
        ("13.0", "13.0", True),
        ("13.0.0", "13.0", True),  # DRA's semver vs nvidia-smi's major.minor
        ("580.95", "580.95.05", True),  # declared to major.minor only: equal on what was declared
        ("580.90.5", "580.95.05", False),
        ("550.54.15", "580.95.05", False),
        ("12.4", "13.0", False),
        ("13.0.1", "13.0", False),
        ("latest", "580.95.05", None),
        ("580", "580.95.05", None),  # a bare major is not a version to compare
    ],
)
def test_versions_match(declared, actual, expected):
    assert drm.versions_match(declared, actual) is expected


def test_label_declarations_read_gfd_labels_and_their_full_forms():
    assert drm.label_declarations(GFD_580) == {"driver": "580.95.5", "cuda": "13.0"}
    full = {drm.DRIVER_FULL_LABEL: "550.54.15", drm.CUDA_FULL_LABEL: "12.4", **GFD_580}
    assert drm.label_declarations(full) == {"driver": "550.54.15", "cuda": "12.4"}
    assert drm.label_declarations({"x/driver": "1.2.3"}, "x/driver") == {"driver_extra": "1.2.3"}
    assert drm.label_declarations({"nvidia.com/gpu.product": "H100"}) == {}


def test_dra_declarations_strip_the_attribute_domain():
    slices = [
        rslice("a", "580.95.5", "gpu.nvidia.com/driverVersion"),
        rslice("b", "550.54.15"),
        {"metadata": {"name": "shared"}, "spec": {"allNodes": True, "devices": [{"name": "d", "attributes": {}}]}},
    ]
    assert drm.dra_declarations(slices) == {"a": {"driver": {"580.95.5"}}, "b": {"driver": {"550.54.15"}}}


# --- the probe's log -------------------------------------------------------------------------------------------------


def test_recorded_h200_log_reads_the_real_driver_from_three_sources():
    r = drm.parse_probe_log("h200", H200_LOG)
    assert r.driver == "580.159.04" and r.cuda == "13.0" and not r.problem and not r.simulated
    assert r.sources == {"nvidia-smi --query-gpu": "580.159.04", "NVML": "580.159.04", "nvidia-smi": "580.159.04"}
    assert r.devices == [("NVIDIA H200", "GPU-6b5edfc7-c982-fc31-f72d-4e73a7a1dce6")]


def test_recorded_sandbox_log_is_read_and_marked_simulated():
    r = drm.parse_probe_log("sandbox-real-0", SANDBOX_LOG)
    assert r.driver == "580.95.05" and r.cuda == "13.0" and r.simulated
    assert r.product == "NVIDIA H100 80GB HBM3"


def test_a_probe_without_python_or_versions_reads_no_driver_and_says_why():
    r = drm.parse_probe_log("n", NO_PYTHON_LOG)
    assert r.driver is None and "no python3" in r.problem and "NVIDIA-H100" in r.problem


def test_an_unfinished_or_broken_log_is_no_reading():
    assert drm.parse_probe_log("n", SANDBOX_LOG.replace(drm.END, "")) is None
    broken = drm.parse_probe_log("n", f"{drm.BEGIN}\nsh: oops\n{drm.END} rc=2\n")
    assert broken.driver is None and "incomplete" in broken.problem


def test_disagreeing_sources_are_a_problem():
    log = H200_LOG.replace('"driver_version": "580.159.04"', '"driver_version": "550.54.15"')
    r = drm.parse_probe_log("n", log)
    assert "disagree" in r.problem


def test_the_probe_pod_is_restricted_pinned_and_requests_one_accelerator():
    p = load_parameters("sandbox")
    n = drm.accelerator_nodes([node("real-0")], GPU)[0]
    pod = drm.probe_pod("driver-probe-0", "ns", n, p, "cm")
    spec = pod["spec"]
    c = spec["containers"][0]
    assert spec["nodeSelector"] == {"kubernetes.io/hostname": "real-0"}
    assert {"key": REAL_TAINT["key"], "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    assert c["resources"]["limits"][GPU] == "1" and c["image"] == p.image_python
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] and sc["runAsUser"] != 0 and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["command"][:2] == ["sh", "-c"] and drm.SMI_QUERY in c["command"][2]
    assert not any("hostPath" in v for v in spec["volumes"]) and "runtimeClassName" not in spec
    with_rc = drm.probe_pod("x", "ns", n, load_parameters("sandbox", {"runtime_class_name": "nvidia"}), "cm")
    assert with_rc["spec"]["runtimeClassName"] == "nvidia"


# --- whole runs against a fake API -------------------------------------------------------------------------------------


class FakeKube:
    """Probe pods finish at once; their log is ``logs[node]`` (a recorded probe log by default)."""

    def __init__(
        self,
        nodes: list[dict],
        logs: dict[str, str] | None = None,
        *,
        finish: bool = True,
        slices: list[dict] | None = None,
        daemonsets: list[dict] | None = None,
        policies: list[dict] | None = None,
        runtime_classes: list[dict] | None = None,
    ):
        self.nodes, self.logs, self.finish = nodes, logs or {}, finish
        self.slices, self.daemonsets, self.policies = slices or [], daemonsets or [], policies
        self.runtime_classes = runtime_classes or []
        self.pods: dict[str, dict] = {}
        self.created: list[dict] = []

    def version(self) -> dict:
        return {"gitVersion": "v1.36.0"}

    def served_versions(self, group: str) -> list[str]:
        return ["v1"]

    def has_kind(self, api_version: str, kind: str) -> bool:
        return kind == "ClusterPolicy" and self.policies is not None

    def events(self, namespace: str) -> list[dict]:
        return []

    def list(self, api_version: str, kind: str, namespace: str | None = None, **_: Any) -> list[dict]:
        data = {
            "Node": self.nodes,
            "ResourceSlice": self.slices,
            "DaemonSet": self.daemonsets,
            "ClusterPolicy": self.policies or [],
            "RuntimeClass": self.runtime_classes,
            "Pod": list(self.pods.values()),
        }
        return copy.deepcopy(data.get(kind, []))

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict | None:
        return copy.deepcopy(self.pods.get(name)) if kind == "Pod" else None

    def create(self, obj: dict) -> dict:
        self.created.append(copy.deepcopy(obj))
        if obj["kind"] == "Pod":
            pod = copy.deepcopy(obj)
            pod["status"] = {"phase": "Succeeded" if self.finish else "Pending"}
            self.pods[obj["metadata"]["name"]] = pod
        return copy.deepcopy(obj)

    def delete(self, *args: Any, **kwargs: Any) -> bool:
        return True

    def delete_namespace(self, name: str, timeout_s: float = 0) -> None:
        self.pods.clear()

    def wait_until(self, api_version, kind, namespace, predicate, timeout_s, what, **_: Any) -> list[dict]:
        objs = self.list(api_version, kind, namespace)
        if predicate(objs):
            return objs
        raise WaitTimeout(what, timeout_s, "pending")

    def wait_for(self, api_version, kind, name, namespace, predicate, timeout_s, what, **_: Any):
        obj = self.get(api_version, kind, name, namespace)
        if predicate(obj):
            return obj
        raise WaitTimeout(what, timeout_s, "pending")

    def pod_logs(self, name: str, namespace: str, container: str | None = None, tail_lines: int = 500) -> str:
        target = self.pods[name]["spec"]["nodeSelector"]["kubernetes.io/hostname"]
        return self.logs.get(target, SANDBOX_LOG)


def run_fake(tmp_path: Path, kube: FakeKube, **overrides: Any):
    params = load_parameters(None, {"checklist_version": "1.36", **overrides})
    return run_check("driver_runtime_management", params, kube=kube, run_dir=tmp_path, progress=lambda m: None)


def subs(result) -> dict[str, Any]:
    return {s.id: s for s in result.subchecks}


def test_declared_equals_actual_on_the_real_node_passes_and_kwok_nodes_stay_declared_only(tmp_path):
    kube = FakeKube([node("real-0"), node("kwok-0", kwok=True, gpus=8)], slices=[rslice("kwok-0")])
    result = run_fake(tmp_path, kube)
    assert result.verdict is Verdict.PASS, (result.reason, [(s.id, s.verdict, s.summary) for s in result.subchecks])
    s = subs(result)
    assert s["declared_matches_actual"].verdict is Verdict.PASS and "real-0" in s["declared_matches_actual"].summary
    assert s["dra_declares_versions"].verdict is Verdict.PASS and s["dra_declares_versions"].required is False
    assert s["installer_ready"].verdict is Verdict.NOT_APPLICABLE
    pods = [o for o in kube.created if o["kind"] == "Pod"]
    assert [p["spec"]["nodeSelector"]["kubernetes.io/hostname"] for p in pods] == ["real-0"]  # never a kwok node
    rows = display.series(result, "versions")
    kwok = rows[rows["node"] == "kwok-0"]
    assert set(kwok["source"]) == {"label", "DRA"} and kwok["actual"].isna().all()
    assert any("SIMULATED" in n for n in result.notes) and any("kwok-0" in n for n in result.notes)
    assert isinstance(display.chart(result, "versions"), Figure)
    assert "evidence/driver_runtime_management/probes/real-0.json" in result.evidence


def test_recorded_h200_against_matching_labels_passes(tmp_path):
    labels = {**GFD_580, "nvidia.com/cuda.driver.minor": "159", "nvidia.com/cuda.driver.rev": "04"}
    result = run_fake(tmp_path, FakeKube([node("h200", labels)], {"h200": H200_LOG}))
    assert result.verdict is Verdict.PASS
    assert not any("SIMULATED" in n for n in result.notes)


def test_a_declared_driver_that_differs_from_the_actual_one_fails(tmp_path):
    labels = {**GFD_580, "nvidia.com/cuda.driver.minor": "90"}
    result = run_fake(tmp_path, FakeKube([node("real-0", labels)]))
    assert result.verdict is Verdict.FAIL
    sub = subs(result)["declared_matches_actual"]
    assert sub.verdict is Verdict.FAIL and "580.90.5" in sub.summary and "580.95.05" in sub.summary
    assert isinstance(display.chart(result, "versions"), Figure)


def test_a_dra_attribute_that_differs_fails_even_when_the_labels_match(tmp_path):
    result = run_fake(tmp_path, FakeKube([node("real-0")], slices=[rslice("real-0", "550.54.15")]))
    assert result.verdict is Verdict.FAIL and "(DRA)" in subs(result)["declared_matches_actual"].summary


def test_a_cuda_version_that_differs_fails(tmp_path):
    labels = {**GFD_580, "nvidia.com/cuda.runtime.major": "12", "nvidia.com/cuda.runtime.minor": "4"}
    result = run_fake(tmp_path, FakeKube([node("real-0", labels)]))
    assert result.verdict is Verdict.FAIL and "cuda declared 12.4" in subs(result)["declared_matches_actual"].summary


def test_a_probe_that_reads_no_version_is_unknown(tmp_path):
    result = run_fake(tmp_path, FakeKube([node("real-0")], {"real-0": NO_PYTHON_LOG}))
    assert result.verdict is Verdict.UNKNOWN
    assert subs(result)["actual_versions_read"].verdict is Verdict.UNKNOWN
    assert subs(result)["declared_matches_actual"].verdict is Verdict.UNKNOWN


def test_a_probe_pod_that_never_finishes_is_unknown(tmp_path):
    result = run_fake(tmp_path, FakeKube([node("real-0")], finish=False), driver_probe_timeout_s=1)
    assert result.verdict is Verdict.UNKNOWN and "did not finish" in subs(result)["actual_versions_read"].summary


def test_no_declared_version_is_unknown_not_pass(tmp_path):
    bare = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    result = run_fake(tmp_path, FakeKube([node("real-0", bare)]))
    assert result.verdict is Verdict.UNKNOWN
    s = subs(result)
    assert s["versions_declared"].verdict is Verdict.UNKNOWN and s["actual_versions_read"].verdict is Verdict.PASS
    assert s["declared_matches_actual"].verdict is Verdict.UNKNOWN


def test_only_simulated_nodes_are_unknown_and_run_nothing(tmp_path):
    kube = FakeKube([node("kwok-0", kwok=True)])
    result = run_fake(tmp_path, kube)
    assert result.verdict is Verdict.UNKNOWN and not [o for o in kube.created if o["kind"] == "Pod"]
    assert "declared-only" in subs(result)["declared_matches_actual"].summary or "no accelerator node" in (
        subs(result)["actual_versions_read"].summary
    )


def test_a_vendor_without_a_probe_is_unknown(tmp_path):
    kube = FakeKube([node("real-0")])
    result = run_fake(tmp_path, kube, accelerator_vendor="amd")
    assert result.verdict is Verdict.UNKNOWN and not kube.created
    assert "no driver probe" in subs(result)["actual_versions_read"].summary


def test_accelerators_of_another_vendor_beside_nvidia_are_unknown(tmp_path):
    amd = node("amd-0", {}, gpus=0, extra={"amd.com/gpu": "8"})
    result = run_fake(tmp_path, FakeKube([node("real-0"), amd]))
    assert result.verdict is Verdict.UNKNOWN and "amd.com/gpu" in subs(result)["actual_versions_read"].summary
    assert subs(result)["declared_matches_actual"].verdict is Verdict.PASS  # the NVIDIA node was still verified


def test_no_accelerator_is_not_applicable(tmp_path):
    result = run_fake(tmp_path, FakeKube([node("cpu-0", {}, gpus=0)]))
    assert result.verdict is Verdict.NOT_APPLICABLE and result.not_applicable.reason_code == "no_accelerators"


def ds(name: str, ready: int, desired: int = 2) -> dict:
    return {
        "metadata": {"name": name, "namespace": "gpu-operator"},
        "status": {"desiredNumberScheduled": desired, "numberReady": ready},
    }


def test_a_gpu_operator_that_is_not_ready_fails(tmp_path):
    kube = FakeKube(
        [node("real-0")],
        policies=[{"metadata": {"name": "cluster-policy"}, "status": {"state": "notReady"}}],
        daemonsets=[ds("nvidia-driver-daemonset-ubuntu22.04", 1), ds("nvidia-container-toolkit-daemonset", 2)],
    )
    result = run_fake(tmp_path, kube)
    sub = subs(result)["installer_ready"]
    assert result.verdict is Verdict.FAIL and sub.verdict is Verdict.FAIL
    assert "notReady" in sub.summary and "nvidia-driver-daemonset-ubuntu22.04: 1/2" in sub.summary


def test_a_ready_gpu_operator_passes_and_other_daemonsets_are_ignored(tmp_path):
    kube = FakeKube(
        [node("real-0")],
        policies=[{"metadata": {"name": "cluster-policy"}, "status": {"state": "ready"}}],
        daemonsets=[ds("nvidia-driver-daemonset", 2), ds("kube-proxy", 0)],
    )
    result = run_fake(tmp_path, kube)
    assert (
        result.verdict is Verdict.PASS
        and "ClusterPolicy/cluster-policy state=ready" in subs(result)["installer_ready"].summary
    )


def test_a_configured_runtime_class_that_does_not_exist_fails(tmp_path):
    rc = [{"metadata": {"name": "runc"}, "handler": "runc"}]
    result = run_fake(tmp_path, FakeKube([node("real-0")], runtime_classes=rc), runtime_class_name="nvidia")
    assert result.verdict is Verdict.FAIL and subs(result)["runtime_class"].verdict is Verdict.FAIL
    ok = run_fake(
        tmp_path,
        FakeKube([node("real-0")], runtime_classes=[{"metadata": {"name": "nvidia"}, "handler": "nvidia"}]),
        runtime_class_name="nvidia",
    )
    assert ok.verdict is Verdict.PASS and subs(ok)["runtime_class"].required


def test_probing_is_bounded_and_covers_each_distinct_declaration_first():
    nodes = drm.accelerator_nodes(
        [node(f"a-{i}") for i in range(3)] + [node("b-0", {**GFD_580, "nvidia.com/cuda.driver.minor": "90"})], GPU
    )
    declared = drm.declarations(nodes, [])
    chosen, left = drm.plan_probes(nodes, declared, 2)
    assert {n.name for n in chosen} == {"a-0", "b-0"} and left == ["a-1", "a-2"]
    assert len(drm.plan_probes(nodes, declared, 0)[0]) == 4


@pytest.mark.parametrize(("version", "selected"), [("1.33", False), ("1.34", False), ("1.35", True), ("1.36", True)])
def test_only_checklists_that_list_it_run_it(version, selected):
    plan = plan_run(load_parameters(None, {"checklist_version": version}))
    for rid in ("driver_runtime_management", "virtualized_accelerator"):
        assert (rid in plan.selected) is selected
