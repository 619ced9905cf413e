"""ai_inference (MUST in 1.33-1.36; no KAR): a Gateway API implementation splits real inference traffic by weight
and routes it exactly by an OpenAI-style model header.

The check discovers the Gateway API, picks an Accepted GatewayClass, deploys two versions of the toolkit's TEST
inference server (:mod:`aiconf.workloads.inference_stub`, which says in every answer which version served), attaches
an HTTPRoute with weighted ``backendRefs`` and a header-match rule to a Gateway (its own, or a configured existing
one), sends OpenAI-shaped requests through the Gateway's address and measures where they went.

What each sub-check proves:

* ``gateway_api_served`` (required): ``gateway.networking.k8s.io/v1`` serves GatewayClass, Gateway and HTTPRoute,
  and the Gateway API CRDs present are Established with their names accepted.
* ``gateway_class_accepted`` (required): a GatewayClass (``inference_gateway_class``, or any) is Accepted by its
  controller: an implementation is running, not only CRDs.
* ``gateway_programmed`` (required): the Gateway the route attaches to is Accepted and Programmed with an address.
* ``route_accepted`` (required): the HTTPRoute is Accepted with its references resolved by that Gateway.
* ``weighted_split`` (required): every unlabelled request was answered by one of the two versions and the share the
  second version got is consistent with its configured weight (exact Clopper-Pearson interval at
  ``inference_confidence``, or within ``inference_split_tolerance``); both versions got traffic.
* ``header_routing`` (required): every request carrying the model header reached the version the header rule names.
* ``backends_counted`` (informational): each backend pod's own request counter (its ``/metrics``, read through the
  API server's pod proxy) equals the answers the client attributed to it: the answers came from the pods, through
  the Gateway, not from something in between that sets the version header.
* ``mesh_integration`` (informational): a service mesh (Istio, Linkerd, Cilium, ...) or GAMMA routes (HTTPRoutes
  whose parent is a Service) are present; the requirement calls mesh integration optional.

A route that is Accepted while the data plane ignores it (no split, header ignored) FAILs on the traffic sub-checks.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import socket
import urllib.parse
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from kubernetes.client.exceptions import ApiException
from prometheus_client.parser import text_string_to_metric_families

from aiconf import display
from aiconf.checks.accelerator_metrics import node_tolerations, proxy_path
from aiconf.context import CheckContext
from aiconf.errors import AiconfError, WaitTimeout
from aiconf.facts import is_simulated
from aiconf.kube import Kube, condition
from aiconf.model import Verdict
from aiconf.registry import check

GROUP = "gateway.networking.k8s.io"
GW_V1 = f"{GROUP}/v1"
#: The Gateway API CRDs a standard install has (carlory's suite requires all five).
CORE_CRDS = ("gatewayclasses", "gateways", "httproutes", "grpcroutes", "referencegrants")
#: Kinds the check itself needs served at v1.
NEEDED_KINDS = ("GatewayClass", "Gateway", "HTTPRoute")
STUB_PORT = 8000
VERSIONS = ("v1", "v2")
CLIENT_POD = "inference-client"
#: API groups that reveal a service mesh (mesh integration is optional in the requirement: informational).
MESH_GROUPS = {
    "networking.istio.io": "Istio",
    "security.istio.io": "Istio",
    "linkerd.io": "Linkerd",
    "policy.linkerd.io": "Linkerd",
    "cilium.io": "Cilium",
    "kuma.io": "Kuma",
    "consul.hashicorp.com": "Consul",
    "mesh.gloo.solo.io": "Gloo Mesh",
    "servicemesh.cisco.com": "Calisti",
}

SUBCHECKS = (
    "gateway_api_served",
    "gateway_class_accepted",
    "gateway_programmed",
    "route_accepted",
    "weighted_split",
    "header_routing",
    "backends_counted",
    "mesh_integration",
)
INFORMATIONAL = ("backends_counted", "mesh_integration")


# --- statistics (pure) -------------------------------------------------------------------------------------------------


def _log_pmf(k: int, n: int, p: float) -> float:
    if p <= 0.0:
        return 0.0 if k == 0 else -math.inf
    if p >= 1.0:
        return 0.0 if k == n else -math.inf
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * math.log(p) + (n - k) * math.log1p(-p)


def binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    return min(1.0, sum(math.exp(_log_pmf(i, n, p)) for i in range(k + 1)))


def binom_test(k: int, n: int, p: float) -> float:
    """Exact two-sided binomial test: the probability of an outcome at most as likely as ``k`` (R's binom.test)."""
    if n == 0:
        return 1.0
    observed = _log_pmf(k, n, p)
    # Relative slack as in R and SciPy, so outcomes equally likely up to rounding count as "as extreme".
    limit = observed + math.log1p(1e-7)
    return min(1.0, sum(math.exp(lp) for i in range(n + 1) if (lp := _log_pmf(i, n, p)) <= limit))


def clopper_pearson(k: int, n: int, confidence: float) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval for a binomial proportion, by bisection on the binomial CDF."""
    if n == 0:
        return 0.0, 1.0
    alpha = 1.0 - confidence

    def solve(f: Any) -> float:
        lo, hi = 0.0, 1.0
        for _ in range(60):  # 2**-60: far below any meaningful resolution
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if f(mid) else (lo, mid)
        return (lo + hi) / 2

    # lower: the p at which P(X >= k) = alpha/2; upper: the p at which P(X <= k) = alpha/2.
    lower = 0.0 if k == 0 else solve(lambda p: 1.0 - binom_cdf(k - 1, n, p) < alpha / 2)
    upper = 1.0 if k == n else solve(lambda p: binom_cdf(k, n, p) > alpha / 2)
    return lower, upper


@dataclass(frozen=True)
class SplitJudgement:
    """The weighted part of the traffic, judged."""

    sent: int
    answered: int  #: 200 with a known version
    to_canary: int
    configured: float  #: configured share of the canary (v2)
    observed: float
    interval: tuple[float, float]
    p_value: float
    tolerance: float
    failures: dict[str, int]

    @property
    def consistent(self) -> bool:
        lo, hi = self.interval
        return lo <= self.configured <= hi or abs(self.observed - self.configured) <= self.tolerance + 1e-12

    @property
    def passed(self) -> bool:
        both = 0 < self.to_canary < self.answered
        return self.sent > 0 and self.answered == self.sent and both and self.consistent

    def describe(self) -> str:
        lo, hi = self.interval
        text = (
            f"{self.to_canary} of {self.answered} answered requests reached v2: {self.observed:.1%} "
            f"(interval {lo:.1%}-{hi:.1%}, binomial p={self.p_value:.3g}) vs configured {self.configured:.0%}"
        )
        if not self.answered:
            return f"none of {self.sent} requests was answered by a backend: " + ", ".join(
                f"{k} x{v}" for k, v in sorted(self.failures.items())
            )
        if self.failures:
            text += f"; {self.sent - self.answered} of {self.sent} not answered by a backend: " + ", ".join(
                f"{k} x{v}" for k, v in sorted(self.failures.items())
            )
        return text


def outcome(r: dict[str, Any]) -> str:
    """One request's outcome: the version that served it, or why none did."""
    if r.get("error"):
        return f"error: {r['error']}"
    if r.get("status") != 200:
        return f"HTTP {r.get('status')}"
    return r.get("version") or "answer without X-Aiconf-Version"


def judge_split(rows: list[dict[str, Any]], canary_share: float, confidence: float, tolerance: float) -> SplitJudgement:
    outs = [outcome(r) for r in rows]
    answered = [o for o in outs if o in VERSIONS]
    to_canary = answered.count(VERSIONS[1])
    failures: dict[str, int] = {}
    for o in outs:
        if o not in VERSIONS:
            failures[o] = failures.get(o, 0) + 1
    n = len(answered)
    return SplitJudgement(
        sent=len(rows),
        answered=n,
        to_canary=to_canary,
        configured=canary_share,
        observed=to_canary / n if n else 0.0,
        interval=clopper_pearson(to_canary, n, confidence),
        p_value=binom_test(to_canary, n, canary_share),
        tolerance=tolerance,
        failures=failures,
    )


def judge_header(rows: list[dict[str, Any]], want: str) -> tuple[bool, dict[str, int]]:
    """Exact routing: every request answered by ``want``. Returns (passed, outcome counts)."""
    counts: dict[str, int] = {}
    for r in rows:
        o = outcome(r)
        counts[o] = counts.get(o, 0) + 1
    return bool(rows) and counts.get(want, 0) == len(rows), counts


def served_count(exposition: str) -> int:
    """Completion requests a TEST inference server answered, from its ``aiconf_requests_total`` counter."""
    return int(
        sum(
            sample.value
            for family in text_string_to_metric_families(exposition)
            if family.name == "aiconf_requests"
            for sample in family.samples
            if sample.name == "aiconf_requests_total"
        )
    )


def judge_counted(client_counts: dict[str, int], pod_counts: dict[str, int | None]) -> tuple[Verdict, str]:
    """The pods' own counters against what the client saw them answer."""
    unread = [v for v, n in pod_counts.items() if n is None]
    if unread:
        return Verdict.UNKNOWN, f"counter not readable for {', '.join(unread)}"
    text = ", ".join(f"{v}: pod counted {pod_counts[v]}, client saw {client_counts.get(v, 0)}" for v in VERSIONS)
    same = all(pod_counts[v] == client_counts.get(v, 0) for v in VERSIONS)
    return (Verdict.PASS if same else Verdict.FAIL), text


# --- the client: stdlib only, run in the runner or (its source) in a client pod -------------------------------------


def send_requests(plan: dict) -> list[dict]:
    """Send the planned OpenAI-shaped requests over one kept-alive connection; one row per request.

    ``plan``: ``url`` (base, http://host:port), ``host`` (Host header), ``path``, ``model``, ``timeout_s`` (per
    request), ``warmup_s`` (bound of the warm-up), ``budget_s`` (bound of the measured requests), ``batches``:
    ``[{"kind", "count", "headers", "model", "warmup_pod"}]`` (``warmup_pod``: the warm-up of that batch lasts until
    that pod answers, e.g. until a picker has seen new metrics). Self-contained (its source runs in the client pod with
    ``python3 -c``): stdlib imports only, inside the function.
    """
    import http.client
    import json
    import socket
    import time
    import urllib.parse

    base = urllib.parse.urlsplit(plan["url"])
    conn_cls = http.client.HTTPSConnection if base.scheme == "https" else http.client.HTTPConnection
    prefix = base.path.rstrip("/")
    state = {"conn": None}

    def one(batch: dict, kind: str, i: int) -> dict:
        row = {"kind": kind, "i": i, "status": 0, "version": "", "pod": "", "error": "", "latency_ms": None}
        body = json.dumps(
            {"model": batch.get("model") or plan["model"], "messages": [{"role": "user", "content": "ping"}]}
        )
        headers = {"Host": plan["host"], "Content-Type": "application/json", **(batch.get("headers") or {})}
        started = time.perf_counter()
        try:
            if state["conn"] is None:
                state["conn"] = conn_cls(base.hostname, base.port, timeout=float(plan["timeout_s"]))
                state["conn"].connect()
                # http.client sends headers and body in two writes: without TCP_NODELAY the body waits for the
                # peer's delayed ACK (~40 ms per request on Linux), which would dominate the latency measured.
                state["conn"].sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            state["conn"].request("POST", prefix + plan["path"], body=body, headers=headers)
            resp = state["conn"].getresponse()
            data = resp.read()
            row["latency_ms"] = round((time.perf_counter() - started) * 1000, 3)
            row["status"] = resp.status
            row["version"] = resp.getheader("X-Aiconf-Version") or ""
            row["pod"] = resp.getheader("X-Aiconf-Pod") or ""
            if not row["version"] and resp.status == 200:
                try:
                    row["version"] = str((json.loads(data).get("aiconf") or {}).get("version") or "")
                except (ValueError, AttributeError):
                    pass
            if (resp.getheader("Connection") or "").lower() == "close":
                state["conn"].close()
                state["conn"] = None
        except (OSError, http.client.HTTPException) as e:
            row["error"] = f"{type(e).__name__}: {e}"[:200]
            if state["conn"] is not None:
                state["conn"].close()
            state["conn"] = None
        return row

    rows: list[dict] = []
    # Warm-up, bounded: one answer on each rule first, because a data plane programs a route some time after the
    # route is Accepted. Any version will do, so a rule the data plane ignores still fails on the measured requests.
    warm_deadline = time.monotonic() + float(plan.get("warmup_s", 0))
    for batch in plan["batches"]:
        attempt = 0
        while time.monotonic() < warm_deadline:
            row = one(batch, "warmup", attempt)
            rows.append(row)
            attempt += 1
            if row["status"] == 200 and row["version"] and row["pod"] == batch.get("warmup_pod", row["pod"]):
                break
            time.sleep(0.2)
    deadline = time.monotonic() + float(plan["budget_s"])
    for batch in plan["batches"]:
        for i in range(int(batch["count"])):
            if time.monotonic() > deadline:
                rows.append(
                    {
                        "kind": batch["kind"],
                        "i": i,
                        "status": 0,
                        "version": "",
                        "error": "not sent: traffic budget spent",
                        "latency_ms": None,
                    }
                )
            else:
                rows.append(one(batch, batch["kind"], i))
    if state["conn"] is not None:
        state["conn"].close()
    return rows


def client_pod_command() -> list[str]:
    """``python3 -c`` running :func:`send_requests` with the plan from ``$PLAN``, one JSON line per request."""
    source = inspect.getsource(send_requests)
    main = (
        "\nimport json, os\nfor _row in send_requests(json.loads(os.environ['PLAN'])):\n    print(json.dumps(_row))\n"
    )
    return ["python3", "-c", source + main]


# --- manifests (pure) ------------------------------------------------------------------------------------------------

_POD_SECURITY = {"runAsNonRoot": True, "runAsUser": 65534, "seccompProfile": {"type": "RuntimeDefault"}}
_CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


def _placement(node: dict[str, Any] | None) -> dict[str, Any]:
    if node is None:
        return {}
    return {
        "nodeSelector": {"kubernetes.io/hostname": node["metadata"]["name"]},
        "tolerations": node_tolerations(SimpleNamespace(taints=(node.get("spec") or {}).get("taints") or [])),
    }


def backend_pod(version: str, namespace: str, p: Any, node: dict[str, Any] | None) -> dict[str, Any]:
    """One version of the TEST inference server, labelled with its version."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"inference-{version}",
            "namespace": namespace,
            "labels": {"app.kubernetes.io/name": "aiconf-inference-stub", "aiconf.io/backend-version": version},
        },
        "spec": {
            **_placement(node),
            "terminationGracePeriodSeconds": 1,
            "enableServiceLinks": False,
            "automountServiceAccountToken": False,
            "securityContext": _POD_SECURITY,
            "containers": [
                {
                    "name": "server",
                    "image": p.image_python,
                    "imagePullPolicy": p.image_pull_policy,
                    "command": [
                        "python3",
                        "-m",
                        "aiconf.workloads.inference_stub",
                        "--port",
                        str(STUB_PORT),
                        "--version",
                        version,
                        "--model",
                        p.inference_model,
                    ],
                    "env": [{"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}],
                    "ports": [{"name": "http", "containerPort": STUB_PORT}],
                    "readinessProbe": {"httpGet": {"path": "/healthz", "port": STUB_PORT}, "periodSeconds": 1},
                    "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
                    "securityContext": _CONTAINER_SECURITY,
                }
            ],
        },
    }


def backend_service(version: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": f"inference-{version}", "namespace": namespace},
        "spec": {
            "selector": {"app.kubernetes.io/name": "aiconf-inference-stub", "aiconf.io/backend-version": version},
            "ports": [{"name": "http", "port": 80, "targetPort": STUB_PORT}],
        },
    }


def gateway(name: str, namespace: str, gateway_class: str, port: int) -> dict[str, Any]:
    """The check's own Gateway: one HTTP listener, routes from its own namespace only."""
    return {
        "apiVersion": GW_V1,
        "kind": "Gateway",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "gatewayClassName": gateway_class,
            "listeners": [
                {"name": "http", "protocol": "HTTP", "port": port, "allowedRoutes": {"namespaces": {"from": "Same"}}}
            ],
        },
    }


