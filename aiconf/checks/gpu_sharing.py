"""gpu_sharing (KAR-0003; SHOULD in 1.35-1.36): one physical GPU exposed as several allocatable units, and workloads
holding those units scheduled and running on the same physical GPU.

Detection reads what NVIDIA's device plugin and GPU Feature Discovery (GFD) publish: per node, the units of
``gpu_resource_name`` (or its ``.shared`` rename) against the physical count (``nvidia.com/gpu.count``), the labels
``nvidia.com/gpu.replicas``, ``nvidia.com/gpu.sharing-strategy`` (``time-slicing`` / ``mps``) and the ``-SHARED``
product suffix; MIG partitions (``nvidia.com/mig-*`` resources, or ``nvidia.com/mig.strategy=single`` with a
``-MIG-`` product); and DRA ResourceSlices whose devices consume shared counters (partitionable devices) or allow
multiple allocations. The behavioural proof runs on a node that runs processes and shares by time-slicing or MPS:
``physical + gpu_sharing_extra_pods`` pods, each requesting one unit, pinned to the node; each runs the device probe
(:mod:`aiconf.workloads.device_probe`, ``nvidia-smi -L`` / NVML / CUDA) and the UUIDs it reports are tallied per
physical GPU.

What each sub-check proves:

* ``sharing_advertised`` (required): some node advertises more units than it has GPUs, consistently with its sharing
  labels (units > physical), or MIG partitions, or DRA shared devices. FAIL when labels claim sharing but the units
  equal the physical count. No sharing anywhere: NOT_APPLICABLE with a drafted justification; accelerators without
  GFD labels (the physical count is unknown): UNKNOWN.
* ``shared_pods_running`` (required): more pods than the node has GPUs, one unit each, were all Running at the same
  time on that node (none Pending).
* ``units_map_to_physical`` (required): every pod saw exactly one GPU, and the distinct GPUs seen are no more than
  the node's physical count (and among the UUIDs its DRA slice publishes, when it publishes any).
* ``pods_share_physical_gpu`` (required): at least one physical GPU (UUID) was seen by two or more of the pods at
  once: the units are replicas of one GPU, not whole GPUs behind a wrong label.
* ``dra_sharing`` (informational): a DRA driver exposes partitionable or shareable devices (the KAR's forward-looking
  clause).

MIG-only and DRA-only sharing are detected, but their behavioural proof is not automated: the three behavioural
sub-checks are then UNKNOWN (attach ``nvidia-smi -L`` evidence), never PASS. Nodes simulated by kwok run no
processes: sharing there is UNKNOWN.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiconf.checks.accelerator_metrics import (
    AccelNode,
    free_accelerators,
    load_pod,
    quantity,
    wait_free_accelerators,
    workloads_configmap,
)
from aiconf.checks.secure_accelerator_access import END_MARKER, LAUNCHER, parse_probe_log
from aiconf.context import CheckContext
from aiconf.errors import WaitTimeout
from aiconf.model import SubCheck, Verdict
from aiconf.registry import check

SUBCHECKS = (
    "sharing_advertised",
    "shared_pods_running",
    "units_map_to_physical",
    "pods_share_physical_gpu",
    "dra_sharing",
)
BEHAVIOURAL = ("shared_pods_running", "units_map_to_physical", "pods_share_physical_gpu")
INFORMATIONAL = ("dra_sharing",)
DRA_API = "resource.k8s.io/v1"
PHASE_LABEL = "aiconf.io/sharing-probe"

# GPU Feature Discovery's labels (NVIDIA k8s-device-plugin, "catalog of labels").
COUNT_LABEL = "nvidia.com/gpu.count"
REPLICAS_LABEL = "nvidia.com/gpu.replicas"
STRATEGY_LABEL = "nvidia.com/gpu.sharing-strategy"
PRODUCT_LABEL = "nvidia.com/gpu.product"
MIG_STRATEGY_LABEL = "nvidia.com/mig.strategy"
SHARING_STRATEGIES = ("time-slicing", "mps")
MIG_PREFIX = "nvidia.com/mig-"


# --- detection (pure) ------------------------------------------------------------------------------------------------


@dataclass
class SharingNode:
    """What one accelerator node advertises about sharing."""

    name: str
    simulated: bool
    ready: bool
    resource: str  #: the resource the shared units are advertised as (gpu_resource_name or its ``.shared`` rename)
    units: int
    physical: int | None  #: GFD's nvidia.com/gpu.count (None: no GFD label)
    replicas: int
    strategy: str
    product: str
    mig: dict[str, int] = field(default_factory=dict)
    taints: list[dict[str, Any]] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def declared(self) -> bool:
        """Labels or the resource name say the GPUs are shared (time-slicing or MPS)."""
        return (
            self.strategy in SHARING_STRATEGIES
            or self.replicas > 1
            or self.product.endswith("-SHARED")
            or self.resource.endswith(".shared")
        )

    @property
    def mode(self) -> str:
        return self.strategy if self.strategy in SHARING_STRATEGIES else "time-slicing"

    @property
    def shares_units(self) -> bool:
        """More units than GPUs: the advertised side of time-slicing/MPS holds."""
        return self.physical is not None and self.units > self.physical

    @property
    def inconsistent(self) -> bool:
        """Sharing is declared, yet the node advertises no more units than it has GPUs."""
        return self.declared and self.physical is not None and self.units <= self.physical

    def accel(self) -> AccelNode:
        return AccelNode(self.name, self.units, self.simulated, taints=self.taints, labels=self.labels)

    def describe(self) -> str:
        bits = [f"{self.units} x {self.resource}"]
        bits.append(f"{self.physical} GPU(s)" if self.physical is not None else "GPU count unknown")
        if self.replicas > 1:
            bits.append(f"replicas {self.replicas}")
        if self.strategy:
            bits.append(f"strategy {self.strategy}")
        if self.mig:
            bits.append("MIG " + ", ".join(f"{k.removeprefix(MIG_PREFIX)} x{v}" for k, v in sorted(self.mig.items())))
        if self.simulated:
            bits.append("simulated")
        return f"{self.name}: " + ", ".join(bits)


def sharing_nodes(nodes: list[dict[str, Any]], resource: str) -> list[SharingNode]:
    """Nodes advertising ``resource``, its ``.shared`` rename or MIG resources, with their sharing facts."""
    from aiconf.facts import is_simulated
    from aiconf.kube import condition

    out = []
    for n in nodes:
        alloc = (n.get("status") or {}).get("allocatable") or {}
        labels = n["metadata"].get("labels") or {}
        shared_name = f"{resource}.shared"
        name, units = (
            (shared_name, quantity(alloc.get(shared_name)))
            if quantity(alloc.get(shared_name))
            else (
                resource,
                quantity(alloc.get(resource)),
            )
        )
        mig = {k: quantity(v) for k, v in alloc.items() if k.startswith(MIG_PREFIX) and quantity(v) > 0}
        if units <= 0 and not mig:
            continue
        out.append(
            SharingNode(
                name=n["metadata"]["name"],
                simulated=is_simulated(n),
                ready=condition(n, "Ready") == "True",
                resource=name,
                units=units,
                physical=quantity(labels[COUNT_LABEL]) if COUNT_LABEL in labels else None,
                replicas=max(1, quantity(labels.get(REPLICAS_LABEL))),
                strategy=labels.get(STRATEGY_LABEL, ""),
                product=labels.get(PRODUCT_LABEL, ""),
                mig=mig,
                taints=list((n.get("spec") or {}).get("taints") or []),
                labels=dict(labels),
            )
        )
    return sorted(out, key=lambda s: (s.simulated, s.name))


def is_mig(node: SharingNode) -> bool:
    return bool(node.mig) or (
        node.labels.get(MIG_STRATEGY_LABEL) == "single" and "-MIG-" in node.product and node.units > 0
    )


def dra_shared_devices(slices: list[dict[str, Any]]) -> dict[str, int]:
    """``{driver: devices}`` of DRA devices that consume shared counters (partitionable) or allow several
    allocations (consumable capacity), and of slices that publish shared counters."""
    out: Counter[str] = Counter()
    for s in slices:
        spec = s.get("spec") or {}
        driver = spec.get("driver") or "?"
        shared = 1 if spec.get("sharedCounters") else 0
        for d in spec.get("devices") or []:
            if d.get("consumesCounters") or d.get("allowMultipleAllocations"):
                shared += 1
        if shared:
            out[driver] += shared
    return dict(out)


def judge_advertised(nodes: list[SharingNode], dra: dict[str, int]) -> tuple[SubCheck, str]:
    """The ``sharing_advertised`` verdict and the reason code when nothing is shared (``""`` otherwise)."""
    sharing = [n for n in nodes if n.shares_units]
    migs = [n for n in nodes if is_mig(n)]
    wrong = [n for n in nodes if n.inconsistent]
    seen = "; ".join(n.describe() for n in nodes) or "no accelerator node"
    expected = "units > physical GPUs on some node (time-slicing/MPS), MIG resources, or DRA shared devices"
    details = {"nodes": [n.describe() for n in nodes], "dra_shared_devices": dra}
    if sharing or migs or dra:
        bits = []
        if sharing:
            bits.append(
                "time-slicing/MPS on " + ", ".join(f"{n.name} ({n.units} units / {n.physical} GPUs)" for n in sharing)
            )
        if migs:
            bits.append("MIG on " + ", ".join(n.name for n in migs))
        if dra:
            bits.append("DRA shared devices from " + ", ".join(sorted(dra)))
        if wrong:
            bits.append("inconsistent (labels claim sharing, units = GPUs): " + ", ".join(n.name for n in wrong))
        return SubCheck("sharing_advertised", Verdict.PASS, "; ".join(bits), expected, seen, True, details), ""
    if wrong:
        why = ", ".join(
            f"{n.name} ({n.strategy or 'replicas ' + str(n.replicas)}, {n.units} units = {n.physical} GPUs)"
            for n in wrong
        )
        return (
            SubCheck(
                "sharing_advertised",
                Verdict.FAIL,
                f"labels claim GPU sharing but no node advertises more units than GPUs: {why}",
                expected,
                seen,
                True,
                details,
            ),
            "",
        )
    if not nodes:
        why = "no node advertises an accelerator resource: there is no GPU to share"
        return SubCheck(
            "sharing_advertised", Verdict.NOT_APPLICABLE, why, expected, seen, True, details
        ), "no_accelerators"
    if all(n.physical is None and not n.labels.get(STRATEGY_LABEL) for n in nodes):
        why = (
            "accelerator nodes carry no GPU Feature Discovery labels (nvidia.com/gpu.count, "
            "nvidia.com/gpu.sharing-strategy): the physical count behind the advertised units is unknown, so sharing "
            "can be neither shown nor ruled out; attach manual evidence"
        )
        return SubCheck("sharing_advertised", Verdict.UNKNOWN, why, expected, seen, True, details), ""
    why = "every accelerator node advertises one unit per physical GPU and no MIG or DRA shared devices"
    return SubCheck("sharing_advertised", Verdict.NOT_APPLICABLE, why, expected, seen, True, details), "no_sharing"


def justification(nodes: list[SharingNode], reason: str) -> str:
    """The drafted N/A justification (a SHOULD item: the vendor may also leave it empty)."""
    if reason == "no_accelerators":
        return (
            "The platform offers no accelerators in this configuration, so there is no GPU to expose as several "
            "allocatable units."
        )
    gpus = sum(n.physical or n.units for n in nodes)
    return (
        f"GPU sharing is not configured on this platform: each of the {gpus} GPU(s) on {len(nodes)} node(s) is "
        "allocated whole to one pod (no time-slicing, MPS or MIG partitions, and no DRA shared devices). This is a "
        "deliberate choice of exclusive GPU allocation; sharing can be enabled through the NVIDIA device plugin's "
        "time-slicing or MPS configuration or MIG."
    )


# --- the behavioural proof (pure) ------------------------------------------------------------------------------------


def probe_pod(name: str, namespace: str, node: SharingNode, p: Any, *, configmap: str, hold_s: int) -> dict[str, Any]:
    """One pod holding one unit of ``node.resource`` on ``node``; it prints the device probe's document, then holds.

    Built on accelerator_metrics' load pod (pinned, tolerating the node's taints, restricted: listing and opening
    GPU device nodes, mode 0666, needs neither root nor a capability); only the command and the request differ.
    """
    pod = load_pod(name, namespace, node.accel(), p, simulated=True, configmap=configmap)
    pod["metadata"]["labels"] = {PHASE_LABEL: "share"}
    container = pod["spec"]["containers"][0]
    container["name"] = "probe"
    container["command"] = ["python3", "-c", LAUNCHER, str(hold_s), "--label", name]
    container["resources"] = {
        "requests": {"cpu": "10m", "memory": "32Mi"},
        "limits": {"memory": "128Mi", node.resource: "1"},
    }
    return pod


def pods_settled(pods: list[dict[str, Any]], want: int) -> bool:
    """Each of the ``want`` pods has started or can no longer start (unschedulable, ended): waiting longer shows
    nothing new, and the pods that did start are read."""
    return len(pods) >= want and all(_started(p) or _stuck(p) for p in pods)


def _started(pod: dict[str, Any]) -> bool:
    st = pod.get("status") or {}
    return st.get("phase") == "Running" and all(
        "running" in (c.get("state") or {}) for c in st.get("containerStatuses") or [{}]
    )


def _stuck(pod: dict[str, Any]) -> bool:
    st = pod.get("status") or {}
    if st.get("phase") in ("Failed", "Succeeded"):
        return True
    return any(
        c.get("type") == "PodScheduled" and c.get("status") == "False" and c.get("reason") == "Unschedulable"
        for c in st.get("conditions") or []
    )


def pod_state(pod: dict[str, Any] | None) -> str:
    if pod is None:
        return "absent"
    st = pod.get("status") or {}
    bits = [st.get("phase", "?")]
    bits += [
        f"{c.get('type')}: {c.get('message')}"
        for c in st.get("conditions") or []
        if c.get("status") == "False" and c.get("message")
    ]
    for c in st.get("containerStatuses") or []:
        waiting = (c.get("state") or {}).get("waiting")
        if waiting:
            bits.append(f"{c.get('name')}: {waiting.get('reason')} {waiting.get('message', '')}".strip())
    return "; ".join(bits)[:300]


@dataclass
class Behaviour:
    """What the shared pods showed: their states, and the GPU UUIDs each probe reported."""

    node: str
    physical: int
    pods: list[str]
    states: dict[str, str] = field(default_factory=dict)  #: pod -> "Running" or why not
    uuids: dict[str, list[str]] = field(default_factory=dict)  #: pod -> UUIDs its probe saw
    problems: dict[str, str] = field(default_factory=dict)  #: pod -> why no probe document
    node_uuids: list[str] = field(default_factory=list)  #: UUIDs the node publishes (DRA), [] when unknown

    def tally(self) -> dict[str, int]:
        """Pods per physical GPU UUID (only pods that saw exactly one GPU count)."""
        return dict(Counter(u[0] for u in self.uuids.values() if len(u) == 1))


def judge_behaviour(b: Behaviour) -> dict[str, SubCheck]:
    running = [pod for pod in b.pods if b.states.get(pod) == "Running"]
    not_running = {pod: b.states.get(pod, "never seen") for pod in b.pods if pod not in running}
    subs: dict[str, SubCheck] = {}
    want = f"{len(b.pods)} pods (> {b.physical} GPUs), one unit each, all Running at once on {b.node}"
    if not not_running and len(b.pods) > b.physical:
        subs["shared_pods_running"] = SubCheck(
            "shared_pods_running",
            Verdict.PASS,
            f"{len(running)} pods on {b.physical} GPU(s) all Running",
            want,
            f"{len(running)} Running",
            True,
        )
    else:
        subs["shared_pods_running"] = SubCheck(
            "shared_pods_running",
            Verdict.FAIL,
            f"{len(not_running)} of {len(b.pods)} pods not Running: "
            + "; ".join(f"{k}: {v}" for k, v in sorted(not_running.items())),
            want,
            f"{len(running)} Running",
            True,
            {"not_running": not_running},
        )
    seen = {pod: u for pod, u in b.uuids.items()}
    distinct = sorted({u for us in seen.values() for u in us})
    observed = "; ".join(f"{pod}: {' '.join(u) or 'none'}" for pod, u in sorted(seen.items())) or "no probe output"
    want_map = f"each pod sees exactly one GPU; at most {b.physical} distinct GPU(s)" + (
        " among the node's published UUIDs" if b.node_uuids else ""
    )
    if not seen:
        why = "; ".join(f"{k}: {v}" for k, v in sorted(b.problems.items())) or "no pod ran"
        subs["units_map_to_physical"] = SubCheck(
            "units_map_to_physical", Verdict.UNKNOWN, f"no probe reported its GPUs ({why})", want_map, observed, True
        )
    else:
        bad = [f"{pod} saw {len(u)} GPUs" for pod, u in sorted(seen.items()) if len(u) != 1]
        if len(distinct) > b.physical:
            bad.append(f"{len(distinct)} distinct GPUs seen but the node declares {b.physical}")
        foreign = [u for u in distinct if b.node_uuids and u not in b.node_uuids]
        if foreign:
            bad.append(f"UUIDs the node does not publish: {', '.join(foreign)}")
        if b.problems:
            bad += [f"{k}: {v}" for k, v in sorted(b.problems.items())]
        subs["units_map_to_physical"] = SubCheck(
            "units_map_to_physical",
            Verdict.FAIL if bad else Verdict.PASS,
            "; ".join(bad) if bad else f"{len(seen)} pods each saw one GPU, {len(distinct)} distinct GPU(s)",
            want_map,
            observed,
            True,
        )
    tally = b.tally()
    want_share = "some physical GPU seen by two or more pods at once"
    tally_txt = ", ".join(f"{u}: {c}" for u, c in sorted(tally.items())) or "none"
    if not seen:
        subs["pods_share_physical_gpu"] = SubCheck(
            "pods_share_physical_gpu", Verdict.UNKNOWN, "no probe reported its GPUs", want_share, tally_txt, True
        )
    else:
        shared = {u: c for u, c in tally.items() if c > 1}
        ok = bool(shared) and subs["shared_pods_running"].verdict is Verdict.PASS
        summary = (
            f"{len(shared)} GPU(s) held by several pods at once: "
            + ", ".join(f"{u} x{c}" for u, c in sorted(shared.items()))
            if shared
            else "no GPU was seen by more than one pod: the units behaved as whole GPUs"
        )
        if shared and not ok:
            summary += " (but not every pod was Running)"
        subs["pods_share_physical_gpu"] = SubCheck(
            "pods_share_physical_gpu",
            Verdict.PASS if ok else Verdict.FAIL,
            summary,
            want_share,
            tally_txt,
            True,
            {"tally": tally},
        )
    return subs


def draw_pods_per_gpu(ax: Any, result: Any) -> None:
    """Bar chart: pods per physical GPU (UUID) during the behavioural test; the dashed line is one pod per GPU."""
    from aiconf import display

    frame = display.series(result, "tally")
    if frame is None or frame.empty:
        ax.text(0.5, 0.5, "no behavioural test ran", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    labels = [str(u)[:13] + "…" if len(str(u)) > 14 else str(u) for u in frame["uuid"]]
    colours = ["#1a7f37" if c > 1 else "#6e7781" for c in frame["pods"]]
    ax.bar(labels, frame["pods"], color=colours)
    ax.axhline(1, color="#cf222e", linestyle="--", linewidth=1, label="one pod per GPU (no sharing)")
    ax.set_xlabel("physical GPU (UUID)")
    ax.set_ylabel("pods holding a unit of it")
    ax.set_title(f"Pods per physical GPU on {frame['node'].iloc[0]}")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.legend(loc="upper right")


def preflight(kube: Any, params: Any) -> tuple[bool, str]:
    """Read-only: a node that runs processes and advertises more units than GPUs."""
    nodes = sharing_nodes(kube.list("v1", "Node"), params.gpu_resource_name)
    shared = [n for n in nodes if n.shares_units]
    if not nodes:
        return False, f"no node advertises {params.gpu_resource_name}"
    if not shared:
        return False, "no node advertises more units than GPUs (no time-slicing/MPS)"
    real = [n for n in shared if not n.simulated and n.ready]
    if not real:
        return False, f"sharing only on simulated (kwok) nodes: {', '.join(n.name for n in shared)}"
    return True, "; ".join(n.describe() for n in real)


# --- the check -------------------------------------------------------------------------------------------------------


@check("gpu_sharing", subchecks=SUBCHECKS, charts={"pods_per_gpu": draw_pods_per_gpu}, preflight=preflight)
def run(ctx: CheckContext) -> None:
    p = ctx.params
    with ctx.step("find accelerator nodes and how they share"):
        nodes = sharing_nodes(ctx.kube.list("v1", "Node"), p.gpu_resource_name)
        dra = {}
        if "v1" in ctx.kube.served_versions("resource.k8s.io"):
            dra = dra_shared_devices(ctx.kube.list(DRA_API, "ResourceSlice"))
        for n in nodes:
            ctx.series("nodes").add(
                node=n.name,
                simulated=n.simulated,
                resource=n.resource,
                units=n.units,
                physical=n.physical,
                replicas=n.replicas,
                strategy=n.strategy,
                mig=" ".join(sorted(n.mig)),
                sharing=n.shares_units,
                inconsistent=n.inconsistent,
            )
        advertised, reason = judge_advertised(nodes, dra)
        _record(ctx, advertised)
        if dra:
            ctx.record(
                "dra_sharing",
                Verdict.PASS,
                "DRA shared/partitionable devices: " + ", ".join(f"{d} ({c})" for d, c in sorted(dra.items())),
                required=False,
            )
        else:
            ctx.record(
                "dra_sharing",
                Verdict.NOT_APPLICABLE,
                "no DRA driver publishes partitionable or shareable devices",
                required=False,
            )
    if p.accelerator_vendor != "nvidia":
        why = f"accelerator vendor {p.accelerator_vendor!r}: only NVIDIA's sharing labels and resources are recognised"
        ctx.record("sharing_advertised", Verdict.UNKNOWN, why)
        _behaviour_all(ctx, Verdict.UNKNOWN, why)
        return
    if advertised.verdict is not Verdict.PASS:
        if reason:
            ctx.not_applicable(reason, justification(nodes, reason))
        _behaviour_all(
            ctx,
            Verdict.NOT_APPLICABLE if reason else Verdict.UNKNOWN,
            f"not run: {advertised.summary}",
        )
        return
    candidates = [n for n in nodes if n.shares_units and not n.simulated and n.ready]
    if p.gpu_sharing_node:
        candidates = [n for n in candidates if n.name == p.gpu_sharing_node]
    if not candidates:
        shared = [n for n in nodes if n.shares_units]
        if shared:
            why = (
                "time-slicing/MPS is advertised only on nodes that run no processes (simulated by kwok) or are not "
                f"Ready ({', '.join(n.name for n in shared)}): sharing cannot be demonstrated there"
            )
        else:
            why = (
                "sharing is advertised as MIG partitions or DRA shared devices only: their behavioural proof is not "
                "automated (attach nvidia-smi -L evidence of several pods on one GPU's instances)"
            )
        if p.gpu_sharing_node:
            why = f"gpu_sharing_node {p.gpu_sharing_node!r} is not a Ready, process-running node with shared units"
        _behaviour_all(ctx, Verdict.UNKNOWN, why)
        return
    run_behaviour(ctx, nodes, candidates)


def _record(ctx: CheckContext, s: SubCheck) -> None:
    ctx.record(s.id, s.verdict, s.summary, expected=s.expected, observed=s.observed, required=s.required, **s.details)


def _behaviour_all(ctx: CheckContext, verdict: Verdict, why: str) -> None:
    for sub in BEHAVIOURAL:
        ctx.record(sub, verdict, why)


def run_behaviour(ctx: CheckContext, nodes: list[SharingNode], candidates: list[SharingNode]) -> None:
    p = ctx.params
    with ctx.step("pick the shared node and count free units"):
        all_pods = ctx.kube.list("v1", "Pod")
        node = max(candidates, key=lambda n: (free_accelerators(n.accel(), all_pods, n.resource), n.name))
        physical = node.physical or 0
        want = physical + max(1, int(p.gpu_sharing_extra_pods))
        if want > int(p.gpu_sharing_max_pods):
            why = (
                f"{node.name} has {physical} GPUs: proving sharing takes {want} pods, more than gpu_sharing_max_pods "
                f"({p.gpu_sharing_max_pods})"
            )
            _behaviour_all(ctx, Verdict.UNKNOWN, why)
            return
        free = (
            wait_free_accelerators(ctx.kube, node.accel(), want, p)
            if node.resource == p.gpu_resource_name
            else (free_accelerators(node.accel(), all_pods, node.resource))
        )
        ctx.metric(
            "behaviour_plan", {"node": node.name, "physical": physical, "units": node.units, "free": free, "pods": want}
        )
        if free < want:
            why = (
                f"only {free} of {node.units} units free on {node.name}: {want} pods (> {physical} GPUs) are needed "
                "to show that units share a GPU"
            )
            _behaviour_all(ctx, Verdict.UNKNOWN, why)
            return
    ns = ctx.namespace()
    cm = "aiconf-workloads"
    ctx.create(workloads_configmap(cm, ns, ("device_probe.py",)))
    names = [f"share-{i}" for i in range(want)]
    b = Behaviour(node.name, physical, names, node_uuids=_published_uuids(ctx, node.name))
    with ctx.step(f"run {want} pods of one unit each on {node.name}"):
        for name in names:
            ctx.create(probe_pod(name, ns, node, p, configmap=cm, hold_s=int(p.gpu_sharing_hold_s)))
        try:
            pods = ctx.kube.wait_until(
                "v1",
                "Pod",
                ns,
                lambda objs: pods_settled(objs, want),
                p.pod_start_timeout_s,
                f"{want} shared pods Running on {node.name}",
                label_selector=f"{PHASE_LABEL}=share",
                describe=lambda objs: "; ".join(f"{o['metadata']['name']}: {pod_state(o)}" for o in objs),
            )
        except WaitTimeout:
            pods = ctx.kube.list("v1", "Pod", ns, label_selector=f"{PHASE_LABEL}=share")
        by_name = {o["metadata"]["name"]: o for o in pods}
        for name in names:
            pod = by_name.get(name)
            b.states[name] = "Running" if pod is not None and _started(pod) else pod_state(pod)
    with ctx.step("read the GPU UUIDs each pod saw"):
        for name in names:
            if b.states[name] != "Running":
                continue
            doc = _read_probe(ctx, ns, name, b)
            if doc is not None:
                b.uuids[name] = list(doc.get("uuids") or [])
                ctx.save_evidence(f"probes/{name}.json", json.dumps(doc, indent=1) + "\n")
    subs = judge_behaviour(b)
    for s in subs.values():
        _record(ctx, s)
    for pod in names:
        ctx.series("pods").add(
            node=node.name,
            pod=pod,
            state=b.states.get(pod, ""),
            uuids=" ".join(b.uuids.get(pod, [])),
            problem=b.problems.get(pod, ""),
        )
    for uuid, count in sorted(b.tally().items()):
        ctx.series("tally").add(node=node.name, uuid=uuid, pods=count)
    ctx.metric("tally", b.tally())
    if all(s.verdict is Verdict.PASS for s in subs.values()):
        ctx.proves(
            f"{node.name} advertises {node.units} units of {node.resource} on {physical} GPU(s) ({node.mode}); "
            f"{want} pods requesting one unit each ran at the same time there, each saw exactly one GPU, and "
            f"{sum(1 for c in b.tally().values() if c > 1)} GPU(s) were seen by several pods at once",
        )
    ctx.does_not_prove(
        "that shared pods get a fair or guaranteed share of compute or memory (time-slicing isolates neither)",
        "that a CUDA kernel runs on the shared GPU (the probe lists devices; it runs no kernel)",
        "sharing on nodes of other types than the one tested",
    )


def _read_probe(ctx: CheckContext, ns: str, name: str, b: Behaviour) -> dict[str, Any] | None:
    p = ctx.params

    def read() -> str:
        return ctx.kube.pod_logs(name, ns, tail_lines=2000)

    try:
        text = ctx.kube.sample(
            read, 1.0, lambda t: END_MARKER in (t or ""), p.gpu_sharing_probe_timeout_s, f"the probe output of {name}"
        )
    except WaitTimeout as e:
        b.problems[name] = f"no probe output within {p.gpu_sharing_probe_timeout_s}s: {str(e.last_seen)[-200:]}"
        return None
    doc = parse_probe_log(text)
    if doc is None:
        b.problems[name] = f"the log holds no probe document: {text.strip()[-200:]}"
    return doc


def _published_uuids(ctx: CheckContext, node: str) -> list[str]:
    """GPU UUIDs a DRA driver publishes for ``node`` (device attribute ``uuid``); [] when none does."""
    if "v1" not in ctx.kube.served_versions("resource.k8s.io"):
        return []
    out = []
    for s in ctx.kube.list(DRA_API, "ResourceSlice"):
        spec = s.get("spec") or {}
        if spec.get("nodeName") != node:
            continue
        for d in spec.get("devices") or []:
            value = ((d.get("attributes") or {}).get("uuid") or {}).get("string")
            if value:
                out.append(value)
    return out
