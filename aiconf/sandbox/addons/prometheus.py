"""A real monitoring system for the real node: Prometheus 3.16 with Kubernetes service discovery.

Prometheus runs the way platforms run it: a Deployment (one ``hostNetwork`` pod on the real node, service account
``prometheus``, in-cluster credentials) behind a Service ``aiconf-monitoring/prometheus`` (label
``app.kubernetes.io/name=prometheus``, port ``web`` 9090). A check finds it by that label and queries it through
the API server's service proxy (``/api/v1/namespaces/aiconf-monitoring/services/prometheus:web/proxy/...``), as on
a real cluster; pods reach it at the ClusterIP; the host reaches ``http://<node IP>:9090`` through the veth route.
It discovers workloads the way real platforms do:

* **Annotations** (the ``kubernetes-pods`` and ``kubernetes-service-endpoints`` jobs of Prometheus's own example
  configuration): a pod annotated ``prometheus.io/scrape: "true"`` is scraped on ``prometheus.io/port`` (else each
  declared container port) at ``prometheus.io/path`` (default ``/metrics``); a Service annotated the same way has
  its endpoints scraped (the simulated DCGM exporter's Service is).
* **ServiceMonitor / PodMonitor** (the Prometheus Operator's API): the Operator itself cannot run here (it only
  manages the Prometheus StatefulSets it creates, from upstream images), so only its two CRDs are applied (from
  ``github.com/prometheus-operator/prometheus-operator@`` :data:`OPERATOR_VERSION`) and a small translator process
  on the host (``python -m aiconf.sandbox.addons.prometheus sync``) turns every ServiceMonitor and PodMonitor into
  scrape jobs in the Operator's style (``serviceMonitor/<ns>/<name>/<i>``, ``podMonitor/<ns>/<name>/<i>``),
  rewrites the configuration and asks Prometheus to reload (``POST /-/reload``). What it translated, and what it
  skipped, is in ``state_dir/prometheus/monitors.json``.
* Itself (job ``prometheus``).

Network rule. Only pods on the real node are scraped, enforced twice in every Kubernetes job: the discovery
itself asks the API only for pods on the real node (``selectors: field spec.nodeName=<node>``), and relabelling
keeps a target only when its node is the real node *and* its final ``__address__`` is an IP of the real node's
pod CIDR (an annotation may name another port, but nothing can point a scrape at a kwok fake pod IP or anywhere
else; the check is repeated after a monitor's own relabelings). Prometheus listens only on the node IP, inside
the node's network namespace, which has no default route; it reaches the API server at the ``kubernetes``
ClusterIP (kube-proxy sends that to the real node's relay on the host side of the veth, as for every in-cluster
client). Nothing is bound in the host's network namespace except the translator's outgoing connections.

Binary. Debian's ``prometheus`` package (2.42) cannot be used: Debian builds it without the Kubernetes discovery
(no ``kubernetes_sd_configs``; its SD list is file, http, DNS and cloud ones). So :data:`PROMETHEUS` builds
``github.com/prometheus/prometheus/cmd/prometheus`` v0.316.0 (= Prometheus 3.16.0; plain module, no
replace/exclude) with upstream's build tags ``remove_all_sd,enable_kubernetes_sd`` (only the Kubernetes, file and
HTTP discoveries are compiled in) and without ``builtinassets`` (no web UI; the HTTP API is complete). The static
binary runs in the sandbox's busybox image (``localhost/aiconf-utility:0.1``), mounted read-only by hostPath from
the build cache; the configuration and the TSDB live in ``state_dir/prometheus/`` (hostPath ``/sandbox``).

Wiring: ``--config.file=/sandbox/prometheus.yml --storage.tsdb.path=/sandbox/data
--web.listen-address=$(POD_IP):9090 --web.enable-lifecycle`` (the port is fixed: the network namespace is this
sandbox's own). RBAC: ClusterRole ``aiconf-prometheus`` (read pods, services, endpoints, endpointslices, nodes,
ServiceMonitors, PodMonitors) bound to the service account and to user ``aiconf-prometheus`` (a client
certificate from the cluster CA, in ``state_dir/prometheus/kubeconfig``, used by the translator). Scrape interval
5 s. The URL, the Service and paths are in ``state_dir/prometheus/info.json``.

Without a real node there is nothing real to scrape: :func:`start` then writes ``info.json`` with the reason and
starts nothing (the add-on is still listed as started), so it is safe as a default add-on.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import ipaddress
import json
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from aiconf.errors import SandboxError
from aiconf.sandbox import images, pki
from aiconf.sandbox.addon import Addon, Process, SandboxHandle
from aiconf.sandbox.addons._common import addon_dir, go_module_dir, kube_json, load_yaml_docs, read_info, wait_for, write_json
from aiconf.sandbox.gobuild import GoComponent

NAME = "prometheus"
VERSION = "v0.316.0"  #: the Go module version of Prometheus 3.16.0
PROMETHEUS = GoComponent(
    name="prometheus",
    module="github.com/prometheus/prometheus",
    version=VERSION,
    packages=("github.com/prometheus/prometheus/cmd/prometheus",),
    tags=("remove_all_sd", "enable_kubernetes_sd"),
    ldflags=(
        "-X github.com/prometheus/common/version.Version=3.16.0",
        f"-X github.com/prometheus/common/version.Revision={VERSION}",
        "-X github.com/prometheus/common/version.Branch=HEAD",
    ),
)
#: The Prometheus Operator release whose ServiceMonitor/PodMonitor CRDs are applied (the proxy serves v0.85.0).
OPERATOR_MODULE = "github.com/prometheus-operator/prometheus-operator"
OPERATOR_VERSION = "v0.85.0"
MONITOR_CRDS = ("monitoring.coreos.com_servicemonitors.yaml", "monitoring.coreos.com_podmonitors.yaml")
SCRAPE_INTERVAL = "5s"
USER = "aiconf-prometheus"
#: Where Prometheus listens: the node IP, inside the node's own network namespace (each sandbox has its own, so
#: the port is fixed; nothing of the host is bound).
PORT = 9090
NAMESPACE = "aiconf-monitoring"
SERVICE = "prometheus"
#: Prometheus 3 refuses a scrape whose Content-Type it cannot map; small exporters often send plain text.
FALLBACK_PROTOCOL = "PrometheusText0.0.4"


# --- the real node's scope (shared with the Traefik add-on) ---------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RealNodeScope:
    """Where real traffic may go: the real node's name and pod CIDR (from the sandbox state file)."""

    node: str
    pod_cidr: str
    node_ip: str = ""  #: the node's InternalIP, inside the sandbox's network namespace
    host_ip: str = ""  #: the host side of the node's veth (the API server relay listens there)
    netns: str = ""  #: the node's network namespace (``/run/netns/<netns>``)

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_network(self.pod_cidr)

    def holds(self, address: str) -> bool:
        """True when ``address`` is an IP inside the real node's pod CIDR."""
        try:
            return ipaddress.ip_address(address) in self.network
        except ValueError:
            return False

    def ip_regex(self) -> str:
        """An RE2 regex (anchored by Prometheus) matching exactly the IPv4 addresses of the pod CIDR."""
        net = self.network
        if net.version != 4 or net.prefixlen % 8:
            raise SandboxError(f"pod CIDR {self.pod_cidr}: only byte-aligned IPv4 ranges are supported")
        fixed = net.prefixlen // 8
        octets = str(net.network_address).split(".")[:fixed]
        octet = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
        return r"\.".join([re.escape(o) for o in octets] + [octet] * (4 - fixed))


