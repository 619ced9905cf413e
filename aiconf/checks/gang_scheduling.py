"""gang_scheduling (KAR-0053; MUST in 1.33-1.36): a gang scheduling solution starts all pods of a multi-pod workload
together, and none of them while the whole gang does not fit.

The check finds the solution by the APIs it serves (Kueue ``kueue.x-k8s.io`` v1beta2/v1beta1, Volcano
``scheduling.volcano.sh``, KAI ``scheduling.run.ai``, coscheduling ``scheduling.x-k8s.io``). With Kueue it creates
its own ResourceFlavor and ClusterQueue (cluster-scoped, labelled, deleted afterwards) whose nominal quota is exactly
the gang size N of the gang resource (accelerators when accelerator nodes have N+1 free, CPU otherwise), and a
LocalQueue in its own namespace. Sub-checks and what each proves:

* ``scheduler_detected`` - a gang solution is installed *and working*: for Kueue, its webhook answers a dry-run
  create (fail-closed webhooks: an answer means the controller's webhook server runs) and its controller activates
  the check's ClusterQueue. None found -> FAIL (the requirement is a MUST).
* ``gang_admitted_together`` - a Job of N pods (parallelism = completions = N) is admitted and all N pods are
  Running at the same moment (observed by watch); each pod's created / scheduled / started / finished times and the
  start skew are recorded.
* ``no_partial_admission`` - with the queue empty, a Job of N+1 pods (capacity + 1: N of its pods *would* fit) stays
  entirely unscheduled for ``gang_negative_hold_s``, watched the whole time: no pod bound to a node, none Running.
* ``admitted_after_release`` - once the quota is raised to N+1, that same Job runs, all N+1 pods together. This
  shows the hold was the gang rule at work, not a broken queue (a queue that admits nothing would pass the hold).
* ``gang_config`` (informational) - gang-relevant configuration: Kueue's ``waitForPodsReady`` where the Kueue
  configuration is readable, and what the Workloads show (a ``PodsReady`` condition only exists when it is on).

Functional tests exist for Kueue; for Volcano, KAI and coscheduling the check reports detection and asks for
manual evidence (UNKNOWN) instead of guessing.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import yaml
from kubernetes.client.exceptions import ApiException

from aiconf import display
from aiconf.checks.robust_controller import AdmissionOutcome, find_webhooks, inspect_backend, parse_selector, submit
from aiconf.context import LABEL_REQUIREMENT, LABEL_RUN_ID
from aiconf.errors import AiconfError, ConfigError, WaitTimeout
from aiconf.kube import condition
from aiconf.model import Verdict
from aiconf.registry import check

if TYPE_CHECKING:
    from aiconf.context import CheckContext
    from aiconf.kube import Kube
    from aiconf.params import Params

SUBCHECKS = ("scheduler_detected", "gang_admitted_together", "no_partial_admission", "admitted_after_release",
             "gang_config")
FUNCTIONAL = ("gang_admitted_together", "no_partial_admission", "admitted_after_release")

KUEUE_GROUP = "kueue.x-k8s.io"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
JOB_UID_LABEL = "kueue.x-k8s.io/job-uid"
GANG_LABEL = "aiconf.io/gang"
#: kwok's pod-complete stage waits this long before marking a Job pod Succeeded (the sandbox's kwok stages).
KWOK_COMPLETE_DELAY = "pod-complete.stage.kwok.x-k8s.io/delay"
#: What each gang pod asks for besides the gang resource: small, so CPU-only gangs fit anywhere.
POD_CPU_M = 50
POD_MEMORY_MI = 32
MAX_AUTO_GANG = 4


# --- which gang solution -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GangSolution:
    name: str
    title: str
    group: str
    kinds: tuple[str, ...]  #: kinds whose presence identifies it
    versions: tuple[str, ...] = ()  #: preferred API versions, best first ("" = the server's preferred)


SOLUTIONS = (
    GangSolution("kueue", "Kueue", KUEUE_GROUP, ("ClusterQueue", "LocalQueue", "Workload"), ("v1beta2", "v1beta1")),
    GangSolution("volcano", "Volcano", "scheduling.volcano.sh", ("PodGroup", "Queue")),
    GangSolution("kai", "KAI Scheduler", "scheduling.run.ai", ("PodGroup",)),
    GangSolution("coscheduling", "scheduler-plugins coscheduling", "scheduling.x-k8s.io", ("PodGroup",)),
)


def detect_solutions(kube: Kube) -> list[dict[str, Any]]:
    """Every known gang solution whose API group is served, with the version chosen and the kinds present."""
    found = []
    for sol in SOLUTIONS:
        served = kube.served_versions(sol.group)
        if not served:
            continue
        version = next((v for v in sol.versions if v in served), served[0])
        kinds = {r.get("kind") for r in kube.api_resources(f"{sol.group}/{version}") if "/" not in r.get("name", "/")}
        found.append({"name": sol.name, "title": sol.title, "group": sol.group, "served": served, "version": version,
                      "kinds": sorted(k for k in sol.kinds if k in kinds), "complete": all(k in kinds for k in sol.kinds)})
    return found


def choose_solution(found: list[dict[str, Any]], requested: str) -> tuple[dict[str, Any] | None, str]:
    """The solution to test (``requested`` or, for ``auto``, the first found in :data:`SOLUTIONS` order)."""
    known = {s.name: s for s in SOLUTIONS}
    if requested != "auto" and requested not in known:
        raise ConfigError(f"unknown gang_scheduler '{requested}' (known: auto, {', '.join(known)})")
    usable = [f for f in found if f["complete"]]
    if requested == "auto":
        if usable:
            return usable[0], f"auto-detected {usable[0]['title']} ({usable[0]['group']}/{usable[0]['version']})"
        groups = ", ".join(f"{s.group} ({s.title})" for s in SOLUTIONS)
        partial = "; ".join(f"{f['group']} served without {', '.join(k for k in known[f['name']].kinds if k not in f['kinds'])}"
                            for f in found)
        return None, f"no gang scheduling solution found: none of {groups} is served" + (f" ({partial})" if partial else "")
    hit = next((f for f in usable if f["name"] == requested), None)
    if hit:
        return hit, f"{hit['title']} requested and served ({hit['group']}/{hit['version']})"
    sol = known[requested]
    return None, f"{sol.title} requested (gang_scheduler={requested}) but its API {sol.group} is not served"


# --- sizing --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GangPlan:
    size: int  #: N, the positive gang; the negative gang has N+1
    resource: str  #: the gang resource the quota is about (the accelerator resource or "cpu")
    per_pod: str  #: how much of it each pod requests
    accelerators: bool
    reason: str

    @property
    def capacity(self) -> int:
        return self.size


def _quantity_m(value: Any) -> int:
    """A CPU quantity in millicores."""
    text = str(value)
    if text.endswith("m"):
        return int(float(text[:-1]))
    return int(float(text) * 1000)


def free_accelerators(kube: Kube, params: Params) -> dict[str, Any]:
    """Allocatable accelerators on Ready, schedulable nodes and what non-terminated pods already request there."""
    res = params.gpu_resource_name
    nodes = {}
    for n in kube.list("v1", "Node"):
        alloc = int(((n.get("status") or {}).get("allocatable") or {}).get(res, 0) or 0)
        if alloc and condition(n, "Ready") == "True" and not (n.get("spec") or {}).get("unschedulable"):
            nodes[n["metadata"]["name"]] = alloc
    used = 0
    if nodes:
        for pod in kube.list("v1", "Pod", field_selector="status.phase!=Succeeded,status.phase!=Failed"):
            if (pod.get("spec") or {}).get("nodeName") not in nodes:
                continue
            for c in (pod.get("spec") or {}).get("containers") or []:
                r = c.get("resources") or {}
                used += int((r.get("requests") or {}).get(res) or (r.get("limits") or {}).get(res) or 0)
    total = sum(nodes.values())
    return {"resource": res, "nodes": len(nodes), "allocatable": total, "requested": used, "free": max(0, total - used)}


def plan_gang(params: Params, free: int) -> GangPlan:
    """Gang size and resource: accelerators when ``gang_use_gpus`` and N+1 of them are free, CPU otherwise."""
    if params.gang_size < 0 or params.gang_size == 1:
        raise ConfigError(f"gang_size must be 0 (automatic) or at least 2, got {params.gang_size}")
    res = params.gpu_resource_name
    if params.gang_use_gpus and free:
        size = params.gang_size or min(MAX_AUTO_GANG, free - 1)
        if size >= 2 and free >= size + 1:
            return GangPlan(size, res, "1", True, f"{free} {res} free: an accelerator gang of {size} pods (one {res} "
                            f"each) and a capacity+1 gang of {size + 1}")
        why = f"only {free} {res} free, and a gang of {max(size, 2)} plus its capacity+1 counterpart need {max(size, 2) + 1}"
    elif not params.gang_use_gpus:
        why = "gang_use_gpus is false"
    else:
        why = f"no free {res} on Ready nodes"
    size = params.gang_size or MAX_AUTO_GANG
    return GangPlan(size, "cpu", f"{POD_CPU_M}m", False, f"CPU gang ({why}): {size} pods of {POD_CPU_M}m CPU each, "
                    f"quota {size * POD_CPU_M}m")


def quotas(plan: GangPlan, capacity: int) -> dict[str, str]:
    """Nominal quotas: exactly ``capacity`` pods' worth of the gang resource; the rest ample."""
    ample = 4 * (capacity + 2)
    out = {"cpu": f"{ample * POD_CPU_M}m", "memory": f"{ample * POD_MEMORY_MI}Mi"}
    if plan.accelerators:
        out[plan.resource] = str(capacity)
    else:
        out["cpu"] = f"{capacity * POD_CPU_M}m"
    return out


