"""Synthetic DCGM expositions, scrape series and probe documents for the accel unit tests.

Numbers follow what was read on the H200 machine (research/gpu-machine.md): idle utilisation 0 %, 615 MiB used of
143771 MiB, 78 W; under a bf16 8192x8192 matrix-product loop 93-95 %, 1589 MiB, ~690 W; back to 0 % within 1 s.
The recorded real outputs live in tests/data/gpu/ and are replayed by test_accel_recorded.py.
"""

from __future__ import annotations

from typing import Any

H200_TOTAL_MIB = 143771
UUIDS = ["GPU-11111111-2222-3333-4444-555555555555", "GPU-66666666-7777-8888-9999-aaaaaaaaaaaa"]

#: family -> (type, help)
FAMILIES = {
    "DCGM_FI_DEV_GPU_UTIL": ("gauge", "GPU utilization (in %)."),
    "DCGM_FI_DEV_FB_USED": ("gauge", "Framebuffer memory used (in MiB)."),
    "DCGM_FI_DEV_FB_FREE": ("gauge", "Framebuffer memory free (in MiB)."),
    "DCGM_FI_DEV_GPU_TEMP": ("gauge", "GPU temperature (in C)."),
    "DCGM_FI_DEV_POWER_USAGE": ("gauge", "Power draw (in W)."),
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": ("counter", "Total energy consumption since boot (in mJ)."),
    "DCGM_FI_DEV_PCIE_TX_THROUGHPUT": ("gauge", "PCIe TX throughput (in KB/s)."),
    "DCGM_FI_DEV_PCIE_RX_THROUGHPUT": ("gauge", "PCIe RX throughput (in KB/s)."),
}


def gpu_state(util: float = 0.0, used: float = 615.0, power: float = 78.0, temp: float = 30.0) -> dict[str, float]:
    return {
        "DCGM_FI_DEV_GPU_UTIL": util,
        "DCGM_FI_DEV_FB_USED": used,
        "DCGM_FI_DEV_FB_FREE": H200_TOTAL_MIB - used,
        "DCGM_FI_DEV_GPU_TEMP": temp,
        "DCGM_FI_DEV_POWER_USAGE": power,
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": 1.0e8,
        "DCGM_FI_DEV_PCIE_TX_THROUGHPUT": 100.0,
        "DCGM_FI_DEV_PCIE_RX_THROUGHPUT": 200.0,
    }


def labels(i: int, host: str = "h200-node", **extra: str) -> dict[str, str]:
    return {"gpu": str(i), "UUID": UUIDS[i % len(UUIDS)], "pci_bus_id": f"00000000:{0x18 + i:02X}:00.0",
            "device": f"nvidia{i}", "modelName": "NVIDIA H200", "Hostname": host, **extra}


def exposition(states: list[dict[str, float]], *, omit: dict[int, set[str]] | None = None,
               label_fn: Any = labels, families: dict[str, tuple[str, str]] | None = None) -> str:
    """DCGM-style text for one scrape: ``states[i]`` is GPU i; ``omit[i]`` drops families for GPU i."""
    omit = omit or {}
    families = families or FAMILIES
    lines = []
    for fam, (typ, doc) in families.items():
        body = []
        for i, st in enumerate(states):
            if fam in omit.get(i, set()) or fam not in st:
                continue
            lbl = ",".join(f'{k}="{v}"' for k, v in label_fn(i).items())
            body.append(f"{fam}{{{lbl}}} {st[fam]}")
        if body:
            lines += [f"# HELP {fam} {doc}", f"# TYPE {fam} {typ}", *body]
    return "\n".join(lines) + "\n"


def load_series(*, before: int = 10, during: int = 60, after: int = 15, peak_util: float = 94.0,
                peak_mem: float = 9800.0, after_mem: float | None = None, gpus: int = 2) -> tuple[list[str], float, float]:
    """Texts of 1 Hz scrapes around a load on GPU 0: (texts, window start, window end) with t_s = index."""
    texts = []
    start, end = float(before), float(before + during)
    for t in range(before + during + after):
        states = []
        for g in range(gpus):
            if g == 0 and start <= t <= end:
                states.append(gpu_state(util=peak_util if t > start + 3 else 0.0, used=peak_mem, power=690.0, temp=55.0))
            elif g == 0 and t > end:
                states.append(gpu_state(util=0.0, used=615.0 if after_mem is None else after_mem, power=125.0, temp=40.0))
            else:
                states.append(gpu_state())
        texts.append(exposition(states))
    return texts, start, end


# --- probe documents -------------------------------------------------------------------------------------------------


def probe_doc(label: str, *, nodes: list[int] = (), uuids: list[str] = (), env: dict[str, str] | None = None,
              smi_rc: int | None = 9, cap_mknod: bool = True, attempts: list[dict[str, Any]] | None = None,
              nvml_count: int | None = None) -> dict[str, Any]:
    """A device-probe document as aiconf.workloads.device_probe writes it."""
    gpu_nodes = [f"/dev/nvidia{n}" for n in nodes]
    smi_ok = smi_rc == 0
    return {
        "schema": "aiconf.device_probe/1", "label": label, "env": env or {},
        "capabilities": {"cap_mknod": cap_mknod},
        "device_nodes": [{"path": p, "type": "char", "major": 195, "minor": int(p[11:])} for p in gpu_nodes],
        "gpu_nodes": gpu_nodes,
        "smi": {"found": smi_rc is not None, "rc": smi_rc, "uuids": list(uuids) if smi_ok else [],
                "stdout": "".join(f"GPU {i}: NVIDIA H200 (UUID: {u})\n" for i, u in enumerate(uuids)) if smi_ok else "",
                "stderr": "" if smi_ok else "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."},
        "nvml": {"loaded": True, "count": nvml_count if nvml_count is not None else (len(uuids) if uuids else None),
                 "uuids": list(uuids)},
        "cuda": {"loaded": True, "count": len(uuids) if uuids else None, "uuids": list(uuids)},
        "open_attempts": attempts if attempts is not None else [
            {"path": p, "exists": True, "mknod": None, "open": {"ok": True, "errno": None}} for p in gpu_nodes],
        "uuids": sorted(uuids),
    }


def denied(path: str, mknod_ok: bool = True) -> dict[str, Any]:
    return {"path": path, "exists": False, "mknod": {"attempted": True, "ok": mknod_ok, "errno": None if mknod_ok else "EPERM"},
            "open": {"ok": False, "errno": "EPERM", "error": "Operation not permitted"}}


def opened(path: str) -> dict[str, Any]:
    return {"path": path, "exists": True, "mknod": None, "open": {"ok": True, "errno": None}}
