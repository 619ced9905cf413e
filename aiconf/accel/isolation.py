"""Secure accelerator access: device-probe JSON -> visibility matrix and verdicts T1-T4.

Pure logic over the JSON documents :mod:`aiconf.workloads.device_probe` prints inside each pod/container:

- :func:`load_probe`: a probe document as a :class:`Probe` (tolerant of missing sections: other vendors, bare images);
- :func:`judge_no_request` (T1): a container without a device request sees no accelerator node, no UUID, the
  listing command finds nothing, and nothing it tries to open opens; the classic bypass (``NVIDIA_VISIBLE_DEVICES=all``
  in the env) must be among the probes, else UNKNOWN;
- :func:`judge_single_request` (T2): one request -> exactly one device node and exactly one UUID;
- :func:`judge_cross_pod` (T3): two pods with one device each -> distinct UUIDs, and neither opens the other's node
  (attempted, with mknod where CAP_MKNOD is held; not attempted -> UNKNOWN);
- :func:`judge_multi_container` (T4): only the container with the request sees a device;
- :func:`build_visibility_matrix` / :func:`judge_matrix` / :func:`draw_visibility_matrix`: pods/containers x UUID,
  which must be diagonal: no row sees more devices than it was granted, no UUID is seen by two rows of one group
  (pods or containers that ran side by side on one node).

Findings are :class:`aiconf.model.SubCheck` objects the check records as they are.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from aiconf.model import SubCheck, Verdict

#: errno names that mean "the kernel refused" (devices cgroup / permissions) rather than "no such device".
DENIED_ERRNOS = frozenset({"EPERM", "EACCES"})

#: errno names of an open that the devices cgroup let through but no driver answered (simulated GPUs, or a minor
#: without a device): the container *reached* the device node, which is what isolation must prevent.
PASSED_CGROUP_ERRNOS = frozenset({"ENXIO", "ENODEV"})

#: Which device paths are accelerators (one per device), as opposed to control nodes every GPU container shares
#: (``/dev/nvidiactl``, ``/dev/nvidia-uvm``): only the former can be "another pod's device" in T3.
ACCELERATOR_NODE = re.compile(r"^/dev/nvidia\d+$")


@dataclass
class Probe:
    """The parts of a device-probe document the verdicts use (``raw`` keeps the whole document)."""

    label: str
    gpu_nodes: list[str]
    uuids: list[str]
    env: dict[str, str]
    cap_mknod: bool
    smi_found: bool
    smi_rc: int | None
    smi_uuids: list[str]
    nvml_count: int | None
    cuda_count: int | None
    open_attempts: list[dict[str, Any]]
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def env_all(self) -> bool:
        return self.env.get("NVIDIA_VISIBLE_DEVICES", "").strip().lower() == "all"

    def opened(self) -> list[str]:
        """Paths this probe opened successfully."""
        return [a["path"] for a in self.open_attempts if (a.get("open") or {}).get("ok")]

    def reached(self) -> list[str]:
        """Paths whose open got past the devices cgroup: opened, or refused by the driver (ENXIO/ENODEV), not EPERM."""
        return [a["path"] for a in self.open_attempts if _reached(a)]

    def foreign_attempts(self, node_pattern: re.Pattern[str] = ACCELERATOR_NODE) -> list[dict[str, Any]]:
        """Open attempts on accelerator nodes (``node_pattern``) that are not this container's own."""
        return [a for a in self.open_attempts if node_pattern.match(a["path"]) and a["path"] not in self.gpu_nodes]

    def smi_lists_devices(self) -> bool:
        return self.smi_found and self.smi_rc == 0 and bool(self.smi_uuids)

    def short(self) -> str:
        smi = "absent" if not self.smi_found else f"rc {self.smi_rc}, {len(self.smi_uuids)} UUID(s)"
        return (f"{self.label}: nodes {self.gpu_nodes or 'none'}, UUIDs {[u[:12] for u in self.uuids] or 'none'}, "
                f"nvidia-smi {smi}, NVML {self.nvml_count}, CUDA {self.cuda_count}, opened {self.opened() or 'nothing'}")


