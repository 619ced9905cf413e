"""disaggregated_inference (KAR-0041; SHOULD in 1.36): an inference deployment with separate prefill and decode
instances serves a request through the gateway, and the request passes through both roles.

The check deploys nothing of its own: a disaggregated (P/D) deployment needs a framework and a model, which the
platform provides. It finds them, sends one request with a unique request id through the Gateway that exposes them,
and looks for that id in the logs of both roles (KAR-0041's own verification).

What each sub-check proves:

* ``pd_framework_detected`` (informational): which P/D frameworks' APIs are served (NVIDIA Dynamo, llm-d, LeaderWorkerSet,
  SGLang RoleBasedGroup; an InferencePool alone is not counted: it also fronts undisaggregated servers). Nothing served and no pod labelled with a prefill/decode
  role -> NOT_APPLICABLE for every sub-check, with a drafted justification naming what was searched.
* ``separate_role_pods`` (required): at least one Ready prefill pod and one Ready decode pod, distinct pods, found by
  the role labels in ``disagg_role_labels``. Framework APIs served but no role pods -> UNKNOWN (nothing deployed to
  test); role pods of one role only, or not Ready -> FAIL.
* ``request_served`` (required): an HTTPRoute (``disagg_route``, else one whose backend Service or InferencePool
  selects role pods, else the only route in the role pods' namespace, e.g. to a frontend) and its Gateway answer a completion request carrying a unique ``disagg_request_id_header`` with
  HTTP 200 and a completion. No route found -> UNKNOWN; another status -> FAIL.
* ``request_id_in_both_roles`` (required): that request id appears in the logs of a prefill pod and of a decode pod.
  In one role only -> FAIL (the request provably skipped a phase); in neither -> UNKNOWN (the framework may not log
  request ids: attach manual evidence).
* ``role_topology`` (informational): which node runs each role's pods (the topology chart); whether prefill and
  decode share nodes (cross-node KV transfer is only exercised when they do not).
"""

from __future__ import annotations

import http.client
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiconf import display
from aiconf.context import CheckContext
from aiconf.errors import ConfigError, WaitTimeout
from aiconf.kube import condition
from aiconf.model import Verdict
from aiconf.registry import check

ROLES = ("prefill", "decode")

#: P/D frameworks recognised by the API kinds they serve: (framework, API group, kinds).
FRAMEWORKS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("NVIDIA Dynamo", "nvidia.com", ("DynamoGraphDeployment", "DynamoComponentDeployment")),
    ("llm-d", "llm-d.ai", ("ModelService",)),
    ("LeaderWorkerSet (multi-host vLLM/SGLang)", "leaderworkerset.x-k8s.io", ("LeaderWorkerSet",)),
    ("SGLang RoleBasedGroup", "workloads.x-k8s.io", ("RoleBasedGroup",)),
)

SUBCHECKS = (
    "pd_framework_detected",
    "separate_role_pods",
    "request_served",
    "request_id_in_both_roles",
    "role_topology",
)
INFORMATIONAL = ("pd_framework_detected", "role_topology")


# --- discovery (pure helpers) ----------------------------------------------------------------------------------------


def detect_frameworks(kube: Any) -> list[dict[str, str]]:
    """Frameworks whose kinds are served: ``[{framework, api_version, kind}]`` (discovery only, read-only)."""
    found = []
    for name, group, kinds in FRAMEWORKS:
        missing = list(kinds)
        for version in kube.served_versions(group):  # preferred version first: one row per kind
            served = {r.get("kind") for r in kube.api_resources(f"{group}/{version}")}
            for kind in [k for k in missing if k in served]:
                found.append({"framework": name, "api_version": f"{group}/{version}", "kind": kind})
                missing.remove(kind)
    return found


def role_of(pod: dict[str, Any], role_labels: list[str]) -> tuple[str, str] | None:
    """``(role, label key)`` when one of ``role_labels`` names a prefill or decode role (``prefill``,
    ``VllmDecodeWorker`` ...), else None. A value naming both (llm-d's ``prefill-decode``, ``both``) is an aggregated
    server, not a phase."""
    labels = (pod.get("metadata") or {}).get("labels") or {}
    for key in role_labels:
        value = str(labels.get(key, "")).lower()
        named = [role for role in ROLES if role in value]
        if len(named) == 1:
            return named[0], key
    return None


