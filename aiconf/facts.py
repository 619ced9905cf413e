"""Read-only cluster facts: the fingerprint in ``run.json`` and the tables of the preflight notebook and
``aiconf plan``. Nothing here creates or changes anything.
"""

from __future__ import annotations

from typing import Any

from aiconf.kube import Kube, condition
from aiconf.params import Params

#: API groups whose presence identifies a component the checks can use.
COMPONENT_GROUPS: dict[str, str] = {
    "kueue.x-k8s.io": "Kueue (gang scheduling / quota)",
    "scheduling.volcano.sh": "Volcano (gang scheduling)",
    "scheduling.run.ai": "KAI scheduler",
    "scheduling.x-k8s.io": "coscheduling PodGroups (scheduler-plugins)",
    "gateway.networking.k8s.io": "Gateway API",
    "inference.networking.k8s.io": "Gateway API Inference Extension",
    "inference.networking.x-k8s.io": "Gateway API Inference Extension (x-k8s)",
    "monitoring.coreos.com": "Prometheus Operator",
    "ray.io": "KubeRay",
    "kubeflow.org": "Kubeflow training operator",
    "trainer.kubeflow.org": "Kubeflow Trainer",
    "serving.kserve.io": "KServe",
    "karpenter.sh": "Karpenter",
    "nvidia.com": "NVIDIA GPU Operator",
    "resource.k8s.io": "Dynamic Resource Allocation",
    "custom.metrics.k8s.io": "custom metrics API",
    "external.metrics.k8s.io": "external metrics API",
    "metrics.k8s.io": "resource metrics API",
    "k8s.cni.cncf.io": "Multus",
    "leaderworkerset.x-k8s.io": "LeaderWorkerSet",
}


def is_simulated(node: dict[str, Any]) -> bool:
    """kwok-managed nodes run no processes: their pods are simulated."""
    return (node.get("metadata", {}).get("annotations") or {}).get("kwok.x-k8s.io/node") == "fake"


def nodes(kube: Kube, params: Params) -> list[dict[str, Any]]:
    rows = []
    for n in kube.list("v1", "Node"):
        alloc = (n.get("status") or {}).get("allocatable") or {}
        labels = n["metadata"].get("labels") or {}
        rows.append(
            {
                "name": n["metadata"]["name"],
                "ready": condition(n, "Ready") == "True",
                "gpu_allocatable": int(alloc.get(params.gpu_resource_name, 0) or 0),
                "gpu_product": labels.get("nvidia.com/gpu.product", ""),
                "cpu": alloc.get("cpu", ""),
                "memory": alloc.get("memory", ""),
                "kubelet": ((n.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion", ""),
                "runtime": ((n.get("status") or {}).get("nodeInfo") or {}).get("containerRuntimeVersion", ""),
                "simulated": is_simulated(n),
                "taints": ",".join(f"{t['key']}:{t.get('effect', '')}" for t in (n.get("spec") or {}).get("taints") or []),
            }
        )
    return rows


def api_groups(kube: Kube) -> dict[str, list[str]]:
    groups = {}
    for g in kube.raw("GET", "/apis").get("groups", []):
        groups[g["name"]] = [v["version"] for v in g.get("versions", [])]
    return groups


def components(groups: dict[str, list[str]]) -> list[dict[str, str]]:
    return [
        {"component": label, "api group": g, "versions": ", ".join(groups[g])}
        for g, label in COMPONENT_GROUPS.items()
        if g in groups
    ]


def accelerators(kube: Kube, node_rows: list[dict[str, Any]], params: Params) -> dict[str, Any]:
    out: dict[str, Any] = {params.gpu_resource_name: sum(r["gpu_allocatable"] for r in node_rows)}
    try:
        slices = kube.list("resource.k8s.io/v1", "ResourceSlice") if kube.has_kind("resource.k8s.io/v1", "ResourceSlice") else []
    except Exception:
        slices = []
    for s in slices:
        driver = (s.get("spec") or {}).get("driver", "?")
        out[f"dra:{driver}"] = out.get(f"dra:{driver}", 0) + len((s.get("spec") or {}).get("devices") or [])
    return out


def fingerprint(kube: Kube, params: Params) -> dict[str, Any]:
    """What ``run.json`` records about the cluster (redaction of names happens when writing, if enabled)."""
    version = kube.version()
    node_rows = nodes(kube, params)
    return {
        "server_version": version.get("gitVersion", ""),
        "platform": version.get("platform", ""),
        "nodes": [
            {k: r[k] for k in ("name", "ready", "gpu_allocatable", "gpu_product", "simulated", "kubelet", "runtime")}
            for r in node_rows
        ],
        "accelerators": accelerators(kube, node_rows, params),
        "components": [c["component"] for c in components(api_groups(kube))],
    }
