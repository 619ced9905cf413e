"""high_performance_networking (KAR-0010; SHOULD in 1.36): secondary, high-performance NICs are discoverable,
attachable to pods, usable as a scheduling constraint, and carry data between pods.

What each sub-check proves:

* ``nics_published`` (required): NICs are published with queryable characteristics. With a DRA NIC driver (DRANET's
  ``dra.net`` or any driver in ``hpn_dra_drivers``, or a device with network attributes such as ``ifName``/``rdma``)
  its ResourceSlices list NIC devices with attributes (standard ``resource.kubernetes.io/pciBusID``/``pcieRoot``/
  ``numaNode`` and vendor ones). A DeviceClass selecting a NIC driver while no slice publishes a device FAILs.
  Multus NetworkAttachmentDefinitions or RDMA/SR-IOV device-plugin resources alone are UNKNOWN: they attach networks
  but publish no NIC characteristics an API client can query (the requirement prefers DRA).
* ``capability_scheduling`` (required): a pod whose ResourceClaim asks the NIC DeviceClass for a device with the
  capability (CEL on ``hpn_capability_attribute``, RDMA by default) is bound to a node whose slice publishes such a
  device, and the allocated device has the capability. Bound elsewhere, or never bound, FAILs. Without DRA NICs, a
  pod requesting one unit of the RDMA/SR-IOV device-plugin resource must land on a node advertising it. Multus
  networks alone publish no capability: UNKNOWN.
* ``capability_enforced`` (required): the same claim, kept off the nodes that have the capability (node affinity),
  stays Pending (PodScheduled=False, Unschedulable). Bound anyway FAILs.
* ``secondary_interface_attached`` (required): inside a pod holding a NIC (claim, RDMA/SR-IOV resource or Multus
  annotation) there is a network interface besides loopback and the primary (default-route) one, or an RDMA device
  node ``/dev/infiniband/uverbs*``. Read from the pod's own ``/sys/class/net``, ``/proc/net/route`` and
  ``/dev/infiniband`` (``/sys/class/infiniband`` is only recorded: it lists the host's devices in any pod). UNKNOWN
  when the pod landed on a simulated (kwok) node, where no container runs.
* ``data_path`` (required): a second pod holding the same kind of NIC (on another node when one offers it) sends
  ``hpn_data_mib`` MiB over TCP to the first pod's secondary IPv4 address; PASS needs the client's kernel route to
  that address to leave through one of its secondary interfaces and the server to count every byte. UNKNOWN when
  the interface has no IP address (RDMA-only: attach ``ib_write_bw`` evidence), when no second pod can be placed,
  or when attach was not shown.

With no NIC DRA devices, no NIC DeviceClass, no NetworkAttachmentDefinition and no RDMA/SR-IOV extended resource the
requirement is NOT_APPLICABLE, with a drafted justification naming what was searched. Discovery alone never passes.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from aiconf import display
from aiconf.checks.dra_support import (
    ACCEPTED_VERSIONS,
    GROUP,
    allocation_results,
    attribute_value,
    class_driver,
    slice_devices,
    slice_node,
)
from aiconf.context import CheckContext
from aiconf.errors import WaitTimeout
from aiconf.model import Verdict
from aiconf.registry import check

#: Standard DRA device attributes (kubernetes.io docs, "Standard Device Attributes") that describe a NIC's placement.
STANDARD_DOMAIN = "resource.kubernetes.io"
STANDARD_ATTRIBUTES: tuple[str, ...] = ("pciBusID", "pcieRoot", "numaNode")
#: Attribute names that mark a DRA device as a network interface whatever its driver (names as DRANET publishes them,
#: plus common spellings).
NETWORK_ATTRIBUTES: tuple[str, ...] = (
    "ifName",
    "interfaceName",
    "rdma",
    "mac",
    "macAddress",
    "mtu",
    "ipv4",
    "linkSpeed",
    "speed",
    "sriov",
    "encapsulation",
)
NAD_GROUP = "k8s.cni.cncf.io"
#: Multus' pod annotation naming the extra networks a pod joins.
MULTUS_ANNOTATION = "k8s.v1.cni.cncf.io/networks"
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
SUBCHECKS = (
    "nics_published",
    "capability_scheduling",
    "capability_enforced",
    "secondary_interface_attached",
    "data_path",
)
PROBE = "nic-probe"
ELSEWHERE = "nic-probe-elsewhere"


# --- discovery (pure) --------------------------------------------------------------------------------------------


def _qualified(name: str, driver: str) -> tuple[str, str]:
    """(domain, identifier) of an attribute key; unqualified keys belong to the driver's domain."""
    return tuple(name.split("/", 1)) if "/" in name else (driver, name)  # type: ignore[return-value]


def is_nic_device(device: dict[str, Any], driver: str, nic_drivers: list[str]) -> bool:
    if driver in nic_drivers:
        return True
    return any(_qualified(k, driver)[1] in NETWORK_ATTRIBUTES for k in device.get("attributes") or {})


def capability_of(device: dict[str, Any], driver: str, attribute: str) -> Any:
    """The value of ``attribute`` on a device (qualified ``domain/name``, or a bare name in any domain); None if absent."""
    want = _qualified(attribute, driver) if "/" in attribute else None
    for key, raw in (device.get("attributes") or {}).items():
        domain, ident = _qualified(key, driver)
        if (want and (domain, ident) == want) or (not want and ident == attribute):
            kv = attribute_value(raw)
            return kv[1] if kv else None
    return None