def all_container_logs(kube: Any, pod: dict[str, Any], tail_lines: int) -> str:
    """Every container's log of ``pod`` (llm-d logs the hand-over in the decode pod's routing sidecar)."""
    meta = pod["metadata"]
    names = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []] or [None]
    return "\n".join(
        kube.pod_logs(meta["name"], meta["namespace"], container=name, tail_lines=tail_lines) for name in names
    )


def is_ready(pod: dict[str, Any]) -> bool:
    return (
        not pod["metadata"].get("deletionTimestamp")
        and (pod.get("status") or {}).get("phase") == "Running"
        and condition(pod, "Ready") == "True"
    )


@dataclass
class RolePods:
    """Pods with a prefill/decode role label, by role."""

    pods: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {r: [] for r in ROLES})
    label_keys: set[str] = field(default_factory=set)

    def ready(self, role: str) -> list[dict[str, Any]]:
        return [p for p in self.pods[role] if is_ready(p)]

    def any(self) -> bool:
        return any(self.pods.values())

    def rows(self) -> list[dict[str, Any]]:
        return [
            {
                "role": role,
                "namespace": p["metadata"]["namespace"],
                "pod": p["metadata"]["name"],
                "node": (p.get("spec") or {}).get("nodeName") or "(unscheduled)",
                "ready": is_ready(p),
            }
            for role in ROLES
            for p in self.pods[role]
        ]


def find_role_pods(pods: list[dict[str, Any]], role_labels: list[str]) -> RolePods:
    found = RolePods()
    for pod in pods:
        hit = role_of(pod, role_labels)
        if hit:
            found.pods[hit[0]].append(pod)
            found.label_keys.add(hit[1])
    return found


def selects(selector: dict[str, str] | None, pod: dict[str, Any]) -> bool:
    """A Service-style equality selector (or InferencePool ``matchLabels``) selects the pod."""
    if not selector:
        return False
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return all(labels.get(k) == v for k, v in selector.items())


def pool_selector(pool: dict[str, Any]) -> dict[str, str]:
    """An InferencePool's label selector: v1 ``spec.selector.matchLabels``, v1alpha2 ``spec.selector`` (a map)."""
    sel = (pool.get("spec") or {}).get("selector") or {}
    return (
        dict(sel.get("matchLabels") or {})
        if "matchLabels" in sel
        else {k: v for k, v in sel.items() if isinstance(v, str)}
    )


def parent_condition(parent: dict[str, Any] | None, cond_type: str) -> str | None:
    """A condition's status in one ``status.parents[]`` entry of a route or pool (conditions sit at its top level)."""
    for c in (parent or {}).get("conditions") or []:
        if c.get("type") == cond_type:
            return c.get("status")
    return None


# --- the gateway (shared with advanced_inference_ingress) ------------------------------------------------------------


@dataclass(frozen=True)
class GatewayTarget:
    """Where to send a request for a route: the Gateway's address and listener port, and the Host header."""

    gateway: str
    address: str
    port: int
    host: str

    def describe(self) -> str:
        return f"Gateway {self.gateway} at {self.address}:{self.port}" + (f" (Host {self.host})" if self.host else "")


def gateway_target(kube: Any, route: dict[str, Any]) -> GatewayTarget | None:
    """The first parent Gateway of ``route`` that reports an address and has an HTTP listener; None when none does."""
    ns = route["metadata"]["namespace"]
    hostnames = (route.get("spec") or {}).get("hostnames") or []
    for ref in (route.get("spec") or {}).get("parentRefs") or []:
        if ref.get("kind", "Gateway") != "Gateway":
            continue
        gw_ns = ref.get("namespace") or ns
        gw = kube.get("gateway.networking.k8s.io/v1", "Gateway", ref["name"], gw_ns)
        if gw is None:
            continue
        addresses = [a.get("value") for a in (gw.get("status") or {}).get("addresses") or [] if a.get("value")]
        listeners = [
            ls
            for ls in (gw.get("spec") or {}).get("listeners") or []
            if ls.get("protocol") == "HTTP"
            and (not ref.get("sectionName") or ls.get("name") == ref["sectionName"])
            and (not ref.get("port") or ls.get("port") == ref["port"])
        ]
        if not addresses or not listeners:
            continue
        listener = listeners[0]
        host = hostnames[0] if hostnames else (listener.get("hostname") or "")
        return GatewayTarget(f"{gw_ns}/{ref['name']}", addresses[0], int(listener["port"]), host.replace("*", "aiconf"))
    return None


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    body: str
    headers: dict[str, str]
    seconds: float


