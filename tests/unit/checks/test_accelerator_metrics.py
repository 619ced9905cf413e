"""accelerator_metrics without a cluster: node and exporter discovery, name maps, per-node combination, the
Prometheus answer, the load pod, and whole runs against a fake API whose exporter is the sandbox's own DCGM
simulation (aiconf.workloads.dcgm_sim) reading load files in a temporary folder. Broken variants must not PASS:
no exporter, an exporter on too few GPUs, an unrecognised exporter, a name map that drops a core metric or names a
family the exporter does not serve, and an exporter that does not follow the load."""

from __future__ import annotations

import copy
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from matplotlib.figure import Figure

from aiconf import display
from aiconf.accel import dcgm
from aiconf.checks import accelerator_metrics as am
from aiconf.execute import run_check
from aiconf.model import SubCheck, Verdict
from aiconf.params import Params, load_parameters
from aiconf.workloads import dcgm_sim

GPU = "nvidia.com/gpu"
UUIDS = ["GPU-aaaaaaaa-0000-0000-0000-000000000000", "GPU-bbbbbbbb-1111-1111-1111-111111111111"]


def node(
    name: str, gpus: int = 2, *, kwok: bool = False, taints: list | None = None, replicas: int | None = None
) -> dict:
    labels = {"nvidia.com/gpu.present": "true"}
    if replicas:
        labels["nvidia.com/gpu.replicas"] = str(replicas)
    meta: dict[str, Any] = {"name": name, "labels": labels}
    if kwok:
        meta["annotations"] = {"kwok.x-k8s.io/node": "fake"}
    return {
        "metadata": meta,
        "spec": {"taints": taints or []},
        "status": {
            "allocatable": {GPU: str(gpus)} if gpus else {},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def exporter_pod(
    name: str, node_name: str, *, ready: bool = True, port_name: str = "metrics", simulated: bool = False
) -> dict:
    labels = {"app": "nvidia-dcgm-exporter"}
    if simulated:
        labels[am.SIMULATED_LABEL] = "true"
    return {
        "metadata": {"name": name, "namespace": "gpu-operator", "labels": labels},
        "spec": {
            "nodeName": node_name,
            "containers": [{"name": "e", "ports": [{"name": port_name, "containerPort": 9400}]}],
        },
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


# --- nodes -----------------------------------------------------------------------------------------------------------


def test_accelerator_nodes_flag_kwok_and_read_time_slicing_replicas():
    nodes = am.accelerator_nodes(
        [node("real", 2), node("sim", 8, kwok=True), node("cpu", 0), node("ts", 8, replicas=4)], GPU
    )
    by = {n.name: n for n in nodes}
    assert set(by) == {"real", "sim", "ts"}
    assert by["sim"].simulated and not by["real"].simulated
    assert by["ts"].replicas == 4 and by["ts"].devices == 2
    assert [n.name for n in nodes][-1] == "sim"  # real nodes first


def test_tolerations_cover_every_taint_of_the_target_node_and_the_gpu_taint():
    n = am.accelerator_nodes(
        [
            node(
                "n",
                taints=[
                    {"key": "sandbox.aiconf.io/real-node", "value": "true", "effect": "NoSchedule"},
                    {"key": "dedicated", "effect": "NoExecute"},
                ],
            )
        ],
        GPU,
    )[0]
    tol = am.node_tolerations(n, ("nvidia.com/gpu",))
    assert {"key": "sandbox.aiconf.io/real-node", "operator": "Exists", "effect": "NoSchedule"} in tol
    assert {"key": "dedicated", "operator": "Exists", "effect": "NoExecute"} in tol
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in tol


def test_free_accelerators_subtract_active_pods_on_the_node():
    n = am.accelerator_nodes([node("n", 4)], GPU)[0]

    def pod(node_name, gpus, phase="Running"):
        return {
            "spec": {"nodeName": node_name, "containers": [{"resources": {"limits": {GPU: str(gpus)}}}]},
            "status": {"phase": phase},
        }

    pods = [pod("n", 1), pod("n", 2, "Succeeded"), pod("other", 2), pod("n", 1, "Pending")]
    assert am.free_accelerators(n, pods, GPU) == 2


# --- exporter discovery ----------------------------------------------------------------------------------------------


def test_exporter_pods_one_per_node_ready_preferred_and_port_by_name():
    listed = {
        "app=nvidia-dcgm-exporter": [
            exporter_pod("a", "n1", ready=False),
            exporter_pod("b", "n1"),
            exporter_pod("c", "n2", port_name="gpu-metrics"),
        ]
    }
    pods = am.exporter_pods(listed, 9400)
    assert pods["n1"].name == "b" and pods["n1"].ready
    assert pods["n2"].port == 9400 and pods["n2"].ref == "gpu-operator/c:9400"
    assert am.proxy_path("ns", "p", 9400, "/metrics") == "/api/v1/namespaces/ns/pods/p:9400/proxy/metrics"


def test_metrics_port_falls_back_to_the_default_or_the_only_port():
    pod = {"spec": {"containers": [{"ports": [{"containerPort": 8080}]}]}}
    assert am.metrics_port(pod, 9400) == 8080
    pod = {"spec": {"containers": [{"ports": [{"containerPort": 8080}, {"containerPort": 9400}]}]}}
    assert am.metrics_port(pod, 9400) == 9400


# --- name maps -------------------------------------------------------------------------------------------------------


def sim_text(
    tmp_path: Path,
    gpus: int = 2,
    load: dict[int, tuple[float, float]] | None = None,
    alloc: dict[int, str] | None = None,
) -> str:
    """One exposition of the sandbox's DCGM simulation over ``gpus`` GPUs (``load``: index -> (util, MiB))."""
    d = tmp_path / "gpu"
    (d / "load").mkdir(parents=True, exist_ok=True)
    (d / "devices").write_text("".join(f"nvidia{i} {i} {UUIDS[i]} 81559 NVIDIA-H100-80GB-HBM3\n" for i in range(gpus)))
    for i, (util, mib) in (load or {}).items():
        (d / "load" / UUIDS[i]).mkdir(exist_ok=True)
        (d / "load" / UUIDS[i] / "load").write_text(json.dumps({"util": util, "fb_used_mib": mib}))
    (d / "allocations.json").write_text(
        json.dumps({UUIDS[i]: {"pod": p, "namespace": "ns", "container": "load"} for i, p in (alloc or {}).items()})
    )
    return dcgm_sim.Simulator(str(d), "node-a").exposition()


def test_a_name_map_without_a_core_class_is_unknown_never_pass(tmp_path):
    expo = dcgm.parse_exposition(sim_text(tmp_path))
    sub, nm = am.judge_recognised(expo, am.name_maps(None))
    assert sub.verdict is Verdict.PASS and nm.name == "dcgm"
    dropped = {"name": "dcgm-no-memory", "classes": {"utilization": ["DCGM_FI_DEV_GPU_UTIL"]}}
    sub, nm = am.judge_recognised(expo, am.name_maps(dropped))
    assert sub.verdict is Verdict.UNKNOWN and nm is None and sub.details["lacking"] == ["memory_used"]
    demoted = {
        "name": "x",
        "classes": {"utilization": ["DCGM_FI_DEV_GPU_UTIL"], "memory_used": ["DCGM_FI_DEV_FB_USED"]},
        "core": ["utilization"],
    }
    assert am.judge_recognised(expo, am.name_maps(demoted))[0].verdict is Verdict.UNKNOWN


def test_an_unrecognised_exporter_is_unknown():
    expo = dcgm.parse_exposition('# HELP amd_gpu_use x\n# TYPE amd_gpu_use gauge\namd_gpu_use{gpu_id="0"} 3\n')
    sub, nm = am.judge_recognised(expo, am.name_maps(None))
    assert sub.verdict is Verdict.UNKNOWN and nm is None
    amd = {
        "name": "amd",
        "classes": {"utilization": ["amd_gpu_use"], "memory_used": ["amd_gpu_vram_used"]},
        "labels": {"index": "gpu_id"},
    }
    sub, nm = am.judge_recognised(expo, am.name_maps(amd))
    assert sub.verdict is Verdict.PASS and nm.name == "amd"
    core, _ = dcgm.judge_core_metrics(expo, 1, nm)
    assert core.verdict is Verdict.FAIL  # the map names a memory family the exporter does not serve


# --- combining and presence ------------------------------------------------------------------------------------------


def test_combine_takes_the_worst_verdict_and_names_nodes():
    one = am.combine("x", {"n1": SubCheck("x", Verdict.PASS, "fine")})
    assert one.verdict is Verdict.PASS and one.summary == "n1: fine"
    two = am.combine(
        "x", {"n1": SubCheck("x", Verdict.PASS, "fine"), "n2": SubCheck("x", Verdict.FAIL, "bad")}, required=False
    )
    assert two.verdict is Verdict.FAIL and two.summary.startswith("n2: FAIL bad") and not two.required
    assert (
        am.combine("x", {"n1": SubCheck("x", Verdict.UNKNOWN, "?"), "n2": SubCheck("x", Verdict.PASS, "")}).verdict
        is Verdict.UNKNOWN
    )
    assert am.combine("x", {}).verdict is Verdict.UNKNOWN


def test_merge_presence_puts_nodes_side_by_side(tmp_path):
    a = dcgm.build_presence_matrix(dcgm.parse_exposition(sim_text(tmp_path / "a", gpus=2)))
    text = "\n".join(line for line in sim_text(tmp_path / "b", gpus=1).splitlines() if "GPU_TEMP" not in line) + "\n"
    b = dcgm.build_presence_matrix(dcgm.parse_exposition(text))
    m = am.merge_presence([a, b])
    assert len(m.devices) == 3
    temp = m.metrics.index("DCGM_FI_DEV_GPU_TEMP")
    assert m.present[temp] == [True, True, False]


# --- Prometheus ------------------------------------------------------------------------------------------------------


def prom_answer(counts: dict[str, int]) -> dict:
    return {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [{"metric": {"__name__": k}, "value": [0, str(v)]} for k, v in counts.items()],
        },
    }


def test_prometheus_must_hold_the_scraped_accelerators_by_uuid():
    t = am.PromTarget("mon", "prom", "web", "test")
    full = {"DCGM_FI_DEV_GPU_UTIL": 2, "DCGM_FI_DEV_FB_USED": 2, "DCGM_FI_DEV_FB_FREE": 2}
    want = set(UUIDS)
    ok = {k: set(UUIDS) for k in ("utilization", "memory_used", "memory_free")}
    sub = am.judge_prometheus(prom_answer(full), dcgm.DCGM, 2, t, ok, want)
    assert sub.verdict is Verdict.PASS and "found: 2/2" in sub.observed
    other_gpus = {**ok, "memory_used": {"GPU-of-another-cluster", UUIDS[0]}}  # right count, wrong accelerators
    sub = am.judge_prometheus(prom_answer(full), dcgm.DCGM, 2, t, other_gpus, want)
    assert sub.verdict is Verdict.FAIL and sub.details["uuids_lacking"] == {"memory_used": [UUIDS[1]]}
    assert am.series_counts(
        {"status": "success", "data": {"result": [{"metric": {"UUID": "a"}, "value": [0, "3"]}]}}
    ) == {"a": 3}
    assert am.series_counts("oops") == {}


def test_prometheus_param_forms():
    t = am.parse_prometheus_param("monitoring/kps-prometheus:9090")
    assert (t.namespace, t.service, t.port) == ("monitoring", "kps-prometheus", "9090")
    assert t.query_path() == "/api/v1/namespaces/monitoring/services/kps-prometheus:9090/proxy/api/v1/query"
    assert am.parse_prometheus_param("http://127.0.0.1:9090/").url == "http://127.0.0.1:9090"
    with pytest.raises(ValueError):
        am.parse_prometheus_param("just-a-name")


def test_prometheus_needs_every_core_class_for_every_accelerator():
    t = am.PromTarget("mon", "prom", "web", "test")
    full = {"DCGM_FI_DEV_GPU_UTIL": 2, "DCGM_FI_DEV_FB_USED": 2, "DCGM_FI_DEV_FB_FREE": 2, "DCGM_FI_DEV_GPU_TEMP": 2}
    assert am.judge_prometheus(prom_answer(full), dcgm.DCGM, 2, t).verdict is Verdict.PASS
    short = {**full, "DCGM_FI_DEV_FB_FREE": 1}
    sub = am.judge_prometheus(prom_answer(short), dcgm.DCGM, 2, t)
    assert sub.verdict is Verdict.FAIL and "memory_free" in sub.summary and not sub.required
    assert am.judge_prometheus({"status": "error", "error": "bad"}, dcgm.DCGM, 2, t).verdict is Verdict.UNKNOWN
    assert am.judge_prometheus("<html>502</html>", dcgm.DCGM, 2, t).verdict is Verdict.UNKNOWN


# --- the load --------------------------------------------------------------------------------------------------------


def test_load_pod_is_restricted_pinned_and_asks_for_one_accelerator():
    p = load_parameters("sandbox")
    n = am.accelerator_nodes(
        [node("real", taints=[{"key": "sandbox.aiconf.io/real-node", "effect": "NoSchedule"}])], GPU
    )[0]
    for simulated in (True, False):
        pod = am.load_pod("gpu-load", "ns", n, p, simulated=simulated, configmap="cm")
        spec = pod["spec"]
        c = spec["containers"][0]
        assert spec["nodeSelector"] == {"kubernetes.io/hostname": "real"}
        assert {"key": "sandbox.aiconf.io/real-node", "operator": "Exists", "effect": "NoSchedule"} in spec[
            "tolerations"
        ]
        assert c["resources"]["limits"] == {GPU: "1"}
        sc = c["securityContext"]
        assert sc["runAsNonRoot"] and sc["runAsUser"] != 0 and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]} and sc["readOnlyRootFilesystem"]
        assert not any("hostPath" in v for v in spec["volumes"])
        assert c["image"] == (p.image_python if simulated else p.accel_load_image)
        assert c["command"][1].endswith("dcgm_sim.py" if simulated else "gpu_load.py")
        assert str(p.accel_load_s) in c["command"]


