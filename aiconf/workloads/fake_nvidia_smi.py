#!/usr/bin/env python3
"""A fake ``nvidia-smi`` for the sandbox's SIMULATED GPUs: there is no NVIDIA driver, no NVML and no CUDA here.

What it reports is real in one respect: it lists exactly the GPU device nodes this container may use. The sandbox's
fake device plugin (:mod:`aiconf.sandbox.deviceplugin`) gives each GPU container its own ``/dev/nvidiaN`` (char
195:N) and the devices cgroup lets only that container open it. This program tries ``open(O_RDWR)`` on every
``/dev/nvidia<N>``: allowed by the cgroup, the open reaches the kernel's character-device lookup and fails with
ENXIO (no driver is bound to major 195) or succeeds; refused by the cgroup, it fails with EPERM. Only allowed nodes
are listed. Names and UUIDs come from the plugin's mapping file (``/etc/aiconf-gpu/devices``, one line per GPU:
``nvidia<minor> <index> <uuid> <memory MiB> <product>``), mounted into GPU containers; readings for
``--query-gpu`` (utilisation, memory) come from the load files the sandbox's DCGM simulation also reads.

Supported: ``nvidia-smi`` (summary), ``-L``/``--list-gpus``, ``--query-gpu=a,b --format=csv[,noheader][,nounits]``
and ``-i/--id``. With no usable GPU it prints ``No devices were found`` and exits 6, as nvidia-smi does.

Standard library only; runs as ``python3 fake_nvidia_smi.py`` in the sandbox images (``/usr/bin/nvidia-smi``).
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import sys
import time

MAP_FILE = os.environ.get("AICONF_GPU_DEVICES_FILE", "/etc/aiconf-gpu/devices")
LOAD_DIR = os.environ.get("AICONF_GPU_LOAD_DIR", "/run/aiconf-gpu")
DEV_DIR = os.environ.get("AICONF_GPU_DEV_DIR", "/dev")
NVIDIA_MAJOR = 195
DRIVER_VERSION = "580.95.05"
CUDA_VERSION = "13.0"
#: How long a load file counts after its last write (the writer refreshes it every second).
LOAD_FRESH_S = 5.0
#: errno values meaning "the devices cgroup let the open through" (no driver answers behind major 195).
ALLOWED_ERRNOS = (errno.ENXIO, errno.ENODEV)


def read_map(path: str | None = None) -> dict[int, dict]:
    """``{minor: {"index", "uuid", "memory_mib", "name"}}`` from the plugin's mapping file ({} when absent)."""
    path = path or MAP_FILE
    out: dict[int, dict] = {}
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return out
    for line in lines:
        parts = line.split(None, 4)
        if len(parts) < 5 or line.startswith("#") or not parts[0].startswith("nvidia"):
            continue
        try:
            minor = int(parts[0][len("nvidia"):])
            out[minor] = {"index": int(parts[1]), "uuid": parts[2], "memory_mib": int(parts[3]),
                          "name": parts[4].replace("-", " ")}
        except ValueError:
            continue
    return out


def probe_device(path: str) -> str:
    """``allowed`` (the devices cgroup permits it), ``denied`` (EPERM/EACCES) or ``absent`` / ``not-a-gpu``."""
    try:
        st = os.stat(path)
    except OSError:
        return "absent"
    if not stat.S_ISCHR(st.st_mode) or os.major(st.st_rdev) != NVIDIA_MAJOR:
        return "not-a-gpu"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        if e.errno in ALLOWED_ERRNOS:
            return "allowed"
        return "denied"
    os.close(fd)
    return "allowed"


def visible_gpus(dev_dir: str | None = None, map_file: str | None = None) -> list[dict]:
    """The GPUs this process may open, ordered by minor number, each with its mapped index/UUID/name."""
    dev_dir = dev_dir or DEV_DIR
    mapping = read_map(map_file)
    env_uuids = [u for u in os.environ.get("NVIDIA_VISIBLE_DEVICES", "").split(",") if u.startswith("GPU-")]
    gpus = []
    try:
        names = os.listdir(dev_dir)
    except OSError:
        names = []
    for name in sorted(names, key=lambda n: int(n[6:]) if re.fullmatch(r"nvidia\d+", n) else -1):
        if not re.fullmatch(r"nvidia\d+", name):
            continue
        path = os.path.join(dev_dir, name)
        if probe_device(path) != "allowed":
            continue
        minor = os.minor(os.stat(path).st_rdev)
        info = mapping.get(minor)
        if info is None:
            uuid = env_uuids[len(gpus)] if len(gpus) < len(env_uuids) else "unknown"
            info = {"index": minor, "uuid": uuid, "memory_mib": 0, "name": "Simulated GPU"}
        gpus.append({**info, "minor": minor, "path": path})
    for i, g in enumerate(gpus):
        g["local_index"] = i  # nvidia-smi numbers the GPUs a container sees from 0
    return gpus


