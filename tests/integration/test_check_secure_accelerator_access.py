"""secure_accelerator_access end to end on the sandbox's real node (fake NVIDIA device plugin: real device nodes,
real devices-cgroup isolation, no GPU behind them), and against a leaky runtime.

The leak is simulated with MutatingAdmissionPolicies, so the check itself is unchanged: pods created in the check's
namespaces get every GPU device node of the node as hostPath char devices at ``/dev/nvidia<N>`` and a privileged
container (the devices cgroup then lets them through), as a runtime that hands every container every GPU would; a
second policy relabels the check's namespaces Pod Security "privileged" so admission lets such pods in (otherwise
the run would be an ERROR, not a verdict). A variant mounts the device nodes without privilege: visible, not
openable. T1 and T3 must FAIL in the first, T1 in the second. The policies are removed after each test.

Skipped when the cluster has no real node (kwok nodes run no probes: every run there is UNKNOWN by design).
"""

from __future__ import annotations

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

ADMISSION = "admissionregistration.k8s.io/v1"
TARGET = "aiconf.io/requirement"
LEAK = "aiconf-itest-leaky-runtime"


@pytest.fixture(scope="module")
def kube(kube_sandbox) -> Kube:
    k = Kube.connect(str(kube_sandbox.kubeconfig))
    if not k.list("v1", "Node", label_selector=f"{realnode.REAL_NODE_LABEL}=true"):
        pytest.skip("the cluster has no real node (AICONF_TEST_REAL_NODE=0?): kwok nodes cannot run probes")
    return k


@pytest.fixture(scope="module")
def real_node(kube) -> dict:
    return kube.list("v1", "Node", label_selector=f"{realnode.REAL_NODE_LABEL}=true")[0]


def params(kube_sandbox, **overrides):
    return load_parameters("sandbox", {"kubeconfig": str(kube_sandbox.kubeconfig), **overrides})


def run_id() -> str:
    return f"itest-sa-{uuid.uuid4().hex[:6]}"


def wait_for(what: str, probe, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout_s:g}s waiting for {what}")


def assert_cleaned_up(kube: Kube, rid: str) -> None:
    assert kube.list("v1", "Namespace", label_selector=f"aiconf.io/run-id={rid}") == []


def test_isolation_passes_on_the_real_node(kube_sandbox, kube, real_node, tmp_path):
    rid = run_id()
    result = run_check("secure_accelerator_access", params(kube_sandbox), run_id=rid, run_dir=tmp_path)
    assert result.verdict is Verdict.PASS, (result.reason, [(s.id, s.verdict, s.summary) for s in result.subchecks])
    subs = {s.id: s for s in result.subchecks}
    assert "NVIDIA_VISIBLE_DEVICES=all" in subs["no_request_no_device"].summary
    t3 = subs["distinct_devices_no_cross_access"]
    assert "(same node)" in t3.summary and "EPERM" in t3.summary
    a, b = t3.details["uuids"].values()
    assert len(a) == len(b) == 1 and a != b
    assert subs["visibility_matrix_diagonal"].verdict is Verdict.PASS
    assert result.metrics["visibility_matrix"]["is_diagonal"]
    dra = subs["dra_isolation"]
    assert dra.verdict is Verdict.NOT_APPLICABLE
    assert "kwok" in dra.summary or "does not exist" in dra.summary or "not served" in dra.summary
    assert subs["accelerator_nodes"].details["chosen"] == real_node["metadata"]["name"]
    for name in ("isolation.yaml", "probes.csv", "probes/t1-env-all.json", "probes/t3-pod-b.json"):
        assert f"evidence/secure_accelerator_access/{name}" in result.evidence, name
    assert_cleaned_up(kube, rid)


def gpu_dev_dir(kube: Kube) -> str:
    """Where the fake device plugin keeps the GPU device nodes (the simulated DCGM exporter mounts its folder)."""
    ds = kube.get("apps/v1", "DaemonSet", realnode.DCGM_NAME, realnode.DCGM_NAMESPACE)
    if ds is None:
        pytest.skip("no simulated DCGM exporter: the fake device plugin's folder is not known")
    vol = next(v for v in ds["spec"]["template"]["spec"]["volumes"] if v.get("hostPath"))
    return vol["hostPath"]["path"] + "/dev"


