"""cluster_autoscaling end to end on the sandbox.

The sandbox has no Cluster Autoscaler (the Go module proxy refuses ``k8s.io/autoscaler/cluster-autoscaler``, see
``aiconf.sandbox.addons.cluster_autoscaler``), so:

* on the plain sandbox the check must be NOT_APPLICABLE with its drafted justification;
* a *test double* of Cluster Autoscaler's kwok provider (``FakeKwokAutoscaler`` below: the same ConfigMaps, node
  annotations, taint and status ConfigMap format, and the same observable behaviour - a node per pending group pod,
  removed when empty) lets the active test run against the real scheduler and kwok. It proves the check's logic, not
  any autoscaler;
* broken: the double's accelerator group already at max (current == max) must not PASS.

With the sandbox's ``karpenter`` add-on (Karpenter's kwok provider, not a default add-on) the active test also runs
against a real node autoscaler, and its NodePool's accelerator limit set to the current usage must not PASS.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest
import yaml

from aiconf.checks import cluster_autoscaling as ca
from aiconf.context import LABEL_RUN_ID
from aiconf.execute import new_run_id, run_check
from aiconf.kube import Kube
from aiconf.model import Verdict
from aiconf.params import load_parameters

pytestmark = pytest.mark.sandbox

GROUP_LABEL = "sandbox.aiconf.io/nodegroup"
TEST_LABEL = "aiconf.io/test"


@pytest.fixture(scope="module")
def kube(kube_sandbox) -> Kube:
    return Kube.connect(str(kube_sandbox.kubeconfig))


def real_autoscaler(kube: Kube) -> bool:
    return any(kube.get("v1", "ConfigMap", n, "kube-system") for n in ("cluster-autoscaler-status", "kwok-provider-config"))


def any_autoscaler(kube: Kube, kube_sandbox) -> list[str]:
    return ca.detect(kube, load_parameters("sandbox", {"kubeconfig": str(kube_sandbox.kubeconfig)})).mechanisms


def run(kube_sandbox, tmp_path, **overrides):
    run_id = new_run_id()
    params = load_parameters("sandbox", {"kubeconfig": str(kube_sandbox.kubeconfig), **overrides})
    return run_check("cluster_autoscaling", params, run_id=run_id, run_dir=tmp_path), run_id


def leftovers(kube: Kube, run_id: str) -> list[str]:
    out = []
    for api_version, kind in (("v1", "Namespace"), ("v1", "Pod"), ("apps/v1", "Deployment"), ("v1", "Node")):
        out += [f"{kind}/{o['metadata']['name']}" for o in kube.list(api_version, kind, label_selector=f"{LABEL_RUN_ID}={run_id}")]
    return out


class FakeKwokAutoscaler:
    """A test double of Cluster Autoscaler + its kwok provider, for the one group ``name``.

    Publishes ``kwok-provider-config``/``kwok-provider-templates`` and a YAML ``cluster-autoscaler-status`` in
    kube-system; every ``tick_s`` it adds a kwok GPU node (annotation ``kwok.x-k8s.io/node: fake``, the group label,
    ``cluster-autoscaler.kwok.nodegroup/name``, taint ``kwok-provider=true:NoSchedule``) while group pods are
    unschedulable and the group is below max, and deletes group nodes that carried no pod for ``unneeded_s``.
    ``stop()`` deletes everything it made.
    """

    def __init__(self, kube: Kube, *, min_size: int = 0, max_size: int = 2, gpus: int = 8, unneeded_s: float = 3, tick_s: float = 1):
        self.kube, self.min_size, self.max_size, self.gpus = kube, min_size, max_size, gpus
        self.unneeded_s, self.tick_s = unneeded_s, tick_s
        self.suffix = uuid.uuid4().hex[:5]
        self.name = f"aiconf-test-gpu-{self.suffix}"  # the group as the provider names it (label value + suffix)
        self.created: list[str] = []
        self.empty_since: dict[str, float] = {}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    # -- objects --------------------------------------------------------------------------------------------------
    def _template(self) -> dict:
        return {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": "gpu-template", "labels": {GROUP_LABEL: self.name, "nvidia.com/gpu.present": "true"},
                             "annotations": {ca.KWOK_NG_MIN: str(self.min_size), ca.KWOK_NG_MAX: str(self.max_size)}},
                "status": {"allocatable": {"nvidia.com/gpu": str(self.gpus), "cpu": "32", "memory": "256Gi", "pods": "110"}}}

    def _node(self, i: int) -> dict:
        capacity = {"nvidia.com/gpu": str(self.gpus), "cpu": "32", "memory": "256Gi", "pods": "110"}
        name = f"kwok-fake-{self.name}-{i}"
        return {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name,
                             "labels": {GROUP_LABEL: self.name, "nvidia.com/gpu.present": "true", TEST_LABEL: "fake-ca",
                                        "kubernetes.io/hostname": name, "type": "kwok"},
                             "annotations": {"kwok.x-k8s.io/node": "fake", ca.KWOK_NG_NAME: self.name}},
                "spec": {"providerID": f"kwok:{name}", "taints": [{"key": "kwok-provider", "value": "true", "effect": "NoSchedule"}]},
                "status": {"capacity": capacity, "allocatable": capacity}}

    def _configmaps(self, nodes: int) -> list[dict]:
        status = {"time": time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime()), "autoscalerStatus": "Running",
                  "clusterWide": {"health": {"status": "Healthy"}},
                  "nodeGroups": [{"name": self.name, "health": {"status": "Healthy", "cloudProviderTarget": nodes,
                                                                "minSize": self.min_size, "maxSize": self.max_size,
                                                                "nodeCounts": {"registered": {"total": nodes, "ready": nodes}}},
                                  "scaleUp": {"status": "NoActivity"}, "scaleDown": {"status": "NoCandidates"}}]}
        meta = {"namespace": "kube-system", "labels": {TEST_LABEL: "fake-ca"}}
        return [
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kwok-provider-config", **meta},
             "data": {"config": yaml.safe_dump({"apiVersion": "v1alpha1", "readNodesFrom": "configmap",
                                                "nodegroups": {"fromNodeLabelKey": GROUP_LABEL}})}},
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kwok-provider-templates", **meta},
             "data": {"templates": yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [self._template()]})}},
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cluster-autoscaler-status", **meta},
             "data": {"status": yaml.safe_dump(status)}},
        ]

    def _publish(self, nodes: int) -> None:
        for cm in self._configmaps(nodes):
            self.kube.apply(cm, field_manager="aiconf-test-fake-ca")

    # -- behaviour ------------------------------------------------------------------------------------------------
    def group_nodes(self) -> list[dict]:
        return self.kube.list("v1", "Node", label_selector=f"{GROUP_LABEL}={self.name}")

    def _add_node(self) -> None:
        node = self._node(len(self.created))
        self.kube.create(node)
        self.created.append(node["metadata"]["name"])

    def _tick(self) -> None:
        nodes = self.group_nodes()
        pods = [p for p in self.kube.list("v1", "Pod") if not p["metadata"].get("deletionTimestamp")
                and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
        pending = [p for p in pods if (p["spec"].get("nodeSelector") or {}).get(GROUP_LABEL) == self.name
                   and not p["spec"].get("nodeName")
                   and any(c.get("type") == "PodScheduled" and c.get("reason") == "Unschedulable"
                           for c in (p.get("status") or {}).get("conditions") or [])]
        if pending and len(nodes) < self.max_size:
            self._add_node()
        now = time.monotonic()
        busy = {p["spec"].get("nodeName") for p in pods}
        for n in nodes if len(nodes) > self.min_size else []:
            name = n["metadata"]["name"]
            if name in busy:
                self.empty_since.pop(name, None)
            elif now - self.empty_since.setdefault(name, now) >= self.unneeded_s:
                self.kube.delete("v1", "Node", name)
                self.empty_since.pop(name, None)
                break  # one at a time, like the real scale-down
        self._publish(len(self.group_nodes()))

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._tick()
            except Exception as e:  # keep going: the check under test must see an autoscaler, not a crash
                self.errors.append(str(e))
            self._stop.wait(self.tick_s)

    def start(self, *, loop: bool = True) -> FakeKwokAutoscaler:
        for _ in range(self.min_size):
            self._add_node()
        self._publish(self.min_size)
        if loop:
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        for n in self.created:
            self.kube.delete("v1", "Node", n)
        for cm in ("kwok-provider-config", "kwok-provider-templates", "cluster-autoscaler-status"):
            self.kube.delete("v1", "ConfigMap", cm, "kube-system")


@pytest.fixture
def no_real_autoscaler(kube):
    if real_autoscaler(kube):
        pytest.skip("this cluster runs a Cluster Autoscaler: the test double would overwrite its ConfigMaps")


def test_without_autoscaler_the_check_is_not_applicable(kube_sandbox, kube, tmp_path, no_real_autoscaler):
    found = any_autoscaler(kube, kube_sandbox)
    if found:
        pytest.skip(f"this sandbox has a node autoscaler ({'; '.join(found)})")
    result, run_id = run(kube_sandbox, tmp_path)
    assert result.verdict is Verdict.NOT_APPLICABLE, result.reason
    assert result.level == "MUST"
    assert result.not_applicable.reason_code == "no_cluster_autoscaler"
    assert "provisioned statically" in result.not_applicable.justification
    assert leftovers(kube, run_id) == []


def test_active_scale_up_and_down_with_a_kwok_provider_double(kube_sandbox, kube, tmp_path, no_real_autoscaler):
    fake = FakeKwokAutoscaler(kube, min_size=0, max_size=2).start()
    try:
        result, run_id = run(kube_sandbox, tmp_path, cluster_autoscaling_active=True, ca_scale_up_timeout_s=60,
                             ca_scale_down_timeout_s=60, ca_gpu_node_group=fake.name)
    finally:
        fake.stop()
    assert result.verdict is Verdict.PASS, (result.reason, result.error, [(s.id, s.summary) for s in result.subchecks])
    assert result.subcheck("gpu_group_can_grow").summary.startswith("cluster-autoscaler/kwok group")
    assert result.metrics["ca_test_workload"]["gpus_per_pod"] == 8
    new = result.metrics["ca_new_nodes"]
    assert new and all(v["gpus"] == 8 and v["simulated"] for v in new.values())
    assert result.metrics["ca_scale_up_s"] > 0 and result.metrics["ca_scale_down_s"] >= 0
    frame = result.metrics["series"]["nodes_and_pods"]
    assert (tmp_path / frame).exists()
    assert any("simulated" in n for n in result.notes)
    assert fake.errors == []
    assert leftovers(kube, run_id) == []
    assert kube.list("v1", "Node", label_selector=f"{TEST_LABEL}=fake-ca") == []


def test_group_at_max_does_not_pass(kube_sandbox, kube, tmp_path, no_real_autoscaler):
    # One node already in the group and max 1: the autoscaler is present but cannot grow the accelerator group.
    fake = FakeKwokAutoscaler(kube, min_size=1, max_size=1).start(loop=False)
    try:
        result, run_id = run(kube_sandbox, tmp_path, cluster_autoscaling_active=True, ca_gpu_node_group=fake.name)
    finally:
        fake.stop()
    assert result.verdict is Verdict.FAIL
    sub = result.subcheck("gpu_group_can_grow")
    assert sub.verdict is Verdict.FAIL and "current 1 = max 1" in sub.summary
    assert all(result.subcheck(s).verdict is Verdict.UNKNOWN for s in ca.ACTIVE)
    assert leftovers(kube, run_id) == []


KARPENTER_POOL = "aiconf-gpu"


@pytest.fixture
def karpenter_pool(kube):
    pool = kube.get("karpenter.sh/v1", "NodePool", KARPENTER_POOL) if kube.has_kind("karpenter.sh/v1", "NodePool") else None
    if pool is None:
        pytest.skip("the sandbox runs without the karpenter add-on (AICONF_TEST_SANDBOX_ADDONS=...,karpenter)")
    return pool


def test_active_scale_up_and_down_with_karpenter(kube_sandbox, kube, tmp_path, karpenter_pool):
    result, run_id = run(kube_sandbox, tmp_path, cluster_autoscaling_active=True, ca_gpu_node_group=KARPENTER_POOL)
    assert result.verdict is Verdict.PASS, (result.reason, result.error, [(s.id, s.summary) for s in result.subchecks])
    assert result.metrics["node_group"]["source"] == "karpenter"
    new = result.metrics["ca_new_nodes"]
    assert new and all(v["gpus"] > 0 and v["simulated"] for v in new.values())
    assert any("Karpenter's kwok provider" in n for n in result.notes)
    assert leftovers(kube, run_id) == []
    assert not [n for n in kube.list("v1", "Node") if n["metadata"]["name"] in new]


def test_karpenter_pool_at_its_limit_does_not_pass(kube_sandbox, kube, tmp_path, karpenter_pool):
    limits = dict(karpenter_pool["spec"].get("limits") or {})
    in_use = ((karpenter_pool.get("status") or {}).get("resources") or {}).get("nvidia.com/gpu", "0")
    kube.patch("karpenter.sh/v1", "NodePool", KARPENTER_POOL, {"spec": {"limits": {"nvidia.com/gpu": in_use}}})
    try:
        result, run_id = run(kube_sandbox, tmp_path, cluster_autoscaling_active=True, ca_gpu_node_group=KARPENTER_POOL)
    finally:
        kube.patch("karpenter.sh/v1", "NodePool", KARPENTER_POOL, {"spec": {"limits": limits}})
    assert result.verdict is Verdict.FAIL
    sub = result.subcheck("gpu_group_can_grow")
    assert sub.verdict is Verdict.FAIL and f"{KARPENTER_POOL} current" in sub.summary
    assert all(result.subcheck(s).verdict is Verdict.UNKNOWN for s in ca.ACTIVE)
    assert leftovers(kube, run_id) == []