def send(
    target: GatewayTarget,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout_s: float = 30,
) -> HttpAnswer:
    """One HTTP request to the Gateway (connection errors raise OSError: the caller decides what they mean)."""
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    if target.host:
        all_headers["Host"] = target.host
    started = time.monotonic()
    conn = http.client.HTTPConnection(target.address, target.port, timeout=timeout_s)
    try:
        conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=all_headers)
        resp = conn.getresponse()
        data = resp.read(1 << 20).decode("utf-8", "replace")
        return HttpAnswer(
            resp.status, data, {k.lower(): v for k, v in resp.getheaders()}, round(time.monotonic() - started, 3)
        )
    finally:
        conn.close()


def first_model(target: GatewayTarget, timeout_s: float) -> str:
    """The first model id ``GET /v1/models`` lists through the gateway ("" when it answers no list)."""
    try:
        answer = send(target, "GET", "/v1/models", timeout_s=timeout_s)
        return str(json.loads(answer.body)["data"][0]["id"]) if answer.status == 200 else ""
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return ""


def completion_text(body: str) -> str:
    """The generated text of an OpenAI completion / chat completion answer ("" when there is none)."""
    try:
        choice = (json.loads(body).get("choices") or [{}])[0]
    except (ValueError, AttributeError):
        return ""
    return str(choice.get("text") or (choice.get("message") or {}).get("content") or "")


# --- finding the route -----------------------------------------------------------------------------------------------


def find_route(kube: Any, params: Any, role_pods: RolePods) -> tuple[dict[str, Any] | None, str]:
    """The HTTPRoute to send the request through, and how it was chosen (or why none was)."""
    if params.disagg_route:
        ns, _, name = params.disagg_route.partition("/")
        if not name:
            raise ConfigError(f"disagg_route must be namespace/name, not '{params.disagg_route}'")
        route = kube.get("gateway.networking.k8s.io/v1", "HTTPRoute", name, ns)
        return route, (
            f"HTTPRoute {params.disagg_route} (disagg_route)"
            if route
            else f"HTTPRoute {params.disagg_route} (disagg_route) does not exist"
        )
    if not kube.has_kind("gateway.networking.k8s.io/v1", "HTTPRoute"):
        return None, "Gateway API HTTPRoute is not served"
    pods = [p for role in ROLES for p in role_pods.pods[role]]
    routes = kube.list("gateway.networking.k8s.io/v1", "HTTPRoute", params.disagg_namespace or None)
    for route in routes:
        ns = route["metadata"]["namespace"]
        for rule in (route.get("spec") or {}).get("rules") or []:
            for ref in rule.get("backendRefs") or []:
                ref_ns = ref.get("namespace") or ns
                if ref.get("kind", "Service") == "Service" and ref.get("group", "") == "":
                    svc = kube.get("v1", "Service", ref["name"], ref_ns)
                    selector = ((svc or {}).get("spec") or {}).get("selector")
                elif ref.get("kind") == "InferencePool":
                    version = ref.get("group") or "inference.networking.k8s.io"
                    pool = _get_pool(kube, version, ref["name"], ref_ns)
                    selector = pool_selector(pool) if pool else None
                else:
                    continue
                if any(p["metadata"]["namespace"] == ref_ns and selects(selector, p) for p in pods):
                    return route, (
                        f"HTTPRoute {ns}/{route['metadata']['name']}: its backend {ref.get('kind', 'Service')} "
                        f"{ref_ns}/{ref['name']} selects role pods"
                    )
    # A frontend in front of the roles (Dynamo's Frontend, a router) selects neither role: the one route in the
    # roles' namespace is then the way in.
    role_namespaces = {p["metadata"]["namespace"] for p in pods}
    local = [r for r in routes if r["metadata"]["namespace"] in role_namespaces]
    if len(local) == 1:
        meta = local[0]["metadata"]
        return local[0], f"HTTPRoute {meta['namespace']}/{meta['name']}: the only route in the role pods' namespace"
    return None, (
        "no HTTPRoute has a backend Service or InferencePool that selects the prefill/decode pods, and the role pods' "
        f"namespaces hold {len(local)} routes"
    )


