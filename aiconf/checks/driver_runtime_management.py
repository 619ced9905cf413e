"""driver_runtime_management (KAR-0001; SHOULD in 1.35-1.36): what accelerator nodes declare about their driver and
runtime is verifiable, and matches what a workload on each node actually finds.

The check reads what the platform declares (GPU Feature Discovery labels ``nvidia.com/cuda.driver.*`` /
``nvidia.com/cuda.runtime.*``, DRA ResourceSlice device attributes ``driverVersion`` / ``cudaDriverVersion``, an
optional ``driver_version_label``), looks for the installer (GPU Operator ClusterPolicy and its DaemonSets) and the
RuntimeClasses, then runs one probe pod per accelerator node that runs processes. The probe requests one accelerator
through the device plugin (so the runtime injects the driver's tooling as it would for any workload), runs
``nvidia-smi --query-gpu=driver_version,...`` through :mod:`aiconf.workloads.device_probe` (which also asks NVML when
its library loads) and plain ``nvidia-smi`` (for the CUDA version), and prints it to its log.

What each sub-check proves:

* ``accelerator_nodes`` (informational): which accelerator nodes exist, which are simulated (kwok: no processes, so
  only their declared side is known and they are left out of the verdict) and which were probed. No accelerator
  node: NOT_APPLICABLE.
* ``versions_declared`` (required): every accelerator node declares its driver version through a verifiable
  mechanism (labels or DRA attributes). A node that declares nothing is UNKNOWN: nothing can be verified there.
* ``installer_ready`` (required): a GPU Operator ClusterPolicy is ``ready`` and its driver, toolkit, device plugin
  and validator DaemonSets have every pod Ready; FAIL when one is not; NOT_APPLICABLE when no installer is found
  (drivers baked into the node image: the declared-vs-actual comparison is then the evidence).
* ``runtime_class`` (required when ``runtime_class_name`` is set): the RuntimeClass exists (the probes use it);
  otherwise informational: the RuntimeClasses present.
* ``actual_versions_read`` (required): on every probed node the probe pod ran with one accelerator and read a driver
  version. A probe that cannot run or reads nothing is UNKNOWN (never PASS); a vendor without a probe is UNKNOWN.
* ``declared_matches_actual`` (required): on every probed node each declared driver and CUDA version equals what the
  probe read (numeric components compared). One mismatch is FAIL; declared-only nodes never count as a match, and
  with no node compared the sub-check is UNKNOWN.
* ``dra_declares_versions`` (informational): the forward-looking clause: DRA devices carry the driver version.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from aiconf.checks.accelerator_metrics import (
    WORKLOAD_DIR,
    AccelNode,
    accelerator_nodes,
    load_pod,
    quantity,
    workloads_configmap,
)
from aiconf.checks.secure_accelerator_access import _pod_state
from aiconf.context import CheckContext
from aiconf.errors import WaitTimeout
from aiconf.model import SubCheck, Verdict
from aiconf.registry import check

SUBCHECKS = (
    "accelerator_nodes",
    "versions_declared",
    "installer_ready",
    "runtime_class",
    "actual_versions_read",
    "declared_matches_actual",
    "dra_declares_versions",
)
DRA_API = "resource.k8s.io/v1"
#: GPU Feature Discovery's labels: the driver version (despite the name) and the CUDA driver API version.
DRIVER_LABELS = ("nvidia.com/cuda.driver.major", "nvidia.com/cuda.driver.minor", "nvidia.com/cuda.driver.rev")
DRIVER_FULL_LABEL = "nvidia.com/cuda.driver-version.full"
CUDA_LABELS = ("nvidia.com/cuda.runtime.major", "nvidia.com/cuda.runtime.minor")
CUDA_FULL_LABEL = "nvidia.com/cuda.runtime-version.full"
#: NVIDIA's DRA driver publishes these device attributes (version type).
DRA_DRIVER_ATTR = "driverVersion"
DRA_CUDA_ATTR = "cudaDriverVersion"
#: The GPU Operator's DaemonSets that install or validate the driver and the runtime (name prefixes: the driver's
#: carries the OS in its name in some modes).
OPERATOR_DAEMONSETS = (
    "nvidia-driver-daemonset",
    "nvidia-container-toolkit-daemonset",
    "nvidia-device-plugin-daemonset",
    "nvidia-operator-validator",
    "gpu-feature-discovery",
)
#: Extended resources of accelerators no probe here understands (their nodes are UNKNOWN).
OTHER_VENDOR_RESOURCES = (
    "amd.com/gpu",
    "gpu.intel.com/i915",
    "gpu.intel.com/xe",
    "habana.ai/gaudi",
    "aws.amazon.com/neuron",
    "aws.amazon.com/neuroncore",
    "google.com/tpu",
)
PROBE_LABEL = "aiconf.io/driver-probe"
BEGIN, SMI, END = "AICONF-DRIVER-PROBE-BEGIN", "AICONF-DRIVER-PROBE-SMI", "AICONF-DRIVER-PROBE-END"
SMI_QUERY = "nvidia-smi --query-gpu=driver_version,name,uuid --format=csv,noheader"
#: sh, not Python: an image without python3 still reports what plain nvidia-smi says.
LAUNCHER = (
    f'echo "{BEGIN}"\n'
    "if command -v python3 >/dev/null 2>&1; then\n"
    f'  python3 {WORKLOAD_DIR}/device_probe.py --label driver-probe --no-cuda --smi "{SMI_QUERY}"\n'
    "else\n"
    '  echo \'{"error": "no python3 in the probe image: nvidia-smi output only"}\'\n'
    "fi\n"
    f'echo "{SMI}"\n'
    "nvidia-smi 2>&1\n"
    f'echo "{END} rc=$?"\n'
)
VERSION_RE = re.compile(r"^\s*(\d+(?:\.\d+)+)")


# --- versions (pure) -------------------------------------------------------------------------------------------------


def parse_version(text: Any) -> tuple[int, ...] | None:
    """``"580.95.05"`` -> ``(580, 95, 5)``; None unless it starts with at least major.minor."""
    m = VERSION_RE.match(str(text or ""))
    return tuple(int(x) for x in m.group(1).split(".")) if m else None


def versions_match(declared: str, actual: str) -> bool | None:
    """Equal on the components both give (at least major.minor), extra components zero. None: not comparable."""
    a, b = parse_version(declared), parse_version(actual)
    if a is None or b is None:
        return None
    n = min(len(a), len(b))
    if a[:n] != b[:n]:
        return False
    # "13.0.0" declared vs "13.0" read is equal; "580.95" declared vs "580.95.05" read is equal on what was declared.
    return all(x == 0 for x in a[n:]) or len(a) < len(b)


# --- declared side (pure) --------------------------------------------------------------------------------------------


@dataclass
class Declared:
    """What one node declares: ``{field: {source: value}}`` with field ``driver``/``cuda``."""

    node: str
    values: dict[str, dict[str, str]] = field(default_factory=dict)

    def add(self, fld: str, source: str, value: str) -> None:
        if value:
            self.values.setdefault(fld, {})[source] = value

    def has_driver(self) -> bool:
        return bool(self.values.get("driver"))


def label_declarations(labels: dict[str, str], extra_label: str = "") -> dict[str, str]:
    """``{"driver": ..., "cuda": ...}`` from GFD labels (full-version labels first) and ``extra_label``."""
    out: dict[str, str] = {}
    if labels.get(DRIVER_FULL_LABEL):
        out["driver"] = labels[DRIVER_FULL_LABEL]
    elif labels.get(DRIVER_LABELS[0]) and labels.get(DRIVER_LABELS[1]):
        out["driver"] = ".".join(labels[k] for k in DRIVER_LABELS if labels.get(k))
    if labels.get(CUDA_FULL_LABEL):
        out["cuda"] = labels[CUDA_FULL_LABEL]
    elif all(labels.get(k) for k in CUDA_LABELS):
        out["cuda"] = ".".join(labels[k] for k in CUDA_LABELS)
    if extra_label and labels.get(extra_label):
        out["driver_extra"] = labels[extra_label]
    return out


def attribute_value(attr: Any) -> str:
    """A DRA attribute's value (``{"version": "1.2.3"}``, ``{"string": ...}``, ``{"int": ...}``) as text."""
    if not isinstance(attr, dict):
        return ""
    for key in ("version", "string", "int", "bool"):
        if key in attr:
            return str(attr[key])
    return ""


