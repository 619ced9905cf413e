"""Accelerator metrics: parse an exporter's Prometheus exposition and judge it per GPU (``accelerator_metrics``).

Pure functions over scraped text. The check scrapes the exporter on each GPU node; this module answers:

- :func:`parse_exposition`: the text through ``prometheus_client``'s parser (a real exposition parser), plus the
  format problems that parser tolerates (duplicate series, families without ``# TYPE``/``# HELP``);
- :func:`judge_exporter`, :func:`judge_format`, :func:`judge_core_metrics` (core metrics for every GPU, and the GPU
  count against the node's allocatable count), :func:`judge_should_metrics`, :func:`judge_device_labels`,
  :func:`judge_attribution`: findings as :class:`aiconf.model.SubCheck` objects the check records as they are;
- :func:`series_rows` + :func:`analyse_load_window`: a time series of scrapes around a GPU load, and whether
  utilisation and memory rose inside the load window and fell after it;
- :data:`DCGM` and :func:`name_map_from_dict`: metric names per exporter (an unrecognised exporter is UNKNOWN,
  never FAIL); :data:`OTEL_MAP` / :func:`otel_table`: DCGM names beside OpenTelemetry ``hw.*`` names;
- :func:`draw_gpu_series`, :func:`draw_presence_matrix`: the two charts (``ax``-taking, like every chart here).

Units are normalised per metric class (utilisation %, memory MiB, temperature degC, power W, energy mJ, PCIe B/s) so
a name map for another exporter only declares names and scale factors.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from aiconf.model import SubCheck, Verdict

# --- metric classes and name maps ------------------------------------------------------------------------------------

CORE = "core"
SHOULD = "should"
INFO = "info"


@dataclass(frozen=True)
class MetricClass:
    """One kind of reading (utilisation, memory used, ...) and the exposition families that carry it."""

    key: str  #: canonical class key, e.g. ``utilization``
    title: str
    tier: str  #: ``core`` (MUST per KAR-0059), ``should`` (where supported) or ``info``
    unit: str  #: the canonical unit every name's value is scaled to
    column: str  #: the column name in :func:`series_rows`
    names: tuple[tuple[str, float], ...]  #: (family name, factor to the canonical unit), preferred first


@dataclass(frozen=True)
class NameMap:
    """Metric names and per-device label keys of one exporter."""

    name: str
    classes: tuple[MetricClass, ...]
    index_label: str = "gpu"
    uuid_label: str = "UUID"
    host_label: str = "Hostname"
    model_label: str = "modelName"
    partition_labels: tuple[str, ...] = ("GPU_I_ID",)  #: MIG instance id: one device per instance
    expected_device_labels: tuple[str, ...] = ("gpu", "UUID", "modelName", "Hostname")
    attribution_labels: tuple[tuple[str, str], ...] = (("exported_pod", "exported_namespace"), ("pod", "namespace"))

    def cls(self, key: str) -> MetricClass | None:
        return next((c for c in self.classes if c.key == key), None)

    def tier(self, tier: str) -> tuple[MetricClass, ...]:
        return tuple(c for c in self.classes if c.tier == tier)

    def family_index(self) -> dict[str, tuple[MetricClass, float]]:
        return {name: (c, factor) for c in self.classes for name, factor in c.names}


def _mc(key: str, title: str, tier: str, unit: str, column: str, *names: tuple[str, float]) -> MetricClass:
    return MetricClass(key, title, tier, unit, column, tuple(names))


#: The NVIDIA DCGM exporter (requirements.md §5.1). Core per the brief: utilisation, framebuffer used and free.
DCGM = NameMap(
    name="dcgm",
    classes=(
        _mc("utilization", "GPU utilization", CORE, "%", "utilization_pct",
            ("DCGM_FI_DEV_GPU_UTIL", 1.0), ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", 100.0)),
        _mc("memory_used", "framebuffer used", CORE, "MiB", "memory_used_mib", ("DCGM_FI_DEV_FB_USED", 1.0)),
        _mc("memory_free", "framebuffer free", CORE, "MiB", "memory_free_mib", ("DCGM_FI_DEV_FB_FREE", 1.0)),
        _mc("temperature", "GPU temperature", SHOULD, "degC", "temperature_c", ("DCGM_FI_DEV_GPU_TEMP", 1.0)),
        _mc("power", "power draw", SHOULD, "W", "power_w", ("DCGM_FI_DEV_POWER_USAGE", 1.0)),
        _mc("energy", "total energy", SHOULD, "mJ", "energy_mj", ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", 1.0)),
        _mc("pcie_tx", "PCIe transmit", SHOULD, "B/s", "pcie_tx_bps",
            ("DCGM_FI_PROF_PCIE_TX_BYTES", 1.0), ("DCGM_FI_DEV_PCIE_TX_THROUGHPUT", 1024.0)),
        _mc("pcie_rx", "PCIe receive", SHOULD, "B/s", "pcie_rx_bps",
            ("DCGM_FI_PROF_PCIE_RX_BYTES", 1.0), ("DCGM_FI_DEV_PCIE_RX_THROUGHPUT", 1024.0)),
        _mc("nvlink", "NVLink traffic", SHOULD, "as reported", "nvlink",
            ("DCGM_FI_PROF_NVLINK_TX_BYTES", 1.0), ("DCGM_FI_PROF_NVLINK_RX_BYTES", 1.0),
            ("DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", 1.0)),
        _mc("sm_clock", "SM clock", INFO, "MHz", "sm_clock_mhz", ("DCGM_FI_DEV_SM_CLOCK", 1.0)),
        _mc("mem_copy_util", "memory copy utilization", INFO, "%", "mem_copy_util_pct",
            ("DCGM_FI_DEV_MEM_COPY_UTIL", 1.0)),
    ),
)

#: Classes a configured name map may name, with the tier and canonical unit it inherits from :data:`DCGM`.
KNOWN_CLASSES: dict[str, MetricClass] = {c.key: c for c in DCGM.classes}

#: Should-classes whose absence is expected on some hardware (reported, not counted as missing).
WHERE_SUPPORTED = frozenset({"nvlink"})


def name_map_from_dict(spec: Mapping[str, Any]) -> NameMap:
    """A :class:`NameMap` for another exporter, from a parameter dict.

    ``{"name": "amd", "classes": {"utilization": ["amd_gpu_gfx_activity"], "memory_used": {"gpu_vram_used_bytes":
    9.5367431640625e-07}}, "labels": {"index": "gpu_id", "uuid": "serial_number", "host": "hostname"},
    "core": ["utilization", "memory_used"]}``: a class takes a list of names (factor 1) or a name -> factor map (to
    the class's canonical unit: %, MiB, degC, W, mJ, B/s). ``core`` overrides which classes are core (the rest keep
    their :data:`DCGM` tier, core ones not listed become should). Unknown class or label keys raise ``ValueError``.
    """
    classes_spec = spec.get("classes") or {}
    unknown = sorted(set(classes_spec) - set(KNOWN_CLASSES))
    if unknown:
        raise ValueError(f"name map {spec.get('name', '?')!r}: unknown metric classes {unknown}; known: {sorted(KNOWN_CLASSES)}")
    core = spec.get("core")
    classes = []
    for key, names in classes_spec.items():
        base = KNOWN_CLASSES[key]
        pairs = tuple(names.items()) if isinstance(names, Mapping) else tuple((n, 1.0) for n in names)
        tier = base.tier
        if core is not None:
            tier = CORE if key in core else (SHOULD if base.tier == CORE else base.tier)
        classes.append(MetricClass(key, base.title, tier, base.unit, base.column, tuple((n, float(f)) for n, f in pairs)))
    labels = dict(spec.get("labels") or {})
    bad = sorted(set(labels) - {"index", "uuid", "host", "model"})
    if bad:
        raise ValueError(f"name map {spec.get('name', '?')!r}: unknown label keys {bad}; known: index, uuid, host, model")
    index = labels.get("index", "gpu")
    uuid = labels.get("uuid", "UUID")
    host = labels.get("host", "Hostname")
    model = labels.get("model", "modelName")
    return NameMap(
        name=str(spec.get("name") or "custom"),
        classes=tuple(classes),
        index_label=index,
        uuid_label=uuid,
        host_label=host,
        model_label=model,
        expected_device_labels=tuple(spec.get("expected_device_labels") or (index, uuid, model, host)),
    )


# --- parsing ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    family: str
    name: str  #: the sample name as parsed (counters come back with ``_total``)
    labels: Mapping[str, str]
    value: float


@dataclass
class Family:
    name: str
    type: str
    help: str
    samples: list[Sample] = field(default_factory=list)


@dataclass
class Exposition:
    """A parsed scrape: families by name, and what is wrong with the text."""

    families: dict[str, Family] = field(default_factory=dict)
    error: str | None = None  #: the parser's error; nothing else is trustworthy then
    problems: list[str] = field(default_factory=list)  #: format violations (make the format invalid)
    warnings: list[str] = field(default_factory=list)  #: allowed by the format but unusual (missing HELP/TYPE)
    size_bytes: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None

    def samples(self, family: str) -> list[Sample]:
        fam = self.families.get(family)
        return fam.samples if fam else []


_META = re.compile(r"^#\s*(HELP|TYPE)\s+(\S+)")


def parse_exposition(text: str) -> Exposition:
    """Parse Prometheus text exposition with ``prometheus_client.parser.text_string_to_metric_families``.

    Never raises on bad input: a parser error is kept in ``error``. Duplicate series (same name and labels twice,
    which Prometheus rejects at ingestion) are ``problems``; families without ``# TYPE`` or ``# HELP`` lines are
    ``warnings`` (the text format allows them; DCGM and prometheus_client always write both).
    """
    expo = Exposition(size_bytes=len(text.encode()))
    try:
        for fam in text_string_to_metric_families(text):
            f = expo.families.setdefault(fam.name, Family(fam.name, fam.type, fam.documentation))
            for s in fam.samples:
                f.samples.append(Sample(fam.name, s.name, dict(s.labels), float(s.value)))
    except Exception as exc:  # noqa: BLE001 - the parser raises ValueError/TypeError/IndexError/...: all are format errors
        expo.error = f"{type(exc).__name__}: {exc}"
        return expo
    declared: dict[str, set[str]] = {"HELP": set(), "TYPE": set()}
    for line in text.splitlines():
        m = _META.match(line)
        if m:
            name = m.group(2)
            declared[m.group(1)].update({name, name.removesuffix("_total")})
    for name, fam in expo.families.items():
        if name not in declared["TYPE"]:
            expo.warnings.append(f"{name}: no # TYPE line")
        if name not in declared["HELP"]:
            expo.warnings.append(f"{name}: no # HELP line")
        seen: set[tuple] = set()
        for s in fam.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            if key in seen:
                expo.problems.append(f"{s.name}{dict(s.labels)}: duplicate series")
            seen.add(key)
    if not expo.families:
        expo.problems.append("no metric families")
    return expo


# --- devices ---------------------------------------------------------------------------------------------------------


def device_key(labels: Mapping[str, str], name_map: NameMap = DCGM) -> str | None:
    """A stable per-device key from a series' labels (``[host/]gpu<i>[/mig<j>]``, or the UUID); None if absent."""
    idx = labels.get(name_map.index_label)
    uuid = labels.get(name_map.uuid_label)
    if not idx and not uuid:
        return None
    key = f"gpu{idx}" if idx else str(uuid)
    for p in name_map.partition_labels:
        if labels.get(p):
            key += f"/{p.lower()}{labels[p]}"
    host = labels.get(name_map.host_label)
    return f"{host}/{key}" if host else key


