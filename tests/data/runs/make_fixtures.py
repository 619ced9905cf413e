"""Writes the hand-made fixture run folders next to this file (committed; re-run after a schema change).

    .venv/bin/python tests/data/runs/make_fixtures.py

mixed/     checklist 1.35 on a sandbox with simulated GPU nodes: every verdict (PASS, FAIL, NOT_APPLICABLE, UNKNOWN,
           ERROR, SKIPPED), MUST and SHOULD, an informational sub-check, a result never written (dead kernel), a check
           that never ran, series CSVs, evidence files and executed notebooks.
baseline/  an earlier run of the same cluster, for comparisons: gang_scheduling passed then, accelerator_metrics failed,
           timings differ.
passing/   checklist 1.35 on real GPU nodes: every MUST passes except cluster_autoscaling (not applicable on-prem);
           the input of the submission tests.

The content is invented to look like the real checks' output; nothing here came from a cluster.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat

from aiconf.model import NotApplicable, RequirementResult, SubCheck, Verdict

HERE = Path(__file__).resolve().parent
V = Verdict

PARAMETERS = {
    "kubeconfig": "",
    "context": "",
    "checklist_version": "1.35",
    "namespace_prefix": "aiconf",
    "cleanup": True,
    "must_na_policy": "na",
    "gpu_resource_name": "nvidia.com/gpu",
    "gang_scheduler": "auto",
    "hpa_metric_name": "aiconf_inference_queue_depth",
    "cluster_autoscaling_active": False,
    "image_pull_secret": "<redacted>",
}


def sub(id, verdict, summary="", expected="", observed="", required=True, duration_s=None, **details):
    return SubCheck(id, verdict, summary, expected, observed, required, details, duration_s)


def write_result(run_dir: Path, r: RequirementResult, *, finalize: bool = True) -> None:
    if finalize:
        r.finalize()
    r.write(run_dir / "results" / f"{r.requirement_id}.json")


def write_file(run_dir: Path, rel: str, text: str) -> str:
    path = run_dir / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return rel


def write_notebook(run_dir: Path, r: RequirementResult) -> str:
    """A tiny stand-in for an executed requirement notebook (a title, a verdict output)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
        "papermill": {"duration": r.duration_s, "exception": None},
    }
    nb.cells = [
        nbformat.v4.new_markdown_cell(f"# {r.title} (`{r.requirement_id}`)"),
        nbformat.v4.new_code_cell(
            f'result = run_from_notebook("{r.requirement_id}", globals())\ndisplay.verdict(result)',
            execution_count=1,
            outputs=[
                nbformat.v4.new_output(
                    "execute_result", {"text/plain": f"{r.verdict} {r.requirement_id}"}, execution_count=1
                )
            ],
        ),
    ]
    rel = f"notebooks/{r.requirement_id}.ipynb"
    (run_dir / "notebooks").mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, run_dir / rel)
    return rel


def result(
    run: dict, rid: str, level: str | None, title: str, duration: float, started: str, **kw
) -> RequirementResult:
    r = RequirementResult(
        rid,
        run["checklist_version"],
        level,
        title,
        run_id=run["run_id"],
        toolkit_version="0.1.0",
        started_at=started,
        finished_at=started,
        duration_s=duration,
        **kw,
    )
    return r


def series_csv(rows: list[dict]) -> str:
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    lines = [",".join(keys)]
    for row in rows:
        lines.append(",".join("" if row.get(k) is None else str(row.get(k)) for k in keys))
    return "\n".join(lines) + "\n"


def hpa_rows(scale_at: float = 40.0, down_at: float = 160.0) -> list[dict]:
    """Shaped like pod_autoscaling's ``hpa_curve`` series: samples, plus marker rows carrying only an event."""
    rows = []
    for i in range(0, 241, 10):
        t = float(i)
        stamp = f"2026-11-20T10:1{i // 60}:{i % 60:02d}.000+00:00"
        if t in (scale_at, down_at):
            rows.append({"t_s": t, "time": stamp, "event": "load on" if t == scale_at else "load off"})
        load = scale_at <= t < down_at
        desired = 3 if scale_at + 20 <= t < down_at + 40 else 1
        current = 3 if scale_at + 30 <= t < down_at + 50 else 1
        ready = 3 if scale_at + 40 <= t < down_at + 50 else 1
        total = 30.0 if load else 2.0
        rows.append(
            {
                "t_s": t,
                "time": stamp,
                "metric": round(total / current, 3),
                "hpa_metric": round(total / current, 3),
                "target": 10,
                "load_total": total,
                "desired": desired,
                "current": current,
                "ready": ready,
                "pods": current,
                "pods_on_accelerators": current,
                "pending": 0,
            }
        )
    return rows


