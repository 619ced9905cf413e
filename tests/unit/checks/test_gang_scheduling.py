"""gang_scheduling without a cluster: verdict rules on constructed pod-event sequences, sizing, manifests, detection,
Kueue configuration reading, charts, and the check's FAIL paths against a fake API."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import pytest

from aiconf.checks import gang_scheduling as gs
from aiconf.errors import ConfigError
from aiconf.execute import run_check
from aiconf.model import Verdict
from aiconf.params import load_parameters

PARAMS = load_parameters()


# --- constructed pod event sequences ---------------------------------------------------------------------------------


def pod(name: str, phase: str = "Pending", node: str = "", *, gated: bool = False, started: str = "",
        scheduled: str = "") -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase}
    if scheduled:
        status["conditions"] = [{"type": "PodScheduled", "status": "True", "lastTransitionTime": scheduled}]
    if started:
        status["containerStatuses"] = [{"name": "member", "state": {"running": {"startedAt": started}}}]
    spec: dict[str, Any] = {"nodeName": node} if node else {}
    if gated:
        spec["schedulingGates"] = [{"name": "kueue.x-k8s.io/admission"}]
    return {"metadata": {"name": name, "creationTimestamp": "2026-11-28T10:00:00Z"}, "spec": spec, "status": status}


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def replay(states: list[tuple[float, list[dict[str, Any]]]], gang: str = "g") -> gs.PodTracker:
    """Feed a tracker the pod lists a watch would deliver at the given times."""
    clock = Clock()
    tracker = gs.PodTracker(gang, 0.0, clock=clock)
    for t, objs in states:
        clock.t = t
        tracker.update(objs)
    return tracker


def names(n: int) -> list[str]:
    return [f"gang-{i}-abcde" for i in range(n)]


def test_gang_that_starts_together_passes_with_its_skew():
    p = names(4)
    tracker = replay([
        (0.0, []),
        (0.1, [pod(x) for x in p]),
        (0.2, [pod(x, "Pending", "n1") for x in p]),
        (0.30, [pod(p[0], "Running", "n1")] + [pod(x, "Pending", "n1") for x in p[1:]]),
        (0.45, [pod(x, "Running", "n1", started="2026-11-28T10:00:01Z") for x in p]),
        (20.0, [pod(x, "Succeeded", "n1") for x in p]),
    ])
    verdict, summary = gs.judge_together(tracker, 4)
    assert verdict is Verdict.PASS
    assert "all 4 pods Running at the same time" in summary
    skew = gs.start_skew(tracker)
    assert skew["observed_start_skew_s"] == pytest.approx(0.15)
    assert skew["api_start_skew_s"] == 0.0
    assert tracker.finished == 4
    assert all(r["finished_s"] == 20.0 for r in tracker.rows())


def test_gang_whose_pods_never_overlap_fails():
    p = names(4)
    seq = []
    for i in range(4):  # one after another, as a scheduler without gang semantics and one free slot would run them
        seq.append((i * 10.0, [pod(x, "Succeeded", "n") for x in p[:i]] + [pod(p[i], "Running", "n")]))
    verdict, summary = gs.judge_together(replay(seq), 4)
    assert verdict is Verdict.FAIL
    assert summary == "only 1 of 4 pods were ever Running at the same time"


def test_gang_never_admitted_fails_with_reason():
    verdict, summary = gs.judge_together(replay([(0.0, []), (30.0, [])]), 3)
    assert verdict is Verdict.FAIL and "never admitted: no pod was created" in summary
    verdict, summary = gs.judge_together(replay([(0.0, [pod(x, gated=True) for x in names(3)])]), 3)
    assert verdict is Verdict.FAIL and "no pod of the gang of 3 ran (3 created" in summary


def test_hold_with_nothing_created_passes():
    tracker = replay([(0.0, []), (15.0, [])])
    verdict, summary = gs.judge_hold(tracker.samples, 5, 15)
    assert verdict is Verdict.PASS
    assert "no pod was even created" in summary


def test_hold_with_gated_pending_pods_passes():
    tracker = replay([(0.0, [pod(x, gated=True) for x in names(5)]), (15.0, [pod(x, gated=True) for x in names(5)])])
    verdict, summary = gs.judge_hold(tracker.samples, 5, 15)
    assert verdict is Verdict.PASS
    assert "5 pods stayed Pending/gated" in summary


def test_three_of_five_running_is_partial_admission():
    p = names(5)
    tracker = replay([
        (0.0, []),
        (1.0, [pod(x) for x in p]),
        (2.0, [pod(x, "Running", "n1") for x in p[:3]] + [pod(x) for x in p[3:]]),
        (15.0, [pod(x, "Running", "n1") for x in p[:3]] + [pod(x) for x in p[3:]]),
    ])
    verdict, summary = gs.judge_hold(tracker.samples, 5, 15)
    assert verdict is Verdict.FAIL
    assert summary.startswith("partial admission: 3 of 5 pods Running")


def test_bound_but_not_yet_running_is_partial_scheduling():
    p = names(5)
    tracker = replay([(1.0, [pod(x, "Pending", "n1") for x in p[:2]] + [pod(x) for x in p[2:]])])
    verdict, summary = gs.judge_hold(tracker.samples, 5, 15)
    assert verdict is Verdict.FAIL and summary.startswith("partial scheduling: 2 of 5 pods bound")


def test_whole_oversized_gang_running_fails():
    tracker = replay([(1.0, [pod(x, "Running", "n1") for x in names(5)])])
    verdict, summary = gs.judge_hold(tracker.samples, 5, 15)
    assert verdict is Verdict.FAIL and "exceeds capacity" in summary


def test_hold_without_observation_is_unknown():
    assert gs.judge_hold([], 5, 15)[0] is Verdict.UNKNOWN


def test_pod_that_ran_between_events_keeps_its_api_start():
    tracker = replay([(0.0, [pod("a-0-abcde")]), (5.0, [{**pod("a-0-abcde", "Succeeded", "n"), "status": {
        "phase": "Succeeded", "containerStatuses": [{"state": {"terminated": {"startedAt": "2026-11-28T10:00:01Z",
                                                                              "finishedAt": "2026-11-28T10:00:04Z"}}}]}}])])
    row = tracker.rows()[0]
    assert row["started_at"] == "2026-11-28T10:00:01Z" and row["finished_at"] == "2026-11-28T10:00:04Z"
    assert row["running_s"] == 5.0 and row["finished_s"] == 5.0


def test_deleted_pod_is_marked_finished():
    tracker = replay([(0.0, [pod("a-0-abcde", "Running", "n")]), (3.0, [])])
    assert tracker.pods["a-0-abcde"].finished_s == 3.0


# --- sizing and manifests --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "free", "size", "accelerators"),
    [
        ({}, 16, 4, True),
        ({}, 3, 2, True),
        ({}, 2, 4, False),
        ({}, 0, 4, False),
        ({"gang_use_gpus": False}, 16, 4, False),
        ({"gang_size": 6}, 7, 6, True),
        ({"gang_size": 6}, 6, 6, False),
        ({"gang_size": 3}, 0, 3, False),
    ],
    ids=["auto-16", "auto-3", "auto-2-cpu", "no-gpus", "gpus-off", "size6-fits", "size6-no-room", "size3-cpu"],
)
def test_plan_gang(overrides, free, size, accelerators):
    plan = gs.plan_gang(PARAMS.replace(**overrides), free)
    assert (plan.size, plan.accelerators) == (size, accelerators)
    assert plan.resource == ("nvidia.com/gpu" if accelerators else "cpu")
    assert ("CPU gang" in plan.reason) is (not accelerators)


@pytest.mark.parametrize("size", [1, -2])
def test_gang_of_one_is_refused(size):
    with pytest.raises(ConfigError, match="gang_size"):
        gs.plan_gang(PARAMS.replace(gang_size=size), 16)


def test_quota_is_exactly_the_capacity_of_the_gang_resource():
    gpu = gs.plan_gang(PARAMS, 16)
    assert gs.quotas(gpu, 4)["nvidia.com/gpu"] == "4"
    cpu = gs.plan_gang(PARAMS.replace(gang_use_gpus=False), 0)
    q = gs.quotas(cpu, 4)
    assert q["cpu"] == f"{4 * gs.POD_CPU_M}m" and "nvidia.com/gpu" not in q


def test_gang_job_is_a_suspended_queued_job_of_n_pods():
    plan = gs.plan_gang(PARAMS, 16)
    job = gs.gang_job("gang-fits", "ns1", "lq", 4, plan, PARAMS.replace(gang_node_selector="type=kwok"), "positive")
    spec = job["spec"]
    assert spec["parallelism"] == spec["completions"] == 4 and spec["suspend"] is True
    assert job["metadata"]["labels"][gs.QUEUE_LABEL] == "lq"
    pod_spec = spec["template"]["spec"]
    res = pod_spec["containers"][0]["resources"]
    assert res["limits"]["nvidia.com/gpu"] == "1" and res["requests"]["nvidia.com/gpu"] == "1"
    assert pod_spec["nodeSelector"] == {"type": "kwok", "nvidia.com/gpu.present": "true"}
    assert pod_spec["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert spec["template"]["metadata"]["annotations"][gs.KWOK_COMPLETE_DELAY] == f"{PARAMS.gang_pod_run_s}s"
    assert f"sleep {PARAMS.gang_pod_run_s}" in pod_spec["containers"][0]["command"][-1]


def test_cpu_gang_job_requests_no_accelerator():
    plan = gs.plan_gang(PARAMS.replace(gang_use_gpus=False), 0)
    pod_spec = gs.gang_job("j", "ns", "lq", 3, plan, PARAMS, "negative")["spec"]["template"]["spec"]
    res = pod_spec["containers"][0]["resources"]
    assert "nvidia.com/gpu" not in res["requests"] and "nodeSelector" not in pod_spec and "tolerations" not in pod_spec


def test_cluster_queue_only_serves_the_checks_namespace():
    cq = gs.cluster_queue("cq", "v1beta2", "rf", {"cpu": "1", "nvidia.com/gpu": "4"}, {"aiconf.io/run-id": "r1"})
    assert cq["apiVersion"] == "kueue.x-k8s.io/v1beta2"
    assert cq["spec"]["namespaceSelector"] == {"matchLabels": {"aiconf.io/run-id": "r1"}}
    group = cq["spec"]["resourceGroups"][0]
    assert group["coveredResources"] == ["cpu", "nvidia.com/gpu"]
    assert [r["name"] for r in group["flavors"][0]["resources"]] == group["coveredResources"]
    assert gs.local_queue("lq", "ns", "v1beta1", "cq")["spec"] == {"clusterQueue": "cq"}


# --- detection and configuration -------------------------------------------------------------------------------------


class FakeKube:
    """Just enough of :class:`aiconf.kube.Kube` for detection, configuration reading and the FAIL paths."""

    def __init__(self, groups: dict[str, dict[str, list[str]]] | None = None, configmaps: dict[str, list[dict]] | None = None):
        self.groups = groups or {}  # group -> version -> kinds
        self.configmaps = configmaps or {}
        self.created: list[dict] = []

    def version(self) -> dict[str, str]:
        return {"gitVersion": "v1.36.3"}

    def served_versions(self, group: str) -> list[str]:
        return list(self.groups.get(group, {}))

    def api_resources(self, group_version: str) -> list[dict[str, str]]:
        group, _, version = group_version.rpartition("/")
        kinds = self.groups.get(group, {}).get(version, [])
        return [{"name": k.lower() + "s", "kind": k} for k in kinds]

    def has_kind(self, api_version: str, kind: str) -> bool:
        return any(r["kind"] == kind for r in self.api_resources(api_version))

    def list(self, api_version: str, kind: str, namespace: str | None = None, **_: Any) -> list[dict]:
        if kind == "ConfigMap":
            return self.configmaps.get(namespace or "", [])
        return []

    def create(self, obj: dict, **_: Any) -> dict:
        self.created.append(obj)
        return obj


KUEUE = {"kueue.x-k8s.io": {"v1beta2": ["ClusterQueue", "LocalQueue", "Workload", "ResourceFlavor"], "v1beta1": ["ClusterQueue"]}}
VOLCANO = {"scheduling.volcano.sh": {"v1beta1": ["PodGroup", "Queue"]}}


def test_detection_prefers_kueue_v1beta2():
    found = gs.detect_solutions(FakeKube({**VOLCANO, **KUEUE}))
    assert [f["name"] for f in found] == ["kueue", "volcano"]
    assert found[0]["version"] == "v1beta2" and found[0]["complete"]
    chosen, why = gs.choose_solution(found, "auto")
    assert chosen["name"] == "kueue" and "auto-detected Kueue" in why


def test_requested_solution_is_used_even_when_another_comes_first():
    chosen, _ = gs.choose_solution(gs.detect_solutions(FakeKube({**VOLCANO, **KUEUE})), "volcano")
    assert chosen["name"] == "volcano"


def test_nothing_served_names_every_api_looked_for():
    chosen, why = gs.choose_solution(gs.detect_solutions(FakeKube()), "auto")
    assert chosen is None
    for group in ("kueue.x-k8s.io", "scheduling.volcano.sh", "scheduling.run.ai", "scheduling.x-k8s.io"):
        assert group in why


def test_group_served_without_its_kinds_is_not_a_solution():
    chosen, why = gs.choose_solution(gs.detect_solutions(FakeKube({"kueue.x-k8s.io": {"v1beta2": ["Workload"]}})), "auto")
    assert chosen is None and "served without ClusterQueue, LocalQueue" in why


def test_requested_solution_absent_and_unknown_name():
    chosen, why = gs.choose_solution(gs.detect_solutions(FakeKube(KUEUE)), "volcano")
    assert chosen is None and why == "Volcano requested (gang_scheduler=volcano) but its API scheduling.volcano.sh is not served"
    with pytest.raises(ConfigError, match="unknown gang_scheduler"):
        gs.choose_solution([], "yunikorn")


@pytest.mark.parametrize(
    ("cfg", "enabled"),
    [
        ({"apiVersion": "config.kueue.x-k8s.io/v1beta2", "waitForPodsReady": {"timeout": "5m"}}, True),
        ({"apiVersion": "config.kueue.x-k8s.io/v1beta2"}, False),
        ({"apiVersion": "config.kueue.x-k8s.io/v1beta1", "waitForPodsReady": {"enable": True}}, True),
        ({"apiVersion": "config.kueue.x-k8s.io/v1beta1", "waitForPodsReady": {"enable": False}}, False),
        ({"apiVersion": "config.kueue.x-k8s.io/v1beta1", "waitForPodsReady": {"timeout": "5m"}}, False),
    ],
    ids=["v1beta2-present", "v1beta2-absent", "v1beta1-on", "v1beta1-off", "v1beta1-no-enable"],
)
def test_wait_for_pods_ready(cfg, enabled):
    assert gs.wait_for_pods_ready(cfg)["wait_for_pods_ready"] is enabled


def test_kueue_configuration_from_its_configmap():
    text = "apiVersion: config.kueue.x-k8s.io/v1beta1\nkind: Configuration\nwaitForPodsReady:\n  enable: true\n  timeout: 10m\n"
    kube = FakeKube(configmaps={"kueue-system": [
        {"metadata": {"name": "other"}, "data": {"x": "y"}},
        {"metadata": {"name": "kueue-manager-config"}, "data": {"controller_manager_config.yaml": text}},
    ]})
    cfg = gs.kueue_configuration(kube, ["kueue-system"])
    assert cfg["readable"] and cfg["wait_for_pods_ready"] is True
    assert cfg["where"] == "ConfigMap kueue-system/kueue-manager-config key controller_manager_config.yaml"
    missing = gs.kueue_configuration(FakeKube(), ["kueue-system"])
    assert not missing["readable"] and "outside the cluster" in missing["why"]


# --- the check against a fake API: no gang scheduler must FAIL, never PASS ------------------------------------------------


def test_no_gang_scheduler_fails_the_must(tmp_path):
    result = run_check("gang_scheduling", PARAMS, kube=FakeKube(), run_dir=tmp_path)
    assert result.verdict is Verdict.FAIL
    assert result.reason == "failed: scheduler_detected"
    sub = result.subcheck("scheduler_detected")
    assert "no gang scheduling solution found" in sub.summary
    for s in gs.FUNCTIONAL:
        assert result.subcheck(s).verdict is Verdict.UNKNOWN
    assert (tmp_path / "results" / "gang_scheduling.json").exists()


def test_requested_scheduler_not_installed_fails(tmp_path):
    result = run_check("gang_scheduling", PARAMS.replace(gang_scheduler="volcano"), kube=FakeKube(KUEUE), run_dir=tmp_path)
    assert result.verdict is Verdict.FAIL
    assert "Volcano requested" in result.subcheck("scheduler_detected").summary


def test_other_solution_asks_for_manual_evidence(tmp_path):
    result = run_check("gang_scheduling", PARAMS, kube=FakeKube(VOLCANO), run_dir=tmp_path)
    assert result.verdict is Verdict.UNKNOWN
    assert "implemented for Kueue only" in result.subcheck("gang_admitted_together").summary


# --- charts ----------------------------------------------------------------------------------------------------------


def test_charts_draw_from_recorded_series(tmp_path):
    from aiconf.context import TimeSeries
    from aiconf.model import RequirementResult

    p = names(2)
    pos = replay([(0.0, [pod(x, "Running", "n") for x in p]), (20.0, [pod(x, "Succeeded", "n") for x in p])], "positive")
    neg = replay([(25.0, []), (40.0, [pod(x, "Running", "n") for x in names(3)]), (60.0, [])], "negative")
    timeline = TimeSeries("pod_timeline", rows=[{"t_s": 60, "time": "", **r} for r in pos.rows() + neg.rows()])
    running = TimeSeries("running_pods", rows=[{"time": "", **s} for s in pos.samples + neg.samples])
    running.rows += [{"t_s": 25.0, "event": "hold start"}, {"t_s": 38.0, "event": "hold end"},
                     {"t_s": 39.0, "event": "quota raised"}]
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "pod_timeline.csv").write_text(timeline.to_csv())
    (tmp_path / "e" / "running_pods.csv").write_text(running.to_csv())
    result = RequirementResult("gang_scheduling", "1.36", "MUST", metrics={
        "gang_size": 2, "positive_observed_start_skew_s": 0.1,
        "series": {"pod_timeline": "e/pod_timeline.csv", "running_pods": "e/running_pods.csv"}})
    result.run_dir = tmp_path
    fig, (a, b) = plt.subplots(2)
    gs.draw_gantt(a, result)
    gs.draw_running(b, result)
    assert len(a.get_yticklabels()) == 5 and a.get_yticklabels()[0].get_text() == "fits #0"
    assert "skew 100 ms" in a.get_title()
    assert any(line.get_label() == "capacity+1 gang running" for line in b.get_lines())
    plt.close(fig)


def test_charts_say_when_nothing_was_recorded(tmp_path):
    from aiconf.model import RequirementResult

    result = RequirementResult("gang_scheduling", "1.36", "MUST")
    result.run_dir = tmp_path
    fig, ax = plt.subplots()
    gs.draw_gantt(ax, result)
    gs.draw_running(ax, result)
    assert ax.texts
    plt.close(fig)
