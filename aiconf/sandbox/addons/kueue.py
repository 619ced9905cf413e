"""Kueue (gang admission with quotas) run out of cluster next to the sandbox control plane.

Wiring:

* Binary: ``sigs.k8s.io/kueue/cmd/kueue`` v0.19.2 (see :mod:`.components`), run with the sandbox's admin
  kubeconfig (``system:masters``), so Kueue's RBAC manifests are not applied.
* Config (``state_dir/kueue/config.yaml``): leader election off, internal cert management off, webhook on
  ``127.0.0.1:<free port>`` with certs in ``state_dir/kueue/webhook-certs/``, health and metrics on free loopback
  ports, integrations ``batch/job`` + ``pod`` (+ ``ray.io/raycluster``/``ray.io/rayjob`` when the RayCluster CRD
  exists, i.e. when the ``kuberay`` add-on started first), and ``waitForPodsReady`` on (timeout from
  ``AICONF_KUEUE_PODS_READY_TIMEOUT``, default ``60s``, so a gang that cannot start is evicted quickly).
* The API server calls the webhooks at ``clientConfig.url: https://127.0.0.1:<port>/<path>`` (cert from the
  cluster CA with ``IP:127.0.0.1``; it also names ``kueue-webhook-service.kueue-system.svc``). Not an ExternalName
  Service: kube-apiserver 1.36 resolves webhook Services through ``ResolveEndpoint`` when
  ``--enable-aggregator-routing=true``, and that refuses ExternalName ("unsupported service type"); a URL works
  with either setting.
* Hard-coded path: with internal cert management off, Kueue reads its metrics serving cert from
  ``/etc/kueue/metrics/certs/tls.{crt,key}`` and exits when it is missing. The process therefore runs in a private
  mount namespace (``unshare -m``) where an overlay over ``/etc`` adds that folder from
  ``state_dir/kueue/etc-upper/``; the host's ``/etc`` is never written. This needs root (the sandbox runs as
  root). The visibility server (which wants ``/visibility/tls.*``) is turned off with
  ``--feature-gates=VisibilityOnDemand=false``.
* Webhook configurations are upstream's ``config/components/webhook/manifests.yaml`` with kustomize's edits
  redone here (names, ``namespaceSelector`` excluding kube-system/kueue-system), plus sandbox edits: the URL
  and caBundle, and an ``objectSelector`` (``kueue.x-k8s.io/queue-name`` exists) on the Pod, Deployment,
  StatefulSet and LeaderWorkerSet webhooks so that, when Kueue is stopped, ordinary pods of other tests are not
  refused by a fail-closed webhook. Pod groups and queued pods carry that label, so Kueue still sees them.
* CRDs: ``config/components/crd/bases`` reduced to the stored version ``v1beta2`` (the bases carry no conversion
  webhook stanza; kustomize adds it).
* ``wait_ready``: a server-side dry-run create of a ResourceFlavor goes through Kueue's webhook; then it applies
  ResourceFlavor ``default-flavor`` and ClusterQueue ``aiconf-sandbox-cq`` (``namespaceSelector: {}``) with quota
  = the allocatable cpu/memory/``nvidia.com/gpu`` of the nodes labelled ``nvidia.com/gpu.present=true`` (all nodes
  when none is). LocalQueues are namespaced; checks create their own, pointing at that ClusterQueue.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

from aiconf.errors import SandboxError
from aiconf.sandbox.addon import Addon, Process, SandboxHandle
from aiconf.sandbox.addons._common import (
    addon_dir,
    ca_bundle,
    go_module_dir,
    http_ok,
    install_cert_pair,
    kube_json,
    load_yaml_docs,
    namespace_doc,
    parse_quantity,
    service_dns_names,
    wait_for,
)
from aiconf.sandbox.addons.components import KUEUE, KUEUE_VERSION

NAMESPACE = "kueue-system"
WEBHOOK_SERVICE = "kueue-webhook-service"
CLUSTER_QUEUE = "aiconf-sandbox-cq"
RESOURCE_FLAVOR = "default-flavor"
GPU_NODE_LABEL = "nvidia.com/gpu.present"
QUOTA_RESOURCES = ("cpu", "memory", "nvidia.com/gpu")
#: Used when the cluster has no node at all when Kueue becomes ready.
FALLBACK_QUOTA = {"cpu": "64", "memory": "256Gi", "nvidia.com/gpu": "8"}
#: Webhooks on core kinds every test creates; narrowed to objects that ask for a queue (see the module doc).
LABEL_SCOPED_WEBHOOKS = ("pod", "deployment", "statefulset", "leaderworkerset")


def pods_ready_timeout() -> str:
    return os.environ.get("AICONF_KUEUE_PODS_READY_TIMEOUT", "60s")


def crds() -> list[dict]:
    folder = go_module_dir(KUEUE.module, KUEUE_VERSION) / "config" / "components" / "crd" / "bases"
    out = []
    for f in sorted(folder.glob("*.yaml")):
        for crd in load_yaml_docs(f):
            crd["spec"]["versions"] = [v for v in crd["spec"]["versions"] if v.get("storage")]
            crd["spec"].pop("conversion", None)
            out.append(crd)
    return out


def webhook_configurations(sb: SandboxHandle, port: int) -> list[dict]:
    src = go_module_dir(KUEUE.module, KUEUE_VERSION) / "config" / "components" / "webhook" / "manifests.yaml"
    ns_selector = {
        "matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", NAMESPACE]}
        ]
    }
    queued_only = {"matchExpressions": [{"key": "kueue.x-k8s.io/queue-name", "operator": "Exists"}]}
    bundle = ca_bundle(sb)
    out = []
    for doc in load_yaml_docs(src):
        doc = copy.deepcopy(doc)
        doc["metadata"]["name"] = "kueue-" + doc["metadata"]["name"]
        for wh in doc.get("webhooks", []):
            path = wh["clientConfig"]["service"]["path"]
            wh["clientConfig"] = {"url": f"https://127.0.0.1:{port}{path}", "caBundle": bundle}
            kind = wh["name"].split(".", 1)[0][1:]  # "mpod.kb.io" -> "pod"
            # kustomize gives every job-like webhook the namespace selector; Kueue's own kinds (clusterqueue,
            # cohort, resourceflavor, workload) keep none.
            if kind not in ("clusterqueue", "cohort", "resourceflavor", "workload"):
                wh["namespaceSelector"] = copy.deepcopy(ns_selector)
            if kind in LABEL_SCOPED_WEBHOOKS:
                wh["objectSelector"] = copy.deepcopy(queued_only)
            wh["timeoutSeconds"] = 10
        out.append(doc)
    return out


def config(*, webhook_port: int, cert_dir: Path, health_port: int, metrics_port: int, ray: bool) -> dict:
    frameworks = ["batch/job", "pod"] + (["ray.io/raycluster", "ray.io/rayjob"] if ray else [])
    return {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "namespace": NAMESPACE,
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": False},
        "webhook": {"host": "127.0.0.1", "port": webhook_port, "certDir": str(cert_dir)},
        "health": {"healthProbeBindAddress": f"127.0.0.1:{health_port}"},
        "metrics": {"bindAddress": f"127.0.0.1:{metrics_port}"},
        "waitForPodsReady": {"timeout": pods_ready_timeout(), "blockAdmission": False},
        "integrations": {"frameworks": frameworks},
        "clientConnection": {"qps": 100, "burst": 200},
    }


def _crd_exists(sb: SandboxHandle, name: str) -> bool:
    try:
        sb.kubectl("get", "crd", name, "-o", "name")
        return True
    except SandboxError:
        return False


def start(sb: SandboxHandle, bins: dict[str, Path]) -> list[Process]:
    if os.geteuid() != 0:
        raise SandboxError("kueue add-on: needs root (it mounts an overlay over /etc in a private mount namespace)")
    unshare = shutil.which("unshare")
    if unshare is None:
        raise SandboxError("kueue add-on: 'unshare' (util-linux) is not on PATH")
    d = addon_dir(sb, "kueue")
    webhook_port, health_port, metrics_port = sb.free_port(), sb.free_port(), sb.free_port()

    cert, key = sb.issue_cert(
        "kueue-webhook", dns_names=service_dns_names(WEBHOOK_SERVICE, NAMESPACE), ip_addresses=["127.0.0.1"]
    )
    cert_dir = install_cert_pair(cert, key, d / "webhook-certs")
    mcert, mkey = sb.issue_cert("kueue-metrics", dns_names=["localhost"], ip_addresses=["127.0.0.1"])
    upper, work = d / "etc-upper", d / "etc-work"
    for p in (upper, work):
        shutil.rmtree(p, ignore_errors=True)
        p.mkdir(parents=True)
    install_cert_pair(mcert, mkey, upper / "kueue" / "metrics" / "certs")

    ray = _crd_exists(sb, "rayclusters.ray.io")
    cfg_path = d / "config.yaml"
    cfg = config(
        webhook_port=webhook_port, cert_dir=cert_dir, health_port=health_port, metrics_port=metrics_port, ray=ray
    )
    cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")  # JSON is YAML

    sb.apply([namespace_doc(NAMESPACE), *crds()])
    sb.apply(webhook_configurations(sb, webhook_port))
    (d / "ports.json").write_text(
        json.dumps({"webhook": webhook_port, "health": health_port, "metrics": metrics_port}, indent=2) + "\n"
    )

    mount = f'mount -t overlay aiconf-kueue-etc -o lowerdir=/etc,upperdir={upper},workdir={work} /etc && exec "$0" "$@"'
    argv = [
        unshare, "-m", "--propagation", "private", "/bin/sh", "-c", mount,
        str(bins["kueue"]),
        f"--config={cfg_path}",
        f"--kubeconfig={sb.kubeconfig}",
        "--feature-gates=VisibilityOnDemand=false",
        "--zap-log-level=2",
    ]  # fmt: skip
    return [
        Process(
            name="kueue",
            argv=argv,
            cwd=d,
            ready=lambda: http_ok(f"http://127.0.0.1:{health_port}/readyz"),
            ready_timeout_s=120.0,
        )
    ]


def cluster_quota(sb: SandboxHandle) -> dict[str, str]:
    """Sum of the allocatable cpu/memory/GPUs of the fake GPU nodes (of all nodes when none is labelled)."""
    nodes = kube_json(sb, "get", "nodes").get("items", [])
    gpu_nodes = [n for n in nodes if n["metadata"].get("labels", {}).get(GPU_NODE_LABEL) == "true"]
    chosen = gpu_nodes or nodes
    if not chosen:
        return dict(FALLBACK_QUOTA)
    totals = dict.fromkeys(QUOTA_RESOURCES, 0.0)
    for n in chosen:
        alloc = n.get("status", {}).get("allocatable", {})
        for r in QUOTA_RESOURCES:
            if r in alloc:
                totals[r] += parse_quantity(alloc[r])
    return {
        "cpu": f"{int(totals['cpu'] * 1000)}m",
        "memory": str(int(totals["memory"])),
        "nvidia.com/gpu": str(int(totals["nvidia.com/gpu"])),
    }


def queue_objects(quota: dict[str, str]) -> list[dict]:
    return [
        {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ResourceFlavor", "metadata": {"name": RESOURCE_FLAVOR}},
        {
            "apiVersion": "kueue.x-k8s.io/v1beta2",
            "kind": "ClusterQueue",
            "metadata": {"name": CLUSTER_QUEUE},
            "spec": {
                "namespaceSelector": {},
                "resourceGroups": [
                    {
                        "coveredResources": list(QUOTA_RESOURCES),
                        "flavors": [
                            {
                                "name": RESOURCE_FLAVOR,
                                "resources": [{"name": r, "nominalQuota": quota[r]} for r in QUOTA_RESOURCES],
                            }
                        ],
                    }
                ],
            },
        },
    ]


def wait_ready(sb: SandboxHandle, timeout_s: float = 90.0) -> None:
    probe_doc = json.dumps(
        {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ResourceFlavor", "metadata": {"name": "aiconf-webhook-probe"}}
    )

    def webhook_answers() -> tuple[bool, str]:
        # A dry-run create still calls the mutating and validating webhooks (they declare sideEffects: None).
        sb.kubectl("create", "--dry-run=server", "-f", "-", "-o", "name", input=probe_doc)
        return True, ""

    wait_for(
        "Kueue's webhook to answer a dry-run ResourceFlavor create",
        webhook_answers,
        timeout_s=timeout_s,
        interval_s=2.0,
    )
    sb.apply(queue_objects(cluster_quota(sb)))

    def cq_active() -> tuple[bool, str]:
        cq = kube_json(sb, "get", "clusterqueue", CLUSTER_QUEUE)
        conds = {c["type"]: c for c in cq.get("status", {}).get("conditions", [])}
        active = conds.get("Active", {})
        return active.get("status") == "True", f"Active={active.get('status')} {active.get('message', '')}"

    wait_for(f"ClusterQueue {CLUSTER_QUEUE} to be Active", cq_active, timeout_s=timeout_s, interval_s=1.0)


ADDON = Addon(
    name="kueue",
    summary=f"Kueue {KUEUE_VERSION}: ClusterQueue {CLUSTER_QUEUE}, waitForPodsReady, webhooks via 127.0.0.1",
    components=(KUEUE,),
    start=start,
    wait_ready=wait_ready,
)
