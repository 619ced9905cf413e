#!/usr/bin/env python3
"""A DEMO/TEST exporter: DCGM-named GPU metrics read from NVML, for machines without the DCGM exporter.

Not a replacement for NVIDIA's dcgm-exporter and not meant for production clusters. It exists so the toolkit's
accelerator-metrics code (:mod:`aiconf.accel.dcgm`) can be exercised against real NVML readings on a machine where
DCGM is not installed (the project's H200 machine), with the names and per-GPU labels dcgm-exporter uses:

- labels ``gpu``, ``UUID``, ``pci_bus_id``, ``device`` (``nvidia<minor>``), ``modelName``, ``Hostname``
  (``$NODE_NAME`` or the host name), ``DCGM_FI_DRIVER_VERSION``;
- ``DCGM_FI_DEV_GPU_UTIL`` (%), ``DCGM_FI_DEV_MEM_COPY_UTIL`` (%), ``DCGM_FI_DEV_FB_USED`` / ``_FB_FREE`` (MiB),
  ``DCGM_FI_DEV_GPU_TEMP`` (degC), ``DCGM_FI_DEV_POWER_USAGE`` (W), ``DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION`` (mJ,
  counter), ``DCGM_FI_DEV_SM_CLOCK`` (MHz), ``DCGM_FI_DEV_PCIE_TX_THROUGHPUT`` / ``_RX_THROUGHPUT`` (KB/s, NVML's
  20 ms PCIe sample), and ``DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL`` (KiB, data TX+RX summed over active links) only
  where NVML reports an active NVLink.

A reading NVML does not support on a device is left out for that device (as dcgm-exporter leaves out blank fields).
``aiconf_demo_exporter_info`` says plainly which exporter this is. Counters are written the prometheus_client way
(``..._total`` samples); parsers give the family name without the suffix, as for dcgm-exporter's own text.

PyPI has no maintained NVML exporter that serves DCGM names (``nvitop-exporter`` serves ``nvitop_*`` names; other
NVML exporters use their own names too): those are "other exporters" for the toolkit, handled by a name map.

Run: ``python3 -m aiconf.workloads.nvml_exporter --port 9400`` (serves 127.0.0.1:9400/metrics), or ``--once`` to print
one exposition and exit. Needs ``nvidia-ml-py`` (``pynvml``) and ``prometheus-client``, imported lazily.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import threading
from typing import Any

LABELS = ["gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname", "DCGM_FI_DRIVER_VERSION"]

#: (family, help, type) in the order dcgm-exporter's default counters list them.
FAMILIES = (
    ("DCGM_FI_DEV_SM_CLOCK", "SM clock frequency (in MHz).", "gauge"),
    ("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", "gauge"),
    ("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).", "gauge"),
    ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "Total energy consumption since boot (in mJ).", "counter"),
    ("DCGM_FI_DEV_PCIE_TX_THROUGHPUT", "PCIe TX throughput (in KB/s; NVML 20 ms sample).", "gauge"),
    ("DCGM_FI_DEV_PCIE_RX_THROUGHPUT", "PCIe RX throughput (in KB/s; NVML 20 ms sample).", "gauge"),
    ("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", "gauge"),
    ("DCGM_FI_DEV_MEM_COPY_UTIL", "Memory utilization (in %).", "gauge"),
    ("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).", "gauge"),
    ("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", "gauge"),
    ("DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", "NVLink data TX+RX over active links (in KiB; demo exporter).", "counter"),
)


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class NvmlCollector:
    """A prometheus_client collector reading NVML on every scrape."""

    def __init__(self, hostname: str | None = None):
        import pynvml  # lazy: only GPU machines have it

        self.nvml = pynvml
        pynvml.nvmlInit()
        self.hostname = hostname or os.environ.get("NODE_NAME") or socket.gethostname()
        self.driver = _s(pynvml.nvmlSystemGetDriverVersion())
        self.nvml_version = _s(pynvml.nvmlSystemGetNVMLVersion())
        self.lock = threading.Lock()
        self.devices = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            try:
                minor = pynvml.nvmlDeviceGetMinorNumber(h)
            except pynvml.NVMLError:
                minor = i
            pci = pynvml.nvmlDeviceGetPciInfo(h)
            labels = [str(i), _s(pynvml.nvmlDeviceGetUUID(h)), _s(pci.busId), f"nvidia{minor}",
                      _s(pynvml.nvmlDeviceGetName(h)), self.hostname, self.driver]
            self.devices.append((h, labels))
        self.unsupported: dict[str, set[str]] = {}

    def read(self, handle: Any) -> dict[str, float]:
        """One device's readings, by family; readings NVML does not support are left out."""
        n = self.nvml
        out: dict[str, float] = {}

        def get(family: str, fn: Any) -> None:
            try:
                out[family] = float(fn())
            except n.NVMLError as exc:
                self.unsupported.setdefault(family, set()).add(type(exc).__name__)

        get("DCGM_FI_DEV_SM_CLOCK", lambda: n.nvmlDeviceGetClockInfo(handle, n.NVML_CLOCK_SM))
        get("DCGM_FI_DEV_GPU_TEMP", lambda: n.nvmlDeviceGetTemperature(handle, n.NVML_TEMPERATURE_GPU))
        get("DCGM_FI_DEV_POWER_USAGE", lambda: n.nvmlDeviceGetPowerUsage(handle) / 1000.0)
        get("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", lambda: n.nvmlDeviceGetTotalEnergyConsumption(handle))
        get("DCGM_FI_DEV_PCIE_TX_THROUGHPUT", lambda: n.nvmlDeviceGetPcieThroughput(handle, n.NVML_PCIE_UTIL_TX_BYTES))
        get("DCGM_FI_DEV_PCIE_RX_THROUGHPUT", lambda: n.nvmlDeviceGetPcieThroughput(handle, n.NVML_PCIE_UTIL_RX_BYTES))
        try:
            util = n.nvmlDeviceGetUtilizationRates(handle)
            out["DCGM_FI_DEV_GPU_UTIL"] = float(util.gpu)
            out["DCGM_FI_DEV_MEM_COPY_UTIL"] = float(util.memory)
        except n.NVMLError as exc:
            self.unsupported.setdefault("DCGM_FI_DEV_GPU_UTIL", set()).add(type(exc).__name__)
        try:
            mem = n.nvmlDeviceGetMemoryInfo(handle)
            out["DCGM_FI_DEV_FB_FREE"] = mem.free / 1048576.0
            out["DCGM_FI_DEV_FB_USED"] = mem.used / 1048576.0
        except n.NVMLError as exc:
            self.unsupported.setdefault("DCGM_FI_DEV_FB_USED", set()).add(type(exc).__name__)
        nvlink = self.nvlink_kib(handle)
        if nvlink is not None:
            out["DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL"] = nvlink
        return out

    def nvlink_kib(self, handle: Any) -> float | None:
        """Data TX+RX KiB summed over active links, or None when NVML reports no active link."""
        n = self.nvml
        active = []
        for link in range(getattr(n, "NVML_NVLINK_MAX_LINKS", 18)):
            try:
                if n.nvmlDeviceGetNvLinkState(handle, link) == n.NVML_FEATURE_ENABLED:
                    active.append(link)
            except n.NVMLError as exc:
                self.unsupported.setdefault("DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", set()).add(type(exc).__name__)
                break
        if not active:
            return None
        ids = [(f, link) for link in active for f in (n.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX,
                                                     n.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX)]
        try:
            values = n.nvmlDeviceGetFieldValues(handle, ids)
        except n.NVMLError:
            return None
        total = 0.0
        for v in values:
            if v.nvmlReturn == 0:
                total += float(v.value.ullVal)
        return total

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        with self.lock:
            readings = [(labels, self.read(h)) for h, labels in self.devices]
        for family, doc, typ in FAMILIES:
            cls = CounterMetricFamily if typ == "counter" else GaugeMetricFamily
            metric = cls(family, doc, labels=LABELS)
            any_value = False
            for labels, values in readings:
                if family in values:
                    metric.add_metric(labels, values[family])
                    any_value = True
            if any_value:
                yield metric
        info = GaugeMetricFamily("aiconf_demo_exporter_info", "aiconf's NVML demo/test exporter (not dcgm-exporter).",
                                 labels=["exporter", "nvml_version", "driver_version"])
        info.add_metric(["aiconf-nvml-demo", self.nvml_version, self.driver], 1.0)
        yield info


def make_registry(hostname: str | None = None) -> Any:
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(NvmlCollector(hostname))
    return registry


def render(registry: Any) -> str:
    from prometheus_client import generate_latest

    return generate_latest(registry).decode()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="DEMO/TEST exporter: DCGM-named metrics from NVML")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9400)
    ap.add_argument("--hostname", default=None, help="Hostname label (default $NODE_NAME or the host name)")
    ap.add_argument("--once", action="store_true", help="print one exposition and exit")
    args = ap.parse_args(argv)
    registry = make_registry(args.hostname)
    if args.once:
        sys.stdout.write(render(registry))
        return 0
    from prometheus_client import start_http_server

    start_http_server(args.port, addr=args.host, registry=registry)
    print(f"serving DCGM-named NVML metrics on http://{args.host}:{args.port}/metrics", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
