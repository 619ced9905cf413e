"""The sandbox's one real node: kubelet + containerd + runc in a network namespace the sandbox makes.

``Sandbox.up(real_node=True)`` (``aiconf sandbox up --real-node``) adds, after the control plane:

- **Network.** A network namespace ``aiconf-node-<S>`` joined to the host by a veth pair: host side
  ``10.200.S.1/30`` (``aicnS-h``), node side ``10.200.S.2/30`` (the node's InternalIP; the kubelet refuses a loopback
  node IP). ``S`` is the sandbox's CIDR slot, so concurrent sandboxes never share names or addresses. Pods get
  ``10.244.S.0/24`` from the CNI ``bridge`` plugin (bridge ``cni0`` inside the netns, made up front, gateway
  ``10.244.S.1``, host-local IPAM); the host routes that /24 via ``10.200.S.2``, so the host reaches pod IPs.
  The sandbox's ClusterIP range (made ``unreachable`` on the host by cluster.py) is routed via ``10.200.S.2``
  instead while the node runs, where kube-proxy's iptables rules DNAT it; inside the netns the range is routed
  onto ``cni0``, so a ClusterIP nobody serves ends in an unanswered ARP there, never in a loop. The netns has no
  default route: pods reach the node's pod CIDR, the host-side veth address and ClusterIPs, nothing else (kwok's
  fake pod IPs included: a Service with kwok endpoints is DNATed to an address with no route).
- **Mount namespace.** containerd, the kubelet, kube-proxy and the device plugin share one persistent mount
  namespace (``<state>/node/ns/mnt``, made with ``unshare --mount``), entered with ``nsenter --net --mount``.
  Inside it ``/run``, ``/var/lib`` and ``/var/log`` are fresh tmpfs and ``/var/lib/kubelet`` is
  ``<state>/node/kubelet``: the kubelet's hard-coded paths (``/var/lib/kubelet/device-plugins``,
  ``/var/log/containers``), containerd's ``/run/containerd`` and the CNI cache never touch the host and never
  collide with another sandbox's node; every mount the kubelet or containerd makes (volumes, overlay rootfs, pod
  netns pins) lives and dies with that namespace. ``/etc/resolv.conf`` is the node's own (CoreDNS, no
  upstream). The six kernel tunables the kubelet insists on (``vm.overcommit_memory``, ``kernel.panic``, ...) are
  files bind-mounted over ``/proc/sys`` inside the namespace, with ``protectKernelDefaults: true``: the kubelet
  finds the values it wants and never writes the shared VM's kernel settings.
- **Processes** (the runtime's, stopped by ``down``): ``node-apiserver-proxy`` (a TCP relay on ``10.200.S.1``
  to the API server on 127.0.0.1: the kubelet, kube-proxy and in-cluster clients reach the API through it; the
  API server keeps listening on loopback only), ``containerd`` (Debian's 1.6, runc, ``restrict_oom_score_adj``:
  this VM lacks CAP_SYS_RESOURCE), ``kubelet`` (built v1.36.3, cgroupfs driver, ``failCgroupV1: false`` on this
  hybrid host, cgroup root ``/aiconf-node-<S>-<id>``, serving cert from the cluster CA), ``gpu-device-plugin``
  (:mod:`aiconf.sandbox.deviceplugin`), ``kube-proxy`` (iptables mode, in the netns) and ``coredns`` (host
  process bound to ``10.200.S.1:53``, ``kubernetes`` plugin only: cluster names resolve, nothing is forwarded).
- **Images**: ``localhost/pause:aiconf``, ``localhost/aiconf-utility:0.1``, ``localhost/aiconf-python:0.1``
  (:mod:`aiconf.sandbox.images`), imported with ``ctr -n k8s.io images import``; pods use
  ``imagePullPolicy: Never``.
- **API objects**: the node registers itself with real ``nodeInfo`` (containerd version, kernel, OS); labels
  ``sandbox.aiconf.io/node=true``, ``sandbox.aiconf.io/real-node=true`` and the GPU Operator-style labels of the
  kwok GPU nodes (``nvidia.com/gpu.present=true``, ...); taint ``sandbox.aiconf.io/real-node=true:NoSchedule``
  (on by default, so workloads land here only when they ask to: nodeSelector + toleration); annotation
  ``sandbox.aiconf.io/gpu-dir`` = the host folder of the simulated GPUs (``dev/nvidia<N>``); an EndpointSlice
  giving the ``kubernetes`` Service the relay's address (in-cluster API clients work from pods); the simulated
  DCGM exporter DaemonSet and Service (:mod:`aiconf.workloads.dcgm_sim`) in namespace ``aiconf-gpu-sim``.

``down`` stops the processes (the runtime), then :func:`teardown` kills what they leave (containerd shims and
container processes, found by mount namespace and cgroup), removes the cgroups, unmounts the mount namespace,
puts the ``unreachable`` fence back on the ClusterIP range, deletes the routes, the veth pair and the netns. Host
iptables are never touched: every rule kube-proxy, the kubelet and the CNI plugins write is inside the netns.

Everything here is data (:class:`RealNodeConfig` and the ``*_config``/``processes`` renderers, unit-tested without
a cluster) except :func:`setup_host`, :func:`import_images`, :func:`start` and :func:`teardown`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import ipaddress
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from aiconf.errors import SandboxError
from aiconf.sandbox import images, pki
from aiconf.sandbox.addon import Process
from aiconf.sandbox.components import http_ok
from aiconf.sandbox.nodes import SANDBOX_NODE_LABEL, GpuModel, NodeSpec, gpu_node_labels

NODE_NAME = "sandbox-real-0"
REAL_NODE_LABEL = "sandbox.aiconf.io/real-node"
TAINT = {"key": REAL_NODE_LABEL, "value": "true", "effect": "NoSchedule"}
DCGM_NAMESPACE = "aiconf-gpu-sim"
DCGM_NAME = "dcgm-exporter-sim"
DCGM_PORT = 9400
#: Where the DCGM simulation sees the device plugin's folder.
DCGM_GPU_DIR = "/var/lib/aiconf-gpu"
KUBELET_PORT = 10250
KUBELET_HEALTHZ_PORT = 10248
KUBE_PROXY_HEALTHZ_PORT = 10256
CNI_BIN_DIR = "/usr/lib/cni"  # Debian's containernetworking-plugins

#: What the kubelet's setupKernelTunables wants (pkg/kubelet/cm/container_manager_linux.go, v1.36.3).
KERNEL_TUNABLES = {
    "vm/overcommit_memory": "1",
    "vm/panic_on_oom": "0",
    "kernel/panic": "10",
    "kernel/panic_on_oops": "1",
    "kernel/keys/root_maxkeys": "1000000",
    "kernel/keys/root_maxbytes": "25000000",
}

#: Debian packages the real node needs (commands checked before anything is set up).
REQUIRED_COMMANDS = {
    "containerd": "containerd", "ctr": "containerd", "runc": "runc", "containerd-shim-runc-v2": "containerd",
    "iptables": "iptables", "conntrack": "conntrack", "nsenter": "util-linux", "unshare": "util-linux",
    "mount": "mount", "ip": "iproute2", "busybox": "busybox-static", "gcc": "gcc",
}

Progress = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class RealNodeSpec:
    """What the real node offers.

    Attributes:
        gpus: simulated GPUs the device plugin advertises (``nvidia.com/gpu``).
        gpu_replicas: time-slicing replicas per GPU (1: no sharing). With N > 1 the plugin advertises
            ``gpus x N`` units (IDs ``<uuid>::<k>``) and the node is labelled as GPU Feature Discovery labels a
            time-sliced node: ``nvidia.com/gpu.replicas=N``, ``nvidia.com/gpu.sharing-strategy=time-slicing``,
            ``nvidia.com/gpu.product=<product>-SHARED``; ``nvidia.com/gpu.count`` stays the physical count.
        taint: taint the node ``sandbox.aiconf.io/real-node=true:NoSchedule``.
        dns: run CoreDNS (cluster names for pods on the node).
        dcgm: deploy the simulated DCGM exporter.
        gpu: the GPU model (labels, nvidia-smi name, memory).
    """

    gpus: int = 2
    gpu_replicas: int = 1
    taint: bool = True
    dns: bool = True
    dcgm: bool = True
    gpu: GpuModel = dataclasses.field(default_factory=GpuModel)

    def validate(self) -> None:
        from aiconf.errors import ConfigError

        if not 0 <= self.gpus <= 16:
            raise ConfigError("the real node has 0 to 16 simulated GPUs")
        if not 1 <= self.gpu_replicas <= 16:
            raise ConfigError("the real node's GPUs have 1 to 16 time-slicing replicas")

    @property
    def gpu_units(self) -> int:
        """``nvidia.com/gpu`` units the node advertises (GPUs x replicas)."""
        return self.gpus * self.gpu_replicas


@dataclasses.dataclass(frozen=True)
class RealNodeConfig:
    """Everything the real node's files and processes depend on (pure data; nothing is touched)."""

    state_dir: Path
    slot: int
    apiserver_port: int
    service_cidr: str
    bins: Mapping[str, Path]
    spec: RealNodeSpec = dataclasses.field(default_factory=RealNodeSpec)
    dns_ports: tuple[int, int] = (0, 0)  #: CoreDNS health and ready ports on 127.0.0.1
    python: str = sys.executable
    node_name: str = NODE_NAME

    # --- names and addresses ---

    @property
    def uid(self) -> str:
        """Six hex digits of the state dir: tells this sandbox's cgroups from a former one's with the same slot."""
        return hashlib.sha256(str(self.state_dir).encode()).hexdigest()[:6]

    @property
    def netns(self) -> str:
        return f"aiconf-node-{self.slot}"

    @property
    def veth_host(self) -> str:
        return f"aicn{self.slot}-h"

    @property
    def veth_node(self) -> str:
        return f"aicn{self.slot}-n"

    @property
    def host_ip(self) -> str:
        return f"10.200.{self.slot}.1"

    @property
    def node_ip(self) -> str:
        return f"10.200.{self.slot}.2"

    @property
    def link_cidr(self) -> str:
        return f"10.200.{self.slot}.0/30"

    @property
    def pod_cidr(self) -> str:
        return f"10.244.{self.slot}.0/24"

    @property
    def pod_gateway(self) -> str:
        return f"10.244.{self.slot}.1"

    @property
    def bridge(self) -> str:
        return "cni0"

    @property
    def cni_network(self) -> str:
        return f"aiconf-node-{self.slot}"

    @property
    def cgroup_root(self) -> str:
        return f"/aiconf-node-{self.slot}-{self.uid}"

    @property
    def dns_ip(self) -> str:
        return self.host_ip

    @property
    def service_ip(self) -> str:
        return str(next(ipaddress.ip_network(self.service_cidr).hosts()))

    @property
    def apiserver_relay(self) -> str:
        return f"https://{self.host_ip}:{self.apiserver_port}"

    # --- paths (host view) ---

    @property
    def node_dir(self) -> Path:
        return self.state_dir / "node"

    @property
    def ns_dir(self) -> Path:
        return self.node_dir / "ns"

    @property
    def mnt_ns(self) -> Path:
        return self.ns_dir / "mnt"

    @property
    def kubelet_dir(self) -> Path:
        """Bind-mounted onto /var/lib/kubelet inside the node's mount namespace."""
        return self.node_dir / "kubelet"

    @property
    def containerd_dir(self) -> Path:
        return self.node_dir / "containerd"

    @property
    def containerd_sock(self) -> Path:
        return self.containerd_dir / "containerd.sock"

    @property
    def containerd_config(self) -> Path:
        return self.containerd_dir / "config.toml"

    @property
    def cni_conf_dir(self) -> Path:
        return self.node_dir / "cni" / "net.d"

    @property
    def cni_ipam_dir(self) -> Path:
        return self.node_dir / "cni" / "ipam"

    @property
    def gpu_dir(self) -> Path:
        return self.node_dir / "gpu"

    @property
    def pki(self) -> Path:
        return self.node_dir / "pki"

    @property
    def pod_logs_dir(self) -> Path:
        return self.node_dir / "pod-logs"

    @property
    def sysctl_dir(self) -> Path:
        return self.node_dir / "sysctl"

    @property
    def resolv_conf(self) -> Path:
        return self.node_dir / "resolv.conf"

    @property
    def kubelet_config_path(self) -> Path:
        return self.node_dir / "kubelet.yaml"

    @property
    def kube_proxy_config_path(self) -> Path:
        return self.node_dir / "kube-proxy.yaml"

    @property
    def corefile(self) -> Path:
        return self.node_dir / "Corefile"

    def kubeconfig(self, who: str) -> Path:
        return self.node_dir / f"{who}.kubeconfig"

    def bin(self, name: str) -> str:
        try:
            return str(self.bins[name])
        except KeyError:
            raise SandboxError(f"real node: binary {name!r} is not built") from None

    def in_node(self, *argv: str) -> list[str]:
        """``argv`` run in the node's network and mount namespaces."""
        return ["nsenter", f"--net=/run/netns/{self.netns}", f"--mount={self.mnt_ns}", "--", *argv]


