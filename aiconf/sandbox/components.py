"""The sandbox's control-plane processes as data: pure functions from a :class:`ClusterConfig` to ``Process`` specs.

Nothing here starts anything or touches the disk; :mod:`aiconf.sandbox.cluster` writes the files this module names
and launches the processes. That split is what makes ``aiconf sandbox plan`` (a dry run) and the argv unit tests
possible.

Topology (everything on 127.0.0.1, ports chosen free per sandbox and recorded in ``sandbox.json``):

- etcd: plain HTTP client and peer URLs on loopback, ``--unsafe-no-fsync`` (what envtest does: a throwaway store
  does not need durability, and fsync dominates latency on small VMs).
- kube-apiserver: binds 127.0.0.1 only and advertises 127.0.0.1. A loopback advertise address is allowed, but the
  endpoint reconciler would then write it into the ``kubernetes`` EndpointSlice, which validation rejects; hence
  ``--endpoint-reconciler-type=none`` (nothing in the sandbox reaches the API through that Service). Aggregation is
  configured (front-proxy CA, ``front-proxy-client``) so add-ons can register APIServices; those point at
  ``type: ExternalName`` Services whose ``externalName`` is ``127.0.0.1`` (see go-components.md §0), which needs
  ``--enable-aggregator-routing=false``. Webhooks can use that too, or ``clientConfig.url: https://127.0.0.1:…``.
- kube-controller-manager and kube-scheduler: no leader election (one replica), HTTPS on loopback with certs from
  the sandbox CA.
- kwok: simulates the kubelets of the nodes annotated ``kwok.x-k8s.io/node=fake``; its kubelet-like server (logs,
  exec, fake ``/metrics/resource``) is every fake node's address (127.0.0.1:<kwok port>). Fake pod IPs come from
  ``pod_cidr``, a range the runtime makes unreachable on the host so nothing can ever send packets to them.
"""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from ipaddress import ip_network
from pathlib import Path

from aiconf.sandbox.addon import Process
from aiconf.sandbox.versions import KWOK_VERSION

#: The annotation kwok selects its nodes by (``--manage-nodes-with-annotation-selector``).
KWOK_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")

#: Launch order of the core processes (see cluster.Sandbox._start_core for why).
CORE_ORDER = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


@dataclass(frozen=True)
class Ports:
    """The TCP ports of one sandbox, all on 127.0.0.1."""

    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int
    kwok: int

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ClusterConfig:
    """Everything the process specs depend on.

    Attributes:
        state_dir: the sandbox's folder (pki/, etcd/, logs/, ...).
        bins: ``{binary name: path}`` of the built components (kube-apiserver, etcd, kwok, ...).
        ports: the chosen ports.
        pod_cidr: kwok's fake pod IP range (made unreachable on the host).
        service_cidr: the Service ClusterIP range (also made unreachable: no kube-proxy exists to serve it).
        extra_apiserver_args / extra_controller_manager_args / extra_scheduler_args: appended verbatim
            (``--feature-gates=...`` for an experiment, for example).
    """

    state_dir: Path
    bins: Mapping[str, Path]
    ports: Ports
    pod_cidr: str = "10.99.0.0/20"
    service_cidr: str = "10.96.0.0/20"
    extra_apiserver_args: tuple[str, ...] = ()
    extra_controller_manager_args: tuple[str, ...] = ()
    extra_scheduler_args: tuple[str, ...] = ()
    probe_timeout_s: float = field(default=1.0, compare=False)

    @property
    def pki(self) -> Path:
        return self.state_dir / "pki"

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    def component_kubeconfig(self, name: str) -> Path:
        return self.state_dir / "kubeconfigs" / f"{name}.kubeconfig"

    @property
    def apiserver_url(self) -> str:
        return f"https://127.0.0.1:{self.ports.apiserver}"

    @property
    def service_ip(self) -> str:
        """The ``kubernetes`` Service's ClusterIP: the first address of the service range."""
        return str(next(ip_network(self.service_cidr).hosts()))

    @property
    def kwok_config(self) -> Path:
        return self.state_dir / "kwok" / "kwok.yaml"

    def bin(self, name: str) -> str:
        try:
            return str(self.bins[name])
        except KeyError:
            raise KeyError(f"binary {name!r} is not among the built components ({', '.join(sorted(self.bins))})") from None


# --- readiness probes -------------------------------------------------------------------------------------------