def test_workload_scripts_travel_in_a_configmap_and_compile():
    cm = am.workloads_configmap("w", "ns")
    assert set(cm["data"]) == set(am.WORKLOAD_SCRIPTS)
    for name, text in cm["data"].items():
        compile(text, name, "exec")


def test_loaded_device_prefers_attribution_then_the_reported_uuid():
    rows = [
        {"device": "n/gpu0", "uuid": UUIDS[0], "pod": ""},
        {"device": "n/gpu1", "uuid": UUIDS[1], "pod": "ns/gpu-load"},
    ]
    assert am.loaded_device(rows, "gpu-load", "ns", [UUIDS[0]])[0] == "n/gpu1"
    assert am.loaded_device(rows[:1], "gpu-load", "ns", [UUIDS[0]])[0] == "n/gpu0"
    assert am.loaded_device(rows[:1], "gpu-load", "ns", [])[0] is None


def test_log_events_reads_json_lines_only():
    text = 'noise\n{"event": "ready", "t": 1}\n{"no": "event"}\n{"event": "done", "t": 2}\n'
    assert [e["event"] for e in am.log_events(text)] == ["ready", "done"]


# --- whole runs against a fake API -------------------------------------------------------------------------------------


class FakeKube:
    """Nodes and exporter pods from documents; the exporter is dcgm_sim's Simulator over ``gpu_dir``; the load pod
    "runs" by writing a load file while the check waits for it to finish."""

    def __init__(
        self,
        tmp_path: Path,
        nodes: list[dict],
        exporters: list[dict],
        *,
        gpus: int = 2,
        follow_load: bool = True,
        transform: Any = None,
        prometheus: dict | None = None,
    ):
        self.nodes, self.exporters = nodes, exporters
        self.gpu_dir = tmp_path / "gpu"
        (self.gpu_dir / "load").mkdir(parents=True, exist_ok=True)
        (self.gpu_dir / "devices").write_text("".join(f"nvidia{i} {i} {UUIDS[i]} 81559 H100\n" for i in range(gpus)))
        (self.gpu_dir / "allocations.json").write_text("{}")
        self.sim = dcgm_sim.Simulator(str(self.gpu_dir), "node-a")
        self.follow_load, self.transform, self.prometheus = follow_load, transform, prometheus
        self.prometheus_uuids = UUIDS[:gpus]
        self.created: list[dict] = []
        self.load_seconds = 0.0
        self.lock = threading.Lock()

    def version(self) -> dict:
        return {"gitVersion": "v1.36.0"}

    def has_kind(self, api_version: str, kind: str) -> bool:
        return kind == "Prometheus" and self.prometheus is not None

    def served_versions(self, group: str) -> list[str]:
        return []

    def list(
        self, api_version: str, kind: str, namespace: str | None = None, *, label_selector: str | None = None, **_: Any
    ) -> list[dict]:
        if kind == "Node":
            return copy.deepcopy(self.nodes)
        if kind == "Pod":
            if label_selector:
                key, _, value = label_selector.partition("=")
                return [copy.deepcopy(p) for p in self.exporters if p["metadata"]["labels"].get(key) == value]
            return copy.deepcopy(self.exporters)
        if kind == "Prometheus" and self.prometheus:
            return [{"metadata": {"name": "k8s", "namespace": "monitoring"}}]
        return []

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict | None:
        if kind == "Service" and name == "prometheus-operated" and self.prometheus:
            return {"metadata": {"name": name, "namespace": namespace}}
        return next((copy.deepcopy(n) for n in self.nodes if kind == "Node" and n["metadata"]["name"] == name), None)

    def events(self, namespace: str) -> list[dict]:
        return []

    def raw(self, method: str, path: str, body: Any = None, *, query: dict | None = None, **_: Any) -> Any:
        if "/proxy/api/v1/query" in path:
            if "count by (UUID)" in (query or {}).get("query", ""):
                return {
                    "status": "success",
                    "data": {"result": [{"metric": {"UUID": u}, "value": [0, "1"]} for u in self.prometheus_uuids]},
                }
            return self.prometheus
        assert "/pods/" in path and path.endswith("/proxy/metrics"), path
        with self.lock:
            text = self.sim.exposition()
        return self.transform(text) if self.transform else text

    def create(self, obj: dict) -> dict:
        self.created.append(obj)
        return copy.deepcopy(obj)

    def delete(self, *a: Any, **k: Any) -> bool:
        return True

    def delete_namespace(self, name: str, timeout_s: float = 0) -> None:
        pass

    def pod_logs(self, name: str, namespace: str, container: str | None = None, tail_lines: int = 500) -> str:
        return json.dumps({"event": "ready", "t": 1, "gpus": [UUIDS[1]]}) + '\n{"event": "done", "t": 2}\n'

    def wait_for(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None,
        predicate: Any,
        timeout_s: float,
        what: str,
        describe: Any = None,
    ) -> dict:
        pod = next(o for o in self.created if o["kind"] == "Pod" and o["metadata"]["name"] == name)
        assert not predicate({"status": {"phase": "Pending"}})
        if "finish" not in what:  # the load starts: GPU 1 is allocated to it and busy
            if self.follow_load:
                with self.lock:
                    (self.gpu_dir / "allocations.json").write_text(
                        json.dumps({UUIDS[1]: {"pod": name, "namespace": namespace, "container": "load"}})
                    )
                    (self.gpu_dir / "load" / UUIDS[1]).mkdir(exist_ok=True)
                    (self.gpu_dir / "load" / UUIDS[1] / "load").write_text(
                        json.dumps({"util": 80, "fb_used_mib": 8192})
                    )
            return {**pod, "status": {"phase": "Running"}}
        time.sleep(self.load_seconds)
        with self.lock:
            (self.gpu_dir / "load" / UUIDS[1] / "load").unlink(missing_ok=True)
            (self.gpu_dir / "allocations.json").write_text("{}")
        return {**pod, "status": {"phase": "Succeeded"}}