def gang_rows(partial: bool) -> list[dict]:
    rows = []
    for i in range(0, 61, 5):
        t = float(i)
        running = 4 if t >= 10 else 0
        if t >= 35:  # the negative gang phase
            running = 4 + (2 if partial and t >= 40 else 0)
        rows.append(
            {
                "t_s": t,
                "time": f"2026-11-20T10:05:{i:02d}.000+00:00",
                "gang": "positive" if t < 35 else "negative",
                "running": running,
                "pending": 0 if t < 35 else (6 - (2 if partial and t >= 40 else 0)),
                "event": "negative gang created" if t == 35 else "",
            }
        )
    return rows


OBJECTS_YAML = """apiVersion: batch/v1
kind: Job
metadata:
  name: gang-positive
  namespace: aiconf-gang-scheduling-a1b2c3
  labels:
    app.kubernetes.io/managed-by: aiconf
    kueue.x-k8s.io/queue-name: aiconf-local
spec:
  parallelism: 4
  completions: 4
status:
  succeeded: 4
"""

EVENTS_TXT = """2026-11-20T10:05:02Z Normal QuotaReserved Workload/job-gang-positive-7f2c1: Quota reserved in ClusterQueue aiconf-cq
2026-11-20T10:05:03Z Normal Admitted Workload/job-gang-positive-7f2c1: Admitted by ClusterQueue aiconf-cq
2026-11-20T10:05:36Z Normal Pending Workload/job-gang-negative-91ab0: couldn't assign flavors to pod set main: insufficient quota
"""


def manifest(
    run_id: str,
    *,
    simulated: bool,
    started: str,
    selected: list[str],
    notebooks: dict,
    duration: float,
    exit_code: int,
    profile: str,
    parameters: dict | None = None,
) -> dict:
    nodes = [
        {
            "name": "control-plane",
            "ready": True,
            "gpu_allocatable": 0,
            "gpu_product": "",
            "simulated": False,
            "kubelet": "v1.35.2",
            "runtime": "containerd://2.1.4",
        }
    ]
    for i in (1, 2):
        nodes.append(
            {
                "name": f"gpu-node-{i}",
                "ready": True,
                "gpu_allocatable": 4,
                "gpu_product": "NVIDIA-H100-80GB-HBM3",
                "simulated": simulated,
                "kubelet": "v1.35.2",
                "runtime": "containerd://2.1.4",
            }
        )
    return {
        "schema_version": 1,
        "run_id": run_id,
        "toolkit_version": "0.1.0",
        "checklist_version": "1.35",
        "profile": profile,
        "started_at": started,
        "finished_at": started.replace("10:00", "10:21"),
        "duration_s": duration,
        "exit_code": exit_code,
        "cluster": {
            "server_version": "v1.35.2",
            "platform": "linux/amd64",
            "nodes": nodes,
            "accelerators": {"nvidia.com/gpu": 8, "dra:gpu.nvidia.com": 8},
            "components": [
                "Kueue (gang scheduling / quota)",
                "Gateway API",
                "KubeRay",
                "Dynamic Resource Allocation",
                "custom metrics API",
            ],
        },
        "parameters": parameters or PARAMETERS,
        "selected": selected,
        "not_selected": [],
        "not_automated": [],
        "notebooks": notebooks,
    }


def nb(status: str, duration: float, error: str = "", rid: str = "") -> dict:
    return {
        "requirement_id": rid,
        "status": status,
        "duration_s": duration,
        "error": error,
        "path": f"notebooks/{rid}.ipynb",
        "extra": {},
    }