def http_ok(url: str, *, ca: Path | None = None, cert: Path | None = None, key: Path | None = None,
            timeout_s: float = 1.0) -> Callable[[], bool]:
    """A probe: True when ``GET url`` answers 200. HTTPS verifies against ``ca`` and may present a client cert.

    The SSL context is built on first use, not here, so building specs stays free of file reads.
    """
    state: dict[str, ssl.SSLContext] = {}

    def probe() -> bool:
        ctx = None
        if url.startswith("https://"):
            if "ctx" not in state:
                c = ssl.create_default_context(cafile=str(ca) if ca else None)
                if cert and key:
                    c.load_cert_chain(str(cert), str(key))
                state["ctx"] = c
            ctx = state["ctx"]
        try:
            with urllib.request.urlopen(url, timeout=timeout_s, context=ctx) as resp:  # noqa: S310 (loopback only)
                return resp.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            # Not listening yet, or answering 500 while post-start hooks finish: keep polling.
            return False

    probe.url = url  # type: ignore[attr-defined]  (shown by the dry-run plan)
    return probe


# --- the processes -----------------------------------------------------------------------------------------------


def etcd(cfg: ClusterConfig) -> Process:
    client = f"http://127.0.0.1:{cfg.ports.etcd_client}"
    peer = f"http://127.0.0.1:{cfg.ports.etcd_peer}"
    argv = [
        cfg.bin("etcd"),
        "--name=aiconf",
        f"--data-dir={cfg.state_dir / 'etcd'}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=aiconf={peer}",
        "--initial-cluster-state=new",
        "--unsafe-no-fsync=true",
        # Small snapshots and a bounded backend keep a long-lived sandbox small on disk.
        "--snapshot-count=10000",
        "--quota-backend-bytes=2147483648",
        "--log-level=warn",
    ]
    return Process("etcd", argv, ready=http_ok(f"{client}/readyz", timeout_s=cfg.probe_timeout_s), ready_timeout_s=20)


def apiserver(cfg: ClusterConfig) -> Process:
    p = cfg.pki
    argv = [
        cfg.bin("kube-apiserver"),
        f"--etcd-servers=http://127.0.0.1:{cfg.ports.etcd_client}",
        "--bind-address=127.0.0.1",
        f"--secure-port={cfg.ports.apiserver}",
        "--advertise-address=127.0.0.1",
        "--endpoint-reconciler-type=none",
        f"--cert-dir={cfg.state_dir / 'apiserver'}",
        f"--tls-cert-file={p / 'apiserver.crt'}",
        f"--tls-private-key-file={p / 'apiserver.key'}",
        f"--client-ca-file={p / 'ca.crt'}",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        "--anonymous-auth=true",  # /livez, /readyz, /version for anonymous probes, as in kubeadm clusters
        "--allow-privileged=true",
        f"--service-cluster-ip-range={cfg.service_cidr}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={p / 'sa.pub'}",
        f"--service-account-signing-key-file={p / 'sa.key'}",
        # The API server's client identity towards "kubelets" (kwok's server), verified by kwok's serving cert.
        f"--kubelet-client-certificate={p / 'apiserver-kubelet-client.crt'}",
        f"--kubelet-client-key={p / 'apiserver-kubelet-client.key'}",
        f"--kubelet-certificate-authority={p / 'ca.crt'}",
        "--kubelet-preferred-address-types=InternalIP,Hostname",
        # Aggregation layer (APIServices of add-ons: metrics, custom metrics, Kueue visibility, ...).
        f"--proxy-client-cert-file={p / 'front-proxy-client.crt'}",
        f"--proxy-client-key-file={p / 'front-proxy-client.key'}",
        f"--requestheader-client-ca-file={p / 'front-proxy-ca.crt'}",
        "--requestheader-allowed-names=front-proxy-client",
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        # Off: with routing on, 1.36 resolves Service-backed webhooks and APIServices through EndpointSlices
        # and refuses ExternalName Services ("unsupported service type"); off, it dials https://<externalName>
        # (127.0.0.1) for those, which is how add-ons serve from loopback. A ClusterIP it might dial instead
        # lies in the unreachable service range, so nothing leaves the machine either way.
        "--enable-aggregator-routing=false",
        "--profiling=false",
        "--v=1",
        *cfg.extra_apiserver_args,
    ]
    ready = http_ok(
        f"{cfg.apiserver_url}/readyz",
        ca=p / "ca.crt",
        cert=p / "admin.crt",
        key=p / "admin.key",
        timeout_s=cfg.probe_timeout_s,
    )
    return Process("kube-apiserver", argv, ready=ready, ready_timeout_s=60, depends_on=("etcd",))


