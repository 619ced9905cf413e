"""The sandbox is a real cluster: version, GPU nodes, scheduling on nvidia.com/gpu, Jobs, DRA, clean teardown.

Run: ``pytest -m sandbox tests/integration`` (starts one sandbox for the session; ~20 s with cached binaries).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from kubernetes import client, watch

from aiconf.errors import SandboxError
from aiconf.sandbox import cluster, components, gobuild
from aiconf.sandbox.addon import Addon, Process
from aiconf.sandbox.nodes import DEVICE_CLASS, DRA_DRIVER
from aiconf.sandbox.versions import CORE

pytestmark = pytest.mark.sandbox

GPU = "nvidia.com/gpu"


@pytest.fixture
def api(kube_sandbox):
    c = kube_sandbox.api_client()
    yield c
    c.close()


@pytest.fixture
def namespace(api):
    name = f"aiconf-it-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": name}})
    yield name
    with contextlib.suppress(client.ApiException):
        core.delete_namespace(name)


def wait_until(list_fn, predicate, *, timeout_s: float, what: str, **kwargs):
    """Watch ``list_fn`` (a list_* method) until ``predicate(items)`` is truthy; returns its value. Bounded."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        listing = list_fn(**kwargs)
        items = {i.metadata.name: i for i in listing.items}
        last = predicate(list(items.values()))
        if last:
            return last
        w = watch.Watch()
        for ev in w.stream(list_fn, resource_version=listing.metadata.resource_version,
                           timeout_seconds=max(1, int(deadline - time.monotonic())), **kwargs):
            obj = ev["object"]
            if ev["type"] == "DELETED":
                items.pop(obj.metadata.name, None)
            else:
                items[obj.metadata.name] = obj
            last = predicate(list(items.values()))
            if last:
                w.stop()
                return last
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def test_server_version_is_1_36(api):
    v = client.VersionApi(api).get_code()
    assert v.git_version.startswith("v1.36."), v.git_version
    assert (v.major, v.minor.rstrip("+")) == ("1", "36")


def test_gpu_nodes_are_ready_with_gpus(api):
    nodes = client.CoreV1Api(api).list_node().items
    gpu = [n for n in nodes if n.metadata.labels.get("nvidia.com/gpu.present") == "true"]
    cpu = [n for n in nodes if n not in gpu]
    assert len(gpu) >= 1 and len(cpu) >= 1
    for n in gpu:
        ready = {c.type: c.status for c in n.status.conditions}["Ready"]
        assert ready == "True", n.metadata.name
        assert int(n.status.allocatable[GPU]) >= 1
        assert n.metadata.labels["nvidia.com/gpu.product"]
    for n in cpu:
        assert GPU not in (n.status.allocatable or {})


def test_gpu_deployment_lands_only_on_gpu_nodes(api, namespace):
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    gpu_nodes = {n.metadata.name for n in core.list_node(label_selector="nvidia.com/gpu.present=true").items}
    deploy = {
        "metadata": {"name": "gpu-workload"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "gpu-workload"}},
            "template": {
                "metadata": {"labels": {"app": "gpu-workload"}},
                "spec": {
                    "tolerations": [{"key": GPU, "operator": "Exists", "effect": "NoSchedule"}],
                    "containers": [{
                        "name": "cuda",
                        "image": "registry.invalid/cuda:never-pulled",
                        "resources": {"limits": {GPU: "2"}},
                    }],
                },
            },
        },
    }
    apps.create_namespaced_deployment(namespace, deploy)

    def all_running(pods):
        running = [p for p in pods if p.status.phase == "Running"]
        return running if len(running) == 3 else None

    pods = wait_until(core.list_namespaced_pod, all_running, timeout_s=60, what="3 GPU pods Running",
                      namespace=namespace, label_selector="app=gpu-workload")
    assert {p.spec.node_name for p in pods} <= gpu_nodes
    assert all(p.status.pod_ip and p.status.pod_ip.startswith("10.99.") for p in pods)


