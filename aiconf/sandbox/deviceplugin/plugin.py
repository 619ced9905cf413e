"""The fake GPU device plugin process (see the package docstring for what is real and what is simulated).

Run inside the real node's mount namespace (the runtime does)::

    python -m aiconf.sandbox.deviceplugin --dir <gpu dir> --node sandbox-real-0 --count 2 [--replicas 2]

With ``--replicas N`` (N > 1) the plugin shares each GPU by time-slicing, as NVIDIA's plugin does with
``sharing.timeSlicing.resources[{name: nvidia.com/gpu, replicas: N}]``: it advertises N devices per GPU, with IDs
``<uuid>::<k>`` (k = 0..N-1), and ``Allocate`` hands a container the GPU behind each replica it was given. Two
containers holding replicas of one GPU both get its device node, as they would get the same physical GPU.

Files under ``--dir`` (on the host; the DCGM simulation mounts the folder read-only):

- ``dev/nvidia<N>``: the device nodes (char 195:N), made here with ``mknod``;
- ``devices``: ``nvidia<minor> <index> <uuid> <memory MiB> <product>`` per GPU (mounted into GPU containers);
- ``bin/nvidia-smi`` + ``bin/fake_nvidia_smi.py``: the fake nvidia-smi (mounted into GPU containers);
- ``load/<uuid>/``: one writable folder per GPU, mounted into the container holding it;
- ``allocations.json``: ``{uuid: {"pod", "namespace", "container"}}`` from the kubelet's pod-resources API;
- ``unhealthy`` (input, optional): UUIDs to report Unhealthy, one a line (re-read every second);
- ``registered``: written once the kubelet accepted the registration (the runtime's readiness signal).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import stat
import sys
import threading
import time
from collections.abc import Callable
from concurrent import futures
from pathlib import Path

import grpc

from aiconf.sandbox.deviceplugin.podresources_v1 import api_pb2 as pr_pb2
from aiconf.sandbox.deviceplugin.podresources_v1 import api_pb2_grpc as pr_grpc
from aiconf.sandbox.deviceplugin.v1beta1 import api_pb2 as pb2
from aiconf.sandbox.deviceplugin.v1beta1 import api_pb2_grpc as pb2_grpc

log = logging.getLogger("aiconf-gpu-plugin")

RESOURCE = "nvidia.com/gpu"
API_VERSION = "v1beta1"
NVIDIA_MAJOR = 195
KUBELET_DIR = Path("/var/lib/kubelet")
ENDPOINT = "aiconf-gpu.sock"
#: Separator between a GPU's UUID and the replica number in time-sliced device IDs (NVIDIA's plugin uses "::").
REPLICA_SEPARATOR = "::"

#: Container paths of what Allocate mounts.
SMI_PATH = "/usr/bin/nvidia-smi"
SMI_IMPL_PATH = "/usr/local/share/aiconf/fake_nvidia_smi.py"
MAP_PATH = "/etc/aiconf-gpu/devices"
LOAD_PATH = "/run/aiconf-gpu"


def gpu_uuid(node: str, index: int) -> str:
    """The same UUIDs the sandbox's kwok GPU nodes use (aiconf.sandbox.nodes.gpu_uuid)."""
    from aiconf.sandbox.nodes import gpu_uuid as _uuid

    return _uuid(node, index)