# --- manifests -----------------------------------------------------------------------------------------------------


def resource_flavor(name: str, version: str) -> dict[str, Any]:
    return {"apiVersion": f"{KUEUE_GROUP}/{version}", "kind": "ResourceFlavor", "metadata": {"name": name}}


def cluster_queue(name: str, version: str, flavor: str, quota: dict[str, str], namespace_labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": f"{KUEUE_GROUP}/{version}",
        "kind": "ClusterQueue",
        "metadata": {"name": name},
        "spec": {
            # Only the check's namespace may use this queue.
            "namespaceSelector": {"matchLabels": dict(namespace_labels)},
            "queueingStrategy": "BestEffortFIFO",
            "resourceGroups": [resource_group(flavor, quota)],
        },
    }


def resource_group(flavor: str, quota: dict[str, str]) -> dict[str, Any]:
    return {
        "coveredResources": list(quota),
        "flavors": [{"name": flavor, "resources": [{"name": r, "nominalQuota": q} for r, q in quota.items()]}],
    }


def local_queue(name: str, namespace: str, version: str, cq: str) -> dict[str, Any]:
    return {"apiVersion": f"{KUEUE_GROUP}/{version}", "kind": "LocalQueue",
            "metadata": {"name": name, "namespace": namespace}, "spec": {"clusterQueue": cq}}


