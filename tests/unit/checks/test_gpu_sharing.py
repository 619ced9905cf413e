"""gpu_sharing without a cluster: detection of time-slicing/MPS, MIG and DRA sharing from node and slice objects, the
behavioural judgement (states and probe UUIDs), the probe pod, and whole runs against a fake API whose pods "see"
GPUs as a time-slicing device plugin (or a broken one) would hand them out."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import pytest
from matplotlib.figure import Figure

from aiconf import display
from aiconf.checks import gpu_sharing as gs
from aiconf.checks.secure_accelerator_access import END_MARKER
from aiconf.errors import WaitTimeout
from aiconf.execute import run_check
from aiconf.model import Verdict
from aiconf.params import load_parameters

GPU = "nvidia.com/gpu"
UUIDS = ["GPU-aaaaaaaa-0000-0000-0000-000000000000", "GPU-bbbbbbbb-1111-1111-1111-111111111111"]
REAL_TAINT = {"key": "sandbox.aiconf.io/real-node", "value": "true", "effect": "NoSchedule"}


def node(
    name: str,
    units: int,
    gpus: int | None,
    *,
    replicas: int = 1,
    strategy: str | None = "none",
    kwok: bool = False,
    resource: str = GPU,
    extra_alloc: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
) -> dict:
    lab: dict[str, str] = {}
    if gpus is not None:
        lab["nvidia.com/gpu.count"] = str(gpus)
        lab["nvidia.com/gpu.replicas"] = str(replicas)
        lab["nvidia.com/gpu.product"] = "NVIDIA-H100-80GB-HBM3" + ("-SHARED" if replicas > 1 else "")
    if strategy is not None and gpus is not None:
        lab["nvidia.com/gpu.sharing-strategy"] = strategy
    lab.update(labels or {})
    meta: dict[str, Any] = {"name": name, "labels": lab}
    if kwok:
        meta["annotations"] = {"kwok.x-k8s.io/node": "fake"}
    alloc = {resource: str(units)} if units else {}
    alloc.update(extra_alloc or {})
    return {
        "metadata": meta,
        "spec": {"taints": [] if kwok else [REAL_TAINT]},
        "status": {"allocatable": alloc, "conditions": [{"type": "Ready", "status": "True"}]},
    }


TIME_SLICED = node("real-0", 4, 2, replicas=2, strategy="time-slicing")
UNSHARED = node("real-0", 2, 2)
KWOK = node("kwok-0", 8, 8, kwok=True)


# --- detection -------------------------------------------------------------------------------------------------------


def test_time_sliced_node_shares_units_and_an_unshared_one_does_not():
    shared, plain = gs.sharing_nodes([TIME_SLICED, node("real-1", 2, 2)], GPU)
    assert (shared.units, shared.physical, shared.replicas, shared.mode) == (4, 2, 2, "time-slicing")
    assert shared.shares_units and shared.declared and not shared.inconsistent
    assert not plain.shares_units and not plain.declared and not plain.inconsistent


def test_renamed_shared_resource_and_mig_resources_are_found():
    renamed = node("r", 8, 2, replicas=4, strategy="time-slicing", resource="nvidia.com/gpu.shared")
    mig = node("m", 0, 1, extra_alloc={"nvidia.com/mig-1g.10gb": "7"})
    found = {n.name: n for n in gs.sharing_nodes([renamed, mig, node("cpu", 0, None)], GPU)}
    assert set(found) == {"r", "m"}  # the CPU node advertises nothing
    assert found["r"].resource == "nvidia.com/gpu.shared" and found["r"].shares_units
    assert gs.is_mig(found["m"]) and found["m"].mig == {"nvidia.com/mig-1g.10gb": 7}
    single = gs.sharing_nodes(
        [node("s", 7, 1, labels={"nvidia.com/mig.strategy": "single", "nvidia.com/gpu.product": "A100-MIG-1g.5gb"})],
        GPU,
    )[0]
    assert gs.is_mig(single)


def test_labels_claiming_time_slicing_without_extra_units_fail():
    liar = node("real-0", 2, 2, replicas=2, strategy="time-slicing")
    nodes = gs.sharing_nodes([liar, KWOK], GPU)
    assert nodes[0].inconsistent
    sub, reason = gs.judge_advertised(nodes, {})
    assert sub.verdict is Verdict.FAIL and reason == ""
    assert "real-0" in sub.summary and "2 units = 2 GPUs" in sub.summary


def test_no_sharing_is_not_applicable_with_a_drafted_justification():
    nodes = gs.sharing_nodes([UNSHARED, KWOK], GPU)
    sub, reason = gs.judge_advertised(nodes, {})
    assert sub.verdict is Verdict.NOT_APPLICABLE and reason == "no_sharing"
    text = gs.justification(nodes, reason)
    assert "10 GPU(s) on 2 node(s)" in text and "allocated whole" in text
    sub, reason = gs.judge_advertised([], {})
    assert sub.verdict is Verdict.NOT_APPLICABLE and reason == "no_accelerators"


def test_accelerators_without_gfd_labels_are_unknown_not_not_applicable():
    sub, reason = gs.judge_advertised(gs.sharing_nodes([node("x", 4, None)], GPU), {})
    assert sub.verdict is Verdict.UNKNOWN and reason == ""


def test_dra_partitionable_and_shareable_devices_count_as_sharing():
    slices = [
        {"spec": {"driver": "gpu.nvidia.com", "sharedCounters": [{"name": "gpu-0"}], "devices": []}},
        {"spec": {"driver": "gpu.nvidia.com", "devices": [{"name": "mig-0", "consumesCounters": [{}]}, {"name": "g"}]}},
        {"spec": {"driver": "other.example.com", "devices": [{"name": "d", "allowMultipleAllocations": True}]}},
        {"spec": {"driver": "plain.example.com", "devices": [{"name": "d"}]}},
    ]
    dra = gs.dra_shared_devices(slices)
    assert dra == {"gpu.nvidia.com": 2, "other.example.com": 1}
    sub, _ = gs.judge_advertised(gs.sharing_nodes([UNSHARED], GPU), dra)
    assert sub.verdict is Verdict.PASS and "DRA" in sub.summary


# --- behavioural judgement -------------------------------------------------------------------------------------------


def behaviour(uuids: dict[str, list[str]], states: dict[str, str] | None = None, physical: int = 2) -> gs.Behaviour:
    pods = sorted(uuids) if states is None else sorted(states)
    b = gs.Behaviour("real-0", physical, pods)
    b.states = states or {p: "Running" for p in pods}
    b.uuids = uuids
    return b


def test_more_pods_than_gpus_on_replicas_pass():
    subs = gs.judge_behaviour(behaviour({"share-0": [UUIDS[0]], "share-1": [UUIDS[1]], "share-2": [UUIDS[0]]}))
    assert {k: s.verdict for k, s in subs.items()} == dict.fromkeys(gs.BEHAVIOURAL, Verdict.PASS)
    assert subs["pods_share_physical_gpu"].details["tally"] == {UUIDS[0]: 2, UUIDS[1]: 1}


def test_a_pod_beyond_the_physical_count_left_pending_fails():
    states = {
        "share-0": "Running",
        "share-1": "Running",
        "share-2": "Pending; PodScheduled: Insufficient nvidia.com/gpu",
    }
    subs = gs.judge_behaviour(behaviour({"share-0": [UUIDS[0]], "share-1": [UUIDS[1]]}, states))
    assert subs["shared_pods_running"].verdict is Verdict.FAIL
    assert "Insufficient" in subs["shared_pods_running"].summary
    assert subs["pods_share_physical_gpu"].verdict is Verdict.FAIL  # two pods on two GPUs share nothing


def test_whole_gpus_behind_a_wrong_count_label_fail():
    # The node claims 1 GPU x 2 replicas, but the two pods got two different devices.
    subs = gs.judge_behaviour(behaviour({"share-0": [UUIDS[0]], "share-1": [UUIDS[1]]}, physical=1))
    assert subs["shared_pods_running"].verdict is Verdict.PASS
    assert subs["units_map_to_physical"].verdict is Verdict.FAIL
    assert "2 distinct GPUs seen but the node declares 1" in subs["units_map_to_physical"].summary
    assert subs["pods_share_physical_gpu"].verdict is Verdict.FAIL


def test_pods_that_all_see_every_gpu_fail_the_mapping():
    subs = gs.judge_behaviour(behaviour({f"share-{i}": list(UUIDS) for i in range(3)}))
    assert subs["units_map_to_physical"].verdict is Verdict.FAIL
    assert "share-0 saw 2 GPUs" in subs["units_map_to_physical"].summary
    assert subs["pods_share_physical_gpu"].verdict is Verdict.FAIL  # no pod saw exactly one GPU: nothing tallied


def test_uuids_the_node_does_not_publish_fail_and_no_probe_is_unknown():
    b = behaviour({"share-0": [UUIDS[0]], "share-1": [UUIDS[0]], "share-2": ["GPU-elsewhere-0000"]})
    b.node_uuids = list(UUIDS)
    assert "does not publish" in gs.judge_behaviour(b).get("units_map_to_physical").summary
    b = behaviour({}, {"share-0": "Running", "share-1": "Running", "share-2": "Running"})
    b.problems = {"share-0": "no probe output within 1s"}
    subs = gs.judge_behaviour(b)
    assert subs["units_map_to_physical"].verdict is Verdict.UNKNOWN
    assert subs["pods_share_physical_gpu"].verdict is Verdict.UNKNOWN


def test_probe_pod_holds_one_unit_pinned_to_the_node_and_runs_restricted():
    p = load_parameters("sandbox")
    n = gs.sharing_nodes([TIME_SLICED], GPU)[0]
    pod = gs.probe_pod("share-0", "ns", n, p, configmap="cm", hold_s=60)
    c = pod["spec"]["containers"][0]
    assert c["resources"]["limits"][GPU] == "1"
    assert pod["spec"]["nodeSelector"] == {"kubernetes.io/hostname": "real-0"}
    assert {"key": REAL_TAINT["key"], "operator": "Exists", "effect": "NoSchedule"} in pod["spec"]["tolerations"]
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] and sc["capabilities"] == {"drop": ["ALL"]} and not sc["allowPrivilegeEscalation"]


def test_pods_settle_when_all_run_or_one_is_unschedulable():
    running = {"status": {"phase": "Running", "containerStatuses": [{"state": {"running": {}}}]}}
    pending = {"status": {"phase": "Pending"}}
    unschedulable = {
        "status": {
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}],
        }
    }
    assert gs.pods_settled([running, running], 2)
    assert not gs.pods_settled([running], 2)
    assert not gs.pods_settled([running, pending], 2)
    assert gs.pods_settled([running, unschedulable], 2)
    assert not gs.pods_settled([pending, unschedulable], 2)  # the pending one may still start: it is read if it does


# --- whole runs against a fake API ---------------------------------------------------------------------------------


class FakeKube:
    """Pods start at once (or stay Pending past ``capacity`` units); each probe "sees" the GPU ``assign`` gives it."""

    def __init__(self, nodes: list[dict], assign: Any = None, *, capacity: int | None = None):
        self.nodes = nodes
        self.assign = assign or (lambda i: [UUIDS[i % 2]])  # round robin over two GPUs, as replicas fill up
        self.capacity = capacity
        self.pods: dict[str, dict] = {}
        self.created: list[dict] = []

    def version(self) -> dict:
        return {"gitVersion": "v1.36.0"}

    def served_versions(self, group: str) -> list[str]:
        return []

    def has_kind(self, api_version: str, kind: str) -> bool:
        return False

    def events(self, namespace: str) -> list[dict]:
        return []

    def list(self, api_version: str, kind: str, namespace: str | None = None, **_: Any) -> list[dict]:
        if kind == "Node":
            return copy.deepcopy(self.nodes)
        if kind == "Pod":
            return [copy.deepcopy(p) for p in self.pods.values()]
        return []

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict | None:
        return copy.deepcopy(self.pods.get(name)) if kind == "Pod" else None

    def create(self, obj: dict) -> dict:
        self.created.append(copy.deepcopy(obj))
        if obj["kind"] == "Pod":
            pod = copy.deepcopy(obj)
            if self.capacity is not None and len(self.pods) >= self.capacity:
                pod["status"] = {
                    "phase": "Pending",
                    "conditions": [
                        {
                            "type": "PodScheduled",
                            "status": "False",
                            "reason": "Unschedulable",
                            "message": "0/2 nodes are available: 1 Insufficient nvidia.com/gpu",
                        }
                    ],
                }
            else:
                pod["status"] = {"phase": "Running", "containerStatuses": [{"name": "probe", "state": {"running": {}}}]}
                pod["spec"]["nodeName"] = pod["spec"]["nodeSelector"]["kubernetes.io/hostname"]
            self.pods[obj["metadata"]["name"]] = pod
        return copy.deepcopy(obj)

    def delete(self, *_: Any, **__: Any) -> bool:
        return True

    def delete_namespace(self, name: str, timeout_s: float = 0) -> None:
        self.pods.clear()

    def wait_until(self, api_version, kind, namespace, predicate, timeout_s, what, *, describe=None, **_: Any):
        objs = self.list(api_version, kind, namespace)
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
        doc = {"schema": "aiconf.device_probe/1", "label": name, "uuids": self.assign(int(name.rsplit("-", 1)[1]))}
        return json.dumps(doc, indent=1) + f"\n{END_MARKER} rc=0\n"


def run_fake(tmp_path: Path, kube: FakeKube, **overrides: Any):
    params = load_parameters(None, {"checklist_version": "1.36", "gpu_sharing_probe_timeout_s": 1, **overrides})
    return run_check("gpu_sharing", params, kube=kube, run_dir=tmp_path, progress=lambda m: None)


def verdicts(result) -> dict[str, Verdict]:
    return {s.id: s.verdict for s in result.subchecks}


def test_time_sliced_node_passes_and_draws_pods_per_gpu(tmp_path):
    kube = FakeKube([TIME_SLICED, KWOK])
    result = run_fake(tmp_path, kube)
    assert result.verdict is Verdict.PASS, [(s.id, s.verdict, s.summary) for s in result.subchecks]
    assert set(verdicts(result)) == set(gs.SUBCHECKS)
    pods = [o for o in kube.created if o["kind"] == "Pod"]
    assert len(pods) == 3  # 2 GPUs + 1
    assert result.metrics["tally"] == {UUIDS[0]: 2, UUIDS[1]: 1}
    assert result.proves and any("3 pods" in t for t in result.proves)
    frame = display.series(result, "tally")
    assert list(frame["pods"]) == [2, 1]
    fig = Figure()
    ax = fig.subplots()
    gs.draw_pods_per_gpu(ax, result)
    assert [round(b.get_height()) for b in ax.patches] == [2, 1]


def test_units_that_never_start_beyond_the_gpu_count_fail(tmp_path):
    result = run_fake(tmp_path, FakeKube([TIME_SLICED], capacity=2))
    assert result.verdict is Verdict.FAIL
    assert verdicts(result)["shared_pods_running"] is Verdict.FAIL


def test_replicas_that_are_whole_gpus_fail(tmp_path):
    # Claims 1 GPU x 2 replicas; the two pods each get a different device.
    liar = node("real-0", 2, 1, replicas=2, strategy="time-slicing")
    result = run_fake(tmp_path, FakeKube([liar], assign=lambda i: [UUIDS[i]]))
    assert result.verdict is Verdict.FAIL
    assert verdicts(result)["units_map_to_physical"] is Verdict.FAIL
    assert verdicts(result)["pods_share_physical_gpu"] is Verdict.FAIL


def test_no_sharing_is_not_applicable_and_creates_nothing(tmp_path):
    kube = FakeKube([UNSHARED, KWOK])
    result = run_fake(tmp_path, kube)
    assert result.verdict is Verdict.NOT_APPLICABLE
    assert (
        result.not_applicable.reason_code == "no_sharing" and "allocated whole" in result.not_applicable.justification
    )
    assert set(verdicts(result)) == set(gs.SUBCHECKS)
    assert not [o for o in kube.created if o["kind"] == "Pod"]


def test_sharing_labels_without_extra_units_fail_without_running_pods(tmp_path):
    kube = FakeKube([node("real-0", 2, 2, replicas=2, strategy="time-slicing")])
    result = run_fake(tmp_path, kube)
    assert result.verdict is Verdict.FAIL
    assert verdicts(result)["sharing_advertised"] is Verdict.FAIL
    assert not [o for o in kube.created if o["kind"] == "Pod"]


@pytest.mark.parametrize(
    ("nodes", "why"),
    [
        ([UNSHARED, node("kwok-0", 16, 8, replicas=2, strategy="time-slicing", kwok=True)], "simulated"),
        ([node("m", 0, 1, extra_alloc={"nvidia.com/mig-1g.10gb": "7"})], "MIG"),
    ],
)
def test_sharing_that_cannot_be_run_here_is_unknown_never_pass(tmp_path, nodes, why):
    result = run_fake(tmp_path, FakeKube(nodes))
    assert result.verdict is Verdict.UNKNOWN
    assert verdicts(result)["sharing_advertised"] is Verdict.PASS
    assert all(verdicts(result)[s] is Verdict.UNKNOWN for s in gs.BEHAVIOURAL)
    assert why in {s.id: s for s in result.subchecks}["shared_pods_running"].summary


def test_too_few_free_units_is_unknown(tmp_path):
    kube = FakeKube([TIME_SLICED])
    holder = {
        "kind": "Pod",
        "metadata": {"name": "tenant", "labels": {}},
        "spec": {"nodeName": "real-0", "containers": [{"resources": {"limits": {GPU: "2"}}}]},
        "status": {"phase": "Running"},
    }
    kube.pods["tenant"] = holder
    result = run_fake(tmp_path, kube, pod_start_timeout_s=1)
    assert result.verdict is Verdict.UNKNOWN
    assert "2 of 4 units free" in {s.id: s for s in result.subchecks}["shared_pods_running"].summary


def test_other_vendors_are_unknown(tmp_path):
    result = run_fake(tmp_path, FakeKube([TIME_SLICED]), accelerator_vendor="amd")
    assert result.verdict is Verdict.UNKNOWN