def http_route(name: str, namespace: str, parent: tuple[str, str], host: str, p: Any) -> dict[str, Any]:
    """Rule 1: the model header -> v2 only. Rule 2: everything else, split (100 - w)/w between v1 and v2."""
    weight = int(p.inference_canary_weight)
    return {
        "apiVersion": GW_V1,
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "parentRefs": [{"name": parent[1], "namespace": parent[0]}],
            "hostnames": [host],
            "rules": [
                {
                    "matches": [
                        {
                            "headers": [
                                {"type": "Exact", "name": p.inference_model_header, "value": p.inference_header_model}
                            ]
                        }
                    ],
                    "backendRefs": [{"name": "inference-v2", "port": 80}],
                },
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": [
                        {"name": "inference-v1", "port": 80, "weight": 100 - weight},
                        {"name": "inference-v2", "port": 80, "weight": weight},
                    ],
                },
            ],
        },
    }


def client_pod(
    namespace: str, plan: dict, p: Any, node: dict[str, Any] | None, name: str = CLIENT_POD
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/name": "aiconf-inference-client"},
        },
        "spec": {
            **_placement(node),
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "enableServiceLinks": False,
            "automountServiceAccountToken": False,
            "securityContext": _POD_SECURITY,
            "containers": [
                {
                    "name": "client",
                    "image": p.image_python,
                    "imagePullPolicy": p.image_pull_policy,
                    "command": client_pod_command(),
                    "env": [
                        {"name": "PLAN", "value": json.dumps(plan)},
                        {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
                    ],
                    "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
                    "securityContext": _CONTAINER_SECURITY,
                }
            ],
        },
    }


