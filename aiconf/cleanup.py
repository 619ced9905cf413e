"""Find and remove what earlier runs left in a cluster, by label.

Every object the toolkit creates carries ``app.kubernetes.io/managed-by=aiconf`` and ``aiconf.io/run-id=<id>``.
Checks clean up after themselves; this sweep is the second net (a SIGKILLed runner, a crashed kernel): namespaces
(their contents go with them) and every cluster-scoped kind that can be listed and deleted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from kubernetes.client.exceptions import ApiException

from aiconf.context import LABEL_MANAGED_BY, LABEL_RUN_ID
from aiconf.errors import ForbiddenError
from aiconf.kube import Kube


@dataclass(frozen=True)
class Leftover:
    api_version: str
    kind: str
    name: str
    run_id: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.name} (run {self.run_id or '?'})"


def _selector(run_id: str | None) -> str:
    sel = f"{LABEL_MANAGED_BY}=aiconf"
    return f"{sel},{LABEL_RUN_ID}={run_id}" if run_id else sel


def cluster_scoped_kinds(kube: Kube) -> list[tuple[str, str]]:
    """(apiVersion, kind) of every cluster-scoped resource that supports list and delete (preferred versions)."""
    kinds: list[tuple[str, str]] = []
    groups = [("", "v1")]
    for g in kube.raw("GET", "/apis").get("groups", []):
        groups.append((g["name"], g["preferredVersion"]["groupVersion"]))
    for _, gv in groups:
        for r in kube.api_resources(gv):
            verbs = set(r.get("verbs", []))
            if r.get("namespaced") or "/" in r["name"] or not {"list", "delete"} <= verbs:
                continue
            if r["kind"] in ("Namespace", "Node", "ComponentStatus"):
                continue  # namespaces are swept separately; nodes are never ours to delete by label
            kinds.append((gv, r["kind"]))
    return kinds


def find_leftovers(kube: Kube, run_id: str | None = None) -> list[Leftover]:
    found: list[Leftover] = []
    sel = _selector(run_id)
    for ns in kube.list("v1", "Namespace", label_selector=sel):
        found.append(Leftover("v1", "Namespace", ns["metadata"]["name"], _run(ns)))
    for api_version, kind in cluster_scoped_kinds(kube):
        try:
            items = kube.list(api_version, kind, label_selector=sel)
        except (ApiException, ForbiddenError):
            continue  # an aggregated API that is down, or a kind we may not list: nothing of ours can be there
        except Exception:
            continue
        found += [Leftover(api_version, kind, o["metadata"]["name"], _run(o)) for o in items]
    return found


def delete_leftovers(kube: Kube, leftovers: list[Leftover], timeout_s: float = 180) -> list[str]:
    """Delete cluster-scoped objects first, then namespaces, and wait (bounded by ``timeout_s`` overall) until every
    one is gone: finalizers (Kueue's on ClusterQueues, namespace content) keep objects around for a while, and
    "cleaned up" must mean gone. Returns problems."""
    problems: list[str] = []
    cluster_scoped = [x for x in leftovers if x.kind != "Namespace"]
    namespaces = [x for x in leftovers if x.kind == "Namespace"]
    deleted: list[Leftover] = []
    for item in cluster_scoped + namespaces:
        try:
            kube.delete(item.api_version, item.kind, item.name)
            deleted.append(item)
        except Exception as e:
            problems.append(f"{item}: {e}")
    deadline = time.monotonic() + timeout_s
    for item in deleted:
        try:
            kube.wait_for_deletion(item.api_version, item.kind, item.name, None,
                                   max(1.0, deadline - time.monotonic()))
        except Exception as e:
            problems.append(f"{item}: still present: {e}")
    return problems


def _run(obj: dict[str, Any]) -> str:
    return (obj.get("metadata", {}).get("labels") or {}).get(LABEL_RUN_ID, "")
