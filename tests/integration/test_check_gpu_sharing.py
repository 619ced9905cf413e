"""gpu_sharing end to end on the sandbox's real node (fake NVIDIA device plugin: real device nodes and devices-cgroup
isolation, no GPU behind them).

- Positive: a second sandbox whose real node is time-sliced (``RealNodeSpec(gpu_replicas=2)``, the same as
  ``aiconf sandbox up --real-node-gpu-replicas 2``): 2 GPUs advertised as 4 units; 3 pods of one unit each must all
  run and two of them must see the same GPU.
- Broken on purpose, all must not PASS:
  * a MutatingAdmissionPolicy makes every pod of the check take two units: the pod beyond the 4 units stays Pending
    (FAIL);
  * GFD-style labels claim time-slicing while the node advertises one unit per GPU (FAIL, nothing scheduled);
  * labels claim 1 GPU x 2 replicas on the unshared node, whose plugin hands out 2 whole GPUs: the pods see two
    distinct GPUs (FAIL);
  * no sharing anywhere: NOT_APPLICABLE with a drafted justification, nothing created.

The label cases patch the session sandbox's real node and put the labels back afterwards. With
``AICONF_TEST_KUBECONFIG`` the shared sandbox is that cluster when its real node is time-sliced (else those tests
skip), and the whole-GPU case needs an unshared real node (it skips on a shared one).
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from aiconf.execute import run_check
from aiconf.kube import Kube
from aiconf.model import Verdict
from aiconf.params import load_parameters
from aiconf.sandbox import realnode

pytestmark = pytest.mark.sandbox

ADMISSION = "admissionregistration.k8s.io/v1"
TWO_UNITS = "aiconf-itest-two-units-per-pod"
#: The labels the broken cases rewrite (and restore).
LABELS = (
    "nvidia.com/gpu.count",
    "nvidia.com/gpu.replicas",
    "nvidia.com/gpu.sharing-strategy",
    "nvidia.com/gpu.product",
)


def real_node_of(kube: Kube) -> dict:
    nodes = kube.list("v1", "Node", label_selector=f"{realnode.REAL_NODE_LABEL}=true")
    if not nodes:
        pytest.skip("the cluster has no real node (AICONF_TEST_REAL_NODE=0?): kwok nodes run no probes")
    return nodes[0]


def is_time_sliced(node: dict) -> bool:
    return node["metadata"]["labels"].get("nvidia.com/gpu.sharing-strategy") == "time-slicing"


def subs(result) -> dict:
    return {s.id: s for s in result.subchecks}


def explain(result) -> list:
    return [result.reason, [(s.id, str(s.verdict), s.summary) for s in result.subchecks]]


def run(kubeconfig: Path, tmp_path: Path, **overrides):
    rid = f"itest-gs-{uuid.uuid4().hex[:6]}"
    params = load_parameters("sandbox", {"kubeconfig": str(kubeconfig), **overrides})
    result = run_check("gpu_sharing", params, run_id=rid, run_dir=tmp_path)
    kube = Kube.connect(str(kubeconfig))
    assert kube.list("v1", "Namespace", label_selector=f"aiconf.io/run-id={rid}") == []  # cleaned up
    return result


@pytest.fixture(scope="module")
def shared_kubeconfig(kube_sandbox, tmp_path_factory) -> Iterator[Path]:
    """A sandbox whose real node's GPUs are time-sliced (2 GPUs x 2 replicas), started for this module."""
    if kube_sandbox.sandbox is None:
        if not is_time_sliced(real_node_of(Kube.connect(str(kube_sandbox.kubeconfig)))):
            pytest.skip(
                "AICONF_TEST_KUBECONFIG's real node is not time-sliced (aiconf sandbox up --real-node-gpu-replicas 2)"
            )
        yield kube_sandbox.kubeconfig
        return
    from aiconf.sandbox.cluster import Sandbox

    sb = Sandbox(tmp_path_factory.mktemp("shared") / "state", progress=lambda m: print(m, file=sys.stderr, flush=True))
    sb.up(gpu_nodes=1, gpus_per_node=8, cpu_nodes=0, real_node=realnode.RealNodeSpec(gpus=2, gpu_replicas=2))
    try:
        yield sb.kubeconfig
    finally:
        sb.down()