def _reached(attempt: Mapping[str, Any]) -> bool:
    op = attempt.get("open") or {}
    return bool(op.get("ok")) or op.get("errno") in PASSED_CGROUP_ERRNOS


def load_probe(doc: Mapping[str, Any] | str, label: str | None = None) -> Probe:
    """A :class:`Probe` from a probe document (dict or JSON text); ``label`` overrides the document's own."""
    d = json.loads(doc) if isinstance(doc, str) else dict(doc)
    smi = d.get("smi") or {}
    nvml = d.get("nvml") or {}
    cuda = d.get("cuda") or {}
    return Probe(
        label=label or d.get("label") or "?",
        gpu_nodes=list(d.get("gpu_nodes") or []),
        uuids=sorted(set(d.get("uuids") or []) | set(smi.get("uuids") or []) | set(nvml.get("uuids") or [])
                     | set(cuda.get("uuids") or [])),
        env=dict(d.get("env") or {}),
        cap_mknod=bool((d.get("capabilities") or {}).get("cap_mknod")),
        smi_found=bool(smi.get("found")),
        smi_rc=smi.get("rc"),
        smi_uuids=list(smi.get("uuids") or []),
        nvml_count=nvml.get("count"),
        cuda_count=cuda.get("count"),
        open_attempts=list(d.get("open_attempts") or []),
        raw=d,
    )


def _sees_anything(p: Probe) -> list[str]:
    why = []
    if p.gpu_nodes:
        why.append(f"device nodes {p.gpu_nodes}")
    if p.uuids:
        why.append(f"UUIDs {p.uuids}")
    if p.smi_lists_devices():
        why.append("nvidia-smi lists devices")
    if p.nvml_count:
        why.append(f"NVML counts {p.nvml_count}")
    if p.cuda_count:
        why.append(f"CUDA counts {p.cuda_count}")
    if p.reached():
        why.append(f"opened (or reached the driver behind) {p.reached()}")
    return why


def _attempt_summary(p: Probe) -> list[str]:
    out = []
    for a in p.open_attempts:
        mk = a.get("mknod") or {}
        op = a.get("open") or {}
        mk_s = "" if not mk else (" mknod ok" if mk.get("ok") else f" mknod {mk.get('errno') or mk.get('error')}")
        out.append(f"{a['path']}:{mk_s} open {'OK' if op.get('ok') else op.get('errno')}")
    return out


def judge_no_request(probes: Sequence[Probe], *, require_env_bypass: bool = True) -> SubCheck:
    """T1 ``no_request_no_device``: containers without a request see and open nothing (also with the env bypass)."""
    expected = "no accelerator node, no UUID, nvidia-smi finds nothing, opens fail" + (
        " (also with NVIDIA_VISIBLE_DEVICES=all)" if require_env_bypass else "")
    details = {"probes": {p.label: {"sees": _sees_anything(p), "attempts": _attempt_summary(p), "env_all": p.env_all,
                                    "smi_rc": p.smi_rc, "cap_mknod": p.cap_mknod} for p in probes}}
    if not probes:
        return SubCheck("no_request_no_device", Verdict.UNKNOWN, "no probe without a request ran", expected=expected,
                        observed="nothing")
    bad = {p.label: _sees_anything(p) for p in probes if _sees_anything(p)}
    if bad:
        return SubCheck("no_request_no_device", Verdict.FAIL,
                        f"{len(bad)} container(s) without a request reach an accelerator", expected=expected,
                        observed="; ".join(f"{k}: {', '.join(v)}" for k, v in bad.items()), details=details)
    observed = "; ".join(p.short() for p in probes)
    if require_env_bypass and not any(p.env_all for p in probes):
        return SubCheck("no_request_no_device", Verdict.UNKNOWN,
                        "no probe ran with NVIDIA_VISIBLE_DEVICES=all: the env-var bypass was not tried",
                        expected=expected, observed=observed, details=details)
    return SubCheck("no_request_no_device", Verdict.PASS,
                    f"{len(probes)} container(s) without a request see no accelerator"
                    + (" (incl. NVIDIA_VISIBLE_DEVICES=all)" if any(p.env_all for p in probes) else ""),
                    expected=expected, observed=observed, details=details)


