"""secure_accelerator_access without a cluster: probe manifests (and their security context), log parsing, the phase
plan, DRA applicability, and whole runs against a fake API whose pods "print" the probe documents recorded in real
runc containers on two H200s (tests/data/gpu/h200x2-run1/probes). Leaky variants of those documents - the
environment bypass honoured, a neighbour's device reachable, a device node visible without a request - must FAIL."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import pytest
from matplotlib.figure import Figure

from aiconf import display
from aiconf.accel import isolation as iso
from aiconf.checks import accelerator_metrics as am
from aiconf.checks import secure_accelerator_access as sa
from aiconf.errors import WaitTimeout
from aiconf.execute import run_check
from aiconf.model import Verdict
from aiconf.params import load_parameters

GPU = "nvidia.com/gpu"
PROBES = Path(__file__).resolve().parents[2] / "data" / "gpu" / "h200x2-run1" / "probes"
UUID0 = "GPU-5aedc9ec-ee3a-9aef-e9b8-e9c1f76bda13"
UUID1 = "GPU-9948a40c-3804-defb-5ccc-ce8706d7a91a"
#: (pod, container) of the check -> the recorded probe standing in for it.
RECORDED = {
    ("t1-none", "probe"): "t1-none",
    ("t1-env-all", "probe"): "t1-env-all",
    ("t2", "probe"): "t2-gpu0",
    ("t4", "with-gpu"): "t4-ctr-gpu",
    ("t4", "without-gpu"): "t4-ctr-nogpu",
    ("t3-pod-a", "probe"): "t3-pod-a",
    ("t3-pod-b", "probe"): "t3-pod-b",
}


def recorded(name: str) -> dict[str, Any]:
    return json.loads((PROBES / f"{name}.json").read_text())


def node(name: str, gpus: int = 2, *, kwok: bool = False, taints: list | None = None) -> dict:
    meta: dict[str, Any] = {"name": name, "labels": {"nvidia.com/gpu.count": str(gpus)} if gpus else {}}
    if kwok:
        meta["annotations"] = {"kwok.x-k8s.io/node": "fake"}
    return {
        "metadata": meta,
        "spec": {"taints": taints or []},
        "status": {
            "allocatable": {GPU: str(gpus)} if gpus else {},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def accel(name: str = "real", gpus: int = 2, **kw: Any) -> am.AccelNode:
    return am.accelerator_nodes([node(name, gpus, **kw)], GPU)[0]


# --- manifests -------------------------------------------------------------------------------------------------------


def test_try_open_targets_every_gpu_of_the_node_and_nvidiactl():
    assert sa.nvidia_try_open(2) == ["/dev/nvidia0=195:0", "/dev/nvidia1=195:1", "/dev/nvidiactl=195:255"]
    assert len(sa.nvidia_try_open(1)) == 3  # at least two GPU minors, so a neighbour's is always tried
    assert sa.node_gpu_count(accel(gpus=8)) == 8


def test_probe_containers_are_unprivileged_root_with_default_capabilities():
    p = load_parameters("sandbox")
    n = accel(taints=[{"key": "sandbox.aiconf.io/real-node", "value": "true", "effect": "NoSchedule"}])
    spec = sa.ProbeSpec("t1-env-all", "t1-env-all", "probe", n.name, 0, "g", dict(sa.ENV_ALL))
    c = sa.probe_container(spec, p, p.image_python, sa.nvidia_try_open(2), 600)
    sc = c["securityContext"]
    assert sc["privileged"] is False and sc["allowPrivilegeEscalation"] is False
    assert sc["runAsUser"] == 0 and "capabilities" not in sc  # the runtime's defaults: nothing added, nothing dropped
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"} and sc["readOnlyRootFilesystem"]
    assert {"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"} in c["env"]
    assert GPU not in c["resources"]["limits"]
    assert c["command"][:2] == ["python3", "-c"] and "--try-open" in c["command"]
    compile(c["command"][2], "launcher", "exec")
    pod = sa.probe_pod("t1-env-all", "ns", n, [c], p, phase="p1", configmap="cm")
    assert pod["spec"]["nodeSelector"] == {"kubernetes.io/hostname": "real"}
    assert {"key": "sandbox.aiconf.io/real-node", "operator": "Exists", "effect": "NoSchedule"} in pod["spec"][
        "tolerations"
    ]
    assert not any("hostPath" in v for v in pod["spec"]["volumes"])
    assert not any(pod["spec"].get(k) for k in ("hostNetwork", "hostPID", "hostIPC"))
    granted = sa.probe_container(sa.ProbeSpec("t2-gpu", "t2", "probe", "real", 1, "g"), p, "img", [], 600)
    assert granted["resources"]["limits"][GPU] == "1" and not granted["env"]


def test_dra_probe_uses_a_claim_not_the_extended_resource():
    p = load_parameters("nvidia-dra")
    spec = sa.ProbeSpec("dra-t2-gpu", "dra-t2", "probe", "real", 1, "g", claim=True)
    c = sa.probe_container(spec, p, "img", [], 600)
    assert c["resources"]["claims"] == [{"name": sa.CLAIM_NAME}] and GPU not in c["resources"]["limits"]
    pod = sa.probe_pod("dra-t2", "ns", accel(), [c], p, phase="dra1", configmap="cm", claim_template="one")
    assert pod["spec"]["resourceClaims"] == [{"name": sa.CLAIM_NAME, "resourceClaimTemplateName": "one"}]
    tpl = sa.claim_template("one", "ns", "gpu.nvidia.com")
    req = tpl["spec"]["spec"]["devices"]["requests"][0]
    assert req["exactly"] == {"deviceClassName": "gpu.nvidia.com", "allocationMode": "ExactCount", "count": 1}


def test_parse_probe_log_needs_the_end_marker():
    doc = recorded("t2-gpu0")
    text = json.dumps(doc, indent=1) + f"\n{sa.END_MARKER} rc=0\n"
    assert sa.parse_probe_log(text)["uuids"] == [UUID0]
    assert sa.parse_probe_log(json.dumps(doc)) is None  # still running
    assert sa.parse_probe_log(f"Traceback ...\n{sa.END_MARKER} rc=1\n") is None
    assert sa.parse_probe_log("") is None


# --- plan ------------------------------------------------------------------------------------------------------------


def pods_of(phases: list[list[sa.Scenario]]) -> list[list[str]]:
    return [[sc.pod for sc in ph] for ph in phases]


def test_plan_with_two_free_accelerators_runs_t3_on_one_node_after_t1_t2_t4():
    phases, skipped = sa.plan_phases(accel(), 2, None)
    assert pods_of(phases) == [["t1-none", "t1-env-all", "t2", "t4"], ["t3-pod-a", "t3-pod-b"]]
    assert skipped == {}
    assert len({s.group for sc in phases[0] for s in sc.specs}) == 1  # ran side by side: one matrix group


def test_plan_with_four_free_accelerators_runs_everything_at_once():
    phases, _ = sa.plan_phases(accel(gpus=8), 4, None)
    assert pods_of(phases) == [["t1-none", "t1-env-all", "t2", "t4", "t3-pod-a", "t3-pod-b"]]


def test_plan_with_one_free_accelerator_runs_t3_across_nodes_or_not_at_all():
    other = accel("other", 1)
    phases, skipped = sa.plan_phases(accel(gpus=1), 1, other)
    assert pods_of(phases) == [["t1-none", "t1-env-all", "t2"], ["t4"], ["t3-pod-a", "t3-pod-b"]]
    assert phases[2][1].node == "other" and "across" in phases[2][0].specs[0].group
    phases, skipped = sa.plan_phases(accel(gpus=1), 1, None)
    assert pods_of(phases) == [["t1-none", "t1-env-all", "t2"], ["t4"]]
    assert "distinct_devices_no_cross_access" in skipped


def test_plan_without_free_accelerators_runs_only_t1():
    phases, skipped = sa.plan_phases(accel(), 0, None)
    assert pods_of(phases) == [["t1-none", "t1-env-all"]]
    assert set(skipped) == {"one_request_one_device", "distinct_devices_no_cross_access", "only_requesting_container"}


def test_dra_plan_has_no_t1_and_claims_for_granted_containers():
    phases, _ = sa.plan_phases(accel(), 2, None, dra=True)
    assert pods_of(phases) == [["dra-t2", "dra-t4"], ["dra-t3-pod-a", "dra-t3-pod-b"]]
    specs = [s for ph in phases for sc in ph for s in sc.specs]
    assert all(s.claim == bool(s.granted) for s in specs)


# --- DRA applicability -----------------------------------------------------------------------------------------------


def device_class(driver: str) -> dict:
    return {
        "metadata": {"name": "gpu.example.com"},
        "spec": {"selectors": [{"cel": {"expression": f'device.driver == "{driver}"'}}]},
    }


def rslice(node_name: str, driver: str, n: int = 2) -> dict:
    return {
        "spec": {
            "driver": driver,
            "nodeName": node_name,
            "pool": {"name": node_name},
            "devices": [{"name": f"gpu-{i}", "attributes": {}} for i in range(n)],
        }
    }


def test_dra_mode_needs_a_driver_serving_a_node_that_runs_processes():
    target, why = sa.dra_target(None, [], {}, "gpu.nvidia.com", set())
    assert target is None and "does not exist" in why
    dc = device_class("gpu.sandbox.aiconf.io")
    slices = [rslice("kwok-0", "gpu.sandbox.aiconf.io"), rslice("kwok-1", "gpu.sandbox.aiconf.io")]
    target, why = sa.dra_target(dc, slices, {}, "gpu.sandbox.aiconf.io", {"kwok-0", "kwok-1"})
    assert target is None and "only for simulated (kwok) nodes" in why and "no kubelet plugin" in why
    target, why = sa.dra_target(
        dc,
        [*slices, rslice("real", "gpu.sandbox.aiconf.io", 4), rslice("x", "other.io", 8)],
        {},
        "gpu.sandbox.aiconf.io",
        {"kwok-0", "kwok-1"},
    )
    assert target == "real"
    target, why = sa.dra_target(dc, [rslice("x", "other.io")], {}, "c", set())
    assert target is None and "no node-local devices" in why


# --- judging recorded and leaky probes ---------------------------------------------------------------------------------


def specs_for(phases: list[list[sa.Scenario]]) -> list[sa.ProbeSpec]:
    return [s for ph in phases for sc in ph for s in sc.specs]


def recorded_probes(leak: dict[str, dict] | None = None) -> dict[str, iso.Probe]:
    """The check's labels -> the recorded H200 probes (optionally replaced)."""
    label_of = {
        "t1-none": "t1-none",
        "t1-env-all": "t1-env-all",
        "t2-gpu": "t2-gpu0",
        "t4-ctr-gpu": "t4-ctr-gpu",
        "t4-ctr-nogpu": "t4-ctr-nogpu",
        "t3-pod-a": "t3-pod-a",
        "t3-pod-b": "t3-pod-b",
    }
    leak = leak or {}
    return {label: iso.load_probe(leak.get(label) or recorded(src), label) for label, src in label_of.items()}