def test_job_completes(api, namespace):
    batch = client.BatchV1Api(api)
    job = {
        "metadata": {"name": "train"},
        "spec": {
            "completions": 2,
            "parallelism": 2,
            "backoffLimit": 0,
            "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "train", "image": "registry.invalid/train:never-pulled",
                                "resources": {"limits": {GPU: "1"}}}],
            }},
        },
    }
    batch.create_namespaced_job(namespace, job)

    def complete(jobs):
        for j in jobs:
            conds = {c.type: c.status for c in (j.status.conditions or [])}
            if conds.get("Failed") == "True":
                raise AssertionError(f"job failed: {j.status}")
            if conds.get("Complete") == "True":
                return j
        return None

    j = wait_until(batch.list_namespaced_job, complete, timeout_s=60, what="Job Complete", namespace=namespace)
    assert j.status.succeeded == 2


def test_resource_claim_is_allocated_by_the_scheduler(api, namespace):
    resource, core = client.ResourceV1Api(api), client.CoreV1Api(api)
    assert resource.read_device_class(DEVICE_CLASS).metadata.name == DEVICE_CLASS
    selector = (f'device.attributes["{DRA_DRIVER}"].productName == "NVIDIA-H100-80GB-HBM3" && '
                f'device.capacity["{DRA_DRIVER}"].memory.compareTo(quantity("40Gi")) >= 0')
    resource.create_namespaced_resource_claim_template(namespace, {
        "metadata": {"name": "two-h100"},
        "spec": {"spec": {"devices": {"requests": [{
            "name": "gpus",
            "exactly": {"deviceClassName": DEVICE_CLASS, "count": 2, "selectors": [{"cel": {"expression": selector}}]},
        }]}}},
    })
    core.create_namespaced_pod(namespace, {
        "metadata": {"name": "dra-pod"},
        "spec": {
            "resourceClaims": [{"name": "gpus", "resourceClaimTemplateName": "two-h100"}],
            "containers": [{"name": "c", "image": "registry.invalid/x:never-pulled",
                            "resources": {"claims": [{"name": "gpus"}]}}],
        },
    })

    def running(pods):
        return next((p for p in pods if p.metadata.name == "dra-pod" and p.status.phase == "Running"), None)

    pod = wait_until(core.list_namespaced_pod, running, timeout_s=60, what="DRA pod Running", namespace=namespace)
    claim_name = pod.status.resource_claim_statuses[0].resource_claim_name
    claim = resource.read_namespaced_resource_claim(claim_name, namespace)
    results = claim.status.allocation.devices.results
    assert len(results) == 2
    assert {r.driver for r in results} == {DRA_DRIVER}
    assert {r.pool for r in results} == {pod.spec.node_name}
    assert {ref.name for ref in claim.status.reserved_for} == {"dra-pod"}


def test_up_again_says_already_up(kube_sandbox):
    if kube_sandbox.sandbox is None:
        pytest.skip("external cluster (AICONF_TEST_KUBECONFIG)")
    t = time.monotonic()
    st = kube_sandbox.sandbox.up()
    assert st["already_up"] is True and st["state"] == "running"
    assert time.monotonic() - t < 10


# --- lifecycle of separate sandboxes ------------------------------------------------------------------------------


def _need_binaries():
    if not all(gobuild.is_built(c) for c in CORE):
        pytest.skip("sandbox binaries are not built (aiconf sandbox build)")


def _listening_ports() -> set[int]:
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A":  # LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            with contextlib.suppress(OSError):
                if text.encode() in (d / "cmdline").read_bytes() and cluster.proc_start_time(int(d.name)):
                    found.append(int(d.name))
    return found


def _routes() -> str:
    return subprocess.run(["ip", "route", "show"], capture_output=True, text=True, check=True).stdout