def judge_single_request(probe: Probe | None, granted: int = 1) -> SubCheck:
    """T2 ``one_request_one_device``: exactly ``granted`` device node(s) and UUID(s); records the UUID."""
    expected = f"exactly {granted} accelerator node and {granted} UUID"
    if probe is None:
        return SubCheck("one_request_one_device", Verdict.UNKNOWN, "no probe with a request ran", expected=expected,
                        observed="nothing")
    details = {"label": probe.label, "uuids": probe.uuids, "nodes": probe.gpu_nodes, "smi_rc": probe.smi_rc,
               "nvml_count": probe.nvml_count, "cuda_count": probe.cuda_count}
    counts = [c for c in (probe.nvml_count, probe.cuda_count, len(probe.smi_uuids) if probe.smi_lists_devices() else None)
              if c is not None]
    too_many = len(probe.gpu_nodes) > granted or len(probe.uuids) > granted or any(c > granted for c in counts)
    if too_many:
        return SubCheck("one_request_one_device", Verdict.FAIL, f"{probe.label} sees more than {granted} device(s)",
                        expected=expected, observed=probe.short(), details=details)
    if len(probe.gpu_nodes) < granted:
        return SubCheck("one_request_one_device", Verdict.FAIL, f"{probe.label} got no usable device node",
                        expected=expected, observed=probe.short(), details=details)
    if len(probe.uuids) < granted:
        return SubCheck("one_request_one_device", Verdict.UNKNOWN,
                        f"{probe.label} has {len(probe.gpu_nodes)} node(s) but no readable UUID (no nvidia-smi/NVML/CUDA)",
                        expected=expected, observed=probe.short(), details=details)
    return SubCheck("one_request_one_device", Verdict.PASS, f"{probe.label} sees exactly {', '.join(probe.uuids)}",
                    expected=expected, observed=probe.short(), details=details)


def judge_cross_pod(a: Probe | None, b: Probe | None, *, same_node: bool = True,
                    node_pattern: re.Pattern[str] = ACCELERATOR_NODE) -> SubCheck:
    """T3 ``distinct_devices_no_cross_access``: distinct single UUIDs; each pod's attempts on the other's node fail.

    Only accelerator nodes (``node_pattern``, default ``/dev/nvidia<N>``) count as the other pod's device: the
    control nodes (``/dev/nvidiactl``, ``/dev/nvidia-uvm``) are granted to every GPU container and open by design.
    ``same_node=False`` (fewer than two GPUs on any node) is judged the same way and labelled weaker: the devices
    cgroup of one node is then not what separates the two pods.
    """
    expected = "one UUID each, distinct; opening the other's device node fails (even after mknod)"
    scope = "same node" if same_node else "across nodes (weaker: no shared node)"
    if a is None or b is None:
        return SubCheck("distinct_devices_no_cross_access", Verdict.UNKNOWN,
                        "fewer than two pods with a device ran (fewer than two accelerators?)", expected=expected,
                        observed="not run", details={"scope": scope})
    details = {"scope": scope, "uuids": {a.label: a.uuids, b.label: b.uuids},
               "attempts": {a.label: _attempt_summary(a), b.label: _attempt_summary(b)},
               "cap_mknod": {a.label: a.cap_mknod, b.label: b.cap_mknod}}
    observed = f"{a.short()}; {b.short()}"
    if len(a.uuids) != 1 or len(b.uuids) != 1:
        return SubCheck("distinct_devices_no_cross_access", Verdict.FAIL,
                        f"expected one UUID per pod, saw {len(a.uuids)} and {len(b.uuids)}", expected=expected,
                        observed=observed, details=details)
    if a.uuids == b.uuids:
        return SubCheck("distinct_devices_no_cross_access", Verdict.FAIL, f"both pods see {a.uuids[0]}",
                        expected=expected, observed=observed, details=details)
    cross = {p.label: [x for x in p.foreign_attempts(node_pattern) if _reached(x)] for p in (a, b)}
    if any(cross.values()):
        opened = {k: [x["path"] for x in v] for k, v in cross.items() if v}
        return SubCheck("distinct_devices_no_cross_access", Verdict.FAIL, f"cross-pod device opened or reached: {opened}",
                        expected=expected, observed=observed, details=details)
    tried = {p.label: p.foreign_attempts(node_pattern) for p in (a, b)}
    if not all(tried.values()):
        return SubCheck("distinct_devices_no_cross_access", Verdict.UNKNOWN,
                        f"distinct UUIDs ({scope}), but not every pod tried the other's device node",
                        expected=expected, observed=observed, details=details)
    errnos = sorted({(x.get("open") or {}).get("errno") or "?" for v in tried.values() for x in v})
    mknods = [x for v in tried.values() for x in v if (x.get("mknod") or {}).get("ok")]
    how = f"opens failed with {', '.join(errnos)}" + (f", after {len(mknods)} successful mknod(s)" if mknods else "")
    details["errnos"] = errnos
    details["denied_by_kernel"] = all(e in DENIED_ERRNOS for e in errnos)
    return SubCheck("distinct_devices_no_cross_access", Verdict.PASS,
                    f"distinct UUIDs {a.uuids[0]} / {b.uuids[0]} ({scope}); {how}", expected=expected,
                    observed=observed, details=details)


