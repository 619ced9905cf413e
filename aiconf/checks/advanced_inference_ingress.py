"""advanced_inference_ingress (KAR-0011; SHOULD in 1.36): the platform implements the Gateway API Inference Extension
(GAIE): a gateway routes to pools of model servers (InferencePool) through an endpoint picker that reads the servers'
advertised metrics.

What each sub-check proves:

* ``inference_pool_api_served`` (required): ``InferencePool`` is served (``inference.networking.k8s.io/v1``, or the
  older ``inference.networking.x-k8s.io/v1alpha2``). Not served -> NOT_APPLICABLE for every sub-check, with a drafted
  justification naming the APIs searched.
* ``inference_objective_api_served`` (informational): ``InferenceObjective`` (x-k8s; the older ``InferenceModel``).
* ``gateway_class_accepted`` (required): a GatewayClass is Accepted by its controller and a Gateway of it is
  Programmed (``gaie_gateway`` names one). GAIE APIs with no gateway to implement them -> FAIL.
* ``existing_pools`` (informational): the cluster's InferencePools and what their gateways say (Accepted,
  ResolvedRefs), as evidence.
* ``gateway_resolves_pool_backend`` (required): an HTTPRoute whose backend is an InferencePool (both made by the
  check, in its namespace) is Accepted by that Gateway with ``ResolvedRefs=True``: the gateway understands pools as
  backends. ``ResolvedRefs=False`` (e.g. ``InvalidKind``) -> FAIL; no status within ``gaie_route_timeout_s`` -> FAIL.
* ``metric_aware_routing`` (required): requests follow the endpoint picker's decisions on advertised metrics
  (e.g. queue depth). The check does not run an endpoint picker itself: it judges the upstream GAIE conformance
  suite's report given in ``gaie_conformance_report`` (Gateway profile core tests, which include routing that follows
  the endpoint picker, for the installed GAIE version: PASS; failures: FAIL; a report for another version: UNKNOWN).
  Without a report: UNKNOWN, naming the suite. So this check never PASSes on API presence or route status alone.
  It also takes the verdict of ``routing_follows_metrics`` when that ran: a FAIL of either is FAIL, else a PASS of
  either is PASS, else UNKNOWN.
* ``routing_follows_metrics`` (informational; it feeds ``metric_aware_routing``): behind the probe pool, only when the
  gateway resolved it and ``gaie_epp_deploy`` is on, the check deploys an endpoint picker (the upstream EPP image, at
  the installed GAIE release) and one TEST inference server per ``gaie_queue_depths`` entry, each advertising that
  queue depth under vLLM's metric names; it sends ``gaie_routing_requests`` requests through the gateway, rotates the
  advertised depths and sends them again (each phase after an uncounted warm-up until the shortest queue answers once,
  bounded by ``gaie_route_timeout_s``, then ``gaie_settle_s``). In each phase the pod advertising the shortest queue must get the largest
  share, with the exact (Clopper-Pearson) lower bound at ``gaie_confidence`` above ``gaie_min_share``: a picker that
  ignores metrics (an even split) FAILs, and so does one that sends everything to one pod whatever it advertises
  (the rotation makes that pod the longest queue in a phase). Without an endpoint picker: UNKNOWN, with the reason.
  This path was not run against a live EPP in this project (the sandbox's gateway refuses pool backends).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml

from aiconf import display
from aiconf.checks.accelerator_metrics import proxy_path
from aiconf.checks.ai_inference import (
    STUB_PORT,
    backend_pod,
    binom_test,
    clopper_pearson,
    condition_text,
    gateway_url,
    outcome,
    process_nodes,
    reachable,
    route_parent_status,
    run_planned_requests,
)
from aiconf.checks.disaggregated_inference import mark_not_applicable, parent_condition
from aiconf.context import CheckContext
from aiconf.errors import ConfigError, WaitTimeout
from aiconf.kube import condition
from aiconf.model import Verdict
from aiconf.registry import check

GAIE_GROUP = "inference.networking.k8s.io"
GAIE_X_GROUP = "inference.networking.x-k8s.io"
GATEWAY_API = "gateway.networking.k8s.io/v1"
BUNDLE_ANNOTATION = "inference.networking.k8s.io/bundle-version"
PROBE_APP = "gaie-probe"
EPP_APP = "gaie-epp"
PROBE_POOL = "aiconf-probe-pool"
PROBE_ROUTE = "aiconf-probe-route"
#: The endpoint picker's ports (upstream defaults): ext-proc gRPC, gRPC health.
EPP_GRPC_PORT, EPP_HEALTH_PORT = 9002, 9003
#: What the upstream suite is run with (KAR-0011's automated test).
CONFORMANCE_HINT = (
    "run the upstream GAIE conformance suite against the gateway class and attach its report: "
    "git clone https://github.com/kubernetes-sigs/gateway-api-inference-extension; cd conformance; "
    "go test . -args -gateway-class <class> (its mock backends need no accelerator)"
)

SUBCHECKS = (
    "inference_pool_api_served",
    "inference_objective_api_served",
    "gateway_class_accepted",
    "existing_pools",
    "gateway_resolves_pool_backend",
    "metric_aware_routing",
    "routing_follows_metrics",
)
INFORMATIONAL = ("inference_objective_api_served", "existing_pools", "routing_follows_metrics")


# --- discovery -------------------------------------------------------------------------------------------------------


def served_kind(kube: Any, groups: tuple[str, ...], kind: str) -> str:
    """``group/version`` serving ``kind`` (first group, preferred version first); "" when none does."""
    for group in groups:
        for version in kube.served_versions(group):
            if kube.has_kind(f"{group}/{version}", kind):
                return f"{group}/{version}"
    return ""


def pool_rows(pools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (pool, parent gateway): Accepted and ResolvedRefs as the gateway wrote them."""
    rows = []
    for pool in pools:
        meta = pool["metadata"]
        parents = (pool.get("status") or {}).get("parents") or []
        if not parents:
            rows.append(
                {
                    "pool": f"{meta['namespace']}/{meta['name']}",
                    "parent": "(no gateway status)",
                    "accepted": "",
                    "resolved_refs": "",
                }
            )
        for parent in parents:
            ref = parent.get("parentRef") or parent.get("gatewayRef") or {}
            rows.append(
                {
                    "pool": f"{meta['namespace']}/{meta['name']}",
                    "parent": f"{ref.get('namespace', meta['namespace'])}/{ref.get('name', '?')}",
                    "accepted": parent_condition(parent, "Accepted") or "",
                    "resolved_refs": parent_condition(parent, "ResolvedRefs") or "",
                }
            )
    return rows


