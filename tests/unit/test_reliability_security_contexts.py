"""Every pod template a check builds runs with a restrictive security context, and every namespace a check creates is
labelled for Pod Security admission (issue 9, "workloads the toolkit creates").

Restrictive = what the Pod Security "restricted" level demands (runAsNonRoot, allowPrivilegeEscalation false,
capabilities drop ALL, seccomp RuntimeDefault) plus readOnlyRootFilesystem where the workload allows it. Templates
that cannot have one of these are listed in ``EXEMPT`` with the reason, which must also be a comment in the check.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from aiconf.checks import (
    accelerator_metrics,
    advanced_inference_ingress,
    ai_inference,
    ai_service_metrics,
    cluster_autoscaling,
    dra_support,
    driver_runtime_management,
    gang_scheduling,
    gpu_sharing,
    high_performance_networking,
    pod_autoscaling,
    robust_controller,
    virtualized_accelerator,
)
from aiconf.context import CheckContext
from aiconf.params import load_parameters

CHECKS_DIR = Path(cluster_autoscaling.__file__).parent

#: (builder function, setting) -> reason it may not have it. The reason must appear in the check's source as well.
EXEMPT = {
    ("raycluster", "readOnlyRootFilesystem"): "Ray writes its session directory",
}


def _params(profile: str | None):
    return load_parameters(profile, {"checklist_version": "1.36"})


def templates(profile: str | None) -> dict[str, list[dict[str, Any]]]:
    """builder name -> every pod spec in what it builds, for each variant the checks use."""
    p = _params(profile)
    gpu_plan = gang_scheduling.GangPlan(2, p.gpu_resource_name, "1", True, "free GPUs")
    cpu_plan = gang_scheduling.GangPlan(2, "cpu", "100m", False, "no GPUs")
    group = cluster_autoscaling.NodeGroup("karpenter", "gpu", 0, 4, 0, True, 8, {"pool": "gpu"})
    gpu_node = {"metadata": {"name": "gpu-0", "labels": {"nvidia.com/gpu.count": "2"}},
                "spec": {"taints": [{"key": p.gpu_taint_key, "value": "true", "effect": "NoSchedule"}]},
                "status": {"allocatable": {p.gpu_resource_name: "2"}, "conditions": [{"type": "Ready", "status": "True"}]}}
    accel = accelerator_metrics.accelerator_nodes([gpu_node], p.gpu_resource_name)[0]
    shared = gpu_sharing.SharingNode("gpu-0", False, True, p.gpu_resource_name, 4, 2, 2, "time-slicing", "H100-SHARED")
    plan = ai_inference._plan(p, "http://127.0.0.1:8000", "")
    built = {
        "gang_job": [gang_scheduling.gang_job("g", "ns", "q", 2, plan, p, "pos") for plan in (gpu_plan, cpu_plan)],
        "claim_pod": [dra_support.claim_pod("c", "ns", "tpl", p)],
        "workload": [pod_autoscaling.workload("w", "ns", p, gpu=gpu, exporter=exp)
                     for gpu in (True, False) for exp in (True, False)],
        "burst_deployment": [cluster_autoscaling.burst_deployment("b", "ns", 2, 1, group, p)],
        "accelerator_metrics.load_pod": [accelerator_metrics.load_pod("l", "ns", accel, p, simulated=sim, configmap="cm")
                     for sim in (True, False)],
        "ai_inference.backend_pod": [ai_inference.backend_pod("v1", "ns", p, gpu_node)],
        "ai_inference.client_pod": [ai_inference.client_pod("ns", plan, p, gpu_node)],
        "advanced_inference_ingress.pool_pod": [advanced_inference_ingress.pool_pod(0, 10, "ns", p, gpu_node)],
        "advanced_inference_ingress.epp_objects": [advanced_inference_ingress.epp_objects("pool", "ns", "img", p, gpu_node)],
        "ai_service_metrics.inference_deployment": [ai_service_metrics.inference_deployment("ns", p, annotate=a) for a in (True, False)],
        "driver_runtime_management.probe_pod": [driver_runtime_management.probe_pod("d", "ns", accel, p, "cm")],
        "virtualized_accelerator.claim_probe_pod": [virtualized_accelerator.claim_probe_pod(
            driver_runtime_management.probe_pod("v", "ns", accel, p, "cm"), "vgpu", p.gpu_resource_name)],
        "gpu_sharing.probe_pod": [gpu_sharing.probe_pod("s", "ns", shared, p, configmap="cm", hold_s=5)],
        "high_performance_networking.probe_pod": [high_performance_networking.probe_pod("n", "ns", p, template="nic"),
                          high_performance_networking.probe_pod("n", "ns", p, nad="net1", avoid_nodes=["a"])],
        "raycluster": [robust_controller.raycluster("r", "ns", image="img"),
                       robust_controller.kuberay_profile(p).valid_cr,
                       robust_controller.kuberay_profile(p).invalid_cr],
    }
    return {name: [spec for obj in objs for spec in pod_specs(obj)] for name, objs in built.items()}


def pod_specs(obj: Any) -> list[dict[str, Any]]:
    """Every dict that holds a ``containers`` list, anywhere in ``obj`` (Pod, Job/Deployment templates, CRs)."""
    found = []
    if isinstance(obj, dict):
        if isinstance(obj.get("containers"), list):
            found.append(obj)
        for value in obj.values():
            found += pod_specs(value)
    elif isinstance(obj, list):
        for value in obj:
            found += pod_specs(value)
    return found


def _effective(spec: dict[str, Any], container: dict[str, Any], key: str) -> Any:
    """A container setting, falling back to the pod's (as the kubelet does for the fields both levels have)."""
    c = container.get("securityContext") or {}
    if key in c:
        return c[key]
    return (spec.get("securityContext") or {}).get(key)