@dataclass
class DeviceReadings:
    key: str
    labels: dict[str, str] = field(default_factory=dict)  #: labels of the first series seen (identity, model)
    label_keys: set[str] = field(default_factory=set)  #: union of label keys over the device's series
    values: dict[str, tuple[str, float]] = field(default_factory=dict)  #: class -> (family, canonical value)
    attributed: set[tuple[str, str]] = field(default_factory=set)  #: (namespace, pod) seen on its series


def device_readings(expo: Exposition, name_map: NameMap = DCGM) -> tuple[dict[str, DeviceReadings], list[str]]:
    """Readings per device for every mapped family, and mapped families whose series carry no device labels."""
    index = name_map.family_index()
    devices: dict[str, DeviceReadings] = {}
    unlabelled: list[str] = []
    for fname, fam in expo.families.items():
        if fname not in index:
            continue
        mclass, factor = index[fname]
        for s in fam.samples:
            key = device_key(s.labels, name_map)
            if key is None:
                if fname not in unlabelled:
                    unlabelled.append(fname)
                continue
            dev = devices.setdefault(key, DeviceReadings(key, dict(s.labels)))
            dev.label_keys.update(k for k, v in s.labels.items() if v != "")
            # the preferred name (first in the class) wins when an exporter serves two names of one class
            prev = dev.values.get(mclass.key)
            rank = [n for n, _ in mclass.names].index(fname)
            if prev is None or [n for n, _ in mclass.names].index(prev[0]) > rank:
                dev.values[mclass.key] = (fname, s.value * factor)
            for pod_label, ns_label in name_map.attribution_labels:
                if s.labels.get(pod_label):
                    dev.attributed.add((s.labels.get(ns_label, ""), s.labels[pod_label]))
    return dict(sorted(devices.items(), key=lambda kv: _natural(kv[0]))), unlabelled


