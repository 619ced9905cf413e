"""aiconf.accel.dcgm without a GPU: parsing, per-GPU judgements, name maps, load windows, charts."""

from __future__ import annotations

from pathlib import Path

import accel_synth as synth
import pytest
from matplotlib.figure import Figure

from aiconf.accel import dcgm
from aiconf.model import Verdict

DATA = Path(__file__).resolve().parents[2] / "data" / "gpu"


def dcgm_style() -> dcgm.Exposition:
    return dcgm.parse_exposition((DATA / "dcgm_exporter_style.prom").read_text())


# --- parsing and format ----------------------------------------------------------------------------------------------


def test_dcgm_exporter_text_parses_with_counter_family_without_total_suffix():
    expo = dcgm_style()
    assert expo.ok and not expo.problems and not expo.warnings
    assert "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION" in expo.families
    assert expo.families["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"].type == "counter"
    assert dcgm.judge_format(expo).verdict is Verdict.PASS


def test_prometheus_client_counter_text_maps_to_the_same_family():
    text = ("# HELP DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION_total e\n# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION_total counter\n"
            'DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION_total{gpu="0",UUID="GPU-1"} 5.0\n')
    expo = dcgm.parse_exposition(text)
    assert list(expo.families) == ["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"] and not expo.warnings


def test_garbage_is_a_format_fail_not_a_crash():
    expo = dcgm.parse_exposition('DCGM_FI_DEV_GPU_UTIL{gpu="0" 1\n')
    assert not expo.ok
    sub = dcgm.judge_format(expo)
    assert sub.verdict is Verdict.FAIL and "does not parse" in sub.summary
    assert {s.verdict for s in dcgm.judge_core_metrics(expo, 1)} == {Verdict.UNKNOWN}


def test_duplicate_series_is_a_format_problem():
    text = synth.exposition([synth.gpu_state()])
    dup = text + (f'DCGM_FI_DEV_FB_USED{{gpu="0",UUID="{synth.UUIDS[0]}",pci_bus_id="00000000:18:00.0",device="nvidia0",'
                  'modelName="NVIDIA H200",Hostname="h200-node"} 1\n')
    # a second block for an existing family is itself invalid for the parser or a duplicate: never PASS
    assert dcgm.judge_format(dcgm.parse_exposition(dup)).verdict is Verdict.FAIL


def test_empty_exposition_is_invalid():
    assert dcgm.judge_format(dcgm.parse_exposition("")).verdict is Verdict.FAIL


def test_missing_type_and_help_are_warnings_only():
    expo = dcgm.parse_exposition('DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-1"} 3\n')
    assert expo.ok and expo.warnings and dcgm.judge_format(expo).verdict is Verdict.PASS


# --- core metrics per GPU and the count ------------------------------------------------------------------------------


def test_core_metrics_for_every_gpu_and_count_matches():
    core, count = dcgm.judge_core_metrics(dcgm_style(), allocatable=2)
    assert core.verdict is Verdict.PASS and count.verdict is Verdict.PASS
    assert core.details["devices"] == ["gpu-node-1/gpu0", "gpu-node-1/gpu1"]
    assert core.details["values"]["gpu-node-1/gpu0"]["utilization"] == 94


def test_missing_metric_on_one_gpu_fails_core_and_count():
    text = synth.exposition([synth.gpu_state(), synth.gpu_state()], omit={1: {"DCGM_FI_DEV_FB_FREE"}})
    core, count = dcgm.judge_core_metrics(dcgm.parse_exposition(text), allocatable=2)
    assert core.verdict is Verdict.FAIL and "h200-node/gpu1: missing memory_free" in core.observed
    assert count.verdict is Verdict.FAIL


def test_gpu_count_mismatch_fails():
    text = synth.exposition([synth.gpu_state()])
    core, count = dcgm.judge_core_metrics(dcgm.parse_exposition(text), allocatable=2)
    assert core.verdict is Verdict.PASS and count.verdict is Verdict.FAIL
    assert "node advertises 2" in count.summary