def read_load(uuid: str, load_dir: str | None = None, now: float | None = None) -> dict:
    """The simulated load on a GPU: ``{"util": %, "fb_used_mib": MiB}`` from its fresh load file, else zeros."""
    load_dir = load_dir or LOAD_DIR
    now = time.time() if now is None else now
    path = os.path.join(load_dir, uuid, "load")
    try:
        st = os.stat(path)
        if now - st.st_mtime > LOAD_FRESH_S:
            return {"util": 0.0, "fb_used_mib": 0.0}
        with open(path) as f:
            doc = json.load(f)
        return {"util": float(doc.get("util", 0)), "fb_used_mib": float(doc.get("fb_used_mib", 0))}
    except (OSError, ValueError):
        return {"util": 0.0, "fb_used_mib": 0.0}


def _field(gpu: dict, key: str, units: bool) -> str:
    load = read_load(gpu["uuid"])
    total = gpu["memory_mib"]
    used = min(total, load["fb_used_mib"]) if total else load["fb_used_mib"]
    values = {
        "index": str(gpu["local_index"]),
        "uuid": gpu["uuid"],
        "name": gpu["name"],
        "gpu_name": gpu["name"],
        "minor_number": str(gpu["minor"]),
        "driver_version": DRIVER_VERSION,
        "pci.bus_id": f"00000000:{0x18 + gpu['index']:02X}:00.0",
        "memory.total": f"{total} MiB" if units else str(total),
        "memory.used": f"{used:.0f} MiB" if units else f"{used:.0f}",
        "memory.free": f"{max(0, total - used):.0f} MiB" if units else f"{max(0, total - used):.0f}",
        "utilization.gpu": f"{load['util']:.0f} %" if units else f"{load['util']:.0f}",
        "temperature.gpu": f"{30 + load['util'] * 0.4:.0f}",
        "power.draw": f"{70 + load['util'] * 6.3:.2f} W" if units else f"{70 + load['util'] * 6.3:.2f}",
    }
    if key not in values:
        raise KeyError(key)
    return values[key]


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    query, fmt, ids, list_mode = None, "", None, False
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("-L", "--list-gpus"):
            list_mode = True
        elif a.startswith("--query-gpu="):
            query = a.split("=", 1)[1]
        elif a.startswith("--format="):
            fmt = a.split("=", 1)[1]
        elif a in ("-i", "--id") and i + 1 < len(args):
            ids = args[i + 1].split(",")
            i += 1
        elif a.startswith("--id="):
            ids = a.split("=", 1)[1].split(",")
        elif a in ("-h", "--help"):
            print(__doc__)
            return 0
        elif a == "--version":
            print(f"NVIDIA-SMI (aiconf sandbox fake) driver {DRIVER_VERSION} CUDA {CUDA_VERSION} -- SIMULATED")
            return 0
        else:
            print(f"nvidia-smi (aiconf fake): unsupported argument {a!r}", file=sys.stderr)
            return 2
        i += 1
    gpus = visible_gpus()
    if ids:
        gpus = [g for g in gpus if str(g["local_index"]) in ids or g["uuid"] in ids]
    if not gpus:
        print("No devices were found")
        return 6
    if list_mode:
        for g in gpus:
            print(f"GPU {g['local_index']}: {g['name']} (UUID: {g['uuid']})")
        return 0
    if query:
        keys = [k.strip() for k in query.split(",") if k.strip()]
        opts = set(fmt.split(",")) if fmt else set()
        if "csv" not in opts:
            print("nvidia-smi (aiconf fake): --query-gpu needs --format=csv", file=sys.stderr)
            return 2
        try:
            rows = [[_field(g, k, "nounits" not in opts) for k in keys] for g in gpus]
        except KeyError as e:
            print(f'Field "{e.args[0]}" is not a valid field to query.', file=sys.stderr)
            return 2
        if "noheader" not in opts:
            print(", ".join(keys))
        for row in rows:
            print(", ".join(row))
        return 0
    print(f"aiconf sandbox nvidia-smi -- SIMULATED GPUs (no driver, no CUDA)   Driver Version: {DRIVER_VERSION}   "
          f"CUDA Version: {CUDA_VERSION}")
    print(f"{'GPU':<4} {'Name':<28} {'UUID':<42} {'Memory-Usage':>20} {'GPU-Util':>9}")
    for g in gpus:
        load = read_load(g["uuid"])
        print(f"{g['local_index']:<4} {g['name']:<28} {g['uuid']:<42} "
              f"{load['fb_used_mib']:>7.0f}MiB / {g['memory_mib']:>6}MiB {load['util']:>8.0f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
