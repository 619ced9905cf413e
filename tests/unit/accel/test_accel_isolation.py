"""aiconf.accel.isolation without a GPU: T1-T4 verdicts and the visibility matrix from probe documents."""

from __future__ import annotations

import accel_synth as synth
from accel_synth import UUIDS, denied, opened, probe_doc
from matplotlib.figure import Figure

from aiconf.accel import isolation as iso
from aiconf.model import Verdict


def P(*a, **kw) -> iso.Probe:
    return iso.load_probe(probe_doc(*a, **kw))


def t1_probes() -> list[iso.Probe]:
    tries = [denied("/dev/nvidia0"), denied("/dev/nvidia1"), denied("/dev/nvidiactl")]
    return [P("t1-none", attempts=tries), P("t1-env-all", env={"NVIDIA_VISIBLE_DEVICES": "all"}, attempts=tries)]


# --- T1 --------------------------------------------------------------------------------------------------------------


def test_t1_no_request_sees_nothing_with_and_without_env_bypass():
    sub = iso.judge_no_request(t1_probes())
    assert sub.verdict is Verdict.PASS and "NVIDIA_VISIBLE_DEVICES=all" in sub.summary


def test_t1_env_bypass_that_works_fails():
    leaked = P("t1-env-all", env={"NVIDIA_VISIBLE_DEVICES": "all"}, nodes=[0, 1], uuids=UUIDS, smi_rc=0)
    sub = iso.judge_no_request([t1_probes()[0], leaked])
    assert sub.verdict is Verdict.FAIL and "t1-env-all" in sub.observed


def test_t1_without_the_env_variant_is_unknown():
    assert iso.judge_no_request(t1_probes()[:1]).verdict is Verdict.UNKNOWN
    assert iso.judge_no_request(t1_probes()[:1], require_env_bypass=False).verdict is Verdict.PASS


def test_t1_a_node_created_and_opened_is_a_fail():
    p = P("t1-none", attempts=[{"path": "/dev/nvidia0", "exists": False, "mknod": {"attempted": True, "ok": True},
                                "open": {"ok": True, "errno": None}}])
    assert iso.judge_no_request([p], require_env_bypass=False).verdict is Verdict.FAIL


def test_t1_nvidia_smi_absent_counts_as_finding_nothing():
    p = P("t1-busybox", smi_rc=None)
    assert not p.smi_found and iso.judge_no_request([p], require_env_bypass=False).verdict is Verdict.PASS


def test_t1_nvml_counting_devices_is_a_fail_even_without_nodes():
    p = P("t1-none", nvml_count=2)
    assert iso.judge_no_request([p], require_env_bypass=False).verdict is Verdict.FAIL


def test_t1_no_probes_is_unknown():
    assert iso.judge_no_request([]).verdict is Verdict.UNKNOWN


# --- T2 --------------------------------------------------------------------------------------------------------------


def test_t2_one_request_one_device():
    sub = iso.judge_single_request(P("t2", nodes=[0], uuids=UUIDS[:1], smi_rc=0))
    assert sub.verdict is Verdict.PASS and UUIDS[0] in sub.summary


def test_t2_two_devices_fail():
    assert iso.judge_single_request(P("t2", nodes=[0, 1], uuids=UUIDS, smi_rc=0)).verdict is Verdict.FAIL


def test_t2_node_without_a_readable_uuid_is_unknown():
    p = iso.load_probe({**probe_doc("t2", nodes=[0], smi_rc=None), "nvml": None, "cuda": None})
    assert iso.judge_single_request(p).verdict is Verdict.UNKNOWN


def test_t2_no_node_fails_and_missing_probe_is_unknown():
    assert iso.judge_single_request(P("t2")).verdict is Verdict.FAIL
    assert iso.judge_single_request(None).verdict is Verdict.UNKNOWN


# --- T3 --------------------------------------------------------------------------------------------------------------