def test_recorded_h200_probes_pass_every_test():
    phases, skipped = sa.plan_phases(accel(), 2, None)
    subs, matrix = sa.judge_all(recorded_probes(), specs_for(phases), skipped)
    assert {k: s.verdict for k, s in subs.items()} == {k: Verdict.PASS for k in sa.TESTS}
    assert matrix.is_diagonal and len(matrix.rows) == 7


def leaky_env_all() -> dict:
    """A runtime that honours NVIDIA_VISIBLE_DEVICES=all for a container without a request."""
    doc = copy.deepcopy(recorded("t1-env-all"))
    host = recorded("host")
    for key in ("device_nodes", "gpu_nodes", "smi", "nvml", "cuda", "uuids"):
        doc[key] = copy.deepcopy(host[key])
    doc["open_attempts"] = copy.deepcopy(host["open_attempts"])
    return doc


def test_the_env_bypass_honoured_fails_t1_and_the_matrix():
    phases, skipped = sa.plan_phases(accel(), 2, None)
    subs, matrix = sa.judge_all(recorded_probes({"t1-env-all": leaky_env_all()}), specs_for(phases), skipped)
    assert subs["no_request_no_device"].verdict is Verdict.FAIL
    assert subs["visibility_matrix_diagonal"].verdict is Verdict.FAIL and not matrix.is_diagonal


