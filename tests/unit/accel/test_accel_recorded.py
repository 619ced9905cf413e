"""Replays of the real H200 run (2 GPUs, 2026-11-28; tests/data/gpu/h200x2-run1/, docs/evidence/README.md).

The scrapes are the demo NVML exporter's real output, the series is the 1 Hz scrape series around a 60 s bf16 load
on GPU 0, and the probes are the device probe's JSON from real runc containers. CI replays them through the same
parsing, verdict and matrix code, and checks that small corruptions of the real data do not PASS.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.figure import Figure

from aiconf.accel import dcgm
from aiconf.accel import isolation as iso
from aiconf.model import Verdict

RUN = Path(__file__).resolve().parents[2] / "data" / "gpu" / "h200x2-run1"
UUID0 = "GPU-5aedc9ec-ee3a-9aef-e9b8-e9c1f76bda13"
UUID1 = "GPU-9948a40c-3804-defb-5ccc-ce8706d7a91a"


def scrape(name: str) -> str:
    return (RUN / f"scrape_{name}.prom").read_text()


def meta() -> dict:
    return json.loads((RUN / "run.json").read_text())


# --- accelerator metrics ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["idle", "during", "after"])
def test_real_scrapes_have_core_metrics_for_both_gpus(name):
    expo = dcgm.parse_exposition(scrape(name))
    assert dcgm.judge_exporter(expo).verdict is Verdict.PASS
    assert dcgm.judge_format(expo).verdict is Verdict.PASS
    core, count = dcgm.judge_core_metrics(expo, allocatable=2)
    assert core.verdict is Verdict.PASS and count.verdict is Verdict.PASS
    assert core.details["devices"] == ["vm/gpu0", "vm/gpu1"]


def test_real_scrape_values_during_the_load():
    devices, _ = dcgm.device_readings(dcgm.parse_exposition(scrape("during")))
    gpu0, gpu1 = devices["vm/gpu0"].values, devices["vm/gpu1"].values
    assert gpu0["utilization"][1] >= 90 and gpu1["utilization"][1] == 0
    assert gpu0["memory_used"][1] > 9000 > gpu1["memory_used"][1]
    assert gpu0["power"][1] > 600 and devices["vm/gpu0"].labels["UUID"] == UUID0


def test_real_scrape_against_a_node_advertising_more_gpus_fails():
    _, count = dcgm.judge_core_metrics(dcgm.parse_exposition(scrape("idle")), allocatable=4)
    assert count.verdict is Verdict.FAIL


def test_real_scrape_with_a_core_metric_removed_for_one_gpu_fails():
    text = "\n".join(line for line in scrape("idle").splitlines()
                     if not (line.startswith("DCGM_FI_DEV_FB_FREE{") and 'gpu="1"' in line)) + "\n"
    core, count = dcgm.judge_core_metrics(dcgm.parse_exposition(text), allocatable=2)
    assert core.verdict is Verdict.FAIL and core.details["missing"] == {"vm/gpu1": ["memory_free"]}
    assert count.verdict is Verdict.FAIL


def test_real_scrape_should_metrics_labels_and_otel():
    expo = dcgm.parse_exposition(scrape("idle"))
    should = dcgm.judge_should_metrics(expo)
    assert should.verdict is Verdict.PASS
    assert should.details["families"]["nvlink"] == ["DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL"]  # NVLink active on the x2 kind
    assert dcgm.judge_device_labels(expo).verdict is Verdict.PASS
    assert dcgm.judge_attribution([expo], "gpu-load").verdict is Verdict.UNKNOWN  # no kubelet, no pod labels
    found = {r["otel"] for r in dcgm.otel_table(expo.families) if r["found"] == "yes"}
    assert {"hw.gpu.utilization", "hw.gpu.memory.usage", "hw.power", "hw.energy", "hw.gpu.io"} <= found


def test_real_load_window_replays_to_the_recorded_verdict():
    m = meta()
    frame = pd.read_csv(RUN / "series.csv")
    a = dcgm.analyse_load_window(frame, m["load"]["launch_s"], m["load"]["exit_s"], device="vm/gpu0")
    assert a.verdict is Verdict.PASS
    assert {k: str(v) for k, v in a.criteria.items()} == m["expected"]["load_analysis"]["criteria"]
    assert a.utilization == m["expected"]["load_analysis"]["utilization"]
    assert a.other_devices == {"vm/gpu1": 0.0}
    auto = dcgm.analyse_load_window(frame, m["load"]["launch_s"], m["load"]["exit_s"])
    assert auto.device == "vm/gpu0"


def test_real_series_of_the_idle_gpu_is_not_a_pass():
    m = meta()
    frame = pd.read_csv(RUN / "series.csv")
    a = dcgm.analyse_load_window(frame, m["load"]["launch_s"], m["load"]["exit_s"], device="vm/gpu1")
    assert a.criteria["utilization_rose"] is Verdict.FAIL and a.verdict is Verdict.FAIL


def test_real_series_cut_before_the_load_ends_cannot_show_the_fall():
    m = meta()
    frame = pd.read_csv(RUN / "series.csv")
    cut = frame[frame["t_s"] < m["load"]["exit_s"] + 1]
    a = dcgm.analyse_load_window(cut, m["load"]["launch_s"], m["load"]["exit_s"], device="vm/gpu0")
    assert a.criteria["utilization_fell"] is Verdict.UNKNOWN and a.verdict is Verdict.UNKNOWN


def test_real_charts_draw():
    m = meta()
    frame = pd.read_csv(RUN / "series.csv")
    assert dcgm.draw_gpu_series(Figure().subplots(), frame, (m["load"]["launch_s"], m["load"]["exit_s"])) is not None
    matrix = dcgm.build_presence_matrix(dcgm.parse_exposition(scrape("during")), include_info=True)
    assert all(all(row) for row in matrix.present)
    assert dcgm.draw_presence_matrix(Figure().subplots(), matrix) is not None


# --- secure accelerator access ---------------------------------------------------------------------------------------

ORDER = ["t1-none", "t1-env-all", "t2-gpu0", "t3-pod-a", "t3-pod-b", "t4-ctr-gpu", "t4-ctr-nogpu"]
GRANTED = {"t2-gpu0": 1, "t3-pod-a": 1, "t3-pod-b": 1, "t4-ctr-gpu": 1}
GROUPS = {"t1-none": "t1-none", "t1-env-all": "t1-env-all", "t2-gpu0": "t2", "t3-pod-a": "t3", "t3-pod-b": "t3",
          "t4-ctr-gpu": "t4", "t4-ctr-nogpu": "t4"}


def probes() -> dict[str, iso.Probe]:
    return {p.stem: iso.load_probe(json.loads(p.read_text()), p.stem) for p in sorted((RUN / "probes").glob("*.json"))}


def test_real_probes_pass_t1_to_t4_and_the_matrix_is_diagonal():
    p = probes()
    assert iso.judge_no_request([p["t1-none"], p["t1-env-all"]]).verdict is Verdict.PASS
    t2 = iso.judge_single_request(p["t2-gpu0"])
    assert t2.verdict is Verdict.PASS and t2.details["uuids"] == [UUID0]
    t3 = iso.judge_cross_pod(p["t3-pod-a"], p["t3-pod-b"])
    assert t3.verdict is Verdict.PASS and t3.details["errnos"] == ["EPERM"] and t3.details["denied_by_kernel"]
    assert iso.judge_multi_container(p["t4-ctr-gpu"], p["t4-ctr-nogpu"]).verdict is Verdict.PASS
    m = iso.build_visibility_matrix([p[k] for k in ORDER], GRANTED, GROUPS)
    assert m.is_diagonal and m.columns == [UUID0, UUID1] and not m.missing
    assert iso.judge_matrix(m).verdict is Verdict.PASS


def test_real_probes_show_what_the_driver_did_in_a_container_without_devices():
    t1 = probes()["t1-none"].raw
    assert t1["smi"]["rc"] != 0 and "Failed to initialize NVML" in t1["smi"]["stdout"] + t1["smi"]["stderr"]
    # with CAP_MKNOD, NVML created /dev/nvidiactl itself, and the devices cgroup refused every open
    assert "/dev/nvidiactl" in [n["path"] for n in t1["device_nodes_after"]]
    assert {a["open"]["errno"] for a in t1["open_attempts"]} == {"EPERM"}


def test_real_control_node_opens_are_not_cross_pod_access():
    a = probes()["t3-pod-a"]
    assert "/dev/nvidiactl" in a.opened() and [x["path"] for x in a.foreign_attempts()] == ["/dev/nvidia1"]


def test_real_host_probe_in_a_no_request_row_breaks_t1_and_the_matrix():
    p = probes()
    host_as_t1 = iso.load_probe({**p["host"].raw, "env": {"NVIDIA_VISIBLE_DEVICES": "all"}}, "t1-env-all")
    assert iso.judge_no_request([p["t1-none"], host_as_t1]).verdict is Verdict.FAIL
    rows = [host_as_t1 if k == "t1-env-all" else p[k] for k in ORDER]
    m = iso.build_visibility_matrix(rows, GRANTED, GROUPS)
    assert not m.is_diagonal and iso.judge_matrix(m).verdict is Verdict.FAIL


def test_real_probes_with_a_shared_uuid_fail_t3_and_the_matrix():
    p = probes()
    clone = iso.load_probe({**p["t3-pod-a"].raw, "label": "t3-pod-b"}, "t3-pod-b")
    assert iso.judge_cross_pod(p["t3-pod-a"], clone).verdict is Verdict.FAIL
    m = iso.build_visibility_matrix([clone if k == "t3-pod-b" else p[k] for k in ORDER], GRANTED, GROUPS)
    assert not m.is_diagonal
    assert iso.draw_visibility_matrix(Figure().subplots(), m) is not None
