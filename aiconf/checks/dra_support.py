"""dra_support (KAR-0051; SHOULD in 1.33, MUST in 1.34-1.35, absent from 1.36): the Dynamic Resource Allocation APIs.

What each sub-check proves:

* ``api_group_served`` (required): ``resource.k8s.io`` is served at the version the checklist needs (``v1`` from
  1.34; on 1.33 a beta version counts, and the check then suggests "Partially Implemented").
* ``api_resources_verbs`` (required): DeviceClass, ResourceClaim, ResourceClaimTemplate and ResourceSlice are
  served at that version with every verb a client needs (create, delete, deletecollection, get, list, patch,
  update, watch), read from discovery. This is what KAR-0051 asks; the reference suites check less (carlory: the
  version answers; Gardener/kOps: the names appear).
* ``devices_published`` (informational): DeviceClasses and ResourceSlices exist, with devices per node and driver.
* ``claim_allocated`` (informational unless ``dra_functional_required``): a ResourceClaimTemplate asking for one
  device of the configured DeviceClass *with a CEL selector on a device attribute* ("beyond simple counts") is
  consumed by a pod and the real scheduler allocates a device (driver/pool/device recorded) whose attributes satisfy
  the selector.
* ``pod_started_with_claim`` (informational): that pod reaches Running (kubelet + driver prepared the device; on
  simulated nodes kwok marks it Running).
* ``selector_enforced`` (informational): the same request with a selector no device satisfies is *not* allocated
  (the pod is reported Unschedulable), so the selector is applied, not ignored.
* ``claim_released`` (informational): deleting the pod deletes the generated claim (released, watched).

The functional sub-checks are NOT_APPLICABLE when the DeviceClass does not exist or no driver publishes devices.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from aiconf import display
from aiconf.context import CheckContext
from aiconf.errors import WaitTimeout
from aiconf.kube import condition
from aiconf.model import Verdict
from aiconf.registry import check

GROUP = "resource.k8s.io"
#: The four kinds KAR-0051 lists (the upstream conformance CRUD tests cover exactly these).
DRA_RESOURCES: tuple[str, ...] = ("deviceclasses", "resourceclaims", "resourceclaimtemplates", "resourceslices")
REQUIRED_VERBS: tuple[str, ...] = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
#: Versions that count as "DRA served", best first (v1alpha3 in 1.33 only serves DeviceTaintRules).
ACCEPTED_VERSIONS: tuple[str, ...] = ("v1", "v1beta2", "v1beta1")
#: Device attributes preferred for the CEL selector, most specific first.
PREFERRED_ATTRIBUTES: tuple[str, ...] = ("productName", "model", "type", "architecture", "family")
NO_SUCH_SUFFIX = "-aiconf-no-such-device"


# --- discovery (pure) ------------------------------------------------------------------------------------------------


@dataclass
class ApiAssessment:
    """What discovery says about the DRA API group, judged for one checklist version and level."""

    served: list[str]  #: versions of resource.k8s.io the server serves
    chosen: str | None  #: the version the rest of the check uses (best accepted one)
    group_verdict: Verdict
    group_summary: str
    resources_verdict: Verdict
    resources_summary: str
    missing: dict[str, list[str]] = field(default_factory=dict)  #: resource -> missing verbs ("*" = resource absent)
    table: list[dict[str, Any]] = field(default_factory=list)  #: one row per (version, resource)
    status_suggestion: str | None = None
    not_applicable: tuple[str, str] | None = None  #: (reason code, justification)
    notes: list[str] = field(default_factory=list)


def needs_ga(checklist_version: str) -> bool:
    """From 1.34 the checklist's DRA requirement means the GA ``v1`` API (beta counted only in 1.33)."""
    try:
        return tuple(int(x) for x in checklist_version.split(".")[:2]) >= (1, 34)
    except ValueError:
        return True


