"""cluster_autoscaling without a cluster: autoscaler detection from constructed objects (CA status ConfigMap in both
formats, kwok provider templates, Karpenter NodePools, Cluster API annotations), the can-grow judgement, workload
sizing, and the detection part of the check against a fake client."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from aiconf.checks import cluster_autoscaling as ca
from aiconf.errors import ForbiddenError
from aiconf.execute import run_check
from aiconf.model import MustNaPolicy, ProductStatus, Verdict, product_status
from aiconf.params import load_parameters

STATUS_YAML = """\
time: 2026-11-28 13:00:00.000000000 +0000 UTC
autoscalerStatus: Running
clusterWide:
  health:
    status: Healthy
    nodeCounts:
      registered: {total: 3, ready: 3, notStarted: 0}
      longUnregistered: 0
      unregistered: 0
  scaleUp: {status: NoActivity}
  scaleDown: {status: NoCandidates}
nodeGroups:
- name: gpu-h100-1764334800
  health:
    status: Healthy
    nodeCounts:
      registered: {total: 1, ready: 1, notStarted: 0}
      longUnregistered: 0
      unregistered: 0
    cloudProviderTarget: 1
    minSize: 0
    maxSize: 2
  scaleUp: {status: NoActivity}
  scaleDown: {status: NoCandidates}
- name: cpu-pool
  health:
    status: Healthy
    nodeCounts:
      registered: {total: 2, ready: 2, notStarted: 0}
    cloudProviderTarget: 2
    minSize: 1
    maxSize: 2
"""

STATUS_TEXT = """\
Cluster-autoscaler status at 2024-01-01 00:00:00 +0000 UTC:
Cluster-wide:
  Health:      Healthy (ready=4 unready=0 notStarted=0 longNotStarted=0 registered=4 longUnregistered=0)
               LastProbeTime:      2024-01-01 00:00:00 +0000 UTC
  ScaleUp:     NoActivity (ready=4 registered=4)

NodeGroups:
  Name:        https://www.googleapis.com/compute/v1/projects/p/zones/z/instanceGroups/gke-c-gpu-pool-abc-grp
  Health:      Healthy (ready=2 unready=0 notStarted=0 longNotStarted=0 registered=2 longUnregistered=0 cloudProviderTarget=2 (minSize=0, maxSize=4))
  ScaleUp:     NoActivity (ready=2 cloudProviderTarget=2)
  ScaleDown:   NoCandidates (candidates=0)