def controller_manager(cfg: ClusterConfig) -> Process:
    p = cfg.pki
    kc = cfg.component_kubeconfig("kube-controller-manager")
    argv = [
        cfg.bin("kube-controller-manager"),
        f"--kubeconfig={kc}",
        f"--authentication-kubeconfig={kc}",
        f"--authorization-kubeconfig={kc}",
        "--bind-address=127.0.0.1",
        f"--secure-port={cfg.ports.controller_manager}",
        f"--tls-cert-file={p / 'kube-controller-manager-serving.crt'}",
        f"--tls-private-key-file={p / 'kube-controller-manager-serving.key'}",
        f"--client-ca-file={p / 'ca.crt'}",
        f"--requestheader-client-ca-file={p / 'front-proxy-ca.crt'}",
        "--leader-elect=false",
        "--controllers=*",
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={p / 'sa.key'}",
        f"--root-ca-file={p / 'ca.crt'}",
        f"--cluster-signing-cert-file={p / 'ca.crt'}",
        f"--cluster-signing-key-file={p / 'ca.key'}",
        f"--service-cluster-ip-range={cfg.service_cidr}",
        "--allocate-node-cidrs=false",  # kwok takes pod IPs from --cidr when a node has no podCIDR
        "--horizontal-pod-autoscaler-sync-period=5s",
        "--profiling=false",
        "--v=1",
        *cfg.extra_controller_manager_args,
    ]
    ready = http_ok(
        f"https://127.0.0.1:{cfg.ports.controller_manager}/healthz", ca=p / "ca.crt", timeout_s=cfg.probe_timeout_s
    )
    return Process("kube-controller-manager", argv, ready=ready, ready_timeout_s=30, depends_on=("kube-apiserver",))


def scheduler(cfg: ClusterConfig) -> Process:
    p = cfg.pki
    kc = cfg.component_kubeconfig("kube-scheduler")
    argv = [
        cfg.bin("kube-scheduler"),
        f"--kubeconfig={kc}",
        f"--authentication-kubeconfig={kc}",
        f"--authorization-kubeconfig={kc}",
        "--bind-address=127.0.0.1",
        f"--secure-port={cfg.ports.scheduler}",
        f"--tls-cert-file={p / 'kube-scheduler-serving.crt'}",
        f"--tls-private-key-file={p / 'kube-scheduler-serving.key'}",
        f"--client-ca-file={p / 'ca.crt'}",
        f"--requestheader-client-ca-file={p / 'front-proxy-ca.crt'}",
        "--leader-elect=false",
        "--profiling=false",
        "--v=1",
        *cfg.extra_scheduler_args,
    ]
    ready = http_ok(f"https://127.0.0.1:{cfg.ports.scheduler}/healthz", ca=p / "ca.crt", timeout_s=cfg.probe_timeout_s)
    return Process("kube-scheduler", argv, ready=ready, ready_timeout_s=30, depends_on=("kube-apiserver",))


def kwok(cfg: ClusterConfig) -> Process:
    p = cfg.pki
    port = cfg.ports.kwok
    argv = [
        cfg.bin("kwok"),
        f"--kubeconfig={cfg.component_kubeconfig('kwok')}",
        f"--config={cfg.kwok_config}",
        "--manage-nodes-with-annotation-selector={}={}".format(*KWOK_NODE_ANNOTATION),
        f"--cidr={cfg.pod_cidr}",
        "--node-ip=127.0.0.1",
        f"--node-port={port}",
        f"--server-address=127.0.0.1:{port}",
        f"--tls-cert-file={p / 'kwok-serving.crt'}",
        f"--tls-private-key-file={p / 'kwok-serving.key'}",
        # Without a lease duration kwok renews no Leases, and the node lifecycle controller marks every fake
        # node NotReady after its 40 s grace period (the heartbeat stage only runs every ~10 minutes).
        "--node-lease-duration-seconds=40",
    ]
    # KWOK_WORKDIR keeps kwok from also loading a ~/.kwok/kwok.yaml that may exist on the machine.
    env = {"KWOK_WORKDIR": str(cfg.state_dir / "kwok")}
    ready = http_ok(f"https://127.0.0.1:{port}/healthz", ca=p / "ca.crt", timeout_s=cfg.probe_timeout_s)
    return Process("kwok", argv, env=env, ready=ready, ready_timeout_s=30, depends_on=("kube-apiserver",))


def core(cfg: ClusterConfig) -> list[Process]:
    """The control plane in start order."""
    return [etcd(cfg), apiserver(cfg), controller_manager(cfg), scheduler(cfg), kwok(cfg)]


def kwok_config_text() -> str:
    """kwok's ``--config``: the Stages (node and pod lifecycle) and fake resource metrics, vendored from kwok."""
    return resources.files("aiconf.sandbox").joinpath(f"data/kwok-{KWOK_VERSION}.yaml").read_text()


def kubeconfig_identities() -> dict[str, str]:
    """``{kubeconfig name: client cert stem}`` for the per-component kubeconfigs under ``kubeconfigs/``."""
    return {"kube-controller-manager": "kube-controller-manager", "kube-scheduler": "kube-scheduler", "kwok": "kwok"}