def slot_of(pod_cidr: str) -> int:
    """The sandbox's CIDR slot from its fake pod range (``10.99.<16*slot>.0/20``, see cluster._add_routes)."""
    net = ipaddress.ip_network(pod_cidr)
    return int(str(net.network_address).split(".")[2]) // 16


# --- renderers (pure) ------------------------------------------------------------------------------------------


def containerd_config_text(cfg: RealNodeConfig) -> str:
    """containerd 1.6's config (version 2): state under the node dir, runc, CNI from Debian, local pause image."""
    c = cfg.containerd_dir
    return f"""# containerd for the aiconf sandbox's real node ({cfg.node_name}); written by aiconf.sandbox.realnode
version = 2
root = "{c / 'root'}"
state = "{c / 'state'}"
oom_score = 0
# Plugins that would write outside the node dir (/opt/containerd) or that this host cannot use.
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{cfg.containerd_sock}"

[ttrpc]
  address = ""

[debug]
  level = "info"

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "{images.PAUSE}"
    # This VM lacks CAP_SYS_RESOURCE: a negative oom_score_adj (what CRI gives pause) fails in runc.
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    disable_apparmor = true
    enable_selinux = false
    enable_cdi = false
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    max_container_log_line_size = 16384
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = false
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "{CNI_BIN_DIR}"
      conf_dir = "{cfg.cni_conf_dir}"
      max_conf_num = 1
    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = ""
"""