def device_attributes(device: dict[str, Any]) -> dict[str, str]:
    """A ResourceSlice device's attributes, keys without their domain (``gpu.nvidia.com/driverVersion`` ->
    ``driverVersion``), values as text (v1 flat devices and v1beta1 ``basic`` ones)."""
    body = device.get("basic") if isinstance(device.get("basic"), dict) else device
    return {k.rsplit("/", 1)[-1]: attribute_value(v) for k, v in (body.get("attributes") or {}).items()}


def dra_declarations(slices: list[dict[str, Any]]) -> dict[str, dict[str, set[str]]]:
    """``{node: {"driver": {versions}, "cuda": {versions}}}`` from node-local ResourceSlices' device attributes."""
    out: dict[str, dict[str, set[str]]] = {}
    for s in slices:
        spec = s.get("spec") or {}
        node = spec.get("nodeName")
        if not node:
            continue
        for d in spec.get("devices") or []:
            attrs = device_attributes(d)
            for fld, key in (("driver", DRA_DRIVER_ATTR), ("cuda", DRA_CUDA_ATTR)):
                if attrs.get(key):
                    out.setdefault(node, {}).setdefault(fld, set()).add(attrs[key])
    return out


def declarations(nodes: list[AccelNode], slices: list[dict[str, Any]], extra_label: str = "") -> dict[str, Declared]:
    dra = dra_declarations(slices)
    out = {}
    for n in nodes:
        d = Declared(n.name)
        labelled = label_declarations(n.labels, extra_label)
        d.add("driver", "label", labelled.get("driver", ""))
        d.add("driver", f"label {extra_label}", labelled.get("driver_extra", ""))
        d.add("cuda", "label", labelled.get("cuda", ""))
        for fld, values in dra.get(n.name, {}).items():
            d.add(fld, "DRA", ",".join(sorted(values)))
        out[n.name] = d
    return out