def resource_table(resources_by_version: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    rows = []
    for version, resources in resources_by_version.items():
        for r in resources:
            if "/" in r.get("name", ""):
                continue  # subresources (resourceclaims/status) are listed separately below
            subresources = sorted(x["name"].split("/", 1)[1] for x in resources if x.get("name", "").startswith(r["name"] + "/"))
            rows.append(
                {
                    "version": version,
                    "resource": r["name"],
                    "kind": r.get("kind", ""),
                    "namespaced": bool(r.get("namespaced")),
                    "verbs": " ".join(sorted(r.get("verbs") or [])),
                    "subresources": " ".join(subresources),
                }
            )
    return rows


def missing_verbs(resources: list[dict[str, Any]]) -> dict[str, list[str]]:
    """For each DRA resource, the required verbs discovery does not list (``["*"]`` when the resource is absent)."""
    by_name = {r.get("name"): r for r in resources}
    missing: dict[str, list[str]] = {}
    for name in DRA_RESOURCES:
        r = by_name.get(name)
        if r is None:
            missing[name] = ["*"]
            continue
        lacking = [v for v in REQUIRED_VERBS if v not in (r.get("verbs") or [])]
        if lacking:
            missing[name] = lacking
    return missing


def assess_api(resources_by_version: dict[str, list[dict[str, Any]]], checklist_version: str, level: str | None) -> ApiAssessment:
    """Judge discovery of ``resource.k8s.io`` (``{version: APIResourceList.resources}``; empty when not served).

    Rules: from 1.34 the ``v1`` version must be served with all four resources and every required verb; on 1.33
    (SHOULD) a beta version is accepted and "Partially Implemented" is suggested; when the group is not served at
    all the requirement is NOT_APPLICABLE for a SHOULD (drafted note) or for versions that do not list it, and FAIL
    for a MUST.
    """
    served = list(resources_by_version)
    table = resource_table(resources_by_version)
    ga = needs_ga(checklist_version)
    accepted = [v for v in ACCEPTED_VERSIONS if v in served and (v == "v1" or not ga)]
    best_any = next((v for v in ACCEPTED_VERSIONS if v in served), None)

    if not served or best_any is None:
        what = "the resource.k8s.io API group is not served" if not served else (
            f"resource.k8s.io serves only {', '.join(served)}, none of {', '.join(ACCEPTED_VERSIONS)}")
        if level == "MUST":
            return ApiAssessment(served, None, Verdict.FAIL, what, Verdict.FAIL, "no DRA API version to inspect", table=table)
        justification = (
            "Dynamic Resource Allocation is beta in Kubernetes 1.33 and its resource.k8s.io APIs are disabled by "
            "default; this cluster does not enable them, so DRA-based device requests are not offered (the "
            "requirement is a SHOULD in the 1.33 checklist)."
            if level == "SHOULD" else
            f"{what}; dra_support is not part of the {checklist_version} checklist (informational only)."
        )
        return ApiAssessment(served, None, Verdict.NOT_APPLICABLE, what, Verdict.NOT_APPLICABLE,
                             "no DRA API version to inspect", table=table,
                             not_applicable=("dra_api_not_served", justification))

    if not accepted:  # ga needed, only betas served
        missing = missing_verbs(resources_by_version[best_any])
        return ApiAssessment(
            served, best_any, Verdict.FAIL,
            f"resource.k8s.io/v1 is not served (only {', '.join(served)}); checklist {checklist_version} needs the GA API",
            Verdict.FAIL, f"v1 resources absent (beta {best_any} has {len(DRA_RESOURCES) - len(missing)} of 4 complete)",
            missing={r: ["*"] for r in DRA_RESOURCES}, table=table,
        )

    chosen = accepted[0]
    missing = missing_verbs(resources_by_version[chosen])
    result = ApiAssessment(served, chosen, Verdict.PASS, f"resource.k8s.io/{chosen} served (versions: {', '.join(served)})",
                           Verdict.PASS if not missing else Verdict.FAIL, "", missing=missing, table=table)
    if missing:
        result.resources_summary = f"{GROUP}/{chosen} lacks " + "; ".join(
            f"{r}: {'resource absent' if v == ['*'] else 'verbs ' + ','.join(v)}" for r, v in missing.items())
    else:
        result.resources_summary = f"{GROUP}/{chosen}: all 4 resources with {len(REQUIRED_VERBS)} verbs each"
    if chosen != "v1":
        result.status_suggestion = "Partially Implemented"
        result.notes.append(
            f"DRA is served only at the beta version {chosen}; the GA v1 API arrives with Kubernetes 1.34, so the "
            "1.33 item is suggested as 'Partially Implemented' (as Gardener and JDOS reported)."
        )
    return result


# --- devices (pure) --------------------------------------------------------------------------------------------------


def slice_devices(slice_obj: dict[str, Any]) -> list[dict[str, Any]]:
    """Devices of a ResourceSlice as ``{name, attributes, capacity}`` (v1/v1beta2 flat, v1beta1 under ``basic``)."""
    out = []
    for d in (slice_obj.get("spec") or {}).get("devices") or []:
        body = d.get("basic") if isinstance(d.get("basic"), dict) else d
        out.append({"name": d.get("name", ""), "attributes": body.get("attributes") or {}, "capacity": body.get("capacity") or {}})
    return out


def slice_node(slice_obj: dict[str, Any]) -> str:
    spec = slice_obj.get("spec") or {}
    if spec.get("nodeName"):
        return spec["nodeName"]
    if spec.get("allNodes"):
        return "(all nodes)"
    if spec.get("nodeSelector"):
        return "(node selector)"
    if spec.get("perDeviceNodeSelection"):
        return "(per device)"
    return "(unknown)"


def devices_per_node(slices: list[dict[str, Any]]) -> list[dict[str, Any]]:
    counts: dict[tuple[str, str], int] = {}
    for s in slices:
        key = (slice_node(s), (s.get("spec") or {}).get("driver", ""))
        counts[key] = counts.get(key, 0) + len(slice_devices(s))
    return [{"node": n, "driver": d, "devices": c} for (n, d), c in sorted(counts.items())]


def attribute_value(attr: dict[str, Any]) -> tuple[str, Any] | None:
    """``{"string": "x"}`` -> ("string", "x"); None for unknown shapes."""
    for kind in ("string", "int", "bool", "version"):
        if kind in (attr or {}):
            return kind, attr[kind]
    return None


def class_driver(device_class: dict[str, Any]) -> str | None:
    """The driver a DeviceClass selects, read from a ``device.driver == "..."`` CEL selector (None when absent)."""
    for sel in (device_class.get("spec") or {}).get("selectors") or []:
        expr = ((sel or {}).get("cel") or {}).get("expression", "")
        m = re.search(r"device\.driver\s*==\s*['\"]([^'\"]+)['\"]", expr)
        if m:
            return m.group(1)
    return None


def _qualify(name: str, driver: str) -> tuple[str, str]:
    """An attribute/capacity key as (domain, identifier): unqualified names belong to the driver's domain."""
    if "/" in name:
        domain, ident = name.split("/", 1)
        return domain, ident
    return driver, name


def _cel_literal(kind: str, value: Any) -> str:
    if kind == "string":
        return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
    if kind == "bool":
        return "true" if value else "false"
    if kind == "version":
        return f'semver("{value}")'
    return str(int(value))


@dataclass(frozen=True)
class Selector:
    """A CEL selector built from a published device, and its deliberately unsatisfiable twin."""

    expression: str
    impossible: str
    attribute: str = ""  #: "domain/name" the selector tests ("" when user-supplied)
    value: Any = None
    capacity: str = ""  #: "domain/name >= quantity" part, if any


def build_selector(slices: list[dict[str, Any]], driver: str | None) -> Selector | None:
    """A selector on a device attribute (plus capacity when published) that the first published device satisfies.

    The attribute comparison proves requests "beyond simple counts" (KAR-0051's motivation: a specific accelerator
    model, a minimum amount of memory). None when no device with a usable string attribute is published.
    """
    for s in slices:
        drv = (s.get("spec") or {}).get("driver", "")
        if driver and drv != driver:
            continue
        for dev in slice_devices(s):
            attrs = dev["attributes"]
            names = sorted(attrs, key=lambda n: (PREFERRED_ATTRIBUTES.index(_qualify(n, drv)[1])
                                                 if _qualify(n, drv)[1] in PREFERRED_ATTRIBUTES else 99, n))
            for name in names:
                kv = attribute_value(attrs[name])
                if kv is None or kv[0] != "string" or not kv[1]:
                    continue
                domain, ident = _qualify(name, drv)
                ref = f'device.attributes["{domain}"].{ident}'
                expr = f"{ref} == {_cel_literal('string', kv[1])}"
                impossible = f"{ref} == {_cel_literal('string', str(kv[1]) + NO_SUCH_SUFFIX)}"
                cap_text = ""
                for cname, cval in sorted(dev["capacity"].items()):
                    q = (cval or {}).get("value") if isinstance(cval, dict) else cval
                    cdomain, cident = _qualify(cname, drv)
                    if q and cident.lower() in ("memory", "mem", "vram"):
                        expr += f' && device.capacity["{cdomain}"].{cident}.compareTo(quantity("{q}")) >= 0'
                        cap_text = f"{cdomain}/{cident} >= {q}"
                        break
                return Selector(expr, impossible, f"{domain}/{ident}", kv[1], cap_text)
    return None


def device_attributes(slices: list[dict[str, Any]], driver: str, pool: str, device: str) -> dict[str, Any] | None:
    for s in slices:
        spec = s.get("spec") or {}
        if spec.get("driver") != driver or (spec.get("pool") or {}).get("name") != pool:
            continue
        for d in slice_devices(s):
            if d["name"] == device:
                return d
    return None


def satisfies(dev: dict[str, Any] | None, selector: Selector, driver: str) -> bool | None:
    """Whether an allocated device has the attribute value the selector asked for (None when not checkable)."""
    if dev is None or not selector.attribute:
        return None
    domain, ident = selector.attribute.split("/", 1)
    for name, attr in dev["attributes"].items():
        if _qualify(name, driver) == (domain, ident):
            kv = attribute_value(attr)
            return kv is not None and kv[1] == selector.value
    return False


def allocation_results(claim: dict[str, Any] | None) -> list[dict[str, Any]]:
    alloc = ((claim or {}).get("status") or {}).get("allocation") or {}
    return list(((alloc.get("devices") or {}).get("results")) or [])


# --- manifests (pure) ------------------------------------------------------------------------------------------------


def claim_template(name: str, namespace: str, api_version: str, device_class: str, selector: str,
                   labels: dict[str, str]) -> dict[str, Any]:
    """A ResourceClaimTemplate asking for exactly one device of ``device_class`` matching ``selector``.

    The claim's own labels (``spec.metadata``) carry the run labels, so generated claims can be found and swept.
    """
    request: dict[str, Any] = {"deviceClassName": device_class, "allocationMode": "ExactCount", "count": 1}
    if selector:
        request["selectors"] = [{"cel": {"expression": selector}}]
    # v1 and v1beta2 wrap a plain request in `exactly`; v1beta1 has the fields on the request itself.
    req = {"name": "accelerator", **({"exactly": request} if api_version != f"{GROUP}/v1beta1" else request)}
    return {
        "apiVersion": api_version,
        "kind": "ResourceClaimTemplate",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"metadata": {"labels": dict(labels)}, "spec": {"devices": {"requests": [req]}}},
    }