def t3_pair(**b_kw) -> tuple[iso.Probe, iso.Probe]:
    # the shared control node opens in every GPU container (granted by design): it is not the other pod's device
    a = P("t3-pod-a", nodes=[0], uuids=UUIDS[:1], smi_rc=0,
          attempts=[opened("/dev/nvidia0"), denied("/dev/nvidia1"), opened("/dev/nvidiactl")])
    kw = {"nodes": [1], "uuids": UUIDS[1:], "smi_rc": 0,
          "attempts": [opened("/dev/nvidia1"), denied("/dev/nvidia0"), opened("/dev/nvidiactl")]}
    kw.update(b_kw)
    return a, P("t3-pod-b", **kw)


def test_t3_distinct_uuids_and_cross_open_denied():
    sub = iso.judge_cross_pod(*t3_pair())
    assert sub.verdict is Verdict.PASS
    assert sub.details["errnos"] == ["EPERM"] and sub.details["denied_by_kernel"] is True
    assert "2 successful mknod(s)" in sub.summary


def test_t3_same_uuid_fails():
    sub = iso.judge_cross_pod(*t3_pair(uuids=UUIDS[:1]))
    assert sub.verdict is Verdict.FAIL and "both pods see" in sub.summary


def test_t3_cross_open_that_succeeds_fails():
    sub = iso.judge_cross_pod(*t3_pair(attempts=[opened("/dev/nvidia1"), opened("/dev/nvidia0")]))
    assert sub.verdict is Verdict.FAIL and "cross-pod device opened" in sub.summary


def test_t3_without_cross_attempts_is_unknown():
    assert iso.judge_cross_pod(*t3_pair(attempts=[opened("/dev/nvidia1")])).verdict is Verdict.UNKNOWN


def test_t3_single_gpu_is_unknown_and_across_nodes_is_labelled_weaker():
    assert iso.judge_cross_pod(t3_pair()[0], None).verdict is Verdict.UNKNOWN
    sub = iso.judge_cross_pod(*t3_pair(), same_node=False)
    assert sub.verdict is Verdict.PASS and "weaker" in sub.summary


# --- T4 --------------------------------------------------------------------------------------------------------------


def test_t4_only_the_requesting_container_sees_the_device():
    gpu = P("t4-ctr-gpu", nodes=[1], uuids=UUIDS[1:], smi_rc=0)
    assert iso.judge_multi_container(gpu, P("t4-ctr-nogpu", attempts=[denied("/dev/nvidia1")])).verdict is Verdict.PASS
    leak = P("t4-ctr-nogpu", nodes=[1], uuids=UUIDS[1:], smi_rc=0)
    assert iso.judge_multi_container(gpu, leak).verdict is Verdict.FAIL
    assert iso.judge_multi_container(None, leak).verdict is Verdict.UNKNOWN


# --- matrix ----------------------------------------------------------------------------------------------------------

GRANTED = {"t2": 1, "t3-pod-a": 1, "t3-pod-b": 1, "t4-ctr-gpu": 1}
GROUPS = {"t3-pod-a": "t3", "t3-pod-b": "t3", "t4-ctr-gpu": "t4", "t4-ctr-nogpu": "t4"}


def all_probes(**overrides: iso.Probe) -> list[iso.Probe]:
    a, b = t3_pair()
    probes = {p.label: p for p in [*t1_probes(), P("t2", nodes=[0], uuids=UUIDS[:1], smi_rc=0), a, b,
                                   P("t4-ctr-gpu", nodes=[1], uuids=UUIDS[1:], smi_rc=0), P("t4-ctr-nogpu")]}
    probes.update(overrides)
    return list(probes.values())


def test_matrix_is_diagonal_and_a_gpu_reused_in_sequence_is_fine():
    m = iso.build_visibility_matrix(all_probes(), GRANTED, GROUPS)
    assert m.is_diagonal and m.columns == UUIDS
    assert m.cells[m.rows.index("t3-pod-b")] == [False, True]
    assert iso.judge_matrix(m).verdict is Verdict.PASS