def test_time_slicing_replicas_divide_the_allocatable_count():
    text = synth.exposition([synth.gpu_state(), synth.gpu_state()])
    _, count = dcgm.judge_core_metrics(dcgm.parse_exposition(text), allocatable=8, replicas_per_gpu=4)
    assert count.verdict is Verdict.PASS


def test_unknown_allocatable_is_unknown_not_pass():
    _, count = dcgm.judge_core_metrics(dcgm_style(), allocatable=None)
    assert count.verdict is Verdict.UNKNOWN


def test_core_families_without_device_labels_fail():
    text = "# HELP DCGM_FI_DEV_GPU_UTIL u\n# TYPE DCGM_FI_DEV_GPU_UTIL gauge\nDCGM_FI_DEV_GPU_UTIL 5\n"
    core, _ = dcgm.judge_core_metrics(dcgm.parse_exposition(text), allocatable=1)
    assert core.verdict is Verdict.FAIL and "no per-device labels" in core.summary


def test_mig_instances_are_separate_devices():
    def mig_labels(i: int) -> dict[str, str]:
        return {**synth.labels(0), "GPU_I_ID": str(i + 1), "GPU_I_PROFILE": "1g.18gb"}

    text = synth.exposition([synth.gpu_state(), synth.gpu_state()], label_fn=mig_labels)
    core, count = dcgm.judge_core_metrics(dcgm.parse_exposition(text), allocatable=2)
    assert core.details["devices"] == ["h200-node/gpu0/gpu_i_id1", "h200-node/gpu0/gpu_i_id2"]
    assert count.verdict is Verdict.PASS


# --- exporters and name maps -----------------------------------------------------------------------------------------

OTHER = ("# HELP amd_gpu_gfx_activity a\n# TYPE amd_gpu_gfx_activity gauge\n"
         'amd_gpu_gfx_activity{gpu_id="0",serial_number="S0",hostname="mi300"} 87\n'
         "# HELP amd_gpu_vram_used_bytes b\n# TYPE amd_gpu_vram_used_bytes gauge\n"
         'amd_gpu_vram_used_bytes{gpu_id="0",serial_number="S0",hostname="mi300"} 1073741824\n')


def test_unrecognised_exporter_is_unknown_never_fail():
    expo = dcgm.parse_exposition(OTHER)
    assert dcgm.judge_exporter(expo).verdict is Verdict.UNKNOWN
    assert {s.verdict for s in dcgm.judge_core_metrics(expo, 1)} == {Verdict.UNKNOWN}


def test_a_configured_name_map_recognises_another_exporter_and_scales_units():
    nm = dcgm.name_map_from_dict({
        "name": "amd-example",
        "classes": {"utilization": ["amd_gpu_gfx_activity"], "memory_used": {"amd_gpu_vram_used_bytes": 1 / 1048576}},
        "labels": {"index": "gpu_id", "uuid": "serial_number", "host": "hostname"},
        "core": ["utilization", "memory_used"],
    })
    expo = dcgm.parse_exposition(OTHER)
    assert dcgm.judge_exporter(expo, (dcgm.DCGM, nm)).observed == "amd-example"
    core, count = dcgm.judge_core_metrics(expo, 1, nm)
    assert core.verdict is Verdict.PASS and count.verdict is Verdict.PASS
    assert core.details["values"]["mi300/gpu0"]["memory_used"] == 1024.0


def test_name_map_rejects_unknown_classes_and_labels():
    with pytest.raises(ValueError, match="unknown metric classes"):
        dcgm.name_map_from_dict({"classes": {"fan": ["x"]}})
    with pytest.raises(ValueError, match="unknown label keys"):
        dcgm.name_map_from_dict({"classes": {"utilization": ["x"]}, "labels": {"serial": "s"}})