def claim_pod(name: str, namespace: str, template: str, params: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 1,
        "resourceClaims": [{"name": "accelerator", "resourceClaimTemplateName": template}],
        "tolerations": [{"key": params.gpu_taint_key, "operator": "Exists", "effect": "NoSchedule"}],
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65534, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [
            {
                "name": "probe",
                "image": params.image_utility,
                "imagePullPolicy": params.image_pull_policy,
                # What the driver injected (CDI env such as GPU_DEVICE_*, NVIDIA_VISIBLE_DEVICES) goes to the pod log.
                "command": ["sh", "-c", "env | grep -i -E 'gpu|nvidia|device' | sort; sleep 3600"],
                "resources": {"claims": [{"name": "accelerator"}]},
                "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
            }
        ],
    }
    if params.runtime_class_name:
        spec["runtimeClassName"] = params.runtime_class_name
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


# --- cluster reads -----------------------------------------------------------------------------------------------------


def discover(kube: Any) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """``({version: resources}, raw documents)`` for resource.k8s.io from discovery (empty when not served)."""
    raw: dict[str, Any] = {}
    versions = kube.served_versions(GROUP)
    raw["group"] = {"versions": versions}
    out: dict[str, list[dict[str, Any]]] = {}
    for v in versions:
        resources = kube.api_resources(f"{GROUP}/{v}")
        out[v] = resources
        raw[v] = resources
    return out, raw


