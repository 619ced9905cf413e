#!/usr/bin/env python3
"""A SIMULATED DCGM exporter for the sandbox's fake GPUs (there is no GPU, no DCGM, no NVML behind it).

It exists so the toolkit's accelerator-metrics code can be exercised end to end in the sandbox: a pod on the real
node serves ``/metrics`` in dcgm-exporter's text format, with its metric names and per-GPU labels, and the values
move with what pods do with their GPU. Every family's HELP text starts with ``SIMULATED`` and
``aiconf_dcgm_sim_info{simulated="true"}`` says plainly which exporter this is.

Two commands, standard library only:

``serve``: the exporter (the sandbox runs it as a DaemonSet on its real node, :mod:`aiconf.sandbox.realnode`).
Reads the fake device plugin's folder (mounted read-only; see :mod:`aiconf.sandbox.deviceplugin`):

- ``devices``: ``nvidia<minor> <index> <uuid> <memory MiB> <product>`` per GPU (the GPUs to report);
- ``allocations.json``: which pod/namespace/container holds which GPU, as the kubelet's pod-resources API says
  (dcgm-exporter's ``--kubernetes`` mode gets the same from the same API), giving the ``pod``, ``namespace`` and
  ``container`` labels of allocated GPUs;
- ``load/<uuid>/load``: the load a workload reports on its GPU (JSON ``{"util": %, "fb_used_mib": MiB}``), counted
  while fresh (written within the last 5 s). No load file: the GPU idles (0 %, 0 MiB used).

Labels follow dcgm-exporter: ``gpu`` (index), ``UUID``, ``device`` (``nvidia<minor>``), ``modelName``,
``Hostname``, ``pci_bus_id``, ``DCGM_FI_DRIVER_VERSION``. Families: ``DCGM_FI_DEV_GPU_UTIL``,
``DCGM_FI_DEV_MEM_COPY_UTIL``, ``DCGM_FI_DEV_FB_USED``/``_FB_FREE`` (MiB), ``DCGM_FI_DEV_GPU_TEMP`` (degC),
``DCGM_FI_DEV_POWER_USAGE`` (W), ``DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION`` (mJ, counter), ``DCGM_FI_DEV_SM_CLOCK``
(MHz), ``DCGM_FI_DEV_PCIE_TX_THROUGHPUT``/``_RX_THROUGHPUT`` (KB/s). Derived values are simple functions of
utilisation (temperature 30 + 0.4 x util, power 70 + 6.3 x util W, ...), stated here so nobody reads them as
measurements.

``load``: run inside a GPU container to make "its" GPUs busy: for every ``/dev/nvidiaN`` this container may open
(the same devices-cgroup test as the fake nvidia-smi) it writes the load file in the folder the device plugin
mounted for that GPU (``/run/aiconf-gpu/<uuid>/``), refreshing it every second for ``--seconds``, then removes it.
A container without the GPU has neither the device nor the folder, so it cannot move another pod's GPU.

Run: ``python3 -m aiconf.workloads.dcgm_sim serve --port 9400 --gpu-dir /var/lib/aiconf-gpu`` (``--once`` prints
one exposition), ``python3 -m aiconf.workloads.dcgm_sim load --util 80 --fb-used-mib 20000 --seconds 60``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

try:  # one implementation of "which GPUs may this container open", shared with the fake nvidia-smi
    from aiconf.workloads.fake_nvidia_smi import read_load, read_map, visible_gpus
except ImportError:  # run as a copied file beside fake_nvidia_smi.py
    from fake_nvidia_smi import read_load, read_map, visible_gpus  # type: ignore[no-redef]

DRIVER_VERSION = "580.95.05"
LOAD_ROOT = "/run/aiconf-gpu"

#: (family, type, help, unit) in the order dcgm-exporter's default counters list them.
FAMILIES = (
    ("DCGM_FI_DEV_SM_CLOCK", "gauge", "SM clock frequency (in MHz)."),
    ("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C)."),
    ("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W)."),
    ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "counter", "Total energy consumption since boot (in mJ)."),
    ("DCGM_FI_DEV_PCIE_TX_THROUGHPUT", "gauge", "Total number of bytes transmitted through PCIe TX (in KB) via NVML."),
    ("DCGM_FI_DEV_PCIE_RX_THROUGHPUT", "gauge", "Total number of bytes received through PCIe RX (in KB) via NVML."),
    ("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %)."),
    ("DCGM_FI_DEV_MEM_COPY_UTIL", "gauge", "Memory utilization (in %)."),
    ("DCGM_FI_DEV_FB_FREE", "gauge", "Framebuffer memory free (in MiB)."),
    ("DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB)."),
)


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Simulator:
    """Readings for the GPUs in ``gpu_dir``; integrates energy between scrapes."""

    def __init__(self, gpu_dir: str, hostname: str):
        self.gpu_dir, self.hostname = gpu_dir, hostname
        self.energy_mj: dict[str, float] = {}
        self.last_t: float | None = None
        self.lock = threading.Lock()
        self.started = time.time()

    def gpus(self) -> list[dict]:
        mapping = read_map(os.path.join(self.gpu_dir, "devices"))
        return [{**info, "minor": minor} for minor, info in sorted(mapping.items(), key=lambda kv: kv[1]["index"])]

    def allocations(self) -> dict[str, dict]:
        try:
            with open(os.path.join(self.gpu_dir, "allocations.json")) as f:
                doc = json.load(f)
            return doc if isinstance(doc, dict) else {}
        except (OSError, ValueError):
            return {}

    def readings(self, now: float | None = None) -> list[tuple[dict, dict[str, float]]]:
        now = time.time() if now is None else now
        out = []
        with self.lock:
            dt = 0.0 if self.last_t is None else max(0.0, now - self.last_t)
            self.last_t = now
            for g in self.gpus():
                load = read_load(g["uuid"], os.path.join(self.gpu_dir, "load"), now)
                util = max(0.0, min(100.0, load["util"]))
                total = float(g["memory_mib"])
                used = max(0.0, min(total, load["fb_used_mib"])) if total else load["fb_used_mib"]
                power = 70.0 + 6.3 * util
                self.energy_mj[g["uuid"]] = self.energy_mj.get(g["uuid"], 0.0) + power * dt * 1000.0
                out.append((g, {
                    "DCGM_FI_DEV_SM_CLOCK": 1980.0 if util > 0 else 345.0,
                    "DCGM_FI_DEV_GPU_TEMP": round(30.0 + 0.4 * util),
                    "DCGM_FI_DEV_POWER_USAGE": round(power, 3),
                    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": round(self.energy_mj[g["uuid"]]),
                    "DCGM_FI_DEV_PCIE_TX_THROUGHPUT": round(util * 120.0),
                    "DCGM_FI_DEV_PCIE_RX_THROUGHPUT": round(util * 240.0),
                    "DCGM_FI_DEV_GPU_UTIL": round(util),
                    "DCGM_FI_DEV_MEM_COPY_UTIL": round(util * 0.4),
                    "DCGM_FI_DEV_FB_FREE": round(total - used) if total else 0,
                    "DCGM_FI_DEV_FB_USED": round(used),
                }))
        return out

    def exposition(self, now: float | None = None) -> str:
        rows = self.readings(now)
        alloc = self.allocations()
        lines = [
            "# HELP aiconf_dcgm_sim_info SIMULATED: aiconf's DCGM exporter simulation for the sandbox's fake GPUs "
            "(no GPU, no DCGM, no NVML).",
            "# TYPE aiconf_dcgm_sim_info gauge",
            f'aiconf_dcgm_sim_info{{simulated="true",Hostname="{_esc(self.hostname)}",gpus="{len(rows)}"}} 1',
        ]
        label_sets = []
        for g, _ in rows:
            labels = {
                "gpu": str(g["index"]), "UUID": g["uuid"], "pci_bus_id": f"00000000:{0x18 + g['index']:02X}:00.0",
                "device": f"nvidia{g['minor']}", "modelName": g["name"], "Hostname": self.hostname,
                "DCGM_FI_DRIVER_VERSION": DRIVER_VERSION,
            }
            who = alloc.get(g["uuid"])
            if who:
                labels.update(container=who.get("container", ""), namespace=who.get("namespace", ""),
                              pod=who.get("pod", ""))
            label_sets.append(",".join(f'{k}="{_esc(v)}"' for k, v in labels.items()))
        for family, kind, help_text in FAMILIES:
            lines.append(f"# HELP {family} SIMULATED (aiconf sandbox, no GPU): {help_text}")
            lines.append(f"# TYPE {family} {kind}")
            for (_, values), labels in zip(rows, label_sets, strict=True):
                v = values[family]
                lines.append(f"{family}{{{labels}}} {int(v) if float(v).is_integer() else v}")
        return "\n".join(lines) + "\n"


def serve(args: argparse.Namespace) -> int:
    sim = Simulator(args.gpu_dir, args.hostname or os.environ.get("NODE_NAME") or socket.gethostname())
    if args.once:
        sys.stdout.write(sim.exposition())
        return 0

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            if self.path.split("?")[0] in ("/metrics", "/metrics/"):
                body, ctype, code = sim.exposition().encode(), "text/plain; version=0.0.4; charset=utf-8", 200
            elif self.path in ("/health", "/healthz", "/ready"):
                body, ctype, code = b"ok\n", "text/plain", 200
            else:
                body, ctype, code = b"not found\n", "text/plain", 404
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *a):  # quiet: one line per scrape would flood the pod log
            pass

    server = ThreadingHTTPServer((args.address, args.port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    print(f"dcgm_sim: SIMULATED DCGM exporter on {args.address}:{args.port}/metrics for {args.gpu_dir}", flush=True)
    server.serve_forever()
    return 0


def load(args: argparse.Namespace) -> int:
    gpus = visible_gpus()
    targets = [g for g in gpus if os.path.isdir(os.path.join(args.load_root, g["uuid"]))]
    if not targets:
        print(json.dumps({"event": "error", "error": "no GPU this container may open (or no load folder)",
                          "visible": [g["uuid"] for g in gpus]}), flush=True)
        return 2
    doc = json.dumps({"util": args.util, "fb_used_mib": args.fb_used_mib, "pid": os.getpid()})
    paths = [os.path.join(args.load_root, g["uuid"], "load") for g in targets]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(json.dumps({"event": "ready", "t": round(time.time(), 3), "gpus": [g["uuid"] for g in targets],
                      "util": args.util, "fb_used_mib": args.fb_used_mib}), flush=True)
    end = time.monotonic() + args.seconds
    try:
        while time.monotonic() < end and not stop.is_set():
            for p in paths:
                tmp = p + ".tmp"
                with open(tmp, "w") as f:
                    f.write(doc)
                os.replace(tmp, p)
            stop.wait(min(1.0, max(0.0, end - time.monotonic())))
    finally:
        for p in paths:
            try:
                os.unlink(p)
            except OSError:
                pass
    print(json.dumps({"event": "done", "t": round(time.time(), 3)}), flush=True)
    if args.then_sleep:
        stop.wait(args.then_sleep)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m aiconf.workloads.dcgm_sim", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="serve the simulated exporter")
    s.add_argument("--gpu-dir", default="/var/lib/aiconf-gpu", help="the device plugin's folder (read-only)")
    s.add_argument("--address", default="0.0.0.0", help="listen address (the pod's own network namespace)")
    s.add_argument("--port", type=int, default=9400)
    s.add_argument("--hostname", default=None, help="Hostname label (default $NODE_NAME, else the host name)")
    s.add_argument("--once", action="store_true", help="print one exposition and exit")
    ld = sub.add_parser("load", help="report a load on this container's GPUs")
    ld.add_argument("--util", type=float, default=80.0)
    ld.add_argument("--fb-used-mib", type=float, default=16384.0)
    ld.add_argument("--seconds", type=float, default=60.0)
    ld.add_argument("--then-sleep", type=float, default=0.0, help="stay alive (idle) this long afterwards")
    ld.add_argument("--load-root", default=LOAD_ROOT)
    args = ap.parse_args(argv)
    return serve(args) if args.cmd == "serve" else load(args)


if __name__ == "__main__":
    sys.exit(main())