def real_node_scope(sb: SandboxHandle) -> RealNodeScope | None:
    """The real node of a running (or starting) sandbox, or None when it has none."""
    try:
        state = json.loads((Path(sb.state_dir) / "sandbox.json").read_text())
    except (OSError, ValueError):
        return None
    rec = state.get("real_node") or {}
    if not rec.get("node") or not rec.get("pod_cidr"):
        return None
    return RealNodeScope(
        node=rec["node"],
        pod_cidr=rec["pod_cidr"],
        node_ip=rec.get("node_ip", ""),
        host_ip=rec.get("host_ip", ""),
        netns=rec.get("netns", ""),
    )


def say(sb: SandboxHandle, msg: str) -> None:
    progress = getattr(sb, "progress", None)
    (progress or (lambda m: print(m, file=sys.stderr, flush=True)))(msg)


# --- configuration (pure data) -----------------------------------------------------------------------------------


def _guard(scope: RealNodeScope, node_label: str | None = "__meta_kubernetes_pod_node_name") -> list[dict]:
    """Relabel steps every Kubernetes job ends with: real-node pods only, pod-CIDR addresses only."""
    steps = []
    if node_label:
        steps.append({"source_labels": [node_label], "regex": re.escape(scope.node), "action": "keep"})
    steps.append({"source_labels": ["__address__"], "regex": scope.ip_regex() + r":[0-9]+", "action": "keep"})
    return steps