class Gpus:
    """The node's simulated GPUs and their files under ``root``."""

    def __init__(self, root: Path, node: str, count: int, product: str, memory_mib: int, replicas: int = 1):
        self.root, self.node, self.count, self.replicas = root, node, count, max(1, replicas)
        self.product, self.memory_mib = product, memory_mib
        self.uuids = [gpu_uuid(node, i) for i in range(count)]
        self.by_uuid = {u: i for i, u in enumerate(self.uuids)}

    @property
    def device_ids(self) -> list[str]:
        """What ``ListAndWatch`` advertises: the UUIDs, or ``<uuid>::<k>`` per replica when time-sliced."""
        if self.replicas == 1:
            return list(self.uuids)
        return [f"{u}{REPLICA_SEPARATOR}{k}" for u in self.uuids for k in range(self.replicas)]

    def physical(self, device_id: str) -> str:
        """The GPU UUID behind an advertised device ID (a replica ID loses its ``::<k>`` suffix)."""
        return device_id.split(REPLICA_SEPARATOR, 1)[0] if self.replicas > 1 else device_id

    def dev(self, index: int) -> Path:
        return self.root / "dev" / f"nvidia{index}"

    def prepare(self, smi_wrapper: Path, smi_impl: Path) -> None:
        """Create the device nodes, the map, the nvidia-smi files and the load folders (idempotent)."""
        (self.root / "dev").mkdir(parents=True, exist_ok=True)
        for i in range(self.count):
            path = self.dev(i)
            want = os.makedev(NVIDIA_MAJOR, i)
            try:
                st = path.lstat()
                if not stat.S_ISCHR(st.st_mode) or st.st_rdev != want:
                    path.unlink()
                    raise FileNotFoundError
            except FileNotFoundError:
                os.mknod(path, stat.S_IFCHR | 0o666, want)
            os.chmod(path, 0o666)
            load = self.root / "load" / self.uuids[i]
            load.mkdir(parents=True, exist_ok=True)
            os.chmod(load, 0o777)  # workloads may run as any user
        lines = [f"nvidia{i} {i} {u} {self.memory_mib} {self.product}" for i, u in enumerate(self.uuids)]
        (self.root / "devices").write_text("# aiconf sandbox: SIMULATED GPUs\n" + "\n".join(lines) + "\n")
        (self.root / "bin").mkdir(exist_ok=True)
        for src, name, mode in ((smi_wrapper, "nvidia-smi", 0o755), (smi_impl, "fake_nvidia_smi.py", 0o644)):
            target = self.root / "bin" / name
            target.write_bytes(src.read_bytes())
            target.chmod(mode)

    def unhealthy(self) -> set[str]:
        try:
            return {ln.strip() for ln in (self.root / "unhealthy").read_text().splitlines() if ln.strip()}
        except FileNotFoundError:
            return set()

    def allocate(self, device_ids: list[str]) -> pb2.ContainerAllocateResponse:
        """The container's share: its device nodes (and devices-cgroup rules), the NVIDIA env, the fake
        nvidia-smi, the UUID map and a writable load folder per GPU."""
        advertised = set(self.device_ids)
        unknown = [d for d in device_ids if d not in advertised]
        if unknown:
            raise ValueError(f"unknown device ids {unknown}")
        # Replicas of one GPU collapse onto that GPU (its device node is mounted once), in request order.
        physical = list(dict.fromkeys(self.physical(d) for d in device_ids))
        resp = pb2.ContainerAllocateResponse()
        for uuid in physical:
            i = self.by_uuid[uuid]
            resp.devices.append(pb2.DeviceSpec(container_path=f"/dev/nvidia{i}", host_path=str(self.dev(i)),
                                               permissions="rw"))
            resp.mounts.append(pb2.Mount(container_path=f"{LOAD_PATH}/{uuid}",
                                         host_path=str(self.root / "load" / uuid), read_only=False))
        resp.mounts.append(pb2.Mount(container_path=SMI_PATH, host_path=str(self.root / "bin" / "nvidia-smi"),
                                     read_only=True))
        resp.mounts.append(pb2.Mount(container_path=SMI_IMPL_PATH,
                                     host_path=str(self.root / "bin" / "fake_nvidia_smi.py"), read_only=True))
        resp.mounts.append(pb2.Mount(container_path=MAP_PATH, host_path=str(self.root / "devices"), read_only=True))
        resp.envs["NVIDIA_VISIBLE_DEVICES"] = ",".join(physical)
        resp.envs["NVIDIA_DRIVER_CAPABILITIES"] = "compute,utility"
        resp.envs["AICONF_SIMULATED_GPU"] = "true"
        return resp