def has_capability(device: dict[str, Any], driver: str, attribute: str) -> bool:
    """A capability counts when its attribute is true (bool), or a non-empty, non-"false" string / a positive int."""
    value = capability_of(device, driver, attribute)
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value > 0
    return bool(value) and str(value).lower() not in ("false", "0", "no", "none")


@dataclass
class NicDevice:
    node: str
    driver: str
    pool: str
    device: str
    attributes: list[str]
    standard: list[str]  #: standard resource.kubernetes.io attributes it publishes
    capable: bool


def nic_devices(slices: list[dict[str, Any]], nic_drivers: list[str], attribute: str) -> list[NicDevice]:
    out = []
    for s in slices:
        spec = s.get("spec") or {}
        driver = spec.get("driver", "")
        for d in slice_devices(s):
            if not is_nic_device(d, driver, nic_drivers):
                continue
            names = sorted(d["attributes"])
            standard = [
                i
                for k in names
                for dom, i in [_qualified(k, driver)]
                if dom == STANDARD_DOMAIN and i in STANDARD_ATTRIBUTES
            ]
            out.append(
                NicDevice(
                    slice_node(s),
                    driver,
                    (spec.get("pool") or {}).get("name", ""),
                    d["name"],
                    names,
                    standard,
                    has_capability(d, driver, attribute),
                )
            )
    return out


def nic_classes(classes: list[dict[str, Any]], nic_drivers: set[str], wanted: str) -> list[dict[str, Any]]:
    """DeviceClasses that select a NIC driver (or the one named by ``hpn_device_class``), wanted one first."""
    found = [c for c in classes if c["metadata"]["name"] == wanted or class_driver(c) in nic_drivers]
    return sorted(found, key=lambda c: c["metadata"]["name"] != wanted)


def extended_nic_resources(nodes: list[dict[str, Any]], patterns: list[str]) -> dict[str, dict[str, str]]:
    """``{node: {resource: allocatable}}`` for RDMA/SR-IOV device-plugin resources (name matches a pattern, > 0)."""
    out: dict[str, dict[str, str]] = {}
    regexes = [re.compile(p) for p in patterns]
    for n in nodes:
        alloc = (n.get("status") or {}).get("allocatable") or {}
        hits = {k: v for k, v in alloc.items() if any(r.search(k) for r in regexes) and str(v) not in ("0", "")}
        if hits:
            out[n["metadata"]["name"]] = hits
    return out


def capability_selector(driver: str, attribute: str) -> str:
    """CEL that holds for a device of ``driver`` whose capability attribute is true; absent attributes never match."""
    domain, ident = _qualified(attribute, driver)
    ref = f'device.attributes["{domain}"]'
    return f'device.driver == "{driver}" && has({ref}.{ident}) && {ref}.{ident} == true'


@dataclass
class Discovery:
    dra_version: str | None = None
    classes: list[dict[str, Any]] = field(default_factory=list)  #: DeviceClasses selecting a NIC driver
    devices: list[NicDevice] = field(default_factory=list)
    nads: list[str] = field(default_factory=list)  #: namespace/name of NetworkAttachmentDefinitions
    extended: dict[str, dict[str, str]] = field(default_factory=dict)
    searched: list[str] = field(default_factory=list)
    node_names: list[str] = field(default_factory=list)

    @property
    def anything(self) -> bool:
        return bool(self.classes or self.devices or self.nads or self.extended)


def justification(d: Discovery) -> str:
    return (
        "No high-performance or secondary network interfaces are offered to workloads on this platform: "
        + "; ".join(d.searched)
        + ". The requirement applies only where such networking is needed, so it is not applicable here."
    )


def parse_probe_log(log: str) -> dict[str, Any]:
    """What a probe container printed: interfaces, the default-route one, InfiniBand devices, IPv4 per interface, and
    for the data path the client's route and send result and the server's received byte count."""
    out: dict[str, Any] = {
        "interfaces": [],
        "default": "",
        "infiniband": [],
        "addresses": {},
        "verbs": [],
        "seen": False,
        "route": "",
        "received": None,
        "sent": {},
    }
    for line in log.splitlines():
        key, _, rest = line.partition(":")
        rest = rest.strip()
        if key == "aiconf-ifaces":
            out["interfaces"], out["seen"] = rest.split(), True
        elif key == "aiconf-default":
            out["default"] = rest
        elif key == "aiconf-ib":
            out["infiniband"] = rest.split()
        elif key == "aiconf-verbs":
            out["verbs"] = [x for x in rest.split() if x.startswith("uverbs")]
        elif key == "aiconf-addr" and rest:
            name, _, addr = rest.partition(" ")
            out["addresses"][name] = addr.strip()
        elif key == "aiconf-route":
            out["route"] = rest
        elif key == "aiconf-received" and rest.isdigit():
            out["received"] = int(rest)
        elif key == "aiconf-sent":
            out["sent"] = dict(kv.split("=", 1) for kv in rest.split() if "=" in kv)
    return out


def extra_interfaces(probe: dict[str, Any]) -> list[str]:
    """Interfaces besides loopback and the primary one (the default route's; eth0 when the route table is empty)."""
    primary = probe["default"] or "eth0"
    return [i for i in probe["interfaces"] if i not in ("lo", primary)]


# --- manifests (pure) ----------------------------------------------------------------------------------------------