def _sd(role: str, scope: RealNodeScope, namespaces: list[str] | None = None) -> dict:
    """A kubernetes_sd_configs entry that only ever sees pods of the real node."""
    sd: dict[str, Any] = {
        "role": role,
        "selectors": [{"role": "pod", "field": f"spec.nodeName={scope.node}"}],
    }
    if namespaces:
        sd["namespaces"] = {"names": namespaces}
    return sd


def _pod_labels() -> list[dict]:
    return [
        {"action": "labelmap", "regex": "__meta_kubernetes_pod_label_(.+)"},
        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        {"source_labels": ["__meta_kubernetes_pod_node_name"], "target_label": "node"},
    ]


def annotation_jobs(scope: RealNodeScope) -> list[dict]:
    """The two annotation-driven jobs of Prometheus's example configuration, limited to the real node."""
    pods = {
        "job_name": "kubernetes-pods",
        "kubernetes_sd_configs": [_sd("pod", scope)],
        "relabel_configs": [
            {
                "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"],
                "regex": "true",
                "action": "keep",
            },
            {
                "source_labels": ["__meta_kubernetes_pod_phase"],
                "regex": "Pending|Succeeded|Failed|Completed",
                "action": "drop",
            },
            {
                "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scheme"],
                "regex": "(https?)",
                "target_label": "__scheme__",
            },
            {
                "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_path"],
                "regex": "(.+)",
                "target_label": "__metrics_path__",
            },
            {
                "source_labels": ["__meta_kubernetes_pod_ip", "__meta_kubernetes_pod_annotation_prometheus_io_port"],
                "regex": r"(.+);([0-9]+)",
                "replacement": "$1:$2",
                "target_label": "__address__",
            },
            *_guard(scope),
            *_pod_labels(),
        ],
    }
    services = {
        "job_name": "kubernetes-service-endpoints",
        "kubernetes_sd_configs": [_sd("endpointslice", scope)],
        "relabel_configs": [
            {
                "source_labels": ["__meta_kubernetes_service_annotation_prometheus_io_scrape"],
                "regex": "true",
                "action": "keep",
            },
            {
                "source_labels": ["__meta_kubernetes_endpointslice_endpoint_conditions_ready"],
                "regex": "true",
                "action": "keep",
            },
            {
                "source_labels": ["__meta_kubernetes_service_annotation_prometheus_io_scheme"],
                "regex": "(https?)",
                "target_label": "__scheme__",
            },
            {
                "source_labels": ["__meta_kubernetes_service_annotation_prometheus_io_path"],
                "regex": "(.+)",
                "target_label": "__metrics_path__",
            },
            {
                "source_labels": ["__address__", "__meta_kubernetes_service_annotation_prometheus_io_port"],
                "regex": r"([^:]+)(?::[0-9]+)?;([0-9]+)",
                "replacement": "$1:$2",
                "target_label": "__address__",
            },
            *_guard(scope),
            *_pod_labels(),
            {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "service"},
        ],
    }
    return [pods, services]


def self_job(listen: str) -> dict:
    return {"job_name": "prometheus", "static_configs": [{"targets": [listen]}]}


def base_config(listen: str, scope: RealNodeScope) -> dict:
    return {
        "global": {
            "scrape_interval": SCRAPE_INTERVAL,
            "scrape_timeout": "4s",
            "evaluation_interval": "15s",
            "external_labels": {"cluster": "aiconf-sandbox"},
        },
        "scrape_configs": [self_job(listen), *annotation_jobs(scope)],
    }


# --- ServiceMonitor / PodMonitor translation ---------------------------------------------------------------------

_RELABEL_KEYS = {
    "sourceLabels": "source_labels",
    "targetLabel": "target_label",
    "separator": "separator",
    "regex": "regex",
    "modulus": "modulus",
    "replacement": "replacement",
    "action": "action",
}
#: Fields of a monitor endpoint the translator carries over; any other set field is reported as skipped.
_ENDPOINT_FIELDS = {
    "port",
    "targetPort",
    "portNumber",
    "path",
    "scheme",
    "interval",
    "scrapeTimeout",
    "params",
    "honorLabels",
    "honorTimestamps",
    "relabelings",
    "metricRelabelings",
}