def _test_addon() -> Addon:
    """An add-on as the real ones are shaped: a cert, a CRD applied through the handle, two processes with a
    dependency listed out of order, and a wait_ready that uses the API."""
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.sandbox-test.aiconf.io"},
        "spec": {
            "group": "sandbox-test.aiconf.io",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
            "scope": "Namespaced",
            "versions": [{"name": "v1", "served": True, "storage": True,
                          "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}],
        },
    }

    def start(sb, bins):
        port = sb.free_port()
        cert, key = sb.issue_cert("echo-serving", dns_names=["localhost"], ip_addresses=["127.0.0.1"])
        assert cert.parent == sb.state_dir / "pki" and key.is_file()
        sb.apply([crd])  # returns once the CRD is Established
        server = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)]
        return [
            Process("echo-server", server, ready=components.http_ok(f"http://127.0.0.1:{port}/"),
                    ready_timeout_s=20, depends_on=("echo-sidecar",)),
            Process("echo-sidecar", [sys.executable, "-c", "import time; time.sleep(3600)"]),
        ]

    def wait_ready(sb):
        sb.kubectl("get", "widgets", "-A")

    return Addon(name="echo", summary="test add-on", components=(), start=start, wait_ready=wait_ready)


def test_down_leaves_no_process_port_or_route(tmp_path, monkeypatch):
    """A second, concurrent sandbox with an add-on: its first port is already taken (it must choose another),
    add-on processes start in dependency order, and `down` leaves nothing behind."""
    _need_binaries()
    import socket

    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    busy = blocker.getsockname()[1]
    real_free_port = cluster._free_port
    handed = []

    def free_port_first_busy(taken):
        port = busy if not handed else real_free_port(taken)
        handed.append(port)
        return port

    monkeypatch.setattr(cluster, "_free_port", free_port_first_busy)
    sb = cluster.Sandbox(tmp_path / "sb2", progress=lambda m: None)
    try:
        st = sb.up(gpu_nodes=1, gpus_per_node=2, cpu_nodes=0, addons=[_test_addon()])
        assert st["state"] == "running"
        assert busy not in st["ports"].values()
        names = list(st["processes"])
        assert names.index("echo-sidecar") < names.index("echo-server")
        assert st["addons"] == [{"name": "echo", "processes": ["echo-server", "echo-sidecar"]}]
        assert "GET /" in sb.logs("echo-server")
        ports, routes = set(st["ports"].values()), st["routes"]
        pids = {n: (p["pid"], p["start_time"]) for n, p in st["processes"].items()}
        assert len(routes) == 2 and all(r in _routes() for r in routes)
        assert ports <= _listening_ports()
    finally:
        blocker.close()
        sb.down()
    assert not any(cluster.is_alive(pid, start) for pid, start in pids.values())
    assert not _processes_mentioning(str(sb.state_dir))
    assert not ports & _listening_ports()
    current = _routes()
    assert not [r for r in routes if r in current]
    assert not sb.state_dir.exists()


def test_component_dying_at_startup_is_named_with_its_log(tmp_path, monkeypatch):
    _need_binaries()
    real_etcd = components.etcd

    def broken_etcd(cfg):
        p = real_etcd(cfg)
        return type(p)(p.name, [*p.argv, "--no-such-flag"], ready=p.ready, ready_timeout_s=p.ready_timeout_s)

    monkeypatch.setattr(components, "etcd", broken_etcd)
    sb = cluster.Sandbox(tmp_path / "sb3", progress=lambda m: None)
    try:
        with pytest.raises(SandboxError) as err:
            sb.up(gpu_nodes=1, cpu_nodes=0)
        assert str(err.value).startswith("etcd exited during startup")
        assert "no-such-flag" in str(err.value)
        st = sb.status()
        assert st["state"] == "stopped" and st["routes"] == []
    finally:
        sb.down()
    assert not sb.state_dir.exists()
