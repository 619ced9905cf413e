"""The sandbox's real node: pods run for real, get IPs the host reaches, Services work, GPU devices are isolated by
the devices cgroup, the simulated DCGM exporter follows pod load, and ``down`` leaves nothing behind.

Uses the session sandbox (started with the real node by conftest.py) for everything but the last test, which
starts and stops a sandbox of its own. Skipped when the cluster has no real node (``AICONF_TEST_REAL_NODE=0`` or an
external cluster without one).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from kubernetes import client, watch

from aiconf.sandbox import cluster, gobuild, images, realnode
from aiconf.sandbox.versions import CORE, REAL_NODE

pytestmark = pytest.mark.sandbox

GPU = "nvidia.com/gpu"
UUID_RE = re.compile(r"GPU-[0-9a-f-]{36}")
#: Bounds for pod start: a real container start is ~1 s here, but other test sessions share the 2 cores.
POD_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def api(kube_sandbox):
    c = kube_sandbox.api_client()
    yield c
    c.close()


@pytest.fixture(scope="module")
def node(api):
    nodes = client.CoreV1Api(api).list_node(label_selector=f"{realnode.REAL_NODE_LABEL}=true").items
    if not nodes:
        pytest.skip("the cluster has no real node (AICONF_TEST_REAL_NODE=0?)")
    return nodes[0]


@pytest.fixture
def namespace(api):
    name = f"aiconf-rn-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": name}})
    yield name
    with contextlib.suppress(client.ApiException):
        core.delete_namespace(name, grace_period_seconds=0)


def _pod(name: str, containers: list[dict], **spec) -> dict:
    """A pod pinned to the real node (nodeSelector + toleration of its taint), never pulling images."""
    for c in containers:
        c.setdefault("imagePullPolicy", "Never")
    return {
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "nodeSelector": {realnode.REAL_NODE_LABEL: "true"},
            "tolerations": [{"key": realnode.REAL_NODE_LABEL, "operator": "Exists", "effect": "NoSchedule"}],
            "terminationGracePeriodSeconds": 1,
            "containers": containers,
            **spec,
        },
    }


def _sleeper(name: str = "main", image: str = images.PYTHON, gpus: int = 0, **extra) -> dict:
    c = {"name": name, "image": image, "command": ["sleep", "3600"], **extra}
    if gpus:
        c["resources"] = {"limits": {GPU: str(gpus)}}
    return c


def _wait_running(api, namespace: str, names: list[str], timeout_s: float = POD_TIMEOUT_S) -> dict[str, client.V1Pod]:
    core = client.CoreV1Api(api)
    deadline = time.monotonic() + timeout_s
    pods: dict[str, client.V1Pod] = {}

    def ready(p) -> bool:
        return any(c.type == "Ready" and c.status == "True" for c in (p.status.conditions or []))

    while time.monotonic() < deadline:
        listing = core.list_namespaced_pod(namespace)
        pods = {p.metadata.name: p for p in listing.items}
        if all(n in pods and ready(pods[n]) for n in names):
            return pods
        w = watch.Watch()
        for ev in w.stream(core.list_namespaced_pod, namespace, resource_version=listing.metadata.resource_version,
                           timeout_seconds=max(1, min(10, int(deadline - time.monotonic())))):
            pods[ev["object"].metadata.name] = ev["object"]
            if all(n in pods and ready(pods[n]) for n in names):
                w.stop()
                return pods
    states = {n: (pods[n].status.phase, [(s.name, s.state.to_dict()) for s in pods[n].status.container_statuses or []])
              if n in pods else "missing" for n in names}
    raise AssertionError(f"pods {names} not Ready after {timeout_s}s: {states}")


def _exec(kube_sandbox, namespace: str, pod: str, *cmd: str, container: str | None = None,
          timeout_s: float = 60) -> tuple[int, str]:
    argv = [cluster.find_kubectl(), f"--kubeconfig={kube_sandbox.kubeconfig}", "-n", namespace, "exec", pod]
    if container:
        argv += ["-c", container]
    r = subprocess.run([*argv, "--", *cmd], capture_output=True, text=True, timeout=timeout_s)
    return r.returncode, r.stdout + r.stderr


def _http_get(url: str, timeout_s: float = 10) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 (sandbox addresses only)
        return resp.status, resp.read().decode(errors="replace")


def _retry_http(url: str, timeout_s: float = 30) -> tuple[int, str]:
    """GET with retries: kube-proxy programs a new Service within its 1 s min-sync period."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            return _http_get(url, timeout_s=5)
        except OSError as e:
            last = e
            time.sleep(0.5)
    raise AssertionError(f"GET {url} failed for {timeout_s}s: {last}")