def _sanitize(label: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", label)


def _relabelings(items: list[dict] | None) -> list[dict]:
    out = []
    for item in items or []:
        step = {_RELABEL_KEYS[k]: v for k, v in item.items() if k in _RELABEL_KEYS}
        if "action" in step:
            step["action"] = str(step["action"]).lower()
        out.append(step)
    return out


def _selector_relabels(selector: dict | None, kind: str) -> list[dict]:
    """keep/drop steps equivalent to a label selector on ``kind`` (``service`` or ``pod``) labels."""
    steps = []
    sel = selector or {}
    for key, value in sorted((sel.get("matchLabels") or {}).items()):
        steps.append(
            {
                "source_labels": [
                    f"__meta_kubernetes_{kind}_label_{_sanitize(key)}",
                    f"__meta_kubernetes_{kind}_labelpresent_{_sanitize(key)}",
                ],
                "regex": f"({re.escape(value)});true",
                "action": "keep",
            }
        )
    for expr in sel.get("matchExpressions") or []:
        key, op, values = expr.get("key", ""), expr.get("operator", ""), expr.get("values") or []
        label = f"__meta_kubernetes_{kind}_label_{_sanitize(key)}"
        present = f"__meta_kubernetes_{kind}_labelpresent_{_sanitize(key)}"
        alternatives = "|".join(re.escape(v) for v in values)
        if op == "In":
            steps.append({"source_labels": [label, present], "regex": f"({alternatives});true", "action": "keep"})
        elif op == "NotIn":
            steps.append({"source_labels": [label, present], "regex": f"({alternatives});true", "action": "drop"})
        elif op == "Exists":
            steps.append({"source_labels": [present], "regex": "true", "action": "keep"})
        elif op == "DoesNotExist":
            steps.append({"source_labels": [present], "regex": "true", "action": "drop"})
        else:
            raise ValueError(f"unsupported selector operator {op!r}")
    return steps


def _namespaces(monitor: dict) -> list[str] | None:
    """The namespaces a monitor selects from (None = all), as the Operator reads ``namespaceSelector``."""
    ns_sel = (monitor.get("spec") or {}).get("namespaceSelector") or {}
    if ns_sel.get("any"):
        return None
    return list(ns_sel.get("matchNames") or []) or [monitor["metadata"]["namespace"]]


def _endpoint_options(ep: dict) -> dict:
    job: dict[str, Any] = {}
    if ep.get("path"):
        job["metrics_path"] = ep["path"]
    if ep.get("scheme"):
        job["scheme"] = str(ep["scheme"]).lower()
    if ep.get("interval"):
        job["scrape_interval"] = ep["interval"]
    if ep.get("scrapeTimeout"):
        job["scrape_timeout"] = ep["scrapeTimeout"]
    if ep.get("params"):
        job["params"] = ep["params"]
    if ep.get("honorLabels"):
        job["honor_labels"] = True
    if "honorTimestamps" in ep:
        job["honor_timestamps"] = bool(ep["honorTimestamps"])
    if ep.get("metricRelabelings"):
        job["metric_relabel_configs"] = _relabelings(ep["metricRelabelings"])
    return job


def service_monitor_jobs(sm: dict, scope: RealNodeScope) -> tuple[list[dict], list[str]]:
    """Scrape jobs for one ServiceMonitor (role endpointslice), and notes on what was skipped."""
    meta, spec = sm["metadata"], sm.get("spec") or {}
    jobs, notes = [], []
    for i, ep in enumerate(spec.get("endpoints") or []):
        extra = sorted({k for k, v in ep.items() if v not in (None, "", [], {})} - _ENDPOINT_FIELDS)
        if extra:
            notes.append(f"endpoint {i}: fields not translated: {', '.join(extra)}")
        relabel = [
            *_selector_relabels(spec.get("selector"), "service"),
            {
                "source_labels": ["__meta_kubernetes_endpointslice_endpoint_conditions_ready"],
                "regex": "true",
                "action": "keep",
            },
        ]
        if ep.get("port"):
            relabel.append(
                {
                    "source_labels": ["__meta_kubernetes_endpointslice_port_name"],
                    "regex": re.escape(ep["port"]),
                    "action": "keep",
                }
            )
        elif ep.get("targetPort") is not None:
            tp = ep["targetPort"]
            src = (
                "__meta_kubernetes_pod_container_port_number"
                if isinstance(tp, int)
                else "__meta_kubernetes_pod_container_port_name"
            )
            relabel.append({"source_labels": [src], "regex": re.escape(str(tp)), "action": "keep"})
        job_label = spec.get("jobLabel")
        relabel += [
            *_guard(scope),
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "service"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
            {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"},
            {"source_labels": ["__meta_kubernetes_pod_node_name"], "target_label": "node"},
            {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "job"},
        ]
        if job_label:
            relabel.append(
                {
                    "source_labels": [f"__meta_kubernetes_service_label_{_sanitize(job_label)}"],
                    "regex": "(.+)",
                    "target_label": "job",
                }
            )
        relabel.append({"target_label": "endpoint", "replacement": str(ep.get("port") or ep.get("targetPort") or i)})
        relabel += _relabelings(ep.get("relabelings"))
        relabel += _guard(scope, node_label=None)  # user relabelings cannot move the address off the pod CIDR
        jobs.append(
            {
                "job_name": f"serviceMonitor/{meta['namespace']}/{meta['name']}/{i}",
                "kubernetes_sd_configs": [_sd("endpointslice", scope, _namespaces(sm))],
                "relabel_configs": relabel,
                **_endpoint_options(ep),
            }
        )
    return jobs, notes


def pod_monitor_jobs(pm: dict, scope: RealNodeScope) -> tuple[list[dict], list[str]]:
    """Scrape jobs for one PodMonitor (role pod), and notes on what was skipped."""
    meta, spec = pm["metadata"], pm.get("spec") or {}
    jobs, notes = [], []
    for i, ep in enumerate(spec.get("podMetricsEndpoints") or []):
        extra = sorted({k for k, v in ep.items() if v not in (None, "", [], {})} - _ENDPOINT_FIELDS)
        if extra:
            notes.append(f"podMetricsEndpoint {i}: fields not translated: {', '.join(extra)}")
        relabel = [
            *_selector_relabels(spec.get("selector"), "pod"),
            {
                "source_labels": ["__meta_kubernetes_pod_phase"],
                "regex": "Pending|Succeeded|Failed|Completed",
                "action": "drop",
            },
        ]
        if ep.get("port"):
            relabel.append(
                {
                    "source_labels": ["__meta_kubernetes_pod_container_port_name"],
                    "regex": re.escape(ep["port"]),
                    "action": "keep",
                }
            )
        elif ep.get("portNumber") is not None:
            relabel.append(
                {
                    "source_labels": ["__meta_kubernetes_pod_container_port_number"],
                    "regex": str(int(ep["portNumber"])),
                    "action": "keep",
                }
            )
        elif ep.get("targetPort") is not None:
            tp = ep["targetPort"]
            src = (
                "__meta_kubernetes_pod_container_port_number"
                if isinstance(tp, int)
                else "__meta_kubernetes_pod_container_port_name"
            )
            relabel.append({"source_labels": [src], "regex": re.escape(str(tp)), "action": "keep"})
        relabel += [
            *_guard(scope),
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
            {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"},
            {"source_labels": ["__meta_kubernetes_pod_node_name"], "target_label": "node"},
            {"target_label": "job", "replacement": f"{meta['namespace']}/{meta['name']}"},
        ]
        if spec.get("jobLabel"):
            relabel.append(
                {
                    "source_labels": [f"__meta_kubernetes_pod_label_{_sanitize(spec['jobLabel'])}"],
                    "regex": "(.+)",
                    "target_label": "job",
                }
            )
        relabel.append({"target_label": "endpoint", "replacement": str(ep.get("port") or ep.get("portNumber") or i)})
        relabel += _relabelings(ep.get("relabelings"))
        relabel += _guard(scope, node_label=None)
        jobs.append(
            {
                "job_name": f"podMonitor/{meta['namespace']}/{meta['name']}/{i}",
                "kubernetes_sd_configs": [_sd("pod", scope, _namespaces(pm))],
                "relabel_configs": relabel,
                **_endpoint_options(ep),
            }
        )
    return jobs, notes


def render(
    base: dict, service_monitors: list[dict], pod_monitors: list[dict], scope: RealNodeScope
) -> tuple[dict, list[dict]]:
    """The full configuration for ``base`` plus the monitors; and one status record per monitor."""
    config = copy.deepcopy(base)
    report = []
    for kind, items, fn in (
        ("ServiceMonitor", service_monitors, service_monitor_jobs),
        ("PodMonitor", pod_monitors, pod_monitor_jobs),
    ):
        for obj in sorted(items, key=lambda o: (o["metadata"]["namespace"], o["metadata"]["name"])):
            ref = f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"
            try:
                jobs, notes = fn(obj, scope)
            except (ValueError, KeyError, TypeError) as e:
                report.append({"kind": kind, "name": ref, "jobs": [], "error": str(e)})
                continue
            config["scrape_configs"] += jobs
            report.append({"kind": kind, "name": ref, "jobs": [j["job_name"] for j in jobs], "notes": notes})
    for job in config["scrape_configs"]:
        job.setdefault("fallback_scrape_protocol", FALLBACK_PROTOCOL)
    return config, report


# --- the add-on ----------------------------------------------------------------------------------------------------


def rbac(user: str = USER) -> list[dict]:
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": user, "labels": {"app.kubernetes.io/managed-by": "aiconf-sandbox"}},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["nodes", "nodes/metrics", "services", "endpoints", "pods"],
                    "verbs": ["get", "list", "watch"],
                },
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]},
                {
                    "apiGroups": ["monitoring.coreos.com"],
                    "resources": ["servicemonitors", "podmonitors"],
                    "verbs": ["get", "list", "watch"],
                },
                {"nonResourceURLs": ["/metrics"], "verbs": ["get"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": user, "labels": {"app.kubernetes.io/managed-by": "aiconf-sandbox"}},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": user},
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user},
                {"kind": "ServiceAccount", "name": SERVICE, "namespace": NAMESPACE},
            ],
        },
    ]