def gang_job(name: str, namespace: str, queue: str, size: int, plan: GangPlan, params: Params, gang: str) -> dict[str, Any]:
    """A Job of ``size`` pods that must run together: parallelism = completions = size, suspended until admitted."""
    requests = {"cpu": f"{POD_CPU_M}m", "memory": f"{POD_MEMORY_MI}Mi"}
    limits = {"memory": f"{POD_MEMORY_MI * 2}Mi"}
    if plan.accelerators:
        requests[plan.resource] = "1"
        limits[plan.resource] = "1"
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 1,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65534, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [
            {
                "name": "member",
                "image": params.image_utility,
                "imagePullPolicy": params.image_pull_policy,
                "command": ["sh", "-c", f"echo gang member $JOB_COMPLETION_INDEX; sleep {params.gang_pod_run_s}"],
                "resources": {"requests": requests, "limits": limits},
                "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
            }
        ],
    }
    selector = parse_selector(params.gang_node_selector)
    if plan.accelerators:
        if re.fullmatch(r"[\w./-]+=[\w.-]*(,[\w./-]+=[\w.-]*)*", params.gpu_node_selector or ""):
            selector.update(parse_selector(params.gpu_node_selector))
        if params.gpu_taint_key:
            pod_spec["tolerations"] = [{"key": params.gpu_taint_key, "operator": "Exists", "effect": "NoSchedule"}]
        if params.runtime_class_name:
            pod_spec["runtimeClassName"] = params.runtime_class_name
    if selector:
        pod_spec["nodeSelector"] = selector
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": {QUEUE_LABEL: queue, GANG_LABEL: gang}},
        "spec": {
            "parallelism": size,
            "completions": size,
            "completionMode": "Indexed",
            "backoffLimit": 0,
            # Created suspended: Kueue unsuspends it when the whole Workload is admitted (its webhook would suspend
            # it anyway; being explicit keeps a missing webhook from letting pods start unadmitted).
            "suspend": True,
            "template": {
                "metadata": {
                    "labels": {GANG_LABEL: gang},
                    # Simulated (kwok) nodes run no process: this makes kwok finish the pod after the same time.
                    "annotations": {KWOK_COMPLETE_DELAY: f"{params.gang_pod_run_s}s"},
                },
                "spec": pod_spec,
            },
        },
    }


# --- observing pods ------------------------------------------------------------------------------------------------


def _ts(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


@dataclass
class PodTimes:
    name: str
    node: str = ""
    created_s: float | None = None  #: first seen (watch), seconds since t0
    scheduled_s: float | None = None  #: first seen bound to a node
    running_s: float | None = None  #: first seen Running
    finished_s: float | None = None  #: first seen Succeeded/Failed (or gone)
    phase: str = ""
    created_at: str = ""  #: API timestamps (1 s resolution)
    scheduled_at: str = ""
    started_at: str = ""
    finished_at: str = ""
    gated: bool = False


@dataclass
class PodTracker:
    """Per-pod lifecycle times of one gang and the counts after every watch event."""

    gang: str
    t0: float
    clock: Any = time.monotonic
    pods: dict[str, PodTimes] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)

    def now(self) -> float:
        return round(self.clock() - self.t0, 3)

    def update(self, objs: list[dict[str, Any]]) -> dict[str, Any]:
        t = self.now()
        seen = set()
        running = scheduled = gated = finished = 0
        for o in objs:
            name = o["metadata"]["name"]
            seen.add(name)
            pt = self.pods.setdefault(name, PodTimes(name, created_s=t))
            spec, status = o.get("spec") or {}, o.get("status") or {}
            phase = status.get("phase", "")
            pt.phase = phase
            pt.created_at = o["metadata"].get("creationTimestamp", "") or pt.created_at
            pt.gated = bool(spec.get("schedulingGates"))
            if spec.get("nodeName"):
                pt.node = spec["nodeName"]
                if pt.scheduled_s is None:
                    pt.scheduled_s = t
            for c in status.get("conditions") or []:
                if c.get("type") == "PodScheduled" and c.get("status") == "True":
                    pt.scheduled_at = c.get("lastTransitionTime", "") or pt.scheduled_at
            for cs in status.get("containerStatuses") or []:
                state = cs.get("state") or {}
                started = (state.get("running") or {}).get("startedAt") or (state.get("terminated") or {}).get("startedAt")
                if started and not pt.started_at:
                    pt.started_at = started
                if (state.get("terminated") or {}).get("finishedAt"):
                    pt.finished_at = state["terminated"]["finishedAt"]
            if phase == "Running" and pt.running_s is None:
                pt.running_s = t
            if phase in ("Succeeded", "Failed") and pt.finished_s is None:
                pt.finished_s = t
                if pt.running_s is None and pt.started_at:
                    pt.running_s = t  # ran between two events; the API start time is kept in started_at
            running += phase == "Running"
            scheduled += bool(spec.get("nodeName"))
            gated += pt.gated
            finished += phase in ("Succeeded", "Failed")
        for name, pt in self.pods.items():
            if name not in seen and pt.finished_s is None:
                pt.finished_s = t  # deleted
        sample = {"t_s": t, "gang": self.gang, "existing": len(objs), "scheduled": scheduled, "running": running,
                  "gated": gated, "finished": finished}
        self.samples.append(sample)
        return sample

    @property
    def max_running(self) -> int:
        return max((s["running"] for s in self.samples), default=0)

    @property
    def max_scheduled(self) -> int:
        return max((s["scheduled"] for s in self.samples), default=0)

    @property
    def finished(self) -> int:
        return sum(1 for p in self.pods.values() if p.phase in ("Succeeded", "Failed"))

    def rows(self) -> list[dict[str, Any]]:
        return [{"gang": self.gang, "pod": p.name, "node": p.node, "created_s": p.created_s, "scheduled_s": p.scheduled_s,
                 "running_s": p.running_s, "finished_s": p.finished_s, "phase": p.phase, "created_at": p.created_at,
                 "scheduled_at": p.scheduled_at, "started_at": p.started_at, "finished_at": p.finished_at}
                for p in sorted(self.pods.values(), key=lambda p: p.name)]


def start_skew(tracker: PodTracker) -> dict[str, float | None]:
    """Spread of the pods' start times: as observed by the watch (ms) and by the API's startedAt (1 s resolution)."""
    observed = [p.running_s for p in tracker.pods.values() if p.running_s is not None]
    api = [t for t in (_ts(p.started_at) for p in tracker.pods.values()) if t is not None]
    sched = [t for t in (_ts(p.scheduled_at) for p in tracker.pods.values()) if t is not None]
    return {
        "observed_start_skew_s": round(max(observed) - min(observed), 3) if len(observed) > 1 else None,
        "api_start_skew_s": (max(api) - min(api)).total_seconds() if len(api) > 1 else None,
        "api_schedule_skew_s": (max(sched) - min(sched)).total_seconds() if len(sched) > 1 else None,
    }