def test_off_diagonal_no_request_row_fails():
    leak = P("t1-env-all", env={"NVIDIA_VISIBLE_DEVICES": "all"}, nodes=[0, 1], uuids=UUIDS, smi_rc=0)
    m = iso.build_visibility_matrix(all_probes(**{"t1-env-all": leak}), GRANTED, GROUPS)
    assert not m.is_diagonal and "t1-env-all sees 2 UUID(s)" in m.violations[0]
    assert (1, 0) in m.bad_cells and iso.judge_matrix(m).verdict is Verdict.FAIL


def test_off_diagonal_shared_uuid_within_a_group_fails():
    _, b = t3_pair(uuids=UUIDS[:1])
    m = iso.build_visibility_matrix(all_probes(**{"t3-pod-b": b}), GRANTED, GROUPS)
    assert any("seen by t3-pod-a, t3-pod-b" in v for v in m.violations)
    assert iso.judge_matrix(m).verdict is Verdict.FAIL


def test_granted_but_unseen_is_reported_as_missing_not_as_a_violation():
    m = iso.build_visibility_matrix(all_probes(t2=P("t2")), GRANTED, GROUPS)
    assert m.is_diagonal and m.missing == ["t2 sees 0 UUID(s), granted 1"]


def test_visibility_chart_draws_good_and_bad():
    fig = Figure()
    assert iso.draw_visibility_matrix(fig.subplots(), iso.build_visibility_matrix(all_probes(), GRANTED, GROUPS)) is not None
    _, b = t3_pair(uuids=UUIDS[:1])
    bad = iso.build_visibility_matrix(all_probes(**{"t3-pod-b": b}), GRANTED, GROUPS)
    ax = Figure().subplots()
    iso.draw_visibility_matrix(ax, bad)
    assert "violation" in ax.get_title()
    assert iso.draw_visibility_matrix(Figure().subplots(), iso.build_visibility_matrix([], {}, {})) is None


def test_probe_loading_is_tolerant_of_missing_sections():
    p = iso.load_probe({"label": "bare"})
    assert p.gpu_nodes == [] and p.uuids == [] and not p.smi_found and p.nvml_count is None
    assert iso.load_probe('{"label": "x", "uuids": ["GPU-a"]}', label="y").label == "y"
    assert synth.probe_doc("z")["schema"] == "aiconf.device_probe/1"


# --- simulated GPUs: an open the devices cgroup let through fails with ENXIO, not EPERM ------------------------------


def reached(path: str) -> dict:
    return {"path": path, "exists": True, "mknod": None, "open": {"ok": False, "errno": "ENXIO", "error": "No such device or address"}}


def test_t3_cross_open_reaching_the_driver_is_a_fail_even_without_success():
    sub = iso.judge_cross_pod(*t3_pair(attempts=[reached("/dev/nvidia1"), reached("/dev/nvidia0")]))
    assert sub.verdict is Verdict.FAIL and "reached" in sub.summary


def test_t3_own_node_enxio_and_cross_eperm_passes_as_on_the_simulated_cluster():
    a = P("t3-pod-a", nodes=[0], uuids=UUIDS[:1], smi_rc=0, attempts=[reached("/dev/nvidia0"), denied("/dev/nvidia1")])
    b = P("t3-pod-b", nodes=[1], uuids=UUIDS[1:], smi_rc=0, attempts=[reached("/dev/nvidia1"), denied("/dev/nvidia0")])
    assert iso.judge_cross_pod(a, b).verdict is Verdict.PASS


def test_t1_enxio_on_a_created_node_means_the_cgroup_let_it_through():
    p = P("t1-none", attempts=[reached("/dev/nvidia0")])
    assert iso.judge_no_request([p], require_env_bypass=False).verdict is Verdict.FAIL
