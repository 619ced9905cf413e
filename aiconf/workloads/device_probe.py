#!/usr/bin/env python3
"""Device probe: which accelerator devices this container can see, name and open. Prints one JSON document.

Runs inside the pods/containers of ``secure_accelerator_access`` (and in the runc containers of the real-GPU
validation). Standard library only, Python >= 3.9; NVML and CUDA are reached through ``ctypes`` when their
libraries load, so the probe works in a bare image, in a CUDA image and on a host, and is vendor-tolerant: every
section may be empty, and the device globs, the listing command and the UUID pattern are arguments.

What it records (schema ``aiconf.device_probe/1``):

- ``device_nodes``: nodes matching ``--device-glob`` (default ``/dev/nvidia*``) before any library ran, with type
  and major:minor; ``gpu_nodes``: the subset matching ``--gpu-node-regex`` (default ``/dev/nvidia<N>``);
  ``device_nodes_after``: the same listing after NVML/CUDA/``nvidia-smi`` ran (NVML recreates nodes when it can);
- ``env``: ``NVIDIA_VISIBLE_DEVICES``, ``CUDA_VISIBLE_DEVICES`` and friends;
- ``capabilities``: effective capability bits (CAP_MKNOD, CAP_SYS_ADMIN, ...);
- ``smi``: the listing command (default ``nvidia-smi -L``): found, rc, output, UUIDs parsed;
- ``nvml`` / ``cuda``: loaded, init result, device count and UUIDs;
- ``open_attempts``: ``open(O_RDWR)`` on every GPU node seen and on each ``--try-open PATH[=MAJOR:MINOR]``; a
  missing path with a major:minor is first created with ``mknod`` when the container has CAP_MKNOD (the devices
  cgroup, not the missing node, must be what stops it); nodes the probe created are removed afterwards;
- ``uuids``: the union of the UUIDs seen by the listing command, NVML and CUDA.

Usage: ``python3 device_probe.py --label t2 --try-open /dev/nvidia1=195:1 [--out FILE]``.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import glob
import json
import os
import re
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time

SCHEMA = "aiconf.device_probe/1"
DEFAULT_UUID_REGEX = r"\b((?:GPU|MIG)-[0-9A-Za-z][0-9A-Za-z-]{7,})"
ENV_KEYS = ("NVIDIA_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES", "NVIDIA_REQUIRE_CUDA",
            "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL")
CAPS = {"CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_SYS_RAWIO": 17, "CAP_SYS_ADMIN": 21, "CAP_MKNOD": 27}


def _errno_name(code: int | None) -> str:
    return errno.errorcode.get(code or 0, str(code))


def _trim(value: str, limit: int = 200) -> str:
    return value if len(value) <= limit else value[:limit] + f"... ({len(value)} chars)"


def list_nodes(patterns: list[str]) -> list[dict]:
    """Device nodes (and other entries) matching the globs, sorted, with type and numbers for char/block devices."""
    out, seen = [], set()
    for pat in patterns:
        for path in sorted(glob.glob(pat)):
            if path in seen:
                continue
            seen.add(path)
            entry = {"path": path}
            try:
                st = os.lstat(path)
                if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                    entry.update(type="char" if stat.S_ISCHR(st.st_mode) else "block",
                                 major=os.major(st.st_rdev), minor=os.minor(st.st_rdev), mode=oct(st.st_mode & 0o7777))
                elif stat.S_ISDIR(st.st_mode):
                    entry["type"] = "dir"
                else:
                    entry["type"] = "other"
            except OSError as exc:
                entry.update(type="error", error=f"{_errno_name(exc.errno)}: {exc.strerror}")
            out.append(entry)
    return out


def capabilities() -> dict:
    """Effective capabilities from /proc/self/status (Linux only; empty elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    bits = int(line.split()[1], 16)
                    return {"effective_hex": f"{bits:016x}", **{k.lower(): bool(bits >> v & 1) for k, v in CAPS.items()}}
    except OSError:
        pass
    return {}


def run_listing(command: str, uuid_regex: str, timeout: float) -> dict:
    """Run the device-listing command (``nvidia-smi -L`` by default); absent binary -> found False, rc None."""
    argv = shlex.split(command)
    exe = shutil.which(argv[0]) if argv else None
    if not exe:
        # the driver folder of GPU images is often not on PATH
        for d in ("/usr/local/nvidia/bin", "/usr/bin", "/usr/local/bin"):
            if argv and os.access(os.path.join(d, argv[0]), os.X_OK):
                exe = os.path.join(d, argv[0])
                break
    res = {"command": command, "found": bool(exe), "path": exe, "rc": None, "stdout": "", "stderr": "", "uuids": [],
           "duration_s": None}
    if not exe:
        return res
    t0 = time.monotonic()
    try:
        p = subprocess.run([exe, *argv[1:]], capture_output=True, text=True, timeout=timeout, check=False)
        res.update(rc=p.returncode, stdout=p.stdout[-4000:], stderr=p.stderr[-2000:])
        if p.returncode == 0:
            res["uuids"] = sorted(set(re.findall(uuid_regex, p.stdout)))
    except subprocess.TimeoutExpired:
        res.update(rc=-1, stderr=f"timed out after {timeout} s")
    except OSError as exc:
        res.update(rc=-1, stderr=f"{_errno_name(exc.errno)}: {exc.strerror}")
    res["duration_s"] = round(time.monotonic() - t0, 3)
    return res


def _load(names: list[str]):
    last = None
    for n in names:
        try:
            return ctypes.CDLL(n), None
        except OSError as exc:
            last = str(exc)
    return None, last


def probe_nvml() -> dict:
    """NVML through ctypes: init result, driver version, devices (index, UUID, name, minor)."""
    lib, err = _load(["libnvidia-ml.so.1", "/usr/local/nvidia/lib64/libnvidia-ml.so.1", "libnvidia-ml.so"])
    res = {"loaded": lib is not None, "error": err, "init_rc": None, "driver_version": None, "count": None,
           "devices": [], "uuids": []}
    if lib is None:
        return res
    try:
        rc = lib.nvmlInit_v2()
        res["init_rc"] = rc
        if rc != 0:
            res["error"] = _nvml_error(lib, rc)
            return res
        buf = ctypes.create_string_buffer(96)
        if lib.nvmlSystemGetDriverVersion(buf, 96) == 0:
            res["driver_version"] = buf.value.decode()
        count = ctypes.c_uint()
        rc = lib.nvmlDeviceGetCount_v2(ctypes.byref(count))
        if rc != 0:
            res["error"] = _nvml_error(lib, rc)
            return res
        res["count"] = count.value
        for i in range(count.value):
            dev = {"index": i}
            handle = ctypes.c_void_p()
            rc = lib.nvmlDeviceGetHandleByIndex_v2(i, ctypes.byref(handle))
            if rc != 0:
                dev["error"] = _nvml_error(lib, rc)
                res["devices"].append(dev)
                continue
            if lib.nvmlDeviceGetUUID(handle, buf, 96) == 0:
                dev["uuid"] = buf.value.decode()
            if lib.nvmlDeviceGetName(handle, buf, 96) == 0:
                dev["name"] = buf.value.decode()
            minor = ctypes.c_uint()
            if lib.nvmlDeviceGetMinorNumber(handle, ctypes.byref(minor)) == 0:
                dev["minor"] = minor.value
            res["devices"].append(dev)
        res["uuids"] = sorted({d["uuid"] for d in res["devices"] if d.get("uuid")})
    except (AttributeError, OSError) as exc:
        res["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        try:
            lib.nvmlShutdown()
        except (AttributeError, OSError):
            pass
    return res


def _nvml_error(lib, rc: int) -> str:
    try:
        lib.nvmlErrorString.restype = ctypes.c_char_p
        return f"{rc}: {lib.nvmlErrorString(rc).decode()}"
    except (AttributeError, OSError):
        return str(rc)


def probe_cuda() -> dict:
    """The CUDA driver API through ctypes: cuInit result, device count, UUIDs (respects CUDA_VISIBLE_DEVICES)."""
    lib, err = _load(["libcuda.so.1", "/usr/local/nvidia/lib64/libcuda.so.1", "libcuda.so"])
    res = {"loaded": lib is not None, "error": err, "init_rc": None, "count": None, "uuids": [], "names": []}
    if lib is None:
        return res
    try:
        rc = lib.cuInit(0)
        res["init_rc"] = rc
        if rc != 0:
            res["error"] = _cuda_error(lib, rc)
            return res
        count = ctypes.c_int()
        rc = lib.cuDeviceGetCount(ctypes.byref(count))
        if rc != 0:
            res["error"] = _cuda_error(lib, rc)
            return res
        res["count"] = count.value
        for i in range(count.value):
            dev = ctypes.c_int()
            if lib.cuDeviceGet(ctypes.byref(dev), i) != 0:
                continue
            raw = (ctypes.c_ubyte * 16)()
            fn = getattr(lib, "cuDeviceGetUuid_v2", None) or lib.cuDeviceGetUuid
            if fn(raw, dev) == 0:
                h = bytes(raw).hex()
                res["uuids"].append(f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
            name = ctypes.create_string_buffer(128)
            if lib.cuDeviceGetName(name, 128, dev) == 0:
                res["names"].append(name.value.decode())
    except (AttributeError, OSError) as exc:
        res["error"] = f"{type(exc).__name__}: {exc}"
    return res


def _cuda_error(lib, rc: int) -> str:
    try:
        s = ctypes.c_char_p()
        if lib.cuGetErrorName(rc, ctypes.byref(s)) == 0 and s.value:
            return f"{rc}: {s.value.decode()}"
    except (AttributeError, OSError):
        pass
    return str(rc)


def try_open(path: str, numbers: tuple[int, int] | None, can_mknod: bool, created: list[str]) -> dict:
    """Open ``path`` read-write; if absent and ``numbers`` given, mknod it first when CAP_MKNOD allows."""
    att = {"path": path, "exists": os.path.exists(path), "mknod": None, "open": None}
    target = path
    if not att["exists"] and numbers is not None:
        att["mknod"] = {"attempted": can_mknod, "ok": False, "errno": None, "node": None}
        if can_mknod:
            for cand in (path, os.path.join(tempfile.gettempdir(), "aiconf-probe-nodes", os.path.basename(path))):
                try:
                    os.makedirs(os.path.dirname(cand), exist_ok=True)
                    os.mknod(cand, 0o666 | stat.S_IFCHR, os.makedev(*numbers))
                    created.append(cand)
                    att["mknod"].update(ok=True, node=cand)
                    target = cand
                    break
                except OSError as exc:
                    att["mknod"].update(errno=_errno_name(exc.errno), error=exc.strerror, node=cand)
        else:
            att["mknod"]["error"] = "no CAP_MKNOD"
    if not os.path.exists(target):
        att["open"] = {"ok": False, "errno": "ENOENT", "error": "no such node"}
        return att
    try:
        fd = os.open(target, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
        os.close(fd)
        att["open"] = {"ok": True, "errno": None, "error": None, "node": target}
    except OSError as exc:
        att["open"] = {"ok": False, "errno": _errno_name(exc.errno), "error": exc.strerror, "node": target}
    return att


def parse_try_open(spec: str) -> tuple[str, tuple[int, int] | None]:
    path, _, nums = spec.partition("=")
    if not nums:
        return path, None
    major, _, minor = nums.partition(":")
    return path, (int(major), int(minor))


def probe(args: argparse.Namespace) -> dict:
    t0 = time.monotonic()
    doc: dict = {"schema": SCHEMA, "label": args.label or os.environ.get("AICONF_PROBE_LABEL", ""),
                 "hostname": socket.gethostname(), "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                 "uid": os.getuid() if hasattr(os, "getuid") else None, "python": sys.version.split()[0]}
    doc["env"] = {k: _trim(os.environ[k]) for k in ENV_KEYS if k in os.environ}
    doc["capabilities"] = capabilities()
    # list first: the driver libraries below may recreate nodes when they can (root + CAP_MKNOD)
    doc["device_nodes"] = list_nodes(args.device_glob)
    gpu_re = re.compile(args.gpu_node_regex)
    doc["gpu_nodes"] = [n["path"] for n in doc["device_nodes"] if gpu_re.match(n["path"]) and n.get("type") == "char"]
    proc = "/proc/driver/nvidia/gpus"
    doc["proc_driver_gpus"] = sorted(os.listdir(proc)) if os.path.isdir(proc) else []
    doc["smi"] = run_listing(args.smi, args.uuid_regex, args.timeout) if args.smi else None
    doc["nvml"] = probe_nvml() if args.nvml else None
    doc["cuda"] = probe_cuda() if args.cuda else None
    doc["device_nodes_after"] = list_nodes(args.device_glob)
    created: list[str] = []
    can_mknod = bool(doc["capabilities"].get("cap_mknod"))
    attempts = [try_open(p, None, can_mknod, created) for p in doc["gpu_nodes"]]
    for spec in args.try_open:
        path, numbers = parse_try_open(spec)
        if path not in doc["gpu_nodes"]:
            attempts.append(try_open(path, numbers, can_mknod, created))
    doc["open_attempts"] = attempts
    for node in created:
        try:
            os.unlink(node)
        except OSError:
            pass
    uuids = set()
    for section in ("smi", "nvml", "cuda"):
        if doc.get(section):
            uuids.update(doc[section].get("uuids") or [])
    doc["uuids"] = sorted(uuids)
    doc["duration_s"] = round(time.monotonic() - t0, 3)
    return doc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--label", default="", help="name of this pod/container in the visibility matrix")
    ap.add_argument("--device-glob", action="append", default=None, help="device node glob (repeatable); default /dev/nvidia*")
    ap.add_argument("--gpu-node-regex", default=r"^/dev/nvidia\d+$", help="which listed nodes are accelerators")
    ap.add_argument("--smi", default="nvidia-smi -L", help="device-listing command ('' to skip)")
    ap.add_argument("--uuid-regex", default=DEFAULT_UUID_REGEX, help="how UUIDs look in the listing output")
    ap.add_argument("--try-open", action="append", default=[], metavar="PATH[=MAJOR:MINOR]",
                    help="also try to open PATH, creating it with mknod first when absent and CAP_MKNOD is held")
    ap.add_argument("--no-nvml", dest="nvml", action="store_false")
    ap.add_argument("--no-cuda", dest="cuda", action="store_false")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds for the listing command")
    ap.add_argument("--out", default="", help="write the JSON here instead of stdout")
    args = ap.parse_args(argv)
    args.device_glob = args.device_glob or ["/dev/nvidia*"]
    text = json.dumps(probe(args), indent=1, sort_keys=False)
    if args.out:
        tmp = args.out + ".tmp"
        with open(tmp, "w") as f:
            f.write(text + "\n")
        os.replace(tmp, args.out)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