def nic_claim_template(
    name: str, namespace: str, api_version: str, device_class: str, selector: str, labels: dict[str, str]
) -> dict[str, Any]:
    """A ResourceClaimTemplate asking for one NIC of ``device_class`` that satisfies ``selector``."""
    request: dict[str, Any] = {"deviceClassName": device_class, "allocationMode": "ExactCount", "count": 1}
    if selector:
        request["selectors"] = [{"cel": {"expression": selector}}]
    req = {"name": "nic", **({"exactly": request} if api_version != f"{GROUP}/v1beta1" else request)}
    return {
        "apiVersion": api_version,
        "kind": "ResourceClaimTemplate",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"metadata": {"labels": dict(labels)}, "spec": {"devices": {"requests": [req]}}},
    }


#: Prints what the kernel shows the pod (busybox applets only).
INTERFACES_SCRIPT = (
    "echo \"aiconf-ifaces: $(ls /sys/class/net | tr '\\n' ' ')\"; "
    'echo "aiconf-default: $(awk \'$2=="00000000"{print $1; exit}\' /proc/net/route)"; '
    "echo \"aiconf-ib: $(ls /sys/class/infiniband 2>/dev/null | tr '\\n' ' ')\"; "
    "echo \"aiconf-verbs: $(ls /dev/infiniband 2>/dev/null | tr '\\n' ' ')\"; "
    "for i in $(ls /sys/class/net); do echo \"aiconf-addr: $i $(ip -4 -o addr show dev $i 2>/dev/null | awk '{print $4}')\"; done; "
)


def server_script(port: int) -> str:
    """Interfaces, then count the bytes of one TCP connection on ``port`` (the idle ``sleep`` keeps nc's stdin open:
    busybox nc quits when its stdin ends), then idle until deleted."""
    return INTERFACES_SCRIPT + f"sleep 3600 | nc -l -p {port} | wc -c | sed 's/^/aiconf-received: /'; sleep 3600"


def client_script(target: str, port: int, mib: int) -> str:
    """Interfaces, the route the kernel picks to ``target``, then send ``mib`` MiB of zeros there (timed by uptime)."""
    return INTERFACES_SCRIPT + (
        f'echo "aiconf-route: $(ip route get {target} | head -1)"; '
        "s=$(cut -d' ' -f1 /proc/uptime); "
        f"dd if=/dev/zero bs=1048576 count={mib} 2>/dev/null | nc -w 10 {target} {port}; "
        "echo \"aiconf-sent: rc=$? start=$s end=$(cut -d' ' -f1 /proc/uptime)\"; sleep 3600"
    )


def probe_pod(
    name: str,
    namespace: str,
    params: Any,
    *,
    template: str = "",
    nad: str = "",
    avoid_nodes: list[str] | None = None,
    script: str = "",
) -> dict[str, Any]:
    """A pod holding a NIC through a claim (``template``) or a Multus network (``nad``), optionally kept off nodes.

    By default it prints its interfaces and then serves the data-path transfer (``script`` replaces that)."""
    container: dict[str, Any] = {
        "name": "probe",
        "image": params.image_utility,
        "imagePullPolicy": params.image_pull_policy,
        "command": ["sh", "-c", script or server_script(params.hpn_data_port)],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 1,
        # NIC-bearing nodes are often tainted (and so is the sandbox's simulated pool): the claim, not a taint,
        # decides where this pod may go.
        "tolerations": [{"operator": "Exists", "effect": "NoSchedule"}],
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65534, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
    }
    if template:
        spec["resourceClaims"] = [{"name": "nic", "resourceClaimTemplateName": template}]
        container["resources"] = {"claims": [{"name": "nic"}]}
    if avoid_nodes:
        spec["affinity"] = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": "kubernetes.io/hostname", "operator": "NotIn", "values": sorted(avoid_nodes)}
                            ]
                        }
                    ]
                }
            }
        }
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if nad:
        meta["annotations"] = {MULTUS_ANNOTATION: nad}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


# --- cluster reads -------------------------------------------------------------------------------------------------


def discover(kube: Any, params: Any) -> Discovery:
    d = Discovery()
    nic_drivers = list(params.hpn_dra_drivers)
    versions = kube.served_versions(GROUP)
    d.dra_version = next((v for v in ACCEPTED_VERSIONS if v in versions), None)
    if d.dra_version:
        api = f"{GROUP}/{d.dra_version}"
        slices = kube.list(api, "ResourceSlice")
        d.devices = nic_devices(slices, nic_drivers, params.hpn_capability_attribute)
        drivers = set(nic_drivers) | {x.driver for x in d.devices}
        d.classes = nic_classes(kube.list(api, "DeviceClass"), drivers, params.hpn_device_class)
        d.searched.append(
            f"{len(slices)} DRA ResourceSlices hold no network device (drivers "
            f"{', '.join(nic_drivers) or 'none configured'}, or attributes such as ifName/rdma) and no "
            "DeviceClass selects a NIC driver"
            if not (d.devices or d.classes)
            else "DRA ResourceSlices"
        )
    else:
        d.searched.append(
            "the DRA API (resource.k8s.io) is not served, so no DRA NIC driver (e.g. DRANET) publishes devices"
        )
    if "v1" in kube.served_versions(NAD_GROUP):
        d.nads = sorted(
            f"{o['metadata'].get('namespace', '')}/{o['metadata']['name']}"
            for o in kube.list(f"{NAD_GROUP}/v1", "NetworkAttachmentDefinition")
        )
        d.searched.append(f"{len(d.nads)} Multus NetworkAttachmentDefinitions")
    else:
        d.searched.append("Multus is not installed (k8s.cni.cncf.io/v1 NetworkAttachmentDefinition not served)")
    nodes = kube.list("v1", "Node")
    d.node_names = sorted(n["metadata"]["name"] for n in nodes)
    d.extended = extended_nic_resources(nodes, list(params.hpn_extended_resource_patterns))
    d.searched.append(
        f"no node of {len(nodes)} advertises an RDMA/SR-IOV device-plugin resource"
        if not d.extended
        else "RDMA/SR-IOV device-plugin resources"
    )
    return d