def test_profiling_utilization_alone_counts_as_utilization():
    text = ("# HELP DCGM_FI_PROF_GR_ENGINE_ACTIVE r\n# TYPE DCGM_FI_PROF_GR_ENGINE_ACTIVE gauge\n"
            'DCGM_FI_PROF_GR_ENGINE_ACTIVE{gpu="0",UUID="GPU-1"} 0.5\n'
            "# TYPE DCGM_FI_DEV_FB_USED gauge\n" 'DCGM_FI_DEV_FB_USED{gpu="0",UUID="GPU-1"} 10\n'
            "# TYPE DCGM_FI_DEV_FB_FREE gauge\n" 'DCGM_FI_DEV_FB_FREE{gpu="0",UUID="GPU-1"} 10\n')
    core, _ = dcgm.judge_core_metrics(dcgm.parse_exposition(text), 1)
    assert core.verdict is Verdict.PASS and core.details["values"]["gpu0"]["utilization"] == 50.0


# --- should metrics, labels, attribution -----------------------------------------------------------------------------


def test_should_metrics_reported_and_nvlink_absence_noted():
    sub = dcgm.judge_should_metrics(dcgm_style())
    assert sub.verdict is Verdict.PASS and not sub.required
    assert "nvlink (where supported)" in sub.summary
    assert sub.details["families"]["pcie_tx"] == ["DCGM_FI_PROF_PCIE_TX_BYTES"]