# --- actual side (pure) ----------------------------------------------------------------------------------------------


@dataclass
class Reading:
    """What the probe on one node read."""

    node: str
    driver: str | None = None
    cuda: str | None = None
    product: str = ""
    devices: list[tuple[str, str]] = field(default_factory=list)  #: (name, UUID) of each accelerator it saw
    sources: dict[str, str] = field(default_factory=dict)  #: where each driver reading came from
    simulated: bool = False
    problem: str = ""  #: why no driver version was read
    raw: dict[str, Any] = field(default_factory=dict)


def parse_probe_log(node: str, text: str) -> Reading | None:
    """The probe's reading from its log; None while the end marker is not there."""
    text = text or ""
    if END not in text:
        return None
    head, _, rest = text.partition(SMI)
    if not rest:  # the SMI marker is missing: the launcher broke in between
        return Reading(node, problem=f"the probe output is incomplete: {text.strip()[-300:]}")
    smi_text = rest.partition(END)[0]
    body = head.partition(BEGIN)[2]
    doc: dict[str, Any] = {}
    start, stop = body.find("{"), body.rfind("}")
    if 0 <= start < stop:
        try:
            doc = json.loads(body[start : stop + 1])
        except ValueError:
            doc = {"error": f"unreadable probe document: {body.strip()[:200]}"}
    r = Reading(node, raw={"probe": doc, "nvidia_smi": smi_text.strip()[-4000:]})
    smi = doc.get("smi") or {}
    if smi.get("rc") == 0:
        for line in (smi.get("stdout") or "").splitlines():
            cols = [c.strip() for c in line.split(",")]
            if len(cols) >= 3 and parse_version(cols[0]):
                r.sources.setdefault("nvidia-smi --query-gpu", cols[0])
                r.devices.append((cols[1], cols[2]))
    nvml = doc.get("nvml") or {}
    if nvml.get("driver_version"):
        r.sources["NVML"] = str(nvml["driver_version"])
        if not r.devices:
            r.devices = [(d.get("name", ""), d.get("uuid", "")) for d in nvml.get("devices") or [] if d.get("uuid")]
    r.product = r.devices[0][0] if r.devices else ""
    m = re.search(r"Driver Version:\s*([0-9][0-9.]*)", smi_text)
    if m:
        r.sources["nvidia-smi"] = m.group(1)
    m = re.search(r"CUDA Version:\s*([0-9][0-9.]*)", smi_text)
    if m:
        r.cuda = m.group(1)
    r.simulated = "SIMULATED" in smi_text
    if r.sources:
        r.driver = next(iter(r.sources.values()))
        if len({parse_version(v) for v in r.sources.values()}) > 1:
            r.problem = f"the driver version sources disagree: {r.sources}"
    else:
        why = [doc.get("error", "")] if doc.get("error") else []
        if smi.get("found") is False:
            why.append("nvidia-smi is not in the container")
        elif smi.get("rc") not in (None, 0):
            why.append(
                f"nvidia-smi --query-gpu exited {smi.get('rc')}: {(smi.get('stdout') or smi.get('stderr') or '').strip()[:150]}"
            )
        if nvml and not nvml.get("loaded"):
            why.append("NVML did not load")
        why.append(f"nvidia-smi printed: {smi_text.strip()[:200] or '(nothing)'}")
        r.problem = "no driver version read: " + "; ".join(w for w in why if w)
    return r


# --- judging (pure) --------------------------------------------------------------------------------------------------


