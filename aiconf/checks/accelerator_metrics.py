"""accelerator_metrics (KAR-0059; MUST in 1.33-1.36): per-accelerator metrics, scraped and shown to follow a real load.

The check finds the accelerator metrics exporter (DCGM exporter pods by their usual labels, or ``accel_exporter_*``
parameters), scrapes it on every accelerator node through the API server's pod proxy (no port-forward, no client
pod, never a direct dial of a pod IP) and judges each scrape with :mod:`aiconf.accel.dcgm`. Then it runs a load on
one accelerator and scrapes around it.

What each sub-check proves:

* ``exporter_found`` (required): every accelerator node that runs processes has a Ready exporter pod answering on
  its metrics port. Simulated (kwok) nodes run no processes and have no exporter: their accelerators are reported
  as *not covered* and left out of the verdict; a cluster whose accelerator nodes are all simulated cannot
  demonstrate the requirement (UNKNOWN, never PASS). No accelerator at all: NOT_APPLICABLE.
* ``exporter_recognised`` (required): the metric names match a name map (NVIDIA DCGM built in, another exporter's
  from ``accel_name_map``); an unrecognised exporter, or a name map that names no family for a core class
  (utilisation, memory used), is UNKNOWN: manual evidence, never FAIL and never PASS.
* ``format_valid`` (required): each scrape parses with prometheus_client's exposition parser, is not empty and has
  no duplicate series.
* ``core_metrics_per_gpu`` (required): utilisation and memory (DCGM: ``DCGM_FI_DEV_GPU_UTIL``,
  ``DCGM_FI_DEV_FB_USED``, ``DCGM_FI_DEV_FB_FREE``) for every device the exporter reports, per device labels.
* ``gpu_count_matches`` (required): the exporter reports as many devices as the node advertises (allocatable
  ``gpu_resource_name``, divided by ``nvidia.com/gpu.replicas`` under time-slicing).
* ``should_metrics``, ``device_labels`` (informational): temperature, power/energy and interconnect per device;
  the per-device label keys (``gpu``, ``UUID``, ``modelName``, ``Hostname`` for DCGM).
* ``prometheus_pipeline`` (informational): the same core families are queryable in the platform's Prometheus
  (``accel_prometheus`` or a Prometheus Operator instance), through the API server's service proxy;
  NOT_APPLICABLE when no Prometheus is found.
* ``workload_reflected`` (required): a pod requesting one accelerator runs a load (real clusters: bf16 matrix
  products from ``aiconf/workloads/gpu_load.py`` in ``accel_load_image``; the sandbox: the simulated exporter's
  load file); utilisation and memory of *that* accelerator rise inside the load window and fall after it.
* ``pod_attribution`` (informational): the exporter attributed the loaded accelerator to the load's pod
  (``pod``/``exported_pod`` labels); UNKNOWN when the exporter carries no attribution labels.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from kubernetes.client.exceptions import ApiException

from aiconf import display
from aiconf.accel import dcgm
from aiconf.context import CheckContext
from aiconf.errors import WaitTimeout
from aiconf.kube import Kube, condition
from aiconf.model import SubCheck, Verdict
from aiconf.registry import check

#: Label selectors the DCGM exporter's pods carry (GPU Operator, the dcgm-exporter Helm chart, the sandbox).
KNOWN_EXPORTER_SELECTORS: tuple[str, ...] = ("app=nvidia-dcgm-exporter", "app.kubernetes.io/name=dcgm-exporter")
#: Container port names that mean "the metrics port".
METRICS_PORT_NAMES = ("metrics", "gpu-metrics", "http-metrics")
#: The family only the sandbox's simulated DCGM exporter serves (aiconf.workloads.dcgm_sim).
SIMULATION_FAMILY = "aiconf_dcgm_sim_info"
SIMULATED_LABEL = "sandbox.aiconf.io/simulated"
#: Core classes the requirement names (KAR-0059: per-accelerator utilisation and memory): a name map without them
#: cannot show the requirement.
REQUIRED_CORE = ("utilization", "memory_used")
#: Where the ConfigMap of workload scripts is mounted in the check's pods.
WORKLOAD_DIR = "/aiconf-workloads"
WORKLOAD_SCRIPTS = ("gpu_load.py", "dcgm_sim.py", "fake_nvidia_smi.py", "device_probe.py")
WORKLOADS_SRC = Path(__file__).resolve().parent.parent / "workloads"
LOAD_POD = "gpu-load"

SUBCHECKS = (
    "exporter_found",
    "exporter_recognised",
    "format_valid",
    "core_metrics_per_gpu",
    "gpu_count_matches",
    "should_metrics",
    "device_labels",
    "prometheus_pipeline",
    "workload_reflected",
    "pod_attribution",
)
PER_NODE = (
    "exporter_recognised",
    "format_valid",
    "core_metrics_per_gpu",
    "gpu_count_matches",
    "should_metrics",
    "device_labels",
)
INFORMATIONAL = ("should_metrics", "device_labels", "prometheus_pipeline", "pod_attribution")


# --- nodes (pure) ----------------------------------------------------------------------------------------------------


@dataclass
class AccelNode:
    """An accelerator node as the checks see it."""

    name: str
    allocatable: int
    simulated: bool
    replicas: int = 1  #: time-slicing replicas per GPU (GFD's nvidia.com/gpu.replicas)
    taints: list[dict[str, Any]] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    ready: bool = True

    @property
    def devices(self) -> int:
        """Physical devices behind the advertised count (allocatable / replicas)."""
        return self.allocatable // max(1, self.replicas)


def quantity(value: Any) -> int:
    try:
        return int(str(value or 0))
    except ValueError:
        return 0


def accelerator_nodes(nodes: list[dict[str, Any]], resource: str) -> list[AccelNode]:
    """Nodes advertising ``resource`` (allocatable > 0), simulated (kwok) ones flagged."""
    from aiconf.facts import is_simulated

    out = []
    for n in nodes:
        alloc = quantity(((n.get("status") or {}).get("allocatable") or {}).get(resource))
        if alloc <= 0:
            continue
        labels = n["metadata"].get("labels") or {}
        out.append(
            AccelNode(
                name=n["metadata"]["name"],
                allocatable=alloc,
                simulated=is_simulated(n),
                replicas=max(1, quantity(labels.get("nvidia.com/gpu.replicas")) or 1),
                taints=list((n.get("spec") or {}).get("taints") or []),
                labels=dict(labels),
                ready=condition(n, "Ready") == "True",
            )
        )
    return sorted(out, key=lambda a: (a.simulated, a.name))


def node_tolerations(node: AccelNode | None, extra_keys: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Tolerations for every taint of ``node`` (the check's pods are pinned there on purpose) and ``extra_keys``."""
    out: list[dict[str, Any]] = []
    seen = set()
    for t in node.taints if node else []:
        if (
            t.get("effect") in ("NoSchedule", "NoExecute", "PreferNoSchedule")
            and (t.get("key"), t.get("effect")) not in seen
        ):
            seen.add((t.get("key"), t.get("effect")))
            out.append({"key": t.get("key"), "operator": "Exists", "effect": t["effect"]})
    for k in extra_keys:
        if k and (k, "NoSchedule") not in seen:
            out.append({"key": k, "operator": "Exists", "effect": "NoSchedule"})
    return out


