"""The accelerator paths on a real NVIDIA GPU (marker ``gpu``; skipped where no ``nvidia-smi`` is found).

The same functions the checks use, against real NVML readings: the demo exporter's scrape judged per GPU, a short
bf16 load that must move utilisation and memory, and the device probe on the host. With ``AICONF_RUNC`` pointing at
a runc binary (``AICONF_RUNC_LIBDIR`` at its libseccomp), T1/T2 also run in real containers. The full evidence run
is ``tools/gpu/run_all.sh``; these tests are the quick regression for a GPU machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aiconf.accel import dcgm, isolation

REPO = Path(__file__).resolve().parents[2]
SMI = shutil.which("nvidia-smi") or ("/usr/local/nvidia/bin/nvidia-smi" if os.path.exists("/usr/local/nvidia/bin/nvidia-smi") else None)

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(SMI is None, reason="no nvidia-smi: not a GPU machine")]


def gpu_count() -> int:
    out = subprocess.run([SMI, "-L"], capture_output=True, text=True, timeout=60, check=False).stdout
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


@pytest.fixture(scope="module")
def registry():
    pytest.importorskip("pynvml")
    pytest.importorskip("prometheus_client")
    from aiconf.workloads import nvml_exporter

    return nvml_exporter.make_registry("gpu-test-node")


def scrape(registry) -> dcgm.Exposition:
    from aiconf.workloads import nvml_exporter

    return dcgm.parse_exposition(nvml_exporter.render(registry))


def test_exporter_scrape_has_core_metrics_for_every_gpu(registry):
    expo = scrape(registry)
    assert dcgm.judge_exporter(expo).verdict == "PASS"
    assert dcgm.judge_format(expo).verdict == "PASS"
    core, count = dcgm.judge_core_metrics(expo, allocatable=gpu_count())
    assert core.verdict == "PASS", core.observed
    assert count.verdict == "PASS", count.summary
    assert dcgm.judge_device_labels(expo).verdict == "PASS"
    assert dcgm.judge_should_metrics(expo).details["groups"]["temperature"] is True


def test_a_short_load_moves_utilization_and_memory(registry):
    pytest.importorskip("torch")
    rows, t0 = [], time.time()

    def sample(seconds: float) -> None:
        end = time.time() + seconds
        while time.time() < end:
            rows.extend(dcgm.series_rows(scrape(registry), time.time() - t0))
            time.sleep(0.5)

    sample(3)
    env = {**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": "0"}
    start = time.time() - t0
    load = subprocess.Popen([sys.executable, "-m", "aiconf.workloads.gpu_load", "--seconds", "8", "--hold-mib", "2048"],
                            env=env, stdout=subprocess.PIPE, text=True)
    while load.poll() is None:
        rows.extend(dcgm.series_rows(scrape(registry), time.time() - t0))
        time.sleep(0.5)
    end = time.time() - t0
    assert load.returncode == 0, load.stdout.read()
    sample(4)
    device = next(r["device"] for r in rows if r["device"].endswith("/gpu0"))
    a = dcgm.analyse_load_window(rows, start, end, device=device, settle_s=1.5)
    assert a.criteria["utilization_rose"] == "PASS", a.reasons
    assert a.criteria["memory_rose"] == "PASS", a.reasons
    assert a.criteria["utilization_fell"] == "PASS", a.reasons


def test_probe_on_the_host_sees_every_gpu(tmp_path):
    out = tmp_path / "host.json"
    subprocess.run([sys.executable, str(REPO / "aiconf/workloads/device_probe.py"), "--label", "host", "--out", str(out)],
                   check=True, timeout=120)
    probe = isolation.load_probe(json.loads(out.read_text()))
    n = gpu_count()
    assert len(probe.gpu_nodes) == n and len(probe.uuids) == n and probe.smi_rc == 0
    assert all(a["open"]["ok"] for a in probe.open_attempts)


@pytest.mark.skipif(not os.environ.get("AICONF_RUNC") or os.geteuid() != 0, reason="AICONF_RUNC unset or not root")
def test_runc_containers_isolate_devices(tmp_path):
    out = tmp_path / "iso"
    cmd = [sys.executable, str(REPO / "tools/gpu/isolation_run.py"), "--out", str(out), "--runc", os.environ["AICONF_RUNC"],
           "--work", str(tmp_path / "work")]
    if os.environ.get("AICONF_RUNC_LIBDIR"):
        cmd += ["--libdir", os.environ["AICONF_RUNC_LIBDIR"]]
    subprocess.run(cmd, check=True, timeout=400)
    result = json.loads((out / "isolation.json").read_text())
    verdicts = {f["id"]: f["verdict"] for f in result["findings"]}
    assert verdicts["no_request_no_device"] == "PASS"
    assert verdicts["one_request_one_device"] == "PASS"
    assert verdicts["visibility_matrix_diagonal"] == "PASS"
    if gpu_count() >= 2:
        assert verdicts["distinct_devices_no_cross_access"] == "PASS"