@pytest.fixture
def relabel(kube_sandbox) -> Iterator:
    """Rewrite sharing labels of the session sandbox's real node; the originals are put back afterwards."""
    kube = Kube.connect(str(kube_sandbox.kubeconfig))
    node = real_node_of(kube)
    name = node["metadata"]["name"]
    original = {k: node["metadata"]["labels"].get(k) for k in LABELS}

    def apply(**labels: str) -> dict:
        kube.patch("v1", "Node", name, {"metadata": {"labels": labels}})
        return node

    yield apply
    kube.patch("v1", "Node", name, {"metadata": {"labels": original}})


def test_time_sliced_node_passes_with_two_pods_on_one_gpu(shared_kubeconfig, tmp_path):
    result = run(shared_kubeconfig, tmp_path)
    assert result.verdict is Verdict.PASS, explain(result)
    plan = result.metrics["behaviour_plan"]
    assert (plan["physical"], plan["units"], plan["pods"]) == (2, 4, 3)
    tally = result.metrics["tally"]
    assert sum(tally.values()) == 3 and max(tally.values()) >= 2 and len(tally) <= 2
    assert all(u.startswith("GPU-") for u in tally)
    assert "evidence/gpu_sharing/tally.csv" in result.evidence
    assert result.duration_s < 60, result.duration_s


def two_units_policy() -> list[dict]:
    """Every pod created in the check's namespaces asks for two units: a plugin that never hands out one replica."""
    expr = (
        "Object{spec: Object.spec{containers: object.spec.containers.map(c, Object.spec.containers{name: c.name, "
        "resources: Object.spec.containers.resources{limits: {'nvidia.com/gpu': '2'}, "
        "requests: {'nvidia.com/gpu': '2'}}})}}"
    )
    rule = {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}
    selector = {"matchLabels": {"aiconf.io/requirement": "gpu_sharing"}}
    return [
        {
            "apiVersion": ADMISSION,
            "kind": "MutatingAdmissionPolicy",
            "metadata": {"name": TWO_UNITS},
            "spec": {
                "matchConstraints": {"resourceRules": [rule], "namespaceSelector": selector},
                "failurePolicy": "Fail",
                "reinvocationPolicy": "Never",
                "mutations": [{"patchType": "ApplyConfiguration", "applyConfiguration": {"expression": expr}}],
            },
        },
        {
            "apiVersion": ADMISSION,
            "kind": "MutatingAdmissionPolicyBinding",
            "metadata": {"name": TWO_UNITS},
            "spec": {"policyName": TWO_UNITS},
        },
    ]