"""


def test_parse_ca_status_yaml():
    st = ca.parse_ca_status(STATUS_YAML)
    assert st["autoscaler_status"] == "Running" and st["health"] == "Healthy"
    g = st["groups"][0]
    assert (g["name"], g["min_size"], g["max_size"], g["target"], g["registered"]) == ("gpu-h100-1764334800", 0, 2, 1, 1)


def test_parse_ca_status_legacy_text():
    st = ca.parse_ca_status(STATUS_TEXT)
    assert st["health"] == "Healthy"
    g = st["groups"][0]
    assert g["name"].endswith("gke-c-gpu-pool-abc-grp")
    assert (g["min_size"], g["max_size"], g["target"], g["ready"], g["scale_up"]) == (0, 4, 2, 2, "NoActivity")


def gpu_node(name: str, gpus: int = 8, labels: dict | None = None, annotations: dict | None = None, taints: list | None = None) -> dict:
    return {"metadata": {"name": name, "labels": labels or {}, "annotations": annotations or {}},
            "spec": {"taints": taints or []},
            "status": {"allocatable": {"nvidia.com/gpu": str(gpus)}, "conditions": [{"type": "Ready", "status": "True"}]}}


KWOK_CONFIG = "apiVersion: v1alpha1\nreadNodesFrom: configmap\nnodegroups:\n  fromNodeLabelKey: sandbox.aiconf.io/nodegroup\n"


def kwok_templates(max_count: str = "2", gpus: int = 8) -> str:
    tpl = {"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Node",
         "metadata": {"name": "gpu-template", "labels": {"sandbox.aiconf.io/nodegroup": "gpu-h100", "nvidia.com/gpu.present": "true"},
                      "annotations": {ca.KWOK_NG_MIN: "0", ca.KWOK_NG_MAX: max_count}},
         "spec": {"taints": [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]},
         "status": {"allocatable": {"nvidia.com/gpu": str(gpus), "cpu": "32"}}},
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "ungrouped", "labels": {}}}]}
    return yaml.safe_dump(tpl)


def test_kwok_groups_from_templates():
    member = gpu_node("kwok-fake-gpu-template-x", labels={"sandbox.aiconf.io/nodegroup": "gpu-h100"},
                      annotations={ca.KWOK_NG_NAME: "gpu-h100-1764334800"})
    groups = ca.kwok_groups(KWOK_CONFIG, kwok_templates(), [member, gpu_node("other")], "nvidia.com/gpu")
    assert len(groups) == 1
    g = groups[0]
    assert (g.name, g.min_size, g.max_size, g.current, g.gpu, g.gpus_per_node) == ("gpu-h100", 0, 2, 1, True, 8)
    assert g.selector == {"sandbox.aiconf.io/nodegroup": "gpu-h100"}
    assert {"key": "kwok-provider", "operator": "Exists", "effect": "NoSchedule"} in g.tolerations
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in g.tolerations
    assert g.can_grow is True


def test_status_groups_take_sizes_and_templates_add_capability():
    status = ca.ca_status_groups(ca.parse_ca_status(STATUS_YAML), [], "nvidia.com/gpu", "")
    assert status[0].gpu is None  # no member nodes yet (min 0): capability unknown from the status alone
    merged = ca.merge_groups(status, ca.kwok_groups(KWOK_CONFIG, kwok_templates(), [], "nvidia.com/gpu"))
    g = next(x for x in merged if x.name.startswith("gpu-h100"))
    assert g.source == "cluster-autoscaler/kwok" and g.gpu is True and g.current == 1 and g.max_size == 2
    assert len(merged) == 2  # the template group is the same group, not a third one


def test_status_group_capability_from_member_node_labels():
    nodes = [gpu_node("gke-c-gpu-pool-abc-1", labels={"cloud.google.com/gke-nodepool": "gpu-pool"})]
    groups = ca.ca_status_groups(ca.parse_ca_status(STATUS_TEXT), nodes, "nvidia.com/gpu", "")
    assert groups[0].gpu is True and groups[0].selector == {"cloud.google.com/gke-nodepool": "gpu-pool"}


def test_karpenter_nodepool_with_gpu_limit():
    pool = {"metadata": {"name": "gpu"},
            "spec": {"template": {"spec": {"requirements": [{"key": "karpenter.k8s.aws/instance-category", "operator": "In", "values": ["g", "p"]}],
                                           "taints": [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]}},
                     "limits": {"nvidia.com/gpu": "16"}},
            "status": {"resources": {"nvidia.com/gpu": "16"}}}
    g = ca.karpenter_groups([pool], [], "nvidia.com/gpu")[0]
    assert g.gpu is True and g.max_size == 16 and g.current == 16 and g.can_grow is False
    assert g.selector == {"karpenter.sh/nodepool": "gpu"}
    unbounded = ca.karpenter_groups([{**pool, "spec": {**pool["spec"], "limits": {}}}], [], "nvidia.com/gpu")[0]
    assert unbounded.can_grow is True


def test_karpenter_kwok_pool_is_gpu_capable_from_template_labels_or_gpu_limit():
    pool = {"metadata": {"name": "aiconf-gpu"},
            "spec": {"template": {"metadata": {"labels": {"nvidia.com/gpu.present": "true", "type": "kwok"}},
                                  "spec": {"requirements": [{"key": "node.kubernetes.io/instance-type", "operator": "In",
                                                             "values": ["aiconf-gpu-8x"]}],
                                           "nodeClassRef": {"group": "karpenter.kwok.sh", "kind": "KWOKNodeClass", "name": "default"}}},
                     "limits": {"nvidia.com/gpu": "16"}},
            "status": {"resources": {"cpu": "0"}}}
    g = ca.karpenter_groups([pool], [], "nvidia.com/gpu", "nvidia.com/gpu.present=true")[0]
    assert g.gpu is True and g.can_grow is True and (g.current, g.max_size) == (0, 16)
    assert "simulated" in g.detail
    no_limit = copy.deepcopy(pool)
    no_limit["spec"]["limits"] = {}
    assert ca.karpenter_groups([no_limit], [], "nvidia.com/gpu", "nvidia.com/gpu.present=true")[0].gpu is True
    assert ca.karpenter_groups([no_limit], [], "nvidia.com/gpu", "")[0].gpu is None


def test_capi_annotations():
    md = {"kind": "MachineDeployment", "metadata": {"name": "gpu-md", "namespace": "default",
                                                    "annotations": {ca.CAPI_MIN: "0", ca.CAPI_MAX: "3", ca.CAPI_GPU_COUNT: "4"}},
          "spec": {"replicas": 1}}
    plain = {"kind": "MachineDeployment", "metadata": {"name": "workers", "namespace": "default"}, "spec": {"replicas": 3}}
    groups = ca.capi_groups([md, plain])
    assert len(groups) == 1 and (groups[0].min_size, groups[0].max_size, groups[0].current, groups[0].gpu) == (0, 3, 1, True)


@pytest.mark.parametrize(
    ("groups", "wanted", "verdict"),
    [
        ([ca.NodeGroup("cluster-autoscaler", "gpu", 0, 2, 2, gpu=True)], "", Verdict.FAIL),
        ([ca.NodeGroup("cluster-autoscaler", "gpu", 0, 2, 1, gpu=True)], "", Verdict.PASS),
        ([ca.NodeGroup("cluster-autoscaler", "pool-a", 0, 2, 0, gpu=None)], "", Verdict.UNKNOWN),
        ([ca.NodeGroup("cluster-autoscaler", "pool-a", 0, 2, 0, gpu=None)], "pool-a", Verdict.PASS),
        ([ca.NodeGroup("cluster-autoscaler", "cpu", 1, 5, 1, gpu=False)], "", Verdict.UNKNOWN),
        ([ca.NodeGroup("cluster-autoscaler", "gpu", 0, 2, 1, gpu=True)], "missing", Verdict.FAIL),
        ([ca.NodeGroup("cluster-autoscaler", "gpu", 0, None, 1, gpu=True)], "", Verdict.UNKNOWN),
    ],
    ids=["max-equals-current", "can-grow", "capability-unknown", "named-by-parameter", "cpu-only", "named-missing",
         "size-unknown"],
)
def test_choose_group(groups, wanted, verdict):
    group, v, why = ca.choose_group(groups, wanted)
    assert v is verdict, why
    assert (group is not None) == (verdict is Verdict.PASS)


def test_fitting_pods_respects_selector_taints_and_usage():
    sel = {"pool": "gpu"}
    nodes = [gpu_node("a", 8, labels=sel), gpu_node("b", 8, labels=sel, taints=[{"key": "dedicated", "effect": "NoSchedule"}]),
             gpu_node("c", 8)]
    pods = [{"metadata": {"name": "x"}, "spec": {"nodeName": "a", "containers": [{"resources": {"requests": {"nvidia.com/gpu": "4"}}}]},
             "status": {"phase": "Running"}}]
    tolerations = [{"key": "nvidia.com/gpu", "operator": "Exists"}]
    assert ca.fitting_pods(nodes, pods, "nvidia.com/gpu", 4, sel, tolerations) == 1
    assert ca.fitting_pods(nodes, [], "nvidia.com/gpu", 8, sel, tolerations + [{"key": "dedicated"}]) == 2
    assert ca.fitting_pods(nodes, [], "nvidia.com/gpu", 8, {}, tolerations) == 2


def test_burst_deployment_targets_the_group():
    g = ca.NodeGroup("cluster-autoscaler/kwok", "gpu", 0, 2, 0, gpu=True, gpus_per_node=8, selector={"pool": "gpu"},
                     tolerations=[{"key": "kwok-provider", "operator": "Exists", "effect": "NoSchedule"}])
    d = ca.burst_deployment("gpu-burst", "ns", 3, 8, g, load_parameters(None))
    spec = d["spec"]["template"]["spec"]
    assert d["spec"]["replicas"] == 3 and spec["nodeSelector"] == {"pool": "gpu"}
    assert spec["containers"][0]["resources"]["requests"]["nvidia.com/gpu"] == "8"
    assert {t["key"] for t in spec["tolerations"]} == {"nvidia.com/gpu", "kwok-provider"}


# --- detection part of the check against a fake client ---------------------------------------------------------------


class FakeKube:
    def __init__(self, configmaps: dict[str, dict] | None = None, nodes: list[dict] | None = None):
        self.configmaps = configmaps or {}
        self.nodes = nodes or [gpu_node("sandbox-gpu-0")]
        self.created: list[dict] = []

    def version(self) -> dict:
        return {"gitVersion": "v1.36.0"}

    def has_kind(self, api_version: str, kind: str) -> bool:
        return kind == "Deployment"

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict | None:
        return copy.deepcopy(self.configmaps.get(f"{namespace}/{name}")) if kind == "ConfigMap" else None

    def list(self, api_version: str, kind: str, namespace: str | None = None, **_: Any) -> list[dict]:
        return copy.deepcopy(self.nodes) if kind == "Node" else []

    def create(self, obj: dict) -> dict:
        self.created.append(obj)
        raise AssertionError("detection must not create anything")


def run_fake(tmp_path, kube: FakeKube, **overrides: Any):
    params = load_parameters(None, {"checklist_version": "1.36", **overrides})
    return run_check("cluster_autoscaling", params, kube=kube, run_dir=tmp_path, progress=lambda m: None)


def test_no_autoscaler_is_not_applicable_with_justification_and_must_warning(tmp_path):
    result = run_fake(tmp_path, FakeKube())
    assert result.verdict is Verdict.NOT_APPLICABLE
    assert result.not_applicable.reason_code == "no_cluster_autoscaler"
    assert "Karpenter" in result.not_applicable.justification
    assert "don't support" not in result.not_applicable.justification
    status, notes, warnings = product_status(result)
    assert status == ProductStatus.NOT_APPLICABLE and notes == result.not_applicable.justification
    assert any("validator" in w for w in warnings)
    status, notes, _ = product_status(result, MustNaPolicy.IMPLEMENTED_WITH_NOTE)
    assert status == ProductStatus.IMPLEMENTED and notes.startswith("Not applicable")


class RefusedKarpenterKube(FakeKube):
    """Karpenter's NodePools are served, but this identity may not list them."""

    def has_kind(self, api_version: str, kind: str) -> bool:
        return kind in ("Deployment", "NodePool")

    def list(self, api_version: str, kind: str, namespace: str | None = None, **kw: Any) -> list[dict]:
        if kind == "NodePool":
            raise ForbiddenError("list", "NodePool")
        return super().list(api_version, kind, namespace, **kw)