def monitor_crds() -> list[dict]:
    folder = go_module_dir(OPERATOR_MODULE, OPERATOR_VERSION) / "example" / "prometheus-operator-crd"
    return [d for name in MONITOR_CRDS for d in load_yaml_docs(folder / name)]


def apiserver_url(sb: SandboxHandle) -> str:
    """The API server URL of the sandbox's admin kubeconfig (a JSON or YAML file)."""
    text = Path(sb.kubeconfig).read_text()
    try:
        doc = json.loads(text)
    except ValueError:
        import yaml

        doc = yaml.safe_load(text)
    return doc["clusters"][0]["cluster"]["server"]


def write_client_kubeconfig(sb: SandboxHandle, user: str, folder: Path, server: str | None = None) -> Path:
    """A kubeconfig for ``user`` (client cert from the cluster CA) to ``server`` (default: the API server URL of
    the admin kubeconfig)."""
    cert, key = sb.issue_cert(user, client=True)
    return pki.write_kubeconfig(
        folder / "kubeconfig", server or apiserver_url(sb), Path(sb.ca_cert), cert, key, user=user
    )


def workload_objects(scope: RealNodeScope, folder: Path, bin_dir: Path) -> list[dict]:
    """Prometheus as a platform runs it: a Deployment (one pod, ``hostNetwork`` on the real node, service account
    ``prometheus``, in-cluster Kubernetes credentials) and a Service ``prometheus`` (port ``web``) selecting it,
    in namespace :data:`NAMESPACE`. The binary (``bin_dir``) and the add-on folder (configuration and TSDB) are
    hostPath mounts; the image is the sandbox's busybox image (Prometheus is a static binary)."""
    labels = {"app.kubernetes.io/name": "prometheus", "app.kubernetes.io/managed-by": "aiconf-sandbox"}
    note = "the aiconf sandbox's Prometheus 3.16 (binary built from the Go module, mounted from the host cache)"
    meta = {"namespace": NAMESPACE, "labels": labels, "annotations": {"sandbox.aiconf.io/note": note}}
    container = {
        "name": "prometheus",
        "image": images.UTILITY,
        "imagePullPolicy": "Never",
        "command": [
            "/opt/prometheus/prometheus",
            "--config.file=/sandbox/prometheus.yml",
            "--storage.tsdb.path=/sandbox/data",
            "--storage.tsdb.retention.time=1d",
            f"--web.listen-address=$(POD_IP):{PORT}",
            f"--web.external-url=http://$(POD_IP):{PORT}/",
            "--web.enable-lifecycle",
            "--log.level=info",
        ],
        "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        "ports": [{"name": "web", "containerPort": PORT}],
        "readinessProbe": {"httpGet": {"path": "/-/ready", "port": PORT}, "periodSeconds": 2},
        "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}},
        "volumeMounts": [
            {"name": "bin", "mountPath": "/opt/prometheus", "readOnly": True},
            {"name": "sandbox", "mountPath": "/sandbox"},
        ],
    }
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": SERVICE, "namespace": NAMESPACE}},
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": SERVICE, **meta},
            "spec": {
                "replicas": 1,
                "strategy": {"type": "Recreate"},  # one host port
                "selector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
                "template": {
                    "metadata": {"labels": labels, "annotations": meta["annotations"]},
                    "spec": {
                        "serviceAccountName": SERVICE,
                        "hostNetwork": True,
                        "dnsPolicy": "ClusterFirstWithHostNet",
                        "nodeSelector": {"kubernetes.io/hostname": scope.node},
                        "tolerations": [{"operator": "Exists"}],
                        "enableServiceLinks": False,
                        "terminationGracePeriodSeconds": 5,
                        "containers": [container],
                        "volumes": [
                            {"name": "bin", "hostPath": {"path": str(bin_dir), "type": "Directory"}},
                            {"name": "sandbox", "hostPath": {"path": str(folder), "type": "Directory"}},
                        ],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": SERVICE, **meta},
            "spec": {
                "selector": {"app.kubernetes.io/name": "prometheus"},
                "ports": [{"name": "web", "port": PORT, "targetPort": PORT, "protocol": "TCP"}],
            },
        },
    ]


def info(sb: SandboxHandle) -> dict:
    """``state_dir/prometheus/info.json``: url, port, paths; or ``{"skipped": reason}``."""
    return read_info(sb, NAME)


def start(sb: SandboxHandle, bins: dict[str, Path]) -> list[Process]:
    d = addon_dir(sb, NAME)
    scope = real_node_scope(sb)
    if scope is None:
        reason = "no real node in this sandbox (start it with --real-node): nothing real to scrape"
        write_json(d / "info.json", {"skipped": reason})
        say(sb, f"[up] add-on {NAME}: skipped, {reason}")
        return []
    if not scope.node_ip:
        raise SandboxError(f"add-on {NAME}: the sandbox state names no IP for the real node")
    sb.apply(monitor_crds())
    sb.apply(rbac())
    # The translator (a host process) lists monitors as user aiconf-prometheus; Prometheus itself uses its pod's
    # service account.
    kubeconfig = write_client_kubeconfig(sb, USER, d)
    (d / "data").mkdir(exist_ok=True)
    listen = f"{scope.node_ip}:{PORT}"
    base = base_config(listen, scope)
    write_json(d / "base.json", base)
    write_json(d / "prometheus.yml", render(base, [], [], scope)[0])  # JSON is YAML
    url = f"http://{listen}"
    write_json(
        d / "info.json",
        {
            "url": url,
            "port": PORT,
            "namespace": NAMESPACE,
            "service": f"{NAMESPACE}/{SERVICE}:web",
            "service_proxy": f"/api/v1/namespaces/{NAMESPACE}/services/{SERVICE}:web/proxy",
            "config": str(d / "prometheus.yml"),
            "data": str(d / "data"),
            "kubeconfig": str(kubeconfig),
            "node": scope.node,
            "pod_cidr": scope.pod_cidr,
            "monitors": str(d / "monitors.json"),
        },
    )
    sb.apply(workload_objects(scope, d, Path(bins["prometheus"]).parent))
    return [
        Process(
            name="prometheus-monitor-sync",
            argv=[
                sys.executable,
                "-W",
                "ignore::RuntimeWarning:runpy",  # the package __init__ imports this module first
                "-m",
                "aiconf.sandbox.addons.prometheus",
                "sync",
                f"--dir={d}",
                f"--url={url}",
            ],
            cwd=d,
            ready=lambda: (d / "monitors.json").is_file(),
            ready_timeout_s=180.0,
        ),
    ]


def query(url: str, promql: str, timeout_s: float = 5.0) -> list[dict]:
    """``/api/v1/query`` result vector (raises SandboxError on an error answer)."""
    q = urllib.parse.urlencode({"query": promql})
    try:
        with urllib.request.urlopen(f"{url}/api/v1/query?{q}", timeout=timeout_s) as resp:
            body = json.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise SandboxError(f"Prometheus query {promql!r}: {e}") from None
    if body.get("status") != "success":
        raise SandboxError(f"Prometheus query {promql!r}: {body.get('error', body)}")
    return body["data"]["result"]


def wait_ready(sb: SandboxHandle, timeout_s: float = 180.0) -> None:
    meta = info(sb)
    if meta.get("skipped"):
        return
    url = meta["url"]

    def pod_ready() -> tuple[bool, str]:
        pods = kube_json(sb, "get", "pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/name=prometheus")["items"]
        states = [
            (p["metadata"]["name"], {c["type"]: c["status"] for c in (p.get("status") or {}).get("conditions", [])})
            for p in pods
        ]
        return any(c.get("Ready") == "True" for _, c in states), f"pods {states}"

    instance = urllib.parse.urlsplit(url).netloc

    def self_scraped() -> tuple[bool, str]:
        promql = f'up{{job="prometheus",instance="{instance}"}}'
        result = query(url, promql)
        return bool(result) and result[0]["value"][1] == "1", f"{promql} = {result}"

    def proxied() -> tuple[bool, str]:
        raw = sb.kubectl("get", "--raw", f"{meta['service_proxy']}/api/v1/query?query=up")
        return '"status":"success"' in raw, raw[:200]

    wait_for(f"the Prometheus pod in {NAMESPACE} to be Ready", pod_ready, timeout_s=timeout_s)
    wait_for("Prometheus to scrape itself (query API answering)", self_scraped, timeout_s=60)
    wait_for(f"Prometheus through the API server's service proxy ({meta['service']})", proxied, timeout_s=60)


ADDON = Addon(
    name=NAME,
    summary="Prometheus 3.16 with Kubernetes SD of real-node pods: prometheus.io annotations, "
    "ServiceMonitor/PodMonitor (translated); runs only with the real node",
    components=(PROMETHEUS,),
    start=start,
    wait_ready=wait_ready,
    # Default: it only runs when the sandbox has its real node (otherwise start() skips, starting nothing).
    default=True,
)


# --- the ServiceMonitor/PodMonitor translator process --------------------------------------------------------------


def _list(api, plural: str) -> list[dict]:
    from kubernetes import client

    try:
        out = client.CustomObjectsApi(api).list_cluster_custom_object(
            "monitoring.coreos.com", "v1", plural, _request_timeout=20
        )
    except client.ApiException as e:
        if e.status == 404:  # CRD not installed (yet)
            return []
        raise
    return out.get("items", [])


def _reload(url: str) -> None:
    req = urllib.request.Request(f"{url}/-/reload", method="POST", data=b"")
    with urllib.request.urlopen(req, timeout=30) as resp:
        resp.read()


class _SyncState:
    written: str | None = None  #: the configuration text last written
    applied: str | None = None  #: the configuration text Prometheus last reloaded


def sync_once(api, folder: Path, url: str, st: _SyncState) -> None:
    """Render the configuration from the current monitors; write it when it changed, record the monitors, and
    have Prometheus reload it (retried on the next pass until Prometheus accepts)."""
    info_doc = json.loads((folder / "info.json").read_text())
    scope = RealNodeScope(node=info_doc["node"], pod_cidr=info_doc["pod_cidr"])
    base = json.loads((folder / "base.json").read_text())
    config, report = render(base, _list(api, "servicemonitors"), _list(api, "podmonitors"), scope)
    text = json.dumps(config, indent=2, sort_keys=True) + "\n"
    if text != st.written:
        path = folder / "prometheus.yml"
        tmp = path.with_suffix(".yml.tmp")
        tmp.write_text(text)
        tmp.replace(path)
        st.written = text
    write_json(folder / "monitors.json", {"updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "monitors": report})
    if text != st.applied:
        _reload(url)
        st.applied = text
        print(
            f"{time.strftime('%H:%M:%S')} configuration reloaded: {len(config['scrape_configs'])} jobs; "
            f"monitors: {[r['name'] for r in report]}",
            flush=True,
        )


def sync_main(folder: Path, url: str, interval_s: float) -> int:
    from kubernetes import config as kconfig

    info_doc = json.loads((folder / "info.json").read_text())
    api = kconfig.new_client_from_config(config_file=info_doc["kubeconfig"])
    st = _SyncState()
    while True:  # a service loop: each pass is bounded by its request timeouts; the runtime stops it with SIGTERM
        try:
            sync_once(api, folder, url, st)
        except Exception as e:  # noqa: BLE001 - keep serving; the next pass retries (a failed reload too)
            print(f"{time.strftime('%H:%M:%S')} sync pass failed: {type(e).__name__}: {e}", flush=True)
        time.sleep(interval_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aiconf.sandbox.addons.prometheus")
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sync", help="translate ServiceMonitors/PodMonitors into the sandbox Prometheus config")
    s.add_argument("--dir", required=True, type=Path)
    s.add_argument("--url", required=True)
    s.add_argument("--interval", type=float, default=2.0)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        return sync_main(args.dir, args.url, args.interval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