def test_a_neighbours_device_reachable_fails_t3():
    doc = copy.deepcopy(recorded("t3-pod-a"))
    for a in doc["open_attempts"]:
        if a["path"] == "/dev/nvidia1":
            a["open"] = {"ok": False, "errno": "ENXIO", "error": "No such device or address"}  # past the cgroup
    phases, skipped = sa.plan_phases(accel(), 2, None)
    subs, _ = sa.judge_all(recorded_probes({"t3-pod-a": doc}), specs_for(phases), skipped)
    assert subs["distinct_devices_no_cross_access"].verdict is Verdict.FAIL


def test_a_device_node_visible_without_a_request_fails_t1_even_when_it_cannot_be_opened():
    doc = copy.deepcopy(recorded("t1-none"))
    doc["gpu_nodes"] = ["/dev/nvidia0"]
    phases, skipped = sa.plan_phases(accel(), 2, None)
    subs, _ = sa.judge_all(recorded_probes({"t1-none": doc}), specs_for(phases), skipped)
    assert subs["no_request_no_device"].verdict is Verdict.FAIL


def test_missing_probes_are_unknown_with_the_reason():
    phases, skipped = sa.plan_phases(accel(), 1, None)
    probes = {k: v for k, v in recorded_probes().items() if not k.startswith("t3")}
    subs, _ = sa.judge_all(probes, specs_for(phases), skipped, problems={"t4-ctr-gpu": "pod t4 did not start"})
    assert subs["distinct_devices_no_cross_access"].verdict is Verdict.UNKNOWN
    assert "cannot run at the same time" in subs["distinct_devices_no_cross_access"].summary
    assert sa.test_of("dra-t4-ctr-gpu") == "only_requesting_container"