class DevicePlugin(pb2_grpc.DevicePluginServicer):
    def __init__(self, gpus: Gpus):
        self.gpus = gpus
        self.changed = threading.Condition()
        self.generation = 0
        self.stopping = threading.Event()
        self.allocated = threading.Event()  #: set by Allocate: refresh the attribution soon

    def devices(self) -> list[pb2.Device]:
        bad = self.gpus.unhealthy()
        return [
            pb2.Device(ID=d, health="Unhealthy" if self.gpus.physical(d) in bad else "Healthy")
            for d in self.gpus.device_ids
        ]

    def bump(self) -> None:
        with self.changed:
            self.generation += 1
            self.changed.notify_all()

    def GetDevicePluginOptions(self, request, context):  # noqa: N802 (gRPC method names)
        return pb2.DevicePluginOptions(pre_start_required=False, get_preferred_allocation_available=False)

    def ListAndWatch(self, request, context):  # noqa: N802
        seen = -1
        while context.is_active() and not self.stopping.is_set():
            with self.changed:
                if seen == self.generation:
                    # Bounded wait: re-checks the stream and the stop flag every few seconds.
                    self.changed.wait(timeout=5)
                if seen == self.generation:
                    continue
                seen = self.generation
            devs = self.devices()
            log.info("ListAndWatch: %s", ", ".join(f"{d.ID}={d.health}" for d in devs))
            yield pb2.ListAndWatchResponse(devices=devs)

    def GetPreferredAllocation(self, request, context):  # noqa: N802
        resp = pb2.PreferredAllocationResponse()
        for req in request.container_requests:
            ids = list(req.must_include_deviceIDs)
            ids += [d for d in req.available_deviceIDs if d not in ids][: max(0, req.allocation_size - len(ids))]
            resp.container_responses.append(pb2.ContainerPreferredAllocationResponse(deviceIDs=ids))
        return resp

    def Allocate(self, request, context):  # noqa: N802
        resp = pb2.AllocateResponse()
        for req in request.container_requests:
            ids = list(req.devices_ids)
            try:
                resp.container_responses.append(self.gpus.allocate(ids))
            except ValueError as e:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
            log.info("Allocate: %s", ",".join(ids))
        self.allocated.set()
        return resp

    def PreStartContainer(self, request, context):  # noqa: N802
        return pb2.PreStartContainerResponse()


def register(kubelet_dir: Path, timeout_s: float = 10) -> None:
    with grpc.insecure_channel(f"unix://{kubelet_dir / 'device-plugins' / 'kubelet.sock'}") as ch:
        stub = pb2_grpc.RegistrationStub(ch)
        stub.Register(pb2.RegisterRequest(version=API_VERSION, endpoint=ENDPOINT, resource_name=RESOURCE,
                                          options=pb2.DevicePluginOptions()), timeout=timeout_s)


def attribution(kubelet_dir: Path, uuids: set[str], timeout_s: float = 5,
                physical: Callable[[str], str] = str) -> dict[str, dict]:
    """``{uuid: {"pod", "namespace", "container"}}`` for our devices, from the kubelet's pod-resources API.

    ``physical`` maps an advertised device ID to its GPU's UUID (replica IDs under time-slicing); a GPU shared by
    several containers is attributed to the first of them in pod-resources order (the DCGM format has one holder).
    """
    out: dict[str, dict] = {}
    with grpc.insecure_channel(f"unix://{kubelet_dir / 'pod-resources' / 'kubelet.sock'}") as ch:
        resp = pr_grpc.PodResourcesListerStub(ch).List(pr_pb2.ListPodResourcesRequest(), timeout=timeout_s)
    for pod in resp.pod_resources:
        for c in pod.containers:
            for d in c.devices:
                if d.resource_name != RESOURCE:
                    continue
                for dev_id in d.device_ids:
                    uuid = physical(dev_id)
                    if uuid in uuids and uuid not in out:
                        out[uuid] = {"pod": pod.name, "namespace": pod.namespace, "container": c.name}
    return out


def _write_json(path: Path, doc: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)