# -- mixed ------------------------------------------------------------------------------------------------------------
def make_mixed(run_dir: Path) -> None:
    run_id = "20261120-100000-a1b2c3"
    started = "2026-11-20T10:00:00.000+00:00"
    selected = [
        "dra_support",
        "gpu_sharing",
        "ai_inference",
        "gang_scheduling",
        "cluster_autoscaling",
        "pod_autoscaling",
        "accelerator_metrics",
        "secure_accelerator_access",
        "robust_controller",
    ]
    notebooks = {
        "dra_support": nb("ok", 14.2, rid="dra_support"),
        "gpu_sharing": nb("ok", 3.1, rid="gpu_sharing"),
        "ai_inference": nb(
            "dead-kernel", 61.0, "the notebook's kernel died (out of memory, or killed)", "ai_inference"
        ),
        "gang_scheduling": nb("ok", 71.5, rid="gang_scheduling"),
        "cluster_autoscaling": nb("ok", 2.4, rid="cluster_autoscaling"),
        "pod_autoscaling": nb("ok", 251.9, rid="pod_autoscaling"),
        "accelerator_metrics": nb("ok", 12.0, rid="accelerator_metrics"),
        "secure_accelerator_access": nb(
            "not-run", 0.0, "run interrupted before this check started", "secure_accelerator_access"
        ),
        "robust_controller": nb(
            "failed",
            305.3,
            "cell 2 raised WaitTimeout: timed out after 300s waiting for RayCluster aiconf-ray Ready",
            "robust_controller",
        ),
    }
    run = manifest(
        run_id,
        simulated=True,
        started=started,
        selected=selected,
        notebooks=notebooks,
        duration=1262.0,
        exit_code=1,
        profile="sandbox",
    )
    write_file(run_dir, "run.json", json.dumps(run, indent=2) + "\n")

    r = result(run, "dra_support", "MUST", "Dynamic Resource Allocation APIs", 13.1, started)
    r.expected_subchecks = ["api_served", "device_classes_listed", "claim_allocated"]
    r.subchecks = [
        sub(
            "api_served",
            V.PASS,
            "resource.k8s.io/v1 is served",
            "resource.k8s.io/v1 in API discovery",
            "resource.k8s.io/v1, v1beta2",
            duration_s=0.21,
        ),
        sub(
            "device_classes_listed",
            V.PASS,
            "1 DeviceClass",
            "at least one DeviceClass",
            "gpu.nvidia.com",
            duration_s=0.05,
        ),
        sub(
            "claim_allocated",
            V.PASS,
            "claim allocated and released",
            "a ResourceClaim is allocated to a pod",
            "allocated gpu-node-1/gpu-0 in 3.2s; released after pod deletion",
            duration_s=9.8,
        ),
        sub(
            "slices_published",
            V.FAIL,
            "one node publishes no ResourceSlice",
            "every GPU node publishes a slice",
            "gpu-node-2: none",
            required=False,
            duration_s=0.4,
        ),
    ]
    r.proves = ["The DRA APIs are served and a claim through a DeviceClass is allocated by the scheduler."]
    r.does_not_prove = ["That a real accelerator was attached (GPU nodes are simulated)."]
    r.notes = ["GPU nodes are simulated (kwok)"]
    r.evidence = [
        write_file(
            run_dir,
            "evidence/dra_support/aiconf-dra-a1b2c3/objects.yaml",
            "apiVersion: resource.k8s.io/v1\nkind: ResourceClaim\nmetadata:\n  name: gpu-claim\n"
            "status:\n  allocation:\n    devices:\n      results:\n      - device: gpu-0\n",
        )
    ]
    write_result(run_dir, r)
    write_notebook(run_dir, r)

    r = result(run, "gpu_sharing", "SHOULD", "Accelerator sharing", 2.0, started)
    r.expected_subchecks = ["sharing_strategy"]
    r.subchecks = [
        sub(
            "sharing_strategy",
            V.NOT_APPLICABLE,
            "no sharing strategy is offered",
            "MIG, time-slicing or DRA shared devices",
            "nvidia.com/gpu only (no .shared, no mig-*)",
        )
    ]
    r.not_applicable = NotApplicable(
        "no_sharing_strategy",
        "The platform dedicates whole accelerators to workloads; "
        "no partitioning or time-slicing is offered in this configuration.",
    )
    write_result(run_dir, r)
    write_notebook(run_dir, r)

    # ai_inference: the kernel died before the result was written (the loader makes it ERROR).

    r = result(run, "gang_scheduling", "MUST", "Gang scheduling", 70.2, started)
    r.expected_subchecks = ["scheduler_detected", "gang_admitted_together", "no_partial_admission"]
    r.subchecks = [
        sub(
            "scheduler_detected",
            V.PASS,
            "Kueue v0.14 (kueue.x-k8s.io/v1beta2)",
            "a gang scheduler",
            "Kueue",
            duration_s=0.3,
        ),
        sub(
            "gang_admitted_together",
            V.PASS,
            "4 pods Running within 1.2s",
            "4 pods Running together",
            "4/4 Running, spread 1.2s",
            duration_s=12.5,
        ),
        sub(
            "no_partial_admission",
            V.FAIL,
            "2 of 6 pods of a gang that does not fit started",
            "0 of 6 pods Running for 30s",
            "2 of 6 Running after 5s",
            duration_s=30.4,
        ),
    ]
    r.proves = ["A gang that fits starts all its pods together."]
    r.does_not_prove = ["All-or-nothing admission: part of a gang that does not fit was started."]
    r.notes = ["GPU nodes are simulated (kwok)"]
    r.evidence = [
        write_file(run_dir, "evidence/gang_scheduling/aiconf-gang-scheduling-a1b2c3/objects.yaml", OBJECTS_YAML),
        write_file(run_dir, "evidence/gang_scheduling/aiconf-gang-scheduling-a1b2c3/events.txt", EVENTS_TXT),
        write_file(run_dir, "evidence/gang_scheduling/timeline.csv", series_csv(gang_rows(partial=True))),
    ]
    r.metrics = {
        "series": {"timeline": "evidence/gang_scheduling/timeline.csv"},
        "steps": [
            {"step": "detect the gang scheduler", "seconds": 0.3},
            {"step": "positive gang", "seconds": 12.5},
            {"step": "negative gang", "seconds": 30.4},
        ],
    }
    write_result(run_dir, r)
    write_notebook(run_dir, r)

    r = result(run, "cluster_autoscaling", "MUST", "Cluster autoscaling for accelerator nodes", 1.8, started)
    r.expected_subchecks = ["autoscaler_detected"]
    r.subchecks = [
        sub(
            "autoscaler_detected",
            V.NOT_APPLICABLE,
            "no cluster autoscaler found",
            "a cluster autoscaler or equivalent",
            "no cluster-autoscaler Deployment, no Karpenter NodePools",
        )
    ]
    r.not_applicable = NotApplicable(
        "no_autoscaler",
        "The platform runs on a fixed set of on-premises nodes and "
        "provides no cluster autoscaler or equivalent mechanism.",
    )
    write_result(run_dir, r)
    write_notebook(run_dir, r)

    r = result(run, "pod_autoscaling", "MUST", "Pod autoscaling on AI metrics", 250.3, started)
    r.expected_subchecks = ["custom_metric_served", "scaled_up", "scaled_down"]
    r.subchecks = [
        sub(
            "custom_metric_served",
            V.PASS,
            "aiconf_inference_queue_depth served for 1 pod",
            "the metric through custom.metrics.k8s.io",
            "value 2 for pod inference-0",
            duration_s=8.1,
        ),
        sub(
            "scaled_up",
            V.PASS,
            "1 -> 3 replicas 30s after load",
            "replicas > 1 under load",
            "3 replicas at t=70s",
            duration_s=30.0,
        ),
        sub(
            "scaled_down",
            V.PASS,
            "3 -> 1 replicas 50s after load stopped",
            "back to 1 replica",
            "1 replica at t=210s",
            duration_s=50.0,
        ),
    ]
    r.proves = ["The HPA scales GPU-requesting pods on a workload-driven custom metric, up and back down."]
    r.does_not_prove = ["Metric freshness under production load."]
    r.notes = ["GPU nodes are simulated (kwok)"]
    r.evidence = [
        write_file(run_dir, "evidence/pod_autoscaling/hpa_curve.csv", series_csv(hpa_rows())),
        write_file(
            run_dir,
            "evidence/pod_autoscaling/aiconf-hpa-a1b2c3/events.txt",
            "2026-11-20T10:11:10Z Normal SuccessfulRescale HorizontalPodAutoscaler/inference: "
            "New size: 3; reason: pods metric aiconf_inference_queue_depth above target\n",
        ),
    ]
    r.metrics = {
        "series": {"hpa_curve": "evidence/pod_autoscaling/hpa_curve.csv"},
        "scale_up_s": 30.0,
        "scale_down_s": 50.0,
    }
    write_result(run_dir, r)
    write_notebook(run_dir, r)

    r = result(run, "accelerator_metrics", "MUST", "Accelerator metrics", 11.0, started)
    r.expected_subchecks = ["exporter_found", "core_metrics"]
    r.subchecks = [
        sub(
            "exporter_found",
            V.PASS,
            "a metrics endpoint on every GPU node",
            "one exporter endpoint per GPU node",
            "2 endpoints",
        ),
        sub(
            "core_metrics",
            V.UNKNOWN,
            "exporter not recognised: no metric name map for it",
            "utilisation and memory per accelerator",
            "families: fake_gpu_busy, fake_gpu_mem",
        ),
    ]
    write_result(run_dir, r)
    write_notebook(run_dir, r)

    # secure_accelerator_access: never ran (interrupted) -> SKIPPED from the loader.

    r = result(run, "robust_controller", "MUST", "A robust AI operator", 300.9, started)
    r.expected_subchecks = ["operator_running", "webhook_rejects_invalid", "cr_reconciled"]
    r.subchecks = [sub("operator_running", V.PASS, "kuberay-operator 1/1 Ready", "operator pods Ready", "1/1")]
    r.error = {
        "type": "WaitTimeout",
        "message": "timed out after 300s waiting for RayCluster aiconf-ray Ready "
        "(last seen: head pod Pending: Insufficient cpu)",
        "step": "reconcile a valid RayCluster",
    }
    write_result(run_dir, r)
    write_notebook(run_dir, r)