def preflight(kube: Any, params: Any) -> tuple[bool, str]:
    """Read-only: is resource.k8s.io served, and is there a DeviceClass and devices for the functional part?"""
    by_version, _ = discover(kube)
    best = next((v for v in ACCEPTED_VERSIONS if v in by_version), None)
    if best is None:
        return False, "resource.k8s.io is not served (DRA disabled)"
    detail = f"resource.k8s.io/{best} served"
    try:
        dc = kube.get(f"{GROUP}/{best}", "DeviceClass", params.dra_device_class)
        slices = kube.list(f"{GROUP}/{best}", "ResourceSlice")
    except Exception as e:  # discovery said yes but listing failed (RBAC): the API part can still run
        return True, f"{detail}; cannot list DRA objects ({e})"
    devices = sum(len(slice_devices(s)) for s in slices)
    detail += f"; DeviceClass {params.dra_device_class} {'found' if dc else 'absent'}; {devices} devices in {len(slices)} ResourceSlices"
    return True, detail


# --- charts ----------------------------------------------------------------------------------------------------------


def draw_devices(ax: Any, result: Any) -> None:
    """Devices published per node, stacked by driver."""
    frame = display.series(result, "devices_per_node")
    if frame.empty:
        ax.text(0.5, 0.5, "no ResourceSlices published", ha="center", va="center")
        ax.set_axis_off()
        return
    pivot = frame.pivot_table(index="node", columns="driver", values="devices", aggfunc="sum", fill_value=0)
    bottom = None
    for driver in pivot.columns:
        ax.bar(pivot.index.astype(str), pivot[driver], bottom=bottom, label=driver)
        bottom = pivot[driver] if bottom is None else bottom + pivot[driver]
    ax.set_ylabel("devices")
    ax.set_title("DRA devices published per node (ResourceSlices)")
    ax.legend(title="driver", fontsize="small")
    ax.tick_params(axis="x", labelrotation=30)


