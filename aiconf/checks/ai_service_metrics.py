"""ai_service_metrics (KAR-0061; MUST in 1.33-1.36): the platform's monitoring system collects an AI service's metrics.

The check finds the platform's monitoring system and its query endpoint, deploys a small OpenAI-shaped test server
(:mod:`aiconf.workloads.inference_stub`, mounted from a ConfigMap) that exposes Prometheus-format metrics with
AI-server-like names, registers it the platform's way (ServiceMonitor or PodMonitor labelled for the Prometheus
Operator instance's selectors, or ``prometheus.io/*`` annotations), sends exactly K completion requests through the
API server's service proxy and queries the monitoring system until the server-side counter equals K.

What each sub-check proves:

* ``monitoring_detected`` (required): a monitoring system with a query endpoint belongs to the platform:
  ``service_metrics_prometheus``, a Prometheus Operator instance (its ``prometheus-operated`` Service), or a Service
  labelled ``app.kubernetes.io/name=prometheus``/``app=prometheus``. An OpenTelemetry collector alone has no query
  API: UNKNOWN (name its backend). Nothing recognised: UNKNOWN. A Prometheus the toolkit deployed itself (labelled
  ``app.kubernetes.io/managed-by=aiconf`` or with a run id) never counts: when it is the only one, FAIL.
* ``query_endpoint_reachable`` (required): that endpoint answers an instant query through the API server's service
  proxy (or at the URL given).
* ``workload_discovered`` (required): after registration, the stub's info series appears in the monitoring system
  (labelled with the check's namespace) within ``service_metrics_discovery_timeout_s``; the discovery latency is
  measured.
* ``counter_matches_requests`` (required): after exactly K successful completions, ``aiconf_requests_total`` for
  this run's namespace equals K in every scrape job that collects it (no lost, no extra, no double-counted sample).
* ``histogram_reflects_requests`` (required): ``aiconf_request_duration_seconds_count`` is at least K and bucket
  series exist (latency is collected as a histogram).
* ``queue_gauge_collected`` (informational): the queue-depth gauge ``aiconf_requests_running`` is collected too.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from kubernetes.client.exceptions import ApiException

from aiconf import display
from aiconf.checks.accelerator_metrics import PromTarget, find_prometheus, query_prometheus, workloads_configmap
from aiconf.context import LABEL_MANAGED_BY, LABEL_RUN_ID, CheckContext
from aiconf.errors import WaitTimeout
from aiconf.kube import Kube, condition
from aiconf.model import Verdict
from aiconf.registry import check

SUBCHECKS = (
    "monitoring_detected",
    "query_endpoint_reachable",
    "workload_discovered",
    "counter_matches_requests",
    "histogram_reflects_requests",
    "queue_gauge_collected",
)
INFORMATIONAL = ("queue_gauge_collected",)

MONITORING_GROUP = "monitoring.coreos.com/v1"
OTEL_VERSIONS = ("opentelemetry.io/v1beta1", "opentelemetry.io/v1alpha1")
OTEL_POD_SELECTOR = "app.kubernetes.io/component=opentelemetry-collector"
PROMETHEUS_SELECTORS = ("app.kubernetes.io/name=prometheus", "app=prometheus")
#: The sandbox's add-ons carry this managed-by value: they stand in for the platform's own components.
SANDBOX_MANAGER = "aiconf-sandbox"

APP = "aiconf-inference-stub"
APP_LABEL = "app.kubernetes.io/name"
PORT = 8000
PORT_NAME = "http"
MODEL = "aiconf-service-metrics"
WORKLOAD_DIR = "/aiconf-workloads"
REGISTRATIONS = ("auto", "servicemonitor", "podmonitor", "annotations")


# --- discovery (pure parts) -------------------------------------------------------------------------------------------


def toolkit_owned(labels: dict[str, str] | None) -> bool:
    """Objects the toolkit itself created (any check, any run): never the platform's monitoring."""
    labels = labels or {}
    return labels.get(LABEL_MANAGED_BY) == "aiconf" or LABEL_RUN_ID in labels