# --- reading the cluster (pure helpers) --------------------------------------------------------------------------------


def _condition_list(obj: dict[str, Any] | None) -> list[dict[str, Any]]:
    """``status.conditions`` of an object, or ``conditions`` of a route's per-parent status entry."""
    obj = obj or {}
    return list(obj["conditions"] if "conditions" in obj else (obj.get("status") or {}).get("conditions") or [])


def conditions(obj: dict[str, Any] | None) -> dict[str, str]:
    return {c["type"]: c["status"] for c in _condition_list(obj)}


def condition_text(obj: dict[str, Any] | None) -> str:
    conds = _condition_list(obj)
    if not conds:
        return "no status conditions"
    return "; ".join(
        f"{c['type']}={c['status']}"
        + (f" ({c.get('reason')}: {c.get('message', '')})" if c["status"] != "True" else "")
        for c in conds
    )


def crd_rows(crds: dict[str, dict[str, Any] | None]) -> list[dict[str, Any]]:
    rows = []
    for plural, crd in crds.items():
        conds = conditions(crd)
        ann = ((crd or {}).get("metadata") or {}).get("annotations") or {}
        rows.append(
            {
                "crd": f"{plural}.{GROUP}",
                "present": crd is not None,
                "established": conds.get("Established") == "True",
                "names_accepted": conds.get("NamesAccepted") == "True",
                "served_versions": ",".join(
                    v["name"] for v in ((crd or {}).get("spec") or {}).get("versions") or [] if v.get("served")
                ),
                "bundle_version": ann.get(f"{GROUP}/bundle-version", ""),
                "channel": ann.get(f"{GROUP}/channel", ""),
            }
        )
    return rows