def run(args: argparse.Namespace) -> int:
    root = Path(args.dir)
    kdir = Path(args.kubelet_dir)
    recipes = Path(__file__).resolve().parents[1] / "images"
    smi_wrapper = Path(args.smi_wrapper) if args.smi_wrapper else recipes / "nvidia-smi"
    smi_impl = Path(__file__).resolve().parents[2] / "workloads" / "fake_nvidia_smi.py"
    gpus = Gpus(root, args.node, args.count, args.product, args.memory_mib, args.replicas)
    gpus.prepare(smi_wrapper, smi_impl)
    (root / "registered").unlink(missing_ok=True)
    plugin = DevicePlugin(gpus)

    sock = kdir / "device-plugins" / ENDPOINT
    sock.unlink(missing_ok=True)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    pb2_grpc.add_DevicePluginServicer_to_server(plugin, server)
    server.add_insecure_port(f"unix://{sock}")
    server.start()
    log.info("serving %s on %s (%d simulated GPUs x %d replicas)", RESOURCE, sock, gpus.count, gpus.replicas)

    stop = threading.Event()

    def on_signal(*_):
        stop.set()
        plugin.allocated.set()  # wakes the loop

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)

    kubelet_sock = kdir / "device-plugins" / "kubelet.sock"
    registered_ino = None
    last_bad: set[str] = set()
    last_attr: dict | None = None
    next_attr = 0.0
    while not stop.is_set():
        # Register (again) whenever the kubelet's socket is new: a restarted kubelet forgets its plugins.
        try:
            ino = kubelet_sock.stat().st_ino
        except FileNotFoundError:
            ino = None
        if ino is not None and ino != registered_ino:
            try:
                register(kdir)
                registered_ino = ino
                plugin.bump()
                (root / "registered").write_text(f"{time.time():.3f}\n")
                log.info("registered %s with the kubelet", RESOURCE)
            except grpc.RpcError as e:
                log.warning("registration failed (will retry): %s", e.details() if hasattr(e, "details") else e)
        bad = gpus.unhealthy()
        if bad != last_bad:
            last_bad = bad
            plugin.bump()
        if time.monotonic() >= next_attr:
            next_attr = time.monotonic() + args.attribution_interval
            try:
                attr = attribution(kdir, set(gpus.uuids), physical=gpus.physical)
                if attr != last_attr:
                    _write_json(root / "allocations.json", attr)
                    last_attr = attr
            except grpc.RpcError as e:
                log.debug("pod-resources List failed: %s", e)
        # Bounded wait; an Allocate wakes it so the new holder shows in allocations.json within about a second
        # (the kubelet records the assignment before it creates the container).
        if plugin.allocated.wait(1.0):
            plugin.allocated.clear()
            next_attr = min(next_attr, time.monotonic() + 0.3)
            stop.wait(0.3)
    plugin.stopping.set()
    plugin.bump()
    server.stop(grace=1).wait(3)
    sock.unlink(missing_ok=True)
    log.info("stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m aiconf.sandbox.deviceplugin", description=__doc__.splitlines()[0])
    ap.add_argument("--dir", required=True, help="folder for the device nodes, map, load folders, allocations")
    ap.add_argument("--node", required=True, help="node name (the UUIDs derive from it)")
    ap.add_argument("--count", type=int, default=2)
    ap.add_argument("--product", default="NVIDIA-H100-80GB-HBM3")
    ap.add_argument("--memory-mib", type=int, default=81559)
    ap.add_argument("--replicas", type=int, default=1,
                    help="time-slicing replicas per GPU (1: no sharing; N: IDs <uuid>::<k> as NVIDIA's plugin)")
    ap.add_argument("--kubelet-dir", default=str(KUBELET_DIR))
    ap.add_argument("--smi-wrapper", default=None, help="the nvidia-smi wrapper script (default: the images recipe)")
    ap.add_argument("--attribution-interval", type=float, default=2.0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    if not 1 <= args.count <= 64:
        ap.error("--count must be within 1..64")
    if not 1 <= args.replicas <= 16:
        ap.error("--replicas must be within 1..16")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