def judge_multi_container(requesting: Probe | None, other: Probe | None) -> SubCheck:
    """T4 ``only_requesting_container``: in one pod, the container with the request sees one device, the other none."""
    expected = "requesting container: exactly one device; the other container: none"
    if requesting is None or other is None:
        return SubCheck("only_requesting_container", Verdict.UNKNOWN, "the two-container case did not run",
                        expected=expected, observed="not run")
    details = {"requesting": requesting.short(), "other": other.short(), "other_sees": _sees_anything(other)}
    observed = f"{requesting.short()}; {other.short()}"
    if _sees_anything(other):
        return SubCheck("only_requesting_container", Verdict.FAIL,
                        f"{other.label} (no request) reaches: {', '.join(_sees_anything(other))}", expected=expected,
                        observed=observed, details=details)
    if len(requesting.gpu_nodes) != 1 or len(requesting.uuids) != 1:
        return SubCheck("only_requesting_container", Verdict.FAIL,
                        f"{requesting.label} sees {len(requesting.gpu_nodes)} node(s), {len(requesting.uuids)} UUID(s)",
                        expected=expected, observed=observed, details=details)
    return SubCheck("only_requesting_container", Verdict.PASS,
                    f"{requesting.label} sees {requesting.uuids[0]}; {other.label} sees nothing", expected=expected,
                    observed=observed, details=details)


# --- the visibility matrix -------------------------------------------------------------------------------------------


@dataclass
class VisibilityMatrix:
    """Rows: pods/containers; columns: UUIDs; ``cells[row][col]``: the row saw that UUID."""

    rows: list[str]
    columns: list[str]
    cells: list[list[bool]]
    granted: list[int]  #: devices each row was granted
    groups: list[str]  #: rows of one group ran side by side on one node
    violations: list[str] = field(default_factory=list)  #: off-diagonal: more than granted, or a UUID shared in a group
    missing: list[str] = field(default_factory=list)  #: rows granted a device that saw fewer (allocation, not isolation)
    bad_cells: list[tuple[int, int]] = field(default_factory=list)

    @property
    def is_diagonal(self) -> bool:
        return not self.violations

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["is_diagonal"] = self.is_diagonal
        return d