# --- the node ------------------------------------------------------------------------------------------------------


def test_real_node_is_ready_with_containerd_node_info(node):
    info = node.status.node_info
    assert info.container_runtime_version.startswith("containerd://1.6"), info.container_runtime_version
    assert info.kubelet_version.startswith("v1.36."), info.kubelet_version
    assert info.os_image and info.kernel_version
    conds = {c.type: c.status for c in node.status.conditions}
    assert conds["Ready"] == "True"
    labels = node.metadata.labels
    assert labels["sandbox.aiconf.io/node"] == "true" and labels[realnode.REAL_NODE_LABEL] == "true"
    assert labels["nvidia.com/gpu.present"] == "true" and labels["nvidia.com/gpu.product"]
    assert int(node.status.allocatable[GPU]) >= 2
    internal = [a.address for a in node.status.addresses if a.type == "InternalIP"]
    assert internal and re.fullmatch(r"10\.200\.\d+\.2", internal[0]), internal
    gpu_dir = Path(node.metadata.annotations[realnode.GPU_DIR_ANNOTATION])
    if gpu_dir.is_dir():  # a sandbox on this machine: the device nodes are there, with NVIDIA's major number
        assert os.major((gpu_dir / "dev" / "nvidia0").stat().st_rdev) == 195


# --- networking ----------------------------------------------------------------------------------------------------


def test_pod_serves_http_to_the_host_and_to_another_pod_through_its_service(api, kube_sandbox, namespace):
    core = client.CoreV1Api(api)
    server = _sleeper("web", command=["python3", "-m", "http.server", "8080", "--directory", "/etc"],
                      ports=[{"containerPort": 8080}])
    core.create_namespaced_pod(namespace, _pod("web", [server]))
    core.create_namespaced_pod(namespace, _pod("client", [_sleeper("main", image=images.UTILITY)]))
    core.create_namespaced_service(namespace, {
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    })
    pods = _wait_running(api, namespace, ["web", "client"])
    pod_ip = pods["web"].status.pod_ip
    assert re.fullmatch(r"10\.244\.\d+\.\d+", pod_ip), pod_ip

    # host -> pod IP
    status, body = _retry_http(f"http://{pod_ip}:8080/passwd")
    assert status == 200 and body.startswith("root:")
    # host -> ClusterIP (routed to the node, DNATed by kube-proxy)
    cluster_ip = core.read_namespaced_service("web", namespace).spec.cluster_ip
    status, body = _retry_http(f"http://{cluster_ip}/passwd")
    assert status == 200 and body.startswith("root:")
    # pod -> ClusterIP and pod -> Service DNS name (busybox nc: its wget segfaults in a bare rootfs)
    for target in (cluster_ip, f"web.{namespace}.svc.cluster.local"):
        deadline = time.monotonic() + 30
        while True:
            rc, out = _exec(kube_sandbox, namespace, "client", "sh", "-c",
                            f"printf 'GET /passwd HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {target} 80")
            if "200 OK" in out or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert "200 OK" in out and "root:" in out, (target, rc, out)
    # the server saw both the host and the other pod
    logs = core.read_namespaced_pod_log("web", namespace)
    assert logs.count("GET /passwd") >= 3


