"""virtualized_accelerator (KAR-0004; SHOULD in 1.35-1.36): virtual accelerators (vGPUs), where the platform offers
them, are exposed and requested the same way as physical or fractional GPUs, and a pod that asks for one gets one.

The check searches for vGPU signals: node labels (``nvidia.com/vgpu.*``, vGPU product names such as
``GRID-A100-40C`` or a ``-<n>Q/C/B/A`` profile suffix), extended resources named after vGPU/vfio devices, DRA
ResourceSlice device attributes (NVML's vGPU brands ``NvidiaVCS``/``GRID``/..., vGPU product names, device type
``vgpu``/``vfio``) and DeviceClasses selecting vfio/vGPU devices. It also collects hypervisor hints (providerID,
instance type, simulated nodes) to draft the N/A justification when nothing is virtualized.

What each sub-check proves:

* ``virtualization_detected`` (required): which vGPU signals exist. None: NOT_APPLICABLE with a drafted justification
  that names everything searched and the hypervisor hints.
* ``same_request_api`` (required): the vGPU is requested through the same API as the platform's physical GPUs: the
  vGPU node advertises ``gpu_resource_name``, or the vGPU devices are published by the driver ``dra_device_class``
  selects. A vGPU exposed only under another name is UNKNOWN (attach evidence), never PASS.
* ``vgpu_pod_sees_device`` (required): on a vGPU node that runs processes, a pod requesting one ``gpu_resource_name``
  (exactly as a physical GPU is requested), or, for DRA-published vGPUs, a ResourceClaim of ``dra_device_class``
  narrowed by a CEL selector on the vGPU attribute found, sees exactly one accelerator, and it is a virtual one (a
  vGPU product name, or the product the node or device declares). It sees none, or a physical one: FAIL. It cannot
  run (vGPUs only on simulated nodes or under another request API, another vendor, a pod that never finishes):
  UNKNOWN. Labels alone never PASS.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from aiconf.checks import driver_runtime_management as drm
from aiconf.checks.accelerator_metrics import AccelNode, accelerator_nodes, quantity, workloads_configmap
from aiconf.checks.dra_support import class_driver
from aiconf.checks.secure_accelerator_access import _pod_state
from aiconf.context import CheckContext
from aiconf.errors import WaitTimeout
from aiconf.facts import is_simulated
from aiconf.kube import condition
from aiconf.model import SubCheck, Verdict
from aiconf.registry import check

SUBCHECKS = ("virtualization_detected", "same_request_api", "vgpu_pod_sees_device")
DRA_API = "resource.k8s.io/v1"
#: vGPU product names: NVIDIA's GRID/vGPU names and vGPU profile suffixes (A100-40C, T4-2Q, A10-4A, ...).
VGPU_PRODUCT_RE = re.compile(r"(?i)\bgrid\b|grid[-_ ]|vgpu|[-_ ]\d+[abcq]$")
#: NVML brands of virtual GPUs (nvmlBrandType_t names as NVIDIA's DRA driver publishes them).
VGPU_BRANDS = (
    "GRID",
    "NvidiaVApps",
    "NvidiaVPC",
    "NvidiaVCS",
    "NvidiaVWS",
    "NvidiaCloudGaming",
    "VApps",
    "VPC",
    "VCS",
    "VWS",
)
VGPU_DEVICE_TYPES = ("vgpu", "vfio")
#: Extended resources of vGPU or vfio passthrough devices (e.g. KubeVirt's nvidia.com/GRID_T4-2Q).
VGPU_RESOURCE_RE = re.compile(r"(?i)vgpu|grid|vfio")
VGPU_LABEL_PREFIX = "nvidia.com/vgpu."
PRODUCT_LABEL = "nvidia.com/gpu.product"
PROBE_LABEL = "aiconf.io/vgpu-probe"


# --- detection (pure) ------------------------------------------------------------------------------------------------


@dataclass
class Signal:
    """One sign of a virtual accelerator."""

    kind: str  #: "node label", "extended resource", "DRA device", "DeviceClass"
    where: str  #: node / slice / class name
    what: str
    node: str = ""  #: the node it is on ("" for DeviceClasses)
    driver: str = ""  #: DRA driver of a DRA device
    selector: str = ""  #: a DRA device: CEL that selects devices like it (the vGPU claim's selector)
    product: str = ""  #: a DRA device: its productName

    def describe(self) -> str:
        return f"{self.kind} {self.where}: {self.what}"


def node_signals(node: dict[str, Any]) -> list[Signal]:
    name = node["metadata"]["name"]
    labels = node["metadata"].get("labels") or {}
    out = []
    for key, value in sorted(labels.items()):
        if key.startswith(VGPU_LABEL_PREFIX) and not (key.endswith(".present") and value != "true"):
            out.append(Signal("node label", name, f"{key}={value}", node=name))
    if VGPU_PRODUCT_RE.search(labels.get(PRODUCT_LABEL, "")):
        out.append(Signal("node label", name, f"{PRODUCT_LABEL}={labels[PRODUCT_LABEL]}", node=name))
    alloc = (node.get("status") or {}).get("allocatable") or {}
    for res, qty in sorted(alloc.items()):
        if VGPU_RESOURCE_RE.search(res) and quantity(qty) > 0:
            out.append(Signal("extended resource", name, f"{res}: {qty}", node=name))
    return out


def slice_signals(slice_obj: dict[str, Any]) -> list[Signal]:
    spec = slice_obj.get("spec") or {}
    out = []
    for d in spec.get("devices") or []:
        attrs = drm.device_attributes(d)
        why = []
        if attrs.get("brand") in VGPU_BRANDS:
            why.append(f"brand={attrs['brand']}")
        if VGPU_PRODUCT_RE.search(attrs.get("productName", "")):
            why.append(f"productName={attrs['productName']}")
        if attrs.get("type", "").lower() in VGPU_DEVICE_TYPES:
            why.append(f"type={attrs['type']}")
        why += [f"{k}={v}" for k, v in attrs.items() if "vgpu" in k.lower()]
        if why:
            ident, value = why[0].split("=", 1)
            out.append(
                Signal(
                    "DRA device",
                    f"{slice_obj['metadata']['name']}/{d.get('name', '')}",
                    ", ".join(why),
                    node=spec.get("nodeName", ""),
                    driver=spec.get("driver", ""),
                    selector=device_selector(d, spec.get("driver", ""), ident, value),
                    product=attrs.get("productName", ""),
                )
            )
    return out


def device_selector(device: dict[str, Any], driver: str, ident: str, value: str) -> str:
    """CEL selecting devices whose attribute ``ident`` equals ``value`` (unqualified names are the driver's)."""
    body = device.get("basic") if isinstance(device.get("basic"), dict) else device
    key = next((k for k in body.get("attributes") or {} if k.rsplit("/", 1)[-1] == ident), ident)
    domain = key.split("/", 1)[0] if "/" in key else driver
    return f'device.attributes["{domain}"].{ident} == {json.dumps(value)}'


def vgpu_claim_template(name: str, namespace: str, device_class: str, selector: str) -> dict[str, Any]:
    """One vGPU through the physical GPUs' DeviceClass, narrowed to vGPU devices by ``selector``."""
    request = {"deviceClassName": device_class, "allocationMode": "ExactCount", "count": 1}
    if selector:
        request["selectors"] = [{"cel": {"expression": selector}}]
    return {
        "apiVersion": DRA_API,
        "kind": "ResourceClaimTemplate",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"spec": {"devices": {"requests": [{"name": "vgpu", "exactly": request}]}}},
    }