def pod_requests(pod: dict[str, Any], resource: str) -> int:
    total = 0
    for c in (pod.get("spec") or {}).get("containers") or []:
        res = c.get("resources") or {}
        total += quantity((res.get("limits") or {}).get(resource) or (res.get("requests") or {}).get(resource))
    return total


def free_accelerators(node: AccelNode, pods: list[dict[str, Any]], resource: str) -> int:
    """Allocatable minus what the node's non-finished pods request."""
    used = sum(
        pod_requests(p, resource)
        for p in pods
        if (p.get("spec") or {}).get("nodeName") == node.name
        and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
    )
    return max(0, node.allocatable - used)


def wait_free_accelerators(kube: Kube, node: AccelNode, want: int, p: Any) -> int:
    """Free accelerators on ``node``, after waiting (a watch of its pods, at most ``pod_start_timeout_s``) until at
    least ``want`` are free: pods of other workloads may still be finishing. What is free when the wait runs out is
    returned, not an error."""
    want = min(want, node.allocatable)
    state = {"free": 0}

    def enough(pods: list[dict[str, Any]]) -> bool:
        state["free"] = free_accelerators(node, pods, p.gpu_resource_name)
        return state["free"] >= want

    with contextlib.suppress(WaitTimeout):
        kube.wait_until(
            "v1",
            "Pod",
            None,
            enough,
            p.pod_start_timeout_s,
            f"{want} free accelerator(s) on {node.name}",
            field_selector=f"spec.nodeName={node.name}",
        )
    return state["free"]