def class_rows(classes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for gc in classes:
        accepted = next((c for c in (gc.get("status") or {}).get("conditions") or [] if c["type"] == "Accepted"), None)
        rows.append(
            {
                "gateway_class": gc["metadata"]["name"],
                "controller": (gc.get("spec") or {}).get("controllerName", ""),
                "accepted": (accepted or {}).get("status") == "True",
                "reason": (accepted or {}).get("reason", "no Accepted condition (no controller acted on it)"),
            }
        )
    return sorted(rows, key=lambda r: r["gateway_class"])


def gateway_ready(gw: dict[str, Any] | None) -> bool:
    conds = conditions(gw)
    return conds.get("Accepted") == "True" and conds.get("Programmed") == "True" and bool(addresses(gw))


def addresses(gw: dict[str, Any] | None) -> list[str]:
    return [a.get("value") for a in ((gw or {}).get("status") or {}).get("addresses") or [] if a.get("value")]


def http_listener(gw: dict[str, Any]) -> dict[str, Any] | None:
    return next((ls for ls in (gw.get("spec") or {}).get("listeners") or [] if ls.get("protocol") == "HTTP"), None)


def route_host(listener: dict[str, Any] | None, namespace: str) -> str:
    """A host name the listener accepts: under its wildcard, its exact name, or one of the check's own."""
    name = (listener or {}).get("hostname") or ""
    if name.startswith("*."):
        return f"{namespace}{name[1:]}"
    return name or f"{namespace}.inference.aiconf.test"


def route_changes(intended: dict[str, Any], stored: dict[str, Any]) -> list[str]:
    """Weights and header matches the API server stored differently from what the check created."""
    changes = []
    rules_in, rules_out = intended["spec"]["rules"], (stored.get("spec") or {}).get("rules") or []
    if len(rules_in) != len(rules_out):
        return [f"{len(rules_out)} rules stored, {len(rules_in)} created"]
    for i, (a, b) in enumerate(zip(rules_in, rules_out, strict=True)):
        for ra, rb in zip(a["backendRefs"], b.get("backendRefs") or [], strict=False):
            wa, wb = ra.get("weight", 1), rb.get("weight", 1)
            if (ra["name"], wa) != (rb.get("name"), wb):
                changes.append(f"rule {i}: backend {ra['name']} weight {wa} stored as {rb.get('name')} weight {wb}")
        ha = [h for m in a.get("matches") or [] for h in m.get("headers") or []]
        hb = [h for m in b.get("matches") or [] for h in m.get("headers") or []]
        if [(h["name"].lower(), h["value"]) for h in ha] != [(h["name"].lower(), h["value"]) for h in hb]:
            changes.append(f"rule {i}: header matches {ha} stored as {hb}")
    return changes


def route_parent_status(route: dict[str, Any] | None, parent: tuple[str, str]) -> dict[str, Any] | None:
    for ps in ((route or {}).get("status") or {}).get("parents") or []:
        ref = ps.get("parentRef") or {}
        if ref.get("name") == parent[1] and ref.get("namespace", (route or {})["metadata"]["namespace"]) == parent[0]:
            return ps
    return None


def route_ready(route: dict[str, Any] | None, parent: tuple[str, str]) -> bool:
    conds = conditions(route_parent_status(route, parent))
    return conds.get("Accepted") == "True" and conds.get("ResolvedRefs") == "True"


def gateway_url(gw: dict[str, Any], p: Any) -> str:
    if p.inference_gateway_url:
        return p.inference_gateway_url.rstrip("/")
    listener = http_listener(gw) or {}
    host = addresses(gw)[0]
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{listener.get('port', 80)}"


def reachable(url: str, timeout_s: float) -> bool:
    """Does the Gateway's address accept a TCP connection from the runner?"""
    parts = urllib.parse.urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)), timeout_s
        ):
            return True
    except OSError:
        return False