@dataclass
class OperatorInstance:
    """A Prometheus Operator ``Prometheus`` and the selectors that decide which monitors it reads."""

    namespace: str
    name: str
    service_monitor_selector: dict[str, Any] | None
    service_monitor_namespace_selector: dict[str, Any] | None
    pod_monitor_selector: dict[str, Any] | None
    pod_monitor_namespace_selector: dict[str, Any] | None
    toolkit: bool = False

    @classmethod
    def from_object(cls, obj: dict[str, Any]) -> OperatorInstance:
        spec = obj.get("spec") or {}
        meta = obj["metadata"]
        return cls(
            meta["namespace"],
            meta["name"],
            spec.get("serviceMonitorSelector"),
            spec.get("serviceMonitorNamespaceSelector"),
            spec.get("podMonitorSelector"),
            spec.get("podMonitorNamespaceSelector"),
            toolkit_owned(meta.get("labels")),
        )


@dataclass
class Inventory:
    """What the cluster shows of its monitoring: the query endpoint picked and everything seen around it."""

    target: PromTarget | None = None
    target_labels: dict[str, str] = field(default_factory=dict)
    toolkit_only: bool = False  #: a Prometheus was found, but every one was deployed by the toolkit
    instances: list[OperatorInstance] = field(default_factory=list)
    monitor_kinds: list[str] = field(default_factory=list)  #: ServiceMonitor / PodMonitor served
    services: list[dict[str, Any]] = field(default_factory=list)  #: Services labelled prometheus
    otel: list[str] = field(default_factory=list)  #: OpenTelemetry collectors (CRs or pods)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target.__dict__ if self.target else None,
            "target_labels": self.target_labels,
            "toolkit_only": self.toolkit_only,
            "operator_instances": [i.__dict__ for i in self.instances],
            "monitor_kinds": self.monitor_kinds,
            "prometheus_services": self.services,
            "otel_collectors": self.otel,
        }


def selector_labels(selector: dict[str, Any] | None) -> dict[str, str] | None:
    """Labels an object needs to be selected by ``selector`` (None: a nil selector selects nothing)."""
    if selector is None:
        return None
    labels = dict(selector.get("matchLabels") or {})
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key", ""), expr.get("operator"), expr.get("values") or []
        if op == "In" and values:
            labels[key] = values[0]
        elif op == "Exists":
            labels.setdefault(key, "aiconf")
    return labels


@dataclass
class Registration:
    """How the check's workload is registered with the monitoring system."""

    how: str  #: servicemonitor | podmonitor | annotations
    monitor_labels: dict[str, str] = field(default_factory=dict)
    monitor_namespace: str | None = None  #: None: the check's own namespace
    namespace_labels: dict[str, str] = field(default_factory=dict)  #: labels the check's namespace needs
    why: str = ""


def plan_registration(choice: str, inv: Inventory, extra_labels: dict[str, str]) -> Registration:
    """Pick the platform's mechanism (``auto``) or the one asked for, and the labels its selectors need.

    With a Prometheus Operator instance, a monitor must match its ``serviceMonitorSelector``/``podMonitorSelector``
    (a nil one selects nothing); a nil namespace selector means only the instance's own namespace is read, so the
    monitor goes there."""
    if choice not in REGISTRATIONS:
        raise ValueError(f"service_metrics_registration {choice!r}: expected one of {', '.join(REGISTRATIONS)}")
    instance = next((i for i in inv.instances if not i.toolkit), None)
    if choice == "auto":
        # An instance reads the kinds it has a selector for; monitor CRDs without an instance: a PodMonitor
        # (whatever serves the CRDs reads it; the query below is what counts).
        reads_sm = instance is None or instance.service_monitor_selector is not None
        reads_pm = instance is None or instance.pod_monitor_selector is not None
        if instance is not None and reads_sm and "ServiceMonitor" in inv.monitor_kinds:
            choice = "servicemonitor"
        elif reads_pm and "PodMonitor" in inv.monitor_kinds:
            choice = "podmonitor"
        else:
            choice = "annotations"
    if choice == "annotations":
        return Registration("annotations", why="prometheus.io/scrape, /port and /path annotations on the pods")
    if instance is None:
        return Registration(
            choice,
            dict(extra_labels),
            why=f"{choice} in the check's namespace (no Prometheus Operator instance to read selectors from)",
        )
    if choice == "servicemonitor":
        sel, ns_sel = instance.service_monitor_selector, instance.service_monitor_namespace_selector
    else:
        sel, ns_sel = instance.pod_monitor_selector, instance.pod_monitor_namespace_selector
    labels = selector_labels(sel)
    reg = Registration(choice, {**(labels or {}), **extra_labels})
    where = f"Prometheus {instance.namespace}/{instance.name}"
    if labels is None:
        reg.why = (
            f"{choice}: {where} has no selector for this kind (it selects none): the monitor is not expected to work"
        )
    elif ns_sel is None:
        reg.monitor_namespace = instance.namespace
        reg.why = f"{choice} in {instance.namespace} (no namespace selector: {where} reads only its own namespace)"
    else:
        reg.namespace_labels = selector_labels(ns_sel) or {}
        reg.why = f"{choice} labelled {reg.monitor_labels or '{}'} for {where}" + (
            f"; check namespace labelled {reg.namespace_labels}" if reg.namespace_labels else ""
        )
    return reg