# -- baseline ----------------------------------------------------------------------------------------------------------
def make_baseline(run_dir: Path) -> None:
    run_id = "20261113-090000-ffee00"
    started = "2026-11-13T10:00:00.000+00:00"
    selected = [
        "dra_support",
        "ai_inference",
        "gang_scheduling",
        "cluster_autoscaling",
        "pod_autoscaling",
        "accelerator_metrics",
        "robust_controller",
        "high_performance_networking",
    ]
    durations = {
        "dra_support": 15.0,
        "ai_inference": 44.0,
        "gang_scheduling": 58.0,
        "cluster_autoscaling": 2.2,
        "pod_autoscaling": 180.0,
        "accelerator_metrics": 10.0,
        "robust_controller": 95.0,
        "high_performance_networking": 4.0,
    }
    notebooks = {rid: nb("ok", d, rid=rid) for rid, d in durations.items()}
    run = manifest(
        run_id,
        simulated=True,
        started=started,
        selected=selected,
        notebooks=notebooks,
        duration=420.0,
        exit_code=1,
        profile="sandbox",
    )
    write_file(run_dir, "run.json", json.dumps(run, indent=2) + "\n")

    def simple(rid, level, title, subs, **kw):
        r = result(run, rid, level, title, durations[rid] - 1, started, **kw)
        r.expected_subchecks = [s.id for s in subs]
        r.subchecks = subs
        write_result(run_dir, r)

    simple(
        "dra_support",
        "MUST",
        "Dynamic Resource Allocation APIs",
        [sub("api_served", V.PASS), sub("device_classes_listed", V.PASS), sub("claim_allocated", V.PASS)],
    )
    simple(
        "ai_inference",
        "MUST",
        "Inference traffic through the Gateway API",
        [sub("gateway_accepted", V.PASS), sub("weighted_split", V.PASS), sub("header_routing", V.PASS)],
    )
    simple(
        "gang_scheduling",
        "MUST",
        "Gang scheduling",
        [sub("scheduler_detected", V.PASS), sub("gang_admitted_together", V.PASS), sub("no_partial_admission", V.PASS)],
    )
    r = result(run, "cluster_autoscaling", "MUST", "Cluster autoscaling for accelerator nodes", 1.2, started)
    r.subchecks = [sub("autoscaler_detected", V.NOT_APPLICABLE)]
    r.not_applicable = NotApplicable("no_autoscaler", "Fixed on-premises node pool.")
    write_result(run_dir, r)
    simple(
        "pod_autoscaling",
        "MUST",
        "Pod autoscaling on AI metrics",
        [sub("custom_metric_served", V.PASS), sub("scaled_up", V.PASS), sub("scaled_down", V.PASS)],
    )
    simple(
        "accelerator_metrics",
        "MUST",
        "Accelerator metrics",
        [sub("exporter_found", V.FAIL, "no exporter endpoint found")],
    )
    simple(
        "robust_controller",
        "MUST",
        "A robust AI operator",
        [sub("operator_running", V.PASS), sub("webhook_rejects_invalid", V.PASS), sub("cr_reconciled", V.PASS)],
    )
    simple(
        "high_performance_networking",
        None,
        "High-performance pod networking",
        [sub("secondary_networks", V.NOT_APPLICABLE)],
    )