def fast_params(**overrides: Any) -> Params:
    """Default parameters with sub-second pacing (Params bypasses the int-only coercion on purpose)."""
    base = load_parameters(None, {"checklist_version": "1.36"}).to_dict()
    base.update(
        sample_interval_s=0.1,
        accel_baseline_s=0.6,
        accel_load_s=1,
        accel_after_s=1.0,
        accel_settle_s=0.3,
        pod_start_timeout_s=5,
        **overrides,
    )
    return Params(base)


def run_fake(tmp_path: Path, kube: FakeKube, **overrides: Any):
    kube.load_seconds = 1.0
    return run_check(
        "accelerator_metrics", fast_params(**overrides), kube=kube, run_dir=tmp_path / "run", progress=lambda m: None
    )


REAL = node("node-a", 2, taints=[{"key": "sandbox.aiconf.io/real-node", "effect": "NoSchedule"}])
KWOK = node("kwok-0", 8, kwok=True)


def test_healthy_exporter_and_load_pass_and_kwok_gpus_are_reported_not_covered(tmp_path):
    kube = FakeKube(tmp_path, [REAL, KWOK], [exporter_pod("dcgm-a", "node-a", simulated=True)])
    result = run_fake(tmp_path, kube)
    assert result.verdict is Verdict.PASS, (result.reason, [(s.id, s.verdict, s.summary) for s in result.subchecks])
    subs = {s.id: s for s in result.subchecks}
    assert "8 accelerator(s) on simulated nodes not covered" in subs["exporter_found"].summary
    assert subs["workload_reflected"].details["device_identified"].startswith("attributed")
    assert subs["workload_reflected"].details["device"] == "node-a/gpu1"
    assert subs["pod_attribution"].verdict is Verdict.PASS
    assert subs["prometheus_pipeline"].verdict is Verdict.NOT_APPLICABLE
    assert any("simulated exporter" in n for n in result.notes)
    assert any("simulated (kwok)" in n for n in result.notes)
    load = next(o for o in kube.created if o["kind"] == "Pod")
    assert load["spec"]["containers"][0]["command"][1] == "/aiconf-workloads/dcgm_sim.py"  # the exporter is simulated
    assert result.metrics["presence_matrix"]["devices"] == ["node-a/gpu0", "node-a/gpu1"]
    assert {r["otel"] for r in display.series(result, "otel").to_dict("records")} >= {"hw.gpu.utilization"}
    for name in ("gpu_series", "presence_matrix"):
        assert isinstance(display.chart(result, name), Figure)