def preflight(kube: Any, params: Any) -> tuple[bool, str]:
    """Read-only: are NICs published (DRA), or secondary networks / RDMA resources offered?"""
    d = discover(kube, params)
    if not d.anything:
        return False, "no NIC DRA devices, NetworkAttachmentDefinitions or RDMA/SR-IOV resources"
    return True, (
        f"{len(d.devices)} NIC DRA devices ({sum(x.capable for x in d.devices)} with "
        f"{params.hpn_capability_attribute}), {len(d.classes)} NIC DeviceClasses, {len(d.nads)} "
        f"NetworkAttachmentDefinitions, {len(d.extended)} nodes with RDMA/SR-IOV resources"
    )


def _simulated(kube: Any, node: str) -> bool:
    obj = kube.get("v1", "Node", node) or {}
    return ((obj.get("metadata") or {}).get("annotations") or {}).get(KWOK_ANNOTATION) == "fake"


def _scheduling(pod: dict[str, Any] | None) -> tuple[str | None, str]:
    """(node the pod is bound to, the scheduler's Unschedulable message) — either may be empty."""
    node = ((pod or {}).get("spec") or {}).get("nodeName")
    for c in ((pod or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == "PodScheduled" and c.get("status") == "False" and c.get("reason") == "Unschedulable":
            return node, c.get("message", "") or "Unschedulable"
    return node, ""


# --- chart -----------------------------------------------------------------------------------------------------------


def draw_nics(ax: Any, result: Any) -> None:
    """NIC devices per node (every node), split by whether they publish the capability; where the probe was bound."""
    from matplotlib.ticker import MaxNLocator

    frame = display.series(result, "nodes")
    if frame.empty or not (frame["capable"].sum() + frame["other"].sum()):
        ax.text(0.5, 0.5, "no NIC devices published through DRA", ha="center", va="center")
        ax.set_axis_off()
        return
    ax.barh(frame["node"], frame["capable"], color="#1a7f37", label="with the capability")
    ax.barh(frame["node"], frame["other"], left=frame["capable"], color="#bbbbbb", label="without it")
    landed = (result.metrics or {}).get("hpn_probe_node")
    for i, row in frame.reset_index(drop=True).iterrows():
        if row["node"] == landed:
            ax.annotate(
                "probe pod bound here",
                (row["capable"] + row["other"], i),
                textcoords="offset points",
                xytext=(6, -3),
                fontsize="small",
            )
    ax.set_xlim(0, max(frame["capable"] + frame["other"]) * 1.6)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("NIC devices in ResourceSlices")
    ax.set_title(f"NICs per node ({(result.metrics or {}).get('hpn_capability', 'capability')})")
    ax.legend(loc="lower right", fontsize="small")


# --- the check -------------------------------------------------------------------------------------------------------


@check("high_performance_networking", subchecks=SUBCHECKS, charts={"nics_per_node": draw_nics}, preflight=preflight)
def run(ctx: CheckContext) -> None:
    p = ctx.params
    with ctx.step("discover NICs: DRA ResourceSlices and DeviceClasses, Multus networks, RDMA/SR-IOV resources"):
        d = discover(ctx.kube, p)
        ctx.save_evidence(
            "discovery.yaml",
            {
                "dra_version": d.dra_version,
                "nic_device_classes": [c["metadata"]["name"] for c in d.classes],
                "nic_devices": [vars(x) for x in d.devices],
                "network_attachment_definitions": d.nads,
                "extended_resources": d.extended,
                "searched": d.searched,
            },
        )
        for x in d.devices:
            ctx.series("nic_devices").add(
                node=x.node,
                driver=x.driver,
                pool=x.pool,
                device=x.device,
                capable=x.capable,
                standard=" ".join(x.standard),
                attributes=" ".join(x.attributes),
            )
        ctx.metric("hpn_capability", p.hpn_capability_attribute)
        ctx.metric("hpn_nic_devices", len(d.devices))
        for name in d.node_names:  # every node, so the chart shows where the NICs are not
            on_node = [x for x in d.devices if x.node == name]
            ctx.series("nodes").add(
                node=name, capable=sum(x.capable for x in on_node), other=sum(not x.capable for x in on_node)
            )

    if not d.anything:
        for sub in SUBCHECKS:
            ctx.record(
                sub,
                Verdict.NOT_APPLICABLE,
                "no high-performance NICs offered",
                expected="NICs published through DRA, Multus networks or RDMA/SR-IOV resources",
                observed="; ".join(d.searched),
            )
        ctx.not_applicable("no_high_performance_nics", justification(d))
        ctx.proves(
            "the cluster's APIs list no NIC devices, NIC DeviceClasses, Multus networks or RDMA/SR-IOV resources"
        )
        ctx.does_not_prove(
            "that the nodes have no fast NICs (only what is offered to workloads through the API counts)"
        )
        return

    record_published(ctx, d)
    attach_pod: tuple[str, str] | None = None  # (namespace, pod) holding a NIC, bound to a node
    if d.devices or d.classes:
        attach_pod = run_scheduling(ctx, d)
    elif d.extended:
        attach_pod = run_scheduling_extended(ctx, d)
    else:
        reason = (
            "only Multus networks are offered (no NIC DeviceClass, no RDMA/SR-IOV resource): no NIC capability "
            "is published to constrain scheduling with"
        )
        for sub in ("capability_scheduling", "capability_enforced"):
            ctx.record(sub, Verdict.UNKNOWN, reason, expected="a claim requiring the capability lands only where it is")
        if d.nads:
            ns = ctx.namespace()
            with ctx.step("start a pod joining a Multus network"):
                ctx.create(probe_pod(PROBE, ns, p, nad=d.nads[0]))
            attach_pod = (ns, PROBE)
    run_attach(ctx, attach_pod)


def record_published(ctx: CheckContext, d: Discovery) -> None:
    p = ctx.params
    if d.devices:
        with_attrs = [x for x in d.devices if x.attributes]
        standard = sorted({s for x in d.devices for s in x.standard})
        capable = sum(x.capable for x in d.devices)
        summary = (
            f"{len(d.devices)} NIC devices on {len({x.node for x in d.devices})} nodes "
            f"(drivers {', '.join(sorted({x.driver for x in d.devices}))}); standard attributes: "
            f"{', '.join(standard) or 'none'}; {capable} with {p.hpn_capability_attribute}"
        )
        ok = len(with_attrs) == len(d.devices)
        ctx.record(
            "nics_published",
            Verdict.PASS if ok else Verdict.FAIL,
            summary if ok else f"{len(d.devices) - len(with_attrs)} NIC devices publish no attributes; " + summary,
            expected="NIC devices in ResourceSlices with queryable attributes",
            observed=summary,
            classes=[c["metadata"]["name"] for c in d.classes],
        )
        if not standard:
            ctx.note(
                "no NIC publishes the standard resource.kubernetes.io PCI/NUMA attributes: NIC-accelerator "
                "alignment (matchAttribute) is not possible with these devices"
            )
    elif d.classes:
        names = ", ".join(c["metadata"]["name"] for c in d.classes)
        ctx.record(
            "nics_published",
            Verdict.FAIL,
            f"DeviceClass {names} selects a NIC driver, but no ResourceSlice "
            "publishes a NIC device (the driver is not running or finds no NIC)",
            expected="NIC devices published for the NIC DeviceClass",
            observed="0 NIC devices",
        )
    else:
        ctx.record(
            "nics_published",
            Verdict.UNKNOWN,
            f"secondary networks via {len(d.nads)} NetworkAttachmentDefinitions, RDMA/SR-IOV resources on "
            f"{len(d.extended)} nodes: NIC characteristics are not published in a queryable API (no DRA NIC "
            "driver); attach manual evidence",
            expected="NIC characteristics queryable (DRA ResourceSlices)",
            observed=f"NADs: {', '.join(d.nads) or 'none'}; resources: {d.extended or 'none'}",
        )
        ctx.result.status_suggestion = "Partially Implemented"
        ctx.note(
            "the requirement asks for NICs managed through DRA; Multus/device-plugin networking alone is "
            "suggested as 'Partially Implemented'"
        )


def run_scheduling(ctx: CheckContext, d: Discovery) -> tuple[str, str] | None:
    """The capability-constrained claim: lands only where the capability is, stays Pending elsewhere."""
    p = ctx.params
    if not d.classes or not d.dra_version:
        drivers = ", ".join(sorted({x.driver for x in d.devices}))
        for sub in ("capability_scheduling", "capability_enforced"):
            ctx.record(
                sub,
                Verdict.UNKNOWN,
                f"no DeviceClass selects the NIC driver ({drivers}): a workload cannot "
                "claim a NIC; set hpn_device_class",
                expected="a NIC DeviceClass",
                observed="none",
            )
        return None
    device_class = d.classes[0]
    dc_name = device_class["metadata"]["name"]
    driver = class_driver(device_class) or (d.devices[0].driver if d.devices else "")
    selector = p.hpn_capability_selector or capability_selector(driver, p.hpn_capability_attribute)
    capable_nodes = sorted({x.node for x in d.devices if x.capable and x.driver == driver})
    ctx.metric("hpn_cel_selector", selector)
    ctx.metric("hpn_device_class", dc_name)
    ctx.metric("hpn_capable_nodes", capable_nodes)
    api = f"{GROUP}/{d.dra_version}"
    ctx.metric("hpn_dra_api", api)
    ns = ctx.namespace()
    timeline = ctx.series("timeline")
    timeline.t0 = time.monotonic()

    with ctx.step(f"claim a NIC of DeviceClass {dc_name} requiring {p.hpn_capability_attribute}"):
        ctx.create(nic_claim_template("nic", ns, api, dc_name, selector, ctx.labels))
        ctx.create(probe_pod(PROBE, ns, p, template="nic"))
        timeline.mark("probe pod created")
        pod = _wait_scheduling(ctx, ns, PROBE)
        node, unschedulable = _scheduling(pod)
        expected = (
            f"bound to a node with a {p.hpn_capability_attribute} NIC ({', '.join(capable_nodes) or 'none published'})"
        )
        if node:
            timeline.mark("probe pod bound", node=node)
            ctx.metric("hpn_probe_node", node)
            claim = next(
                (
                    c
                    for c in ctx.kube.list(api, "ResourceClaim", ns)
                    if any(o.get("name") == PROBE for o in c["metadata"].get("ownerReferences") or [])
                ),
                None,
            )
            results = allocation_results(claim)
            allocated = [r for r in results if r.get("request") == "nic"] or results
            got = {(r.get("driver"), r.get("pool"), r.get("device")) for r in allocated}
            devices_ok = bool(got) and all(
                any((x.driver, x.pool, x.device) == g and x.capable for x in d.devices) for g in got
            )
            ok = node in capable_nodes and devices_ok
            ctx.record(
                "capability_scheduling",
                Verdict.PASS if ok else Verdict.FAIL,
                f"bound to {node}; allocated {', '.join('/'.join(map(str, g)) for g in sorted(got)) or 'nothing'}"
                + (
                    ""
                    if ok
                    else f": {node} publishes no NIC with {p.hpn_capability_attribute}"
                    if node not in capable_nodes
                    else ": the allocated device does not publish the capability"
                ),
                expected=expected,
                observed=f"node {node}; allocation {allocated}",
                selector=selector,
                device_class=dc_name,
            )
        else:
            ctx.record(
                "capability_scheduling",
                Verdict.FAIL,
                f"Unschedulable: {unschedulable}"
                if unschedulable
                else f"no scheduling verdict within {p.hpn_schedule_timeout_s}s",
                expected=expected,
                observed=unschedulable or "Pending",
                selector=selector,
                device_class=dc_name,
            )

    def off_capability_pod(avoid: list[str]) -> dict[str, Any]:
        ctx.create(nic_claim_template("nic-elsewhere", ns, api, dc_name, selector, ctx.labels))
        return probe_pod(ELSEWHERE, ns, p, template="nic-elsewhere", avoid_nodes=avoid)

    run_enforced(ctx, ns, capable_nodes, off_capability_pod, f"{p.hpn_capability_attribute} NIC")
    ctx.proves(
        f"the scheduler honours a CEL selector on the published NIC attribute {p.hpn_capability_attribute}"
        if ctx.result.subcheck("capability_enforced").verdict is Verdict.PASS
        and ctx.result.subcheck("capability_scheduling").verdict is Verdict.PASS
        else "what the scheduler did with a claim requiring the capability (see the sub-checks)"
    )
    return (ns, PROBE) if node else None


def run_enforced(ctx: CheckContext, ns: str, capable_nodes: list[str], make_pod: Any, what: str) -> None:
    """The same request, kept off ``capable_nodes`` by node affinity, must stay Pending (Unschedulable)."""
    p = ctx.params
    expected = "Pending (Unschedulable) off the capable nodes"
    with ctx.step("the same request kept off the nodes with the capability must stay Pending"):
        without = {n["metadata"]["name"] for n in ctx.kube.list("v1", "Node")} - set(capable_nodes)
        if not capable_nodes or not without:
            why = (
                "no node offers the capability: there is no node to keep the request away from"
                if not capable_nodes
                else "every node has the capability: no node without it to test against"
            )
            ctx.record("capability_enforced", Verdict.UNKNOWN, why, expected=expected, observed="n/a")
            return
        ctx.create(make_pod(capable_nodes))
        ctx.series("timeline").mark("off-capability pod created")
        other_node, message = _scheduling(_wait_scheduling(ctx, ns, ELSEWHERE))
        if other_node:
            ctx.record(
                "capability_enforced",
                Verdict.FAIL,
                f"bound to {other_node}, which has no {what}",
                expected=expected,
                observed=f"bound to {other_node}",
            )
        elif message:
            ctx.series("timeline").mark("off-capability pod Unschedulable")
            ctx.record(
                "capability_enforced",
                Verdict.PASS,
                f"Unschedulable on the {len(without)} nodes without the capability: {message}",
                expected=expected,
                observed=message,
            )
        else:
            ctx.record(
                "capability_enforced",
                Verdict.UNKNOWN,
                f"no scheduling verdict within {p.hpn_schedule_timeout_s}s",
                expected=expected,
                observed="Pending",
            )
        ctx.kube.delete("v1", "Pod", ELSEWHERE, ns)


def run_scheduling_extended(ctx: CheckContext, d: Discovery) -> tuple[str, str] | None:
    """Device-plugin NICs: a pod requesting one unit of the RDMA/SR-IOV resource lands only where it is advertised."""
    p = ctx.params
    by_resource: dict[str, list[str]] = {}
    for node_name, resources in d.extended.items():
        for resource in resources:
            by_resource.setdefault(resource, []).append(node_name)
    resource = max(sorted(by_resource), key=lambda r: len(by_resource[r]))  # the most widely offered one
    capable_nodes = sorted(by_resource[resource])
    ctx.metric("hpn_extended_resource", resource)
    ctx.metric("hpn_capable_nodes", capable_nodes)
    ns = ctx.namespace()
    ctx.series("timeline").t0 = time.monotonic()

    def requesting(name: str, avoid: list[str] | None = None) -> dict[str, Any]:
        pod = probe_pod(name, ns, p, avoid_nodes=avoid)
        pod["spec"]["containers"][0]["resources"] = {"limits": {resource: "1"}, "requests": {resource: "1"}}
        return pod

    with ctx.step(f"request one {resource}"):
        ctx.create(requesting(PROBE))
        ctx.series("timeline").mark("probe pod created")
        node, unschedulable = _scheduling(_wait_scheduling(ctx, ns, PROBE))
        expected = f"bound to a node advertising {resource} ({', '.join(capable_nodes)})"
        if node:
            ctx.series("timeline").mark("probe pod bound", node=node)
            ctx.metric("hpn_probe_node", node)
            ctx.record(
                "capability_scheduling",
                node in capable_nodes,
                f"bound to {node}" + ("" if node in capable_nodes else f", which does not advertise {resource}"),
                expected=expected,
                observed=f"node {node}",
                resource=resource,
            )
        else:
            ctx.record(
                "capability_scheduling",
                Verdict.FAIL,
                f"Unschedulable: {unschedulable}"
                if unschedulable
                else f"no scheduling verdict within {p.hpn_schedule_timeout_s}s",
                expected=expected,
                observed=unschedulable or "Pending",
                resource=resource,
            )
    run_enforced(ctx, ns, capable_nodes, lambda avoid: requesting(ELSEWHERE, avoid), resource)
    return (ns, PROBE) if node else None


def _last_warning(ctx: CheckContext, ns: str, pod: str) -> str:
    """The newest Warning event of ``pod`` (kubelet's reason it cannot start: e.g. the NIC driver is not registered)."""
    warnings = [
        e
        for e in ctx.kube.events(ns)
        if e.get("type") == "Warning" and (e.get("involvedObject") or {}).get("name") == pod
    ]
    return f"{warnings[-1].get('reason')}: {warnings[-1].get('message', '')}" if warnings else ""


def _wait_scheduling(ctx: CheckContext, ns: str, name: str) -> dict[str, Any] | None:
    try:
        return ctx.kube.wait_for(
            "v1",
            "Pod",
            name,
            ns,
            lambda o: any(_scheduling(o)),
            ctx.params.hpn_schedule_timeout_s,
            f"the scheduler's verdict on {name}",
        )
    except WaitTimeout:
        return ctx.kube.get("v1", "Pod", name, ns)


def run_attach(ctx: CheckContext, attach_pod: tuple[str, str] | None) -> None:
    """Read the interfaces inside a pod holding a NIC; then say what the data-path sub-check can and cannot show."""
    p = ctx.params
    if attach_pod is None:
        why = (
            "no pod holding a NIC could be placed (see capability_scheduling)"
            if ctx.result.subcheck("capability_scheduling").verdict is not Verdict.UNKNOWN
            else "no mechanism to attach a NIC was exercised (no NIC DeviceClass or Multus network)"
        )
        ctx.record("secondary_interface_attached", Verdict.UNKNOWN, why, expected="an extra interface inside a pod")
        ctx.record("data_path", Verdict.UNKNOWN, why, expected="two pods exchange data over the secondary interface")
        return
    ns, name = attach_pod
    with ctx.step("read the interfaces inside the pod holding a NIC"):
        pod = ctx.kube.get("v1", "Pod", name, ns) or {}
        node = (pod.get("spec") or {}).get("nodeName")
        if node and _simulated(ctx.kube, node):
            ctx.record(
                "secondary_interface_attached",
                Verdict.UNKNOWN,
                f"the pod was bound to {node}, a simulated (kwok) node where no container runs: the NIC cannot "
                "be attached; attach evidence from a real node",
                expected="an extra interface inside the pod",
                observed="simulated node",
            )
            ctx.record(
                "data_path",
                Verdict.UNKNOWN,
                "needs two running pods with secondary interfaces (simulated node)",
                expected="two pods exchange data over the secondary interface",
            )
            ctx.note(
                f"{node} is a simulated (kwok) node: scheduling onto its NIC is real scheduler work, the NIC itself is not"
            )
            return
        try:
            ctx.kube.wait_for(
                "v1",
                "Pod",
                name,
                ns,
                lambda o: (o or {}).get("status", {}).get("phase") == "Running",
                p.hpn_attach_timeout_s,
                "the NIC probe pod to run",
            )
            # The probe prints its interface list as soon as it starts; logs arrive through no watch, hence sampling.
            log = ctx.kube.sample(
                lambda: ctx.kube.pod_logs(name, ns),
                p.sample_interval_s,
                lambda text: parse_probe_log(text)["seen"],
                p.hpn_attach_timeout_s,
                "the probe's interface list in its log",
            )
        except WaitTimeout as e:
            ctx.record(
                "secondary_interface_attached",
                Verdict.FAIL,
                f"the pod holding the NIC did not run: {_last_warning(ctx, ns, name) or e.last_seen}",
                expected="pod Running with an extra interface",
                observed=e.last_seen,
            )
            ctx.record(
                "data_path",
                Verdict.UNKNOWN,
                "not reached: no running pod with the NIC",
                expected="two pods exchange data over the secondary interface",
            )
            return
        ctx.save_evidence("probe.log", log)
        seen = parse_probe_log(log)
        extra = extra_interfaces(seen)
        observed = (
            f"interfaces {' '.join(seen['interfaces'])} (primary {seen['default'] or 'eth0'}); "
            f"RDMA device nodes: {' '.join(seen['verbs']) or 'none'}; "
            f"InfiniBand in sysfs: {' '.join(seen['infiniband']) or 'none'}"
        )
        # /sys/class/infiniband lists the host's RDMA devices in any pod (sysfs is not namespaced for them): only an
        # injected /dev/infiniband/uverbs* device node shows that the pod itself was given one.
        ok = bool(extra or seen["verbs"])
        ctx.record(
            "secondary_interface_attached",
            Verdict.PASS if ok else Verdict.FAIL,
            f"extra: {', '.join(extra + seen['verbs'])}" if ok else "only the primary interface in the pod",
            expected="an interface besides lo and the primary one, or an RDMA device node (/dev/infiniband/uverbs*)",
            observed=observed,
            node=node,
            addresses=seen["addresses"],
        )
        if not ok:
            ctx.record(
                "data_path",
                Verdict.UNKNOWN,
                "not reached: no secondary interface in the pod",
                expected="two pods exchange data over the secondary interface",
            )
            return
    run_data_path(ctx, ns, name, node, seen)


def secondary_target(seen: dict[str, Any]) -> tuple[str, str] | None:
    """(interface, IPv4 address) of the first secondary interface that has an address; None when none has one."""
    for iface in extra_interfaces(seen):
        addr = seen["addresses"].get(iface, "").split("/")[0]
        if addr:
            return iface, addr
    return None


def judge_transfer(client: dict[str, Any], server: dict[str, Any], target: str, mib: int) -> tuple[bool, str]:
    """Did ``mib`` MiB go from the client to ``target`` through one of the client's secondary interfaces?"""
    route_dev = re.search(r"\bdev (\S+)", client["route"])
    via = route_dev.group(1) if route_dev else ""
    extra = extra_interfaces(client)
    if via not in extra:
        return False, (
            f"the client's route to {target} leaves through {via or 'no interface'}, not a secondary "
            f"interface ({', '.join(extra) or 'none in the client'})"
        )
    if client["sent"].get("rc") != "0":
        return False, f"the client's send to {target} failed (nc rc={client['sent'].get('rc')})"
    want = mib * 1048576
    if server["received"] != want:
        return False, f"the server received {server['received']} bytes of {want}"
    return True, f"{mib} MiB sent to {target} through the client's {via} and received in full"


def run_data_path(ctx: CheckContext, ns: str, server: str, server_node: str | None, seen: dict[str, Any]) -> None:
    """A second pod holding the same kind of NIC sends a fixed amount of data to the first one's secondary address."""
    p = ctx.params
    expected = (
        f"{p.hpn_data_mib} MiB from a second pod to the first one's secondary address, over a secondary interface"
    )
    target = secondary_target(seen)
    if target is None:
        ctx.record(
            "data_path",
            Verdict.UNKNOWN,
            "the secondary interface has no IPv4 address (RDMA-only): an "
            "ib_write_bw-style transfer needs manual evidence",
            expected=expected,
            observed="no address",
        )
        return
    iface, address = target
    pod = ctx.kube.get("v1", "Pod", server, ns) or {}
    claims = pod.get("spec", {}).get("resourceClaims") or []
    nad = (pod.get("metadata", {}).get("annotations") or {}).get(MULTUS_ANNOTATION, "")
    with ctx.step(f"send {p.hpn_data_mib} MiB from a second pod to {address} ({iface})"):
        if claims:  # the same request as the first pod's claim
            m = ctx.result.metrics
            ctx.create(
                nic_claim_template(
                    "nic-peer", ns, m["hpn_dra_api"], m["hpn_device_class"], m["hpn_cel_selector"], ctx.labels
                )
            )
        others = [n for n in ctx.result.metrics.get("hpn_capable_nodes", []) if n != server_node]
        peer = probe_pod(
            "nic-peer",
            ns,
            p,
            template="nic-peer" if claims else "",
            nad=nad,
            avoid_nodes=[server_node] if server_node and (others or nad) else None,
            script=client_script(address, p.hpn_data_port, p.hpn_data_mib),
        )
        ctx.create(peer)
        peer_node, unschedulable = _scheduling(_wait_scheduling(ctx, ns, "nic-peer"))
        if not peer_node:
            ctx.record(
                "data_path",
                Verdict.UNKNOWN,
                f"no second pod with a NIC could be placed: {unschedulable or 'Pending'}",
                expected=expected,
                observed=unschedulable or "Pending",
            )
            return
        try:
            ctx.kube.wait_for(
                "v1",
                "Pod",
                "nic-peer",
                ns,
                lambda o: (o or {}).get("status", {}).get("phase") == "Running",
                p.hpn_attach_timeout_s,
                "the data-path client pod to run",
            )
            client_log = ctx.kube.sample(
                lambda: ctx.kube.pod_logs("nic-peer", ns),
                p.sample_interval_s,
                lambda text: bool(parse_probe_log(text)["sent"]),
                p.hpn_attach_timeout_s,
                "the client's send result",
            )
            server_log = ctx.kube.sample(
                lambda: ctx.kube.pod_logs(server, ns),
                p.sample_interval_s,
                lambda text: parse_probe_log(text)["received"] is not None,
                p.hpn_attach_timeout_s,
                "the server's received byte count",
            )
        except WaitTimeout as e:
            ctx.record(
                "data_path",
                Verdict.FAIL,
                f"the transfer did not complete: {e}",
                expected=expected,
                observed=e.last_seen,
            )
            return
        ctx.save_evidence("data_path_client.log", client_log)
        ctx.save_evidence("data_path_server.log", server_log)
        client, received = parse_probe_log(client_log), parse_probe_log(server_log)
        ok, summary = judge_transfer(client, received, address, p.hpn_data_mib)
        try:
            seconds = float(client["sent"]["end"]) - float(client["sent"]["start"])
        except (KeyError, ValueError):
            seconds = 0.0
        if ok and seconds > 0:
            ctx.metric("hpn_data_path_mib_per_s", round(p.hpn_data_mib / seconds, 1))
            summary += f" in {seconds:.2f}s (~{p.hpn_data_mib / seconds:.0f} MiB/s, one TCP stream, coarse clock)"
        ctx.record(
            "data_path",
            Verdict.PASS if ok else Verdict.FAIL,
            summary,
            expected=expected,
            observed=f"route: {client['route'] or '?'}; sent: {client['sent']}; received: {received['received']}",
            client_node=peer_node,
            server_node=server_node,
        )
        if peer_node == server_node:
            ctx.note("the data-path pods share a node (only one node offers the NIC): the transfer did not cross nodes")
        ctx.does_not_prove("RDMA verbs traffic or line-rate bandwidth (one TCP stream of zeros through busybox nc)")