def test_dra_verdict_is_the_worst_of_its_tests():
    phases, skipped = sa.plan_phases(accel(), 2, None, dra=True)
    probes = {f"dra-{k}": iso.load_probe(v.raw, f"dra-{k}") for k, v in recorded_probes().items()}
    subs, _ = sa.judge_all(probes, specs_for(phases), skipped, dra=True)
    assert sa.combine_dra(subs).verdict is Verdict.PASS
    probes["dra-t4-ctr-nogpu"] = iso.load_probe(leaky_env_all(), "dra-t4-ctr-nogpu")
    subs, _ = sa.judge_all(probes, specs_for(phases), skipped, dra=True)
    dra = sa.combine_dra(subs)
    assert dra.verdict is Verdict.FAIL and "T4 FAIL" in dra.summary


# --- whole runs against a fake API -------------------------------------------------------------------------------------


class FakeKube:
    """Pods start at once and their logs are recorded probe documents (``docs``: (pod, container) -> document)."""

    def __init__(
        self,
        nodes: list[dict],
        docs: dict[tuple[str, str], dict] | None = None,
        *,
        start: bool = True,
        dra: tuple[dict | None, list[dict]] | None = None,
    ):
        self.nodes = nodes
        self.docs = docs if docs is not None else {k: recorded(v) for k, v in RECORDED.items()}
        self.start, self.dra = start, dra
        self.pods: dict[str, dict] = {}
        self.created: list[dict] = []

    def version(self) -> dict:
        return {"gitVersion": "v1.36.0"}

    def has_kind(self, api_version: str, kind: str) -> bool:
        return False

    def served_versions(self, group: str) -> list[str]:
        return ["v1"] if self.dra else []

    def events(self, namespace: str) -> list[dict]:
        return []

    def list(
        self, api_version: str, kind: str, namespace: str | None = None, *, label_selector: str | None = None, **_: Any
    ) -> list[dict]:
        if kind == "Node":
            return copy.deepcopy(self.nodes)
        if kind == "Pod":
            key, _, value = (label_selector or "").partition("=")
            return [
                copy.deepcopy(p) for p in self.pods.values() if not key or p["metadata"]["labels"].get(key) == value
            ]
        if kind == "ResourceSlice" and self.dra:
            return copy.deepcopy(self.dra[1])
        return []

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict | None:
        if kind == "Node":
            return next((copy.deepcopy(n) for n in self.nodes if n["metadata"]["name"] == name), None)
        if kind == "Pod":
            return copy.deepcopy(self.pods.get(name))
        if kind == "DeviceClass" and self.dra:
            return copy.deepcopy(self.dra[0])
        return None

    def create(self, obj: dict) -> dict:
        self.created.append(copy.deepcopy(obj))
        if obj["kind"] == "Pod":
            pod = copy.deepcopy(obj)
            containers = pod["spec"]["containers"]
            if self.start:
                pod["status"] = {
                    "phase": "Running",
                    "containerStatuses": [{"name": c["name"], "state": {"running": {}}} for c in containers],
                }
            else:
                pod["status"] = {
                    "phase": "Pending",
                    "conditions": [{"type": "PodScheduled", "status": "False", "message": "0/3 nodes are available"}],
                }
            pod["spec"]["nodeName"] = pod["spec"]["nodeSelector"]["kubernetes.io/hostname"]
            self.pods[obj["metadata"]["name"]] = pod
        return copy.deepcopy(obj)

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None, **_: Any) -> bool:
        return self.pods.pop(name, None) is not None if kind == "Pod" else True

    def delete_namespace(self, name: str, timeout_s: float = 0) -> None:
        self.pods.clear()

    def wait_until(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        predicate: Any,
        timeout_s: float,
        what: str,
        *,
        label_selector: str | None = None,
        describe: Any = None,
        **_: Any,
    ) -> list[dict]:
        objs = self.list(api_version, kind, namespace, label_selector=label_selector)
        if predicate(objs):
            return objs
        raise WaitTimeout(what, timeout_s, describe(objs) if describe else "")

    def sample(self, fn: Any, interval_s: float, until: Any, timeout_s: float, what: str) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            value = fn()
            if until(value):
                return value
            if time.monotonic() > deadline:
                raise WaitTimeout(what, timeout_s, str(value)[:200])
            time.sleep(0.01)

    def pod_logs(self, name: str, namespace: str, container: str | None = None, tail_lines: int = 500) -> str:
        doc = self.docs.get((name.removeprefix("dra-"), container or ""))
        if doc is None:
            return "python3: can't open file\n"
        return json.dumps(doc, indent=1) + f"\n{sa.END_MARKER} rc=0\n"