def cni_conflist(cfg: RealNodeConfig) -> dict:
    """Bridge ``cni0`` (made up front by :func:`setup_host`), host-local IPAM in the node dir, portmap."""
    return {
        "cniVersion": "1.0.0",
        "name": cfg.cni_network,
        "plugins": [
            {
                "type": "bridge",
                "bridge": cfg.bridge,
                "isGateway": True,
                "isDefaultGateway": True,  # the pod's default route: replies to the host go via the node
                "ipMasq": False,  # nothing to masquerade for: the netns has no way out
                "hairpinMode": True,  # a pod reaching itself through its Service
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": cfg.pod_cidr, "gateway": cfg.pod_gateway}]],
                    "dataDir": str(cfg.cni_ipam_dir),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_config(cfg: RealNodeConfig) -> dict:
    """The KubeletConfiguration (kubelet.config.k8s.io/v1beta1)."""
    p = cfg.state_dir / "pki"
    doc = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": cfg.node_ip,
        "port": KUBELET_PORT,
        "readOnlyPort": 0,
        "healthzBindAddress": cfg.node_ip,
        "healthzPort": KUBELET_HEALTHZ_PORT,
        "tlsCertFile": str(cfg.pki / "kubelet-serving.crt"),
        "tlsPrivateKeyFile": str(cfg.pki / "kubelet-serving.key"),
        "authentication": {
            "x509": {"clientCAFile": str(p / "ca.crt")},
            "webhook": {"enabled": True},
            "anonymous": {"enabled": False},
        },
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{cfg.containerd_sock}",
        # This host is cgroup v1 (hybrid): kubelet >= 1.35 refuses v1 unless told otherwise; no systemd.
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": cfg.cgroup_root,
        "failSwapOn": False,
        # Check, never write: the values it wants are bind-mounted over /proc/sys in the node's mount namespace.
        "protectKernelDefaults": True,
        # No registry: an image the kubelet garbage-collected could not come back.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                         "nodefs.inodesFree": "1%"},
        "clusterDomain": "cluster.local",
        "podLogsDir": str(cfg.pod_logs_dir),
        "serializeImagePulls": False,
        "maxPods": 110,
        "registerNode": True,
        "oomScoreAdj": 0,
        # Frequent status updates: the GPU count the device plugin registers shows in allocatable sooner.
        "nodeStatusUpdateFrequency": "4s",
        "nodeStatusReportFrequency": "10s",
    }
    if cfg.spec.taint:
        doc["registerWithTaints"] = [dict(TAINT)]
    if cfg.spec.dns:
        doc["clusterDNS"] = [cfg.dns_ip]
    return doc


def kube_proxy_config(cfg: RealNodeConfig) -> dict:
    """KubeProxyConfiguration: iptables mode in the netns; conntrack sysctls left alone (0 = do not set)."""
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(cfg.kubeconfig("kube-proxy"))},
        "mode": "iptables",
        "hostnameOverride": cfg.node_name,
        "bindAddress": cfg.node_ip,
        "healthzBindAddress": f"{cfg.node_ip}:{KUBE_PROXY_HEALTHZ_PORT}",
        "metricsBindAddress": "127.0.0.1:10249",
        "clusterCIDR": cfg.pod_cidr,
        "detectLocalMode": "ClusterCIDR",
        "nodePortAddresses": [f"{cfg.node_ip}/32"],
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
        "iptables": {"syncPeriod": "30s", "minSyncPeriod": "1s", "masqueradeAll": False},
    }


def corefile_text(cfg: RealNodeConfig, admin_kubeconfig: Path) -> str:
    health, ready = cfg.dns_ports
    return f"""# CoreDNS for the aiconf sandbox's real node: cluster names only (no forward plugin: nothing leaves).
.:53 {{
    bind {cfg.dns_ip}
    errors
    health 127.0.0.1:{health}
    ready 127.0.0.1:{ready}
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {admin_kubeconfig}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    cache 30
}}
"""


def resolv_conf_text(cfg: RealNodeConfig) -> str:
    if cfg.spec.dns:
        return f"# aiconf sandbox real node: CoreDNS, cluster names only\nnameserver {cfg.dns_ip}\n"
    return "# aiconf sandbox real node: no DNS server\n"


def node_labels(cfg: RealNodeConfig) -> dict[str, str]:
    """Labels of the real node: the sandbox's, and (with GPUs) those the kwok GPU nodes carry."""
    labels = {SANDBOX_NODE_LABEL: "true", REAL_NODE_LABEL: "true"}
    if cfg.spec.gpus:
        spec = NodeSpec(gpu_nodes=1, gpus_per_node=cfg.spec.gpus, gpu=cfg.spec.gpu,
                        instance_type=f"sandbox-real-gpu-{cfg.spec.gpus}x")
        labels.update(gpu_node_labels(spec))
        labels["nvidia.com/gpu.machine"] = "sandbox-real"
        labels.update(time_slicing_labels(cfg.spec.gpu.product, cfg.spec.gpu_replicas))
    else:
        labels["node.kubernetes.io/instance-type"] = "sandbox-real"
    return labels


def time_slicing_labels(product: str, replicas: int) -> dict[str, str]:
    """What GPU Feature Discovery changes on a node whose GPUs are time-sliced ({} for replicas 1)."""
    if replicas <= 1:
        return {}
    return {
        "nvidia.com/gpu.replicas": str(replicas),
        "nvidia.com/gpu.sharing-strategy": "time-slicing",
        "nvidia.com/gpu.product": f"{product}-SHARED",
    }


def kubelet_settable_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """The labels the NodeRestriction admission lets a kubelet set on itself (``--node-labels``): none in the
    kubernetes.io/k8s.io namespaces except ``node.kubernetes.io/*``; the rest are set by the admin afterwards."""
    out = {}
    for k, v in labels.items():
        prefix = k.split("/", 1)[0] if "/" in k else ""
        in_k8s = prefix.endswith("kubernetes.io") or prefix.endswith("k8s.io")
        if not in_k8s or prefix == "node.kubernetes.io":
            out[k] = v
    return out