def _natural(text: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


# --- judgements ------------------------------------------------------------------------------------------------------


def recognise_exporter(expo: Exposition, name_maps: Sequence[NameMap] = (DCGM,)) -> NameMap | None:
    """The first name map with at least one core family in the scrape; None = unrecognised exporter."""
    for nm in name_maps:
        core_names = {n for c in nm.tier(CORE) for n, _ in c.names}
        if core_names & set(expo.families):
            return nm
    return None


def judge_exporter(expo: Exposition, name_maps: Sequence[NameMap] = (DCGM,)) -> SubCheck:
    """``exporter_recognised``: PASS when a known name map matches; UNKNOWN (manual evidence) otherwise."""
    nm = recognise_exporter(expo, name_maps) if expo.ok else None
    known = ", ".join(n.name for n in name_maps)
    if nm is None:
        sample = sorted(expo.families)[:8]
        return SubCheck(
            "exporter_recognised", Verdict.UNKNOWN,
            "the exporter's metric names match no configured name map: give one (parameter) or attach manual evidence",
            expected=f"core metric names of one of: {known}", observed=f"families: {sample}{' ...' if len(expo.families) > 8 else ''}",
            details={"families": len(expo.families)},
        )
    return SubCheck("exporter_recognised", Verdict.PASS, f"metric names of the {nm.name} exporter",
                    expected=f"core metric names of one of: {known}", observed=nm.name, details={"name_map": nm.name})


def judge_format(expo: Exposition) -> SubCheck:
    """``format_valid``: the text parses as Prometheus exposition, is non-empty and has no duplicate series."""
    details = {"families": len(expo.families), "bytes": expo.size_bytes, "warnings": expo.warnings[:20]}
    if expo.error:
        return SubCheck("format_valid", Verdict.FAIL, "the exposition does not parse", expected="valid Prometheus text",
                        observed=expo.error, details=details)
    if expo.problems:
        return SubCheck("format_valid", Verdict.FAIL, f"{len(expo.problems)} format problem(s)",
                        expected="valid Prometheus text, no duplicate series", observed="; ".join(expo.problems[:5]),
                        details={**details, "problems": expo.problems[:20]})
    note = f" ({len(expo.warnings)} family/ies without HELP or TYPE)" if expo.warnings else ""
    return SubCheck("format_valid", Verdict.PASS, f"{len(expo.families)} families parsed{note}",
                    expected="valid Prometheus text, no duplicate series", observed="parsed by prometheus_client",
                    details=details)


def judge_core_metrics(
    expo: Exposition, allocatable: int | None, name_map: NameMap = DCGM, *, replicas_per_gpu: int = 1
) -> list[SubCheck]:
    """``core_metrics_per_gpu`` and ``gpu_count_matches``.

    Every device the exporter reports must carry every core class; the number of devices with complete core
    metrics must equal the node's allocatable accelerator count (divided by ``replicas_per_gpu`` under
    time-slicing). An exporter no name map recognises gives UNKNOWN for both (never FAIL).
    """
    core = name_map.tier(CORE)
    expected_names = ", ".join(f"{c.key} ({c.names[0][0]})" for c in core)
    if not expo.ok or recognise_exporter(expo, (name_map,)) is None:
        why = expo.error or f"no core family of the {name_map.name} name map in the scrape"
        return [
            SubCheck("core_metrics_per_gpu", Verdict.UNKNOWN, why, expected=expected_names, observed="not evaluated"),
            SubCheck("gpu_count_matches", Verdict.UNKNOWN, why, expected=f"{allocatable} devices", observed="not evaluated"),
        ]
    devices, unlabelled = device_readings(expo, name_map)
    missing = {k: [c.key for c in core if c.key not in d.values] for k, d in devices.items()}
    missing = {k: v for k, v in missing.items() if v}
    complete = [k for k in devices if k not in missing]
    per_device = {k: {c: round(v, 3) for c, (_, v) in d.values.items()} for k, d in devices.items()}
    details = {"devices": list(devices), "missing": missing, "values": per_device, "unlabelled_families": unlabelled}
    if not devices:
        core_sub = SubCheck("core_metrics_per_gpu", Verdict.FAIL, "core families carry no per-device labels",
                            expected=f"{expected_names} per device ({name_map.index_label}/{name_map.uuid_label} labels)",
                            observed=f"unlabelled: {unlabelled}", details=details)
    elif missing:
        obs = "; ".join(f"{k}: missing {', '.join(v)}" for k, v in missing.items())
        core_sub = SubCheck("core_metrics_per_gpu", Verdict.FAIL, f"{len(missing)} of {len(devices)} device(s) lack core metrics",
                            expected=f"{expected_names} for every device", observed=obs, details=details)
    else:
        core_sub = SubCheck("core_metrics_per_gpu", Verdict.PASS, f"core metrics for all {len(devices)} device(s)",
                            expected=f"{expected_names} for every device",
                            observed=", ".join(f"{k}: {per_device[k]}" for k in list(devices)[:4]), details=details)
    if allocatable is None:
        count_sub = SubCheck("gpu_count_matches", Verdict.UNKNOWN, "the node's allocatable accelerator count is not known",
                             expected="exporter devices == node allocatable", observed=f"{len(complete)} complete device(s)")
    else:
        want = allocatable // max(1, replicas_per_gpu)
        ok = len(complete) == want and len(devices) == want
        count_sub = SubCheck(
            "gpu_count_matches", Verdict.PASS if ok else Verdict.FAIL,
            f"exporter reports {len(devices)} device(s) ({len(complete)} with all core metrics); node advertises {want}",
            expected=f"{want} device(s) (allocatable {allocatable}" + (f" / {replicas_per_gpu} replicas)" if replicas_per_gpu > 1 else ")"),
            observed=f"{len(devices)} device(s), {len(complete)} complete", details={"complete": complete},
        )
    return [core_sub, count_sub]


def judge_should_metrics(expo: Exposition, name_map: NameMap = DCGM) -> SubCheck:
    """``should_metrics`` (informational): temperature, power/energy, interconnect reported per device.

    PASS when every device reports temperature, power (or energy) and some interconnect class; NVLink absence is
    listed but expected where the hardware has none.
    """
    devices, _ = device_readings(expo, name_map)
    should = name_map.tier(SHOULD)
    coverage = {c.key: [k for k, d in devices.items() if c.key in d.values] for c in should}
    families = {c.key: sorted({d.values[c.key][0] for d in devices.values() if c.key in d.values}) for c in should}
    n = len(devices)

    def everywhere(*keys: str) -> bool:
        return n > 0 and all(any(k in d.values for k in keys if name_map.cls(k)) for d in devices.values())

    groups = {"temperature": ("temperature",), "power": ("power", "energy"), "interconnect": ("pcie_tx", "pcie_rx", "nvlink")}
    ok = {g: everywhere(*keys) for g, keys in groups.items()}
    absent = [c.key for c in should if not coverage[c.key]]
    observed = "; ".join(
        f"{c.key}: {len(coverage[c.key])}/{n}" + (f" ({', '.join(families[c.key])})" if families[c.key] else "") for c in should
    )
    summary = "reported for every device: " + ", ".join(g for g, v in ok.items() if v) if any(ok.values()) else "none reported"
    if absent:
        summary += "; absent: " + ", ".join(a + (" (where supported)" if a in WHERE_SUPPORTED else "") for a in absent)
    return SubCheck("should_metrics", Verdict.PASS if all(ok.values()) else Verdict.FAIL, summary,
                    expected="temperature, power/energy and interconnect (PCIe/NVLink) per device", observed=observed,
                    required=False, details={"coverage": coverage, "families": families, "groups": ok})


def judge_device_labels(expo: Exposition, name_map: NameMap = DCGM) -> SubCheck:
    """``device_labels`` (informational): label keys per device, against the exporter's per-device label set."""
    devices, _ = device_readings(expo, name_map)
    keys = {k: sorted(d.label_keys) for k, d in devices.items()}
    lacking = {k: [lbl for lbl in name_map.expected_device_labels if lbl not in d.label_keys] for k, d in devices.items()}
    lacking = {k: v for k, v in lacking.items() if v}
    attribution = sorted({lbl for pair in name_map.attribution_labels for lbl in pair if any(lbl in v for v in keys.values())})
    ok = bool(devices) and not lacking
    return SubCheck(
        "device_labels", Verdict.PASS if ok else Verdict.FAIL,
        (f"every device carries {', '.join(name_map.expected_device_labels)}" if ok else
         f"{len(lacking) or 'no'} device(s) lack per-device labels") + (f"; pod attribution labels: {attribution}" if attribution else ""),
        expected=f"labels {', '.join(name_map.expected_device_labels)} on every device's series",
        observed="; ".join(f"{k}: {v}" for k, v in keys.items()) or "no devices",
        required=False, details={"label_keys": keys, "lacking": lacking, "attribution_labels": attribution},
    )


def judge_attribution(expos: Iterable[Exposition], pod: str, namespace: str | None = None,
                      name_map: NameMap = DCGM) -> SubCheck:
    """``pod_attribution`` (informational): did any scrape attribute a device to the load's pod?

    UNKNOWN when the exporter carries no attribution labels at all (DCGM's Kubernetes mapping off, or no
    kubelet pod-resources socket), FAIL when it attributes devices but never to this pod.
    """
    seen: dict[str, set[tuple[str, str]]] = {}
    for expo in expos:
        devices, _ = device_readings(expo, name_map)
        for k, d in devices.items():
            seen.setdefault(k, set()).update(d.attributed)
    hits = sorted(k for k, pods in seen.items() if any(p == pod and (namespace is None or ns == namespace) for ns, p in pods))
    any_attr = any(seen.values())
    who = f"{namespace}/{pod}" if namespace else pod
    if hits:
        return SubCheck("pod_attribution", Verdict.PASS, f"{who} attributed to {', '.join(hits)}", expected=f"a device attributed to {who}",
                        observed=", ".join(hits), required=False, details={"devices": hits})
    if not any_attr:
        return SubCheck("pod_attribution", Verdict.UNKNOWN, "the exporter carries no pod attribution labels",
                        expected=f"a device attributed to {who}", observed="no pod/exported_pod labels", required=False)
    others = sorted({f"{ns}/{p}" for pods in seen.values() for ns, p in pods})
    return SubCheck("pod_attribution", Verdict.FAIL, f"devices attributed to other pods only: {others[:5]}",
                    expected=f"a device attributed to {who}", observed=str(others[:5]), required=False)


# --- presence matrix -------------------------------------------------------------------------------------------------


@dataclass
class PresenceMatrix:
    """Metric family x device: which families the exporter reports for which device."""

    metrics: list[str]
    tiers: list[str]
    classes: list[str]
    devices: list[str]
    present: list[list[bool]]  #: [metric][device]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_presence_matrix(expo: Exposition, name_map: NameMap = DCGM, *, include_info: bool = False) -> PresenceMatrix:
    """Rows: every mapped family seen (or a class's preferred name when none of its names is seen)."""
    devices, _ = device_readings(expo, name_map)
    seen_by_family: dict[str, set[str]] = {}
    for fname, fam in expo.families.items():
        for s in fam.samples:
            key = device_key(s.labels, name_map)
            if key:
                seen_by_family.setdefault(fname, set()).add(key)
    metrics, tiers, classes, present = [], [], [], []
    for c in name_map.classes:
        if c.tier == INFO and not include_info:
            continue
        names = [n for n, _ in c.names if n in expo.families] or [c.names[0][0]]
        for n in names:
            metrics.append(n)
            tiers.append(c.tier)
            classes.append(c.key)
            present.append([k in seen_by_family.get(n, set()) for k in devices])
    return PresenceMatrix(metrics, tiers, classes, list(devices), present)


# --- OpenTelemetry ---------------------------------------------------------------------------------------------------

#: DCGM family -> OpenTelemetry name. ``status``: ``semconv`` = the name is in the OTel hardware/GPU semantic
#: conventions (status Development, read 2026-11 from open-telemetry/semantic-conventions docs/hardware/gpu.md);
#: ``semconv-common`` = a common ``hw.*`` metric (hw.power, hw.energy, hw.temperature) with ``hw.type``; the pairing
#: of the two names and the conversions are ours.
OTEL_MAP: tuple[dict[str, str], ...] = (
    {"dcgm": "DCGM_FI_DEV_GPU_UTIL", "otel": "hw.gpu.utilization", "attributes": "hw.gpu.task=general",
     "conversion": "% / 100 -> 1", "status": "semconv"},
    {"dcgm": "DCGM_FI_PROF_GR_ENGINE_ACTIVE", "otel": "hw.gpu.utilization", "attributes": "hw.gpu.task=general",
     "conversion": "ratio as is", "status": "semconv"},
    {"dcgm": "DCGM_FI_DEV_FB_USED", "otel": "hw.gpu.memory.usage", "attributes": "",
     "conversion": "MiB x 1048576 -> By", "status": "semconv"},
    {"dcgm": "DCGM_FI_DEV_FB_FREE", "otel": "hw.gpu.memory.limit", "attributes": "",
     "conversion": "(FB_USED + FB_FREE [+ FB_RESERVED]) MiB -> By", "status": "semconv (derived)"},
    {"dcgm": "DCGM_FI_DEV_FB_USED / DCGM_FI_DEV_FB_FREE", "otel": "hw.gpu.memory.utilization", "attributes": "",
     "conversion": "used / (used + free)", "status": "semconv (derived)"},
    {"dcgm": "DCGM_FI_DEV_GPU_TEMP", "otel": "hw.temperature", "attributes": "hw.type=temperature, hw.parent=<GPU hw.id>",
     "conversion": "degC as is (Cel)", "status": "semconv-common"},
    {"dcgm": "DCGM_FI_DEV_POWER_USAGE", "otel": "hw.power", "attributes": "hw.type=gpu",
     "conversion": "W as is", "status": "semconv-common"},
    {"dcgm": "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "otel": "hw.energy", "attributes": "hw.type=gpu",
     "conversion": "mJ / 1000 -> J", "status": "semconv-common"},
    {"dcgm": "DCGM_FI_PROF_PCIE_TX_BYTES", "otel": "hw.gpu.io", "attributes": "network.io.direction=transmit",
     "conversion": "B/s rate -> cumulative By (integrate)", "status": "semconv"},
    {"dcgm": "DCGM_FI_PROF_PCIE_RX_BYTES", "otel": "hw.gpu.io", "attributes": "network.io.direction=receive",
     "conversion": "B/s rate -> cumulative By (integrate)", "status": "semconv"},
    {"dcgm": "DCGM_FI_DEV_PCIE_TX_THROUGHPUT", "otel": "hw.gpu.io", "attributes": "network.io.direction=transmit",
     "conversion": "KB/s x 1024 rate -> cumulative By", "status": "semconv"},
    {"dcgm": "DCGM_FI_DEV_PCIE_RX_THROUGHPUT", "otel": "hw.gpu.io", "attributes": "network.io.direction=receive",
     "conversion": "KB/s x 1024 rate -> cumulative By", "status": "semconv"},
    {"dcgm": "DCGM_FI_PROF_NVLINK_TX_BYTES", "otel": "hw.gpu.io", "attributes": "network.io.direction=transmit",
     "conversion": "B/s rate -> cumulative By (no link-type attribute in the spec)", "status": "semconv"},
    {"dcgm": "DCGM_FI_PROF_NVLINK_RX_BYTES", "otel": "hw.gpu.io", "attributes": "network.io.direction=receive",
     "conversion": "B/s rate -> cumulative By (no link-type attribute in the spec)", "status": "semconv"},
    {"dcgm": "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", "otel": "hw.gpu.io", "attributes": "(no direction)",
     "conversion": "counter, both directions summed", "status": "semconv (approximate)"},
    {"dcgm": "DCGM_FI_DEV_XID_ERRORS", "otel": "hw.errors", "attributes": "hw.type=gpu, error.type=<xid>",
     "conversion": "last XID -> count of errors", "status": "semconv (approximate)"},
)

#: DCGM label -> OpenTelemetry attribute.
OTEL_ATTRIBUTES: dict[str, str] = {
    "UUID": "hw.id",
    "modelName": "hw.model",
    "DCGM_FI_DRIVER_VERSION": "hw.driver_version",
    "device": "hw.name",
    "(constant NVIDIA)": "hw.vendor",
}


def otel_table(families: Iterable[str]) -> list[dict[str, str]]:
    """The OTel rows for the DCGM families found (``found`` says which), for the interoperability table."""
    found = set(families)
    rows = []
    for row in OTEL_MAP:
        names = [n.strip() for n in row["dcgm"].split("/")]
        rows.append({**row, "found": "yes" if all(n in found for n in names) else "no"})
    return rows


# --- time series and the load window ---------------------------------------------------------------------------------


def series_rows(expo: Exposition, t_s: float, name_map: NameMap = DCGM) -> list[dict[str, Any]]:
    """One row per device for a scrape taken at ``t_s``: canonical-unit values in the classes' columns."""
    devices, _ = device_readings(expo, name_map)
    rows = []
    for k, d in devices.items():
        row: dict[str, Any] = {"t_s": round(float(t_s), 3), "device": k, "uuid": d.labels.get(name_map.uuid_label, ""),
                               "model": d.labels.get(name_map.model_label, "")}
        row["pod"] = ",".join(sorted(f"{ns}/{p}" if ns else p for ns, p in d.attributed))
        for c in name_map.classes:
            if c.key in d.values:
                row[c.column] = round(d.values[c.key][1], 3)
        rows.append(row)
    return rows


@dataclass
class LoadWindowAnalysis:
    """Whether the loaded device's utilisation and memory rose inside the load window and fell after it."""

    device: str | None
    window: tuple[float, float]
    thresholds: dict[str, float]
    samples: dict[str, int]  #: before / during / after counts
    utilization: dict[str, float | None]  #: before (median), during_max, during_median, after (median)
    memory_used: dict[str, float | None]
    criteria: dict[str, Verdict]  #: utilization_rose, utilization_fell, memory_rose, memory_fell
    reasons: dict[str, str]
    other_devices: dict[str, float | None] = field(default_factory=dict)  #: utilisation rise of unloaded devices
    require_fall: bool = True

    @property
    def verdict(self) -> Verdict:
        keys = [k for k in self.criteria if self.require_fall or k.endswith("_rose")]
        vs = [self.criteria[k] for k in keys]
        if Verdict.FAIL in vs:
            return Verdict.FAIL
        if Verdict.UNKNOWN in vs or not vs:
            return Verdict.UNKNOWN
        return Verdict.PASS

    def summary(self) -> str:
        u, m = self.utilization, self.memory_used
        return (f"{self.device}: utilization {_fmt(u['before'])} -> max {_fmt(u['during_max'])} -> {_fmt(u['after'])} %, "
                f"memory {_fmt(m['before'])} -> max {_fmt(m['during_max'])} -> {_fmt(m['after'])} MiB")

    def as_subcheck(self, sub_id: str = "workload_reflected") -> SubCheck:
        failed = [f"{k}: {self.reasons[k]}" for k, v in self.criteria.items() if v is not Verdict.PASS]
        return SubCheck(
            sub_id, self.verdict, self.summary() if self.verdict is Verdict.PASS else "; ".join(failed) or self.summary(),
            expected=(f"utilization +{self.thresholds['util_rise_pct']:g} points and memory +{self.thresholds['mem_rise_mib']:g} MiB "
                      f"inside the load window" + (", both back after it" if self.require_fall else "")),
            observed=self.summary(), details=self.to_dict(),
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["criteria"] = {k: str(v) for k, v in self.criteria.items()}
        d["verdict"] = str(self.verdict)
        return d


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.0f}"


def _median(xs: list[float]) -> float | None:
    xs = [x for x in xs if x is not None and not math.isnan(x)]
    return float(statistics.median(xs)) if xs else None


def _max(xs: list[float]) -> float | None:
    xs = [x for x in xs if x is not None and not math.isnan(x)]
    return float(max(xs)) if xs else None


def _rows(frame: Any) -> list[dict[str, Any]]:
    if hasattr(frame, "to_dict"):
        return frame.to_dict("records")
    return list(frame)


def analyse_load_window(
    frame: Any,
    start_s: float,
    end_s: float,
    *,
    device: str | None = None,
    util_rise_pct: float = 20.0,
    mem_rise_mib: float = 256.0,
    fall_fraction: float = 0.8,
    settle_s: float = 3.0,
    min_samples: int = 2,
    require_fall: bool = True,
) -> LoadWindowAnalysis:
    """Judge a load window from :func:`series_rows` rows (a DataFrame or a list of dicts).

    Samples before ``start_s`` are the baseline (median), those within [start_s, end_s] the load, those after
    ``end_s + settle_s`` the aftermath. ``utilization_rose``: max during - baseline >= ``util_rise_pct``;
    ``memory_rose``: max during - baseline >= ``mem_rise_mib``; ``*_fell``: the aftermath median gave back at least
    ``fall_fraction`` of the rise. Fewer than ``min_samples`` samples in a phase makes its criteria UNKNOWN. The
    device is ``device`` or, if None, the one whose utilisation rose most.
    """
    rows = [r for r in _rows(frame) if r.get("device")]
    by_dev: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_dev.setdefault(str(r["device"]), []).append(r)
    thresholds = {"util_rise_pct": util_rise_pct, "mem_rise_mib": mem_rise_mib, "fall_fraction": fall_fraction,
                  "settle_s": settle_s, "min_samples": min_samples}

    def phases(rs: list[dict[str, Any]], col: str) -> tuple[list[float], list[float], list[float]]:
        def val(r: dict[str, Any]) -> float | None:
            v = r.get(col)
            return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)

        before = [val(r) for r in rs if r["t_s"] < start_s and val(r) is not None]
        during = [val(r) for r in rs if start_s <= r["t_s"] <= end_s and val(r) is not None]
        after = [val(r) for r in rs if r["t_s"] > end_s + settle_s and val(r) is not None]
        return before, during, after

    def rise(rs: list[dict[str, Any]], col: str) -> float | None:
        b, d, _ = phases(rs, col)
        mb, md = _median(b), _max(d)
        return None if mb is None or md is None else md - mb

    if device is None and by_dev:
        rises = {k: rise(v, "utilization_pct") for k, v in by_dev.items()}
        device = max(rises, key=lambda k: -1e9 if rises[k] is None else rises[k])
    rs = by_dev.get(device or "", [])
    criteria: dict[str, Verdict] = {}
    reasons: dict[str, str] = {}
    summary: dict[str, dict[str, float | None]] = {}
    counts = {"before": 0, "during": 0, "after": 0}
    for col, name, threshold, unit in (("utilization_pct", "utilization", util_rise_pct, "points"),
                                       ("memory_used_mib", "memory", mem_rise_mib, "MiB")):
        b, d, a = phases(rs, col)
        counts = {"before": max(counts["before"], len(b)), "during": max(counts["during"], len(d)),
                  "after": max(counts["after"], len(a))}
        mb, mdx, mdm, ma = _median(b), _max(d), _median(d), _median(a)
        summary[name] = {"before": mb, "during_max": mdx, "during_median": mdm, "after": ma}
        if len(b) < min_samples or len(d) < min_samples:
            criteria[f"{name}_rose"] = Verdict.UNKNOWN
            reasons[f"{name}_rose"] = f"too few samples (before {len(b)}, during {len(d)}; need {min_samples})"
            criteria[f"{name}_fell"] = Verdict.UNKNOWN
            reasons[f"{name}_fell"] = "rise not evaluated"
            continue
        up = mdx - mb
        criteria[f"{name}_rose"] = Verdict.PASS if up >= threshold else Verdict.FAIL
        reasons[f"{name}_rose"] = f"rose {up:.1f} {unit} (need {threshold:g})"
        if len(a) < min_samples:
            criteria[f"{name}_fell"] = Verdict.UNKNOWN
            reasons[f"{name}_fell"] = f"too few samples after the window ({len(a)}; need {min_samples})"
        elif up <= 0:
            criteria[f"{name}_fell"] = Verdict.UNKNOWN
            reasons[f"{name}_fell"] = "nothing rose, so nothing can fall"
        else:
            gave_back = (mdx - ma) / up
            criteria[f"{name}_fell"] = Verdict.PASS if gave_back >= fall_fraction else Verdict.FAIL
            reasons[f"{name}_fell"] = f"gave back {gave_back:.0%} of the rise (need {fall_fraction:.0%})"
    if not rs:
        for k in ("utilization_rose", "utilization_fell", "memory_rose", "memory_fell"):
            criteria[k], reasons[k] = Verdict.UNKNOWN, f"no samples for device {device!r}"
    others = {k: (None if rise(v, "utilization_pct") is None else round(rise(v, "utilization_pct"), 1))
              for k, v in by_dev.items() if k != device}
    return LoadWindowAnalysis(
        device=device, window=(float(start_s), float(end_s)), thresholds=thresholds, samples=counts,
        utilization=summary.get("utilization", {"before": None, "during_max": None, "during_median": None, "after": None}),
        memory_used=summary.get("memory", {"before": None, "during_max": None, "during_median": None, "after": None}),
        criteria=criteria, reasons=reasons, other_devices=others, require_fall=require_fall,
    )


