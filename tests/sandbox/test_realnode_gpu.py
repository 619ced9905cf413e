"""The fake GPU stack without a cluster: the device plugin over real gRPC (with stand-ins for the kubelet's
registration and pod-resources services), the fake nvidia-smi and the simulated DCGM exporter."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aiconf.sandbox.deviceplugin import plugin
from aiconf.sandbox.deviceplugin.podresources_v1 import api_pb2 as pr_pb2
from aiconf.sandbox.deviceplugin.podresources_v1 import api_pb2_grpc as pr_grpc
from aiconf.sandbox.deviceplugin.v1beta1 import api_pb2 as pb2
from aiconf.sandbox.deviceplugin.v1beta1 import api_pb2_grpc as pb2_grpc
from aiconf.sandbox.nodes import gpu_uuid
from aiconf.workloads import dcgm_sim, fake_nvidia_smi

REPO = Path(__file__).resolve().parents[2]
SMI_WRAPPER = REPO / "aiconf" / "sandbox" / "images" / "nvidia-smi"
SMI_IMPL = REPO / "aiconf" / "workloads" / "fake_nvidia_smi.py"
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mknod of character devices needs root")


@pytest.fixture
def gpus(tmp_path) -> plugin.Gpus:
    g = plugin.Gpus(tmp_path / "gpu", "node-x", 2, "NVIDIA-H100-80GB-HBM3", 81559)
    if os.geteuid() == 0:
        g.prepare(SMI_WRAPPER, SMI_IMPL)
    return g


@needs_root
def test_prepare_makes_nvidia_numbered_devices_and_the_uuid_map(gpus):
    for i in range(2):
        st = gpus.dev(i).stat()
        assert stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 195 and os.minor(st.st_rdev) == i
        assert (gpus.root / "load" / gpu_uuid("node-x", i)).is_dir()
    mapping = fake_nvidia_smi.read_map(str(gpus.root / "devices"))
    assert mapping[1] == {"index": 1, "uuid": gpu_uuid("node-x", 1), "memory_mib": 81559,
                          "name": "NVIDIA H100 80GB HBM3"}
    assert os.access(gpus.root / "bin" / "nvidia-smi", os.X_OK)
    gpus.prepare(SMI_WRAPPER, SMI_IMPL)  # idempotent


def test_allocate_grants_only_the_requested_devices(gpus):
    u1 = gpu_uuid("node-x", 1)
    resp = gpus.allocate([u1])
    assert [(d.container_path, d.host_path, d.permissions) for d in resp.devices] == [
        ("/dev/nvidia1", str(gpus.dev(1)), "rw")]
    assert resp.envs["NVIDIA_VISIBLE_DEVICES"] == u1 and resp.envs["AICONF_SIMULATED_GPU"] == "true"
    mounts = {m.container_path: (m.host_path, m.read_only) for m in resp.mounts}
    assert mounts[f"/run/aiconf-gpu/{u1}"] == (str(gpus.root / "load" / u1), False)
    assert mounts["/usr/bin/nvidia-smi"][1] and mounts["/etc/aiconf-gpu/devices"][1]
    assert not any(gpu_uuid("node-x", 0) in p for p in mounts)
    with pytest.raises(ValueError, match="unknown device"):
        gpus.allocate(["GPU-not-ours"])


class _Registration(pb2_grpc.RegistrationServicer):
    def __init__(self):
        self.requests = []

    def Register(self, request, context):  # noqa: N802
        self.requests.append(request)
        return pb2.Empty()


class _PodResources(pr_grpc.PodResourcesListerServicer):
    def List(self, request, context):  # noqa: N802
        dev = pr_pb2.ContainerDevices(resource_name="nvidia.com/gpu", device_ids=[gpu_uuid("node-x", 0)])
        other = pr_pb2.ContainerDevices(resource_name="example.com/fpga", device_ids=["fpga-0"])
        c = pr_pb2.ContainerResources(name="trainer", devices=[dev, other])
        return pr_pb2.ListPodResourcesResponse(pod_resources=[
            pr_pb2.PodResources(name="job-0", namespace="ml", containers=[c])])


def test_plugin_speaks_the_kubelet_api_over_grpc(tmp_path, gpus):
    kdir = tmp_path / "kubelet"
    (kdir / "device-plugins").mkdir(parents=True)
    (kdir / "pod-resources").mkdir()
    reg = _Registration()
    kubelet = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb2_grpc.add_RegistrationServicer_to_server(reg, kubelet)
    pr_grpc.add_PodResourcesListerServicer_to_server(_PodResources(), kubelet)
    kubelet.add_insecure_port(f"unix://{kdir / 'device-plugins' / 'kubelet.sock'}")
    kubelet.add_insecure_port(f"unix://{kdir / 'pod-resources' / 'kubelet.sock'}")
    kubelet.start()
    dp = plugin.DevicePlugin(gpus)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb2_grpc.add_DevicePluginServicer_to_server(dp, server)
    sock = tmp_path / "plugin.sock"
    server.add_insecure_port(f"unix://{sock}")
    server.start()
    try:
        plugin.register(kdir)
        assert reg.requests[0].resource_name == "nvidia.com/gpu" and reg.requests[0].version == "v1beta1"
        assert reg.requests[0].endpoint == plugin.ENDPOINT
        assert plugin.attribution(kdir, set(gpus.uuids)) == {
            gpu_uuid("node-x", 0): {"pod": "job-0", "namespace": "ml", "container": "trainer"}}
        with grpc.insecure_channel(f"unix://{sock}") as ch:
            stub = pb2_grpc.DevicePluginStub(ch)
            assert stub.GetDevicePluginOptions(pb2.Empty(), timeout=5).pre_start_required is False
            dp.bump()
            stream = stub.ListAndWatch(pb2.Empty(), timeout=10)
            first = next(stream)
            assert [(d.ID, d.health) for d in first.devices] == [(u, "Healthy") for u in gpus.uuids]
            if os.geteuid() == 0:
                (gpus.root / "unhealthy").write_text(gpus.uuids[1] + "\n")
                dp.bump()
                second = next(stream)
                assert [d.health for d in second.devices] == ["Healthy", "Unhealthy"]
            stream.cancel()
            req = pb2.AllocateRequest(container_requests=[
                pb2.ContainerAllocateRequest(devices_ids=[gpus.uuids[0]]),
                pb2.ContainerAllocateRequest(devices_ids=[gpus.uuids[1]])])
            resp = stub.Allocate(req, timeout=5)
            assert [r.devices[0].container_path for r in resp.container_responses] == ["/dev/nvidia0", "/dev/nvidia1"]
            with pytest.raises(grpc.RpcError) as err:
                stub.Allocate(pb2.AllocateRequest(container_requests=[
                    pb2.ContainerAllocateRequest(devices_ids=["GPU-bogus"])]), timeout=5)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        dp.stopping.set()
        dp.bump()
        server.stop(0)
        kubelet.stop(0)


# --- fake nvidia-smi -------------------------------------------------------------------------------------------------


def _smi(gpus: plugin.Gpus, *args: str, dev_dir: Path | None = None, load_dir: Path | None = None,
         env: dict | None = None) -> subprocess.CompletedProcess:
    e = {"PATH": os.environ["PATH"], "AICONF_GPU_DEVICES_FILE": str(gpus.root / "devices"),
         "AICONF_GPU_DEV_DIR": str(dev_dir or gpus.root / "dev"),
         "AICONF_GPU_LOAD_DIR": str(load_dir or gpus.root / "load"), **(env or {})}
    return subprocess.run([sys.executable, str(SMI_IMPL), *args], capture_output=True, text=True, env=e, timeout=30)


@needs_root
def test_fake_nvidia_smi_lists_the_devices_it_may_open(gpus, tmp_path):
    # On the host nothing restricts us: both nodes open up to the missing driver (ENXIO) and count as ours.
    r = _smi(gpus, "-L")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"GPU {i}: NVIDIA H100 80GB HBM3 (UUID: {u})" for i, u in enumerate(gpus.uuids)]
    assert fake_nvidia_smi.probe_device(str(gpus.dev(0))) == "allowed"
    assert fake_nvidia_smi.probe_device("/dev/null") == "not-a-gpu"
    assert fake_nvidia_smi.probe_device(str(tmp_path / "nope")) == "absent"
    # A container with only nvidia1: the other node is simply not there.
    only1 = tmp_path / "dev1"
    only1.mkdir()
    os.mknod(only1 / "nvidia1", stat.S_IFCHR | 0o666, os.makedev(195, 1))
    r = _smi(gpus, "-L", dev_dir=only1)
    assert r.stdout.strip() == f"GPU 0: NVIDIA H100 80GB HBM3 (UUID: {gpus.uuids[1]})"
    empty = tmp_path / "none"
    empty.mkdir()
    r = _smi(gpus, "-L", dev_dir=empty)
    assert r.returncode == 6 and r.stdout.strip() == "No devices were found"


@needs_root
def test_fake_nvidia_smi_queries_read_the_load_files(gpus):
    (gpus.root / "load" / gpus.uuids[0] / "load").write_text(json.dumps({"util": 42, "fb_used_mib": 1000}))
    r = _smi(gpus, "--query-gpu=index,uuid,utilization.gpu,memory.used,memory.total", "--format=csv,noheader,nounits")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"0, {gpus.uuids[0]}, 42, 1000, 81559", f"1, {gpus.uuids[1]}, 0, 0, 81559"]
    bad = _smi(gpus, "--query-gpu=nonsense", "--format=csv")
    assert bad.returncode == 2 and "not a valid field" in bad.stderr


def test_stale_load_counts_as_idle(tmp_path):
    d = tmp_path / "GPU-x"
    d.mkdir()
    (d / "load").write_text(json.dumps({"util": 90, "fb_used_mib": 5}))
    assert fake_nvidia_smi.read_load("GPU-x", str(tmp_path))["util"] == 90
    old = time.time() - 60
    os.utime(d / "load", (old, old))
    assert fake_nvidia_smi.read_load("GPU-x", str(tmp_path)) == {"util": 0.0, "fb_used_mib": 0.0}
    assert fake_nvidia_smi.read_load("GPU-missing", str(tmp_path))["util"] == 0.0


# --- simulated DCGM exporter ----------------------------------------------------------------------------------------


def _gpu_dir(tmp_path: Path) -> tuple[Path, list[str]]:
    d = tmp_path / "gpu"
    uuids = [gpu_uuid("node-x", i) for i in range(2)]
    (d / "load" / uuids[1]).mkdir(parents=True)
    (d / "devices").write_text("".join(f"nvidia{i} {i} {u} 81559 NVIDIA-H100-80GB-HBM3\n" for i, u in enumerate(uuids)))
    (d / "allocations.json").write_text(json.dumps({uuids[1]: {"pod": "p", "namespace": "ns", "container": "c"}}))
    (d / "load" / uuids[1] / "load").write_text(json.dumps({"util": 60, "fb_used_mib": 2048}))
    return d, uuids


def test_dcgm_exposition_parses_and_carries_dcgm_labels_and_attribution(tmp_path):
    d, uuids = _gpu_dir(tmp_path)
    sim = dcgm_sim.Simulator(str(d), "node-x")
    t0 = time.time()
    text = sim.exposition(now=t0)
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    assert fams["aiconf_dcgm_sim_info"].samples[0].labels["simulated"] == "true"
    for name, _, _ in dcgm_sim.FAMILIES:
        assert fams[name].documentation.startswith("SIMULATED"), name
    util = {s.labels["UUID"]: s for s in fams["DCGM_FI_DEV_GPU_UTIL"].samples}
    assert util[uuids[1]].value == 60 and util[uuids[0]].value == 0
    want = {"gpu": "1", "device": "nvidia1", "modelName": "NVIDIA H100 80GB HBM3", "Hostname": "node-x",
            "pod": "p", "namespace": "ns", "container": "c"}
    assert want.items() <= util[uuids[1]].labels.items()
    assert "pod" not in util[uuids[0]].labels
    fb = {s.labels["UUID"]: s.value for s in fams["DCGM_FI_DEV_FB_USED"].samples}
    free = {s.labels["UUID"]: s.value for s in fams["DCGM_FI_DEV_FB_FREE"].samples}
    assert fb[uuids[1]] == 2048 and free[uuids[1]] == 81559 - 2048
    # energy is a counter integrating power over time
    later = sim.exposition(now=t0 + 3)  # the load file stays fresh for 5 s
    energy = {s.labels["UUID"]: s.value for f in text_string_to_metric_families(later)
              if f.name == "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION" for s in f.samples}
    assert energy[uuids[1]] == pytest.approx((70 + 6.3 * 60) * 3 * 1000, rel=0.01)


def test_dcgm_serve_once_prints_an_exposition(tmp_path, capsys):
    d, _ = _gpu_dir(tmp_path)
    assert dcgm_sim.main(["serve", "--gpu-dir", str(d), "--hostname", "h", "--once"]) == 0
    assert "DCGM_FI_DEV_GPU_UTIL{" in capsys.readouterr().out


@needs_root
def test_dcgm_load_writes_only_for_gpus_the_container_may_open(gpus, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(fake_nvidia_smi, "DEV_DIR", str(gpus.root / "dev"))
    monkeypatch.setattr(fake_nvidia_smi, "MAP_FILE", str(gpus.root / "devices"))
    only0 = tmp_path / "load-root"
    (only0 / gpus.uuids[0]).mkdir(parents=True)  # the plugin mounts a folder only for the granted GPU
    rc = dcgm_sim.main(["load", "--util", "55", "--fb-used-mib", "10", "--seconds", "0.3", "--load-root", str(only0)])
    assert rc == 0
    events = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
    assert events[0]["event"] == "ready" and events[0]["gpus"] == [gpus.uuids[0]]
    assert events[-1]["event"] == "done"
    assert not (only0 / gpus.uuids[0] / "load").exists()  # removed when the load ends
    rc = dcgm_sim.main(["load", "--seconds", "0.1", "--load-root", str(tmp_path / "nothing")])
    assert rc == 2


def test_time_slicing_advertises_replicas_that_map_onto_their_gpu(tmp_path):
    g = plugin.Gpus(tmp_path / "gpu", "node-x", 2, "NVIDIA-H100-80GB-HBM3", 81559, replicas=2)
    u0, u1 = g.uuids
    assert g.device_ids == [f"{u0}::0", f"{u0}::1", f"{u1}::0", f"{u1}::1"]
    assert [d.ID for d in plugin.DevicePlugin(g).devices()] == g.device_ids
    # Two containers holding replicas of one GPU both get that GPU's device node, and only that one.
    a, b = g.allocate([f"{u0}::0"]), g.allocate([f"{u0}::1"])
    for resp in (a, b):
        assert [(d.container_path, d.host_path) for d in resp.devices] == [("/dev/nvidia0", str(g.dev(0)))]
        assert resp.envs["NVIDIA_VISIBLE_DEVICES"] == u0
    both = g.allocate([f"{u0}::0", f"{u0}::1"])  # two replicas of one GPU are still one device
    assert len(both.devices) == 1
    with pytest.raises(ValueError, match="unknown device"):
        g.allocate([u0])  # a bare UUID is not advertised when shared
    unshared = plugin.Gpus(tmp_path / "gpu2", "node-x", 2, "NVIDIA-H100-80GB-HBM3", 81559)
    assert unshared.device_ids == unshared.uuids


def test_unhealthy_gpu_marks_all_its_replicas(tmp_path):
    g = plugin.Gpus(tmp_path / "gpu", "node-x", 2, "NVIDIA-H100-80GB-HBM3", 81559, replicas=2)
    (g.root).mkdir(parents=True)
    (g.root / "unhealthy").write_text(g.uuids[1] + "\n")
    health = [d.health for d in plugin.DevicePlugin(g).devices()]
    assert health == ["Healthy", "Healthy", "Unhealthy", "Unhealthy"]


def test_attribution_reports_the_gpu_behind_a_replica(tmp_path):
    class Replicas(pr_grpc.PodResourcesListerServicer):
        def List(self, request, context):
            u0 = gpu_uuid("node-x", 0)
            pods = [
                pr_pb2.PodResources(name=f"p{i}", namespace="ml", containers=[pr_pb2.ContainerResources(
                    name="c", devices=[pr_pb2.ContainerDevices(resource_name="nvidia.com/gpu",
                                                               device_ids=[f"{u0}::{i}"])])])
                for i in range(2)
            ]
            return pr_pb2.ListPodResourcesResponse(pod_resources=pods)

    kdir = tmp_path / "kubelet"
    (kdir / "pod-resources").mkdir(parents=True)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pr_grpc.add_PodResourcesListerServicer_to_server(Replicas(), server)
    server.add_insecure_port(f"unix://{kdir / 'pod-resources' / 'kubelet.sock'}")
    server.start()
    try:
        g = plugin.Gpus(tmp_path / "gpu", "node-x", 2, "NVIDIA-H100-80GB-HBM3", 81559, replicas=2)
        got = plugin.attribution(kdir, set(g.uuids), physical=g.physical)
        assert got == {g.uuids[0]: {"pod": "p0", "namespace": "ml", "container": "c"}}
    finally:
        server.stop(0)