def judge_together(tracker: PodTracker, size: int) -> tuple[Verdict, str]:
    """All ``size`` pods must have been Running at one observed moment."""
    most = tracker.max_running
    if most >= size:
        skew = start_skew(tracker)
        obs = skew["observed_start_skew_s"]
        api = skew["api_start_skew_s"]
        bits = []
        if obs is not None:
            bits.append(f"start skew {obs * 1000:.0f} ms as observed")
        if api is not None:
            bits.append(f"{api:.0f} s by the pods' startedAt (1 s resolution)")
        return Verdict.PASS, f"all {size} pods Running at the same time" + (f"; {', '.join(bits)}" if bits else "")
    created = len(tracker.pods)
    if most == 0:
        if created == 0:
            return Verdict.FAIL, f"the gang of {size} was never admitted: no pod was created"
        return Verdict.FAIL, f"no pod of the gang of {size} ran ({created} created, {tracker.max_scheduled} scheduled at most)"
    return Verdict.FAIL, f"only {most} of {size} pods were ever Running at the same time"


def judge_hold(samples: list[dict[str, Any]], size: int, hold_s: float) -> tuple[Verdict, str]:
    """The capacity+1 gang of ``size`` pods must stay entirely unscheduled for the whole hold."""
    if not samples:
        return Verdict.UNKNOWN, "nothing was observed during the hold"
    running = max(s["running"] for s in samples)
    scheduled = max(s["scheduled"] for s in samples)
    existing = max(s["existing"] for s in samples)
    if running == 0 and scheduled == 0:
        how = "no pod was even created (the Job stayed suspended)" if existing == 0 else (
            f"its {existing} pods stayed Pending/gated, none bound to a node")
        return Verdict.PASS, f"for {hold_s:g}s no pod of the {size}-pod gang ran: {how}"
    if running >= size:
        return Verdict.FAIL, f"the gang ran although it exceeds capacity: {running} of {size} pods Running"
    if running > 0:
        return Verdict.FAIL, f"partial admission: {running} of {size} pods Running while the gang did not fit"
    return Verdict.FAIL, f"partial scheduling: {scheduled} of {size} pods bound to nodes while the gang did not fit"


# --- Kueue health and configuration -----------------------------------------------------------------------------------


def kueue_configuration(kube: Kube, namespaces: list[str]) -> dict[str, Any]:
    """Kueue's manager configuration from its ConfigMap, where one exists and can be read."""
    for ns in namespaces:
        try:
            cms = kube.list("v1", "ConfigMap", ns)
        except (ApiException, AiconfError) as e:  # RBAC or no such namespace: then it is simply not readable here
            return {"readable": False, "why": f"ConfigMaps in {ns} cannot be listed: {e}"}
        for cm in cms:
            for key, text in (cm.get("data") or {}).items():
                if "kind: Configuration" not in text or "config.kueue.x-k8s.io" not in text:
                    continue
                try:
                    cfg = yaml.safe_load(text) or {}
                except yaml.YAMLError:
                    continue
                return {"readable": True, "where": f"ConfigMap {ns}/{cm['metadata']['name']} key {key}",
                        **wait_for_pods_ready(cfg)}
    return {"readable": False, "why": "no ConfigMap holding Kueue's Configuration in " + (", ".join(namespaces) or "any namespace")
            + " (Kueue may run outside the cluster or take its configuration from a file)"}


def wait_for_pods_ready(cfg: dict[str, Any]) -> dict[str, Any]:
    """``waitForPodsReady`` of a Kueue Configuration: v1beta2 turns it on by its presence, v1beta1 by ``enable``."""
    wfpr = cfg.get("waitForPodsReady")
    api = str(cfg.get("apiVersion", ""))
    if wfpr is None:
        enabled = False
    elif api.endswith("/v1beta1"):
        enabled = bool(wfpr.get("enable", False))
    else:
        enabled = True
    return {"wait_for_pods_ready": enabled, "settings": wfpr or {}}


def kueue_health(ctx: CheckContext, version: str) -> dict[str, Any]:
    """Is Kueue's controller there? Its webhooks (fail-closed) answering a dry-run create, and its pods."""
    kube = ctx.kube
    hooks = find_webhooks(kube, KUEUE_GROUP, "resourceflavors")
    for h in hooks:
        h["backend"] = inspect_backend(kube, h)
    probe = ctx.labelled(resource_flavor(f"aiconf-probe-{ctx.run_id[-6:]}", version))
    admission, _ = submit(kube, probe, dry_run=True)
    fail_closed = [h for h in hooks if h["failure_policy"] == "Fail"]
    out: dict[str, Any] = {"webhooks": [f"{h['type']} {h['webhook']} ({h['configuration']}, {h['failure_policy']}, "
                                        f"{h['backend']['target']})" for h in hooks],
                           "dry_run": admission.describe()}
    namespaces = sorted({h["backend"]["namespace"] for h in hooks if h["backend"].get("namespace")}) or ["kueue-system"]
    out["namespaces"] = namespaces
    pods = []
    for h in hooks:
        sel = h["backend"].get("selector")
        if sel:
            pods = kube.list("v1", "Pod", h["backend"]["namespace"], label_selector=",".join(f"{k}={v}" for k, v in sel.items()))
            if pods:
                break
    out["pods"] = [f"{p['metadata']['namespace']}/{p['metadata']['name']} Ready={condition(p, 'Ready')}" for p in pods]
    out["out_of_cluster"] = not pods and any(h["backend"]["loopback"] for h in hooks)
    if admission.outcome is AdmissionOutcome.WEBHOOK_UNREACHABLE:
        out["ok"], out["why"] = False, f"Kueue's webhook does not answer (its controller is down or unreachable): {admission.message}"
    elif admission.outcome is not AdmissionOutcome.ACCEPTED:
        out["ok"], out["why"] = False, f"a dry-run ResourceFlavor create was refused: {admission.describe()}"
    elif pods and any(condition(p, "Ready") != "True" for p in pods):
        out["ok"], out["why"] = False, "Kueue controller pods not Ready: " + ", ".join(out["pods"])
    else:
        out["ok"] = True
        how = "its fail-closed webhook answered a dry-run ResourceFlavor create" if fail_closed else (
            "a dry-run ResourceFlavor create passed (no fail-closed Kueue webhook, so this alone proves nothing about "
            "the controller)")
        where = ("controller pods Ready: " + ", ".join(out["pods"])) if pods else (
            "it runs outside the cluster (its webhook endpoint is a loopback address: a host process)"
            if out["out_of_cluster"] else "no controller pod found through its webhook Service")
        out["why"] = f"{how}; {where}"
    return out