def test_should_metrics_missing_is_an_informational_fail():
    only_core = {k: v for k, v in synth.FAMILIES.items() if k in ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE")}
    expo = dcgm.parse_exposition(synth.exposition([synth.gpu_state()], families=only_core))
    sub = dcgm.judge_should_metrics(expo)
    assert sub.verdict is Verdict.FAIL and sub.required is False


def test_device_labels_per_device():
    sub = dcgm.judge_device_labels(dcgm_style())
    assert sub.verdict is Verdict.PASS
    assert "UUID" in sub.details["label_keys"]["gpu-node-1/gpu0"]
    assert sub.details["attribution_labels"] == ["namespace", "pod"]
    bare = dcgm.parse_exposition('# TYPE DCGM_FI_DEV_GPU_UTIL gauge\nDCGM_FI_DEV_GPU_UTIL{gpu="0"} 1\n')
    assert dcgm.judge_device_labels(bare).verdict is Verdict.FAIL


def test_pod_attribution():
    expo = dcgm_style()
    assert dcgm.judge_attribution([expo], "burn-7d9f", "ml-team").verdict is Verdict.PASS
    assert dcgm.judge_attribution([expo], "other-pod").verdict is Verdict.FAIL
    plain = dcgm.parse_exposition(synth.exposition([synth.gpu_state()]))
    assert dcgm.judge_attribution([plain], "burn-7d9f").verdict is Verdict.UNKNOWN


def test_exported_pod_labels_after_prometheus_relabelling_count_too():
    text = synth.exposition([synth.gpu_state()], label_fn=lambda i: synth.labels(i, exported_pod="burn", exported_namespace="ns"))
    assert dcgm.judge_attribution([dcgm.parse_exposition(text)], "burn", "ns").verdict is Verdict.PASS


# --- the load window -------------------------------------------------------------------------------------------------


def frame_of(texts: list[str]) -> list[dict]:
    rows = []
    for t, text in enumerate(texts):
        rows += dcgm.series_rows(dcgm.parse_exposition(text), t)
    return rows


def test_series_rows_normalise_units():
    rows = dcgm.series_rows(dcgm.parse_exposition(synth.exposition([synth.gpu_state()])), 3.0)
    assert rows[0]["pcie_tx_bps"] == 100 * 1024 and rows[0]["memory_used_mib"] == 615 and rows[0]["t_s"] == 3.0


def test_load_that_moves_utilization_and_memory_passes():
    texts, start, end = synth.load_series()
    a = dcgm.analyse_load_window(frame_of(texts), start, end)
    assert a.device == "h200-node/gpu0"  # picked as the one that rose most
    assert a.verdict is Verdict.PASS, a.reasons
    assert a.utilization["during_max"] == 94 and a.memory_used["before"] == 615
    assert a.other_devices == {"h200-node/gpu1": 0.0}
    sub = a.as_subcheck()
    assert sub.id == "workload_reflected" and sub.verdict is Verdict.PASS


def test_load_that_does_not_move_utilization_is_not_pass():
    texts, start, end = synth.load_series(peak_util=3.0)
    a = dcgm.analyse_load_window(frame_of(texts), start, end, device="h200-node/gpu0")
    assert a.criteria["utilization_rose"] is Verdict.FAIL and a.verdict is Verdict.FAIL


def test_memory_that_stays_up_after_the_load_fails_only_when_the_fall_is_required():
    texts, start, end = synth.load_series(after_mem=9800.0)
    rows = frame_of(texts)
    assert dcgm.analyse_load_window(rows, start, end).verdict is Verdict.FAIL
    assert dcgm.analyse_load_window(rows, start, end, require_fall=False).verdict is Verdict.PASS


def test_too_few_samples_are_unknown():
    texts, start, end = synth.load_series(before=1, during=5, after=1)
    a = dcgm.analyse_load_window(frame_of(texts), start, end, device="h200-node/gpu0")
    assert a.criteria["utilization_rose"] is Verdict.UNKNOWN and a.verdict is Verdict.UNKNOWN


def test_no_samples_for_the_device_is_unknown():
    texts, start, end = synth.load_series()
    assert dcgm.analyse_load_window(frame_of(texts), start, end, device="elsewhere/gpu9").verdict is Verdict.UNKNOWN


def test_thresholds_are_arguments():
    texts, start, end = synth.load_series(peak_util=30.0)
    rows = frame_of(texts)
    assert dcgm.analyse_load_window(rows, start, end, util_rise_pct=20).criteria["utilization_rose"] is Verdict.PASS
    assert dcgm.analyse_load_window(rows, start, end, util_rise_pct=50).criteria["utilization_rose"] is Verdict.FAIL


def test_analysis_accepts_a_dataframe():
    import pandas as pd

    texts, start, end = synth.load_series()
    assert dcgm.analyse_load_window(pd.DataFrame(frame_of(texts)), start, end).verdict is Verdict.PASS


# --- OTel, presence matrix, charts -----------------------------------------------------------------------------------


def test_otel_table_marks_the_families_found():
    rows = {r["dcgm"]: r for r in dcgm.otel_table(dcgm_style().families)}
    assert rows["DCGM_FI_DEV_GPU_UTIL"]["otel"] == "hw.gpu.utilization" and rows["DCGM_FI_DEV_GPU_UTIL"]["found"] == "yes"
    assert rows["DCGM_FI_DEV_FB_USED / DCGM_FI_DEV_FB_FREE"]["found"] == "yes"
    assert rows["DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL"]["found"] == "no"


def test_presence_matrix_shows_a_missing_core_metric():
    text = synth.exposition([synth.gpu_state(), synth.gpu_state()], omit={1: {"DCGM_FI_DEV_FB_FREE"}})
    m = dcgm.build_presence_matrix(dcgm.parse_exposition(text))
    i = m.metrics.index("DCGM_FI_DEV_FB_FREE")
    assert m.present[i] == [True, False] and m.tiers[i] == "core"
    # a class none of whose names is served shows its preferred name, absent everywhere
    assert m.present[m.metrics.index("DCGM_FI_PROF_NVLINK_TX_BYTES")] == [False, False]


def test_charts_draw():
    texts, start, end = synth.load_series()
    fig = Figure()
    twin = dcgm.draw_gpu_series(fig.subplots(), frame_of(texts), (start, end))
    assert twin is not None and twin.get_ylabel() == "framebuffer used (GiB)"
    fig2 = Figure()
    img = dcgm.draw_presence_matrix(fig2.subplots(), dcgm.build_presence_matrix(dcgm_style()))
    assert img is not None
    assert dcgm.draw_gpu_series(Figure().subplots(), [], None) is None