def _units_after_admission(kube: Kube, ns: str) -> str | None:
    """The units a one-unit pod asks for once admitted in ``ns`` (server-side dry run)."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "units-probe", "namespace": ns},
        "spec": {"containers": [{"name": "c", "image": "x", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]},
    }
    out = kube.create(pod, dry_run=True)
    return out["spec"]["containers"][0]["resources"]["limits"].get("nvidia.com/gpu")


def test_pods_beyond_the_units_stay_pending_and_fail(shared_kubeconfig, tmp_path):
    kube = Kube.connect(str(shared_kubeconfig))
    if "v1" not in kube.served_versions("admissionregistration.k8s.io"):
        pytest.skip("no admissionregistration.k8s.io/v1")
    if not any(r.get("kind") == "MutatingAdmissionPolicy" for r in kube.api_resources(ADMISSION)):
        pytest.skip("MutatingAdmissionPolicy is not served: the two-units plugin cannot be simulated")
    probe_ns = f"aiconf-itest-two-units-{uuid.uuid4().hex[:6]}"
    kube.create(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": probe_ns, "labels": {"aiconf.io/requirement": "gpu_sharing"}},
        }
    )
    for doc in two_units_policy():
        kube.create(doc)
    try:
        # Admission applies a new policy after a moment: a server-side dry run shows when it does.
        kube.sample(
            lambda: _units_after_admission(kube, probe_ns),
            0.5,
            lambda units: units == "2",
            60,
            "the two-units policy to be active",
        )
        result = run(shared_kubeconfig, tmp_path)
    finally:
        kube.delete(ADMISSION, "MutatingAdmissionPolicyBinding", TWO_UNITS)
        kube.delete(ADMISSION, "MutatingAdmissionPolicy", TWO_UNITS)
        kube.delete_namespace(probe_ns, 60)
    assert result.verdict is Verdict.FAIL, explain(result)
    running = subs(result)["shared_pods_running"]
    assert running.verdict is Verdict.FAIL and "Insufficient nvidia.com/gpu" in running.summary, running.summary
    assert running.summary.startswith("1 of 3 pods not Running"), running.summary  # two pods x two units fit in 4
    assert result.duration_s < 60, result.duration_s


def test_no_sharing_is_not_applicable_with_a_justification(kube_sandbox, relabel, tmp_path):
    node = relabel(
        **{
            "nvidia.com/gpu.replicas": "1",
            "nvidia.com/gpu.sharing-strategy": "none",
            "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
        }
    )
    units = node["status"]["allocatable"]["nvidia.com/gpu"]
    relabel(**{"nvidia.com/gpu.count": units})
    result = run(kube_sandbox.kubeconfig, tmp_path)
    assert result.verdict is Verdict.NOT_APPLICABLE, explain(result)
    assert result.not_applicable.reason_code == "no_sharing"
    assert "allocated whole" in result.not_applicable.justification
    assert result.duration_s < 30, result.duration_s


def test_sharing_labels_without_extra_units_fail(kube_sandbox, relabel, tmp_path):
    node = relabel(**{"nvidia.com/gpu.replicas": "2", "nvidia.com/gpu.sharing-strategy": "time-slicing"})
    units = node["status"]["allocatable"]["nvidia.com/gpu"]
    relabel(**{"nvidia.com/gpu.count": units})  # one unit per GPU, whatever the plugin advertises
    result = run(kube_sandbox.kubeconfig, tmp_path)
    assert result.verdict is Verdict.FAIL, explain(result)
    advertised = subs(result)["sharing_advertised"]
    assert advertised.verdict is Verdict.FAIL and node["metadata"]["name"] in advertised.summary
    assert result.duration_s < 30, result.duration_s


def test_whole_gpus_behind_replica_labels_fail(kube_sandbox, relabel, tmp_path):
    kube = Kube.connect(str(kube_sandbox.kubeconfig))
    if is_time_sliced(real_node_of(kube)):
        pytest.skip("the session sandbox's real node is time-sliced: its units really are replicas")
    node = relabel(
        **{
            "nvidia.com/gpu.count": "1",
            "nvidia.com/gpu.replicas": "2",
            "nvidia.com/gpu.sharing-strategy": "time-slicing",
        }
    )
    assert node["status"]["allocatable"]["nvidia.com/gpu"] == "2"
    result = run(kube_sandbox.kubeconfig, tmp_path)
    assert result.verdict is Verdict.FAIL, explain(result)
    s = subs(result)
    assert s["shared_pods_running"].verdict is Verdict.PASS  # 2 units, 2 pods: they run...
    assert s["units_map_to_physical"].verdict is Verdict.FAIL  # ...on two different GPUs
    assert "2 distinct GPUs seen but the node declares 1" in s["units_map_to_physical"].summary
    assert s["pods_share_physical_gpu"].verdict is Verdict.FAIL
    assert result.duration_s < 60, result.duration_s