# --- charts ----------------------------------------------------------------------------------------------------------

_TIER_COLOURS = {CORE: "#1a7f37", SHOULD: "#0969da", INFO: "#6e7781"}
_MISSING = {CORE: "#cf222e", SHOULD: "#d0d7de", INFO: "#eaeef2"}


def draw_gpu_series(ax: Any, frame: Any, load_window: tuple[float, float] | None = None) -> Any:
    """Per-GPU utilisation (solid, left axis, %) and framebuffer used (dashed, right axis, GiB) over time.

    ``frame``: rows from :func:`series_rows` (DataFrame or list of dicts); ``load_window``: (start_s, end_s) shaded.
    Returns the twin axis holding memory.
    """
    rows = [r for r in _rows(frame) if r.get("device")]
    if not rows:
        ax.text(0.5, 0.5, "no scrapes recorded", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return None
    devices = sorted({str(r["device"]) for r in rows}, key=_natural)
    colours = [f"C{i}" for i in range(10)]
    mem_ax = ax.twinx()
    if load_window is not None:
        ax.axvspan(load_window[0], load_window[1], color="#fff1c2", alpha=0.8, zorder=0, label="load window")
    for i, dev in enumerate(devices):
        rs = sorted((r for r in rows if str(r["device"]) == dev), key=lambda r: r["t_s"])
        t = [r["t_s"] for r in rs]
        util = [r.get("utilization_pct", math.nan) for r in rs]
        mem = [r.get("memory_used_mib", math.nan) / 1024 for r in rs]
        c = colours[i % len(colours)]
        ax.plot(t, util, color=c, lw=1.6, label=f"{dev} utilization %")
        mem_ax.plot(t, mem, color=c, lw=1.2, ls="--", label=f"{dev} memory used GiB")
    ax.set_ylim(-2, 105)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("utilization (%)")
    mem_ax.set_ylabel("framebuffer used (GiB)")
    mem_ax.set_ylim(bottom=0)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = mem_ax.get_legend_handles_labels()
    # below the axes: inside, it would cover the load's plateau at 100 %
    ax.legend(h1 + h2, l1 + l2, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=min(3, len(h1) + len(h2)),
              fontsize=7, frameon=False)
    ax.set_title("GPU utilization and memory around the load")
    return mem_ax


def draw_presence_matrix(ax: Any, matrix: PresenceMatrix) -> Any:
    """Metric family x device: green/blue = reported (core/should), red = core missing, grey = should missing."""
    import matplotlib.colors as mcolors

    if not matrix.metrics or not matrix.devices:
        ax.text(0.5, 0.5, "no devices in the scrape", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return None
    rgb = [[mcolors.to_rgb(_TIER_COLOURS[t] if p else _MISSING[t]) for p in row]
           for row, t in zip(matrix.present, matrix.tiers, strict=True)]
    img = ax.imshow(rgb, aspect="auto", interpolation="nearest")
    for i, row in enumerate(matrix.present):
        for j, p in enumerate(row):
            ax.text(j, i, "yes" if p else "no", ha="center", va="center", fontsize=7,
                    color="white" if p or matrix.tiers[i] == CORE else "#57606a")
    ax.set_xticks(range(len(matrix.devices)), matrix.devices, fontsize=8)
    ax.set_yticks(range(len(matrix.metrics)), [f"{m} ({t})" for m, t in zip(matrix.metrics, matrix.tiers, strict=True)],
                  fontsize=7)
    ax.set_title("metric x GPU presence")
    return img