def _get_pool(kube: Any, group: str, name: str, namespace: str) -> dict[str, Any] | None:
    for version in kube.served_versions(group):
        pool = kube.get(f"{group}/{version}", "InferencePool", name, namespace)
        if pool:
            return pool
    return None


def roles_with_id(logs: dict[str, dict[str, str]], request_id: str) -> dict[str, list[str]]:
    """``{role: [pods whose log holds request_id]}`` from ``{role: {pod: log}}``."""
    return {role: sorted(pod for pod, text in logs.get(role, {}).items() if request_id in text) for role in ROLES}


# --- chart -----------------------------------------------------------------------------------------------------------


def draw_topology(ax: Any, result: Any) -> None:
    """Role x node: how many pods of each role run on each node; the request's path marked where it was found."""
    frame = display.series(result, "request_path")
    if frame.empty:
        frame = display.series(result, "topology")
    if frame.empty or "role" not in frame:
        ax.text(0.5, 0.5, "no prefill/decode pods found", ha="center", va="center")
        ax.set_axis_off()
        return
    counts = frame.groupby(["node", "role"]).size().unstack(fill_value=0).reindex(columns=list(ROLES), fill_value=0)
    logged = (
        frame["has_request_id"].astype(str) == "True" if "has_request_id" in frame else frame["role"] != frame["role"]
    )
    hits = frame[logged].groupby(["node", "role"]).size()
    colours = {"prefill": "#1f6feb", "decode": "#8250df"}
    left = [0] * len(counts)
    for role in ROLES:
        ax.barh(counts.index.astype(str), counts[role], left=left, color=colours[role], label=f"{role} pods")
        for i, (node, n) in enumerate(counts[role].items()):
            if n:  # each segment says how many of its pods logged the request id
                ax.text(
                    left[i] + n / 2,
                    i,
                    f"{n} {role}\nid logged by {hits.get((node, role), 0)}",
                    ha="center",
                    va="center",
                    color="white",
                    fontsize="small",
                )
        left = [b + v for b, v in zip(left, counts[role], strict=True)]
    ax.set_xlabel("pods")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize="x-small", loc="lower right")
    ax.set_title("Prefill/decode topology (role x node)")


# --- the check -------------------------------------------------------------------------------------------------------


def preflight(kube: Any, params: Any) -> tuple[bool, str]:
    """Read-only: a P/D framework's API or pods with prefill/decode roles."""
    frameworks = detect_frameworks(kube)
    roles = find_role_pods(kube.list("v1", "Pod", params.disagg_namespace or None), list(params.disagg_role_labels))
    if not roles.any():
        named = ", ".join(sorted({f["framework"] for f in frameworks}))
        return False, (f"{named} served but no prefill/decode pods" if named else "no P/D framework or role pods")
    return True, f"{len(roles.pods['prefill'])} prefill and {len(roles.pods['decode'])} decode pods"


def _not_attempted(ctx: CheckContext, verdict: Verdict, why: str) -> None:
    for sub in SUBCHECKS:
        if ctx.result.subcheck(sub) is None:
            ctx.record(sub, verdict, f"not attempted: {why}", required=sub not in INFORMATIONAL)


def mark_not_applicable(
    ctx: CheckContext,
    reason_code: str,
    justification: str,
    summary: str,
    subchecks: tuple[str, ...],
    informational: tuple[str, ...],
) -> None:
    """The requirement's condition does not hold: the drafted justification, and every sub-check NOT_APPLICABLE."""
    ctx.not_applicable(reason_code, justification)
    for sub in subchecks:
        ctx.record(sub, Verdict.NOT_APPLICABLE, summary, required=sub not in informational)


def _searched(params: Any) -> str:
    apis = "; ".join(f"{name} ({group}: {', '.join(kinds)})" for name, group, kinds in FRAMEWORKS)
    where = f"namespace {params.disagg_namespace}" if params.disagg_namespace else "every namespace"
    return (
        f"the API kinds of {apis}, and pods in {where} labelled with a prefill or decode role "
        f"({', '.join(params.disagg_role_labels)})"
    )