def test_prometheus_found_through_the_operator_is_queried(tmp_path):
    full = {"DCGM_FI_DEV_GPU_UTIL": 2, "DCGM_FI_DEV_FB_USED": 2, "DCGM_FI_DEV_FB_FREE": 2}
    kube = FakeKube(tmp_path, [REAL], [exporter_pod("dcgm-a", "node-a")], prometheus=prom_answer(full))
    result = run_fake(tmp_path, kube)
    sub = result.subcheck("prometheus_pipeline")
    assert sub.verdict is Verdict.PASS and "monitoring/prometheus-operated:web" in sub.summary
    assert "found: 2/2" in sub.observed


def test_prometheus_without_one_of_the_scraped_gpus_fails_informationally(tmp_path):
    full = {"DCGM_FI_DEV_GPU_UTIL": 2, "DCGM_FI_DEV_FB_USED": 2, "DCGM_FI_DEV_FB_FREE": 2}
    kube = FakeKube(tmp_path, [REAL], [exporter_pod("dcgm-a", "node-a")], prometheus=prom_answer(full))
    kube.prometheus_uuids = [UUIDS[0], "GPU-elsewhere"]
    result = run_fake(tmp_path, kube)
    sub = result.subcheck("prometheus_pipeline")
    assert sub.verdict is Verdict.FAIL and not sub.required
    assert result.verdict is Verdict.PASS  # informational: the direct scrape is what the requirement asks


