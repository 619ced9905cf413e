"""Node autoscaling for fake GPU nodes: Karpenter with its kwok cloud provider (``sigs.k8s.io/karpenter/kwok``).

cluster-autoscaler cannot be built here (the Go module proxy refuses it, see :mod:`.cluster_autoscaler`), so the
sandbox's node autoscaler is Karpenter, SIG Autoscaling's other node autoscaler, using the kwok provider upstream
tests it with. It provisions Node objects for pending pods; the sandbox's kwok marks them Ready, so pods bind and
run; it removes them again when they are empty (consolidation).

Wiring:

* Binary: ``karpenter-kwok`` built from karpenter v1.14.1 through an entry point that binds metrics/health to
  127.0.0.1 (see :data:`.components.KARPENTER_MAIN_GO`). Environment: ``KUBECONFIG`` (admin; Karpenter's RBAC is
  not applied), ``DISABLE_LEADER_ELECTION=true``, ``METRICS_PORT``/``HEALTH_PROBE_PORT`` (free loopback ports),
  ``INSTANCE_TYPES_FILE_PATH`` = ``state_dir/karpenter/instance-types.json``.
* Instance types: one GPU type, ``aiconf-gpu-8x`` (8 ``nvidia.com/gpu``, 96 cpu, 1 TiB, on-demand in zone
  ``sandbox-zone-a``), shaped like the sandbox's fake GPU nodes.
* CRDs (no conversion webhooks): ``pkg/apis/crds/*`` (NodePool, NodeClaim, NodeOverlay, CapacityBuffer) and
  ``kwok/apis/crds/*`` (KWOKNodeClass). Objects: KWOKNodeClass ``default`` and NodePool ``aiconf-gpu`` (that
  instance type only; limit ``nvidia.com/gpu`` = :data:`GPU_LIMIT`; labels ``nvidia.com/gpu.present=true`` and
  ``type=kwok``; consolidation ``WhenEmpty`` after 30 s).
* ``wait_ready``: the NodePool is Ready.

New nodes are named ``kwok-aiconf-gpu-...``, carry ``karpenter.sh/nodepool=aiconf-gpu`` and kwok's
``kwok.x-k8s.io/node: fake`` annotation, and start with Karpenter's ``karpenter.sh/unregistered`` taint, which
Karpenter removes once kwok reports the node Ready.
"""

from __future__ import annotations

import json
from pathlib import Path

from aiconf.sandbox.addon import Addon, Process, SandboxHandle
from aiconf.sandbox.addons._common import addon_dir, go_module_dir, http_ok, kube_json, load_yaml_docs, wait_for
from aiconf.sandbox.addons.components import KARPENTER, KARPENTER_VERSION

NODE_POOL = "aiconf-gpu"
NODE_CLASS = "default"
INSTANCE_TYPE = "aiconf-gpu-8x"
GPUS_PER_NODE = 8
GPU_LIMIT = 16  #: at most two autoscaled GPU nodes
ZONE = "sandbox-zone-a"


def crds() -> list[dict]:
    root = go_module_dir(KARPENTER.module, KARPENTER_VERSION)
    files = sorted((root / "pkg" / "apis" / "crds").glob("*.yaml")) + sorted(
        (root / "kwok" / "apis" / "crds").glob("*.yaml")
    )
    return [d for f in files for d in load_yaml_docs(f)]


def instance_types() -> list[dict]:
    return [
        {
            "name": INSTANCE_TYPE,
            "offerings": [
                {
                    "Price": 32.0,
                    "Available": True,
                    "Requirements": [
                        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]},
                        {"key": "topology.kubernetes.io/zone", "operator": "In", "values": [ZONE]},
                    ],
                }
            ],
            "architecture": "amd64",
            "operatingSystems": ["linux"],
            "resources": {
                "cpu": "96",
                "memory": "1Ti",
                "pods": "110",
                "ephemeral-storage": "1Ti",
                "nvidia.com/gpu": str(GPUS_PER_NODE),
            },
        }
    ]


def objects() -> list[dict]:
    return [
        {"apiVersion": "karpenter.kwok.sh/v1alpha1", "kind": "KWOKNodeClass", "metadata": {"name": NODE_CLASS}},
        {
            "apiVersion": "karpenter.sh/v1",
            "kind": "NodePool",
            "metadata": {"name": NODE_POOL},
            "spec": {
                "template": {
                    "metadata": {"labels": {"nvidia.com/gpu.present": "true", "type": "kwok"}},
                    "spec": {
                        "requirements": [
                            {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": [INSTANCE_TYPE]},
                            {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]},
                        ],
                        "nodeClassRef": {"group": "karpenter.kwok.sh", "kind": "KWOKNodeClass", "name": NODE_CLASS},
                        "expireAfter": "Never",
                    },
                },
                "limits": {"nvidia.com/gpu": str(GPU_LIMIT)},
                "disruption": {"consolidationPolicy": "WhenEmpty", "consolidateAfter": "30s"},
            },
        },
    ]


def start(sb: SandboxHandle, bins: dict[str, Path]) -> list[Process]:
    d = addon_dir(sb, "karpenter")
    metrics_port, health_port = sb.free_port(), sb.free_port()
    it_file = d / "instance-types.json"
    it_file.write_text(json.dumps(instance_types(), indent=2) + "\n")
    sb.apply(crds())
    sb.apply(objects())
    (d / "ports.json").write_text(json.dumps({"metrics": metrics_port, "health": health_port}, indent=2) + "\n")
    env = {
        "KUBECONFIG": str(sb.kubeconfig),
        "DISABLE_LEADER_ELECTION": "true",
        "METRICS_PORT": str(metrics_port),
        "HEALTH_PROBE_PORT": str(health_port),
        "INSTANCE_TYPES_FILE_PATH": str(it_file),
        "LOG_LEVEL": "info",
        "BATCH_MAX_DURATION": "5s",
        "BATCH_IDLE_DURATION": "1s",
    }
    return [
        Process(
            name="karpenter",
            argv=[str(bins["karpenter-kwok"])],
            env=env,
            cwd=d,
            ready=lambda: http_ok(f"http://127.0.0.1:{health_port}/readyz"),
            ready_timeout_s=120.0,
        )
    ]


def wait_ready(sb: SandboxHandle, timeout_s: float = 90.0) -> None:

    def pool_ready() -> tuple[bool, str]:
        pool = kube_json(sb, "get", "nodepool", NODE_POOL)
        cond = next((c for c in pool.get("status", {}).get("conditions", []) if c["type"] == "Ready"), {})
        return cond.get(
            "status"
        ) == "True", f"Ready={cond.get('status')} {cond.get('reason', '')}: {cond.get('message', '')}"

    wait_for(f"NodePool {NODE_POOL} to be Ready", pool_ready, timeout_s=timeout_s)


ADDON = Addon(
    name="karpenter",
    summary=f"Karpenter {KARPENTER_VERSION} kwok provider: NodePool {NODE_POOL} adds fake {GPUS_PER_NODE}-GPU nodes for pending pods",
    components=(KARPENTER,),
    start=start,
    wait_ready=wait_ready,
    # On by default: the cluster autoscaling check then runs its real scale-up/scale-down in the sandbox (the
    # cluster-autoscaler module is refused by the Go proxy). It provisions kwok nodes for pods that fit its
    # NodePool only; checks that need pods to stay pending use quota (Kueue) or unsatisfiable claims.
    default=True,
)