# -- passing -----------------------------------------------------------------------------------------------------------
PASSING = {
    "dra_support": (
        "MUST",
        "Dynamic Resource Allocation APIs",
        ["api_served", "device_classes_listed", "claim_allocated"],
    ),
    "driver_runtime_management": (
        "SHOULD",
        "Accelerator driver and runtime management",
        ["mechanism_detected", "versions_match"],
    ),
    "gpu_sharing": ("SHOULD", "Accelerator sharing", None),
    "ai_inference": (
        "MUST",
        "Inference traffic through the Gateway API",
        ["gateway_accepted", "weighted_split", "header_routing"],
    ),
    "gang_scheduling": (
        "MUST",
        "Gang scheduling",
        ["scheduler_detected", "gang_admitted_together", "no_partial_admission"],
    ),
    "cluster_autoscaling": ("MUST", "Cluster autoscaling for accelerator nodes", None),
    "pod_autoscaling": ("MUST", "Pod autoscaling on AI metrics", ["custom_metric_served", "scaled_up", "scaled_down"]),
    "accelerator_metrics": ("MUST", "Accelerator metrics", ["exporter_found", "core_metrics", "per_device"]),
    "ai_service_metrics": ("MUST", "AI service metrics", ["workload_discovered", "series_collected"]),
    "secure_accelerator_access": ("MUST", "Isolated accelerator access", ["no_request_no_device", "distinct_devices"]),
    "robust_controller": (
        "MUST",
        "A robust AI operator",
        ["operator_running", "webhook_rejects_invalid", "cr_reconciled"],
    ),
}