def test_a_refused_nodepool_list_is_error_naming_it_not_no_autoscaler(tmp_path):
    result = run_fake(tmp_path, RefusedKarpenterKube())
    assert result.verdict is Verdict.ERROR
    assert "cannot list NodePool" in result.error["message"]
    assert result.not_applicable is None


def status_cm(text: str) -> dict:
    return {"kube-system/cluster-autoscaler-status": {"metadata": {"name": "cluster-autoscaler-status"}, "data": {"status": text}}}


def test_autoscaler_whose_gpu_group_is_full_fails(tmp_path):
    full = STATUS_YAML.replace("cloudProviderTarget: 1\n    minSize: 0\n    maxSize: 2", "cloudProviderTarget: 2\n    minSize: 0\n    maxSize: 2")
    result = run_fake(tmp_path, FakeKube(status_cm(full)), ca_gpu_node_group="gpu-h100", cluster_autoscaling_active=True)
    assert result.verdict is Verdict.FAIL
    sub = result.subcheck("gpu_group_can_grow")
    assert sub.verdict is Verdict.FAIL and "current 2 = max 2" in sub.summary
    assert all(result.subcheck(s).verdict is Verdict.UNKNOWN for s in ca.ACTIVE)


def test_active_test_off_leaves_manual_evidence(tmp_path):
    result = run_fake(tmp_path, FakeKube(status_cm(STATUS_YAML)), ca_gpu_node_group="gpu-h100", cluster_autoscaling_active=False)
    assert result.verdict is Verdict.UNKNOWN
    assert result.subcheck("gpu_group_can_grow").verdict is Verdict.PASS
    assert "cluster_autoscaling_active" in result.subcheck("scaled_up").summary


def test_kwok_templates_without_status_configmap_are_detected(tmp_path):
    cms = {"kube-system/kwok-provider-config": {"data": {"config": KWOK_CONFIG}},
           "kube-system/kwok-provider-templates": {"data": {"templates": kwok_templates(max_count="0")}}}
    result = run_fake(tmp_path, FakeKube(cms))
    assert result.subcheck("autoscaler_detected").verdict is Verdict.PASS
    assert result.subcheck("gpu_group_can_grow").verdict is Verdict.FAIL  # max-count 0: it can never grow