def workloads_configmap(name: str, namespace: str, scripts: tuple[str, ...] = WORKLOAD_SCRIPTS) -> dict[str, Any]:
    """The toolkit's workload scripts (stdlib Python) as a ConfigMap, mounted at :data:`WORKLOAD_DIR`: any image with
    ``python3`` runs them, nothing is baked into an image."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": {s: (WORKLOADS_SRC / s).read_text() for s in scripts},
    }


# --- exporter discovery (pure) ---------------------------------------------------------------------------------------


@dataclass
class ExporterPod:
    namespace: str
    name: str
    node: str
    port: int
    ready: bool
    simulated: bool
    selector: str

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}:{self.port}"


def metrics_port(pod: dict[str, Any], default: int) -> int:
    ports = [p for c in (pod.get("spec") or {}).get("containers") or [] for p in c.get("ports") or []]
    for p in ports:
        if p.get("name") in METRICS_PORT_NAMES:
            return int(p["containerPort"])
    for p in ports:
        if int(p.get("containerPort", 0)) == default:
            return default
    return int(ports[0]["containerPort"]) if len(ports) == 1 else default


def exporter_pods(pods_by_selector: dict[str, list[dict[str, Any]]], default_port: int) -> dict[str, ExporterPod]:
    """One exporter pod per node (a Ready one preferred), from pods listed per label selector."""
    by_node: dict[str, ExporterPod] = {}
    for selector, pods in pods_by_selector.items():
        for p in pods:
            node = (p.get("spec") or {}).get("nodeName")
            if not node or (p.get("metadata") or {}).get("deletionTimestamp"):
                continue
            ready = (p.get("status") or {}).get("phase") == "Running" and condition(p, "Ready") == "True"
            labels = p["metadata"].get("labels") or {}
            e = ExporterPod(
                p["metadata"]["namespace"],
                p["metadata"]["name"],
                node,
                metrics_port(p, default_port),
                ready,
                labels.get(SIMULATED_LABEL) == "true",
                selector,
            )
            if node not in by_node or (ready and not by_node[node].ready):
                by_node[node] = e
    return by_node


def proxy_path(namespace: str, pod: str, port: int, path: str) -> str:
    return f"/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy/{path.lstrip('/')}"


# --- name maps (pure) ------------------------------------------------------------------------------------------------


def name_maps(spec: dict[str, Any] | None) -> list[dcgm.NameMap]:
    """The configured exporter's name map first (it wins when both match), then DCGM's."""
    maps = [dcgm.name_map_from_dict(spec)] if spec else []
    return [*maps, dcgm.DCGM]


def incomplete_core(nm: dcgm.NameMap) -> list[str]:
    """Core classes the requirement needs that ``nm`` does not declare as core."""
    core = {c.key for c in nm.tier(dcgm.CORE)}
    return [k for k in REQUIRED_CORE if k not in core]


def judge_recognised(expo: dcgm.Exposition, maps: list[dcgm.NameMap]) -> tuple[SubCheck, dcgm.NameMap | None]:
    """``exporter_recognised`` plus the name map to judge with (None: nothing else can be judged)."""
    sub = dcgm.judge_exporter(expo, maps)
    nm = dcgm.recognise_exporter(expo, maps) if expo.ok else None
    if nm is not None and incomplete_core(nm):
        lacking = incomplete_core(nm)
        return SubCheck(
            "exporter_recognised",
            Verdict.UNKNOWN,
            f"name map {nm.name!r} names no core family for {', '.join(lacking)}: the requirement's "
            "per-accelerator utilisation and memory cannot be checked with it",
            expected=f"a name map with core classes {', '.join(REQUIRED_CORE)}",
            observed=f"core classes of {nm.name}: {[c.key for c in nm.tier(dcgm.CORE)]}",
            details={"name_map": nm.name, "lacking": lacking},
        ), None
    return sub, nm


# --- combining per-node findings (pure) ------------------------------------------------------------------------------

_SEVERITY = {
    Verdict.FAIL: 5,
    Verdict.ERROR: 4,
    Verdict.UNKNOWN: 3,
    Verdict.PASS: 1,
    Verdict.NOT_APPLICABLE: 0,
    Verdict.SKIPPED: 0,
}


def combine(sub_id: str, per_node: dict[str, SubCheck], *, required: bool = True) -> SubCheck:
    """One sub-check from per-node findings: the worst verdict wins; summaries are prefixed by node."""
    if not per_node:
        return SubCheck(sub_id, Verdict.UNKNOWN, "no accelerator node was scraped", required=required)
    worst = max(per_node.values(), key=lambda s: _SEVERITY.get(s.verdict, 3)).verdict
    if len(per_node) == 1:
        ((node, s),) = per_node.items()
        return SubCheck(
            sub_id,
            s.verdict,
            f"{node}: {s.summary}",
            expected=s.expected,
            observed=s.observed,
            required=required,
            details={"nodes": {node: {**s.details, "verdict": str(s.verdict)}}},
        )
    ordered = sorted(per_node.items(), key=lambda kv: -_SEVERITY.get(kv[1].verdict, 3))
    first = ordered[0][1]
    return SubCheck(
        sub_id,
        worst,
        "; ".join(f"{n}: {s.verdict} {s.summary}" for n, s in ordered),
        expected=first.expected,
        observed="; ".join(f"{n}: {s.observed}" for n, s in ordered),
        required=required,
        details={"nodes": {n: {**s.details, "verdict": str(s.verdict)} for n, s in per_node.items()}},
    )


def merge_presence(matrices: list[dcgm.PresenceMatrix]) -> dcgm.PresenceMatrix:
    """Presence matrices of several nodes side by side (a family absent on a node is absent for its devices)."""
    metrics: list[str] = []
    tiers: list[str] = []
    classes: list[str] = []
    for m in matrices:
        for name, tier, cls in zip(m.metrics, m.tiers, m.classes, strict=True):
            if name not in metrics:
                metrics.append(name)
                tiers.append(tier)
                classes.append(cls)
    devices = [d for m in matrices for d in m.devices]
    present = []
    for name in metrics:
        row: list[bool] = []
        for m in matrices:
            idx = m.metrics.index(name) if name in m.metrics else None
            row += [bool(m.present[idx][j]) if idx is not None else False for j in range(len(m.devices))]
        present.append(row)
    return dcgm.PresenceMatrix(metrics, tiers, classes, devices, present)


# --- Prometheus (pure parts) -----------------------------------------------------------------------------------------


@dataclass
class PromTarget:
    """A Prometheus query endpoint: a Service reached through the API server's service proxy, or a URL the runner
    reaches itself."""

    namespace: str
    service: str
    port: str
    how: str
    url: str = ""

    def query_path(self) -> str:
        return f"/api/v1/namespaces/{self.namespace}/services/{self.service}:{self.port}/proxy/api/v1/query"

    def describe(self) -> str:
        return self.url or f"{self.namespace}/{self.service}:{self.port}"


def parse_prometheus_param(text: str) -> PromTarget:
    """``http(s)://host:port`` (queried from the runner) or ``namespace/service:port`` (port number or name)."""
    if text.startswith(("http://", "https://")):
        return PromTarget("", "", "", "accel_prometheus parameter (URL)", url=text.rstrip("/"))
    ns, _, rest = text.partition("/")
    svc, _, port = rest.partition(":")
    if not ns or not svc:
        raise ValueError(f"accel_prometheus {text!r}: expected namespace/service:port or a URL")
    return PromTarget(ns, svc, port or "9090", "accel_prometheus parameter")


def family_regex(nm: dcgm.NameMap) -> str:
    return "|".join(sorted({n for c in nm.classes for n, _ in c.names}))


def series_counts(answer: Any) -> dict[str, int]:
    """``{label value: count}`` from a ``count by (<label>) (...)`` answer (the first label of each result)."""
    out: dict[str, int] = {}
    for r in ((answer or {}).get("data") or {}).get("result") or [] if isinstance(answer, dict) else []:
        metric = r.get("metric") or {}
        key = next(iter(metric.values()), "")
        try:
            out[key] = int(float((r.get("value") or [0, "0"])[1]))
        except (TypeError, ValueError):
            continue
    return out