def make_passing(run_dir: Path) -> None:
    run_id = "20261121-080000-c0ffee"
    started = "2026-11-21T10:00:00.000+00:00"
    selected = list(PASSING)
    notebooks = {rid: nb("ok", 10.0 + i, rid=rid) for i, rid in enumerate(selected)}
    params = {**PARAMETERS, "must_na_policy": "implemented-with-note", "gang_scheduler": "kueue"}
    run = manifest(
        run_id,
        simulated=False,
        started=started,
        selected=selected,
        notebooks=notebooks,
        duration=610.0,
        exit_code=0,
        profile="on-prem-no-autoscaler",
        parameters=params,
    )
    write_file(run_dir, "run.json", json.dumps(run, indent=2) + "\n")
    for i, (rid, (level, title, subs)) in enumerate(PASSING.items()):
        r = result(run, rid, level, title, 9.0 + i, started)
        if subs is None:
            r.subchecks = [
                sub("strategy_detected" if rid == "gpu_sharing" else "autoscaler_detected", V.NOT_APPLICABLE)
            ]
            r.not_applicable = NotApplicable(
                "no_autoscaler" if rid == "cluster_autoscaling" else "no_sharing_strategy",
                "The platform runs on a fixed set of on-premises nodes without a cluster autoscaler."
                if rid == "cluster_autoscaling"
                else "Whole accelerators are dedicated to workloads.",
            )
        else:
            r.expected_subchecks = subs
            r.subchecks = [sub(s, V.PASS, f"{s.replace('_', ' ')}: observed", duration_s=1.5) for s in subs]
            r.proves = [f"{title}: the behaviour was observed on real accelerator nodes."]
            r.evidence = [write_file(run_dir, f"evidence/{rid}/summary.txt", f"{rid}: all sub-checks passed\n")]
        write_result(run_dir, r)
        write_notebook(run_dir, r)


def main() -> None:
    for name, make in (("mixed", make_mixed), ("baseline", make_baseline), ("passing", make_passing)):
        target = HERE / name
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir()
        make(target)
        print(f"wrote {target}")


if __name__ == "__main__":
    main()