def run_fake(tmp_path: Path, kube: FakeKube, **overrides: Any):
    params = load_parameters(None, {"checklist_version": "1.36", "secure_access_probe_timeout_s": 1, **overrides})
    return run_check("secure_accelerator_access", params, kube=kube, run_dir=tmp_path, progress=lambda m: None)


REAL = node("real-0", 2, taints=[{"key": "sandbox.aiconf.io/real-node", "value": "true", "effect": "NoSchedule"}])
KWOK = node("kwok-0", 8, kwok=True)


def test_recorded_h200_probes_replayed_through_the_check_pass(tmp_path):
    kube = FakeKube([REAL, KWOK])
    result = run_fake(tmp_path, kube)
    assert result.verdict is Verdict.PASS, (result.reason, [(s.id, s.verdict, s.summary) for s in result.subchecks])
    subs = {s.id: s for s in result.subchecks}
    assert subs["one_request_one_device"].summary.endswith(UUID0)
    assert "same node" in subs["distinct_devices_no_cross_access"].summary
    assert subs["dra_isolation"].verdict is Verdict.NOT_APPLICABLE
    assert any("kwok" in n and "kwok-0" in n for n in result.notes)
    assert any("CAP_MKNOD" in n for n in result.notes)
    pods = [o for o in kube.created if o["kind"] == "Pod"]
    assert {p["spec"]["nodeSelector"]["kubernetes.io/hostname"] for p in pods} == {"real-0"}
    assert all(c["securityContext"]["privileged"] is False for p in pods for c in p["spec"]["containers"])
    cm = next(o for o in kube.created if o["kind"] == "ConfigMap")
    assert set(cm["data"]) == {"device_probe.py"}
    assert "evidence/secure_accelerator_access/probes/t1-env-all.json" in result.evidence
    assert result.metrics["visibility_matrix"]["is_diagonal"]
    assert isinstance(display.chart(result, "visibility_matrix"), Figure)
    rows = display.series(result, "probes")
    assert set(rows["label"]) == {
        "t1-none",
        "t1-env-all",
        "t2-gpu",
        "t4-ctr-gpu",
        "t4-ctr-nogpu",
        "t3-pod-a",
        "t3-pod-b",
    }


