"""Evidence capture: the objects a check made (with their final status), events and pod logs, as files an auditor
can open. Secrets are never written: Secret objects are listed by name only, and data fields are dropped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from aiconf.context import CheckContext

#: Namespaced kinds dumped from a check's namespace (apiVersion, kind). Missing APIs are skipped.
NAMESPACED_KINDS: tuple[tuple[str, str], ...] = (
    ("v1", "Pod"),
    ("v1", "Service"),
    ("v1", "ConfigMap"),
    ("apps/v1", "Deployment"),
    ("batch/v1", "Job"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("resource.k8s.io/v1", "ResourceClaim"),
    ("resource.k8s.io/v1", "ResourceClaimTemplate"),
    ("kueue.x-k8s.io/v1beta2", "Workload"),
    ("kueue.x-k8s.io/v1beta2", "LocalQueue"),
    ("ray.io/v1", "RayCluster"),
    ("gateway.networking.k8s.io/v1", "Gateway"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
)


def strip_noise(obj: dict[str, Any]) -> dict[str, Any]:
    """Drop managedFields and last-applied annotations (long, not evidence) and any Secret data."""
    obj = dict(obj)
    meta = dict(obj.get("metadata") or {})
    meta.pop("managedFields", None)
    ann = dict(meta.get("annotations") or {})
    ann.pop("kubectl.kubernetes.io/last-applied-configuration", None)
    if ann:
        meta["annotations"] = ann
    else:
        meta.pop("annotations", None)
    obj["metadata"] = meta
    if obj.get("kind") == "Secret":
        obj.pop("data", None)
        obj.pop("stringData", None)
    return obj


def dump_objects(objs: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all([strip_noise(o) for o in objs], sort_keys=False, default_flow_style=False)


def capture_namespace(ctx: CheckContext, namespace: str) -> None:
    kube = ctx.kube
    objects: list[dict[str, Any]] = []
    for api_version, kind in NAMESPACED_KINDS:
        try:
            if not kube.has_kind(api_version, kind):
                continue
            for o in kube.list(api_version, kind, namespace):
                o.setdefault("apiVersion", api_version)
                o.setdefault("kind", kind)
                objects.append(o)
        except Exception as e:  # evidence is best effort; the failure itself is noted
            ctx.note(f"evidence: could not list {kind} in {namespace}: {e}")
    if objects:
        ctx.save_evidence(f"{namespace}/objects.yaml", dump_objects(objects))
    events = kube.events(namespace)
    if events:
        lines = []
        for e in sorted(events, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or ""):
            involved = e.get("involvedObject") or {}
            lines.append(
                f"{e.get('lastTimestamp') or e.get('eventTime') or ''} {e.get('type', '')} {e.get('reason', '')} "
                f"{involved.get('kind', '')}/{involved.get('name', '')}: {e.get('message', '')}".strip()
            )
        ctx.save_evidence(f"{namespace}/events.txt", "\n".join(lines) + "\n")
    for pod in (o for o in objects if o["kind"] == "Pod"):
        node = pod.get("spec", {}).get("nodeName", "")
        if not _runs_processes(kube, node):
            continue  # simulated (kwok) nodes have no containers and no logs
        for c in pod.get("spec", {}).get("containers", []):
            text = kube.pod_logs(pod["metadata"]["name"], namespace, c["name"])
            ctx.save_evidence(f"{namespace}/logs/{pod['metadata']['name']}.{c['name']}.log", text)


_REAL_NODES: dict[str, bool] = {}


def _runs_processes(kube: Any, node_name: str) -> bool:
    if not node_name:
        return False
    if node_name not in _REAL_NODES:
        node = kube.get("v1", "Node", node_name) or {}
        ann = node.get("metadata", {}).get("annotations") or {}
        _REAL_NODES[node_name] = ann.get("kwok.x-k8s.io/node") != "fake"
    return _REAL_NODES[node_name]