def claim_probe_pod(pod: dict[str, Any], template: str, gpu_resource: str) -> dict[str, Any]:
    """The driver probe pod, holding a ResourceClaim from ``template`` instead of the extended resource."""
    container = pod["spec"]["containers"][0]
    container["resources"]["limits"].pop(gpu_resource, None)
    container["resources"]["claims"] = [{"name": "vgpu"}]
    pod["spec"]["resourceClaims"] = [{"name": "vgpu", "resourceClaimTemplateName": template}]
    return pod


def class_signals(device_class: dict[str, Any]) -> list[Signal]:
    name = device_class["metadata"]["name"]
    exprs = [
        ((s or {}).get("cel") or {}).get("expression", "")
        for s in (device_class.get("spec") or {}).get("selectors") or []
    ]
    if re.search(r"(?i)vfio|vgpu", name) or any(re.search(r"(?i)vfio|vgpu", e) for e in exprs):
        return [Signal("DeviceClass", name, "selects vfio/vGPU devices" + (f" ({exprs[0][:120]})" if exprs else ""))]
    return []


def hypervisor_hints(nodes: list[dict[str, Any]]) -> list[str]:
    """What the accelerator nodes say about what they run on (for the N/A justification)."""
    simulated = [n["metadata"]["name"] for n in nodes if is_simulated(n)]
    providers: dict[str, int] = {}
    types: set[str] = set()
    bare = 0
    for n in nodes:
        if is_simulated(n):
            continue
        pid = (n.get("spec") or {}).get("providerID", "")
        if pid:
            scheme = pid.split(":", 1)[0]
            providers[scheme] = providers.get(scheme, 0) + 1
        else:
            bare += 1
        it = (n["metadata"].get("labels") or {}).get("node.kubernetes.io/instance-type")
        if it:
            types.add(it)
    hints = [f"{count} on cloud provider '{p}' (providerID)" for p, count in sorted(providers.items())]
    if bare:
        hints.append(f"{bare} without a providerID (bare metal or a self-managed install)")
    if types:
        hints.append(f"instance types {', '.join(sorted(types))}")
    if simulated:
        hints.append(f"{len(simulated)} simulated (kwok) node(s)")
    return hints