def test_leaky_runtime_probes_fail_t1_and_t3(tmp_path):
    docs = {k: recorded(v) for k, v in RECORDED.items()}
    docs[("t1-env-all", "probe")] = leaky_env_all()
    pod_a = leaky_env_all()
    pod_a["label"] = "t3-pod-a"
    docs[("t3-pod-a", "probe")] = pod_a  # sees and opens both GPUs
    result = run_fake(tmp_path, FakeKube([REAL], docs))
    assert result.verdict is Verdict.FAIL
    assert result.subcheck("no_request_no_device").verdict is Verdict.FAIL
    assert result.subcheck("distinct_devices_no_cross_access").verdict is Verdict.FAIL
    assert result.subcheck("visibility_matrix_diagonal").verdict is Verdict.FAIL
    assert not result.metrics["visibility_matrix"]["is_diagonal"]
    assert isinstance(display.chart(result, "visibility_matrix"), Figure)


def test_no_accelerators_is_not_applicable(tmp_path):
    result = run_fake(tmp_path, FakeKube([node("cpu", 0)]))
    assert result.verdict is Verdict.NOT_APPLICABLE and result.not_applicable.reason_code == "no_accelerators"


def test_only_simulated_accelerator_nodes_is_unknown_and_runs_nothing(tmp_path):
    kube = FakeKube([KWOK])
    result = run_fake(tmp_path, kube)
    assert result.verdict is Verdict.UNKNOWN
    assert "cannot be demonstrated" in result.subcheck("no_request_no_device").summary
    assert kube.created == []


def test_a_simulated_node_named_explicitly_is_unknown(tmp_path):
    result = run_fake(tmp_path, FakeKube([REAL, KWOK]), secure_access_node="kwok-0")
    assert result.verdict is Verdict.UNKNOWN


def test_another_vendor_without_a_probe_is_unknown(tmp_path):
    result = run_fake(tmp_path, FakeKube([REAL]), accelerator_vendor="amd")
    assert result.verdict is Verdict.UNKNOWN and "manual evidence" in result.subcheck("no_request_no_device").summary


def test_probe_pods_that_never_start_are_unknown_never_pass(tmp_path):
    result = run_fake(tmp_path, FakeKube([REAL], start=False), pod_start_timeout_s=1)
    assert result.verdict is Verdict.UNKNOWN
    assert "did not start" in result.subcheck("one_request_one_device").summary


def test_a_probe_without_output_is_unknown(tmp_path):
    docs = {k: recorded(v) for k, v in RECORDED.items() if k[0] != "t2"}
    result = run_fake(tmp_path, FakeKube([REAL], docs))
    assert result.verdict is Verdict.UNKNOWN
    assert "t2-gpu" in result.subcheck("one_request_one_device").summary


def test_one_gpu_per_node_runs_t3_across_nodes_labelled_weaker(tmp_path):
    result = run_fake(tmp_path, FakeKube([node("real-0", 1), node("real-1", 1)]))
    sub = result.subcheck("distinct_devices_no_cross_access")
    assert sub.verdict is Verdict.PASS and "weaker" in sub.summary
    assert any("across two nodes" in n for n in result.notes)


