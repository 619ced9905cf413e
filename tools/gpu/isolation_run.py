#!/usr/bin/env python3
"""Secure accelerator access on real GPUs: the device probe in runc containers granted devices like a device plugin.

Runs on the accelerator machine as root, with Debian's runc carried over (``tools/gpu/fetch_runc.sh``). Each
container gets a bundle whose rootfs binds the host's ``/usr``, ``/lib*``, ``/etc``, ``/opt`` and the driver folder
``/usr/local/nvidia`` read-only (so it has Python, ``nvidia-smi`` and the driver libraries like a CUDA image with the
NVIDIA toolkit's mounts), the repository read-only at ``/aiconf`` and a results folder at ``/results``. Devices are
granted the way the NVIDIA device plugin + container runtime grant them: the device nodes ``/dev/nvidiactl``,
``/dev/nvidia-uvm``, ``/dev/nvidia-uvm-tools`` and ``/dev/nvidia<N>`` created in the container, and a devices-cgroup
rule set that denies everything and allows exactly those (runc adds its usual defaults: null, zero, tty, ...,
and mknod of any node). Capabilities are containerd's CRI default set, which includes CAP_MKNOD, so every container
can create nodes and only the devices cgroup stops it from opening them.

Scenarios (``--gpus`` from ``/dev/nvidia<N>`` on the host):

- T1 ``t1-none`` and ``t1-env-all``: no devices; the second with ``NVIDIA_VISIBLE_DEVICES=all`` in its env;
- T2 ``t2-gpu0``: ``nvidia0``;
- T3 ``t3-pod-a`` / ``t3-pod-b``: ``nvidia0`` and ``nvidia1`` side by side, each trying the other's node (mknod +
  open); needs two GPUs, else recorded as not run;
- T4 ``t4-ctr-gpu`` / ``t4-ctr-nogpu``: two containers of one "pod": the second joins the first's network, IPC and
  UTS namespaces (what a pod's containers share), only the first has a device.

Every container runs ``aiconf/workloads/device_probe.py``; the JSON goes through ``aiconf.accel.isolation``.
Writes ``isolation.json``, ``visibility_matrix.png``, ``probes/<label>.json``, ``bundles/<label>.json`` (configs),
``runc-<label>.log`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from aiconf.accel import isolation

#: containerd's CRI default capabilities (pkg/oci/spec.go: "defaultUnixCaps"), incl. CAP_MKNOD.
CRI_DEFAULT_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
                    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
                    "CAP_KILL", "CAP_AUDIT_WRITE"]
MASKED = ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
          "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"]
READONLY = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


def char_dev(path: str) -> dict:
    st = os.stat(path)
    return {"path": path, "type": "c", "major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev), "fileMode": 0o666,
            "uid": 0, "gid": 0}


def host_gpus() -> list[dict]:
    nodes = [p for p in os.listdir("/dev") if re.fullmatch(r"nvidia\d+", p)]
    return [char_dev(f"/dev/{p}") for p in sorted(nodes, key=lambda p: int(p[6:]))]


def control_nodes() -> list[dict]:
    return [char_dev(p) for p in ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools") if os.path.exists(p)]


def bind(dst: str, src: str | None = None, ro: bool = True, recursive: bool = True) -> dict:
    opts = ["rbind" if recursive else "bind", "nosuid"] + (["ro"] if ro else ["rw"])
    return {"destination": dst, "type": "bind", "source": src or dst, "options": opts}


def python_in_container() -> str:
    for cand in ("/usr/bin/python3", os.path.realpath(sys.executable)):
        real = os.path.realpath(cand)
        if os.path.exists(real) and real.startswith(("/usr/", "/opt/")):
            return cand
    return "/usr/bin/python3"


def make_bundle(root: Path, label: str, *, devices: list[dict], env: dict[str, str], args: list[str],
                results: Path, join_pid: int | None = None) -> Path:
    """A runc bundle (config.json + empty rootfs) for one container; returns its folder."""
    bundle = root / label
    rootfs = bundle / "rootfs"
    if bundle.exists():
        shutil.rmtree(bundle)
    rootfs.mkdir(parents=True)
    mounts = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]},
        bind("/usr"), bind("/etc"),
    ]
    for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        host = Path("/") / top
        if host.is_symlink():
            (rootfs / top).symlink_to(os.readlink(host))
        elif host.is_dir():
            mounts.append(bind(f"/{top}"))
    if Path("/opt").is_dir():
        mounts.append(bind("/opt"))
    if Path("/usr/local/nvidia").is_dir():
        mounts.append(bind("/usr/local/nvidia"))
    mounts += [bind("/aiconf", str(REPO)), bind("/results", str(results), ro=False)]
    rules = [{"allow": False, "access": "rwm"}] + [
        {"allow": True, "type": "c", "major": d["major"], "minor": d["minor"], "access": "rwm"} for d in devices]
    namespaces = [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount", "cgroup")]
    if join_pid is not None:  # containers of one pod share network, IPC and UTS namespaces
        for ns in namespaces:
            if ns["type"] in ("network", "ipc", "uts"):
                ns["path"] = f"/proc/{join_pid}/ns/" + ("net" if ns["type"] == "network" else ns["type"])
    config = {
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": False, "user": {"uid": 0, "gid": 0}, "args": args, "cwd": "/",
            "env": [f"{k}={v}" for k, v in {
                "PATH": "/usr/local/nvidia/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "LD_LIBRARY_PATH": "/usr/local/nvidia/lib64:/usr/local/nvidia/lib", "PYTHONDONTWRITEBYTECODE": "1",
                "AICONF_PROBE_LABEL": label, **env}.items()],
            "capabilities": {k: CRI_DEFAULT_CAPS for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": False},
        **({} if join_pid is not None else {"hostname": label}),  # a joined UTS namespace keeps the pod's name
        "mounts": mounts,
        "linux": {
            "devices": devices,
            "resources": {"devices": rules},
            "cgroupsPath": f"/aiconf-gpu/{label}",
            "namespaces": namespaces,
            "maskedPaths": MASKED,
            "readonlyPaths": READONLY,
        },
    }
    (bundle / "config.json").write_text(json.dumps(config, indent=1))
    return bundle


class Runc:
    def __init__(self, binary: str, libdir: str | None, state: Path, logdir: Path):
        self.binary, self.state, self.logdir = binary, state, logdir
        self.env = {**os.environ}
        if libdir:
            self.env["LD_LIBRARY_PATH"] = libdir + (":" + self.env["LD_LIBRARY_PATH"] if self.env.get("LD_LIBRARY_PATH") else "")
        self.no_pivot = False

    def cmd(self, *a: str) -> list[str]:
        return [self.binary, "--root", str(self.state), *a]

    def run(self, label: str, bundle: Path, *, detach: bool = False, timeout: float = 120) -> int:
        extra = ["--no-pivot"] if self.no_pivot else []
        argv = self.cmd("run", *(["-d", "--pid-file", str(bundle / "pid")] if detach else []), *extra, "--bundle", str(bundle), label)
        with open(self.logdir / f"runc-{label}.log", "a") as log:
            log.write(f"$ {' '.join(argv)}\n")
            log.flush()
            try:
                rc = subprocess.run(argv, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=log, timeout=timeout,
                                    check=False).returncode
            except subprocess.TimeoutExpired:
                rc = -1
                log.write("timed out\n")
            log.write(f"rc {rc}\n")
        return rc

    def pid(self, bundle: Path) -> int | None:
        try:
            return int((bundle / "pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def delete(self, label: str) -> None:
        subprocess.run(self.cmd("kill", label, "KILL"), env=self.env, capture_output=True, check=False)
        time.sleep(0.2)
        subprocess.run(self.cmd("delete", "-f", label), env=self.env, capture_output=True, check=False)

    def version(self) -> str:
        return subprocess.run([self.binary, "--version"], env=self.env, capture_output=True, text=True, check=False).stdout.strip()


def wait_for(paths: list[Path], timeout: float) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if all(p.exists() for p in paths):
            return True
        time.sleep(0.2)
    return False


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--runc", default=None, help="the runc binary (required unless --rejudge)")
    ap.add_argument("--rejudge", default=None, metavar="ISOLATION_JSON",
                    help="judge the probes recorded in an earlier isolation.json again; runs no container")
    ap.add_argument("--libdir", default=None, help="where the carried libseccomp.so.2 lies")
    ap.add_argument("--work", default="/tmp/aiconf-runc")
    ap.add_argument("--fake-gpus", default="", metavar="MAJ:MIN,...",
                    help="local dry run of the mechanics only: stand-in char devices as /dev/nvidia<N> (never evidence)")
    args = ap.parse_args()
    out = Path(args.out)
    if args.rejudge:
        return rejudge(Path(args.rejudge), out)
    if not args.runc:
        ap.error("--runc is required")
    (out / "probes").mkdir(parents=True, exist_ok=True)
    (out / "bundles").mkdir(parents=True, exist_ok=True)
    work = Path(args.work)
    results = work / "results"
    for d in (work / "bundles", results, work / "state"):
        d.mkdir(parents=True, exist_ok=True)
    runc = Runc(args.runc, args.libdir, work / "state", out)
    gpus, ctl = host_gpus(), control_nodes()
    if args.fake_gpus:
        gpus, ctl = [], []
        for i, mm in enumerate(args.fake_gpus.split(",")):
            major, minor = (int(x) for x in mm.split(":"))
            gpus.append({"path": f"/dev/nvidia{i}", "type": "c", "major": major, "minor": minor, "fileMode": 0o666,
                         "uid": 0, "gid": 0})
    py = python_in_container()
    probe = "/aiconf/aiconf/workloads/device_probe.py"
    all_targets = [f"{g['path']}={g['major']}:{g['minor']}" for g in gpus]
    ctl_target = [f"{c['path']}={c['major']}:{c['minor']}" for c in ctl if c["path"] == "/dev/nvidiactl"]

    def probe_args(label: str, hold: float = 0.0) -> list[str]:
        cmd = [py, probe, "--label", label, "--out", f"/results/{label}.json"]
        for t in all_targets + ctl_target:
            cmd += ["--try-open", t]
        if hold:
            return ["/bin/sh", "-c", " ".join(cmd) + f"; sleep {hold}"]
        return cmd

    print(f"runc: {runc.version().splitlines()[0] if runc.version() else '?'}; GPUs: {[g['path'] for g in gpus]}; python: {py}",
          flush=True)
    # smoke test: a container that only runs `true`; retry without pivot_root where the rootfs cannot pivot
    smoke = make_bundle(work / "bundles", "smoke", devices=[], env={}, args=["/bin/true"], results=results)
    rc = runc.run("smoke", smoke)
    if rc != 0:
        runc.delete("smoke")
        runc.no_pivot = True
        rc = runc.run("smoke", smoke)
    runc.delete("smoke")
    if rc != 0:
        print("runc cannot start a container here; see runc-smoke.log", flush=True)
        return 2

    scenarios: dict[str, dict] = {}

    def grant(gpu: dict | None) -> list[dict]:
        return (ctl + [gpu]) if gpu else []

    def record(label: str, gpu: dict | None, env: dict[str, str], group: str, bundle: Path, **extra: object) -> None:
        scenarios[label] = {"gpu": gpu["path"] if gpu else None, "env": env, "group": group,
                            "devices": [d["path"] for d in grant(gpu)], "caps": "containerd CRI default (incl. CAP_MKNOD)",
                            **extra}
        shutil.copy(bundle / "config.json", out / "bundles" / f"{label}.json")

    # T1: no devices, with and without the env-var bypass
    for label, env in (("t1-none", {}), ("t1-env-all", {"NVIDIA_VISIBLE_DEVICES": "all", "NVIDIA_DRIVER_CAPABILITIES": "all"})):
        b = make_bundle(work / "bundles", label, devices=[], env=env, args=probe_args(label), results=results)
        record(label, None, env, label, b)
        runc.run(label, b)
        runc.delete(label)
    # T2: one GPU
    if gpus:
        b = make_bundle(work / "bundles", "t2-gpu0", devices=grant(gpus[0]), env={}, args=probe_args("t2-gpu0"), results=results)
        record("t2-gpu0", gpus[0], {}, "t2", b)
        runc.run("t2-gpu0", b)
        runc.delete("t2-gpu0")
    # T3: two "pods" side by side, one GPU each
    t3_run = len(gpus) >= 2
    if t3_run:
        pair = (("t3-pod-a", gpus[0]), ("t3-pod-b", gpus[1]))
        for label, g in pair:
            b = make_bundle(work / "bundles", label, devices=grant(g), env={}, args=probe_args(label, hold=30), results=results)
            record(label, g, {}, "t3", b)
            runc.run(label, b, detach=True)
        wait_for([results / f"{lbl}.json" for lbl, _ in pair], 90)
        for label, _ in pair:
            runc.delete(label)
    # T4: two containers of one pod sharing net/ipc/uts; only the first has a GPU
    if gpus:
        g = gpus[-1]
        b1 = make_bundle(work / "bundles", "t4-ctr-gpu", devices=grant(g), env={}, args=probe_args("t4-ctr-gpu", hold=30),
                         results=results)
        record("t4-ctr-gpu", g, {}, "t4", b1, pod="t4")
        runc.run("t4-ctr-gpu", b1, detach=True)
        pid = runc.pid(b1)
        b2 = make_bundle(work / "bundles", "t4-ctr-nogpu", devices=[], env={}, args=probe_args("t4-ctr-nogpu"),
                         results=results, join_pid=pid)
        record("t4-ctr-nogpu", None, {}, "t4", b2, pod="t4", joins=f"network/ipc/uts of t4-ctr-gpu (pid {pid})")
        runc.run("t4-ctr-nogpu", b2)
        wait_for([results / "t4-ctr-gpu.json"], 60)
        runc.delete("t4-ctr-nogpu")
        runc.delete("t4-ctr-gpu")

    # host baseline (no container): what a process outside any container sees
    subprocess.run([sys.executable, str(REPO / "aiconf/workloads/device_probe.py"), "--label", "host", "--out",
                    str(results / "host.json")], timeout=120, check=False)

    docs = {}
    for label in [*scenarios, "host"]:
        p = results / f"{label}.json"
        if p.exists():
            docs[label] = json.loads(p.read_text())
            shutil.copy(p, out / "probes" / f"{label}.json")
    meta = {"runc": runc.version(), "no_pivot": runc.no_pivot, "python_in_container": py,
            "host_gpus": [g["path"] for g in gpus], "control_nodes": [c["path"] for c in ctl], "t3_run": t3_run}
    judge_and_write(out, scenarios, docs, meta)
    return 0


def judge_and_write(out: Path, scenarios: dict[str, dict], docs: dict[str, dict], meta: dict) -> dict:
    """Probe documents -> aiconf.accel.isolation verdicts, ``isolation.json`` and ``visibility_matrix.png``."""
    granted = {k: 1 if v.get("gpu") else 0 for k, v in scenarios.items()}
    groups = {k: v["group"] for k, v in scenarios.items()}
    probes = {k: isolation.load_probe(v, k) for k, v in docs.items() if k != "host"}
    order = [k for k in scenarios if k in probes]
    matrix = isolation.build_visibility_matrix([probes[k] for k in order], granted, groups)
    findings = [
        isolation.judge_no_request([probes[k] for k in ("t1-none", "t1-env-all") if k in probes]),
        isolation.judge_single_request(probes.get("t2-gpu0")),
        isolation.judge_cross_pod(probes.get("t3-pod-a"), probes.get("t3-pod-b"), same_node=True),
        isolation.judge_multi_container(probes.get("t4-ctr-gpu"), probes.get("t4-ctr-nogpu")),
        isolation.judge_matrix(matrix),
    ]
    missing = [k for k in scenarios if k not in probes]
    result = {
        "what": "secure_accelerator_access on real GPUs: device probe in runc containers, aiconf.accel.isolation verdicts",
        **meta,
        "host_uuids": docs.get("host", {}).get("uuids", []),
        "scenarios": scenarios, "probes_missing": missing,
        "findings": [f.to_dict() for f in findings], "matrix": matrix.to_dict(), "probes": docs,
    }
    (out / "isolation.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * max(3, len(matrix.rows)) + 1.3))
    isolation.draw_visibility_matrix(ax, matrix)
    fig.tight_layout()
    fig.savefig(out / "visibility_matrix.png", dpi=110)
    plt.close(fig)

    print("\n== secure accelerator access ==")
    for lbl in order:
        print("  " + probes[lbl].short())
    for f in findings:
        print(f"{f.verdict:8} {f.id:34} {f.summary}")
    if missing:
        print(f"probes missing: {missing} (see runc-<label>.log)")
    return result


def rejudge(previous: Path, out: Path) -> int:
    """Judge the probe documents of an earlier ``isolation.json`` again with the current logic (no containers run)."""
    prev = json.loads(previous.read_text())
    out.mkdir(parents=True, exist_ok=True)
    keep = ("runc", "no_pivot", "python_in_container", "host_gpus", "control_nodes", "t3_run")
    meta = {k: prev.get(k) for k in keep} | {"rejudged_from": str(previous)}
    judge_and_write(out, prev["scenarios"], prev["probes"], meta)
    return 0

if __name__ == "__main__":
    sys.exit(main())