def pick_gateway(kube: Any, params: Any, classes: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, str]:
    """The Gateway for the probe route: ``gaie_gateway``, else the first Programmed one of an Accepted class."""
    accepted = {c["metadata"]["name"] for c in classes if condition(c, "Accepted") == "True"}
    if params.gaie_gateway:
        ns, _, name = params.gaie_gateway.partition("/")
        if not name:
            raise ConfigError(f"gaie_gateway must be namespace/name, not '{params.gaie_gateway}'")
        gw = kube.get(GATEWAY_API, "Gateway", name, ns)
        return gw, "" if gw else f"Gateway {params.gaie_gateway} (gaie_gateway) does not exist"
    gateways = [
        g for g in kube.list(GATEWAY_API, "Gateway") if (g.get("spec") or {}).get("gatewayClassName") in accepted
    ]
    programmed = [g for g in gateways if condition(g, "Programmed") == "True"]
    if programmed:
        return programmed[0], ""
    return None, (
        f"no Programmed Gateway of an Accepted GatewayClass ({len(gateways)} Gateway(s) of "
        f"{', '.join(sorted(accepted)) or 'no Accepted class'})"
    )


# --- manifests (pure) ------------------------------------------------------------------------------------------------


def probe_pool(name: str, namespace: str) -> dict[str, Any]:
    """An InferencePool (v1) over pods labelled for the probe, with an endpoint picker reference."""
    return {
        "apiVersion": f"{GAIE_GROUP}/v1",
        "kind": "InferencePool",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "selector": {"matchLabels": {"aiconf.io/app": PROBE_APP}},
            "targetPorts": [{"number": 8000}],
            "endpointPickerRef": {"name": f"{name}-epp", "port": {"number": 9002}},
        },
    }


def probe_route(name: str, namespace: str, gateway: dict[str, Any], pool: str) -> dict[str, Any]:
    """An HTTPRoute on ``gateway`` whose only backend is the InferencePool ``pool``."""
    gmeta = gateway["metadata"]
    return {
        "apiVersion": GATEWAY_API,
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "parentRefs": [{"name": gmeta["name"], "namespace": gmeta["namespace"]}],
            "hostnames": [f"{name}.aiconf.invalid"],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": [{"group": GAIE_GROUP, "kind": "InferencePool", "name": pool}],
                }
            ],
        },
    }