def judge_prometheus(
    answer: Any,
    nm: dcgm.NameMap,
    devices: int,
    target: PromTarget,
    uuids_by_class: dict[str, set[str]] | None = None,
    expected_uuids: set[str] | None = None,
) -> SubCheck:
    """``prometheus_pipeline``: the answer of ``count by (__name__) ({__name__=~<mapped names>})``. PASS when every
    core class has a family with at least ``devices`` series (one per covered accelerator) and, when the UUIDs the
    exporters reported are known (``expected_uuids``), each core class has a series for every one of them
    (``uuids_by_class``: the UUIDs Prometheus holds per class)."""
    expected = f"every core class of {nm.name} queryable with >= {devices} series (one per accelerator)"
    if expected_uuids:
        expected += ", for the same UUIDs the exporters report"
    where = f"{target.describe()} ({target.how})"
    if not isinstance(answer, dict) or answer.get("status") != "success":
        return SubCheck(
            "prometheus_pipeline",
            Verdict.UNKNOWN,
            f"the query to {where} did not succeed",
            expected=expected,
            observed=str(answer)[:300],
            required=False,
        )
    counts = series_counts(answer)
    per_class = {c.key: max((counts.get(n, 0) for n, _ in c.names), default=0) for c in nm.tier(dcgm.CORE)}
    short = {k: v for k, v in per_class.items() if v < devices}
    details: dict[str, Any] = {"prometheus": where, "series_per_family": counts, "series_per_core_class": per_class}
    observed = ", ".join(f"{k}: {v} series" for k, v in per_class.items())
    lacking: dict[str, list[str]] = {}
    if expected_uuids and uuids_by_class is not None:
        lacking = {k: sorted(expected_uuids - uuids_by_class.get(k, set())) for k in per_class}
        lacking = {k: v for k, v in lacking.items() if v}
        details["uuids_lacking"] = lacking
        observed += f"; UUIDs of the scraped accelerators found: {len(expected_uuids) - max(map(len, lacking.values()), default=0)}/{len(expected_uuids)}"
    if lacking and not short:
        return SubCheck(
            "prometheus_pipeline",
            Verdict.FAIL,
            f"{where} lacks series of scraped accelerators: "
            + "; ".join(f"{k}: {', '.join(u[:12] for u in v)}" for k, v in lacking.items()),
            expected=expected,
            observed=observed,
            required=False,
            details=details,
        )
    if short:
        return SubCheck(
            "prometheus_pipeline",
            Verdict.FAIL,
            f"{where} lacks series for {', '.join(short)} (the exporter is scraped directly, not through it)",
            expected=expected,
            observed=observed,
            required=False,
            details=details,
        )
    return SubCheck(
        "prometheus_pipeline",
        Verdict.PASS,
        f"{where}: {len(counts)} mapped families; {observed}",
        expected=expected,
        observed=observed,
        required=False,
        details=details,
    )


# --- the load (pure) -------------------------------------------------------------------------------------------------


def load_pod(name: str, namespace: str, node: AccelNode, p: Any, *, simulated: bool, configmap: str) -> dict[str, Any]:
    """One pod, one accelerator, pinned to ``node``: the simulated load (sandbox) or bf16 products (PyTorch)."""
    if simulated:
        image = p.image_python
        command = [
            "python3",
            f"{WORKLOAD_DIR}/dcgm_sim.py",
            "load",
            "--util",
            str(p.accel_load_util_pct),
            "--fb-used-mib",
            str(p.accel_load_memory_mib),
            "--seconds",
            str(p.accel_load_s),
        ]
    else:
        image = p.accel_load_image
        command = [
            "python3",
            f"{WORKLOAD_DIR}/gpu_load.py",
            "--seconds",
            str(p.accel_load_s),
            "--hold-mib",
            str(p.accel_load_memory_mib),
        ]
    spec: dict[str, Any] = {
        "nodeSelector": {"kubernetes.io/hostname": node.name},
        "tolerations": node_tolerations(node, (p.gpu_taint_key,)),
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 2,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "containers": [
            {
                "name": "load",
                "image": image,
                "imagePullPolicy": p.image_pull_policy,
                "command": command,
                "env": [{"name": "HOME", "value": "/tmp"}],
                "resources": {"limits": {p.gpu_resource_name: "1"}},
                # Restricted: GPU device nodes are world-readable/writable (0666) and the simulation's load folder is
                # 0777, so the load needs neither root nor a capability; /tmp is the only writable path.
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": 65534,
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]},
                    "readOnlyRootFilesystem": True,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "volumeMounts": [
                    {"name": "workloads", "mountPath": WORKLOAD_DIR, "readOnly": True},
                    {"name": "tmp", "mountPath": "/tmp"},
                ],
            }
        ],
        "volumes": [{"name": "workloads", "configMap": {"name": configmap}}, {"name": "tmp", "emptyDir": {}}],
    }
    if p.runtime_class_name:
        spec["runtimeClassName"] = p.runtime_class_name
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": "aiconf-gpu-load"}},
        "spec": spec,
    }


def loaded_device(rows: list[dict[str, Any]], pod: str, namespace: str, uuids: list[str]) -> tuple[str | None, str]:
    """Which device the load ran on: the exporter's attribution, else the UUID the load reported; (None, why)."""
    ref = f"{namespace}/{pod}"
    for r in rows:
        if r.get("device") and ref in str(r.get("pod") or "").split(","):
            return str(r["device"]), "attributed to the load's pod by the exporter"
    for r in rows:
        if r.get("device") and r.get("uuid") and r["uuid"] in uuids:
            return str(r["device"]), f"UUID {r['uuid']} reported by the load"
    return None, "not identified: the device whose utilisation rose most is analysed"


def log_events(text: str) -> list[dict[str, Any]]:
    import json

    out = []
    for line in (text or "").splitlines():
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            with contextlib.suppress(ValueError):
                doc = json.loads(line)
                if isinstance(doc, dict) and "event" in doc:
                    out.append(doc)
    return out


# --- charts ----------------------------------------------------------------------------------------------------------


def draw_gpu_series(ax: Any, result: Any) -> None:
    frame = display.series(result, "gpu_series")
    rows = frame.to_dict("records") if not frame.empty else []
    rows = [r for r in rows if isinstance(r.get("device"), str) and r.get("device")]
    window = result.metrics.get("load_window")
    dcgm.draw_gpu_series(ax, rows, tuple(window) if window else None)
    if result.metrics.get("simulated_exporter"):
        ax.set_title("GPU utilization and memory around the load (SIMULATED exporter)")