def draft_justification(searched: dict[str, int], hints: list[str]) -> str:
    return (
        f"No virtualized accelerator was found. Searched {searched['nodes']} node(s) for vGPU labels "
        f"({VGPU_LABEL_PREFIX}*, vGPU product names such as GRID-<model>-<n>C/Q) and vGPU/vfio extended resources, "
        f"{searched['slices']} DRA ResourceSlice(s) for vGPU device attributes (brand {'/'.join(VGPU_BRANDS[:5])}, "
        f"vGPU productName, type vgpu/vfio) and {searched['classes']} DeviceClass(es) for vfio/vGPU selectors. "
        f"Accelerator nodes: {'; '.join(hints) or 'none'}. The platform offers accelerators as physical (or "
        "fractional) devices only, with no hypervisor-mediated vGPU layer, so keeping vGPUs consistent with "
        "physical fractional GPUs does not arise in this configuration."
    )


# --- judging (pure) --------------------------------------------------------------------------------------------------


def judge_request_api(
    signals: list[Signal], nodes: dict[str, dict[str, Any]], gpu_resource: str, class_name: str, dc_driver: str | None
) -> SubCheck:
    """Is the vGPU requested the way a physical GPU is (``gpu_resource``, or the physical DeviceClass's driver)?"""
    expected = f"vGPUs requested as {gpu_resource} or through DeviceClass {class_name}, like physical GPUs"
    same, other = [], []
    for s in signals:
        if s.kind == "DRA device":
            (same if dc_driver and s.driver == dc_driver else other).append(
                f"{s.where}: driver {s.driver}" + (f" (selected by {class_name})" if s.driver == dc_driver else "")
            )
        elif s.kind == "DeviceClass":
            other.append(f"DeviceClass {s.where}: a class of its own")
        elif s.node:
            alloc = ((nodes.get(s.node) or {}).get("status") or {}).get("allocatable") or {}
            if quantity(alloc.get(gpu_resource)) > 0:
                same.append(f"{s.node}: {gpu_resource} {alloc[gpu_resource]}")
            else:
                res = [r for r in alloc if VGPU_RESOURCE_RE.search(r)]
                other.append(f"{s.node}: {', '.join(res) or 'no accelerator resource'}")
    same, other = sorted(set(same)), sorted(set(other))
    observed = "; ".join(same + other)
    if same:
        return SubCheck(
            "same_request_api",
            Verdict.PASS,
            "vGPUs are requested like physical GPUs: "
            + "; ".join(same)
            + (f" (also exposed otherwise: {'; '.join(other)})" if other else ""),
            expected=expected,
            observed=observed,
        )
    return SubCheck(
        "same_request_api",
        Verdict.UNKNOWN,
        "the vGPUs are exposed under their own request API ("
        + "; ".join(other)
        + f"), not as {gpu_resource} or through {class_name}: attach evidence that workloads request them as they "
        "request physical fractional GPUs",
        expected=expected,
        observed=observed,
    )