def build_visibility_matrix(probes: Sequence[Probe], granted: Mapping[str, int],
                            groups: Mapping[str, str] | None = None) -> VisibilityMatrix:
    """The pods/containers x UUID matrix and its off-diagonal violations.

    ``granted``: devices each probe label was granted (missing label = 0). ``groups``: label -> group name; rows of a
    group ran at the same time on one node, so a UUID seen by two of them is a violation (sequential scenarios may
    reuse a GPU). Columns are ordered by the first row that saw them, so a correct result reads as a diagonal.
    """
    groups = groups or {}
    columns: list[str] = []
    for p in probes:
        for u in p.uuids:
            if u not in columns:
                columns.append(u)
    cells = [[u in p.uuids for u in columns] for p in probes]
    m = VisibilityMatrix(rows=[p.label for p in probes], columns=columns, cells=cells,
                         granted=[int(granted.get(p.label, 0)) for p in probes],
                         groups=[groups.get(p.label, p.label) for p in probes])
    for i, p in enumerate(probes):
        seen = sum(cells[i])
        n_nodes = len(p.gpu_nodes)
        if seen > m.granted[i] or n_nodes > m.granted[i]:
            m.violations.append(f"{p.label} sees {seen} UUID(s) / {n_nodes} node(s), granted {m.granted[i]}")
            m.bad_cells.extend((i, j) for j, c in enumerate(cells[i]) if c)
        elif seen < m.granted[i]:
            m.missing.append(f"{p.label} sees {seen} UUID(s), granted {m.granted[i]}")
    for j, u in enumerate(columns):
        by_group: dict[str, list[int]] = {}
        for i in range(len(probes)):
            if cells[i][j]:
                by_group.setdefault(m.groups[i], []).append(i)
        for g, idx in by_group.items():
            if len(idx) > 1:
                m.violations.append(f"{u} seen by {', '.join(m.rows[i] for i in idx)} (group {g})")
                m.bad_cells.extend((i, j) for i in idx)
    m.bad_cells = sorted(set(m.bad_cells))
    return m


def judge_matrix(matrix: VisibilityMatrix) -> SubCheck:
    """``visibility_matrix_diagonal``: no off-diagonal cell (see :func:`build_visibility_matrix`)."""
    expected = "each row sees only what it was granted; no UUID seen twice within a group"
    observed = "; ".join(f"{r}: {[c[:12] for c, v in zip(matrix.columns, row, strict=True) if v] or '-'}"
                         for r, row in zip(matrix.rows, matrix.cells, strict=True))
    if not matrix.rows:
        return SubCheck("visibility_matrix_diagonal", Verdict.UNKNOWN, "no probes", expected=expected, observed="")
    if matrix.violations:
        return SubCheck("visibility_matrix_diagonal", Verdict.FAIL, "; ".join(matrix.violations[:4]), expected=expected,
                        observed=observed, details=matrix.to_dict())
    extra = f"; {len(matrix.missing)} row(s) saw fewer than granted" if matrix.missing else ""
    return SubCheck("visibility_matrix_diagonal", Verdict.PASS,
                    f"{len(matrix.rows)} rows x {len(matrix.columns)} UUIDs, diagonal{extra}", expected=expected,
                    observed=observed, details=matrix.to_dict())


def draw_visibility_matrix(ax: Any, matrix: VisibilityMatrix) -> Any:
    """Rows x UUIDs: green = seen and granted, red = off-diagonal, white = not seen; grey lines between groups."""
    import matplotlib.colors as mcolors

    if not matrix.rows:
        ax.text(0.5, 0.5, "no probes", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return None
    ncols = max(1, len(matrix.columns))
    bad = set(map(tuple, matrix.bad_cells))
    green, red, white = mcolors.to_rgb("#1a7f37"), mcolors.to_rgb("#cf222e"), mcolors.to_rgb("#f6f8fa")
    rgb = [[(red if (i, j) in bad else green) if (j < len(row) and row[j]) else white for j in range(ncols)]
           for i, row in enumerate(matrix.cells)]
    img = ax.imshow(rgb, aspect="auto", interpolation="nearest")
    for i, row in enumerate(matrix.cells):
        for j in range(ncols):
            seen = j < len(row) and row[j]
            ax.text(j, i, "sees" if seen else "-", ha="center", va="center", fontsize=8,
                    color="white" if seen else "#57606a")
    for i in range(1, len(matrix.rows)):
        if matrix.groups[i] != matrix.groups[i - 1]:
            ax.axhline(i - 0.5, color="#57606a", lw=1)
    ax.set_xticks(range(ncols), [c[:12] + "..." for c in matrix.columns] or ["(no UUID seen)"], fontsize=8)
    ax.set_yticks(range(len(matrix.rows)), [f"{r} (granted {g})" for r, g in zip(matrix.rows, matrix.granted, strict=True)],
                  fontsize=8)
    verdict = "diagonal" if matrix.is_diagonal else f"{len(matrix.violations)} violation(s)"
    if matrix.missing:
        verdict += f"; {len(matrix.missing)} row(s) saw fewer than granted"
    ax.set_title(f"device visibility: containers x GPU UUID ({verdict})")
    return img
