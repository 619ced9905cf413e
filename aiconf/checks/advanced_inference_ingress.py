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
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from aiconf import display
from aiconf.checks.ai_inference import condition_text, route_parent_status
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
)
INFORMATIONAL = ("inference_objective_api_served", "existing_pools")


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


@check("advanced_inference_ingress", subchecks=SUBCHECKS, charts={"pools": draw_pools}, preflight=preflight)
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
    else:
        with ctx.step("attach an HTTPRoute with an InferencePool backend to the gateway"):
            ns = ctx.namespace()
            pool = ctx.create(probe_pool("aiconf-probe-pool", ns))
            route = ctx.create(probe_route("aiconf-probe-route", ns, gateway, pool["metadata"]["name"]))
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

    with ctx.step("judge metric-aware routing"):
        installed = installed_bundle_version(ctx.kube)
        if not p.gaie_conformance_report:
            ctx.record(
                "metric_aware_routing",
                Verdict.UNKNOWN,
                "not shown by this check: routing on advertised metrics needs the platform's endpoint picker; "
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