def test_in_cluster_api_clients_work_from_pods(api, kube_sandbox, namespace):
    core = client.CoreV1Api(api)
    core.create_namespaced_pod(namespace, _pod("incluster", [_sleeper()]))
    _wait_running(api, namespace, ["incluster"])
    script = (
        "import os,ssl,urllib.request\n"
        "sa='/var/run/secrets/kubernetes.io/serviceaccount'\n"
        "ctx=ssl.create_default_context(cafile=sa+'/ca.crt')\n"
        "req=urllib.request.Request('https://'+os.environ['KUBERNETES_SERVICE_HOST']+'/version',"
        "headers={'Authorization':'Bearer '+open(sa+'/token').read()})\n"
        "print(urllib.request.urlopen(req,context=ctx,timeout=10).read().decode())\n"
    )
    rc, out = _exec(kube_sandbox, namespace, "incluster", "python3", "-c", script)
    assert rc == 0 and '"gitVersion": "v1.36' in out, out


# --- GPU isolation -------------------------------------------------------------------------------------------------


def _gpu_count(node) -> int:
    return int(node.status.allocatable[GPU])


#: Tries every GPU minor: mknod (CAP_MKNOD is granted) then open; prints one JSON line.
_OPEN_ALL = """
import errno, json, os, sys
n = int(sys.argv[1])
out = {}
for i in range(n):
    path = f"/dev/nvidia{i}"
    made = False
    if not os.path.exists(path):
        try:
            os.mknod(path, 0o20666, os.makedev(195, i))
            made = True
        except OSError as e:
            out[i] = "mknod:" + errno.errorcode[e.errno]
            continue
    try:
        os.close(os.open(path, os.O_RDWR))
        out[i] = "opened"
    except OSError as e:
        out[i] = errno.errorcode[e.errno]
    if made:
        os.unlink(path)
print(json.dumps(out))
"""


def _open_all(kube_sandbox, namespace, pod, n, container=None) -> dict[str, str]:
    rc, out = _exec(kube_sandbox, namespace, pod, "python3", "-c", _OPEN_ALL, str(n), container=container)
    assert rc == 0, out
    return json.loads(out.strip().splitlines()[-1])


def _smi_uuids(kube_sandbox, namespace, pod, container=None) -> tuple[int, list[str], str]:
    rc, out = _exec(kube_sandbox, namespace, pod, "nvidia-smi", "-L", container=container)
    return rc, UUID_RE.findall(out), out


def test_pod_without_a_gpu_request_cannot_open_any_gpu_and_its_nvidia_smi_lists_nothing(api, kube_sandbox,
                                                                                       namespace, node):
    core = client.CoreV1Api(api)
    pod = _pod("nogpu", [_sleeper(securityContext={"capabilities": {"add": ["MKNOD"]}})])
    core.create_namespaced_pod(namespace, pod)
    _wait_running(api, namespace, ["nogpu"])
    n = _gpu_count(node)
    rc, uuids, out = _smi_uuids(kube_sandbox, namespace, "nogpu")
    assert rc == 6 and uuids == [] and "No devices were found" in out, out
    # Even a node made by hand with NVIDIA's numbers is refused by the devices cgroup (EPERM), for every GPU.
    assert _open_all(kube_sandbox, namespace, "nogpu", n) == {str(i): "EPERM" for i in range(n)}
    rc, out = _exec(kube_sandbox, namespace, "nogpu", "sh", "-c", "env | grep NVIDIA_VISIBLE_DEVICES; ls /dev")
    assert "NVIDIA_VISIBLE_DEVICES" not in out and "nvidia" not in out