@check("disaggregated_inference", subchecks=SUBCHECKS, charts={"topology": draw_topology}, preflight=preflight)
def run(ctx: CheckContext) -> None:
    p = ctx.params
    if not p.disagg_role_labels:
        raise ConfigError("disagg_role_labels must name at least one label key")

    with ctx.step("detect P/D frameworks and role pods"):
        frameworks = detect_frameworks(ctx.kube)
        role_pods = find_role_pods(ctx.kube.list("v1", "Pod", p.disagg_namespace or None), list(p.disagg_role_labels))
        ctx.metric("frameworks", frameworks)
        named = ", ".join(f"{f['framework']} ({f['api_version']} {f['kind']})" for f in frameworks)
        for row in role_pods.rows():
            ctx.series("topology").add(**row)

        if not frameworks and not role_pods.any():
            mark_not_applicable(
                ctx,
                "no_disaggregated_inference",
                "The platform offers no disaggregated (prefill/decode) inference: none of the frameworks that provide it "
                f"is installed and no workload runs separate prefill and decode roles. Searched: {_searched(p)}.",
                "no P/D framework API and no prefill/decode pods",
                SUBCHECKS,
                INFORMATIONAL,
            )
            ctx.does_not_prove("anything about disaggregated inference: the platform offers none")
            return
        ctx.record(
            "pd_framework_detected",
            Verdict.PASS if frameworks else Verdict.UNKNOWN,
            f"served: {named}" if frameworks else "no known framework API; role pods found by label only",
            expected="a P/D framework's API",
            observed=named or "none",
            required=False,
            frameworks=frameworks,
        )

    with ctx.step("check that prefill and decode run in separate pods"):
        counts = {r: f"{len(role_pods.ready(r))}/{len(role_pods.pods[r])} Ready" for r in ROLES}
        observed = f"prefill {counts['prefill']}, decode {counts['decode']}; labels {', '.join(sorted(role_pods.label_keys)) or '-'}"
        if not role_pods.any():
            ctx.record(
                "separate_role_pods",
                Verdict.UNKNOWN,
                f"{named} served, but no pod carries a prefill/decode role label: nothing deployed to test "
                "(deploy a P/D model, or add the framework's role label key to disagg_role_labels)",
                expected="Ready prefill and decode pods",
                observed=observed,
            )
            _not_attempted(ctx, Verdict.UNKNOWN, "no prefill/decode pods")
            ctx.does_not_prove("that disaggregated serving works: the framework's API is installed, nothing runs on it")
            return
        ok = all(role_pods.ready(r) for r in ROLES)
        ctx.record(
            "separate_role_pods",
            ok,
            "prefill and decode run in separate Ready pods" if ok else f"a role has no Ready pod: {observed}",
            expected=">= 1 Ready prefill pod and >= 1 Ready decode pod",
            observed=observed,
        )
        rows = role_pods.rows()
        nodes = {r: {x["node"] for x in rows if x["role"] == r and x["ready"]} for r in ROLES}
        shared = nodes["prefill"] & nodes["decode"]
        ctx.record(
            "role_topology",
            Verdict.PASS if ok else Verdict.UNKNOWN,
            (
                f"prefill on {len(nodes['prefill'])} node(s), decode on {len(nodes['decode'])}; "
                + (f"shared nodes: {', '.join(sorted(shared))}" if shared else "no node runs both roles")
            ),
            required=False,
            nodes={r: sorted(v) for r, v in nodes.items()},
        )
        if not shared and ok:
            ctx.note("Prefill and decode run on different nodes: a request served by both crossed nodes.")
        if not ok:
            _not_attempted(ctx, Verdict.UNKNOWN, "a role has no Ready pod")
            return

    with ctx.step("find the gateway route to the P/D deployment"):
        route, how = find_route(ctx.kube, p, role_pods)
        target = gateway_target(ctx.kube, route) if route else None
        if route is None or target is None:
            why = how if route is None else f"{how}, but no parent Gateway reports an address and an HTTP listener"
            ctx.record(
                "request_served",
                Verdict.UNKNOWN,
                f"{why}: set disagg_route to the route that serves the model",
                expected="an HTTPRoute to the P/D deployment through a Gateway",
                observed=why,
            )
            _not_attempted(ctx, Verdict.UNKNOWN, "no request was sent")
            ctx.does_not_prove("that a request through the gateway is served by both roles (no route was found)")
            return
        ctx.save_evidence("route.yaml", route)

    with ctx.step("send a request with a unique request id through the gateway"):
        request_id = f"aiconf-{ctx.run_id[-6:]}-{uuid.uuid4().hex[:12]}"
        model = p.disagg_model or first_model(target, p.disagg_request_timeout_s) or "aiconf"
        body: dict[str, Any] = {"model": model, "max_tokens": 8}
        if p.disagg_request_path.rstrip("/").endswith("chat/completions"):
            body["messages"] = [{"role": "user", "content": "Say hello in two words."}]
        else:
            body["prompt"] = "Say hello in two words."
        try:
            answer = send(
                target,
                "POST",
                p.disagg_request_path,
                body,
                {p.disagg_request_id_header: request_id},
                timeout_s=p.disagg_request_timeout_s,
            )
        except OSError as e:
            answer = HttpAnswer(0, f"{type(e).__name__}: {e}", {}, 0.0)
        text = completion_text(answer.body)
        ctx.metric(
            "request",
            {
                "request_id": request_id,
                "model": model,
                "status": answer.status,
                "latency_s": answer.seconds,
                "route": how,
                "gateway": target.describe(),
            },
        )
        ctx.save_evidence(
            "response.json", {"status": answer.status, "headers": answer.headers, "body": answer.body[:4000]}
        )
        served = answer.status == 200 and bool(text)
        ctx.record(
            "request_served",
            served,
            (
                f"HTTP 200 in {answer.seconds}s with a completion"
                if served
                else f"HTTP {answer.status or 'no answer'}: {answer.body[:200]}"
            ),
            expected=f"HTTP 200 and a completion for POST {p.disagg_request_path} via {target.describe()}",
            observed=f"HTTP {answer.status}, {len(text)} characters generated",
            request_id=request_id,
        )
        if answer.status == 0:
            _not_attempted(ctx, Verdict.UNKNOWN, "the gateway did not answer")
            return

    with ctx.step("look for the request id in both roles' logs"):

        def read_logs() -> dict[str, dict[str, str]]:
            logs: dict[str, dict[str, str]] = {r: {} for r in ROLES}
            for role in ROLES:
                for pod in role_pods.ready(role)[: p.disagg_max_pods_per_role]:
                    logs[role][pod["metadata"]["name"]] = all_container_logs(ctx.kube, pod, tail_lines=2000)
            return logs

        # Logs are written asynchronously and cannot be watched: read them until the id shows in both roles, bounded.
        state: dict[str, Any] = {}

        def found_in_both(logs: dict[str, dict[str, str]]) -> bool:
            state["logs"] = logs
            return all(roles_with_id(logs, request_id).values())

        try:
            ctx.kube.sample(read_logs, 1.0, found_in_both, p.disagg_log_wait_s, "the request id in both roles' logs")
        except WaitTimeout:
            pass  # judged below from the last logs read
        hits = roles_with_id(state.get("logs") or read_logs(), request_id)
        for row in role_pods.rows():
            ctx.series("request_path").add(**row, has_request_id=row["pod"] in hits[row["role"]])
        for role in ROLES:
            for pod, text in (state.get("logs") or {}).get(role, {}).items():
                lines = [ln for ln in text.splitlines() if request_id in ln]
                if lines:
                    ctx.save_evidence(f"logs/{role}-{pod}.log", "\n".join(lines[:20]) + "\n")
        observed = "; ".join(f"{r}: {', '.join(hits[r]) or 'not found'}" for r in ROLES)
        if all(hits.values()):
            ctx.record(
                "request_id_in_both_roles",
                Verdict.PASS,
                f"request id {request_id} found in {observed}",
                expected="the request id in a prefill pod's and a decode pod's logs",
                observed=observed,
            )
            ctx.proves(
                "a request sent through the gateway with a unique id was served, and pods of the prefill and "
                "the decode role both logged that id (KAR-0041's correlation test)"
            )
        elif any(hits.values()):
            missing = next(r for r in ROLES if not hits[r])
            ctx.record(
                "request_id_in_both_roles",
                Verdict.FAIL,
                f"request id {request_id} reached only one role ({observed}): no {missing} pod logged it",
                expected="the request id in a prefill pod's and a decode pod's logs",
                observed=observed,
            )
        else:
            ctx.record(
                "request_id_in_both_roles",
                Verdict.UNKNOWN,
                f"request id {request_id} is in no role's log within {p.disagg_log_wait_s}s: the framework may "
                "not log request ids at this log level; attach the framework's request trace manually",
                expected="the request id in a prefill pod's and a decode pod's logs",
                observed=observed,
            )
    ctx.does_not_prove(
        "that KV cache was transferred (only that both phases saw the request), the framework's "
        "performance, or that the deployment uses accelerators"
    )