# --- charts --------------------------------------------------------------------------------------------------------


def _marks(result: Any) -> dict[str, float]:
    frame = display.series(result, "running_pods")
    if frame.empty or "event" not in frame:
        return {}
    return {str(r["event"]): float(r["t_s"]) for _, r in frame[frame["event"].notna()].iterrows()}


def _pod_index(name: str) -> str:
    """The completion index of an Indexed Job's pod (``gang-fits-2-x7k2p`` -> ``2``), else the name's tail."""
    m = re.search(r"-(\d+)-[a-z0-9]{5}$", name)
    return m.group(1) if m else name[-8:]


def draw_gantt(ax: Any, result: Any) -> None:
    """Per-pod timeline of both gangs: created -> scheduled -> running -> finished (seconds since the check started)."""
    frame = display.series(result, "pod_timeline")
    if frame.empty:
        ax.text(0.5, 0.5, "no pod timeline recorded", ha="center", va="center", transform=ax.transAxes)
        return
    colours = {"waiting to be scheduled": "#d0d7de", "scheduled, starting": "#bf8700", "running": "#1a7f37"}
    labels = []
    end_default = float(frame[["created_s", "scheduled_s", "running_s", "finished_s"]].max().max())
    for i, (_, r) in enumerate(frame.iterrows()):
        labels.append(f"{'fits' if r['gang'] == 'positive' else 'capacity+1'} #{_pod_index(str(r['pod']))}")
        created = r["created_s"]
        sched = r["scheduled_s"] if r["scheduled_s"] == r["scheduled_s"] else None
        run = r["running_s"] if r["running_s"] == r["running_s"] else None
        fin = r["finished_s"] if r["finished_s"] == r["finished_s"] else end_default
        segments = [("waiting to be scheduled", created, sched or run or fin), ("scheduled, starting", sched, run or fin),
                    ("running", run, fin)]
        for name, a, b in segments:
            if a is not None and b is not None and b >= a:
                ax.barh(i, max(b - a, 0.05), left=a, color=colours[name], edgecolor="none",
                        label=name if i == 0 or name not in ax.get_legend_handles_labels()[1] else None)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.invert_yaxis()
    marks = _marks(result)
    if "hold start" in marks and "hold end" in marks:
        ax.axvspan(marks["hold start"], marks["hold end"], color="#cf222e", alpha=0.08, label="capacity+1 gang held")
    if "quota raised" in marks:
        ax.axvline(marks["quota raised"], color="#cf222e", linestyle="--", linewidth=0.8)
    ax.set_xlabel("seconds since the check started")
    handles, names = ax.get_legend_handles_labels()
    uniq = dict(zip(names, handles, strict=False))
    ax.legend(uniq.values(), uniq.keys(), fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    m = result.metrics
    bits = [f"{k.split('_')[0]} gang skew {m[k] * 1000:.0f} ms" for k in ("positive_observed_start_skew_s",
                                                                          "negative_observed_start_skew_s") if m.get(k) is not None]
    ax.set_title("Gang pods: created -> scheduled -> running" + (f" ({'; '.join(bits)})" if bits else ""))


def draw_running(ax: Any, result: Any) -> None:
    """Running pods of the capacity+1 gang over time: flat zero during the hold, then all together after release."""
    frame = display.series(result, "running_pods")
    if frame.empty or "gang" not in frame:
        ax.text(0.5, 0.5, "no running-pod series recorded", ha="center", va="center", transform=ax.transAxes)
        return
    neg = frame[(frame["gang"] == "negative") & frame["running"].notna()]
    pos = frame[(frame["gang"] == "positive") & frame["running"].notna()]
    if not pos.empty:
        ax.step(pos["t_s"], pos["running"], where="post", color="#8c959f", label="positive gang running")
    if not neg.empty:
        ax.step(neg["t_s"], neg["running"], where="post", color="#0969da", linewidth=2, label="capacity+1 gang running")
        ax.step(neg["t_s"], neg["scheduled"], where="post", color="#0969da", linestyle=":", label="capacity+1 gang scheduled")
    m = result.metrics
    if m.get("gang_size"):
        ax.axhline(m["gang_size"], color="#bf8700", linestyle="--", linewidth=0.8, label=f"capacity ({m['gang_size']} pods)")
    marks = _marks(result)
    if "hold start" in marks and "hold end" in marks:
        ax.axvspan(marks["hold start"], marks["hold end"], color="#cf222e", alpha=0.08, label="hold (must stay 0)")
    if "quota raised" in marks:
        ax.axvline(marks["quota raised"], color="#cf222e", linestyle="--", linewidth=0.8, label="quota raised to N+1")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("seconds since the check started")
    ax.set_ylabel("pods")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("Running pods: all-or-nothing")


# --- notebook table ------------------------------------------------------------------------------------------------


def summary_frame(result: Any) -> Any:
    """The gang solution tested, how it showed it works, and the gang's size and resource."""
    import pandas as pd

    m = result.metrics
    health = m.get("kueue_health") or {}
    acc = m.get("accelerators") or {}
    cfg = result.subcheck("gang_config")
    rows = [
        ("gang solutions served", ", ".join(m.get("gang_solutions_found") or []) or "none"),
        ("solution tested", m.get("gang_solution", "")),
        ("its webhooks", "; ".join(health.get("webhooks") or []) or "-"),
        ("dry-run create through its webhook", health.get("dry_run", "-")),
        ("controller", "; ".join(health.get("pods") or []) or ("outside the cluster (host process)"
                                                              if health.get("out_of_cluster") else "-")),
        ("gang size N (negative gang: N+1)", m.get("gang_size", "")),
        ("gang resource (quota exactly N)", m.get("gang_resource", "")),
        ("accelerators free / allocatable", f"{acc.get('free', '-')} / {acc.get('allocatable', '-')}" if acc else "-"),
        ("gang configuration", cfg.summary if cfg else "-"),
    ]
    return pd.DataFrame(rows, columns=["", "value"]).set_index("")


# --- preflight -----------------------------------------------------------------------------------------------------


def preflight(kube: Kube, params: Params) -> tuple[bool, str]:
    chosen, why = choose_solution(detect_solutions(kube), params.gang_scheduler)
    if chosen is None:
        return False, why
    if chosen["name"] != "kueue":
        return False, f"{why}; the functional test is implemented for Kueue only (manual evidence for {chosen['title']})"
    free = free_accelerators(kube, params)
    plan = plan_gang(params, free["free"])
    return True, f"{why}; {plan.reason}"


# --- the check -----------------------------------------------------------------------------------------------------


@check("gang_scheduling", subchecks=SUBCHECKS, charts={"gantt": draw_gantt, "running_pods": draw_running},
       preflight=preflight)
def run(ctx: CheckContext) -> None:
    p, kube = ctx.params, ctx.kube
    ctx.series("running_pods")  # t0 of every chart: created first
    t0 = ctx.series("running_pods").t0
    ctx.series("pod_timeline").t0 = t0

    with ctx.step("detect the gang scheduling solution"):
        found = detect_solutions(kube)
        chosen, why = choose_solution(found, p.gang_scheduler)
        ctx.metric("gang_solutions_found", [f"{f['title']} ({f['group']}/{f['version']})" for f in found])
        if chosen is None:
            ctx.record("scheduler_detected", Verdict.FAIL, why, expected="a gang scheduling solution installed and working "
                       "(Kueue, Volcano, KAI, coscheduling)", observed="served: " + (", ".join(
                           f"{f['group']} {f['served']}" for f in found) or "none of their API groups"))
            for sub in FUNCTIONAL:
                ctx.record(sub, Verdict.UNKNOWN, "not run: no gang scheduling solution to test")
            ctx.record("gang_config", Verdict.UNKNOWN, "not run", required=False)
            _narrative(ctx, None)
            return
        ctx.metric("gang_solution", chosen["title"])
        if chosen["name"] != "kueue":
            ctx.record("scheduler_detected", Verdict.PASS, f"{why}; its health is not verified by this toolkit",
                       expected="a gang scheduling solution installed", observed=f"{chosen['group']} {chosen['served']}")
            for sub in FUNCTIONAL:
                ctx.record(sub, Verdict.UNKNOWN, f"the functional gang test is implemented for Kueue only: attach manual "
                           f"evidence for {chosen['title']} (a gang that runs together, an oversized one that stays pending)")
            ctx.record("gang_config", Verdict.UNKNOWN, "not inspected for " + chosen["title"], required=False)
            _narrative(ctx, chosen)
            return
        version = chosen["version"]
        health = kueue_health(ctx, version)
        ctx.metric("kueue_health", health)
        if not health["ok"]:
            ctx.record("scheduler_detected", Verdict.FAIL, f"{why}, but it is not working: {health['why']}",
                       expected="Kueue's webhook answering and its controller reconciling", observed=health["dry_run"],
                       **health)
            for sub in FUNCTIONAL:
                ctx.record(sub, Verdict.UNKNOWN, "not run: Kueue is not working")
            ctx.record("gang_config", Verdict.UNKNOWN, "not run", required=False)
            _narrative(ctx, chosen)
            return
        config = kueue_configuration(kube, health["namespaces"])

    with ctx.step("size the gang"):
        free = free_accelerators(kube, p) if p.gang_use_gpus else {"free": 0}
        plan = plan_gang(p, free.get("free", 0))
        n = plan.size
        ctx.metric("accelerators", free)
        ctx.metric("gang_size", n)
        ctx.metric("gang_resource", plan.resource)
        ctx.metric("gang_uses_accelerators", plan.accelerators)
        ctx.note(f"Gang resource: {plan.reason}.")
        simulated = _simulated_gpu_nodes(kube, p)
        if simulated:
            ctx.note(f"Accelerator nodes are simulated (kwok: {', '.join(simulated)}): pods on them are marked Running "
                     "without running a process; scheduling, quota and admission are real.")

    suffix = ctx.run_id[-6:]
    rf_name, cq_name, lq_name = f"aiconf-gang-{suffix}", f"aiconf-gang-{suffix}", "aiconf-gang"
    ns_labels = {LABEL_RUN_ID: ctx.run_id, LABEL_REQUIREMENT: ctx.requirement_id}
    with ctx.step("create the check's ResourceFlavor and ClusterQueue"):
        ctx.create(resource_flavor(rf_name, version))
        cq = ctx.create(cluster_queue(cq_name, version, rf_name, quotas(plan, n), ns_labels))
        ctx.on_cleanup(f"record ClusterQueue {cq_name}", _save_cluster_objects, ctx, version, cq_name, rf_name)
        started = time.monotonic()
        try:
            kube.wait_for(cq["apiVersion"], "ClusterQueue", cq_name, None, lambda o: condition(o, "Active") == "True",
                          p.gang_timeout_s, f"ClusterQueue {cq_name} to be Active")
        except WaitTimeout as e:
            ctx.record("scheduler_detected", Verdict.FAIL, f"{why}; its webhook answers, but the controller did not "
                       f"activate ClusterQueue {cq_name} within {p.gang_timeout_s}s", observed=e.last_seen, **health)
            for sub in FUNCTIONAL:
                ctx.record(sub, Verdict.UNKNOWN, "not run: Kueue's controller does not reconcile")
            ctx.record("gang_config", Verdict.UNKNOWN, "not run", required=False)
            _narrative(ctx, chosen)
            return
        ctx.record("scheduler_detected", Verdict.PASS, f"{why}; {health['why']}; its controller activated ClusterQueue "
                   f"{cq_name} in {time.monotonic() - started:.1f}s",
                   expected="a gang scheduling solution installed and working", observed=health["dry_run"], **health)

    ns = ctx.namespace()
    with ctx.step("create the LocalQueue"):
        lq = ctx.create(local_queue(lq_name, ns, version, cq_name))
        kube.wait_for(lq["apiVersion"], "LocalQueue", lq_name, ns, lambda o: condition(o, "Active") == "True",
                      p.gang_timeout_s, f"LocalQueue {lq_name} to be Active")

    running_series = ctx.series("running_pods")

    def track(tracker: PodTracker):
        def on_change(objs: list[dict[str, Any]]) -> None:
            running_series.add(**{k: v for k, v in tracker.update(objs).items() if k != "t_s"})
        return on_change

    # Positive: N pods, quota N. Wait until every pod has finished, so each one's whole life is on the chart.
    positive = PodTracker("positive", t0)
    with ctx.step(f"run a gang of {n} pods that fits"):
        job = ctx.create(gang_job("gang-fits", ns, lq_name, n, plan, p, "positive"))
        running_series.mark("positive gang created")
        _watch_gang(ctx, ns, "positive", n, positive, track(positive))
        verdict, summary = judge_together(positive, n)
        skew = start_skew(positive)
        for k, v in skew.items():
            ctx.metric(f"positive_{k}", v)
        wl = _workload(kube, version, ns, job["metadata"]["uid"])
        _save(ctx, "positive-gang.yaml", [kube.get("batch/v1", "Job", "gang-fits", ns), wl])
        ctx.series("pod_timeline").rows.extend(_timeline_rows(positive))
        ctx.record("gang_admitted_together", verdict, summary,
                   expected=f"the Workload admitted whole and all {n} pods Running at the same time",
                   observed=f"max {positive.max_running} Running at once; {positive.finished} finished; Workload: "
                   f"{_wl_state(wl)}", pods=positive.rows(), **skew)

    with ctx.step("wait until the fitting gang's quota is released"):
        # The negative case starts from an empty queue: N pods of the next gang *would* fit.
        released_at = time.monotonic()
        _wait_queue_empty(ctx, version, cq_name)
        ctx.metric("positive_quota_released_s", round(time.monotonic() - released_at, 3))

    # Negative: N+1 pods, quota N, queue empty: nothing may run during the hold.
    negative = PodTracker("negative", t0)
    big = n + 1
    with ctx.step(f"hold a gang of {big} pods (capacity {n}) for {p.gang_negative_hold_s}s"):
        job = ctx.create(gang_job("gang-too-big", ns, lq_name, big, plan, p, "negative"))
        running_series.mark("hold start")
        try:
            kube.wait_until("v1", "Pod", ns, lambda objs: False, p.gang_negative_hold_s,
                            f"the {big}-pod gang to stay unscheduled", label_selector=f"{GANG_LABEL}=negative",
                            on_change=track(negative))
        except WaitTimeout:
            pass  # the hold ran its full length: the expected outcome
        running_series.mark("hold end")
        wl = _workload(kube, version, ns, job["metadata"]["uid"])
        held_job = kube.get("batch/v1", "Job", "gang-too-big", ns)
        _save(ctx, "negative-gang-held.yaml", [held_job, wl])
        verdict, summary = judge_hold(negative.samples, big, p.gang_negative_hold_s)
        if verdict is Verdict.PASS:
            summary += f"; Workload: {_wl_state(wl)}; Job suspended={((held_job or {}).get('spec') or {}).get('suspend')}"
        ctx.record("no_partial_admission", verdict, summary,
                   expected=f"for {p.gang_negative_hold_s}s no pod of the {big}-pod gang scheduled or Running "
                   f"(capacity {n})",
                   observed=f"max {negative.max_scheduled} scheduled, {negative.max_running} Running; Workload: {_wl_state(wl)}",
                   samples=len(negative.samples))

    with ctx.step(f"raise the quota to {big} and wait for the held gang"):
        try:
            kube.patch(f"{KUEUE_GROUP}/{version}", "ClusterQueue", cq_name,
                       {"spec": {"resourceGroups": [resource_group(rf_name, quotas(plan, big))]}})
        except ApiException as e:
            if e.status != 404:
                raise
            ctx.record("admitted_after_release", Verdict.FAIL, f"the quota could not be raised: ClusterQueue {cq_name} "
                       "no longer exists (deleted during the check), so the held gang can never run",
                       expected=f"all {big} pods Running together once the quota allows it", observed="ClusterQueue gone")
            _record_config(ctx, config, wl)
            _narrative(ctx, chosen, plan)
            return
        running_series.mark("quota raised")
        released = PodTracker("negative", t0, pods=negative.pods, samples=negative.samples)
        released.samples = []  # judge the release on its own observations; the pod times carry on
        _watch_gang(ctx, ns, "negative", big, released, track(released))
        verdict, summary = judge_together(released, big)
        skew = start_skew(released)
        for k, v in skew.items():
            ctx.metric(f"negative_{k}", v)
        wl = _workload(kube, version, ns, job["metadata"]["uid"])
        _save(ctx, "negative-gang-released.yaml", [kube.get("batch/v1", "Job", "gang-too-big", ns), wl])
        ctx.series("pod_timeline").rows.extend(_timeline_rows(released))
        ctx.record("admitted_after_release",
                   verdict, ("after the quota was raised: " + summary) if verdict is Verdict.PASS else
                   f"after the quota was raised to {big}: {summary}",
                   expected=f"all {big} pods Running together once the quota allows it",
                   observed=f"max {released.max_running} Running at once; Workload: {_wl_state(wl)}", **skew)

    with ctx.step("record gang-relevant configuration"):
        _record_config(ctx, config, wl)
    _narrative(ctx, chosen, plan)


def _watch_gang(ctx: CheckContext, ns: str, gang: str, size: int, tracker: PodTracker, on_change: Any) -> None:
    """Watch the gang's pods until all of them have finished (or, failing that, until ``gang_timeout_s``)."""
    p = ctx.params

    def done(objs: list[dict[str, Any]]) -> bool:
        finished = [o for o in objs if (o.get("status") or {}).get("phase") in ("Succeeded", "Failed")]
        return len(finished) >= size or any((o.get("status") or {}).get("phase") == "Failed" for o in objs)

    try:
        ctx.kube.wait_until("v1", "Pod", ns, done, p.gang_timeout_s, f"the {size} pods of the {gang} gang to finish",
                            label_selector=f"{GANG_LABEL}={gang}", on_change=on_change)
    except WaitTimeout as e:
        # Not an error of the toolkit: the verdict is drawn from what the tracker saw.
        ctx.log(f"{gang} gang: {e}")


def _wait_queue_empty(ctx: CheckContext, version: str, cq_name: str) -> None:
    def empty(o: dict[str, Any] | None) -> bool:
        # A ClusterQueue that is gone holds nothing either; the next steps report that it disappeared.
        st = (o or {}).get("status") or {}
        return o is None or (not st.get("reservingWorkloads") and not st.get("admittedWorkloads"))

    ctx.kube.wait_for(f"{KUEUE_GROUP}/{version}", "ClusterQueue", cq_name, None, empty, ctx.params.gang_timeout_s,
                      f"ClusterQueue {cq_name} to hold no workload",
                      describe=lambda o: str({k: ((o or {}).get("status") or {}).get(k) for k in
                                              ("pendingWorkloads", "reservingWorkloads", "admittedWorkloads")}))


def _workload(kube: Kube, version: str, ns: str, job_uid: str) -> dict[str, Any] | None:
    items = kube.list(f"{KUEUE_GROUP}/{version}", "Workload", ns, label_selector=f"{JOB_UID_LABEL}={job_uid}")
    if not items:
        items = [w for w in kube.list(f"{KUEUE_GROUP}/{version}", "Workload", ns)
                 if any(r.get("uid") == job_uid for r in w["metadata"].get("ownerReferences") or [])]
    return items[0] if items else None


def _wl_state(wl: dict[str, Any] | None) -> str:
    if wl is None:
        return "none found"
    conds = (wl.get("status") or {}).get("conditions") or []
    parts = []
    for c in conds:
        bit = f"{c.get('type')}={c.get('status')}"
        if c.get("type") in ("QuotaReserved", "Admitted") and c.get("status") != "True" and c.get("reason"):
            bit += f" ({c['reason']}: {str(c.get('message', ''))[:200]})"
        parts.append(bit)
    return ", ".join(parts) or "no conditions yet"


def _timeline_rows(tracker: PodTracker) -> list[dict[str, Any]]:
    from aiconf.context import now_iso

    now, stamp = round(time.monotonic() - tracker.t0, 3), now_iso()
    return [{"t_s": now, "time": stamp, **r} for r in tracker.rows()]


def _record_config(ctx: CheckContext, config: dict[str, Any], wl: dict[str, Any] | None) -> None:
    observed_pods_ready = condition(wl, "PodsReady") is not None
    if config.get("readable"):
        on = config["wait_for_pods_ready"]
        summary = f"waitForPodsReady {'enabled' if on else 'not enabled'} ({config['where']})"
        verdict = Verdict.PASS if on else Verdict.FAIL
    else:
        summary = f"Kueue's configuration is not readable: {config['why']}"
        verdict = Verdict.UNKNOWN
    summary += ("; the Workloads carry a PodsReady condition, which Kueue sets only with waitForPodsReady on"
                if observed_pods_ready else "; the Workloads carry no PodsReady condition (waitForPodsReady looks off)")
    if verdict is Verdict.UNKNOWN:
        verdict = Verdict.PASS if observed_pods_ready else Verdict.FAIL
    ctx.record("gang_config", verdict, summary, required=False,
               expected="waitForPodsReady on: a gang admitted by quota whose pods cannot all start is evicted and requeued "
               "instead of holding part of the cluster", observed=summary, config=config)


def _save(ctx: CheckContext, name: str, objs: list[dict[str, Any] | None]) -> None:
    from aiconf.evidence import dump_objects

    ctx.save_evidence(name, dump_objects([o for o in objs if o]))


def _save_cluster_objects(ctx: CheckContext, version: str, cq_name: str, rf_name: str) -> None:
    api = f"{KUEUE_GROUP}/{version}"
    _save(ctx, "cluster-objects.yaml", [ctx.kube.get(api, "ClusterQueue", cq_name), ctx.kube.get(api, "ResourceFlavor", rf_name)])


def _simulated_gpu_nodes(kube: Kube, params: Params) -> list[str]:
    from aiconf.facts import is_simulated

    res = params.gpu_resource_name
    return sorted(n["metadata"]["name"] for n in kube.list("v1", "Node")
                  if is_simulated(n) and ((n.get("status") or {}).get("allocatable") or {}).get(res))


def _narrative(ctx: CheckContext, chosen: dict[str, Any] | None, plan: GangPlan | None = None) -> None:
    ctx.proves(
        "A gang scheduling solution is installed and its controller works (webhook answering, queue activated).",
        "A multi-pod workload that fits is admitted whole: all its pods run at the same time.",
        "A workload one pod larger than the capacity is held entirely - no pod scheduled or running, although most of "
        "it would fit - and runs whole as soon as the capacity allows it.",
    )
    ctx.does_not_prove(
        "That the workload's processes communicate (on simulated nodes no container runs).",
        "Gang behaviour when kube-scheduler, not quota, is the limit (fragmented nodes); Kueue's waitForPodsReady "
        "covers that case by evicting a gang whose pods do not all start - reported, not exercised.",
        "Gang scheduling by other solutions installed beside the one tested.",
    )
    if plan is not None and not plan.accelerators:
        ctx.does_not_prove("Gang admission of accelerator requests: this run used a CPU gang (see the note).")