def draw_presence(ax: Any, result: Any) -> None:
    d = result.metrics.get("presence_matrix")
    if not d:
        ax.text(0.5, 0.5, "no scrape", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    dcgm.draw_presence_matrix(ax, dcgm.PresenceMatrix(**d))


# --- preflight -------------------------------------------------------------------------------------------------------


def find_exporters(kube: Kube, p: Any) -> tuple[dict[str, ExporterPod], list[str]]:
    selectors = [p.accel_exporter_selector] if p.accel_exporter_selector else list(KNOWN_EXPORTER_SELECTORS)
    ns = p.accel_exporter_namespace or None
    listed = {s: kube.list("v1", "Pod", ns, label_selector=s) for s in selectors}
    return exporter_pods(listed, int(p.accel_exporter_port)), selectors


def preflight(kube: Any, params: Any) -> tuple[bool, str]:
    """Read-only: accelerator nodes that run processes, and an exporter pod on each."""
    nodes = accelerator_nodes(kube.list("v1", "Node"), params.gpu_resource_name)
    if not nodes:
        return False, f"no node advertises {params.gpu_resource_name}"
    real = [n for n in nodes if not n.simulated]
    if not real:
        return False, f"all {len(nodes)} accelerator nodes are simulated (kwok): no exporter can run there"
    exporters, selectors = find_exporters(kube, params)
    covered = [n.name for n in real if n.name in exporters]
    if not covered:
        return False, f"no exporter pod ({' or '.join(selectors)}) on the {len(real)} accelerator node(s)"
    return True, f"exporter on {len(covered)} of {len(real)} accelerator node(s)"


# --- the check -------------------------------------------------------------------------------------------------------


@dataclass
class NodeScrape:
    node: AccelNode
    exporter: ExporterPod | None
    text: str = ""
    error: str = ""
    expo: dcgm.Exposition | None = None
    name_map: dcgm.NameMap | None = None


def scrape(kube: Kube, e: ExporterPod, path: str) -> str:
    answer = kube.raw("GET", proxy_path(e.namespace, e.name, e.port, path), timeout_s=20)
    return answer if isinstance(answer, str) else str(answer)


@check(
    "accelerator_metrics",
    subchecks=SUBCHECKS,
    charts={"gpu_series": draw_gpu_series, "presence_matrix": draw_presence},
    preflight=preflight,
)
def run(ctx: CheckContext) -> None:
    p = ctx.params
    ctx.does_not_prove(
        "that the metrics are correct in absolute terms (they are compared with the load the check drives, not with an "
        "independent meter)",
        "that accelerators of node types not present in this cluster are exported",
    )
    with ctx.step("find accelerator nodes"):
        nodes = accelerator_nodes(ctx.kube.list("v1", "Node"), p.gpu_resource_name)
        for n in nodes:
            ctx.series("coverage").add(
                node=n.name,
                simulated=n.simulated,
                allocatable=n.allocatable,
                replicas=n.replicas,
                exporter="",
                covered=False,
                devices_reported=0,
            )
        if not nodes:
            why = f"no node advertises {p.gpu_resource_name}: the cluster offers no accelerators to export metrics for"
            ctx.not_applicable("no_accelerators", why)
            for sub in SUBCHECKS:
                ctx.record(sub, Verdict.NOT_APPLICABLE, why, required=sub not in INFORMATIONAL)
            return
        real = [n for n in nodes if not n.simulated and n.ready]
        simulated = [n for n in nodes if n.simulated]
        not_ready = [n.name for n in nodes if not n.simulated and not n.ready]
        if not_ready:
            ctx.note(f"accelerator node(s) not Ready, left out of the coverage: {', '.join(not_ready)}")
        if simulated:
            gpus = sum(n.allocatable for n in simulated)
            ctx.note(
                f"{gpus} accelerator(s) on {len(simulated)} simulated (kwok) node(s) are not covered: kwok nodes "
                f"run no processes, so no exporter runs there ({', '.join(n.name for n in simulated)}); they are "
                "left out of the verdict"
            )
        ctx.metric("accelerator_nodes", {"real": [n.name for n in real], "simulated": [n.name for n in simulated]})
        if not real:
            why = (
                f"all {len(nodes)} accelerator nodes are simulated (kwok) or not Ready: no exporter runs there, so "
                "the requirement cannot be demonstrated here"
            )
            for sub in SUBCHECKS:
                ctx.record(sub, Verdict.UNKNOWN, why, required=sub not in INFORMATIONAL)
            return

    with ctx.step("find the exporter"):
        try:
            maps = name_maps(p.accel_name_map or None)
        except ValueError as e:
            for sub in SUBCHECKS:
                ctx.record(
                    sub, Verdict.UNKNOWN, f"accel_name_map is not usable: {e}", required=sub not in INFORMATIONAL
                )
            return
        exporters, selectors = find_exporters(ctx.kube, p)
        ctx.save_evidence(
            "exporter-pods.yaml",
            [
                {"node": e.node, "pod": e.ref, "ready": e.ready, "selector": e.selector, "simulated": e.simulated}
                for e in exporters.values()
            ],
        )
        scrapes: dict[str, NodeScrape] = {}
        missing: dict[str, str] = {}
        for n in real:
            e = exporters.get(n.name)
            s = scrapes[n.name] = NodeScrape(n, e)
            if e is None:
                missing[n.name] = "no exporter pod"
            elif not e.ready:
                missing[n.name] = f"exporter pod {e.ref} not Ready"
        _describe_daemonsets(ctx, selectors)

    with ctx.step("scrape the exporter on every accelerator node (API server pod proxy)"):
        for name, s in scrapes.items():
            if s.exporter is None or not s.exporter.ready:
                continue
            try:
                s.text = scrape(ctx.kube, s.exporter, p.accel_exporter_path)
            except ApiException as e:
                s.error = f"HTTP {e.status} {e.reason}"
                missing[name] = f"scrape of {s.exporter.ref}{p.accel_exporter_path} failed: {s.error}"
                continue
            ctx.save_evidence(f"scrape-{name}.prom", s.text)
            s.expo = dcgm.parse_exposition(s.text)
            if SIMULATION_FAMILY in s.expo.families or s.exporter.simulated:
                ctx.metric("simulated_exporter", True)
                ctx.note(
                    f"simulated exporter on {name}: the sandbox's DCGM simulation (aiconf.workloads.dcgm_sim) "
                    "serves DCGM names and labels for simulated GPUs; its values follow the load the check "
                    "drives, no GPU is measured"
                )
        covered = [n for n, s in scrapes.items() if s.expo is not None]
        uncovered_gpus = sum(scrapes[n].node.allocatable for n in missing)
        summary = f"exporter scraped on {len(covered)} of {len(real)} accelerator node(s)" + (
            f"; not covered: {'; '.join(f'{k}: {v}' for k, v in missing.items())}" if missing else ""
        )
        if simulated:
            summary += f"; {sum(n.allocatable for n in simulated)} accelerator(s) on simulated nodes not covered (no processes run there)"
        expected = f"a Ready exporter pod ({' or '.join(selectors)}) answering on every accelerator node"
        ctx.record(
            "exporter_found",
            Verdict.FAIL if missing else Verdict.PASS,
            summary,
            expected=expected,
            observed=", ".join(f"{n}: {scrapes[n].exporter.ref}" for n in covered) or "none",
            missing=missing,
            uncovered_accelerators=uncovered_gpus,
            hint=""
            if not missing
            else "give accel_exporter_selector/accel_exporter_namespace when the exporter's pods carry other labels",
        )
        ctx.metric("exporter_coverage", {"covered_nodes": covered, "missing": missing})

    with ctx.step("judge each scrape"):
        per: dict[str, dict[str, SubCheck]] = {sub: {} for sub in PER_NODE}
        matrices = []
        families: set[str] = set()
        for name in covered:
            s = scrapes[name]
            rec, nm = judge_recognised(s.expo, maps)
            s.name_map = nm
            per["exporter_recognised"][name] = rec
            per["format_valid"][name] = dcgm.judge_format(s.expo)
            families |= set(s.expo.families)
            if nm is None:
                for sub in ("core_metrics_per_gpu", "gpu_count_matches", "should_metrics", "device_labels"):
                    per[sub][name] = SubCheck(sub, Verdict.UNKNOWN, f"not judged: {rec.summary}")
                continue
            core, count = dcgm.judge_core_metrics(s.expo, s.node.allocatable, nm, replicas_per_gpu=s.node.replicas)
            per["core_metrics_per_gpu"][name] = core
            per["gpu_count_matches"][name] = count
            per["should_metrics"][name] = dcgm.judge_should_metrics(s.expo, nm)
            per["device_labels"][name] = dcgm.judge_device_labels(s.expo, nm)
            matrices.append(dcgm.build_presence_matrix(s.expo, nm))
            devices, _ = dcgm.device_readings(s.expo, nm)
            ctx.series("coverage").rows = [
                {**r, "exporter": s.exporter.ref, "covered": True, "devices_reported": len(devices)}
                if r["node"] == name
                else r
                for r in ctx.series("coverage").rows
            ]
        for sub in PER_NODE:
            if missing and not per[sub]:
                ctx.record(
                    sub,
                    Verdict.UNKNOWN,
                    "no scrape to judge: " + "; ".join(f"{k}: {v}" for k, v in missing.items()),
                    required=sub not in INFORMATIONAL,
                )
            else:
                ctx.record(**_kw(combine(sub, per[sub], required=sub not in INFORMATIONAL)))
        if matrices:
            ctx.metric("presence_matrix", merge_presence(matrices).to_dict())
        for row in dcgm.otel_table(families):
            ctx.series("otel").add(**row)
        ctx.proves(
            "the exporter's scrapes parse as Prometheus exposition and carry the core metrics for every "
            "accelerator of the covered nodes, as many devices as each node advertises"
        )

    nm_any = next((scrapes[n].name_map for n in covered if scrapes[n].name_map), None)
    with ctx.step("query the platform's Prometheus"):
        if nm_any is None:
            ctx.record(
                "prometheus_pipeline", Verdict.UNKNOWN, "no recognised exporter: nothing to look for", required=False
            )
        else:
            uuids = {
                d.labels[scrapes[n].name_map.uuid_label]
                for n in covered
                if scrapes[n].name_map
                for d in dcgm.device_readings(scrapes[n].expo, scrapes[n].name_map)[0].values()
                if d.labels.get(scrapes[n].name_map.uuid_label)
            }
            run_prometheus(ctx, nm_any, sum(scrapes[n].node.devices for n in covered), uuids)

    run_load(ctx, scrapes, covered)


_RECORD_ARGS = {"sub_id", "verdict", "summary", "expected", "observed", "required"}


def _kw(s: SubCheck) -> dict[str, Any]:
    """``ctx.record`` keyword arguments for a ready-made :class:`SubCheck` (detail keys that clash with the
    record's own arguments are kept under a ``detail_`` prefix)."""
    details = {(f"detail_{k}" if k in _RECORD_ARGS else k): v for k, v in s.details.items()}
    return {
        "sub_id": s.id,
        "verdict": s.verdict,
        "summary": s.summary,
        "expected": s.expected,
        "observed": s.observed,
        "required": s.required,
        **details,
    }


def _describe_daemonsets(ctx: CheckContext, selectors: list[str]) -> None:
    """Evidence: the exporter DaemonSets (desired/ready) and Services matching the selectors."""
    rows = []
    ns = ctx.params.accel_exporter_namespace or None
    for sel in selectors:
        for ds in ctx.kube.list("apps/v1", "DaemonSet", ns, label_selector=sel):
            st = ds.get("status") or {}
            rows.append(
                {
                    "kind": "DaemonSet",
                    "name": f"{ds['metadata']['namespace']}/{ds['metadata']['name']}",
                    "desired": st.get("desiredNumberScheduled", 0),
                    "ready": st.get("numberReady", 0),
                    "node_selector": (ds["spec"]["template"]["spec"].get("nodeSelector") or {}),
                }
            )
        for svc in ctx.kube.list("v1", "Service", ns, label_selector=sel):
            rows.append(
                {
                    "kind": "Service",
                    "name": f"{svc['metadata']['namespace']}/{svc['metadata']['name']}",
                    "ports": [f"{x.get('name', '')}:{x.get('port')}" for x in svc["spec"].get("ports") or []],
                }
            )
    ctx.save_evidence("exporter-objects.yaml", rows)
    ctx.metric("exporter_objects", rows)


def find_prometheus(kube: Kube, p: Any) -> PromTarget | None:
    if p.accel_prometheus:
        return parse_prometheus_param(p.accel_prometheus)
    if kube.has_kind("monitoring.coreos.com/v1", "Prometheus"):
        for prom in kube.list("monitoring.coreos.com/v1", "Prometheus"):
            ns = prom["metadata"]["namespace"]
            if kube.get("v1", "Service", "prometheus-operated", ns):
                return PromTarget(
                    ns, "prometheus-operated", "web", f"Prometheus Operator instance {ns}/{prom['metadata']['name']}"
                )
    for sel in ("app.kubernetes.io/name=prometheus", "app=prometheus"):
        for svc in kube.list("v1", "Service", None, label_selector=sel):
            ports = svc["spec"].get("ports") or []
            port = next(
                (x for x in ports if x.get("port") == 9090 or x.get("name") in ("web", "http", "http-web")), None
            )
            if port:
                return PromTarget(
                    svc["metadata"]["namespace"],
                    svc["metadata"]["name"],
                    str(port.get("name") or port["port"]),
                    f"Service labelled {sel}",
                )
    return None


def query_prometheus(kube: Kube, target: PromTarget, query: str, timeout_s: float = 30) -> Any:
    """An instant query, through the service proxy or (URL targets) straight from the runner."""
    if not target.url:
        return kube.raw("GET", target.query_path(), query={"query": query}, timeout_s=timeout_s)
    import json
    import urllib.parse
    import urllib.request

    url = f"{target.url}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # a URL the user configured
        return json.loads(resp.read().decode())


def run_prometheus(ctx: CheckContext, nm: dcgm.NameMap, devices: int, uuids: set[str]) -> None:
    target = find_prometheus(ctx.kube, ctx.params)
    if target is None:
        ctx.record(
            "prometheus_pipeline",
            Verdict.NOT_APPLICABLE,
            "no Prometheus found (no accel_prometheus, no Prometheus Operator instance, no Service labelled "
            "prometheus): the exporter was scraped directly",
            required=False,
        )
        return
    query = f'count by (__name__) ({{__name__=~"{family_regex(nm)}"}})'
    try:
        answer = query_prometheus(ctx.kube, target, query)
    except (ApiException, OSError, ValueError) as e:
        why = f"HTTP {e.status} {e.reason}" if isinstance(e, ApiException) else f"{type(e).__name__}: {e}"
        ctx.record(
            "prometheus_pipeline",
            Verdict.UNKNOWN,
            f"{target.describe()} did not answer the query: {why}",
            required=False,
        )
        return
    queries = [{"query": query, "answer": answer}]
    by_class: dict[str, set[str]] = {}
    counts = series_counts(answer)
    for c in nm.tier(dcgm.CORE):
        family = next((n for n, _ in c.names if counts.get(n)), None)
        if family is None or not uuids:
            continue
        q = f'count by ({nm.uuid_label}) ({{__name__="{family}"}})'
        try:
            a = query_prometheus(ctx.kube, target, q)
        except (ApiException, OSError, ValueError) as e:
            a = {"status": "error", "error": str(e)[:200]}
        queries.append({"query": q, "answer": a})
        by_class[c.key] = set(series_counts(a))
    ctx.save_evidence("prometheus-query.yaml", {"target": target.__dict__, "queries": queries})
    sub = judge_prometheus(answer, nm, devices, target, by_class if uuids else None, uuids)
    ctx.record(**_kw(sub))
    if sub.verdict is Verdict.PASS:
        ctx.proves("the platform's Prometheus stores the same core families for the accelerators")


# --- the load window -------------------------------------------------------------------------------------------------


class _Sampler:
    """Scrapes one exporter every ``interval_s`` in a daemon thread into the ``gpu_series`` time series."""

    def __init__(self, ctx: CheckContext, exporter: ExporterPod, node: str, nm: dcgm.NameMap, interval_s: float):
        self.ctx, self.exporter, self.node, self.nm = ctx, exporter, node, nm
        self.interval_s = max(0.05, float(interval_s))
        self.series = ctx.series("gpu_series")
        self.expos: list[tuple[float, dcgm.Exposition]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="aiconf-gpu-sampler", daemon=True)

    def now(self) -> float:
        return round(time.monotonic() - self.series.t0, 3)

    def _loop(self) -> None:
        while not self._stop.is_set():
            t = self.now()
            try:
                expo = dcgm.parse_exposition(scrape(self.ctx.kube, self.exporter, self.ctx.params.accel_exporter_path))
                self.expos.append((t, expo))
                for row in dcgm.series_rows(expo, t, self.nm):
                    self.series.add(**{**row, "t_s": t, "node": self.node})
            except Exception as e:  # noqa: BLE001 - a failed scrape is a gap in the series, not a failed check
                self.errors.append(f"{t}s: {str(e)[:200]}")
            self._stop.wait(self.interval_s)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval_s + 30)

    def sleep(self, seconds: float) -> None:
        self._stop.wait(max(0.0, seconds))


