"""Fake GPU and CPU nodes for the sandbox: Node objects kwok keeps Ready, shaped like GPU Operator nodes.

A GPU node carries what NVIDIA's GPU Operator (device plugin + GPU Feature Discovery) puts on a real one:
``nvidia.com/gpu`` capacity/allocatable and the ``nvidia.com/gpu.*``/``nvidia.com/cuda.*`` labels checks look at.
The scheduler, quota, Kueue and friends treat them exactly like real nodes; kwok (see components.py) marks pods
bound to them Running.

Dynamic Resource Allocation: besides the extended resource, each GPU node publishes its GPUs in a
``resource.k8s.io/v1`` ResourceSlice of the sandbox-only driver ``gpu.sandbox.aiconf.io`` (a name no real driver
uses, so a report can never mistake sandbox allocations for NVIDIA's ``gpu.nvidia.com``), and one DeviceClass of
the same name selects them. The real kube-scheduler allocates ResourceClaims against these slices.

Everything here returns plain manifests (dicts); :mod:`aiconf.sandbox.cluster` creates them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from aiconf.sandbox.components import KWOK_NODE_ANNOTATION

#: The DRA driver and DeviceClass name of the sandbox's simulated GPUs.
DRA_DRIVER = "gpu.sandbox.aiconf.io"
DEVICE_CLASS = DRA_DRIVER

#: Label every sandbox node carries (and the selector ``down``-time diagnostics use).
SANDBOX_NODE_LABEL = "sandbox.aiconf.io/node"

GPU_RESOURCE = "nvidia.com/gpu"


@dataclass(frozen=True)
class GpuModel:
    """What a GPU looks like to labels and DRA attributes (defaults: an H100 80GB SXM, as GFD reports it)."""

    product: str = "NVIDIA-H100-80GB-HBM3"
    memory_mib: int = 81559
    family: str = "hopper"
    architecture: str = "Hopper"
    compute_major: int = 9
    compute_minor: int = 0
    driver_version: tuple[int, int, int] = (580, 95, 5)
    cuda_runtime: tuple[int, int] = (13, 0)
    dra_memory: str = "80Gi"


@dataclass(frozen=True)
class NodeSpec:
    """The sandbox's node set.

    Attributes:
        gpu_nodes / gpus_per_node / cpu_nodes: counts.
        gpu_taint: add ``nvidia.com/gpu:NoSchedule`` to GPU nodes (as many managed clusters do).
        gpu: the GPU model.
        gpu_node_cpu / gpu_node_memory / cpu_node_cpu / cpu_node_memory / pods: node capacity.
        instance_type: ``node.kubernetes.io/instance-type`` of GPU nodes (None: derived from the GPU count).
    """

    gpu_nodes: int = 2
    gpus_per_node: int = 8
    cpu_nodes: int = 1
    gpu_taint: bool = False
    gpu: GpuModel = field(default_factory=GpuModel)
    gpu_node_cpu: str = "96"
    gpu_node_memory: str = "1024Gi"
    cpu_node_cpu: str = "16"
    cpu_node_memory: str = "64Gi"
    pods: str = "110"
    instance_type: str | None = None

    def gpu_node_names(self) -> list[str]:
        return [f"sandbox-gpu-{i}" for i in range(self.gpu_nodes)]

    def cpu_node_names(self) -> list[str]:
        return [f"sandbox-cpu-{i}" for i in range(self.cpu_nodes)]

    def validate(self) -> None:
        from aiconf.errors import ConfigError

        if self.gpu_nodes < 0 or self.cpu_nodes < 0 or self.gpus_per_node < 0:
            raise ConfigError("sandbox node counts must be >= 0")
        if self.gpu_nodes and self.gpus_per_node < 1:
            raise ConfigError("--gpus-per-node must be >= 1 when there are GPU nodes")
        if self.gpu_nodes + self.cpu_nodes < 1:
            raise ConfigError("the sandbox needs at least one node")
        if self.gpu_nodes > 64 or self.cpu_nodes > 64 or self.gpus_per_node > 64:
            raise ConfigError("at most 64 nodes of each kind and 64 GPUs per node")


def _base_node(name: str, labels: dict[str, str], capacity: dict[str, str], taints: list[dict]) -> dict:
    key, value = KWOK_NODE_ANNOTATION
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {key: value, "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/os": "linux",
                "kubernetes.io/hostname": name,
                "type": "kwok",
                SANDBOX_NODE_LABEL: "true",
                **labels,
            },
        },
        "spec": {"taints": taints} if taints else {},
        # Nodes may be created with status; kwok's node-initialize stage keeps capacity/allocatable as given.
        "status": {"capacity": dict(capacity), "allocatable": dict(capacity)},
    }


def gpu_node_labels(spec: NodeSpec) -> dict[str, str]:
    g = spec.gpu
    major, minor, rev = g.driver_version
    return {
        "node.kubernetes.io/instance-type": spec.instance_type or f"sandbox-gpu-{spec.gpus_per_node}x",
        "nvidia.com/gpu.present": "true",
        "nvidia.com/gpu.deploy.device-plugin": "true",
        "nvidia.com/gpu.product": g.product,
        "nvidia.com/gpu.count": str(spec.gpus_per_node),
        "nvidia.com/gpu.memory": str(g.memory_mib),
        "nvidia.com/gpu.family": g.family,
        "nvidia.com/gpu.compute.major": str(g.compute_major),
        "nvidia.com/gpu.compute.minor": str(g.compute_minor),
        "nvidia.com/gpu.machine": spec.instance_type or "sandbox",
        "nvidia.com/gpu.replicas": "1",
        "nvidia.com/gpu.sharing-strategy": "none",
        "nvidia.com/mig.capable": "false",
        "nvidia.com/cuda.driver.major": str(major),
        "nvidia.com/cuda.driver.minor": str(minor),
        "nvidia.com/cuda.driver.rev": str(rev),
        "nvidia.com/cuda.runtime.major": str(g.cuda_runtime[0]),
        "nvidia.com/cuda.runtime.minor": str(g.cuda_runtime[1]),
        "feature.node.kubernetes.io/pci-10de.present": "true",
    }


def gpu_node(spec: NodeSpec, name: str) -> dict:
    capacity = {
        "cpu": spec.gpu_node_cpu,
        "memory": spec.gpu_node_memory,
        "pods": spec.pods,
        "ephemeral-storage": "1Ti",
        GPU_RESOURCE: str(spec.gpus_per_node),
    }
    taints = [{"key": GPU_RESOURCE, "effect": "NoSchedule"}] if spec.gpu_taint else []
    return _base_node(name, gpu_node_labels(spec), capacity, taints)


def cpu_node(spec: NodeSpec, name: str) -> dict:
    capacity = {"cpu": spec.cpu_node_cpu, "memory": spec.cpu_node_memory, "pods": spec.pods, "ephemeral-storage": "500Gi"}
    return _base_node(name, {"node.kubernetes.io/instance-type": "sandbox-cpu"}, capacity, [])


def gpu_uuid(node: str, index: int) -> str:
    """A stable, obviously fake GPU UUID (same node and index → same UUID across sandboxes)."""
    return "GPU-" + str(uuid.uuid5(uuid.NAMESPACE_URL, f"aiconf-sandbox/{node}/{index}"))


def resource_slice(spec: NodeSpec, node: str) -> dict:
    """The DRA ResourceSlice publishing ``node``'s GPUs (one pool per node, as a node-local driver does)."""
    g = spec.gpu
    devices = []
    for i in range(spec.gpus_per_node):
        devices.append(
            {
                "name": f"gpu-{i}",
                "attributes": {
                    "productName": {"string": g.product},
                    "uuid": {"string": gpu_uuid(node, i)},
                    "index": {"int": i},
                    "architecture": {"string": g.architecture},
                    "family": {"string": g.family},
                    "driverVersion": {"version": "{}.{}.{}".format(*g.driver_version)},
                },
                "capacity": {"memory": {"value": g.dra_memory}},
            }
        )
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {"name": f"{node}-{DRA_DRIVER}", "labels": {SANDBOX_NODE_LABEL: "true"}},
        "spec": {
            "driver": DRA_DRIVER,
            "nodeName": node,
            "pool": {"name": node, "generation": 1, "resourceSliceCount": 1},
            "devices": devices,
        },
    }


def device_class() -> dict:
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "DeviceClass",
        "metadata": {"name": DEVICE_CLASS, "labels": {SANDBOX_NODE_LABEL: "true"}},
        "spec": {"selectors": [{"cel": {"expression": f'device.driver == "{DRA_DRIVER}"'}}]},
    }


def nodes(spec: NodeSpec) -> list[dict]:
    """All Node manifests: GPU nodes first, then CPU-only nodes."""
    return [gpu_node(spec, n) for n in spec.gpu_node_names()] + [cpu_node(spec, n) for n in spec.cpu_node_names()]


def dra_objects(spec: NodeSpec) -> list[dict]:
    """The DeviceClass and one ResourceSlice per GPU node (nothing when there are no GPU nodes)."""
    if not spec.gpu_nodes:
        return []
    return [device_class()] + [resource_slice(spec, n) for n in spec.gpu_node_names()]