@dataclass
class Row:
    """One cell of the node x declared x actual table."""

    node: str
    simulated: bool
    field: str
    source: str
    declared: str
    actual: str
    match: bool | None  #: None: not compared (declared-only, not read, or not declared)
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "simulated": self.simulated,
            "field": self.field,
            "source": self.source,
            "declared": self.declared,
            "actual": self.actual,
            "match": "" if self.match is None else self.match,
            "note": self.note,
        }


def comparison_rows(nodes: list[AccelNode], declared: dict[str, Declared], readings: dict[str, Reading]) -> list[Row]:
    rows: list[Row] = []
    for n in nodes:
        d = declared.get(n.name) or Declared(n.name)
        r = readings.get(n.name)
        for fld in ("driver", "cuda"):
            actual = (r.driver if fld == "driver" else r.cuda) if r else None
            sources = d.values.get(fld) or {}
            if not sources:
                note = "nothing declared" + ("" if actual else "; not read")
                rows.append(Row(n.name, n.simulated, fld, "-", "", actual or "", None, note))
                continue
            for source, value in sources.items():
                if n.simulated:
                    note = "declared only: simulated node, no probe can run"
                    rows.append(Row(n.name, True, fld, source, value, "", None, note))
                elif not actual:
                    why = r.problem if r else "not probed"
                    rows.append(Row(n.name, False, fld, source, value, "", None, why))
                else:
                    parts = [versions_match(v, actual) for v in value.split(",")]
                    match = None if None in parts else all(parts)
                    rows.append(
                        Row(
                            n.name,
                            False,
                            fld,
                            source,
                            value,
                            actual,
                            match,
                            "" if match is not None else "not a version",
                        )
                    )
    return rows


def judge_declared(nodes: list[AccelNode], declared: dict[str, Declared]) -> SubCheck:
    missing = [n.name for n in nodes if not declared[n.name].has_driver()]
    observed = "; ".join(
        f"{n.name}: " + (", ".join(f"{s}={v}" for s, v in declared[n.name].values.get("driver", {}).items()) or "none")
        for n in nodes
    )
    expected = "every accelerator node declares its driver version (GFD labels or DRA driverVersion)"
    if not missing:
        sources = sorted({s for d in declared.values() for s in d.values.get("driver", {})})
        return SubCheck(
            "versions_declared",
            Verdict.PASS,
            f"{len(nodes)} accelerator node(s) declare their driver version ({', '.join(sources)})",
            expected=expected,
            observed=observed,
        )
    return SubCheck(
        "versions_declared",
        Verdict.UNKNOWN,
        f"{len(missing)} of {len(nodes)} accelerator node(s) declare no driver version ({', '.join(missing[:10])}): "
        "nothing to verify there; attach how the platform records driver versions",
        expected=expected,
        observed=observed,
        details={"undeclared": missing},
    )


def judge_actual(probed: list[str], readings: dict[str, Reading], problems: dict[str, str]) -> SubCheck:
    expected = "the probe on every probed node reads a driver version"
    if not probed:
        return SubCheck(
            "actual_versions_read",
            Verdict.UNKNOWN,
            "no accelerator node that runs processes was probed: the actual versions are unknown",
            expected=expected,
        )
    bad = {n: problems.get(n) or (readings[n].problem if n in readings else "no reading") for n in probed}
    bad = {n: why for n, why in bad.items() if n not in readings or not readings[n].driver or readings[n].problem}
    observed = "; ".join(
        f"{n}: driver {readings[n].driver} cuda {readings[n].cuda or '?'} ({', '.join(readings[n].sources)})"
        if n in readings and readings[n].driver
        else f"{n}: {bad.get(n, '')}"
        for n in probed
    )
    if bad:
        return SubCheck(
            "actual_versions_read",
            Verdict.UNKNOWN,
            "; ".join(f"{n}: {why}" for n, why in bad.items())[:600],
            expected=expected,
            observed=observed,
            details={"problems": bad},
        )
    return SubCheck(
        "actual_versions_read",
        Verdict.PASS,
        f"driver version read on {len(probed)} node(s): " + ", ".join(f"{n}={readings[n].driver}" for n in probed),
        expected=expected,
        observed=observed,
    )