def draw_claim_timeline(ax: Any, result: Any) -> None:
    """When the claim was created, allocated, the pod started, and the claim released."""
    frame = display.series(result, "claim_timeline")
    if frame.empty:
        ax.text(0.5, 0.5, "functional part did not run", ha="center", va="center")
        ax.set_axis_off()
        return
    events = frame.dropna(subset=["event"]) if "event" in frame else frame
    ax.scatter(events["t_s"], range(len(events)), color="#1f6feb")
    for i, (t, e) in enumerate(zip(events["t_s"], events["event"], strict=False)):
        when = f"{t * 1000:.0f} ms" if t < 1 else f"{t:.1f} s"
        ax.annotate(f"{e} ({when})", (t, i), textcoords="offset points", xytext=(6, -3), fontsize="small")
    ax.set_yticks([])
    ax.set_xlabel("seconds since the claim template was created")
    ax.set_title("ResourceClaim lifecycle")
    ax.margins(x=0.35, y=0.2)


SUBCHECKS = ("api_group_served", "api_resources_verbs", "devices_published", "claim_allocated",
             "pod_started_with_claim", "selector_enforced", "claim_released")
FUNCTIONAL = ("claim_allocated", "pod_started_with_claim", "selector_enforced", "claim_released")


@check("dra_support", subchecks=SUBCHECKS,
       charts={"devices_per_node": draw_devices, "claim_timeline": draw_claim_timeline}, preflight=preflight)