def test_no_accelerators_is_not_applicable(tmp_path):
    result = run_fake(tmp_path, FakeKube(tmp_path, [node("cpu", 0)], []))
    assert result.verdict is Verdict.NOT_APPLICABLE and result.not_applicable.reason_code == "no_accelerators"


def test_only_simulated_accelerator_nodes_is_unknown_never_pass(tmp_path):
    kube = FakeKube(tmp_path, [KWOK], [])
    result = run_fake(tmp_path, kube)
    assert result.verdict is Verdict.UNKNOWN
    assert all(s.verdict is Verdict.UNKNOWN for s in result.subchecks)
    assert kube.created == []


def test_no_exporter_on_an_accelerator_node_fails(tmp_path):
    kube = FakeKube(tmp_path, [REAL, node("node-b", 4)], [exporter_pod("dcgm-a", "node-a")])
    result = run_fake(tmp_path, kube)
    assert result.verdict is Verdict.FAIL
    sub = result.subcheck("exporter_found")
    assert sub.verdict is Verdict.FAIL and sub.details["missing"] == {"node-b": "no exporter pod"}
    assert sub.details["uncovered_accelerators"] == 4


def test_no_exporter_at_all_fails_and_creates_nothing(tmp_path):
    kube = FakeKube(tmp_path, [REAL], [])
    result = run_fake(tmp_path, kube)
    assert result.verdict is Verdict.FAIL
    assert result.subcheck("core_metrics_per_gpu").verdict is Verdict.UNKNOWN
    assert result.subcheck("workload_reflected").verdict is Verdict.UNKNOWN
    assert kube.created == []