def test_two_gpu_pods_see_different_uuids_and_only_their_own_device(api, kube_sandbox, namespace, node):
    core = client.CoreV1Api(api)
    for name in ("gpu-a", "gpu-b"):
        pod = _pod(name, [_sleeper(gpus=1, securityContext={"capabilities": {"add": ["MKNOD"]}})])
        core.create_namespaced_pod(namespace, pod)
    _wait_running(api, namespace, ["gpu-a", "gpu-b"])
    n = _gpu_count(node)
    seen = {}
    for name in ("gpu-a", "gpu-b"):
        rc, uuids, out = _smi_uuids(kube_sandbox, namespace, name)
        assert rc == 0 and len(uuids) == 1, out
        rc, env = _exec(kube_sandbox, namespace, name, "sh", "-c", "echo $NVIDIA_VISIBLE_DEVICES")
        assert env.strip() == uuids[0]
        access = _open_all(kube_sandbox, namespace, name, n)
        # Its own GPU passes the devices cgroup (no driver behind it: ENXIO); every other one is refused.
        allowed = [i for i, r in access.items() if r in ("ENXIO", "ENODEV", "opened")]
        assert len(allowed) == 1, access
        assert all(r == "EPERM" for i, r in access.items() if i not in allowed), access
        seen[name] = (uuids[0], allowed[0])
    assert seen["gpu-a"][0] != seen["gpu-b"][0]
    assert seen["gpu-a"][1] != seen["gpu-b"][1]


def test_gpu_shows_only_in_the_container_that_requested_it(api, kube_sandbox, namespace):
    core = client.CoreV1Api(api)
    pod = _pod("mixed", [_sleeper("with-gpu", gpus=1), _sleeper("without-gpu")])
    core.create_namespaced_pod(namespace, pod)
    _wait_running(api, namespace, ["mixed"])
    rc, uuids, out = _smi_uuids(kube_sandbox, namespace, "mixed", container="with-gpu")
    assert rc == 0 and len(uuids) == 1, out
    rc, uuids, out = _smi_uuids(kube_sandbox, namespace, "mixed", container="without-gpu")
    assert rc == 6 and uuids == [], out
    rc, out = _exec(kube_sandbox, namespace, "mixed", "ls", "/dev", container="without-gpu")
    assert rc == 0 and "nvidia" not in out, out
    rc, out = _exec(kube_sandbox, namespace, "mixed", "ls", "/dev", container="with-gpu")
    assert rc == 0 and "nvidia" in out, out


# --- simulated DCGM exporter -----------------------------------------------------------------------------------------


def _scrape(api) -> str:
    core = client.CoreV1Api(api)
    pods = core.list_namespaced_pod(realnode.DCGM_NAMESPACE, label_selector="app=nvidia-dcgm-exporter").items
    assert pods and pods[0].status.pod_ip, "the simulated DCGM exporter pod is missing"
    return _retry_http(f"http://{pods[0].status.pod_ip}:{realnode.DCGM_PORT}/metrics")[1]


def _util_of(text: str, uuid_: str) -> tuple[float | None, str]:
    for line in text.splitlines():
        if line.startswith("DCGM_FI_DEV_GPU_UTIL{") and f'UUID="{uuid_}"' in line:
            return float(line.rsplit(" ", 1)[1]), line
    return None, ""


def test_simulated_dcgm_exporter_attributes_gpus_and_follows_pod_load(api, kube_sandbox, namespace):
    text = _scrape(api)
    assert 'aiconf_dcgm_sim_info{simulated="true"' in text
    assert "# HELP DCGM_FI_DEV_FB_USED SIMULATED" in text
    core = client.CoreV1Api(api)
    load = _sleeper("load", gpus=1, command=["python3", "-m", "aiconf.workloads.dcgm_sim", "load", "--util", "77",
                                               "--fb-used-mib", "12345", "--seconds", "20", "--then-sleep", "600"])
    core.create_namespaced_pod(namespace, _pod("loader", [load]))
    _wait_running(api, namespace, ["loader"])
    rc, uuids, out = _smi_uuids(kube_sandbox, namespace, "loader")
    assert rc == 0 and len(uuids) == 1, out
    gpu = uuids[0]
    deadline = time.monotonic() + 30
    while True:
        # The load shows as soon as the workload writes it; the pod labels once the plugin has asked the kubelet's
        # pod-resources API (within a few seconds of the allocation).
        util, line = _util_of(_scrape(api), gpu)
        if (util == 77 and 'pod="loader"' in line) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert util == 77, line
    assert 'pod="loader"' in line and f'namespace="{namespace}"' in line and 'container="load"' in line, line
    # The load stops after 20 s (the pod stays): utilisation falls back to 0 once the load file goes stale.
    deadline = time.monotonic() + 60
    while True:
        util, line = _util_of(_scrape(api), gpu)
        if util == 0 or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert util == 0, line