def pool_pod(index: int, queue_depth: int, namespace: str, p: Any, node: dict[str, Any] | None) -> dict[str, Any]:
    """One endpoint of the probe pool: the TEST inference server advertising ``queue_depth`` under vLLM's names."""
    pod = backend_pod(f"endpoint-{index}", namespace, p, node)
    pod["metadata"]["name"] = f"gaie-endpoint-{index}"
    pod["metadata"]["labels"]["aiconf.io/app"] = PROBE_APP
    container = pod["spec"]["containers"][0]
    container["command"] += ["--queue-depth", str(queue_depth), "--kv-cache-usage", str(kv_cache_for(queue_depth))]
    container["env"].append({"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})
    return pod


def kv_cache_for(queue_depth: int) -> float:
    """The KV-cache use advertised beside a queue depth: in the same order, so both default scorers agree."""
    return round(min(0.9, 0.1 + queue_depth / 100), 2)


def epp_config() -> str:
    """The endpoint picker's configuration: score on queue depth and KV-cache use only (no prefix-cache affinity,
    which would tie repeated prompts to one pod whatever it advertises)."""
    return yaml.safe_dump(
        {
            "apiVersion": "inference.networking.x-k8s.io/v1alpha1",
            "kind": "EndpointPickerConfig",
            "plugins": [
                {"type": "queue-scorer"},
                {"type": "kv-cache-utilization-scorer"},
                {"type": "max-score-picker"},
            ],
            "schedulingProfiles": [
                {
                    "name": "default",
                    "plugins": [
                        {"pluginRef": "queue-scorer", "weight": 2},
                        {"pluginRef": "kv-cache-utilization-scorer", "weight": 1},
                        {"pluginRef": "max-score-picker"},
                    ],
                }
            ],
        },
        sort_keys=False,
    )


def epp_objects(pool: str, namespace: str, image: str, p: Any, node: dict[str, Any] | None) -> list[dict[str, Any]]:
    """What the endpoint picker of ``pool`` needs in the check's namespace: a ServiceAccount, a Role to read pods,
    pools and objectives (what upstream's chart grants), its binding, the picker pod and the Service the pool's
    ``endpointPickerRef`` names."""
    name = f"{pool}-epp"
    labels = {"aiconf.io/app": EPP_APP}
    read = ["get", "list", "watch"]
    pod = backend_pod("epp", namespace, p, node)  # placement, restricted security context, no token automount
    spec = pod["spec"]
    spec["serviceAccountName"] = name
    spec["automountServiceAccountToken"] = True  # the picker watches pods and its pool through the API
    spec["securityContext"] = {**spec["securityContext"], "runAsUser": 65532}  # the distroless image's nonroot user
    spec["containers"] = [
        {
            "name": "epp",
            "image": image,
            "imagePullPolicy": "IfNotPresent",
            "args": [
                "--pool-name",
                pool,
                "--pool-namespace",
                namespace,
                "--config-text",
                epp_config(),
                "--grpc-port",
                str(EPP_GRPC_PORT),
                "--grpc-health-port",
                str(EPP_HEALTH_PORT),
                "--tracing=false",
                "--metrics-endpoint-auth=false",  # else it needs TokenReview/SubjectAccessReview rights
                "--zap-encoder",
                "json",
            ],
            "ports": [
                {"name": "grpc", "containerPort": EPP_GRPC_PORT},
                {"name": "grpc-health", "containerPort": EPP_HEALTH_PORT},
            ],
            "readinessProbe": {
                "grpc": {"port": EPP_HEALTH_PORT, "service": "inference-extension"},
                "periodSeconds": 2,
            },
            "env": [{"name": "NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}],
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            },
        }
    ]
    pod["metadata"] = {"name": name, "namespace": namespace, "labels": labels}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": name, "namespace": namespace},
            "rules": [
                {"apiGroups": [""], "resources": ["pods"], "verbs": read},
                {"apiGroups": [GAIE_GROUP], "resources": ["inferencepools"], "verbs": read},
                {
                    "apiGroups": [GAIE_X_GROUP],
                    "resources": ["inferenceobjectives", "inferencemodelrewrites"],
                    "verbs": read,
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": namespace},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        },
        pod,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "selector": labels,
                "ports": [
                    {
                        "name": "grpc-ext-proc",
                        "port": EPP_GRPC_PORT,
                        "targetPort": EPP_GRPC_PORT,
                        "appProtocol": "http2",
                    }
                ],
            },
        },
    ]


def phase_depths(depths: list[int], phase: int) -> list[int]:
    """The queue depth each pool pod advertises in ``phase`` (0, 1, ...): the list rotated by one per phase, so the
    shortest queue moves to another pod."""
    k = len(depths)
    return [depths[(i - phase) % k] for i in range(k)]


# --- judging the routing (pure) -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhaseJudgement:
    """One phase's requests, tallied per pool pod against what each pod advertised."""

    phase: int
    depths: dict[str, int]  #: pod -> advertised queue depth
    counts: dict[str, int]  #: pod -> requests it answered
    sent: int
    failures: dict[str, int]
    confidence: float
    min_share: float

    @property
    def answered(self) -> int:
        return sum(self.counts.values())

    @property
    def shortest(self) -> str:
        return min(self.depths, key=lambda pod: (self.depths[pod], pod))

    @property
    def interval(self) -> tuple[float, float]:
        return clopper_pearson(self.counts.get(self.shortest, 0), self.answered, self.confidence)

    @property
    def p_uniform(self) -> float:
        """Exact binomial test of the shortest queue's count against an even split (what a metric-blind picker does)."""
        return binom_test(self.counts.get(self.shortest, 0), self.answered, 1 / len(self.depths))

    @property
    def passed(self) -> bool:
        best = self.counts.get(self.shortest, 0)
        others = [n for pod, n in self.counts.items() if pod != self.shortest]
        return (
            self.sent > 0
            and self.answered == self.sent
            and self.interval[0] > self.min_share
            and all(best > n for n in others)
        )

    def describe(self) -> str:
        lo, hi = self.interval
        tally = ", ".join(f"{pod} (queue {self.depths[pod]}): {self.counts.get(pod, 0)}" for pod in sorted(self.depths))
        text = (
            f"phase {self.phase + 1}: {tally}; the shortest queue ({self.shortest}) got "
            f"{self.counts.get(self.shortest, 0)} of {self.answered} ({lo:.0%}-{hi:.0%} at {self.confidence:.0%}, "
            f"even-split p={self.p_uniform:.2g})"
        )
        if self.failures:
            text += f"; {self.sent - self.answered} of {self.sent} not answered by a pool pod: " + ", ".join(
                f"{k} x{v}" for k, v in sorted(self.failures.items())
            )
        return text


def judge_phase(
    phase: int, rows: list[dict[str, Any]], depths: dict[str, int], confidence: float, min_share: float
) -> PhaseJudgement:
    """Tally one phase's request rows (``pod`` = the X-Aiconf-Pod header) per pool pod."""
    counts = dict.fromkeys(depths, 0)
    failures: dict[str, int] = {}
    for r in rows:
        pod = r.get("pod") or ""
        if r.get("status") == 200 and pod in counts:
            counts[pod] += 1
        else:
            why = outcome(r) if r.get("status") != 200 else f"answered by {pod or 'no pool pod'}"
            failures[why] = failures.get(why, 0) + 1
    return PhaseJudgement(phase, dict(depths), counts, len(rows), failures, confidence, min_share)


def combine_routing_evidence(verdicts: list[Verdict]) -> Verdict:
    """metric_aware_routing from its evidence (report, measurement): any FAIL, else any PASS, else UNKNOWN."""
    if Verdict.FAIL in verdicts:
        return Verdict.FAIL
    return Verdict.PASS if Verdict.PASS in verdicts else Verdict.UNKNOWN


def parent_status(route: dict[str, Any] | None, gateway: dict[str, Any]) -> dict[str, Any] | None:
    """The route's status entry written for ``gateway`` (None until the gateway writes one)."""
    return route_parent_status(route, (gateway["metadata"]["namespace"], gateway["metadata"]["name"]))


def describe_conditions(parent: dict[str, Any] | None) -> str:
    return "no status from the gateway" if parent is None else condition_text(parent)


def installed_bundle_version(kube: Any) -> str:
    """The GAIE release the InferencePool CRD came from (its ``bundle-version`` annotation); "" when unknown."""
    crd = kube.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", f"inferencepools.{GAIE_GROUP}")
    return str(((crd or {}).get("metadata") or {}).get("annotations", {}).get(BUNDLE_ANNOTATION, ""))


def judge_conformance_report(doc: Any, installed_version: str) -> tuple[Verdict, str]:
    """The verdict on metric-aware routing from a GAIE conformance report (``kind: ConformanceReport``): PASS when its
    Gateway profile's core tests succeeded with none failed, for the installed GAIE version."""
    if not isinstance(doc, dict) or doc.get("kind") != "ConformanceReport":
        return Verdict.UNKNOWN, "the file given is not a conformance report (kind ConformanceReport)"
    version = str(
        doc.get("GatewayAPIInferenceExtensionVersion") or doc.get("gatewayAPIInferenceExtensionVersion") or ""
    )
    impl = doc.get("implementation") or {}
    who = f"{impl.get('project', '?')} {impl.get('version', '?')} on {doc.get('date', '?')}, GAIE {version or '?'}"
    if not version or (installed_version and version != installed_version):
        return Verdict.UNKNOWN, (
            f"the report ({who}) is not for the installed GAIE version {installed_version or '(unknown)'}: rerun the "
            "suite at the installed release"
        )
    profile = next((x for x in doc.get("profiles") or [] if x.get("name") == "Gateway"), None)
    core = (profile or {}).get("core") or {}
    stats = core.get("statistics") or {}
    passed, failed = int(stats.get("Passed", 0) or 0), int(stats.get("Failed", 0) or 0)
    counts = f"{passed} passed, {failed} failed, {int(stats.get('Skipped', 0) or 0)} skipped"
    if profile is None or not core:
        return Verdict.UNKNOWN, f"the report ({who}) has no Gateway profile core results"
    if core.get("result") == "success" and failed == 0 and passed > 0:
        return Verdict.PASS, f"GAIE conformance, Gateway profile core: success ({counts}); report: {who}"
    return Verdict.FAIL, f"GAIE conformance, Gateway profile core: {core.get('result')} ({counts}); report: {who}"


# --- chart -----------------------------------------------------------------------------------------------------------


def draw_pools(ax: Any, result: Any) -> None:
    """InferencePools per gateway and whether each gateway accepted and resolved them (the probe pool included)."""
    frame = display.series(result, "pools")
    if frame.empty or "pool" not in frame:
        ax.text(0.5, 0.5, "no InferencePool observed", ha="center", va="center")
        ax.set_axis_off()
        return
    labels = [f"{r.pool}\n-> {r.parent}" for r in frame.itertuples()]
    for i, r in enumerate(frame.itertuples()):
        for j, col in enumerate(("accepted", "resolved_refs")):
            value = str(getattr(r, col))
            colour = {"True": "#1a7f37", "False": "#cf222e"}.get(value, "#8c959f")
            ax.barh(i, 1, left=j, color=colour, edgecolor="white")
            ax.text(
                j + 0.5,
                i,
                value if value not in ("", "nan") else "none",
                ha="center",
                va="center",
                color="white",
                fontsize="small",
            )
    ax.set_yticks(range(len(labels)), labels, fontsize="x-small")
    ax.set_xticks([0.5, 1.5], ["Accepted", "ResolvedRefs"])
    ax.set_xlim(0, 2)
    ax.set_title("InferencePool backends as the gateways report them")


def draw_routing(ax: Any, result: Any) -> None:
    """Share of the requests each pool pod answered, per phase, labelled with the queue depth it advertised."""
    frame = display.series(result, "routing")
    if frame.empty or "share" not in frame:
        sub = result.subcheck("routing_follows_metrics") if hasattr(result, "subcheck") else None
        why = (sub.summary if sub else "") or "no requests were routed through an endpoint picker"
        ax.text(
            0.5,
            0.5,
            "\n".join(why[i : i + 70] for i in range(0, min(len(why), 280), 70)),
            ha="center",
            va="center",
            fontsize="small",
            transform=ax.transAxes,
        )
        ax.set_axis_off()
        return
    labels, x = [], 0.0
    for phase, group in frame.groupby("phase", sort=True):
        for r in group.sort_values("pod").itertuples():
            # the shortest queue's bar is green and outlined, so that it shows even when it got nothing
            colour, edge = ("#1a7f37", "#1a7f37") if r.shortest else ("#8c959f", "white")
            ax.bar(x, max(r.share, 0.005), color=colour, edgecolor=edge, linewidth=2)
            ax.text(x, r.share + 0.02, str(int(r.requests)), ha="center", fontsize="x-small")
            labels.append((x, f"{r.pod}\nqueue {int(r.depth)}\nphase {int(phase) + 1}", bool(r.shortest)))
            x += 1
        x += 0.7
    pods = frame["pod"].nunique()
    ax.axhline(1 / max(pods, 1), color="#cf222e", linestyle=":", label="even split (metric-blind picker)")
    rule = result.metrics.get("routing_rule") or {}
    if rule:
        ax.axhline(
            rule["min_share"],
            color="#1a7f37",
            linestyle="--",
            label=f"the shortest queue's lower bound ({rule['confidence']:.0%}) must exceed this",
        )
    ax.set_xticks([p for p, _, _ in labels], [t for _, t, _ in labels], fontsize="x-small")
    for tick, (_, _, shortest) in zip(ax.get_xticklabels(), labels, strict=True):
        if shortest:
            tick.set_color("#1a7f37")
            tick.set_fontweight("bold")
    ax.set_ylim(0, 1.3)  # room for the legend above the bars
    ax.set_ylabel("share of the phase's requests")
    ax.set_title("Requests per pool endpoint vs advertised queue depth (green: shortest queue)")
    ax.legend(loc="upper center", ncol=2, fontsize="x-small")


# --- the check -------------------------------------------------------------------------------------------------------


def preflight(kube: Any, params: Any) -> tuple[bool, str]:
    """Read-only: InferencePool served and a GatewayClass Accepted."""
    api = served_kind(kube, (GAIE_GROUP, GAIE_X_GROUP), "InferencePool")
    if not api:
        return False, "InferencePool (Gateway API Inference Extension) is not served"
    return True, f"InferencePool served ({api}); metric-aware routing needs manual evidence (GAIE conformance)"


def _record_rest(ctx: CheckContext, verdict: Verdict, why: str) -> None:
    for sub in SUBCHECKS:
        if ctx.result.subcheck(sub) is None:
            ctx.record(sub, verdict, f"not attempted: {why}", required=sub not in INFORMATIONAL)


@check(
    "advanced_inference_ingress",
    subchecks=SUBCHECKS,
    charts={"pools": draw_pools, "routing": draw_routing},
    preflight=preflight,
)
def run(ctx: CheckContext) -> None:
    p = ctx.params
    with ctx.step("detect the Gateway API Inference Extension"):
        pool_api = served_kind(ctx.kube, (GAIE_GROUP, GAIE_X_GROUP), "InferencePool")
        objective_api = served_kind(ctx.kube, (GAIE_X_GROUP,), "InferenceObjective") or served_kind(
            ctx.kube, (GAIE_X_GROUP,), "InferenceModel"
        )
        gateway_api = bool(ctx.kube.served_versions("gateway.networking.k8s.io"))
        if not pool_api:
            mark_not_applicable(
                ctx,
                "no_gateway_api_inference_extension",
                "The platform does not offer the Gateway API Inference Extension: the InferencePool API is not served "
                f"(searched {GAIE_GROUP} v1 and {GAIE_X_GROUP} v1alpha2; InferenceObjective/InferenceModel "
                f"{'served' if objective_api else 'not served either'}; Gateway API "
                f"{'served' if gateway_api else 'not served'}), so no gateway routes to model-server pools.",
                "InferencePool is not served",
                SUBCHECKS,
                INFORMATIONAL,
            )
            ctx.does_not_prove("anything about inference-aware ingress: the platform offers none")
            return
        ctx.record(
            "inference_pool_api_served",
            Verdict.PASS,
            f"InferencePool served ({pool_api})",
            expected="InferencePool served",
            observed=pool_api,
        )
        ctx.record(
            "inference_objective_api_served",
            Verdict.PASS if objective_api else Verdict.FAIL,
            f"served ({objective_api})" if objective_api else "InferenceObjective/InferenceModel not served",
            required=False,
            expected="InferenceObjective served",
            observed=objective_api or "not served",
        )

    with ctx.step("find an accepted gateway class and gateway"):
        classes = ctx.kube.list(GATEWAY_API, "GatewayClass") if gateway_api else []
        ctx.metric(
            "gateway_classes",
            [
                {
                    "name": c["metadata"]["name"],
                    "controller": (c.get("spec") or {}).get("controllerName"),
                    "accepted": condition(c, "Accepted"),
                }
                for c in classes
            ],
        )
        gateway, why = pick_gateway(ctx.kube, p, classes) if gateway_api else (None, "Gateway API is not served")
        if gateway is None:
            ctx.record(
                "gateway_class_accepted",
                Verdict.FAIL,
                f"InferencePool is served but nothing can route to it: {why}",
                expected="an Accepted GatewayClass with a Programmed Gateway",
                observed=why,
            )
        else:
            gname = f"{gateway['metadata']['namespace']}/{gateway['metadata']['name']}"
            ctx.record(
                "gateway_class_accepted",
                Verdict.PASS,
                f"Gateway {gname} (class {gateway['spec'].get('gatewayClassName')}) Programmed="
                f"{condition(gateway, 'Programmed')}",
                expected="an Accepted GatewayClass with a Programmed Gateway",
                observed=gname,
            )

    with ctx.step("read existing InferencePools"):
        rows = pool_rows(ctx.kube.list(pool_api, "InferencePool"))
        for row in rows:
            ctx.series("pools").add(**row)
        resolved = [r for r in rows if r["resolved_refs"] == "True"]
        ctx.record(
            "existing_pools",
            Verdict.PASS if resolved else Verdict.UNKNOWN,
            f"{len({r['pool'] for r in rows})} pool(s), {len(resolved)} resolved by a gateway",
            required=False,
            pools=rows[:50],
        )

    if gateway is None:
        _record_rest(ctx, Verdict.UNKNOWN, "no gateway to test")
        return
    if pool_api != f"{GAIE_GROUP}/v1":
        ctx.record(
            "gateway_resolves_pool_backend",
            Verdict.UNKNOWN,
            f"only {pool_api} is served: the probe uses {GAIE_GROUP}/v1 (upgrade GAIE, or attach evidence)",
        )
        _routing_not_measured(ctx, f"only {pool_api} is served (the probe pool is {GAIE_GROUP}/v1)")
    else:
        with ctx.step("attach an HTTPRoute with an InferencePool backend to the gateway"):
            ns = ctx.namespace()
            pool = ctx.create(probe_pool(PROBE_POOL, ns))
            route = ctx.create(probe_route(PROBE_ROUTE, ns, gateway, pool["metadata"]["name"]))
            name = route["metadata"]["name"]

            def judged(obj: dict[str, Any] | None) -> bool:
                parent = parent_status(obj, gateway)
                return parent is not None and parent_condition(parent, "ResolvedRefs") in ("True", "False")

            try:
                ctx.kube.wait_for(
                    GATEWAY_API,
                    "HTTPRoute",
                    name,
                    ns,
                    judged,
                    p.gaie_route_timeout_s,
                    "the gateway's status on the probe HTTPRoute",
                )
            except WaitTimeout:
                pass  # judged below: no status is a FAIL
            final = ctx.kube.get(GATEWAY_API, "HTTPRoute", name, ns)
            parent = parent_status(final, gateway)
            ctx.save_evidence("probe-route.yaml", yaml.safe_dump(final, sort_keys=False))
            observed = describe_conditions(parent)
            ok = parent_condition(parent, "Accepted") == "True" and parent_condition(parent, "ResolvedRefs") == "True"
            ctx.series("pools").add(
                pool=f"{ns}/{pool['metadata']['name']} (probe, via its HTTPRoute)",
                parent=f"{gateway['metadata']['namespace']}/{gateway['metadata']['name']}",
                accepted=parent_condition(parent, "Accepted") or "",
                resolved_refs=parent_condition(parent, "ResolvedRefs") or "",
            )
            ctx.record(
                "gateway_resolves_pool_backend",
                ok,
                (
                    "the gateway accepted a route to an InferencePool and resolved the pool"
                    if ok
                    else f"the gateway does not route to InferencePools: {observed}"
                ),
                expected="Accepted=True and ResolvedRefs=True for an InferencePool backendRef",
                observed=observed,
            )
        if not ok:
            _routing_not_measured(ctx, "the gateway does not resolve an InferencePool backend (see above)")
        else:
            _measure_routing(ctx, p, final, gateway, ns)

    with ctx.step("judge metric-aware routing"):
        installed = installed_bundle_version(ctx.kube)
        measured = ctx.result.subcheck("routing_follows_metrics")
        if not p.gaie_conformance_report and measured is not None and measured.verdict in (Verdict.PASS, Verdict.FAIL):
            ctx.record(
                "metric_aware_routing",
                measured.verdict,
                f"measured (routing_follows_metrics): {measured.summary}",
                expected="requests follow the endpoint picker's metric-based decisions",
                observed=measured.observed,
            )
            return
        if not p.gaie_conformance_report:
            ctx.record(
                "metric_aware_routing",
                Verdict.UNKNOWN,
                "not shown: routing on advertised metrics needs an endpoint picker (routing_follows_metrics was not "
                "measured; see its reason); "
                + CONFORMANCE_HINT
                + ", then set gaie_conformance_report to the report file",
                expected="requests follow the endpoint picker's metric-based decisions",
                observed="not measured; no conformance report given",
            )
            ctx.note("Manual evidence for metric-aware routing: " + CONFORMANCE_HINT)
            ctx.does_not_prove(
                "that the endpoint picker routes on model-server metrics (queue depth, KV cache): attach the "
                "GAIE conformance report"
            )
            return
        try:
            text = Path(p.gaie_conformance_report).expanduser().read_text()
            doc = yaml.safe_load(text)
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"gaie_conformance_report {p.gaie_conformance_report}: {e}") from None
        ctx.save_evidence("gaie-conformance-report.yaml", text)
        verdict, summary = judge_conformance_report(doc, installed)
        if measured is not None and measured.verdict in (Verdict.PASS, Verdict.FAIL):
            verdict = combine_routing_evidence([verdict, measured.verdict])
            summary = f"{summary}; measured (routing_follows_metrics): {measured.verdict}: {measured.summary}"
        ctx.record(
            "metric_aware_routing",
            verdict,
            summary,
            expected="the upstream GAIE conformance suite's Gateway profile passed (core tests, none failed) for the "
            f"installed GAIE version ({installed or 'unknown'})",
            observed=summary,
        )
        ctx.does_not_prove(
            "that this check ran the GAIE conformance suite: metric-aware routing is judged from the report given in "
            "gaie_conformance_report (its implementation and date are in the summary)"
        )


# --- the behavioural routing test ----------------------------------------------------------------------------------


def _routing_not_measured(ctx: CheckContext, why: str, verdict: Verdict = Verdict.UNKNOWN) -> None:
    ctx.record(
        "routing_follows_metrics",
        verdict,
        f"not measured: {why}",
        required=False,
        expected="the pool pod advertising the shortest queue gets most requests, in every phase",
        observed="not measured",
    )


def _measure_routing(ctx: CheckContext, p: Any, route: dict[str, Any], gateway: dict[str, Any], ns: str) -> None:
    """Deploy an endpoint picker and pool pods advertising different queue depths; send requests through the gateway
    in phases with the depths rotated; record ``routing_follows_metrics``."""
    if not p.gaie_epp_deploy:
        _routing_not_measured(
            ctx,
            "no endpoint picker for the probe pool: set gaie_epp_deploy: true to let the check deploy one (it creates "
            "a ServiceAccount, Role and RoleBinding: grant rbac/aiconf-gaie-epp.yaml), or attach the GAIE "
            "conformance report (gaie_conformance_report)",
        )
        return
    depths = [int(d) for d in p.gaie_queue_depths]
    if len(depths) < 2 or len(set(depths)) != len(depths):
        raise ConfigError(f"gaie_queue_depths needs at least two different depths, not {depths}")
    with ctx.step("deploy the endpoint picker and the pool's TEST inference servers"):
        nodes = process_nodes(ctx.kube.list("v1", "Node"))
        if not nodes:
            _routing_not_measured(ctx, "no Ready node runs containers (all nodes simulated?)")
            return
        node = nodes[0]
        version = p.gaie_epp_version or installed_bundle_version(ctx.kube)
        if not version:
            _routing_not_measured(
                ctx, "the installed GAIE release is unknown (no bundle-version): set gaie_epp_version"
            )
            return
        image = f"{p.gaie_epp_image}:{version}"
        ctx.metric("endpoint_picker", {"image": image, "config": epp_config()})
        pods = [f"gaie-endpoint-{i}" for i in range(len(depths))]
        for i, depth in enumerate(depths):
            ctx.create(pool_pod(i, depth, ns, p, node))
        for obj in epp_objects(PROBE_POOL, ns, image, p, node):
            ctx.create(obj)
        try:
            ctx.kube.wait_until(
                "v1",
                "Pod",
                ns,
                lambda objs: len(objs) == len(pods) + 1 and all(condition(o, "Ready") == "True" for o in objs),
                p.gaie_epp_timeout_s,
                f"the endpoint picker ({image}) and {len(pods)} pool pods Ready",
                label_selector=f"aiconf.io/app in ({PROBE_APP},{EPP_APP})",
            )
        except WaitTimeout as e:
            _routing_not_measured(ctx, f"the endpoint picker or the pool pods were not Ready: {e}")
            return

    with ctx.step("send requests through the gateway, rotating the advertised queue depths"):
        url = gateway_url(gateway, SimpleNamespace(inference_gateway_url=p.gaie_gateway_url))
        host = ((route.get("spec") or {}).get("hostnames") or [f"{PROBE_ROUTE}.aiconf.invalid"])[0]
        client = p.gaie_client
        if client == "auto":
            client = "runner" if reachable(url, 5.0) else "pod"
        ctx.metric("client", {"mode": client, "url": url, "host": host})
        ctx.metric("routing_rule", {"confidence": float(p.gaie_confidence), "min_share": float(p.gaie_min_share)})
        judgements = []
        for phase in range(2):
            advertised = dict(zip(pods, phase_depths(depths, phase), strict=True))
            if phase:  # the first phase's depths are the pods' command-line values
                for pod, depth in advertised.items():
                    query = f"/aiconf/advertise?queue_depth={depth}&kv_cache_usage={kv_cache_for(depth)}"
                    ctx.kube.raw("GET", proxy_path(ns, pod, STUB_PORT, query))
            plan = {
                "url": url,
                "host": host,
                "path": "/v1/chat/completions",
                "model": p.inference_model,
                "timeout_s": 5.0,
                # Warm-up (not counted) until the shortest queue answers once: the first phase waits for the data
                # plane to serve the new route, the second for the picker to re-read the rotated depths. A picker
                # that never picks it just spends the bound, and the measured requests judge it.
                "warmup_s": float(p.gaie_route_timeout_s if phase == 0 else p.gaie_settle_s),
                "budget_s": float(p.gaie_traffic_timeout_s) / 2,
                "batches": [
                    {
                        "kind": f"phase{phase}",
                        "count": int(p.gaie_routing_requests),
                        "headers": {},
                        "warmup_pod": min(advertised, key=lambda pod: (advertised[pod], pod)),
                    }
                ],
            }
            rows = run_planned_requests(
                ctx,
                plan,
                client,
                ns,
                node,
                p,
                p.gaie_route_timeout_s + p.gaie_traffic_timeout_s,
                pod_name=f"gaie-client-{phase}",
            )
            measured = [r for r in rows if r["kind"] != "warmup"]
            j = judge_phase(phase, measured, advertised, float(p.gaie_confidence), float(p.gaie_min_share))
            judgements.append(j)
            for pod in pods:
                ctx.series("routing").add(
                    phase=phase,
                    pod=pod,
                    depth=advertised[pod],
                    requests=j.counts[pod],
                    share=j.counts[pod] / j.answered if j.answered else 0.0,
                    shortest=pod == j.shortest,
                )

    passed = all(j.passed for j in judgements)
    text = "; ".join(j.describe() for j in judgements)
    ctx.record(
        "routing_follows_metrics",
        passed,
        (
            "routing followed the advertised queue depth: "
            if passed
            else "routing did not follow the advertised queue depth: "
        )
        + text,
        required=False,
        expected=f"every request answered by a pool pod; in each phase the shortest queue's share above "
        f"{float(p.gaie_min_share):.0%} (exact lower bound at {float(p.gaie_confidence):.0%}) and larger than any other pod's",
        observed=text,
    )
    ctx.note(
        "routing_follows_metrics: the pool's endpoints are aiconf's TEST inference server advertising set queue "
        "depths under vLLM's metric names (no model, no real queue); this path was not validated against a live "
        "endpoint picker in this project"
    )
    if passed:
        ctx.proves(
            "the gateway sent requests for an InferencePool to the endpoint its endpoint picker chose from the pods' "
            "advertised queue depth, and followed the choice when the depths changed"
        )