def test_exporter_pod_not_ready_fails(tmp_path):
    result = run_fake(tmp_path, FakeKube(tmp_path, [REAL], [exporter_pod("dcgm-a", "node-a", ready=False)]))
    assert result.verdict is Verdict.FAIL and "not Ready" in result.subcheck("exporter_found").summary


def test_exporter_reporting_fewer_gpus_than_the_node_advertises_fails(tmp_path):
    result = run_fake(tmp_path, FakeKube(tmp_path, [node("node-a", 4)], [exporter_pod("dcgm-a", "node-a")]))
    assert result.verdict is Verdict.FAIL
    assert result.subcheck("gpu_count_matches").verdict is Verdict.FAIL


def test_core_metric_missing_for_one_gpu_fails(tmp_path):
    def drop(text: str) -> str:
        return (
            "\n".join(x for x in text.splitlines() if not (x.startswith("DCGM_FI_DEV_FB_USED{") and 'gpu="1"' in x))
            + "\n"
        )

    result = run_fake(tmp_path, FakeKube(tmp_path, [REAL], [exporter_pod("dcgm-a", "node-a")], transform=drop))
    assert result.verdict is Verdict.FAIL
    assert result.subcheck("core_metrics_per_gpu").verdict is Verdict.FAIL


def test_unrecognised_exporter_is_unknown(tmp_path):
    def rename(text: str) -> str:
        return text.replace("DCGM_FI_", "VENDOR_X_")

    result = run_fake(tmp_path, FakeKube(tmp_path, [REAL], [exporter_pod("dcgm-a", "node-a")], transform=rename))
    assert result.verdict is Verdict.UNKNOWN
    assert result.subcheck("exporter_recognised").verdict is Verdict.UNKNOWN