def leak_policies(dev_dir: str, gpus: int, privileged: bool) -> list[dict]:
    idx = "[" + ", ".join(str(i) for i in range(gpus)) + "]"
    sc = "privileged: true, allowPrivilegeEscalation: true" if privileged else "readOnlyRootFilesystem: true"
    pod_expr = (
        "Object{spec: Object.spec{"
        f"volumes: {idx}.map(i, Object.spec.volumes{{name: 'leak-nvidia' + string(i), "
        f"hostPath: Object.spec.volumes.hostPath{{path: '{dev_dir}/nvidia' + string(i), type: 'CharDevice'}}}}), "
        "containers: object.spec.containers.map(c, Object.spec.containers{name: c.name, "
        f"securityContext: Object.spec.containers.securityContext{{{sc}}}, "
        f"volumeMounts: {idx}.map(i, Object.spec.containers.volumeMounts{{name: 'leak-nvidia' + string(i), "
        "mountPath: '/dev/nvidia' + string(i)})})}}"
    )
    ns_expr = "Object{metadata: Object.metadata{labels: {'pod-security.kubernetes.io/enforce': 'privileged'}}}"
    target = (
        f"has(object.metadata.labels) && '{TARGET}' in object.metadata.labels && "
        f"object.metadata.labels['{TARGET}'] == 'secure_accelerator_access'"
    )
    docs = []
    for suffix, resource, expr, cond in (("ns", "namespaces", ns_expr, target), ("pods", "pods", pod_expr, "true")):
        name = f"{LEAK}-{suffix}"
        rule = {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": [resource]}
        constraints: dict = {"resourceRules": [rule]}
        if resource == "pods":
            constraints["namespaceSelector"] = {"matchLabels": {TARGET: "secure_accelerator_access"}}
        docs.append(
            {
                "apiVersion": ADMISSION,
                "kind": "MutatingAdmissionPolicy",
                "metadata": {"name": name},
                "spec": {
                    "matchConstraints": constraints,
                    "failurePolicy": "Fail",
                    "reinvocationPolicy": "Never",
                    "matchConditions": [{"name": "target", "expression": cond}],
                    "mutations": [{"patchType": "ApplyConfiguration", "applyConfiguration": {"expression": expr}}],
                },
            }
        )
        docs.append(
            {
                "apiVersion": ADMISSION,
                "kind": "MutatingAdmissionPolicyBinding",
                "metadata": {"name": name},
                "spec": {"policyName": name},
            }
        )
    return docs


def _leaks(kube: Kube, ns: str, node: str) -> bool:
    """Does a pod created now in ``ns`` come out of admission with the leak? (server-side dry run)"""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "leak-probe", "namespace": ns},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}]},
    }
    try:
        out = kube.create(pod, dry_run=True)
    except Exception:  # noqa: BLE001 - PSA may still refuse it while the namespace policy is not active
        return False
    return any(v["name"].startswith("leak-nvidia") for v in out["spec"].get("volumes") or [])


@pytest.fixture
def leaky_runtime(kube, real_node) -> Iterator[callable]:
    """Install the leak (``install(privileged)``), wait until admission applies it; remove it afterwards."""
    if not any(r.get("kind") == "MutatingAdmissionPolicy" for r in kube.api_resources(ADMISSION)):
        pytest.skip("MutatingAdmissionPolicy is not served: the leaky runtime cannot be simulated")
    node_name = real_node["metadata"]["name"]
    gpus = int(real_node["status"]["allocatable"]["nvidia.com/gpu"])
    made: list[dict] = []
    probe_ns = f"aiconf-itest-leak-{uuid.uuid4().hex[:6]}"

    def install(privileged: bool) -> None:
        for doc in leak_policies(gpu_dev_dir(kube), gpus, privileged):
            made.append(kube.create(doc))
        kube.create(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": probe_ns, "labels": {TARGET: "secure_accelerator_access"}},
            }
        )
        wait_for("the leak policies to be active", lambda: _leaks(kube, probe_ns, node_name))

    yield install
    for doc in reversed(made):
        kube.delete(ADMISSION, doc["kind"], doc["metadata"]["name"])
    kube.delete_namespace(probe_ns, 60)


def test_leaky_runtime_fails_t1_and_t3(kube_sandbox, kube, leaky_runtime, tmp_path):
    leaky_runtime(True)
    rid = run_id()
    result = run_check("secure_accelerator_access", params(kube_sandbox), run_id=rid, run_dir=tmp_path)
    summary = [(s.id, s.verdict, s.summary) for s in result.subchecks]
    assert result.verdict is Verdict.FAIL, (result.reason, summary)
    assert result.subcheck("no_request_no_device").verdict is Verdict.FAIL, summary
    assert result.subcheck("distinct_devices_no_cross_access").verdict is Verdict.FAIL, summary
    assert result.subcheck("visibility_matrix_diagonal").verdict is Verdict.FAIL
    assert "NVIDIA_VISIBLE_DEVICES" not in result.subcheck("no_request_no_device").summary  # not the env: the mounts
    assert not result.metrics["visibility_matrix"]["is_diagonal"]
    assert_cleaned_up(kube, rid)


def test_device_nodes_visible_without_privilege_fail_t1(kube_sandbox, kube, leaky_runtime, tmp_path):
    leaky_runtime(False)
    result = run_check("secure_accelerator_access", params(kube_sandbox), run_id=run_id(), run_dir=tmp_path)
    summary = [(s.id, s.verdict, s.summary) for s in result.subchecks]
    assert result.verdict is Verdict.FAIL, (result.reason, summary)
    t1 = result.subcheck("no_request_no_device")
    assert t1.verdict is Verdict.FAIL and "device nodes" in t1.observed, summary