def process_nodes(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ready nodes that run containers (not kwok), untainted ones first."""
    ready = [
        n
        for n in nodes
        if not is_simulated(n) and condition(n, "Ready") == "True" and not (n.get("spec") or {}).get("unschedulable")
    ]
    return sorted(ready, key=lambda n: (bool((n.get("spec") or {}).get("taints")), n["metadata"]["name"]))


def detect_mesh(groups: list[str], routes: list[dict[str, Any]]) -> list[str]:
    found = sorted({f"{MESH_GROUPS[g]} ({g})" for g in groups if g in MESH_GROUPS})
    gamma = [
        f"{r['metadata']['namespace']}/{r['metadata']['name']}"
        for r in routes
        if any((ref.get("kind") == "Service") for ref in (r.get("spec") or {}).get("parentRefs") or [])
    ]
    if gamma:
        found.append(f"GAMMA HTTPRoutes with a Service parent: {', '.join(gamma[:5])}")
    return found


def served_groups(kube: Kube) -> list[str]:
    return [g["name"] for g in (kube.raw("GET", "/apis") or {}).get("groups", [])]


# --- charts ------------------------------------------------------------------------------------------------------------


def draw_split(ax: Any, result: Any) -> None:
    """Configured vs observed share of v2, with the interval, for the weighted and the header requests."""
    m = result.metrics.get("traffic") or {}
    if not m:
        ax.text(0.5, 0.5, "no traffic was sent", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    labels, configured, observed, lows, highs = [], [], [], [], []
    for key, title in (("split", "weighted (no header)"), ("header", "model header")):
        part = m.get(key)
        if not part:
            continue
        labels.append(f"{title}\n{part['to_v2']}/{part['answered']} to v2")
        configured.append(part["configured"])
        observed.append(part["observed"])
        lows.append(part["observed"] - part["interval"][0])
        highs.append(part["interval"][1] - part["observed"])
    x = range(len(labels))
    ax.bar([i - 0.2 for i in x], configured, width=0.4, label="configured share of v2", color="#bbbbbb")
    ax.bar(
        [i + 0.2 for i in x],
        observed,
        width=0.4,
        yerr=[lows, highs],
        capsize=6,
        label=f"observed ({m.get('confidence', 0):.0%} interval)",
        color="#4c72b0",
    )
    ax.set_xticks(list(x), labels)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("share of requests served by v2")
    ax.set_title(f"Traffic through the Gateway ({m.get('client', '')})")
    ax.legend(loc="upper left", fontsize="small")


def draw_latency(ax: Any, result: Any) -> None:
    """Per-request latency through the Gateway, by the version that served it."""
    frame = display.series(result, "requests")
    if frame.empty or "latency_ms" not in frame:
        ax.text(0.5, 0.5, "no request latency recorded", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    # Warm-up requests measure how long the route took to be programmed, not the data plane: left out.
    frame = frame[frame["kind"] != "warmup"].dropna(subset=["latency_ms"])
    groups = [
        (f"{kind} -> {ver}", g["latency_ms"].tolist())
        for (kind, ver), g in frame.groupby(["kind", "version"])
        if len(g)
    ]
    if not groups:
        ax.text(0.5, 0.5, "no answered request", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    ax.hist([g for _, g in groups], bins=30, stacked=True, label=[name for name, _ in groups])
    ax.set_xlabel("latency per request (ms, through the Gateway)")
    ax.set_ylabel("requests")
    ax.set_title("Per-request latency")
    ax.legend(fontsize="small")


# --- preflight ---------------------------------------------------------------------------------------------------------


def preflight(kube: Any, params: Any) -> tuple[bool, str]:
    """Read-only: Gateway API served, an Accepted GatewayClass, a node that runs containers."""
    if not all(kube.has_kind(GW_V1, k) for k in NEEDED_KINDS):
        return False, f"{GW_V1} does not serve {', '.join(NEEDED_KINDS)}"
    rows = class_rows(kube.list(GW_V1, "GatewayClass"))
    accepted = [r["gateway_class"] for r in rows if r["accepted"]]
    if not accepted:
        return False, "no GatewayClass is Accepted by a controller"
    if not process_nodes(kube.list("v1", "Node")):
        return False, "no Ready node runs containers (the backends need one)"
    return True, f"Accepted GatewayClass(es): {', '.join(accepted)}"


# --- the check ---------------------------------------------------------------------------------------------------------


class _Stop(Exception):
    """Ends the check early after the remaining sub-checks were recorded."""


def _rest(ctx: CheckContext, why: str, verdict: Verdict = Verdict.UNKNOWN) -> None:
    """Record every sub-check not recorded yet (not tested: ``why``) and stop."""
    done = {s.id for s in ctx.result.subchecks}
    for sub in SUBCHECKS:
        if sub not in done and sub != "mesh_integration":
            ctx.record(sub, verdict, f"not tested: {why}", required=sub not in INFORMATIONAL)
    raise _Stop


@check(
    "ai_inference",
    subchecks=SUBCHECKS,
    charts={"split": draw_split, "latency": draw_latency},
    preflight=preflight,
)
def run(ctx: CheckContext) -> None:
    p = ctx.params
    ctx.does_not_prove(
        "that a real model server behind the Gateway behaves (the backends are the toolkit's TEST inference server: "
        "canned OpenAI-shaped answers, no model)",
        "routing on the request body (the model name in the JSON body) or by an endpoint picker (Gateway API "
        "Inference Extension): only the header match and weights of plain HTTPRoutes are exercised",
        "behaviour under load or with HTTPS listeners: requests are sent one at a time over plain HTTP",
    )
    with ctx.step("detect a service mesh (optional)"):
        routes = ctx.kube.list(GW_V1, "HTTPRoute") if ctx.kube.has_kind(GW_V1, "HTTPRoute") else []
        mesh = detect_mesh(served_groups(ctx.kube), routes)
        ctx.record(
            "mesh_integration",
            Verdict.PASS if mesh else Verdict.NOT_APPLICABLE,
            ("detected: " + "; ".join(mesh))
            if mesh
            else "no service mesh API or GAMMA route found (mesh integration is optional)",
            expected="optional: a service mesh integrated with Gateway API (GAMMA)",
            observed="; ".join(mesh) or "none",
            required=False,
        )
    with contextlib.suppress(_Stop):
        _run(ctx, p)


def _run(ctx: CheckContext, p: Any) -> None:
    with ctx.step("discover the Gateway API"):
        versions = ctx.kube.served_versions(GROUP)
        kinds = {r.get("kind") for r in ctx.kube.api_resources(GW_V1) if "/" not in r.get("name", "")}
        crds = {
            plural: ctx.kube.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", f"{plural}.{GROUP}")
            for plural in CORE_CRDS
        }
        for row in crd_rows(crds):
            ctx.series("crds").add(**row)
        missing_kinds = [k for k in NEEDED_KINDS if k not in kinds]
        unhealthy = [
            r["crd"] for r in crd_rows(crds) if r["present"] and not (r["established"] and r["names_accepted"])
        ]
        absent = [r["crd"] for r in crd_rows(crds) if not r["present"]]
        bundle = sorted({r["bundle_version"] for r in crd_rows(crds) if r["bundle_version"]})
        ctx.metric("gateway_api", {"served_versions": versions, "bundle_versions": bundle, "absent_crds": absent})
        ok = not missing_kinds and not unhealthy
        observed = f"served versions {versions or 'none'}; v1 kinds {sorted(k for k in kinds if k) or 'none'}" + (
            f"; bundle {', '.join(bundle)}" if bundle else ""
        )
        if absent:
            ctx.note(f"Gateway API CRDs not installed (optional kinds or served natively): {', '.join(absent)}")
        ctx.record(
            "gateway_api_served",
            ok,
            "Gateway API v1 served, CRDs Established"
            if ok
            else (
                f"{GW_V1} lacks {', '.join(missing_kinds)}"
                if missing_kinds
                else f"CRDs not Established: {', '.join(unhealthy)}"
            ),
            expected=f"{GW_V1} serves {', '.join(NEEDED_KINDS)}; their CRDs Established and NamesAccepted",
            observed=observed,
        )
        if missing_kinds:
            _rest(ctx, f"the cluster does not serve {GW_V1} {', '.join(missing_kinds)}", Verdict.FAIL)
        ctx.save_evidence("gateways.yaml", ctx.kube.list(GW_V1, "Gateway"))

    with ctx.step("find an Accepted GatewayClass"):
        classes = ctx.kube.list(GW_V1, "GatewayClass")
        rows = class_rows(classes)
        for row in rows:
            ctx.series("gateway_classes").add(**row)
        existing: dict[str, Any] | None = None
        if p.inference_gateway:
            gw_ns, _, gw_name = p.inference_gateway.rpartition("/")
            existing = ctx.kube.get(GW_V1, "Gateway", gw_name, gw_ns or "default")
            if existing is None:
                ctx.record(
                    "gateway_class_accepted",
                    Verdict.UNKNOWN,
                    f"the configured Gateway {p.inference_gateway} does not exist",
                    expected="inference_gateway names an existing Gateway",
                    observed="not found",
                )
                _rest(ctx, f"Gateway {p.inference_gateway} not found")
            wanted = existing["spec"]["gatewayClassName"]
        else:
            wanted = p.inference_gateway_class
        accepted = [r for r in rows if r["accepted"]]
        chosen = (
            next((r for r in rows if r["gateway_class"] == wanted), None)
            if wanted
            else (accepted[0] if accepted else None)
        )
        table = "; ".join(
            f"{r['gateway_class']} ({r['controller']}): {'Accepted' if r['accepted'] else r['reason']}" for r in rows
        )
        ok = chosen is not None and chosen["accepted"]
        ctx.record(
            "gateway_class_accepted",
            ok,
            (
                f"GatewayClass {chosen['gateway_class']} Accepted by {chosen['controller']}"
                if ok
                else f"GatewayClass {wanted} is not Accepted: {chosen['reason'] if chosen else 'it does not exist'}"
                if wanted
                else "no GatewayClass is Accepted: no Gateway API implementation acts on this cluster"
            ),
            expected=f"GatewayClass {wanted or '(any)'} with condition Accepted=True (a running controller)",
            observed=table or "no GatewayClass",
            controllers=sorted({r["controller"] for r in accepted}),
        )
        if not ok:
            _rest(ctx, "no Accepted GatewayClass to program a Gateway", Verdict.UNKNOWN)
        gateway_class = chosen["gateway_class"]
        ctx.metric("gateway_class", {"name": gateway_class, "controller": chosen["controller"]})

    with ctx.step("deploy two backend versions of the TEST inference server"):
        nodes = process_nodes(ctx.kube.list("v1", "Node"))
        if not nodes:
            _rest(ctx, "no Ready node runs containers: the backends cannot run (all nodes simulated?)")
        node = nodes[0]
        ctx.metric("backend_node", node["metadata"]["name"])
        ns = ctx.namespace()
        for version in VERSIONS:
            ctx.create(backend_pod(version, ns, p, node))
            ctx.create(backend_service(version, ns))
        ctx.kube.wait_until(
            "v1",
            "Pod",
            ns,
            lambda pods: len(pods) == len(VERSIONS) and all(condition(x, "Ready") == "True" for x in pods),
            p.pod_start_timeout_s,
            "both backend pods Ready",
            label_selector="app.kubernetes.io/name=aiconf-inference-stub",
        )

    with ctx.step("the Gateway: Accepted and Programmed with an address"):
        if existing is not None:
            parent = (existing["metadata"]["namespace"], existing["metadata"]["name"])
            what = f"existing Gateway {parent[0]}/{parent[1]}"
        else:
            parent = (ns, "inference-gateway")
            ctx.create(gateway(parent[1], ns, gateway_class, int(p.inference_gateway_port)))
            what = f"Gateway {parent[0]}/{parent[1]} (class {gateway_class}, port {p.inference_gateway_port})"
        try:
            gw = ctx.kube.wait_for(
                GW_V1,
                "Gateway",
                parent[1],
                parent[0],
                gateway_ready,
                p.inference_gateway_timeout_s,
                f"{what} Accepted and Programmed",
                describe=condition_text,
            )
        except WaitTimeout as e:
            ctx.record(
                "gateway_programmed",
                Verdict.FAIL,
                f"{what} not Accepted and Programmed with an address within {p.inference_gateway_timeout_s}s "
                f"(last conditions: {e.last_seen})",
                expected="Accepted=True, Programmed=True and an address in status",
                observed=e.last_seen,
            )
            _rest(ctx, "the Gateway was never programmed")
        ctx.record(
            "gateway_programmed",
            True,
            f"{what} Programmed at {', '.join(addresses(gw))}",
            expected="Accepted=True, Programmed=True and an address in status",
            observed=f"{condition_text(gw)}; addresses {addresses(gw)}",
        )

    with ctx.step("the HTTPRoute: weighted backends and a model-header rule"):
        host = route_host(http_listener(gw), ns)
        intended = http_route("inference", ns, parent, host, p)
        stored = ctx.create(intended)
        if stored.get("spec", {}).get("rules") != intended["spec"]["rules"]:
            # Defaults (weight 1, PathPrefix /) are filled in by the API server; anything else was changed by
            # admission. The traffic is judged against what the check asked for.
            changed = route_changes(intended, stored)
            if changed:
                ctx.note(f"the stored HTTPRoute differs from the one the check created: {'; '.join(changed)}")
        try:
            route = ctx.kube.wait_for(
                GW_V1,
                "HTTPRoute",
                "inference",
                ns,
                lambda r: route_ready(r, parent),
                p.inference_route_timeout_s,
                "HTTPRoute Accepted and ResolvedRefs",
                describe=lambda r: condition_text(route_parent_status(r, parent)),
            )
        except WaitTimeout as e:
            ctx.record(
                "route_accepted",
                Verdict.FAIL,
                f"HTTPRoute not Accepted/ResolvedRefs by {parent[0]}/{parent[1]}: {e.last_seen}",
                expected="parent status Accepted=True, ResolvedRefs=True",
                observed=e.last_seen,
            )
            _rest(ctx, "the HTTPRoute was not accepted")
        ctx.record(
            "route_accepted",
            True,
            f"HTTPRoute accepted by {parent[0]}/{parent[1]} with references resolved",
            expected="parent status Accepted=True, ResolvedRefs=True",
            observed=condition_text(route_parent_status(route, parent)),
        )

    with ctx.step("send OpenAI-shaped requests through the Gateway"):
        url = gateway_url(gw, p)
        client = p.inference_client
        if client == "auto":
            client = "runner" if reachable(url, float(p.inference_request_timeout_s)) else "pod"
        rows = _traffic(ctx, p, url, host, client, ns, node)

    with ctx.step("judge the split and the header routing"):
        _judge(ctx, p, rows, client, url)

    with ctx.step("read the backends' own request counters"):
        client_counts = {v: sum(1 for r in rows if outcome(r) == v) for v in VERSIONS}
        pod_counts: dict[str, int | None] = {}
        for version in VERSIONS:
            try:
                text = ctx.kube.raw("GET", proxy_path(ns, f"inference-{version}", STUB_PORT, "/metrics"))
                pod_counts[version] = served_count(text if isinstance(text, str) else str(text))
            except (ApiException, AiconfError) as e:  # a refused proxy (RBAC, policy): UNKNOWN, informational
                ctx.note(f"the counter of inference-{version} could not be read through the pod proxy: {e}")
                pod_counts[version] = None
        verdict, text = judge_counted(client_counts, pod_counts)
        ctx.record(
            "backends_counted",
            verdict,
            text,
            expected="each backend pod counted exactly the answers the client attributed to its version",
            observed=text,
            required=False,
        )


def _plan(p: Any, url: str, host: str) -> dict[str, Any]:
    return {
        "url": url,
        "host": host,
        "path": "/v1/chat/completions",
        "model": p.inference_model,
        "timeout_s": float(p.inference_request_timeout_s),
        "warmup_s": float(p.inference_route_timeout_s),
        "budget_s": float(p.inference_traffic_timeout_s),
        "batches": [
            {"kind": "split", "count": int(p.inference_requests), "headers": {}, "model": p.inference_model},
            {
                "kind": "header",
                "count": int(p.inference_header_requests),
                "headers": {p.inference_model_header: p.inference_header_model},
                "model": p.inference_header_model,
            },
        ],
    }


def _traffic(ctx: CheckContext, p: Any, url: str, host: str, client: str, ns: str, node: dict[str, Any]) -> list[dict]:
    """The requests, sent by the runner or by a client pod on a node that runs containers."""
    ctx.metric("client", {"mode": client, "url": url, "host": host})
    return run_planned_requests(
        ctx, _plan(p, url, host), client, ns, node, p, p.inference_route_timeout_s + p.inference_traffic_timeout_s
    )


def run_planned_requests(
    ctx: CheckContext,
    plan: dict,
    client: str,
    ns: str,
    node: dict[str, Any] | None,
    p: Any,
    traffic_s: float,
    pod_name: str = CLIENT_POD,
) -> list[dict]:
    """:func:`send_requests` run by the runner (``client`` "runner") or by a client pod ``pod_name`` on ``node`` in
    ``ns`` whose JSON lines are read back; the pod is waited for at most ``pod_start_timeout_s`` + ``traffic_s``."""
    if client == "runner":
        return send_requests(plan)
    ctx.create(client_pod(ns, plan, p, node, pod_name))
    ctx.kube.wait_for(
        "v1",
        "Pod",
        pod_name,
        ns,
        lambda o: ((o or {}).get("status") or {}).get("phase") in ("Succeeded", "Failed"),
        p.pod_start_timeout_s + traffic_s,
        "the client pod to finish",
    )
    # Warm-up rows are few (one every 0.2 s at most while the route is being programmed); keep them all.
    lines = sum(int(b["count"]) for b in plan["batches"]) + 10 * int(float(plan.get("warmup_s", 0)) + 1)
    rows = []
    for line in ctx.kube.pod_logs(pod_name, ns, tail_lines=lines).splitlines():
        with contextlib.suppress(ValueError):
            doc = json.loads(line)
            if isinstance(doc, dict) and "kind" in doc:
                rows.append(doc)
    return rows


def _judge(ctx: CheckContext, p: Any, rows: list[dict], client: str, url: str) -> None:
    for r in rows:
        ctx.series("requests").add(
            kind=r["kind"],
            i=r["i"],
            status=r["status"],
            version=r["version"] or "",
            latency_ms=r["latency_ms"],
            error=r["error"],
        )
    warm = [r for r in rows if r["kind"] == "warmup"]
    ctx.metric("warm_up", {"requests": len(warm), "outcomes": sorted({outcome(r) for r in warm})})
    if warm and not any(outcome(r) in VERSIONS for r in warm):
        ctx.note(
            f"no warm-up request was answered by a backend within {p.inference_route_timeout_s}s: the route is "
            "Accepted but the data plane never served it"
        )
    split_rows = [r for r in rows if r["kind"] == "split"]
    header_rows = [r for r in rows if r["kind"] == "header"]
    share = int(p.inference_canary_weight) / 100
    split = judge_split(split_rows, share, float(p.inference_confidence), float(p.inference_split_tolerance))
    header = judge_split(header_rows, 1.0, float(p.inference_confidence), 0.0)
    header_ok, header_counts = judge_header(header_rows, VERSIONS[1])
    latencies = sorted(r["latency_ms"] for r in rows if r["latency_ms"] is not None)
    ctx.metric(
        "traffic",
        {
            "client": f"{client} -> {url}",
            "confidence": float(p.inference_confidence),
            "split": {
                "configured": share,
                "observed": split.observed,
                "interval": list(split.interval),
                "to_v2": split.to_canary,
                "answered": split.answered,
                "sent": split.sent,
                "p_value": split.p_value,
                "failures": split.failures,
            },
            "header": {
                "configured": 1.0,
                "observed": header.observed,
                "interval": list(header.interval),
                "to_v2": header.to_canary,
                "answered": header.answered,
                "sent": header.sent,
                "outcomes": header_counts,
            },
            "latency_ms": {
                "p50": _quantile(latencies, 0.5),
                "p95": _quantile(latencies, 0.95),
                "max": latencies[-1] if latencies else None,
            },
        },
    )
    ctx.record(
        "weighted_split",
        split.passed,
        split.describe()
        if split.passed
        else "traffic not split as configured: "
        + split.describe()
        + ("" if split.to_canary else "; v2 never received a request")
        + ("" if split.to_canary < split.answered or not split.answered else "; v1 never received a request"),
        expected=f"{split.sent} requests without the header all answered, v2's share {share:.0%} inside the "
        f"{float(p.inference_confidence):.0%} Clopper-Pearson interval (or within ±{float(p.inference_split_tolerance):.0%})",
        observed=f"v1 {split.answered - split.to_canary}, v2 {split.to_canary}, failed {split.sent - split.answered}",
    )
    ctx.record(
        "header_routing",
        header_ok,
        (
            f"all {len(header_rows)} requests with {p.inference_model_header}: {p.inference_header_model} reached v2"
            if header_ok
            else f"header rule not honoured: {', '.join(f'{k} x{v}' for k, v in sorted(header_counts.items())) or 'no request sent'}"
        ),
        expected=f"{len(header_rows)} of {len(header_rows)} requests with the header answered by v2",
        observed=", ".join(f"{k}: {v}" for k, v in sorted(header_counts.items())),
    )
    if split.passed and header_ok:
        ctx.proves(
            f"the Gateway API implementation behind GatewayClass {ctx.result.metrics['gateway_class']['name']} programmed "
            "a Gateway and an HTTPRoute, split real requests between two backend versions as weighted and routed "
            "every request carrying the model header to the version the header rule names",
        )
    ctx.note(
        "the backends are aiconf's TEST inference server (aiconf.workloads.inference_stub): OpenAI-shaped canned answers, no model"
    )


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return values[min(len(values) - 1, int(q * len(values)))]