def judge_vgpu_pod(reading: drm.Reading | None, problem: str, node: str, declared_product: str) -> SubCheck:
    """One pod, one requested accelerator: exactly one device, and a virtual one."""
    expected = "the pod sees exactly one accelerator, and it is a vGPU"
    if reading is None:
        return SubCheck("vgpu_pod_sees_device", Verdict.UNKNOWN, f"{node}: {problem}", expected=expected)
    seen = ", ".join(f"{n} ({u})" for n, u in reading.devices) or "none"
    observed = f"{node}: {seen}"
    if not reading.devices:
        return SubCheck(
            "vgpu_pod_sees_device",
            Verdict.FAIL,
            f"{node}: a pod granted one accelerator saw none ({reading.problem or 'no device listed'})",
            expected=expected,
            observed=observed,
        )
    if len(reading.devices) != 1:
        return SubCheck(
            "vgpu_pod_sees_device",
            Verdict.FAIL,
            f"{node}: a pod granted one accelerator saw {len(reading.devices)}: {seen}",
            expected=expected,
            observed=observed,
        )
    name = reading.devices[0][0]
    norm = lambda s: re.sub(r"[-_ ]+", " ", s).strip().lower()
    virtual = bool(VGPU_PRODUCT_RE.search(name)) or (
        bool(declared_product) and VGPU_PRODUCT_RE.search(declared_product) and norm(name) == norm(declared_product)
    )
    if not virtual:
        return SubCheck(
            "vgpu_pod_sees_device",
            Verdict.FAIL,
            f"{node}: the node is labelled as offering vGPUs, but the pod sees {name!r}, not a virtual GPU",
            expected=expected,
            observed=observed,
        )
    return SubCheck(
        "vgpu_pod_sees_device",
        Verdict.PASS,
        f"{node}: a pod requesting one accelerator like a physical GPU sees one vGPU, {name} ({reading.devices[0][1]})",
        expected=expected,
        observed=observed,
    )


# --- chart -----------------------------------------------------------------------------------------------------------

SIGNAL_KINDS = ("node label", "extended resource", "DRA device", "DeviceClass")