def run(ctx: CheckContext) -> None:
    p = ctx.params
    level = ctx.result.level
    version = ctx.result.checklist_version

    with ctx.step("read resource.k8s.io discovery"):
        by_version, raw = discover(ctx.kube)
        ctx.save_evidence("discovery.yaml", raw)
        a = assess_api(by_version, version, level)
        for row in a.table:
            ctx.series("api_resources").add(**row)
        ctx.record("api_group_served", a.group_verdict, a.group_summary,
                   expected="resource.k8s.io/v1 served" if needs_ga(version) else "resource.k8s.io v1 or a beta version served",
                   observed=f"served versions: {', '.join(a.served) or 'none'}", served=a.served, chosen=a.chosen)
        ctx.record("api_resources_verbs", a.resources_verdict, a.resources_summary,
                   expected=f"{', '.join(DRA_RESOURCES)} with verbs {', '.join(REQUIRED_VERBS)}",
                   observed="complete" if not a.missing else f"missing: {a.missing}", missing=a.missing)
        if a.status_suggestion:
            ctx.result.status_suggestion = a.status_suggestion
        for n in a.notes:
            ctx.note(n)
        if a.not_applicable:
            ctx.not_applicable(*a.not_applicable)
        if level is None:
            ctx.note("DRA API CRUD is covered by Kubernetes conformance from 1.35 (KAR-0051), which is why the 1.36 "
                     "checklist dropped this item")
        ctx.proves(f"the server's discovery lists {GROUP} versions {', '.join(a.served) or '(none)'} and, for "
                   f"{a.chosen or 'no version'}, the resources and verbs shown")
        ctx.does_not_prove("that every verb succeeds for this identity (discovery lists verbs; RBAC decides per user)")

    if a.chosen is None:
        for sub in ("devices_published", *FUNCTIONAL):
            ctx.record(sub, Verdict.NOT_APPLICABLE, "resource.k8s.io is not served", required=False)
        return

    api = f"{GROUP}/{a.chosen}"
    with ctx.step("list DeviceClasses and ResourceSlices"):
        classes = ctx.kube.list(api, "DeviceClass")
        slices = ctx.kube.list(api, "ResourceSlice")
        ctx.save_evidence("deviceclasses.yaml", classes)
        ctx.save_evidence("resourceslices.yaml", slices)
        for c in classes:
            sels = [((s or {}).get("cel") or {}).get("expression", "") for s in (c.get("spec") or {}).get("selectors") or []]
            ctx.series("device_classes").add(name=c["metadata"]["name"], selectors=" && ".join(sels))
        for s in slices:
            spec = s.get("spec") or {}
            devs = slice_devices(s)
            ctx.series("resource_slices").add(
                name=s["metadata"]["name"], driver=spec.get("driver", ""), node=slice_node(s),
                pool=(spec.get("pool") or {}).get("name", ""), devices=len(devs),
                attributes=" ".join(sorted({k for d in devs for k in d["attributes"]})),
                capacity=" ".join(sorted({k for d in devs for k in d["capacity"]})),
            )
        per_node = devices_per_node(slices)
        for row in per_node:
            ctx.series("devices_per_node").add(**row)
        total = sum(r["devices"] for r in per_node)
        ctx.metric("dra_devices", total)
        ctx.record("devices_published", Verdict.PASS if total else Verdict.NOT_APPLICABLE,
                   f"{len(classes)} DeviceClasses, {total} devices in {len(slices)} ResourceSlices",
                   expected="a DRA driver publishes devices (ResourceSlices)", observed=f"{total} devices",
                   required=False)
        if _simulated_nodes(ctx, slices):
            ctx.note("DRA devices are published for simulated (kwok) nodes by the sandbox: allocation is real "
                     "scheduler work, device preparation on the node is not")

    run_functional(ctx, api, classes, slices)
    failed = [s.id for s in ctx.result.subchecks if s.id in FUNCTIONAL and s.verdict is Verdict.FAIL and not s.required]
    if failed:
        ctx.note(f"functional DRA sub-checks failed ({', '.join(failed)}): informational for this verdict "
                 "(set dra_functional_required: true to count them), but a DRA request through "
                 f"{p.dra_device_class} did not behave as expected")


def _simulated_nodes(ctx: CheckContext, slices: list[dict[str, Any]]) -> bool:
    names = {(s.get("spec") or {}).get("nodeName") for s in slices} - {None, ""}
    for name in list(names)[:5]:
        node = ctx.kube.get("v1", "Node", name)
        if node and (node["metadata"].get("annotations") or {}).get("kwok.x-k8s.io/node") == "fake":
            return True
    return False


def _functional_na(ctx: CheckContext, summary: str) -> None:
    for sub in FUNCTIONAL:
        ctx.record(sub, Verdict.NOT_APPLICABLE, summary, required=False)