def run_load(ctx: CheckContext, scrapes: dict[str, NodeScrape], covered: list[str]) -> None:
    p = ctx.params
    judged = [n for n in covered if scrapes[n].name_map is not None]
    if not judged:
        for sub in ("workload_reflected", "pod_attribution"):
            ctx.record(
                sub,
                Verdict.UNKNOWN,
                "no node with a recognised exporter to run the load on",
                required=sub == "workload_reflected",
            )
        return
    with ctx.step("choose an accelerator for the load"):
        pods = ctx.kube.list("v1", "Pod")
        free = {n: free_accelerators(scrapes[n].node, pods, p.gpu_resource_name) for n in judged}
        target = max(judged, key=lambda n: free[n])
        if free[target] < 1:
            free[target] = wait_free_accelerators(ctx.kube, scrapes[target].node, 1, p)
        if free[target] < 1:
            for sub in ("workload_reflected", "pod_attribution"):
                ctx.record(
                    sub,
                    Verdict.UNKNOWN,
                    f"no free accelerator on a node with an exporter ({free})",
                    required=sub == "workload_reflected",
                )
            return
        s = scrapes[target]
        sim_exporter = SIMULATION_FAMILY in s.expo.families or s.exporter.simulated
        mode = p.accel_load if p.accel_load != "auto" else ("simulated" if sim_exporter else "cuda")
        ctx.metric(
            "load",
            {
                "node": target,
                "mode": mode,
                "seconds": p.accel_load_s,
                "image": p.image_python if mode == "simulated" else p.accel_load_image,
            },
        )
        if mode == "simulated":
            ctx.note(
                "the load is simulated: the pod writes the utilisation and memory it claims into the file the "
                "simulated exporter reads for its GPU (only a container granted that GPU can)"
            )

    ns = ctx.namespace()
    cm = ctx.create(workloads_configmap("aiconf-workloads", ns, ("gpu_load.py", "dcgm_sim.py", "fake_nvidia_smi.py")))
    sampler = _Sampler(ctx, s.exporter, target, s.name_map, p.sample_interval_s)
    series = sampler.series
    window: list[float] = []
    status = {}
    with sampler:
        with ctx.step(f"scrape {p.accel_baseline_s}s of baseline on {target}"):
            sampler.sleep(p.accel_baseline_s)
        with ctx.step("start the load pod"):
            series.mark("load pod created")
            ctx.create(
                load_pod(LOAD_POD, ns, s.node, p, simulated=mode == "simulated", configmap=cm["metadata"]["name"])
            )
            try:
                pod = ctx.kube.wait_for(
                    "v1", "Pod", LOAD_POD, ns, _started, p.pod_start_timeout_s, "the load pod to start"
                )
            except WaitTimeout as e:
                for sub in ("workload_reflected", "pod_attribution"):
                    ctx.record(
                        sub,
                        Verdict.UNKNOWN,
                        f"the load pod did not start: {e.last_seen}",
                        required=sub == "workload_reflected",
                    )
                return
            window.append(sampler.now())
            series.mark("load running")
        with ctx.step(f"keep scraping while the load runs ({p.accel_load_s}s)"):
            try:
                pod = ctx.kube.wait_for(
                    "v1",
                    "Pod",
                    LOAD_POD,
                    ns,
                    _finished,
                    p.accel_load_s + p.pod_start_timeout_s,
                    "the load pod to finish",
                )
            except WaitTimeout as e:
                pod = None
                status["timeout"] = str(e)
            window.append(sampler.now())
            series.mark("load ended")
        with ctx.step(f"scrape {p.accel_after_s}s after the load"):
            sampler.sleep(p.accel_after_s)
    logs = ctx.kube.pod_logs(LOAD_POD, ns)
    events = log_events(logs)
    phase = ((pod or {}).get("status") or {}).get("phase", "unknown")
    ctx.metric("load_window", window)
    ctx.metric("load_events", events)
    ctx.metric("scrape_errors", sampler.errors[:20])
    ctx.metric("scrapes_during_load_series", len(sampler.expos))
    if phase != "Succeeded" or any(ev.get("event") == "error" for ev in events):
        why = status.get("timeout") or f"the load pod ended {phase}: {logs.strip()[-300:]}"
        for sub in ("workload_reflected", "pod_attribution"):
            ctx.record(
                sub, Verdict.UNKNOWN, f"the load did not run as planned ({why})", required=sub == "workload_reflected"
            )
        return

    with ctx.step("analyse the load window"):
        rows = [r for r in series.rows if r.get("device")]
        uuids = [u for ev in events for u in ev.get("gpus") or []]
        device, how = loaded_device(rows, LOAD_POD, ns, uuids)
        analysis = dcgm.analyse_load_window(
            rows,
            window[0],
            window[1],
            device=device,
            util_rise_pct=p.accel_util_rise_pct,
            mem_rise_mib=p.accel_mem_rise_mib,
            settle_s=p.accel_settle_s,
            require_fall=p.accel_require_fall,
        )
        sub = analysis.as_subcheck("workload_reflected")
        sub.details["device_identified"] = how
        ctx.record(**_kw(sub))
        ctx.metric("load_analysis", analysis.to_dict())
        ctx.save_evidence("load-analysis.yaml", {**analysis.to_dict(), "device_identified": how, "events": events})
        if sub.verdict is Verdict.PASS:
            ctx.proves(
                f"a load on one accelerator ({analysis.device}) moved its utilisation and memory inside the load "
                "window and they fell back after it, while the exporter was scraped every "
                f"{p.sample_interval_s}s"
            )
        during = [e for t, e in sampler.expos if window[0] <= t <= window[1]]
        attr = dcgm.judge_attribution(during, LOAD_POD, ns, s.name_map)
        ctx.record(**_kw(attr))


def _started(pod: dict[str, Any] | None) -> bool:
    phase = ((pod or {}).get("status") or {}).get("phase")
    return phase in ("Running", "Succeeded", "Failed")


def _finished(pod: dict[str, Any] | None) -> bool:
    return ((pod or {}).get("status") or {}).get("phase") in ("Succeeded", "Failed")