# --- lifecycle -------------------------------------------------------------------------------------------------------


def _host_state() -> dict[str, str]:
    def run(*argv: str) -> str:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout

    return {
        "netns": run("ip", "netns", "list"),
        "links": run("ip", "-o", "link", "show"),
        "routes": run("ip", "route", "show"),
        "mounts": Path("/proc/self/mountinfo").read_text(),
        "iptables": run("iptables-save"),
    }


def _live_processes_mentioning(text: str) -> list[str]:
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            with contextlib.suppress(OSError):
                if text.encode() in (d / "cmdline").read_bytes() and cluster.proc_start_time(int(d.name)):
                    found.append(f"{d.name}: {(d / 'cmdline').read_bytes()[:200]!r}")
    return found


def test_down_removes_everything_the_real_node_made(tmp_path):
    if not all(gobuild.is_built(c) for c in (*CORE, *REAL_NODE)):
        pytest.skip("sandbox binaries are not built (aiconf sandbox build)")
    sb = cluster.Sandbox(tmp_path / "rn", progress=lambda m: None)
    try:
        st = sb.up(gpu_nodes=0, cpu_nodes=1, real_node=realnode.RealNodeSpec(gpus=1, dcgm=True))
        rn = st["real_node"]
        slot = rn["slot"]
        netns, veth = f"aiconf-node-{slot}", f"aicn{slot}-h"
        during = _host_state()
        assert netns in during["netns"] and veth in during["links"]
        assert f"{rn['pod_cidr']} via {rn['node_ip']}" in during["routes"]
        assert f"{st['service_cidr']} via {rn['node_ip']}" in during["routes"]
        assert str(sb.state_dir) in during["mounts"]
        cgroups = list(rn["cgroups"])
        assert cgroups and all(Path(c).is_dir() for c in cgroups)
        # a running pod (the DCGM DaemonSet's) means shims, container processes, overlay mounts, a pod netns
        status, _ = _retry_http(f"http://{_dcgm_ip(sb)}:{realnode.DCGM_PORT}/health")
        assert status == 200
    finally:
        sb.down()
    after = _host_state()
    assert netns not in after["netns"] and "cni-" not in after["netns"]
    assert veth not in after["links"]
    assert rn["pod_cidr"] not in after["routes"] and st["service_cidr"] not in after["routes"]
    assert str(sb.state_dir) not in after["mounts"]
    for text in (rn["pod_cidr"].rsplit(".", 1)[0] + ".", rn["host_ip"], veth):
        assert text not in after["iptables"], text
    assert not [c for c in cgroups if Path(c).exists()]
    # Killed shims may linger as zombies for a moment until init reaps them; live ones would be a leak.
    deadline = time.monotonic() + 10
    while (left := _live_processes_mentioning(str(sb.state_dir))) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left
    assert not sb.state_dir.exists()


def _dcgm_ip(sb) -> str:
    api = sb.api_client()
    try:
        core = client.CoreV1Api(api)
        deadline = time.monotonic() + POD_TIMEOUT_S
        while time.monotonic() < deadline:
            pods = core.list_namespaced_pod(realnode.DCGM_NAMESPACE, label_selector="app=nvidia-dcgm-exporter").items
            if pods and pods[0].status.pod_ip:
                return pods[0].status.pod_ip
            time.sleep(0.5)
    finally:
        api.close()
    raise AssertionError("no DCGM exporter pod IP")