def test_dra_with_a_driver_on_a_real_node_runs_t2_to_t4_with_claims(tmp_path):
    dra = (device_class("gpu.nvidia.com"), [rslice("real-0", "gpu.nvidia.com")])
    kube = FakeKube([REAL], dra=dra)
    result = run_fake(tmp_path, kube, dra_device_class="gpu.example.com")
    assert result.subcheck("dra_isolation").verdict is Verdict.PASS, result.subcheck("dra_isolation").summary
    assert result.verdict is Verdict.PASS
    claims = [o for o in kube.created if o["kind"] == "Pod" and o["spec"].get("resourceClaims")]
    assert {p["metadata"]["name"] for p in claims} == {"dra-t2", "dra-t4", "dra-t3-pod-a", "dra-t3-pod-b"}
    assert any(o["kind"] == "ResourceClaimTemplate" for o in kube.created)


def test_dra_driver_only_on_simulated_nodes_is_not_applicable_with_the_reason(tmp_path):
    dra = (device_class("gpu.sandbox.aiconf.io"), [rslice("kwok-0", "gpu.sandbox.aiconf.io")])
    result = run_fake(tmp_path, FakeKube([REAL, KWOK], dra=dra), dra_device_class="gpu.sandbox.aiconf.io")
    sub = result.subcheck("dra_isolation")
    assert sub.verdict is Verdict.NOT_APPLICABLE and "no kubelet plugin" in sub.summary
    assert result.verdict is Verdict.PASS


@pytest.mark.parametrize("profile", [None, "sandbox", "nvidia-device-plugin", "nvidia-dra"])
def test_parameters_load_in_every_profile(profile):
    p = load_parameters(profile)
    assert p.secure_access_dra in ("auto", "off") and p.secure_access_probe_timeout_s > 0


def test_preflight_needs_a_real_accelerator_node_with_a_free_accelerator():
    p = load_parameters(None, {"checklist_version": "1.36"})
    assert sa.preflight(FakeKube([node("cpu", 0)]), p)[0] is False
    ok, why = sa.preflight(FakeKube([KWOK]), p)
    assert not ok and "simulated" in why
    ok, why = sa.preflight(FakeKube([REAL, KWOK]), p)
    assert ok and "real-0: 2 free" in why
    ok, why = sa.preflight(FakeKube([node("one", 1)]), p)
    assert ok and "T3 needs two" in why


def time_sliced(name: str, gpus: int, replicas: int) -> dict:
    n = node(name, gpus * replicas)
    n["metadata"]["labels"].update({"nvidia.com/gpu.count": str(gpus), "nvidia.com/gpu.replicas": str(replicas),
                                    "nvidia.com/gpu.sharing-strategy": "time-slicing"})
    return n


def test_a_time_sliced_node_alone_holds_one_device_at_a_time_and_t3_is_unknown_not_a_false_fail(tmp_path):
    """Two pods on a time-sliced node may see the same GPU by design: not an isolation failure, not a pass either."""
    kube = FakeKube([time_sliced("real-0", 2, 2)])
    result = run_fake(tmp_path, kube)
    t3 = result.subcheck("distinct_devices_no_cross_access")
    assert t3.verdict is Verdict.UNKNOWN and "time-sliced" in t3.summary
    assert result.verdict is Verdict.UNKNOWN
    assert any("time-sliced" in n for n in result.notes)
    holders = [o["metadata"]["name"] for o in kube.created if o["kind"] == "Pod"
               and any((c.get("resources") or {}).get("limits", {}).get(GPU) for c in o["spec"]["containers"])]
    assert not any("t3" in h for h in holders), holders


def test_an_unshared_node_is_preferred_over_a_time_sliced_one(tmp_path):
    kube = FakeKube([time_sliced("shared-0", 2, 4), node("real-0", 2)])
    result = run_fake(tmp_path, kube)
    assert result.verdict is Verdict.PASS, [(s.id, s.verdict, s.summary) for s in result.subchecks]
    pods = [o for o in kube.created if o["kind"] == "Pod"]
    assert {p["spec"]["nodeSelector"]["kubernetes.io/hostname"] for p in pods} == {"real-0"}