def processes(cfg: RealNodeConfig) -> list[Process]:
    """The real node's processes in start order (the runtime launches, records and stops them)."""
    sock = cfg.containerd_sock
    relay = Process(
        "node-apiserver-proxy",
        [cfg.python, "-m", "aiconf.sandbox.realnode", "proxy", f"--listen={cfg.host_ip}:{cfg.apiserver_port}",
         f"--to=127.0.0.1:{cfg.apiserver_port}"],
        ready=tcp_ok(cfg.host_ip, cfg.apiserver_port), ready_timeout_s=20,
    )
    containerd = Process(
        "containerd", cfg.in_node("containerd", f"--config={cfg.containerd_config}"),
        ready=unix_ok(sock), ready_timeout_s=30,
    )
    labels = ",".join(f"{k}={v}" for k, v in sorted(kubelet_settable_labels(node_labels(cfg)).items()))
    kubelet_argv = [
        cfg.bin("kubelet"), f"--config={cfg.kubelet_config_path}", f"--kubeconfig={cfg.kubeconfig('kubelet')}",
        f"--node-ip={cfg.node_ip}", f"--hostname-override={cfg.node_name}", "--root-dir=/var/lib/kubelet",
        f"--node-labels={labels}", "--v=1",
    ]
    kubelet = Process(
        "kubelet", cfg.in_node(*kubelet_argv),
        ready=http_ok(f"http://{cfg.node_ip}:{KUBELET_HEALTHZ_PORT}/healthz"), ready_timeout_s=90,
        depends_on=("containerd", "node-apiserver-proxy"),
    )
    out = [relay, containerd, kubelet]
    if cfg.spec.gpus:
        out.append(Process(
            "gpu-device-plugin",
            cfg.in_node(cfg.python, "-m", "aiconf.sandbox.deviceplugin", f"--dir={cfg.gpu_dir}",
                        f"--node={cfg.node_name}", f"--count={cfg.spec.gpus}", f"--product={cfg.spec.gpu.product}",
                        f"--memory-mib={cfg.spec.gpu.memory_mib}",
                        # Only when shared: the argv (and the plan goldens) of an unshared node stay as they were.
                        *([f"--replicas={cfg.spec.gpu_replicas}"] if cfg.spec.gpu_replicas > 1 else [])),
            ready=file_exists(cfg.gpu_dir / "registered"), ready_timeout_s=60, depends_on=("kubelet",),
        ))
    out.append(Process(
        "kube-proxy", cfg.in_node(cfg.bin("kube-proxy"), f"--config={cfg.kube_proxy_config_path}", "--v=1"),
        ready=http_ok(f"http://{cfg.node_ip}:{KUBE_PROXY_HEALTHZ_PORT}/healthz"), ready_timeout_s=60,
        depends_on=("node-apiserver-proxy",),
    ))
    if cfg.spec.dns:
        out.append(Process(
            "coredns", [cfg.bin("coredns"), f"-conf={cfg.corefile}"],
            ready=http_ok(f"http://127.0.0.1:{cfg.dns_ports[1]}/ready"), ready_timeout_s=60,
        ))
    return out