def draw_signals(ax: Any, result: Any) -> None:
    """vGPU signals found per kind, beside how many objects of that kind were searched."""
    from matplotlib.ticker import MaxNLocator

    found = [s.get("kind") for s in result.metrics.get("signals") or []]
    searched = result.metrics.get("searched") or {}
    of = {"node label": "nodes", "extended resource": "nodes", "DRA device": "slices", "DeviceClass": "classes"}
    counts = [found.count(k) for k in SIGNAL_KINDS]
    bars = ax.barh(range(len(SIGNAL_KINDS)), counts, color=["#9a6700" if c else "#d0d7de" for c in counts])
    for i, (bar, k) in enumerate(zip(bars, SIGNAL_KINDS, strict=True)):
        ax.text(
            bar.get_width() + 0.05, i, f"{counts[i]} found in {searched.get(of[k], 0)} {of[k]} searched", va="center"
        )
    ax.set_yticks(range(len(SIGNAL_KINDS)), SIGNAL_KINDS)
    ax.set_xlim(0, max([*counts, 1]) * 2.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("vGPU signals")
    verdict = "no virtual accelerator found" if not any(counts) else f"{sum(counts)} vGPU signal(s)"
    ax.set_title(verdict)


# --- preflight -------------------------------------------------------------------------------------------------------


def preflight(kube: Any, params: Any) -> tuple[bool, str]:
    """Read-only: vGPU signals on nodes (DRA ones are listed by the check itself)."""
    signals = [s for n in kube.list("v1", "Node") for s in node_signals(n)]
    if not signals:
        return False, "no vGPU node labels or resources: the check drafts a NOT_APPLICABLE justification"
    return True, f"{len(signals)} vGPU signal(s) on nodes"


# --- the check -------------------------------------------------------------------------------------------------------


@check("virtualized_accelerator", subchecks=SUBCHECKS, charts={"signals": draw_signals}, preflight=preflight)
def run(ctx: CheckContext) -> None:
    p = ctx.params
    with ctx.step("search for virtual accelerators"):
        node_objs = ctx.kube.list("v1", "Node")
        by_name = {n["metadata"]["name"]: n for n in node_objs}
        signals = [s for n in node_objs for s in node_signals(n)]
        slices: list[dict[str, Any]] = []
        classes: list[dict[str, Any]] = []
        if "v1" in ctx.kube.served_versions("resource.k8s.io"):
            slices = ctx.kube.list(DRA_API, "ResourceSlice")
            classes = ctx.kube.list(DRA_API, "DeviceClass")
        signals += [s for sl in slices for s in slice_signals(sl)]
        signals += [s for dc in classes for s in class_signals(dc)]
        accel = accelerator_nodes(node_objs, p.gpu_resource_name)
        hint_nodes = [by_name[a.name] for a in accel] or node_objs
        hints = hypervisor_hints(hint_nodes)
        searched = {"nodes": len(node_objs), "slices": len(slices), "classes": len(classes)}
        ctx.metric("searched", searched)
        ctx.metric("signals", [s.__dict__ for s in signals])
        ctx.save_evidence(
            "signals.yaml", {"searched": searched, "hypervisor_hints": hints, "signals": [s.__dict__ for s in signals]}
        )
        if not signals:
            justification = draft_justification(searched, hints)
            ctx.not_applicable("no_virtualized_accelerator", justification)
            for sub in SUBCHECKS[1:]:
                ctx.record(sub, Verdict.NOT_APPLICABLE, "no virtual accelerator found: nothing to request or run")
            ctx.record(
                "virtualization_detected",
                Verdict.NOT_APPLICABLE,
                "no vGPU signal on any node, ResourceSlice or DeviceClass",
                expected="vGPU node labels, resources, DRA devices or vfio/vGPU DeviceClasses",
                observed=f"searched {searched}; hints: {'; '.join(hints) or 'none'}",
                hypervisor_hints=hints,
            )
            ctx.does_not_prove(
                "that no virtualization layer exists below the nodes (only what Kubernetes shows was searched)"
            )
            return
        ctx.record(
            "virtualization_detected",
            Verdict.PASS,
            f"{len(signals)} vGPU signal(s): " + "; ".join(s.describe() for s in signals[:6]),
            expected="vGPU node labels, resources, DRA devices or vfio/vGPU DeviceClasses",
            observed="; ".join(s.describe() for s in signals)[:2000],
            hypervisor_hints=hints,
        )

    with ctx.step("compare the request API with physical GPUs"):
        dc = ctx.kube.get(DRA_API, "DeviceClass", p.dra_device_class) if slices or classes else None
        api = judge_request_api(
            signals, by_name, p.gpu_resource_name, p.dra_device_class, class_driver(dc) if dc else None
        )
        ctx.record(api.id, api.verdict, api.summary, expected=api.expected, observed=api.observed)

    sub = _behaviour(ctx, signals, by_name, class_driver(dc) if dc else None)
    ctx.record(sub.id, sub.verdict, sub.summary, expected=sub.expected, observed=sub.observed)
    if sub.verdict is Verdict.PASS:
        ctx.proves(f"a pod requesting one {p.gpu_resource_name}, as for a physical GPU, received one virtual GPU")
    ctx.does_not_prove(
        "that vGPU scheduling, isolation and accounting match physical fractional GPUs in every respect (one pod "
        "was run, not a mixed workload)"
    )


def _behaviour(
    ctx: CheckContext, signals: list[Signal], nodes: dict[str, dict[str, Any]], dc_driver: str | None
) -> SubCheck:
    """Run one probe pod on a vGPU node that runs processes (extended resource first, else a ResourceClaim through
    ``dra_device_class``); UNKNOWN with the reason when none can."""
    p = ctx.params
    expected = "the pod sees exactly one accelerator, and it is a vGPU"
    if p.accelerator_vendor != "nvidia":
        return SubCheck(
            "vgpu_pod_sees_device",
            Verdict.UNKNOWN,
            f"no probe is configured for accelerator vendor {p.accelerator_vendor!r}: attach manual evidence",
            expected=expected,
        )

    def runs_processes(n: str) -> bool:
        return n in nodes and not is_simulated(nodes[n]) and condition(nodes[n], "Ready") == "True"

    node_based = sorted({s.node for s in signals if s.kind in ("node label", "extended resource") and s.node})
    candidates = [
        n
        for n in ([p.vgpu_node] if p.vgpu_node else node_based)
        if runs_processes(n)
        and quantity(((nodes[n].get("status") or {}).get("allocatable") or {}).get(p.gpu_resource_name)) > 0
    ]
    dra = [
        s
        for s in signals
        if s.kind == "DRA device"
        and dc_driver
        and s.driver == dc_driver
        and runs_processes(s.node)
        and (not p.vgpu_node or s.node == p.vgpu_node)
    ]
    if not candidates and not dra:
        where = sorted({s.node for s in signals if s.node}) or ["no node (DeviceClasses only)"]
        sim = [n for n in where if n in nodes and is_simulated(nodes[n])]
        return SubCheck(
            "vgpu_pod_sees_device",
            Verdict.UNKNOWN,
            f"no vGPU that a pod can request like a physical GPU ({p.gpu_resource_name} or DeviceClass "
            f"{p.dra_device_class}) sits on a node that runs processes (vGPU signals on: {', '.join(where)}"
            + (f"; simulated: {', '.join(sim)}" if sim else "")
            + "): the behavioural test cannot run, labels alone prove nothing; attach evidence of a vGPU pod",
            expected=expected,
        )
    target = candidates[0] if candidates else dra[0].node
    obj = nodes[target]
    node = AccelNode(
        target,
        0,
        False,
        taints=list((obj.get("spec") or {}).get("taints") or []),
        labels=dict(obj["metadata"].get("labels") or {}),
    )
    ns = ctx.namespace()
    cm = ctx.create(workloads_configmap("aiconf-device-probe", ns, ("device_probe.py",)))["metadata"]["name"]
    pod = drm.probe_pod("vgpu-probe", ns, node, p, cm)
    pod["metadata"]["labels"] = {PROBE_LABEL: "true"}
    product = node.labels.get(PRODUCT_LABEL, "")
    how = f"one {p.gpu_resource_name}"
    if not candidates:
        ctx.create(vgpu_claim_template("vgpu", ns, p.dra_device_class, dra[0].selector))
        pod = claim_probe_pod(pod, "vgpu", p.gpu_resource_name)
        product = dra[0].product
        how = f"a ResourceClaim of DeviceClass {p.dra_device_class} ({dra[0].selector})"
    with ctx.step(f"run a vGPU pod on {target} with {how}"):
        ctx.create(pod)
        try:
            final = ctx.kube.wait_for(
                "v1",
                "Pod",
                "vgpu-probe",
                ns,
                lambda o: ((o or {}).get("status") or {}).get("phase") in ("Succeeded", "Failed"),
                p.driver_probe_timeout_s,
                "the vGPU probe pod to finish",
            )
        except WaitTimeout:
            final = ctx.kube.get("v1", "Pod", "vgpu-probe", ns)
            return judge_vgpu_pod(
                None, f"the pod did not finish within {p.driver_probe_timeout_s}s ({_pod_state(final)})", target, ""
            )
        text = ctx.kube.pod_logs("vgpu-probe", ns, tail_lines=2000)
    reading = drm.parse_probe_log(target, text)
    if reading is not None:
        ctx.save_evidence(f"probes/{target}.json", json.dumps(reading.raw, indent=1) + "\n")
    phase = ((final or {}).get("status") or {}).get("phase")
    return judge_vgpu_pod(
        reading, f"the pod ended {phase} without the probe's output: {text.strip()[-200:]}", target, product
    )