def run_functional(ctx: CheckContext, api: str, classes: list[dict[str, Any]], slices: list[dict[str, Any]]) -> None:
    p = ctx.params
    required = bool(p.dra_functional_required)
    if not p.dra_functional:
        _functional_na(ctx, "functional part disabled (dra_functional: false)")
        return
    dc = next((c for c in classes if c["metadata"]["name"] == p.dra_device_class), None)
    if dc is None:
        _functional_na(ctx, f"DeviceClass {p.dra_device_class} does not exist (no DRA driver configured for it)")
        return
    if not slices:
        _functional_na(ctx, "no DRA driver publishes devices (no ResourceSlices)")
        return
    driver = class_driver(dc)
    candidates = [s for s in slices if not driver or (s.get("spec") or {}).get("driver") == driver]
    built = build_selector(candidates or slices, driver if candidates else None)
    if p.dra_cel_selector:
        selector = Selector(p.dra_cel_selector, built.impossible if built else 'device.driver == "no-such-driver.aiconf.io"')
    elif built:
        selector = built
    else:
        selector = Selector("", 'device.driver == "no-such-driver.aiconf.io"')
        ctx.note("no published device has a string attribute: the claim asks by count only")
    ctx.metric("dra_cel_selector", selector.expression)

    ns = ctx.namespace()
    tl = ctx.series("claim_timeline")
    tl.t0 = time.monotonic()
    with ctx.step("create a ResourceClaimTemplate with a CEL selector and a pod consuming it"):
        ctx.create(claim_template("accelerator", ns, api, p.dra_device_class, selector.expression, ctx.labels))
        tl.mark("template created")
        pod = ctx.create(claim_pod("dra-probe", ns, "accelerator", p))
        tl.mark("pod created")

    claim: dict[str, Any] | None = None
    with ctx.step("wait for the scheduler to allocate the claim"):
        pod_uid = pod["metadata"]["uid"]

        def ours(claims: list[dict[str, Any]]) -> dict[str, Any] | None:
            return next((c for c in claims if any(o.get("uid") == pod_uid for o in c["metadata"].get("ownerReferences") or [])), None)

        try:
            claims = ctx.kube.wait_until(api, "ResourceClaim", ns, lambda cs: bool(allocation_results(ours(cs))),
                                         p.dra_allocation_timeout_s, "the pod's ResourceClaim to be allocated",
                                         describe=lambda cs: _claim_state(ours(cs)))
            claim = ours(claims)
        except WaitTimeout as e:
            last = ctx.kube.get("v1", "Pod", "dra-probe", ns)
            why = _scheduling_message(last)
            ctx.record("claim_allocated", Verdict.FAIL, f"not allocated within {p.dra_allocation_timeout_s}s: {why}",
                       expected=f"one device of DeviceClass {p.dra_device_class} matching the selector allocated",
                       observed=f"{e.last_seen}; pod: {why}", required=required, selector=selector.expression)
            for sub in ("pod_started_with_claim", "claim_released"):
                ctx.record(sub, Verdict.UNKNOWN, "not reached: the claim was never allocated", required=required)
            run_negative(ctx, api, ns, selector, required)
            return
        tl.mark("claim allocated")
        results = allocation_results(claim)
        r0 = results[0]
        dev = device_attributes(slices, r0.get("driver", ""), r0.get("pool", ""), r0.get("device", ""))
        ok_sel = satisfies(dev, selector, r0.get("driver", ""))
        reserved = [x.get("name") for x in (claim.get("status") or {}).get("reservedFor") or []]
        summary = f"{r0.get('driver')}/{r0.get('pool')}/{r0.get('device')} allocated to claim {claim['metadata']['name']}"
        if ok_sel is False:
            ctx.record("claim_allocated", Verdict.FAIL, summary + f" but its {selector.attribute} is not {selector.value!r}",
                       expected=f"device with {selector.attribute} == {selector.value!r}", observed=str(dev), required=required)
        else:
            ctx.record("claim_allocated", Verdict.PASS, summary + (f"; {selector.attribute} == {selector.value!r} verified"
                                                                   if ok_sel else ""),
                       expected=f"one device of {p.dra_device_class} matching `{selector.expression or 'count 1'}`",
                       observed=f"{summary}; reservedFor: {', '.join(map(str, reserved))}", required=required,
                       results=results, selector=selector.expression, capacity_selector=selector.capacity)
            ctx.proves("the scheduler allocated a device through a ResourceClaimTemplate whose request selects devices "
                       "by attribute (CEL), not only by count")
        ctx.metric("dra_allocation", results)

    with ctx.step("wait for the pod using the claim to run"):
        try:
            ctx.kube.wait_for("v1", "Pod", "dra-probe", ns, lambda o: (o or {}).get("status", {}).get("phase") in ("Running", "Succeeded"),
                              p.pod_start_timeout_s, "the DRA pod to run")
            tl.mark("pod running")
            final = ctx.kube.get("v1", "Pod", "dra-probe", ns) or {}
            ctx.record("pod_started_with_claim", Verdict.PASS,
                       f"pod Running on {final.get('spec', {}).get('nodeName')} with the allocated device",
                       expected="pod Running (driver prepared the device)", observed=final.get("status", {}).get("phase", ""),
                       required=required)
        except WaitTimeout as e:
            ctx.record("pod_started_with_claim", Verdict.FAIL, f"pod did not run: {e.last_seen}",
                       expected="pod Running", observed=e.last_seen, required=required)

    run_negative(ctx, api, ns, selector, required)

    with ctx.step("delete the pod and watch the claim being released"):
        claim_name = claim["metadata"]["name"]
        ctx.kube.delete("v1", "Pod", "dra-probe", ns)
        tl.mark("pod deleted")
        try:
            ctx.kube.wait_for_deletion(api, "ResourceClaim", claim_name, ns, p.dra_allocation_timeout_s)
            tl.mark("claim deleted")
            ctx.record("claim_released", Verdict.PASS, f"claim {claim_name} deleted after its pod was deleted",
                       expected="generated claim deallocated and deleted", observed="deleted", required=required)
        except WaitTimeout as e:
            ctx.record("claim_released", Verdict.FAIL, f"claim {claim_name} still present: {e.last_seen}",
                       expected="generated claim deleted", observed=e.last_seen, required=required)
    ctx.does_not_prove("that a workload can use the device (no kernel runs on it here)",
                       "that every DeviceClass of the platform works (only the configured one was exercised)")