def kubernetes_endpointslice(cfg: RealNodeConfig) -> dict:
    """Gives the ``kubernetes`` Service an endpoint (the relay), so in-cluster API clients work from pods; the API
    server's own endpoint reconciler is off (it would publish 127.0.0.1, which validation rejects)."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "kubernetes-sandbox-real-node",
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": "kubernetes",
                       "endpointslice.kubernetes.io/managed-by": "sandbox.aiconf.io"},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [cfg.host_ip], "conditions": {"ready": True}}],
        "ports": [{"name": "https", "port": cfg.apiserver_port, "protocol": "TCP"}],
    }


def dcgm_manifests(cfg: RealNodeConfig) -> list[dict]:
    """The simulated DCGM exporter: a DaemonSet on the real node and its Service (port 9400, like
    dcgm-exporter's), labelled as a simulation."""
    labels = {"app": "nvidia-dcgm-exporter", "app.kubernetes.io/name": "dcgm-exporter",
              "sandbox.aiconf.io/simulated": "true"}
    note = ("SIMULATED DCGM exporter for the aiconf sandbox's fake GPUs (aiconf.workloads.dcgm_sim): "
            "no GPU, no DCGM, no NVML")
    return [
        {"apiVersion": "v1", "kind": "Namespace",
         "metadata": {"name": DCGM_NAMESPACE, "labels": {SANDBOX_NODE_LABEL: "true"}}},
        {
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": DCGM_NAME, "namespace": DCGM_NAMESPACE, "labels": labels,
                         "annotations": {"sandbox.aiconf.io/note": note}},
            "spec": {
                "selector": {"matchLabels": {"app": "nvidia-dcgm-exporter"}},
                "template": {
                    "metadata": {"labels": labels, "annotations": {"sandbox.aiconf.io/note": note}},
                    "spec": {
                        "nodeSelector": {REAL_NODE_LABEL: "true"},
                        "tolerations": [{"operator": "Exists"}],
                        "automountServiceAccountToken": False,
                        "enableServiceLinks": False,
                        "terminationGracePeriodSeconds": 2,
                        "containers": [{
                            "name": "dcgm-exporter",
                            "image": images.PYTHON,
                            "imagePullPolicy": "Never",
                            "command": ["python3", "-m", "aiconf.workloads.dcgm_sim", "serve",
                                        f"--port={DCGM_PORT}", f"--gpu-dir={DCGM_GPU_DIR}"],
                            "env": [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                            "ports": [{"name": "metrics", "containerPort": DCGM_PORT}],
                            "readinessProbe": {"httpGet": {"path": "/health", "port": DCGM_PORT},
                                               "periodSeconds": 2},
                            "resources": {"requests": {"cpu": "10m", "memory": "32Mi"},
                                          "limits": {"memory": "128Mi"}},
                            "volumeMounts": [{"name": "gpu", "mountPath": DCGM_GPU_DIR, "readOnly": True}],
                        }],
                        "volumes": [{"name": "gpu", "hostPath": {"path": str(cfg.gpu_dir), "type": "Directory"}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": DCGM_NAME, "namespace": DCGM_NAMESPACE, "labels": labels,
                         "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": str(DCGM_PORT),
                                         "sandbox.aiconf.io/note": note}},
            "spec": {"selector": {"app": "nvidia-dcgm-exporter"},
                     "ports": [{"name": "gpu-metrics", "port": DCGM_PORT, "targetPort": DCGM_PORT}]},
        },
    ]


def plan_lines(cfg: RealNodeConfig) -> list[str]:
    """The dry-run plan of the real node (after the control plane)."""
    lines = [
        f"real node {cfg.node_name}: netns {cfg.netns}, veth {cfg.veth_host} {cfg.host_ip}/30 <-> {cfg.veth_node} "
        f"{cfg.node_ip}/30, bridge {cfg.bridge} {cfg.pod_gateway}/24 in the netns",
        f"route add {cfg.pod_cidr} via {cfg.node_ip}   # pod IPs reachable from the host",
        f"route replace {cfg.service_cidr} via {cfg.node_ip}   # ClusterIPs via kube-proxy (instead of unreachable)",
        f"mount namespace {cfg.mnt_ns}: tmpfs /run /var/lib /var/log; {cfg.kubelet_dir} on /var/lib/kubelet; "
        f"kernel tunables from {cfg.sysctl_dir}",
        f"cgroup {cfg.cgroup_root} in every cgroup hierarchy",
        f"write {cfg.containerd_config}, {cfg.cni_conf_dir}/10-aiconf.conflist, {cfg.kubelet_config_path}, "
        f"{cfg.kube_proxy_config_path}" + (f", {cfg.corefile}" if cfg.spec.dns else ""),
        f"build/import images {images.PAUSE}, {images.UTILITY}, {images.PYTHON}",
    ]
    for proc in processes(cfg):
        url = getattr(proc.ready, "url", None) or getattr(proc.ready, "what", "-")
        lines.append(f"start {proc.name}: {' '.join(proc.argv)}")
        lines.append(f"  ready when {url} (within {proc.ready_timeout_s:g}s)")
    lines.append(f"wait until node {cfg.node_name} is Ready" + (f" with nvidia.com/gpu: {cfg.spec.gpu_units}"
                                                                 if cfg.spec.gpus else ""))
    lines.append("apply EndpointSlice default/kubernetes-sandbox-real-node"
                 + (f"; DaemonSet+Service {DCGM_NAMESPACE}/{DCGM_NAME} (simulated DCGM)" if cfg.spec.dcgm else ""))
    return lines


# --- readiness probes -------------------------------------------------------------------------------------------


def tcp_ok(host: str, port: int, timeout_s: float = 1.0) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                return True
        except OSError:
            return False

    probe.what = f"tcp://{host}:{port} accepts"  # type: ignore[attr-defined]
    return probe


def unix_ok(path: Path, timeout_s: float = 1.0) -> Callable[[], bool]:
    def probe() -> bool:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout_s)
            try:
                s.connect(str(path))
                return True
            except OSError:
                return False

    probe.what = f"unix://{path} accepts"  # type: ignore[attr-defined]
    return probe


def file_exists(path: Path) -> Callable[[], bool]:
    def probe() -> bool:
        return path.exists()

    probe.what = f"{path} exists"  # type: ignore[attr-defined]
    return probe


# --- host setup and teardown --------------------------------------------------------------------------------------


def _run(argv: list[str], what: str, timeout_s: float = 30, check: bool = True,
         input: str | None = None) -> subprocess.CompletedProcess:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, input=input)
    except FileNotFoundError:
        raise SandboxError(f"real node: {what}: command {argv[0]!r} not found") from None
    except subprocess.TimeoutExpired:
        raise SandboxError(f"real node: {what}: {' '.join(argv)} did not finish within {timeout_s:g}s") from None
    if check and r.returncode != 0:
        raise SandboxError(f"real node: {what} failed: {' '.join(argv)}: {(r.stderr or r.stdout).strip()}")
    return r


def check_prerequisites() -> None:
    """Fail early, naming the Debian packages, when a command the node needs is missing."""
    import shutil

    missing = sorted({pkg for cmd, pkg in REQUIRED_COMMANDS.items() if not shutil.which(cmd)})
    if missing:
        raise SandboxError("the real node needs the Debian packages " + ", ".join(missing)
                           + " (make setup installs them; or run `aiconf sandbox up --no-real-node`)")
    if os.geteuid() != 0:
        raise SandboxError("the real node needs root (network and mount namespaces, cgroups, mknod)")
    try:
        import google.protobuf  # noqa: F401
        import grpc  # noqa: F401  (the device plugin's only dependency outside the standard library)
    except ImportError:
        raise SandboxError("the real node's device plugin needs the Python packages grpcio and protobuf "
                           "(pip install -e . installs them)") from None


#: inotify instances per user: every kube component, containerd's CNI watcher and the kubelet's file watchers
#: take some, and several sandboxes on one machine (all root) exhaust the usual 128 ("too many open files").
INOTIFY_INSTANCES = 1024
INOTIFY_SYSCTL = Path("/proc/sys/fs/inotify/max_user_instances")


def raise_inotify_limit(progress: Progress) -> None:
    """Raise ``fs.inotify.max_user_instances`` to :data:`INOTIFY_INSTANCES` when lower (never lowers it: other
    sandboxes may rely on it), as kind's known-issues page advises for several clusters on one host."""
    try:
        current = int(INOTIFY_SYSCTL.read_text())
        if current < INOTIFY_INSTANCES:
            INOTIFY_SYSCTL.write_text(f"{INOTIFY_INSTANCES}\n")
            progress(f"[up] real node: raised fs.inotify.max_user_instances {current} -> {INOTIFY_INSTANCES}")
    except OSError as e:
        progress(f"[up] real node: could not raise fs.inotify.max_user_instances ({e.strerror})")


def check_cri(cfg: RealNodeConfig) -> None:
    """containerd answers on its socket even when its CRI plugin failed to load; the kubelet then dies with
    "unknown service runtime.v1.RuntimeService". Ask containerd which plugins loaded and name the reason."""
    r = _run(["ctr", f"--address={cfg.containerd_sock}", "plugins", "ls"], "list containerd plugins", check=False)
    for line in r.stdout.splitlines():  # TYPE ID PLATFORMS STATUS
        parts = line.split()
        if parts[:2] == ["io.containerd.grpc.v1", "cri"] and parts[-1] == "ok":
            return
    reason = ""
    log = cfg.state_dir / "logs" / "containerd.log"
    with contextlib.suppress(OSError):
        reason = next((ln for ln in log.read_text().splitlines() if "failed to load plugin io.containerd.grpc.v1.cri"
                       in ln), "")
    raise SandboxError(f"real node: containerd's CRI plugin is not running ({reason or r.stdout.strip()[-300:]})")


def _cgroup_mounts() -> list[Path]:
    """Mount points of the cgroup hierarchies (v1 controllers and v2), from /proc/self/mountinfo."""
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fstype = right.split()[0] if right else ""
        if fstype in ("cgroup", "cgroup2"):
            out.append(Path(left.split()[4]))
    return out


def _cgroup_dirs(root: str) -> list[Path]:
    return [m / root.lstrip("/") for m in _cgroup_mounts()]


def create_cgroups(root: str) -> list[str]:
    """The kubelet's cgroupRoot must exist in every hierarchy; cpuset needs its cpus/mems copied from the parent."""
    made = []
    for d in _cgroup_dirs(root):
        d.mkdir(exist_ok=True)
        made.append(str(d))
        for knob in ("cpuset.cpus", "cpuset.mems"):
            f = d / knob
            if f.exists() and not f.read_text().strip():
                f.write_text((d.parent / knob).read_text())
    return made


def _ns_inode(path: str) -> tuple[int, int] | None:
    """(device, inode) of a namespace file: equal for two paths only when they name the same namespace."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _pids_in(cgroup_dirs: list[Path]) -> set[int]:
    pids: set[int] = set()
    for d in cgroup_dirs:
        if not d.is_dir():
            continue
        for procs in d.rglob("cgroup.procs"):
            with contextlib.suppress(OSError, ValueError):
                pids.update(int(x) for x in procs.read_text().split())
    return pids


def _pids_in_namespaces(mnt_ino: tuple[int, int] | None, net_ino: tuple[int, int] | None) -> set[int]:
    pids = set()
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        if mnt_ino is not None and _ns_inode(f"/proc/{entry.name}/ns/mnt") == mnt_ino:
            pids.add(int(entry.name))
        elif net_ino is not None and _ns_inode(f"/proc/{entry.name}/ns/net") == net_ino:
            pids.add(int(entry.name))
    return pids


def kill_leftovers(record: dict, timeout_s: float = 15) -> list[int]:
    """SIGKILL what the node's processes leave behind once the runtime stopped them: containerd shims (they
    daemonise out of containerd's process group but stay in the node's mount namespace) and container processes
    (in the kubelet's cgroup tree). Returns PIDs still alive after ``timeout_s`` (normally none)."""
    cg = [Path(d) for d in record.get("cgroups", [])]
    mnt = record.get("mount_ns")
    mnt_ino = _ns_inode(mnt) if mnt and record.get("mount_ns_made") and _mounted(Path(mnt)) else None
    net = f"/run/netns/{record['netns']}" if record.get("netns") else None
    net_ino = _ns_inode(net) if net and _mounted(Path(net)) else None
    deadline = time.monotonic() + timeout_s
    alive: set[int] = set()
    while time.monotonic() < deadline:
        alive = _pids_in(cg) | _pids_in_namespaces(mnt_ino, net_ino)
        alive.discard(os.getpid())
        if not alive:
            return []
        for pid in alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        # Bounded: killed processes vanish once their parent (or init) reaps them.
        time.sleep(0.2)
    return sorted(alive)


def remove_cgroups(dirs: list[str], timeout_s: float = 10) -> list[str]:
    """rmdir the cgroup trees bottom-up (retrying while the kernel still counts exiting tasks)."""
    problems = []
    deadline = time.monotonic() + timeout_s
    for top in dirs:
        top_p = Path(top)
        if not top_p.is_dir():
            continue
        while True:
            subdirs = sorted((p for p in top_p.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
            failed = None
            for d in [*subdirs, top_p]:
                try:
                    d.rmdir()
                except FileNotFoundError:
                    pass
                except OSError as e:
                    failed = f"rmdir {d}: {e.strerror}"
            if failed is None or not top_p.exists():
                break
            if time.monotonic() >= deadline:
                problems.append(failed)
                break
            time.sleep(0.2)
    return problems


def _mounted(path: Path) -> bool:
    target = str(path)
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        if line.split()[4] == target:
            return True
    return False


def setup_host(cfg: RealNodeConfig, record: dict, save: Callable[[], None]) -> None:
    """Make the netns, veth pair, bridge, routes, mount namespace, cgroups and the node's files.

    Each step is recorded in ``record`` (saved through ``save`` right after) before the next starts, so
    :func:`teardown` undoes exactly what exists, whenever ``up`` stopped.
    """
    if _run(["ip", "netns", "list"], "list netns").stdout.split().count(cfg.netns):
        raise SandboxError(f"real node: netns {cfg.netns} already exists (a sandbox in slot {cfg.slot} left it; "
                           f"remove it with `ip netns del {cfg.netns}` if no sandbox uses it)")
    for d in (cfg.node_dir, cfg.kubelet_dir, cfg.containerd_dir, cfg.cni_conf_dir, cfg.cni_ipam_dir, cfg.gpu_dir,
              cfg.pki, cfg.pod_logs_dir, cfg.sysctl_dir, cfg.ns_dir):
        d.mkdir(parents=True, exist_ok=True)

    # Network: netns, veth, addresses, bridge, routes.
    _run(["ip", "netns", "add", cfg.netns], "create netns")
    record["netns"] = cfg.netns
    save()
    _run(["ip", "link", "add", cfg.veth_host, "type", "veth", "peer", "name", cfg.veth_node, "netns", cfg.netns],
         "create veth pair")
    record["veth"] = cfg.veth_host
    save()
    n = ["ip", "-n", cfg.netns]
    for argv in (
        ["ip", "addr", "add", f"{cfg.host_ip}/30", "dev", cfg.veth_host],
        ["ip", "link", "set", cfg.veth_host, "up"],
        [*n, "link", "set", "lo", "up"],
        [*n, "addr", "add", f"{cfg.node_ip}/30", "dev", cfg.veth_node],
        [*n, "link", "set", cfg.veth_node, "up"],
        # The CNI bridge plugin reuses an existing bridge; made here so the ClusterIP route below has a device.
        [*n, "link", "add", cfg.bridge, "type", "bridge"],
        [*n, "addr", "add", f"{cfg.pod_gateway}/24", "dev", cfg.bridge],
        [*n, "link", "set", cfg.bridge, "up"],
        # Locally generated ClusterIP traffic needs a route before kube-proxy's OUTPUT DNAT; one nobody DNATs
        # dies on the bridge (no ARP answer) instead of bouncing between host and netns.
        [*n, "route", "add", cfg.service_cidr, "dev", cfg.bridge],
    ):
        _run(argv, "configure the node network")
    _run(["ip", "route", "add", cfg.pod_cidr, "via", cfg.node_ip], "route the pod CIDR")
    record["routes"] = [cfg.pod_cidr]
    save()
    _run(["ip", "route", "replace", cfg.service_cidr, "via", cfg.node_ip], "route the ClusterIP range to the node")
    record["service_route"] = cfg.service_cidr
    save()

    # Mount namespace: a private bind of ns/ (unshare --mount=FILE needs a non-shared parent mount), then the
    # namespace pinned on ns/mnt, then its mounts.
    _run(["mount", "--bind", str(cfg.ns_dir), str(cfg.ns_dir)], "bind the mount-namespace folder")
    record["ns_bind"] = str(cfg.ns_dir)
    save()
    _run(["mount", "--make-private", str(cfg.ns_dir)], "make the mount-namespace folder private")
    cfg.mnt_ns.touch()
    record["mount_ns"] = str(cfg.mnt_ns)
    _run(["unshare", f"--mount={cfg.mnt_ns}", "--propagation", "private", "true"], "create the mount namespace")
    record["mount_ns_made"] = True
    save()
    for rel, value in KERNEL_TUNABLES.items():
        (cfg.sysctl_dir / rel.replace("/", ".")).write_text(value + "\n")
    cfg.resolv_conf.write_text(resolv_conf_text(cfg))
    script = "\n".join([
        "set -e",
        "mount -t tmpfs -o mode=0755,size=64m aiconf-node-run /run",
        "mount -t tmpfs -o mode=0755,size=64m aiconf-node-varlib /var/lib",
        "mount -t tmpfs -o mode=0755,size=64m aiconf-node-varlog /var/log",
        "mkdir -p /var/lib/kubelet /var/lib/cni /run/netns",
        f"mount --bind '{cfg.kubelet_dir}' /var/lib/kubelet",
        f"mount --bind '{cfg.resolv_conf}' /etc/resolv.conf",
        *(f"mount --bind '{cfg.sysctl_dir / rel.replace('/', '.')}' /proc/sys/{rel}" for rel in KERNEL_TUNABLES),
    ])
    _run(["nsenter", f"--mount={cfg.mnt_ns}", "--", "sh", "-c", script], "set up the node's mounts")

    record["cgroups"] = []
    save()
    record["cgroups"] = create_cgroups(cfg.cgroup_root)
    save()


def teardown(record: dict | None, progress: Progress | None = None) -> list[str]:
    """Undo :func:`setup_host` (after the runtime stopped the node's processes). Tolerant: every step runs even
    if an earlier one failed; returns the problems (empty when everything is gone)."""
    if not record:
        return []
    say = progress or (lambda m: None)
    problems: list[str] = []
    survivors = kill_leftovers(record)
    if survivors:
        problems.append(f"real node: processes {survivors} survived SIGKILL")
    problems += remove_cgroups(record.get("cgroups", []))
    for key in ("mount_ns", "ns_bind"):
        path = record.get(key)
        if path and _mounted(Path(path)):
            r = _run(["umount", path], f"unmount {path}", check=False)
            if r.returncode != 0:
                r = _run(["umount", "-l", path], f"unmount {path}", check=False)
            if r.returncode != 0:
                problems.append(f"umount {path}: {r.stderr.strip()}")
    svc = record.get("service_route")
    if svc:
        # Fence first: the ClusterIP range goes back to `unreachable` before its route via the veth disappears.
        r = _run(["ip", "route", "replace", "unreachable", svc], "fence the ClusterIP range", check=False)
        if r.returncode != 0:
            problems.append(f"ip route replace unreachable {svc}: {r.stderr.strip()}")
    for cidr in record.get("routes", []):
        r = _run(["ip", "route", "del", cidr], f"delete route {cidr}", check=False)
        if r.returncode != 0 and "No such process" not in r.stderr and "Cannot find device" not in r.stderr:
            problems.append(f"ip route del {cidr}: {r.stderr.strip()}")
    veth = record.get("veth")
    if veth:
        r = _run(["ip", "link", "del", veth], "delete the veth pair", check=False)
        if r.returncode != 0 and "Cannot find device" not in r.stderr:
            problems.append(f"ip link del {veth}: {r.stderr.strip()}")
    netns = record.get("netns")
    if netns:
        r = _run(["ip", "netns", "del", netns], "delete the netns", check=False)
        if r.returncode != 0 and "No such file" not in r.stderr:
            problems.append(f"ip netns del {netns}: {r.stderr.strip()}")
    if not problems:
        say(f"[down] real node: removed netns {netns or '-'}, veth {veth or '-'}, mounts, cgroups")
    return problems


# --- startup ---------------------------------------------------------------------------------------------------


def write_files(cfg: RealNodeConfig) -> None:
    """Certificates, kubeconfigs and configs of the node's components."""
    ca_dir = cfg.state_dir / "pki"
    ca, ca_key = ca_dir / "ca.crt", ca_dir / "ca.key"
    pki.issue_cert(cfg.pki, "kubelet-client", ca_cert=ca, ca_key=ca_key, common_name=f"system:node:{cfg.node_name}",
                   organizations=("system:nodes",), client=True)
    pki.issue_cert(cfg.pki, "kubelet-serving", ca_cert=ca, ca_key=ca_key, common_name=f"system:node:{cfg.node_name}",
                   organizations=("system:nodes",), dns_names=(cfg.node_name,), ip_addresses=(cfg.node_ip,),
                   server=True)
    pki.issue_cert(cfg.pki, "kube-proxy", ca_cert=ca, ca_key=ca_key, common_name="system:kube-proxy", client=True)
    for who, user in (("kubelet", f"system:node:{cfg.node_name}"), ("kube-proxy", "system:kube-proxy")):
        stem = "kubelet-client" if who == "kubelet" else "kube-proxy"
        kc = pki.kubeconfig_dict(cfg.apiserver_relay, ca, cfg.pki / f"{stem}.crt", cfg.pki / f"{stem}.key", user=user)
        # The relay's address is not in the API server's certificate; its name "localhost" is.
        kc["clusters"][0]["cluster"]["tls-server-name"] = "localhost"
        path = cfg.kubeconfig(who)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(kc, f, indent=2)
    cfg.containerd_config.write_text(containerd_config_text(cfg))
    (cfg.cni_conf_dir / "10-aiconf.conflist").write_text(json.dumps(cni_conflist(cfg), indent=2) + "\n")
    cfg.kubelet_config_path.write_text(json.dumps(kubelet_config(cfg), indent=2) + "\n")
    cfg.kube_proxy_config_path.write_text(json.dumps(kube_proxy_config(cfg), indent=2) + "\n")
    if cfg.spec.dns:
        cfg.corefile.write_text(corefile_text(cfg, cfg.state_dir / "kubeconfig"))


def import_images(cfg: RealNodeConfig, built: list[images.Built], progress: Progress) -> float:
    """``ctr -n k8s.io images import`` each archive into the node's containerd; returns seconds taken."""
    t = time.monotonic()
    for b in built:
        _run(["ctr", f"--address={cfg.containerd_sock}", "-n", "k8s.io", "images", "import", str(b.path)],
             f"import {b.ref}", timeout_s=180)
    secs = time.monotonic() - t
    progress(f"[up] real node: imported {', '.join(b.ref for b in built)} ({secs:.1f}s)")
    return secs


class _ImageBuild(threading.Thread):
    """Builds (or finds cached) the images while the network and containerd come up."""

    def __init__(self):
        super().__init__(daemon=True, name="aiconf-image-build")
        self.result: list[images.Built] = []
        self.error: BaseException | None = None
        self.seconds = 0.0

    def run(self) -> None:
        t = time.monotonic()
        try:
            self.result = images.build_all()
        except BaseException as e:  # noqa: BLE001 (re-raised by the caller)
            self.error = e
        self.seconds = time.monotonic() - t

    def get(self, timeout_s: float = 600) -> list[images.Built]:
        self.join(timeout_s)
        if self.is_alive():
            raise SandboxError(f"building the node images took longer than {timeout_s:g}s")
        if self.error:
            if isinstance(self.error, SandboxError):
                raise self.error
            raise SandboxError(f"building the node images failed: {type(self.error).__name__}: {self.error}")
        return self.result


def start(sb, state: dict, cfg: RealNodeConfig) -> dict:
    """Bring the real node up inside a starting sandbox (``sb`` is the :class:`~aiconf.sandbox.cluster.Sandbox`,
    whose runtime launches and records the processes). Returns the node's state record (also ``state["real_node"]``)."""
    say = sb.progress
    t0 = time.monotonic()
    check_prerequisites()
    raise_inotify_limit(say)
    if len(str(cfg.containerd_sock)) > 100:
        raise SandboxError(f"real node: the state dir path is too long for unix sockets ({cfg.containerd_sock}); "
                           "use a shorter --state-dir")
    build = _ImageBuild()
    build.start()
    record: dict = {"node": cfg.node_name, "slot": cfg.slot, "gpus": cfg.spec.gpus,
                    "gpu_replicas": cfg.spec.gpu_replicas, "taint": cfg.spec.taint,
                    "dns": cfg.dns_ip if cfg.spec.dns else None, "host_ip": cfg.host_ip, "node_ip": cfg.node_ip,
                    "pod_cidr": cfg.pod_cidr, "service_cidr": cfg.service_cidr, "gpu_dir": str(cfg.gpu_dir),
                    "cgroup_root": cfg.cgroup_root, "timings": {}}
    state["real_node"] = record

    def save() -> None:
        sb._save_state(state)

    save()
    setup_host(cfg, record, save)
    write_files(cfg)
    record["timings"]["host_setup_s"] = round(time.monotonic() - t0, 2)
    say(f"[up] real node: netns {cfg.netns}, veth {cfg.veth_host} ({cfg.host_ip}) <-> {cfg.node_ip}, "
        f"pods {cfg.pod_cidr} ({record['timings']['host_setup_s']:.1f}s)")

    procs = {p.name: p for p in processes(cfg)}
    for name in ("node-apiserver-proxy", "containerd"):
        sb._launch(procs[name], state)
    for name in ("node-apiserver-proxy", "containerd"):
        sb._wait_ready(procs[name], state)
    check_cri(cfg)
    built = build.get()
    record["timings"]["image_build_s"] = round(build.seconds, 2)
    record["images"] = {b.ref: {"archive": str(b.path), "digest": b.digest, "cached": b.cached} for b in built}
    say(f"[up] real node: images {'cached' if all(b.cached for b in built) else 'built'} "
        f"({build.seconds:.1f}s)")
    record["timings"]["image_import_s"] = round(import_images(cfg, built, say), 2)
    t_kubelet = time.monotonic()
    rest = [p for n, p in procs.items() if n not in ("node-apiserver-proxy", "containerd")]
    for proc in rest:
        sb._launch(proc, state)
        if proc.name == "kubelet":
            sb._wait_ready(proc, state)
    for proc in rest:
        if proc.name != "kubelet":
            sb._wait_ready(proc, state)
    save()
    wait_node_ready(sb, cfg)
    record["timings"]["node_ready_s"] = round(time.monotonic() - t_kubelet, 2)
    say(f"[up] real node {cfg.node_name} Ready ({record['timings']['node_ready_s']:.1f}s after the kubelet started)")
    label_node(sb, cfg)
    objs = [kubernetes_endpointslice(cfg)]
    if cfg.spec.dcgm and cfg.spec.gpus:
        objs += dcgm_manifests(cfg)
    t_pod = time.monotonic()
    sb.apply(objs)
    if cfg.spec.dcgm and cfg.spec.gpus:
        wait_pod_ready(sb, DCGM_NAMESPACE, "app=nvidia-dcgm-exporter", timeout_s=120)
        record["timings"]["first_pod_ready_s"] = round(time.monotonic() - t_pod, 2)
        say(f"[up] real node: simulated DCGM exporter Ready ({record['timings']['first_pod_ready_s']:.1f}s)")
    record["timings"]["total_s"] = round(time.monotonic() - t0, 2)
    save()
    return record


def _core_api(sb):
    from kubernetes import client

    api = sb.api_client()
    return api, client.CoreV1Api(api)


def wait_node_ready(sb, cfg: RealNodeConfig, timeout_s: float = 120) -> None:
    """Watch the node until Ready (and, with GPUs, allocatable ``nvidia.com/gpu`` as configured)."""
    from kubernetes import watch

    api, core = _core_api(sb)
    deadline = time.monotonic() + timeout_s
    want_gpus = str(cfg.spec.gpu_units) if cfg.spec.gpus else None

    def ready(n) -> bool:
        conds = {c.type: c.status for c in (n.status.conditions or [])}
        alloc = n.status.allocatable or {}
        return conds.get("Ready") == "True" and (want_gpus is None or alloc.get("nvidia.com/gpu") == want_gpus)

    last = "not registered"
    try:
        while time.monotonic() < deadline:
            nodes = core.list_node(field_selector=f"metadata.name={cfg.node_name}")
            if nodes.items and ready(nodes.items[0]):
                return
            if nodes.items:
                n = nodes.items[0]
                last = (f"conditions {[(c.type, c.status) for c in n.status.conditions or []]}, "
                        f"allocatable nvidia.com/gpu={(n.status.allocatable or {}).get('nvidia.com/gpu')}")
            w = watch.Watch()
            for ev in w.stream(core.list_node, field_selector=f"metadata.name={cfg.node_name}",
                               resource_version=nodes.metadata.resource_version,
                               timeout_seconds=max(1, min(10, int(deadline - time.monotonic())))):
                if ready(ev["object"]):
                    w.stop()
                    return
    finally:
        api.close()
    from aiconf.sandbox.cluster import tail

    raise SandboxError(f"real node {cfg.node_name} not Ready after {timeout_s:g}s ({last}); kubelet log:\n"
                       f"{tail(sb.logs_dir / 'kubelet.log', 15)}")


#: Node annotation naming the host folder of the simulated GPUs' device nodes (``dev/nvidia<N>``), map and loads.
GPU_DIR_ANNOTATION = "sandbox.aiconf.io/gpu-dir"


def label_node(sb, cfg: RealNodeConfig) -> None:
    """Set the labels the kubelet may not set on itself (GPU Operator-style ``feature.node.kubernetes.io/*``) and
    the annotation that says where the simulated GPUs' files are on the host."""
    api, core = _core_api(sb)
    try:
        annotations = {GPU_DIR_ANNOTATION: str(cfg.gpu_dir)} if cfg.spec.gpus else {}
        core.patch_node(cfg.node_name, {"metadata": {"labels": node_labels(cfg), "annotations": annotations}})
    finally:
        api.close()


def wait_pod_ready(sb, namespace: str, selector: str, timeout_s: float = 120) -> None:
    from kubernetes import watch

    api, core = _core_api(sb)
    deadline = time.monotonic() + timeout_s

    def ready(p) -> bool:
        return any(c.type == "Ready" and c.status == "True" for c in (p.status.conditions or []))

    try:
        while time.monotonic() < deadline:
            pods = core.list_namespaced_pod(namespace, label_selector=selector)
            if pods.items and all(ready(p) for p in pods.items):
                return
            w = watch.Watch()
            for ev in w.stream(core.list_namespaced_pod, namespace, label_selector=selector,
                               resource_version=pods.metadata.resource_version,
                               timeout_seconds=max(1, min(10, int(deadline - time.monotonic())))):
                if ready(ev["object"]):
                    w.stop()
                    return
    finally:
        api.close()
    raise SandboxError(f"real node: pods {namespace}/{selector} not Ready after {timeout_s:g}s; kubelet log:\n"
                       + _kubelet_tail(sb))


def _kubelet_tail(sb) -> str:
    from aiconf.sandbox.cluster import tail

    return tail(sb.logs_dir / "kubelet.log", 15)


# --- the API server relay ----------------------------------------------------------------------------------------


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


def serve_proxy(listen: tuple[str, int], to: tuple[str, int]) -> None:
    """Relay TCP connections from ``listen`` to ``to`` (TLS passes through untouched) until SIGTERM."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.wait_for(asyncio.open_connection(*to), timeout=10)
        except (TimeoutError, OSError):
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_w), _pipe(up_r, writer))

    async def main() -> None:
        server = await asyncio.start_server(handle, listen[0], listen[1], reuse_address=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(f"relaying {listen[0]}:{listen[1]} -> {to[0]}:{to[1]}", flush=True)
        async with server:
            await stop.wait()

    asyncio.run(main())


def _hostport(s: str) -> tuple[str, int]:
    host, _, port = s.rpartition(":")
    if not host or not re.fullmatch(r"\d+", port):
        raise SystemExit(f"bad address {s!r} (want HOST:PORT)")
    return host, int(port)


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m aiconf.sandbox.realnode")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("proxy", help="relay TCP (the real node's path to the API server)")
    p.add_argument("--listen", required=True)
    p.add_argument("--to", required=True)
    args = ap.parse_args(argv)
    if args.cmd == "proxy":
        serve_proxy(_hostport(args.listen), _hostport(args.to))
    return 0


if __name__ == "__main__":
    sys.exit(main())