def violations(builder: str, spec: dict[str, Any]) -> list[str]:
    out = []
    for c in spec["containers"] + spec.get("initContainers", []):
        sc = c.get("securityContext") or {}
        checks = {
            "runAsNonRoot": _effective(spec, c, "runAsNonRoot") is True,
            "runAsUser": _effective(spec, c, "runAsUser") not in (0, None),  # a numeric, non-zero uid
            "allowPrivilegeEscalation": sc.get("allowPrivilegeEscalation") is False,
            "capabilities": (sc.get("capabilities") or {}).get("drop") == ["ALL"]
            and not (sc.get("capabilities") or {}).get("add"),
            "seccompProfile": (_effective(spec, c, "seccompProfile") or {}).get("type") == "RuntimeDefault",
            "readOnlyRootFilesystem": sc.get("readOnlyRootFilesystem") is True,
            "privileged": not sc.get("privileged"),
        }
        out += [f"{builder}/{c['name']}: {k}" for k, ok in checks.items() if not ok and (builder, k) not in EXEMPT]
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key):
            out.append(f"{builder}: {key}")
    for v in spec.get("volumes", []):
        if "hostPath" in v:
            out.append(f"{builder}: hostPath volume {v['name']}")
    return out


@pytest.mark.parametrize("profile", [None, "sandbox", "nvidia-device-plugin", "nvidia-dra"])
def test_every_pod_template_is_restricted(profile):
    problems = []
    for builder, specs in templates(profile).items():
        assert specs, f"{builder} built no pod spec"
        for spec in specs:
            problems += violations(builder, spec)
    assert problems == []


def test_exemptions_are_explained_in_the_check():
    sources = {p.stem: p.read_text() for p in CHECKS_DIR.glob("*.py")}
    for (builder, setting), reason in EXEMPT.items():
        module = next(m for m, src in sources.items() if f"def {builder}(" in src)
        assert reason in sources[module], f"{module}.{builder} must say why it has no {setting}"


def _container_literals(tree: ast.AST) -> list[tuple[str, ast.Dict]]:
    """(enclosing function, dict literal) for every container literal (a dict with "name" and "image" keys)."""
    out = []
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef):
            for node in ast.walk(fn):
                keys = {k.value for k in getattr(node, "keys", []) if isinstance(k, ast.Constant)}
                if isinstance(node, ast.Dict) and {"name", "image"} <= keys:
                    out.append((fn.name, node))
    return out


def test_every_pod_template_in_the_checks_is_inspected():
    """The builders above cover every container literal of their modules. Check modules not (yet) in ``templates``
    get a weaker, static look: each container literal must set a securityContext. To inspect one fully, add its
    builder to ``templates`` (and any setting it cannot have to ``EXEMPT``, with the reason as a comment in the check).
    """
    inspected = {"advanced_inference_ingress", "cluster_autoscaling", "dra_support", "gang_scheduling", "pod_autoscaling", "robust_controller",
                 "accelerator_metrics", "ai_inference", "ai_service_metrics", "driver_runtime_management",
                 "gpu_sharing", "high_performance_networking", "virtualized_accelerator"}
    known = set(templates(None))
    for path in sorted(CHECKS_DIR.glob("*.py")):
        literals = _container_literals(ast.parse(path.read_text()))
        if path.stem in inspected:
            # Nested helpers (raycluster's template()) count as their enclosing builder.
            owners = {"raycluster" if fn == "template" else fn for fn, _ in literals}
            owners = {fn for fn in owners if fn not in known and f"{path.stem}.{fn}" not in known}
            assert not owners, f"{path.stem}: pod templates not inspected: {sorted(owners)}"
        else:
            for fn, node in literals:
                keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
                assert "securityContext" in keys, f"{path.stem}.{fn}: a container without a securityContext"


class _FakeKube:
    def __init__(self):
        self.created = []

    def create(self, obj, **kw):
        self.created.append(obj)
        return obj


def test_check_namespaces_are_labelled_for_pod_security(tmp_path):
    kube = _FakeKube()
    ctx = CheckContext("gang_scheduling", load_parameters(), kube, run_id="20260101-000000-abcdef", run_dir=tmp_path,
                       checklist_version="1.36", level="MUST")
    ctx.namespace()
    labels = kube.created[0]["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "baseline"
    assert labels["pod-security.kubernetes.io/warn"] == "restricted"
    assert labels["aiconf.io/run-id"] == "20260101-000000-abcdef"
    assert labels["app.kubernetes.io/managed-by"] == "aiconf"
    ctx._cleanup.pop_all()  # nothing to delete in a fake cluster