def test_a_name_map_that_drops_a_core_metric_is_not_pass(tmp_path):
    dropped = {"name": "dcgm-without-memory", "classes": {"utilization": ["DCGM_FI_DEV_GPU_UTIL"]}}
    result = run_fake(tmp_path, FakeKube(tmp_path, [REAL], [exporter_pod("dcgm-a", "node-a")]), accel_name_map=dropped)
    assert result.verdict is not Verdict.PASS and result.verdict is Verdict.UNKNOWN
    assert "memory_used" in result.subcheck("exporter_recognised").summary


def test_a_name_map_naming_a_family_the_exporter_lacks_fails(tmp_path):
    wrong = {
        "name": "dcgm-typo",
        "classes": {"utilization": ["DCGM_FI_DEV_GPU_UTIL"], "memory_used": ["DCGM_FI_DEV_FB_USE"]},
    }
    result = run_fake(tmp_path, FakeKube(tmp_path, [REAL], [exporter_pod("dcgm-a", "node-a")]), accel_name_map=wrong)
    assert result.verdict is Verdict.FAIL
    assert result.subcheck("core_metrics_per_gpu").verdict is Verdict.FAIL


def test_exporter_that_does_not_follow_the_load_fails(tmp_path):
    kube = FakeKube(tmp_path, [REAL], [exporter_pod("dcgm-a", "node-a")], follow_load=False)
    result = run_fake(tmp_path, kube)
    assert result.verdict is Verdict.FAIL
    sub = result.subcheck("workload_reflected")
    assert sub.verdict is Verdict.FAIL and "utilization_rose" in sub.summary


# --- preflight -------------------------------------------------------------------------------------------------------


def test_preflight_needs_a_real_accelerator_node_with_an_exporter(tmp_path):
    p = load_parameters(None, {"checklist_version": "1.36"})
    assert am.preflight(FakeKube(tmp_path, [node("cpu", 0)], []), p)[0] is False
    ok, why = am.preflight(FakeKube(tmp_path, [KWOK], []), p)
    assert not ok and "simulated" in why
    ok, why = am.preflight(FakeKube(tmp_path, [REAL], []), p)
    assert not ok and "no exporter pod" in why
    ok, why = am.preflight(FakeKube(tmp_path, [REAL, KWOK], [exporter_pod("dcgm-a", "node-a")]), p)
    assert ok and "1 of 1" in why


def test_a_not_ready_accelerator_node_is_left_out_with_a_note(tmp_path):
    down = node("node-down", 4)
    down["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    result = run_fake(tmp_path, FakeKube(tmp_path, [REAL, down], [exporter_pod("dcgm-a", "node-a")]))
    assert result.verdict is Verdict.PASS, result.reason
    assert any("not Ready" in n and "node-down" in n for n in result.notes)