def judge_match(rows: list[Row], probed: list[str]) -> SubCheck:
    expected = "each declared driver/CUDA version equals what a workload on the node reads"
    compared = [r for r in rows if r.match is not None]
    mismatched = [r for r in compared if r.match is False]
    observed = "; ".join(
        f"{r.node} {r.field} ({r.source}): declared {r.declared or '-'} actual {r.actual or '-'}"
        for r in rows
        if not r.simulated
    )[:2000]
    if mismatched:
        return SubCheck(
            "declared_matches_actual",
            Verdict.FAIL,
            "; ".join(
                f"{r.node}: {r.field} declared {r.declared} ({r.source}) but the node runs {r.actual}"
                for r in mismatched
            ),
            expected=expected,
            observed=observed,
            details={"mismatches": [r.as_dict() for r in mismatched]},
        )
    uncompared = sorted({r.node for r in rows if r.node in probed and r.field == "driver" and r.match is None})
    if not compared or uncompared:
        why = (
            f"probed node(s) {', '.join(uncompared)} could not be compared (nothing declared, or nothing read)"
            if uncompared
            else "no node has both a declared and an actual driver version (declared-only nodes never count)"
        )
        return SubCheck("declared_matches_actual", Verdict.UNKNOWN, why, expected=expected, observed=observed)
    nodes = sorted({r.node for r in compared})
    return SubCheck(
        "declared_matches_actual",
        Verdict.PASS,
        f"{len(compared)} declared value(s) on {', '.join(nodes)} equal what the probes read",
        expected=expected,
        observed=observed,
    )


def judge_installer(policies: list[dict[str, Any]], daemonsets: list[dict[str, Any]]) -> SubCheck:
    """``installer_ready`` from GPU Operator ClusterPolicies and its DaemonSets."""
    found, not_ready = [], []
    for cp in policies:
        state = (cp.get("status") or {}).get("state", "")
        found.append(f"ClusterPolicy/{cp['metadata']['name']} state={state or '?'}")
        if state != "ready":
            not_ready.append(f"ClusterPolicy/{cp['metadata']['name']} is {state or 'without a state'}")
    for ds in daemonsets:
        name = ds["metadata"]["name"]
        if not name.startswith(OPERATOR_DAEMONSETS):
            continue
        st = ds.get("status") or {}
        desired, ready = int(st.get("desiredNumberScheduled", 0)), int(st.get("numberReady", 0))
        found.append(f"{ds['metadata'].get('namespace')}/{name} {ready}/{desired} Ready")
        if ready < desired:
            not_ready.append(f"DaemonSet {name}: {ready}/{desired} Ready")
    expected = "GPU Operator ClusterPolicy ready and its driver/toolkit/plugin/validator DaemonSets Ready"
    if not found:
        return SubCheck(
            "installer_ready",
            Verdict.NOT_APPLICABLE,
            "no GPU Operator found (no ClusterPolicy, none of its DaemonSets): drivers come with the node image or "
            "another installer; the declared-vs-actual comparison is the evidence",
            expected=expected,
            observed="none",
        )
    if not_ready:
        return SubCheck(
            "installer_ready", Verdict.FAIL, "; ".join(not_ready), expected=expected, observed="; ".join(found)
        )
    return SubCheck("installer_ready", Verdict.PASS, "; ".join(found), expected=expected, observed="; ".join(found))


def plan_probes(
    nodes: list[AccelNode], declared: dict[str, Declared], max_nodes: int
) -> tuple[list[AccelNode], list[str]]:
    """Nodes to probe (non-simulated, Ready), one per distinct declaration first, at most ``max_nodes``; and the
    real nodes left out."""
    real = [n for n in nodes if not n.simulated and n.ready]
    groups: dict[Any, list[AccelNode]] = {}
    for n in real:
        key = (n.labels.get("nvidia.com/gpu.product", ""), json.dumps(declared[n.name].values, sort_keys=True))
        groups.setdefault(key, []).append(n)
    order = [g[0] for g in groups.values()] + [n for g in groups.values() for n in g[1:]]
    limit = max_nodes if max_nodes > 0 else len(order)
    return order[:limit], [n.name for n in order[limit:]]


# --- manifests (pure) ------------------------------------------------------------------------------------------------


def probe_pod(name: str, namespace: str, node: AccelNode, p: Any, configmap: str) -> dict[str, Any]:
    """A pod pinned to ``node`` holding one accelerator (requested like any workload), run once.

    Built on accelerator_metrics' load pod (pinned, tolerating the node's taints, restricted: reading a version needs
    no privilege, device nodes are 0666); only the image, the command and the resources differ.
    """
    pod = load_pod(name, namespace, node, p, simulated=True, configmap=configmap)
    pod["metadata"]["labels"] = {PROBE_LABEL: "true"}
    pod["spec"]["terminationGracePeriodSeconds"] = 1
    container = pod["spec"]["containers"][0]
    container.update(
        name="probe",
        image=p.driver_probe_image or p.image_python,
        command=["sh", "-c", LAUNCHER],
        resources={
            "requests": {"cpu": "10m", "memory": "32Mi"},
            "limits": {"memory": "256Mi", p.gpu_resource_name: "1"},
        },
    )
    return pod