# --- manifests (pure) -------------------------------------------------------------------------------------------------


def selector_terms(text: str) -> dict[str, str]:
    """``key=value[,key=value]`` into a dict ("" = none)."""
    out = {}
    for part in filter(None, (s.strip() for s in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise ValueError(f"service_metrics_node_selector {text!r}: expected key=value[,key=value]")
        out[key] = value
    return out


def inference_deployment(namespace: str, p: Any, *, annotate: bool) -> dict[str, Any]:
    """One replica of the test inference server, restricted-compliant, on ``service_metrics_node_selector``
    (tolerating a NoSchedule taint of the same keys: dedicated nodes are usually both labelled and tainted)."""
    node_selector = selector_terms(p.service_metrics_node_selector)
    annotations = (
        {"prometheus.io/scrape": "true", "prometheus.io/port": str(PORT), "prometheus.io/path": "/metrics"}
        if annotate
        else {}
    )
    container = {
        "name": "server",
        "image": p.image_python,
        "imagePullPolicy": p.image_pull_policy,
        "command": ["python3", f"{WORKLOAD_DIR}/inference_stub.py"],
        "args": ["--port", str(PORT), "--version", "v1", "--model", MODEL],
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "ports": [{"name": PORT_NAME, "containerPort": PORT}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": PORT}, "periodSeconds": 1},
        "resources": {"requests": {"cpu": "20m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "workloads", "mountPath": WORKLOAD_DIR, "readOnly": True}],
    }
    pod_spec: dict[str, Any] = {
        "terminationGracePeriodSeconds": 1,
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65534, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": [{"name": "workloads", "configMap": {"name": "workloads"}}],
    }
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
        pod_spec["tolerations"] = [{"key": k, "operator": "Exists", "effect": "NoSchedule"} for k in node_selector]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": APP, "namespace": namespace, "labels": {APP_LABEL: APP}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {APP_LABEL: APP}},
            "template": {"metadata": {"labels": {APP_LABEL: APP}, "annotations": annotations}, "spec": pod_spec},
        },
    }


def inference_service(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": APP, "namespace": namespace, "labels": {APP_LABEL: APP}},
        "spec": {
            "selector": {APP_LABEL: APP},
            "ports": [{"name": PORT_NAME, "port": PORT, "targetPort": PORT, "protocol": "TCP"}],
        },
    }


def service_monitor(namespace: str, workload_namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": MONITORING_GROUP,
        "kind": "ServiceMonitor",
        "metadata": {"name": APP, "namespace": namespace, "labels": dict(labels)},
        "spec": {
            "selector": {"matchLabels": {APP_LABEL: APP}},
            "namespaceSelector": {"matchNames": [workload_namespace]},
            "endpoints": [{"port": PORT_NAME, "path": "/metrics"}],
        },
    }


def pod_monitor(namespace: str, workload_namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": MONITORING_GROUP,
        "kind": "PodMonitor",
        "metadata": {"name": APP, "namespace": namespace, "labels": dict(labels)},
        "spec": {
            "selector": {"matchLabels": {APP_LABEL: APP}},
            "namespaceSelector": {"matchNames": [workload_namespace]},
            "podMetricsEndpoints": [{"port": PORT_NAME, "path": "/metrics"}],
        },
    }


# --- queries and judgements (pure) ------------------------------------------------------------------------------------


def promql(namespace: str) -> dict[str, str]:
    """The queries of one run, all restricted to the check's namespace (and the stub's model)."""
    sel = f'namespace="{namespace}"'
    model = f'{sel},model="{MODEL}"'
    return {
        "discovered": f"count(aiconf_inference_stub_info{{{sel}}})",
        "counter": f"sum by (job) (aiconf_requests_total{{{model}}})",
        "histogram_count": f"sum by (job) (aiconf_request_duration_seconds_count{{{model}}})",
        "histogram_buckets": f"count(aiconf_request_duration_seconds_bucket{{{model}}})",
        "queue_gauge": f"count(aiconf_requests_running{{{sel}}})",
        "scraped_at": f"max by (job) (timestamp(aiconf_requests_total{{{model}}}))",
        "now": "time()",
    }


def vector_by(answer: Any, label: str = "job") -> dict[str, float]:
    """``{label value: value}`` of an instant-vector answer (an error answer or no series: ``{}``)."""
    if not isinstance(answer, dict) or answer.get("status") != "success":
        return {}
    out: dict[str, float] = {}
    for r in (answer.get("data") or {}).get("result") or []:
        try:
            out[(r.get("metric") or {}).get(label, "")] = float((r.get("value") or [0, "nan"])[1])
        except (TypeError, ValueError):
            continue
    return out


def server_time(answer: Any) -> float | None:
    """The evaluation time of a ``time()`` answer: the monitoring system's own clock (no clock skew to the runner)."""
    try:
        return float(answer["data"]["result"][0])
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def scalar(answer: Any) -> float:
    """The value of a one-series answer (0 when it has none)."""
    values = vector_by(answer, "")
    return next(iter(values.values()), 0.0)


def judge_counter(per_job: dict[str, float], sent: int, failed: int, fresh: bool = True) -> tuple[Verdict, str]:
    """``fresh``: every job's last sample was scraped after the last send (a scrape lagging behind shows fewer)."""
    if not per_job:
        return Verdict.FAIL, f"aiconf_requests_total for this run's namespace never appeared after {sent} requests"
    wrong = {j: v for j, v in per_job.items() if v != sent}
    jobs = ", ".join(f"{j or '(no job)'}={v:g}" for j, v in sorted(per_job.items()))
    if not wrong and not fresh:
        return Verdict.UNKNOWN, (
            f"aiconf_requests_total = {sent} ({jobs}), but no scrape after the last send was collected in time: "
            "requests served later would not show yet"
        )
    if not wrong:
        extra = f" (in each of {len(per_job)} scrape jobs)" if len(per_job) > 1 else ""
        return Verdict.PASS, f"aiconf_requests_total = {sent} = the completions sent{extra}: {jobs}"
    if failed:
        return Verdict.UNKNOWN, (
            f"{failed} of the sends failed in the API server's proxy (a failed send may still have been served): "
            f"the count cannot be judged exactly ({jobs}, {sent} answered)"
        )
    return Verdict.FAIL, f"aiconf_requests_total is not the number of completions sent ({sent}): {jobs}"


def judge_histogram(per_job: dict[str, float], buckets: float, sent: int) -> tuple[Verdict, str]:
    counts = ", ".join(f"{j or '(no job)'}={v:g}" for j, v in sorted(per_job.items())) or "no series"
    if per_job and all(v >= sent for v in per_job.values()) and buckets > 0:
        return Verdict.PASS, f"aiconf_request_duration_seconds_count >= {sent} ({counts}); {buckets:g} bucket series"
    return Verdict.FAIL, (
        f"aiconf_request_duration_seconds: _count {counts} (need >= {sent} in every job), {buckets:g} bucket series"
    )


# --- cluster side -----------------------------------------------------------------------------------------------------


def discover_monitoring(kube: Kube, p: Any) -> Inventory:
    """The platform's query endpoint (reusing accelerator_metrics' search) and the monitoring objects around it."""
    inv = Inventory()
    if kube.has_kind(MONITORING_GROUP, "Prometheus"):
        inv.instances = [OperatorInstance.from_object(o) for o in kube.list(MONITORING_GROUP, "Prometheus")]
    inv.monitor_kinds = [k for k in ("ServiceMonitor", "PodMonitor") if kube.has_kind(MONITORING_GROUP, k)]
    seen = set()
    for sel in PROMETHEUS_SELECTORS:
        for svc in kube.list("v1", "Service", None, label_selector=sel):
            ref = f"{svc['metadata']['namespace']}/{svc['metadata']['name']}"
            if ref not in seen:
                seen.add(ref)
                labels = svc["metadata"].get("labels") or {}
                inv.services.append({"service": ref, "labels": labels, "toolkit": toolkit_owned(labels)})
    for version in OTEL_VERSIONS:
        if kube.has_kind(version, "OpenTelemetryCollector"):
            inv.otel += [
                f"{o['metadata']['namespace']}/{o['metadata']['name']}"
                for o in kube.list(version, "OpenTelemetryCollector")
            ]
            break
    inv.otel += [
        f"pod {o['metadata']['namespace']}/{o['metadata']['name']}"
        for o in kube.list("v1", "Pod", None, label_selector=OTEL_POD_SELECTOR)
    ]
    target = find_prometheus(kube, SimpleNamespace(accel_prometheus=p.service_metrics_prometheus))
    if target is not None and not target.url:
        svc = kube.get("v1", "Service", target.service, target.namespace) or {}
        inv.target_labels = (svc.get("metadata") or {}).get("labels") or {}
        instance = next((i for i in inv.instances if i.namespace == target.namespace), None)
        if toolkit_owned(inv.target_labels) or (instance is not None and instance.toolkit):
            other = next((s for s in inv.services if not s["toolkit"]), None)
            if other is None or p.service_metrics_prometheus:
                inv.toolkit_only = True
                inv.target = target
                return inv
            ns, _, name = other["service"].partition("/")
            target = PromTarget(ns, name, _web_port(kube, ns, name), "Service labelled prometheus (not the toolkit's)")
            inv.target_labels = other["labels"]
    inv.target = target
    return inv


def _web_port(kube: Kube, namespace: str, name: str) -> str:
    svc = kube.get("v1", "Service", name, namespace) or {}
    ports = (svc.get("spec") or {}).get("ports") or []
    port = next((x for x in ports if x.get("port") == 9090 or x.get("name") in ("web", "http", "http-web")), None)
    return str((port or {}).get("name") or (port or {}).get("port") or 9090)


def describe_system(inv: Inventory) -> str:
    parts = []
    if inv.instances:
        parts.append("Prometheus Operator instances " + ", ".join(f"{i.namespace}/{i.name}" for i in inv.instances))
    if inv.monitor_kinds:
        parts.append(f"{'/'.join(inv.monitor_kinds)} served")
    if inv.services:
        parts.append("Services labelled prometheus " + ", ".join(s["service"] for s in inv.services))
    if inv.otel:
        parts.append("OpenTelemetry collectors " + ", ".join(inv.otel))
    return "; ".join(parts) or "nothing"


class Sender:
    """Sends exactly ``count`` completions through the API server's service proxy, spread over ``spread_s``
    seconds, in a thread; counts what was answered. A send is never retried (a retry could be served twice)."""

    def __init__(self, kube: Kube, namespace: str, count: int, spread_s: float, timeout_s: float):
        self.path = f"/api/v1/namespaces/{namespace}/services/{APP}:{PORT_NAME}/proxy/v1/completions"
        self.kube = once(kube, timeout_s)
        self.count, self.spread_s = count, spread_s
        self.ok = 0
        self.failed: list[str] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="ai-service-metrics-sender", daemon=True)

    def start(self) -> Sender:
        self.thread.start()
        return self

    @property
    def sent(self) -> int:
        return self.ok + len(self.failed)

    def _run(self) -> None:
        started = time.monotonic()
        try:
            for i in range(self.count):
                body = {"model": MODEL, "prompt": f"aiconf service metrics request {i}", "max_tokens": 8}
                try:
                    self.kube.raw("POST", self.path, body)
                    self.ok += 1
                except (ApiException, OSError, ValueError) as e:
                    why = f"HTTP {e.status} {e.reason}" if isinstance(e, ApiException) else f"{type(e).__name__}: {e}"
                    self.failed.append(why[:200])
                pause = started + self.spread_s * (i + 1) / self.count - time.monotonic()
                if pause > 0 and i + 1 < self.count:
                    time.sleep(pause)  # pacing the sends, not polling
        finally:
            self.done.set()


def once(kube: Kube, timeout_s: float) -> Kube:
    """The same connection without retries (a retried POST could be served twice; exact counts need once)."""
    if isinstance(kube, Kube):
        return Kube(kube.api_client, request_timeout_s=timeout_s, retries=0, server=kube.server)
    return kube


def send_requests(kube: Kube, namespace: str, p: Any) -> Sender:
    """Start the K sends (a module-level function so tests can break it on purpose)."""
    return Sender(kube, namespace, p.service_metrics_requests, p.service_metrics_send_s, p.request_timeout_s).start()


def register(ctx: CheckContext, reg: Registration, namespace: str) -> str:
    """Create the monitor (or nothing for annotations); returns what was registered."""
    if reg.how == "annotations":
        return "pod annotations prometheus.io/scrape=true, port 8000, path /metrics"
    if reg.namespace_labels:
        ctx.kube.patch("v1", "Namespace", namespace, {"metadata": {"labels": reg.namespace_labels}})
    where = reg.monitor_namespace or namespace
    build = service_monitor if reg.how == "servicemonitor" else pod_monitor
    obj = ctx.create(build(where, namespace, reg.monitor_labels))
    if reg.monitor_namespace:  # outside the check's namespace: delete it explicitly
        kind = obj["kind"]
        ctx.on_cleanup(f"delete {kind} {where}/{APP}", ctx.kube.delete, MONITORING_GROUP, kind, APP, where)
    return f"{obj['kind']} {where}/{APP} labelled {reg.monitor_labels or '{}'}"


# --- preflight and charts ---------------------------------------------------------------------------------------------


def preflight(kube: Any, params: Any) -> tuple[bool, str]:
    """Read-only: is a monitoring system with a query endpoint recognisable?"""
    inv = discover_monitoring(kube, params)
    if inv.target is None:
        return False, f"no Prometheus query endpoint found ({describe_system(inv)})"
    if inv.toolkit_only:
        return False, f"the only Prometheus ({inv.target.describe()}) was deployed by aiconf, not the platform"
    return True, f"{inv.target.how}: {inv.target.describe()}"


def draw_counter(ax: Any, result: Any) -> None:
    """Client-side completions sent vs the server-side counter and histogram count the monitoring system returns."""
    frame = display.series(result, "counter")
    if frame.empty:
        ax.text(0.5, 0.5, "no samples (the workload was never discovered)", ha="center", va="center")
        ax.set_axis_off()
        return
    ax.step(frame["t_s"], frame["sent"], where="post", label="completions sent (client)", color="tab:grey")
    for column, style, label in (
        ("counter", "o-", "aiconf_requests_total (queried)"),
        ("histogram_count", "x--", "aiconf_request_duration_seconds_count (queried)"),
    ):
        if column in frame:
            ax.plot(frame["t_s"], frame[column], style, label=label, markersize=4)
    want = result.metrics.get("requests_sent")
    if want:
        ax.axhline(want, color="tab:green", linewidth=0.8, linestyle=":", label=f"K = {want}")
    ax.set_xlabel("seconds since the first send")
    ax.set_ylabel("requests")
    ax.set_title("Server-side counter in the monitoring system vs client-side sends")
    ax.legend(loc="lower right", fontsize=8)


def draw_discovery(ax: Any, result: Any) -> None:
    """When each milestone happened, from the workload's creation (discovery latency and collection latency)."""
    marks = result.metrics.get("milestones_s") or {}
    if not marks:
        ax.text(0.5, 0.5, "no milestones recorded", ha="center", va="center")
        ax.set_axis_off()
        return
    names = list(marks)
    values = [marks[n] for n in names]
    ax.barh(names, values, color="tab:blue")
    for y, v in enumerate(values):
        ax.text(v, y, f" {v:.1f} s", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the workload was created")
    ax.set_title("Discovery and collection latency")


# --- the check --------------------------------------------------------------------------------------------------------


def _not_run(ctx: CheckContext, subs: tuple[str, ...], why: str) -> None:
    for sub in subs:
        ctx.record(sub, Verdict.UNKNOWN, f"not measured: {why}", required=sub not in INFORMATIONAL)


@check(
    "ai_service_metrics",
    subchecks=SUBCHECKS,
    charts={"counter": draw_counter, "discovery": draw_discovery},
    preflight=preflight,
)
def run(ctx: CheckContext) -> None:
    p = ctx.params
    later = SUBCHECKS[1:]
    with ctx.step("detect the monitoring system"):
        inv = discover_monitoring(ctx.kube, p)
        ctx.save_evidence("monitoring-inventory.yaml", inv.to_dict())
        seen = describe_system(inv)
        expected = "the platform's Prometheus-compatible query endpoint (not one the toolkit deployed)"
        if inv.target is None:
            why = (
                "an OpenTelemetry collector has no query API: name its backend with service_metrics_prometheus"
                if inv.otel
                else "set service_metrics_prometheus, or attach manual evidence for a managed monitoring service"
            )
            ctx.record(
                "monitoring_detected",
                Verdict.UNKNOWN,
                f"no Prometheus query endpoint recognised ({why})",
                expected=expected,
                observed=seen,
            )
            _not_run(ctx, later, "no monitoring system to query")
            return
        if inv.toolkit_only:
            ctx.record(
                "monitoring_detected",
                Verdict.FAIL,
                f"the only Prometheus found ({inv.target.describe()}) was deployed by aiconf itself, not by the "
                "platform: a toolkit-deployed monitoring system never demonstrates the requirement",
                expected=expected,
                observed=seen,
            )
            _not_run(ctx, later, "the platform has no monitoring system of its own")
            return
        ctx.record(
            "monitoring_detected",
            Verdict.PASS,
            f"{inv.target.how}: {inv.target.describe()}",
            expected=expected,
            observed=seen,
        )
        if inv.target_labels.get(LABEL_MANAGED_BY) == SANDBOX_MANAGER:
            ctx.note(
                "the monitoring system is the aiconf sandbox's Prometheus (built from upstream, configured by the "
                "sandbox): it stands in for a platform's monitoring stack"
            )

    with ctx.step("query the monitoring system"):
        try:
            answer = query_prometheus(ctx.kube, inv.target, "count(up)", p.request_timeout_s)
        except (ApiException, OSError, ValueError) as e:
            answer = {
                "status": "error",
                "error": f"HTTP {e.status} {e.reason}" if isinstance(e, ApiException) else str(e),
            }
        ok = isinstance(answer, dict) and answer.get("status") == "success"
        ctx.save_evidence("query-endpoint.yaml", {"query": "count(up)", "answer": answer})
        ctx.record(
            "query_endpoint_reachable",
            ok,
            f"{inv.target.describe()} answered count(up) = {scalar(answer):g} targets"
            if ok
            else f"{inv.target.describe()} did not answer an instant query: {str(answer.get('error', answer))[:200]}",
            expected="status success from /api/v1/query",
            observed=str(answer)[:300],
        )
        if not ok:
            _not_run(ctx, later[1:], "the query endpoint does not answer")
            return

    with ctx.step("deploy the inference stub and register it"):
        reg = plan_registration(p.service_metrics_registration, inv, dict(p.service_metrics_monitor_labels or {}))
        ns = ctx.namespace()
        queries = promql(ns)
        ctx.create(workloads_configmap("workloads", ns, ("inference_stub.py",)))
        created = time.monotonic()
        ctx.create(inference_deployment(ns, p, annotate=reg.how == "annotations"))
        ctx.create(inference_service(ns))
        registered = register(ctx, reg, ns)
        ctx.metric("registration", {"how": reg.how, "what": registered, "why": reg.why})
        ctx.log(f"registered: {registered} ({reg.why})")
        ctx.kube.wait_until(
            "v1",
            "Pod",
            ns,
            lambda pods: any(condition(o, "Ready") == "True" for o in pods),
            p.pod_start_timeout_s,
            "the inference stub pod Ready",
            label_selector=f"{APP_LABEL}={APP}",
        )
        ready = time.monotonic()

    def query(name: str) -> Any:
        try:
            return query_prometheus(ctx.kube, inv.target, queries[name], p.request_timeout_s)
        except (ApiException, OSError, ValueError) as e:  # one failed sample is a gap in the series, not a verdict
            return {"status": "error", "error": str(e)[:200]}

    with ctx.step("wait for the monitoring system to discover the workload"):
        try:
            ctx.kube.sample(
                lambda: scalar(query("discovered")),
                p.service_metrics_query_interval_s,
                lambda n: n >= 1,
                p.service_metrics_discovery_timeout_s,
                f"{queries['discovered']} >= 1",
            )
            discovered = time.monotonic()
        except WaitTimeout:
            discovered = None
        milestones = {"pod Ready": ready - created}
        if discovered is None:
            ctx.metric("milestones_s", milestones)
            ctx.record(
                "workload_discovered",
                Verdict.FAIL,
                f"the stub's metrics never appeared within {p.service_metrics_discovery_timeout_s}s of the pod "
                f"being Ready ({registered})",
                expected=f"{queries['discovered']} >= 1",
                observed="no series",
                registration=reg.__dict__,
            )
            _not_run(ctx, later[2:], "the workload's metrics were never collected")
            return
        milestones["first sample collected"] = discovered - created
        ctx.metric("discovery_latency_s", round(discovered - ready, 2))
        ctx.record(
            "workload_discovered",
            Verdict.PASS,
            f"collected {discovered - ready:.1f}s after the pod was Ready, registered by {registered}",
            expected=f"{queries['discovered']} >= 1 within {p.service_metrics_discovery_timeout_s}s",
            observed=f"first sample after {discovered - ready:.1f}s",
            registration=reg.__dict__,
        )

    with ctx.step(f"send {p.service_metrics_requests} completions and query until the counter equals them"):
        series = ctx.series("counter")
        sender = send_requests(ctx.kube, ns, p)
        t0 = time.monotonic()
        state: dict[str, Any] = {}

        def take() -> dict[str, Any]:
            done = sender.done.is_set()  # read before the queries: a sample taken after the last send
            if done and state.get("after") is None:
                # The monitoring system's clock once the sends are over: only a scrape that started later saw them all.
                state["after"] = server_time(query("now"))
            # The scrape time first: the counter read after it comes from that scrape or a newer one. Read the other
            # way round, a scrape landing between the two queries paired an old count with a new time (a false PASS
            # seen once: 20 counted as fresh while 21 had been sent).
            scraped = vector_by(query("scraped_at"))
            counter, hist = vector_by(query("counter")), vector_by(query("histogram_count"))
            series.add(
                t_s=round(time.monotonic() - t0, 2),
                sent=sender.sent,
                counter=sum(counter.values()) if counter else None,
                histogram_count=sum(hist.values()) if hist else None,
                jobs=len(counter),
            )
            after = state.get("after")
            fresh = after is not None and all(scraped.get(j, 0) >= after for j in counter)
            state.update(done=done, counter=counter, hist=hist, fresh=fresh)
            return state

        def settled(s: dict[str, Any]) -> bool:
            # Equal to the sends in a scrape newer than the last send: collected. Above them: a counter never comes
            # back down, waiting cannot help.
            values = s["counter"].values()
            if not (s["done"] and values):
                return False
            return max(values) > sender.ok or (s["fresh"] and all(v == sender.ok for v in values))

        try:
            ctx.kube.sample(
                take,
                p.service_metrics_query_interval_s,
                settled,
                p.service_metrics_send_s + p.service_metrics_query_timeout_s,
                f"{queries['counter']} == the completions sent",
            )
            exact = state["fresh"] and all(v == sender.ok for v in state["counter"].values())
            collected = time.monotonic() if exact else None
        except WaitTimeout:
            collected = None
        if not state.get("done"):  # timed out while sending: let the bounded sender finish, take a last sample
            sender.done.wait(p.request_timeout_s * 2)
            take()
        ctx.metric("requests_sent", sender.ok)
        ctx.metric("send_failures", sender.failed)
        if collected is not None:
            milestones["counter == K"] = collected - created
            ctx.metric("collection_latency_s", round(collected - t0, 2))
        ctx.metric("milestones_s", {k: round(v, 2) for k, v in milestones.items()})
        verdict, summary = judge_counter(
            state.get("counter") or {}, sender.ok, len(sender.failed), bool(state.get("fresh"))
        )
        ctx.record(
            "counter_matches_requests",
            verdict,
            summary,
            expected=f"{queries['counter']} == {sender.ok} (completions answered, of {p.service_metrics_requests})",
            observed=str(state.get("counter")),
            send_failures=sender.failed,
        )
        buckets = scalar(query("histogram_buckets"))
        verdict, summary = judge_histogram(state.get("hist") or {}, buckets, sender.ok)
        ctx.record(
            "histogram_reflects_requests",
            verdict,
            summary,
            expected=f"{queries['histogram_count']} >= {sender.ok} and bucket series present",
            observed=f"{state.get('hist')}; {buckets:g} buckets",
        )
        gauges = scalar(query("queue_gauge"))
        ctx.record(
            "queue_gauge_collected",
            gauges >= 1,
            f"aiconf_requests_running: {gauges:g} series",
            expected=f"{queries['queue_gauge']} >= 1",
            observed=f"{gauges:g}",
            required=False,
        )
        ctx.save_evidence("queries.yaml", {"target": inv.target.__dict__, "queries": queries})

    ctx.proves(
        f"the platform's monitoring system ({inv.target.describe()}) discovered a workload registered by "
        f"{reg.how} and collected its request counter exactly: {sender.ok} completions sent, the same number queried",
    )
    ctx.does_not_prove(
        "that a real model server's own metrics (vLLM, Triton, ...) are collected: the workload is aiconf's test "
        "inference server with AI-server-like metric names",
        "alerting, retention or dashboards of the monitoring system",
    )