def run_negative(ctx: CheckContext, api: str, ns: str, selector: Selector, required: bool) -> None:
    """A claim no device satisfies must stay unallocated (the pod reported Unschedulable)."""
    p = ctx.params
    with ctx.step("request a device no published device satisfies"):
        ctx.create(claim_template("no-such-device", ns, api, p.dra_device_class, selector.impossible, ctx.labels))
        ctx.create(claim_pod("dra-negative", ns, "no-such-device", p))

        def unschedulable(o: dict[str, Any] | None) -> bool:
            return any(c.get("type") == "PodScheduled" and c.get("status") == "False" and c.get("reason") == "Unschedulable"
                       for c in ((o or {}).get("status") or {}).get("conditions") or [])

        try:
            pod = ctx.kube.wait_for("v1", "Pod", "dra-negative", ns, lambda o: unschedulable(o) or bool((o or {}).get("spec", {}).get("nodeName")),
                                    p.dra_allocation_timeout_s, "the scheduler's verdict on an unsatisfiable claim")
        except WaitTimeout as e:
            ctx.record("selector_enforced", Verdict.UNKNOWN, f"no scheduling verdict within {p.dra_allocation_timeout_s}s",
                       observed=e.last_seen, required=False)
            ctx.kube.delete("v1", "Pod", "dra-negative", ns)
            return
        bound = (pod or {}).get("spec", {}).get("nodeName")
        msg = _scheduling_message(pod)
        ctx.record("selector_enforced", Verdict.FAIL if bound else Verdict.PASS,
                   f"pod bound to {bound} although no device matches" if bound else f"not allocated: {msg}",
                   expected=f"no allocation for `{selector.impossible}`", observed=msg or f"bound to {bound}",
                   required=required)
        ctx.kube.delete("v1", "Pod", "dra-negative", ns)


def _claim_state(claim: dict[str, Any] | None) -> str:
    if claim is None:
        return "no claim generated for the pod yet"
    return f"claim {claim['metadata']['name']} allocated={bool(allocation_results(claim))}"


def _scheduling_message(pod: dict[str, Any] | None) -> str:
    for c in ((pod or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == "PodScheduled" and c.get("status") == "False":
            return f"{c.get('reason')}: {c.get('message', '')}".strip()
    if condition(pod, "PodScheduled") == "True":
        return f"scheduled on {(pod or {}).get('spec', {}).get('nodeName')}"
    return "no scheduling condition yet"