def other_vendor_nodes(nodes: list[dict[str, Any]]) -> dict[str, list[str]]:
    """``{node: [resources]}`` of nodes advertising accelerators of vendors no probe here understands."""
    out: dict[str, list[str]] = {}
    for n in nodes:
        alloc = (n.get("status") or {}).get("allocatable") or {}
        found = [r for r in alloc if r.startswith(OTHER_VENDOR_RESOURCES) and quantity(alloc[r]) > 0]
        if found:
            out[n["metadata"]["name"]] = sorted(found)
    return out


# --- chart -----------------------------------------------------------------------------------------------------------

#: cell state -> colour
STATE_COLOURS = {"match": "#1a7f37", "mismatch": "#cf222e", "declared only": "#9a6700", "not declared": "#d0d7de"}


def cell_state(rows: list[dict[str, Any]]) -> str:
    if not rows or all(not r.get("declared") for r in rows):
        return "not declared"
    matches = [str(r.get("match")) for r in rows]
    if "False" in matches:
        return "mismatch"
    if matches and all(m == "True" for m in matches):
        return "match"
    return "declared only"


def draw_versions(ax: Any, result: Any) -> None:
    """Node x (field, source) grid: green match, red mismatch, amber declared but not verified, grey nothing
    declared; each cell says declared -> actual."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    from aiconf import display

    frame = display.series(result, "versions")
    if frame.empty:
        ax.text(0.5, 0.5, "no accelerator node", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    frame = frame.astype(object).where(frame.notna(), "")
    nodes = list(dict.fromkeys(frame["node"]))
    cols = ["driver", "cuda"]
    states = list(STATE_COLOURS)
    grid = []
    for n in nodes:
        row = []
        for c in cols:
            sub = frame[(frame["node"] == n) & (frame["field"] == c)].to_dict("records")
            state = cell_state(sub)
            row.append(states.index(state))
            text = "\n".join(
                f"{r['source']}: {r['declared'] or '-'} -> {r['actual'] or '?'}" for r in sub if r.get("declared")
            ) or (f"actual {sub[0]['actual']}" if sub and sub[0].get("actual") else "-")
            ax.text(cols.index(c), nodes.index(n), text, ha="center", va="center", fontsize=7)
        grid.append(row)
    ax.imshow(
        grid,
        cmap=ListedColormap([STATE_COLOURS[s] for s in states]),
        vmin=0,
        vmax=len(states) - 1,
        aspect="auto",
        alpha=0.55,
    )
    ax.set_xticks(range(len(cols)), ["driver version", "CUDA version"])
    sim = dict(zip(frame["node"], frame["simulated"], strict=False))
    ax.set_yticks(
        range(len(nodes)), [f"{n} (simulated)" if str(sim.get(n)) == "True" else n for n in nodes], fontsize=8
    )
    ax.legend(
        handles=[Patch(color=STATE_COLOURS[s], alpha=0.55, label=s) for s in states],
        loc="upper left",
        bbox_to_anchor=(1.01, 1),
        fontsize=8,
    )
    ax.set_title("declared -> actual, per node")


# --- preflight -------------------------------------------------------------------------------------------------------


def preflight(kube: Any, params: Any) -> tuple[bool, str]:
    """Read-only: accelerator nodes that run processes (the probe needs one with a free accelerator)."""
    nodes = accelerator_nodes(kube.list("v1", "Node"), params.gpu_resource_name)
    if not nodes:
        return False, f"no node advertises {params.gpu_resource_name}"
    real = [n for n in nodes if not n.simulated]
    if not real:
        return False, f"all {len(nodes)} accelerator nodes are simulated (kwok): only declared versions can be read"
    return params.accelerator_vendor == "nvidia", f"{len(real)} accelerator node(s) to probe" + (
        "" if params.accelerator_vendor == "nvidia" else f" (no probe for vendor {params.accelerator_vendor})"
    )


# --- the check -------------------------------------------------------------------------------------------------------


@check("driver_runtime_management", subchecks=SUBCHECKS, charts={"versions": draw_versions}, preflight=preflight)
def run(ctx: CheckContext) -> None:
    p = ctx.params
    with ctx.step("find accelerator nodes"):
        node_objs = ctx.kube.list("v1", "Node")
        nodes = accelerator_nodes(node_objs, p.gpu_resource_name)
        others = other_vendor_nodes(node_objs)
        if not nodes and not others:
            why = f"no node advertises {p.gpu_resource_name} or another accelerator: there is no driver to manage"
            ctx.not_applicable("no_accelerators", why)
            for sub in SUBCHECKS:
                ctx.record(
                    sub, Verdict.NOT_APPLICABLE, why, required=sub not in ("accelerator_nodes", "dra_declares_versions")
                )
            return
        simulated = [n.name for n in nodes if n.simulated]
        if simulated:
            ctx.note(
                f"{len(simulated)} simulated (kwok) accelerator node(s) run no processes: only what they declare is "
                f"shown, and they are left out of the verdict ({', '.join(simulated)})"
            )

    with ctx.step("read what the platform declares"):
        slices: list[dict[str, Any]] = []
        if "v1" in ctx.kube.served_versions("resource.k8s.io"):
            slices = ctx.kube.list(DRA_API, "ResourceSlice")
        declared = declarations(nodes, slices, p.driver_version_label)
        if nodes:
            decl = judge_declared(nodes, declared)
            ctx.record(decl.id, **_fields(decl))
        dra_nodes = dra_declarations(slices)
        _record_dra(ctx, nodes, slices, dra_nodes)
        policies = (
            ctx.kube.list("nvidia.com/v1", "ClusterPolicy")
            if ctx.kube.has_kind("nvidia.com/v1", "ClusterPolicy")
            else []
        )
        daemonsets = ctx.kube.list("apps/v1", "DaemonSet", p.gpu_operator_namespace or None)
        inst = judge_installer(policies, daemonsets)
        ctx.record(inst.id, **_fields(inst))
        _record_runtime_class(ctx)

    other_why = (
        "no driver probe is configured for accelerators "
        + ", ".join(f"{n}: {'/'.join(r)}" for n, r in others.items())
        + " (the probe reads NVIDIA's tooling): attach manual evidence for them"
    )
    if p.accelerator_vendor != "nvidia" or not nodes:
        why = (
            f"no driver probe is configured for accelerator vendor {p.accelerator_vendor!r} (the probe reads "
            "NVIDIA's tooling): attach manual evidence"
            if nodes
            else other_why
        )
        if not nodes:
            ctx.record("versions_declared", Verdict.UNKNOWN, why)
        ctx.record("accelerator_nodes", Verdict.UNKNOWN, why, required=False)
        ctx.record("actual_versions_read", Verdict.UNKNOWN, why)
        ctx.record("declared_matches_actual", Verdict.UNKNOWN, why)
        _save_rows(ctx, comparison_rows(nodes, declared, {}))
        return

    to_probe, left_out = plan_probes(nodes, declared, p.driver_probe_max_nodes)
    ctx.record(
        "accelerator_nodes",
        Verdict.PASS if to_probe else Verdict.UNKNOWN,
        (f"probing {', '.join(n.name for n in to_probe)}" if to_probe else "no accelerator node runs processes")
        + (f"; {len(simulated)} simulated node(s): declared side only" if simulated else "")
        + (f"; {len(left_out)} node(s) not probed (driver_probe_max_nodes)" if left_out else ""),
        expected="accelerator nodes that run processes, probed one each",
        observed=", ".join(f"{n.name} ({'simulated' if n.simulated else 'real'})" for n in nodes),
        required=False,
        probed=[n.name for n in to_probe],
        left_out=left_out,
    )
    if left_out:
        ctx.note(
            f"{len(left_out)} accelerator node(s) were not probed (driver_probe_max_nodes): {', '.join(left_out[:20])}"
        )

    readings: dict[str, Reading] = {}
    problems: dict[str, str] = {}
    if to_probe:
        readings, problems = _probe(ctx, to_probe)
    probed = [n.name for n in to_probe]
    rows = comparison_rows(nodes, declared, readings)
    actual = judge_actual(probed, readings, problems)
    if others:  # the NVIDIA nodes were probed; the other vendors' cannot be
        actual = SubCheck(
            actual.id,
            Verdict.UNKNOWN,
            f"{other_why}; {actual.verdict}: {actual.summary}",
            actual.expected,
            actual.observed,
            details=actual.details,
        )
    for sub in (actual, judge_match(rows, probed)):
        ctx.record(sub.id, **_fields(sub))
    _save_rows(ctx, rows)
    if any(r.simulated for r in readings.values()):
        ctx.note(
            "the probed accelerators are the sandbox's SIMULATED GPUs: the actual versions come from its fake "
            "nvidia-smi (no driver behind it); the mechanism (labels, probe pod, comparison) is what is shown"
        )
    if ctx.result.subcheck("declared_matches_actual").verdict is Verdict.PASS:
        ctx.proves(
            "on " + ", ".join(probed) + ", a pod granted one accelerator through the device plugin found the driver "
            "(and CUDA) version the node declares: the declaration is verifiable and true there"
        )
    ctx.does_not_prove(
        "that the driver is compatible with every CUDA application or framework version the platform offers",
        "anything about nodes that were not probed (simulated nodes, nodes over driver_probe_max_nodes)",
    )


def _fields(sub: SubCheck) -> dict[str, Any]:
    return {
        "verdict": sub.verdict,
        "summary": sub.summary,
        "expected": sub.expected,
        "observed": sub.observed,
        "required": sub.required,
        **sub.details,
    }


def _record_dra(ctx: CheckContext, nodes: list[AccelNode], slices: list[dict[str, Any]], dra_nodes: dict) -> None:
    names = {n.name for n in nodes}
    with_versions = sorted(n for n in dra_nodes if n in names and dra_nodes[n].get("driver"))
    if not slices:
        ctx.record(
            "dra_declares_versions",
            Verdict.NOT_APPLICABLE,
            "no DRA ResourceSlice is published: driver versions are declared through labels only",
            required=False,
        )
    elif with_versions:
        ctx.record(
            "dra_declares_versions",
            Verdict.PASS,
            f"DRA devices declare {DRA_DRIVER_ATTR} on {', '.join(with_versions)}",
            required=False,
            nodes=with_versions,
        )
    else:
        ctx.record(
            "dra_declares_versions",
            Verdict.UNKNOWN,
            f"ResourceSlices exist but no device carries {DRA_DRIVER_ATTR}",
            required=False,
        )


def _record_runtime_class(ctx: CheckContext) -> None:
    p = ctx.params
    classes = ctx.kube.list("node.k8s.io/v1", "RuntimeClass")
    listing = ", ".join(f"{c['metadata']['name']} (handler {c.get('handler', '?')})" for c in classes) or "none"
    if p.runtime_class_name:
        found = any(c["metadata"]["name"] == p.runtime_class_name for c in classes)
        ctx.record(
            "runtime_class",
            found,
            f"RuntimeClass {p.runtime_class_name} " + ("exists; the probes run with it" if found else "does not exist"),
            expected=f"RuntimeClass {p.runtime_class_name}",
            observed=listing,
        )
        return
    ctx.record(
        "runtime_class",
        Verdict.NOT_APPLICABLE,
        f"no runtime_class_name configured: accelerator pods use the default runtime handler (RuntimeClasses: {listing})",
        observed=listing,
        required=False,
    )


def _probe(ctx: CheckContext, nodes: list[AccelNode]) -> tuple[dict[str, Reading], dict[str, str]]:
    """One probe pod per node, all at once; the readings from their logs."""
    p = ctx.params
    ns = ctx.namespace()
    cm = ctx.create(workloads_configmap("aiconf-device-probe", ns, ("device_probe.py",)))["metadata"]["name"]
    names = {}
    with ctx.step(f"probe {len(nodes)} node(s)"):
        for i, n in enumerate(nodes):
            name = f"driver-probe-{i}"
            ctx.create(probe_pod(name, ns, n, p, cm))
            names[name] = n.name
        done = ("Succeeded", "Failed")
        try:
            pods = ctx.kube.wait_until(
                "v1",
                "Pod",
                ns,
                lambda objs: (
                    len(objs) == len(names) and all((o.get("status") or {}).get("phase") in done for o in objs)
                ),
                p.driver_probe_timeout_s,
                "the driver probes to finish",
                label_selector=f"{PROBE_LABEL}=true",
            )
        except WaitTimeout:
            pods = ctx.kube.list("v1", "Pod", ns, label_selector=f"{PROBE_LABEL}=true")
    readings: dict[str, Reading] = {}
    problems: dict[str, str] = {}
    by_name = {o["metadata"]["name"]: o for o in pods}
    for name, node in names.items():
        pod = by_name.get(name)
        phase = ((pod or {}).get("status") or {}).get("phase", "absent")
        if phase not in ("Succeeded", "Failed"):
            problems[node] = f"the probe pod did not finish within {p.driver_probe_timeout_s}s ({_pod_state(pod)})"
            continue
        text = ctx.kube.pod_logs(name, ns, tail_lines=2000)
        reading = parse_probe_log(node, text)
        if reading is None:
            problems[node] = f"the probe pod ended {phase} without its output: {text.strip()[-300:]}"
            continue
        readings[node] = reading
        ctx.save_evidence(f"probes/{node}.json", json.dumps(reading.raw, indent=1) + "\n")
    return readings, problems


def _save_rows(ctx: CheckContext, rows: list[Row]) -> None:
    series = ctx.series("versions")
    for r in rows:
        series.add(**r.as_dict())
    ctx.metric("versions", [r.as_dict() for r in rows])
