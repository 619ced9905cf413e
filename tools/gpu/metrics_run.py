#!/usr/bin/env python3
"""Accelerator metrics on a real GPU: exporter + bf16 load + 1 Hz scrapes through ``aiconf.accel.dcgm``.

Runs on the accelerator machine (no Kubernetes): starts the demo NVML exporter
(:mod:`aiconf.workloads.nvml_exporter`) on 127.0.0.1, scrapes ``/metrics`` every ``--interval`` seconds, runs
:mod:`aiconf.workloads.gpu_load` on one GPU after ``--before`` seconds, keeps scraping ``--after`` seconds after the
load exits, then judges everything with the same functions the ``accelerator_metrics`` check uses and draws its two
charts. The node's "allocatable" count is stood in for by NVML's device count (no kubelet here).

Writes into ``--out``: ``metrics.json`` (findings, load analysis, OTel table, presence matrix, sample scrapes),
``series.csv``, ``scrapes.jsonl`` (every raw scrape), ``gpu_series.png``, ``presence_matrix.png``, ``load.log``,
``exporter.log``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from aiconf.accel import dcgm


def fetch(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


class Scraper(threading.Thread):
    """Scrapes ``url`` every ``interval`` seconds; keeps (t_s, text or error) relative to ``t0``."""

    def __init__(self, url: str, interval: float, t0: float):
        super().__init__(daemon=True)
        self.url, self.interval, self.t0 = url, interval, t0
        self.scrapes: list[dict] = []
        self.stop = threading.Event()

    def run(self) -> None:
        nxt = time.time()
        while not self.stop.is_set():
            t = time.time()
            try:
                text, err = fetch(self.url), None
            except Exception as exc:  # noqa: BLE001 - a failed scrape is data (a gap in the series), not a crash
                text, err = "", f"{type(exc).__name__}: {exc}"
            self.scrapes.append({"t_s": round(t - self.t0, 3), "text": text, "error": err})
            nxt += self.interval
            self.stop.wait(max(0.0, nxt - time.time()))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--port", type=int, default=9400)
    ap.add_argument("--device", type=int, default=0, help="physical GPU index to load")
    ap.add_argument("--before", type=float, default=10.0)
    ap.add_argument("--load-seconds", type=float, default=60.0)
    ap.add_argument("--after", type=float, default=15.0)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--hold-mib", type=int, default=8192)
    ap.add_argument("--util-rise", type=float, default=20.0)
    ap.add_argument("--mem-rise-mib", type=float, default=256.0)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": pythonpath, "PYTHONUNBUFFERED": "1"}
    url = f"http://127.0.0.1:{args.port}/metrics"

    exporter_log = open(out / "exporter.log", "w")  # noqa: SIM115 - closed in the finally below
    exporter = subprocess.Popen([sys.executable, "-m", "aiconf.workloads.nvml_exporter", "--port", str(args.port)],
                                env=env, stdout=exporter_log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 30
        while True:
            try:
                fetch(url)
                break
            except OSError:  # not listening yet (URLError is an OSError)
                if time.time() > deadline or exporter.poll() is not None:
                    raise SystemExit(f"exporter did not answer on {url}; see exporter.log")
                time.sleep(0.3)
        t0 = time.time()
        scraper = Scraper(url, args.interval, t0)
        scraper.start()
        time.sleep(args.before)
        load_env = {**env, "CUDA_VISIBLE_DEVICES": str(args.device)}
        launch = time.time() - t0
        load = subprocess.Popen([sys.executable, "-m", "aiconf.workloads.gpu_load", "--seconds", str(args.load_seconds),
                                 "--hold-mib", str(args.hold_mib), "--device", "0"],
                                env=load_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        events = []
        load_lines = []
        for line in load.stdout:
            load_lines.append(line)
            try:
                ev = json.loads(line)
                ev["t_s"] = round(ev["t"] - t0, 3)
                events.append(ev)
                print(f"[load] {ev}", flush=True)
            except (ValueError, KeyError):
                pass
        rc = load.wait()
        end = time.time() - t0
        (out / "load.log").write_text("".join(load_lines))
        time.sleep(args.after)
        scraper.stop.set()
        scraper.join(timeout=5)
    finally:
        exporter.terminate()
        try:
            exporter.wait(timeout=10)
        except subprocess.TimeoutExpired:
            exporter.kill()
        exporter_log.close()

    # --- judge through the same code the check uses ---------------------------------------------------------------
    rows, expos, failures = [], [], 0
    with open(out / "scrapes.jsonl", "w") as f:
        for s in scraper.scrapes:
            f.write(json.dumps(s) + "\n")
            if s["error"]:
                failures += 1
                continue
            expo = dcgm.parse_exposition(s["text"])
            expos.append((s["t_s"], expo))
            rows.extend(dcgm.series_rows(expo, s["t_s"]))
    frame = pd.DataFrame(rows)
    frame.to_csv(out / "series.csv", index=False)
    ready = next((e["t_s"] for e in events if e.get("event") == "ready"), None)
    done = next((e for e in events if e.get("event") == "done"), {})
    mid = (launch + end) / 2
    during = min(expos, key=lambda te: abs(te[0] - mid))[1]
    idle = expos[0][1]
    gpu_count = len(dcgm.device_readings(during)[0])
    nvml_count = _nvml_count()
    loaded = next((d for d in sorted(set(frame["device"])) if d.endswith(f"/gpu{args.device}")), None)
    analysis = dcgm.analyse_load_window(frame, launch, end, device=loaded, util_rise_pct=args.util_rise,
                                        mem_rise_mib=args.mem_rise_mib)
    auto = dcgm.analyse_load_window(frame, launch, end, util_rise_pct=args.util_rise, mem_rise_mib=args.mem_rise_mib)
    findings = [
        dcgm.judge_exporter(during),
        dcgm.judge_format(during),
        *dcgm.judge_core_metrics(during, allocatable=nvml_count),
        dcgm.judge_should_metrics(during),
        dcgm.judge_device_labels(during),
        analysis.as_subcheck(),
        dcgm.judge_attribution([e for _, e in expos], pod="gpu-load"),
    ]
    all_valid = [dcgm.judge_format(e).verdict for _, e in expos]
    matrix = dcgm.build_presence_matrix(during, include_info=True)
    result = {
        "what": "accelerator_metrics on a real GPU: demo NVML exporter, bf16 load, aiconf.accel.dcgm verdicts",
        "load": {"launch_s": launch, "ready_s": ready, "exit_s": round(end, 3), "rc": rc, "done": done,
                 "device": args.device, "hold_mib": args.hold_mib, "seconds": args.load_seconds},
        "allocatable_stand_in": {"nvml_device_count": nvml_count, "exporter_devices": gpu_count},
        "scrapes": {"count": len(scraper.scrapes), "failed": failures, "interval_s": args.interval,
                    "format_valid_all": all(v == "PASS" for v in all_valid)},
        "findings": [f.to_dict() for f in findings],
        "load_analysis": analysis.to_dict(),
        "auto_picked_device": auto.device,
        "presence_matrix": matrix.to_dict(),
        "otel_table": dcgm.otel_table(during.families),
        "families": sorted(during.families),
        "sample_scrapes": {"idle": _text_at(scraper.scrapes, expos[0][0]),
                           "during": _text_at(scraper.scrapes, min(expos, key=lambda te: abs(te[0] - mid))[0]),
                           "after": _text_at(scraper.scrapes, expos[-1][0])},
        "idle_values": {k: {c: v for c, (_, v) in d.values.items()} for k, d in dcgm.device_readings(idle)[0].items()},
    }
    (out / "metrics.json").write_text(json.dumps(result, indent=1, default=str) + "\n")

    fig, ax = plt.subplots(figsize=(9, 3.6))
    dcgm.draw_gpu_series(ax, frame, (launch, end))
    fig.tight_layout()
    fig.savefig(out / "gpu_series.png", dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6.5, 0.32 * len(matrix.metrics) + 1.2))
    dcgm.draw_presence_matrix(ax, matrix)
    fig.tight_layout()
    fig.savefig(out / "presence_matrix.png", dpi=110)
    plt.close(fig)

    print("\n== accelerator metrics ==")
    for f in findings:
        print(f"{f.verdict:8} {f.id:22} {f.summary}")
    print(f"load: {done}")
    return 0


def _nvml_count() -> int | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return int(pynvml.nvmlDeviceGetCount())
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - no NVML (ImportError, NVMLError): the count check becomes UNKNOWN
        return None


def _text_at(scrapes: list[dict], t_s: float) -> str:
    return next((s["text"] for s in scrapes if s["t_s"] == t_s), "")


if __name__ == "__main__":
    sys.exit(main())
