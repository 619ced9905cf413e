"""secure_accelerator_access (KAR-0049; MUST in 1.33-1.36): containers reach only the accelerators allocated to them.

Probe pods run :mod:`aiconf.workloads.device_probe` (mounted from a ConfigMap, run by any image with ``python3``)
on an accelerator node that runs processes; each prints one JSON document (device nodes, env, ``nvidia-smi -L``,
NVML/CUDA device lists, and ``open()`` of every GPU device node of the node, created first with ``mknod`` where
absent) which the check reads from the pod log and judges with :mod:`aiconf.accel.isolation`.

What each sub-check proves:

* ``accelerator_nodes`` (informational): which accelerator nodes exist, which are simulated (kwok: no processes,
  skipped with the reason) and where the probes ran. Only simulated accelerator nodes: every test is UNKNOWN (the
  requirement cannot be demonstrated), never PASS. No accelerator at all: NOT_APPLICABLE.
* ``no_request_no_device`` (T1, required): two pods without a request, pinned to the accelerator node, one of them
  with ``NVIDIA_VISIBLE_DEVICES=all`` (the classic bypass), see no accelerator node, no UUID, ``nvidia-smi`` finds
  nothing, and none of the node's GPU nodes opens (even after ``mknod``).
* ``one_request_one_device`` (T2, required): a pod with one accelerator sees exactly one; its UUID is recorded.
* ``distinct_devices_no_cross_access`` (T3, required): two such pods side by side on one node see distinct UUIDs and
  neither can open the other's device node. With fewer than two free accelerators on every node the two pods run
  on two nodes, labelled weaker (the devices cgroup of one node is then not what separates them).
* ``only_requesting_container`` (T4, required): in a pod with two containers, only the one with the request sees a
  device.
* ``visibility_matrix_diagonal`` (required): pods/containers x UUIDs: no row sees more than it was granted and no
  UUID is seen twice among rows that ran side by side.
* ``dra_isolation`` (required when it runs): T2-T4 again with ResourceClaims of ``dra_device_class`` when a DRA
  driver publishes devices for a node that runs processes; NOT_APPLICABLE (with the reason) otherwise, e.g. the
  sandbox's DRA driver, which publishes devices for kwok nodes only and has no kubelet plugin.

The probes' security context is less restrictive than the toolkit's other pods, on purpose: they run as root with
the container runtime's default capabilities (which include CAP_MKNOD), so that a refused ``open()`` is the
devices cgroup's doing, not file permissions', and so that a probe can *create* another accelerator's device node
by major:minor and show the cgroup still refuses it. They are never privileged, never escalate, add no capability,
mount no host path and keep the runtime's default seccomp profile: Pod Security "baseline" admits them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aiconf.accel import isolation as iso
from aiconf.checks.accelerator_metrics import (
    WORKLOAD_DIR,
    AccelNode,
    accelerator_nodes,
    free_accelerators,
    node_tolerations,
    quantity,
    wait_free_accelerators,
    workloads_configmap,
)
from aiconf.context import CheckContext
from aiconf.errors import WaitTimeout
from aiconf.model import SubCheck, Verdict
from aiconf.registry import check

END_MARKER = "AICONF-PROBE-END"
#: Runs the probe, prints the end marker, then holds the container (and its accelerator) until the check deletes
#: the pod: two pods of one test must hold their devices at the same time.
LAUNCHER = (
    "import subprocess, sys, time\n"
    f"rc = subprocess.call([sys.executable, '{WORKLOAD_DIR}/device_probe.py', *sys.argv[2:]])\n"
    f"print('{END_MARKER} rc=%d' % rc, flush=True)\n"
    "time.sleep(float(sys.argv[1]))\n"
)
#: Root with the runtime's default capabilities (CAP_MKNOD among them): see the module docstring for why.
#: Not restricted on purpose (runAsNonRoot, capabilities drop ALL): the probe must run as root with the runtime's
#: default capabilities so that the devices cgroup, not file modes or a missing CAP_MKNOD, is what refuses it.
PROBE_SECURITY_CONTEXT: dict[str, Any] = {
    "privileged": False,
    "allowPrivilegeEscalation": False,
    "runAsUser": 0,
    "runAsNonRoot": False,
    "readOnlyRootFilesystem": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}
#: The classic bypass: ask the NVIDIA runtime for every GPU through the environment, without a request.
ENV_ALL = {"NVIDIA_VISIBLE_DEVICES": "all", "NVIDIA_DRIVER_CAPABILITIES": "all"}
NVIDIA_MAJOR = 195
NVIDIACTL_MINOR = 255
PHASE_LABEL = "aiconf.io/probe-phase"
DRA_API = "resource.k8s.io/v1"
CLAIM_NAME = "accelerator"

SUBCHECKS = (
    "accelerator_nodes",
    "no_request_no_device",
    "one_request_one_device",
    "distinct_devices_no_cross_access",
    "only_requesting_container",
    "visibility_matrix_diagonal",
    "dra_isolation",
)
TESTS = (
    "no_request_no_device",
    "one_request_one_device",
    "distinct_devices_no_cross_access",
    "only_requesting_container",
    "visibility_matrix_diagonal",
)


# --- probes (pure) ---------------------------------------------------------------------------------------------------


@dataclass
class ProbeSpec:
    """One probed container: its row label in the matrix, where it runs and what it was granted."""

    label: str
    pod: str
    container: str
    node: str
    granted: int
    group: str
    env: dict[str, str] = field(default_factory=dict)
    claim: bool = False  #: granted through a ResourceClaim (DRA) rather than the extended resource


def nvidia_try_open(count: int) -> list[str]:
    """``--try-open`` targets: every GPU node of a node with ``count`` GPUs and ``/dev/nvidiactl``."""
    return [f"/dev/nvidia{i}={NVIDIA_MAJOR}:{i}" for i in range(max(2, count))] + [
        f"/dev/nvidiactl={NVIDIA_MAJOR}:{NVIDIACTL_MINOR}"
    ]


def node_gpu_count(node: AccelNode) -> int:
    return min(64, max(node.allocatable // max(1, node.replicas), quantity(node.labels.get("nvidia.com/gpu.count"))))


def probe_container(spec: ProbeSpec, p: Any, image: str, try_open: list[str], hold_s: int) -> dict[str, Any]:
    args = ["--label", spec.label]
    for t in try_open:
        args += ["--try-open", t]
    c: dict[str, Any] = {
        "name": spec.container,
        "image": image,
        "imagePullPolicy": p.image_pull_policy,
        "command": ["python3", "-c", LAUNCHER, str(hold_s), *args],
        "env": [{"name": k, "value": v} for k, v in spec.env.items()],
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "256Mi"}},
        "securityContext": dict(PROBE_SECURITY_CONTEXT),
        "volumeMounts": [
            {"name": "workloads", "mountPath": WORKLOAD_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    if spec.granted and not spec.claim:
        c["resources"]["limits"][p.gpu_resource_name] = str(spec.granted)
    if spec.claim:
        c["resources"]["claims"] = [{"name": CLAIM_NAME}]
    return c


def probe_pod(
    name: str,
    namespace: str,
    node: AccelNode,
    containers: list[dict[str, Any]],
    p: Any,
    *,
    phase: str,
    configmap: str,
    claim_template: str | None = None,
) -> dict[str, Any]:
    """A pod pinned to ``node`` (hostname selector, tolerating the node's taints), never restarted."""
    spec: dict[str, Any] = {
        "nodeSelector": {"kubernetes.io/hostname": node.name},
        "tolerations": node_tolerations(node, (p.gpu_taint_key,)),
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 1,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "containers": containers,
        "volumes": [{"name": "workloads", "configMap": {"name": configmap}}, {"name": "tmp", "emptyDir": {}}],
    }
    if p.runtime_class_name:
        spec["runtimeClassName"] = p.runtime_class_name
    if claim_template:
        spec["resourceClaims"] = [{"name": CLAIM_NAME, "resourceClaimTemplateName": claim_template}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {PHASE_LABEL: phase}},
        "spec": spec,
    }


def claim_template(name: str, namespace: str, device_class: str) -> dict[str, Any]:
    return {
        "apiVersion": DRA_API,
        "kind": "ResourceClaimTemplate",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "spec": {
                "devices": {
                    "requests": [
                        {
                            "name": CLAIM_NAME,
                            "exactly": {"deviceClassName": device_class, "allocationMode": "ExactCount", "count": 1},
                        }
                    ]
                }
            }
        },
    }


def parse_probe_log(text: str) -> dict[str, Any] | None:
    """The probe's JSON document from a container log (None until the end marker is there, or when it is not JSON)."""
    end = (text or "").rfind(END_MARKER)
    if end < 0:
        return None
    body = text[:end]
    start, stop = body.find("{"), body.rfind("}")
    if start < 0 or stop < start:
        return None
    try:
        doc = json.loads(body[start : stop + 1])
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


# --- plan (pure) -----------------------------------------------------------------------------------------------------


@dataclass
class Scenario:
    """One probed pod (one or two containers)."""

    pod: str
    node: str
    specs: list[ProbeSpec]


def plan_phases(
    node: AccelNode, free: int, other: AccelNode | None, *, dra: bool = False
) -> tuple[list[list[Scenario]], dict[str, str]]:
    """Phases of pods that can hold their accelerators at the same time, and the tests that cannot run (reason).

    Rows of one phase on one node form a matrix group (they ran side by side). With four free accelerators every
    test runs at once; with two, T1+T2+T4 then T3; with one, T1+T2, then T4, and T3 across two nodes when another
    node has a free accelerator.
    """
    pre = "dra-" if dra else ""
    grp = f"{'DRA ' if dra else ''}phase %d @ {node.name}"
    skipped: dict[str, str] = {}

    def t1(g: str) -> list[Scenario]:
        if dra:
            return []
        return [
            Scenario("t1-none", node.name, [ProbeSpec("t1-none", "t1-none", "probe", node.name, 0, g)]),
            Scenario(
                "t1-env-all",
                node.name,
                [ProbeSpec("t1-env-all", "t1-env-all", "probe", node.name, 0, g, dict(ENV_ALL))],
            ),
        ]

    def t2(g: str) -> list[Scenario]:
        return [
            Scenario(
                f"{pre}t2", node.name, [ProbeSpec(f"{pre}t2-gpu", f"{pre}t2", "probe", node.name, 1, g, claim=dra)]
            )
        ]

    def t4(g: str) -> list[Scenario]:
        return [
            Scenario(
                f"{pre}t4",
                node.name,
                [
                    ProbeSpec(f"{pre}t4-ctr-gpu", f"{pre}t4", "with-gpu", node.name, 1, g, claim=dra),
                    ProbeSpec(f"{pre}t4-ctr-nogpu", f"{pre}t4", "without-gpu", node.name, 0, g),
                ],
            )
        ]

    def t3(g: str, across: AccelNode | None = None) -> list[Scenario]:
        b_node = across.name if across else node.name
        return [
            Scenario(
                f"{pre}t3-pod-a",
                node.name,
                [ProbeSpec(f"{pre}t3-pod-a", f"{pre}t3-pod-a", "probe", node.name, 1, g, claim=dra)],
            ),
            Scenario(
                f"{pre}t3-pod-b",
                b_node,
                [ProbeSpec(f"{pre}t3-pod-b", f"{pre}t3-pod-b", "probe", b_node, 1, g, claim=dra)],
            ),
        ]

    if free >= 4:
        return [t1(grp % 1) + t2(grp % 1) + t4(grp % 1) + t3(grp % 1)], skipped
    if free >= 2:
        return [t1(grp % 1) + t2(grp % 1) + t4(grp % 1), t3(grp % 2)], skipped
    if free == 1:
        phases = [t1(grp % 1) + t2(grp % 1), t4(grp % 2)]
        if other is not None:
            phases.append(t3(f"{'DRA ' if dra else ''}T3 across {node.name} and {other.name}", other))
        else:
            skipped["distinct_devices_no_cross_access"] = (
                f"no node has two free accelerators and no second node has one ({node.name}: 1 free): two pods with a "
                "device each cannot run at the same time"
            )
        return phases, skipped
    why = f"no free accelerator on {node.name}"
    for sub in ("one_request_one_device", "distinct_devices_no_cross_access", "only_requesting_container"):
        skipped[sub] = why
    return ([t1(grp % 1)] if not dra else []), skipped


def dra_target(
    device_class: dict[str, Any] | None,
    slices: list[dict[str, Any]],
    nodes: dict[str, AccelNode | dict],
    class_name: str,
    simulated: set[str],
) -> tuple[str | None, str]:
    """The node a DRA mode runs on, or None and why not (no class, no devices, devices only on simulated nodes)."""
    from aiconf.checks.dra_support import class_driver, slice_devices

    if device_class is None:
        return None, f"DeviceClass {class_name} does not exist (no DRA driver for accelerators is configured)"
    driver = class_driver(device_class)
    mine = [s for s in slices if not driver or (s.get("spec") or {}).get("driver") == driver]
    per_node: dict[str, int] = {}
    for s in mine:
        n = (s.get("spec") or {}).get("nodeName")
        if n:
            per_node[n] = per_node.get(n, 0) + len(slice_devices(s))
    who = f"driver {driver}" if driver else f"DeviceClass {class_name}"
    if not per_node:
        return None, f"the {who} publishes no node-local devices (no ResourceSlice with a nodeName)"
    real = {n: c for n, c in per_node.items() if n not in simulated and c > 0}
    if not real:
        return None, (
            f"the {who} publishes devices only for simulated (kwok) nodes ({', '.join(sorted(per_node))}): no "
            "kubelet plugin prepares them, so no container can receive one"
        )
    return max(real, key=lambda n: real[n]), f"{who}: {real} devices on nodes that run processes"


# --- judging (pure) --------------------------------------------------------------------------------------------------


def test_of(label: str) -> str:
    """The sub-check a probe row belongs to (``t1-none`` -> ``no_request_no_device``)."""
    name = label.removeprefix("dra-")
    for prefix, sub in (
        ("t1", "no_request_no_device"),
        ("t2", "one_request_one_device"),
        ("t3", "distinct_devices_no_cross_access"),
        ("t4", "only_requesting_container"),
    ):
        if name.startswith(prefix):
            return sub
    return "visibility_matrix_diagonal"


def judge_all(
    probes: dict[str, iso.Probe],
    specs: list[ProbeSpec],
    skipped: dict[str, str],
    *,
    dra: bool = False,
    t3_same_node: bool = True,
    problems: dict[str, str] | None = None,
) -> tuple[dict[str, SubCheck], iso.VisibilityMatrix]:
    """T1-T4 and the matrix from the probes that ran. A test whose probes are missing is UNKNOWN, with the reason:
    ``skipped`` (sub-check id -> why it was not planned) or ``problems`` (probe label -> why it gave no result)."""
    pre = "dra-" if dra else ""
    skipped = dict(skipped)
    for label, why in (problems or {}).items():
        skipped.setdefault(test_of(label), f"{label}: {why}")
    get = probes.get
    subs: dict[str, SubCheck] = {}
    if not dra:
        t1 = [get(x) for x in ("t1-none", "t1-env-all") if get(x)]
        subs["no_request_no_device"] = iso.judge_no_request(t1)
    subs["one_request_one_device"] = iso.judge_single_request(get(f"{pre}t2-gpu"))
    subs["distinct_devices_no_cross_access"] = iso.judge_cross_pod(
        get(f"{pre}t3-pod-a"), get(f"{pre}t3-pod-b"), same_node=t3_same_node
    )
    subs["only_requesting_container"] = iso.judge_multi_container(get(f"{pre}t4-ctr-gpu"), get(f"{pre}t4-ctr-nogpu"))
    for sub_id, why in skipped.items():
        if sub_id in subs and subs[sub_id].verdict is Verdict.UNKNOWN:
            subs[sub_id].summary = f"{subs[sub_id].summary}: {why}"
    ran = [s for s in specs if s.label in probes]
    matrix = iso.build_visibility_matrix(
        [probes[s.label] for s in ran], {s.label: s.granted for s in ran}, {s.label: s.group for s in ran}
    )
    subs["visibility_matrix_diagonal"] = iso.judge_matrix(matrix)
    return subs, matrix


def combine_dra(subs: dict[str, SubCheck]) -> SubCheck:
    """``dra_isolation``: the worst of the DRA run's T2, T3, T4 and matrix."""
    order = {Verdict.FAIL: 3, Verdict.UNKNOWN: 2, Verdict.PASS: 1}
    worst = max(subs.values(), key=lambda s: order.get(s.verdict, 2)).verdict
    short = {
        "one_request_one_device": "T2",
        "distinct_devices_no_cross_access": "T3",
        "only_requesting_container": "T4",
        "visibility_matrix_diagonal": "matrix",
    }
    return SubCheck(
        "dra_isolation",
        worst,
        "; ".join(f"{short.get(k, k)} {s.verdict}: {s.summary}" for k, s in subs.items()),
        expected="T2-T4 and a diagonal matrix with ResourceClaims",
        observed="; ".join(s.observed for s in subs.values())[:2000],
        details={k: {"verdict": str(s.verdict), "summary": s.summary} for k, s in subs.items()},
    )


# --- charts ----------------------------------------------------------------------------------------------------------


def draw_visibility(ax: Any, result: Any) -> None:
    d = dict(result.metrics.get("visibility_matrix") or {})
    d.pop("is_diagonal", None)
    if not d:
        ax.text(0.5, 0.5, "no probe ran", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    d["bad_cells"] = [tuple(x) for x in d.get("bad_cells") or []]
    iso.draw_visibility_matrix(ax, iso.VisibilityMatrix(**d))


# --- preflight -------------------------------------------------------------------------------------------------------


def preflight(kube: Any, params: Any) -> tuple[bool, str]:
    """Read-only: an accelerator node that runs processes, and how many free accelerators it has."""
    nodes = accelerator_nodes(kube.list("v1", "Node"), params.gpu_resource_name)
    if not nodes:
        return False, f"no node advertises {params.gpu_resource_name}"
    real = [n for n in nodes if not n.simulated]
    if not real:
        return False, f"all {len(nodes)} accelerator nodes are simulated (kwok): probes cannot run there"
    pods = kube.list("v1", "Pod")
    free = {n.name: free_accelerators(n, pods, params.gpu_resource_name) for n in real}
    best = max(free, key=lambda k: free[k])
    return free[best] >= 1, f"{best}: {free[best]} free accelerator(s)" + (
        "" if free[best] >= 2 else " (T3 needs two: it runs across nodes or not at all)"
    )


# --- the check -------------------------------------------------------------------------------------------------------


@check(
    "secure_accelerator_access", subchecks=SUBCHECKS, charts={"visibility_matrix": draw_visibility}, preflight=preflight
)
def run(ctx: CheckContext) -> None:
    p = ctx.params
    with ctx.step("find accelerator nodes"):
        nodes = accelerator_nodes(ctx.kube.list("v1", "Node"), p.gpu_resource_name)
        real = [n for n in nodes if not n.simulated and n.ready]
        simulated = [n for n in nodes if n.simulated]
        by_name = {n.name: n for n in nodes}
        for n in nodes:
            ctx.series("nodes").add(
                node=n.name,
                simulated=n.simulated,
                ready=n.ready,
                allocatable=n.allocatable,
                probed=False,
                reason="simulated (kwok): runs no processes" if n.simulated else "",
            )
        if simulated:
            ctx.note(
                f"{len(simulated)} simulated (kwok) accelerator node(s) skipped: they run no processes, so no probe "
                f"can run there ({', '.join(n.name for n in simulated)})"
            )
        if not nodes:
            why = f"no node advertises {p.gpu_resource_name}: the cluster offers no accelerators to isolate"
            ctx.not_applicable("no_accelerators", why)
            for sub in SUBCHECKS:
                ctx.record(sub, Verdict.NOT_APPLICABLE, why, required=sub != "accelerator_nodes")
            return
        if p.accelerator_vendor != "nvidia":
            _all_unknown(
                ctx,
                f"no device probe is configured for accelerator vendor {p.accelerator_vendor!r} "
                "(the probe's device paths and listing command are NVIDIA's): attach manual evidence",
            )
            return
        if p.secure_access_node:
            chosen = by_name.get(p.secure_access_node)
            if chosen is None or chosen.simulated:
                _all_unknown(
                    ctx, f"secure_access_node {p.secure_access_node!r} is not an accelerator node that runs processes"
                )
                return
        elif not real:
            _all_unknown(
                ctx,
                f"all {len(nodes)} accelerator nodes are simulated (kwok): no probe can run, so isolation "
                "cannot be demonstrated here",
            )
            return
        pods = ctx.kube.list("v1", "Pod")
        free = {n.name: free_accelerators(n, pods, p.gpu_resource_name) for n in real}
        # A time-sliced node (GFD's nvidia.com/gpu.replicas > 1) hands one GPU to several pods by its declared
        # policy: unshared nodes are preferred, and on a shared one no two device-holding probes run side by side.
        chosen = (
            by_name[p.secure_access_node]
            if p.secure_access_node
            else max(real, key=lambda n: (n.replicas <= 1, free[n.name], n.name))
        )
        shared = chosen.replicas > 1
        if free.get(chosen.name, 0) < 2 <= chosen.allocatable and not shared:
            free[chosen.name] = wait_free_accelerators(ctx.kube, chosen, 2, p)
        others = [n for n in real if n.name != chosen.name and free.get(n.name, 0) >= 1 and n.replicas <= 1]
        other = max(others, key=lambda n: free[n.name]) if others else None
        phases, skipped = plan_phases(chosen, min(free.get(chosen.name, 0), 1) if shared else free.get(chosen.name, 0),
                                      other)
        if shared:
            ctx.note(
                f"{chosen.name} is time-sliced (nvidia.com/gpu.replicas={chosen.replicas}): pods there may share a GPU "
                "by the node's declared policy, so the probes holding a device ran one at a time and two pods on it "
                "were not required to see distinct GPUs"
            )
            if "distinct_devices_no_cross_access" in skipped:
                skipped["distinct_devices_no_cross_access"] = (
                    f"{chosen.name} is time-sliced (replicas={chosen.replicas}) and no unshared node has a free "
                    "accelerator to pair it with: distinct assignment cannot be demanded here (name an unshared "
                    "node in secure_access_node to show it)"
                )
        used = sorted({sc.node for ph in phases for sc in ph})
        ctx.record(
            "accelerator_nodes",
            Verdict.PASS,
            f"probes on {', '.join(used)} ({free.get(chosen.name, 0)} free accelerator(s) on {chosen.name})"
            + (f"; {len(simulated)} simulated node(s) skipped" if simulated else ""),
            expected="an accelerator node that runs processes",
            observed=", ".join(f"{n.name}: {n.allocatable} ({'simulated' if n.simulated else 'real'})" for n in nodes),
            required=False,
            free=free,
            chosen=chosen.name,
        )
        ctx.series("nodes").rows = [{**r, "probed": r["node"] in used} for r in ctx.series("nodes").rows]

    ns = ctx.namespace()
    ctx.note(
        "probe pods run as root with the container runtime's default capabilities (containerd's include "
        "CAP_MKNOD), unprivileged, without privilege escalation, added capabilities or host paths, read-only root "
        "file system, seccomp RuntimeDefault (Pod Security baseline): root so file modes never hide a "
        "devices-cgroup leak, CAP_MKNOD so a probe can create another accelerator's node and show the cgroup "
        "still refuses it"
    )
    cm = ctx.create(workloads_configmap("aiconf-device-probe", ns, ("device_probe.py",)))["metadata"]["name"]
    hold_s = int(p.pod_start_timeout_s + p.secure_access_probe_timeout_s + 120)

    probes: dict[str, iso.Probe] = {}
    specs: list[ProbeSpec] = []
    problems: dict[str, str] = {}
    for i, phase in enumerate(phases, 1):
        with ctx.step(f"probe phase {i}: {', '.join(sc.pod for sc in phase)}"):
            specs += [s for sc in phase for s in sc.specs]
            _run_phase(ctx, ns, f"p{i}", phase, by_name, cm, hold_s, probes, problems)
    for label, why in problems.items():
        ctx.note(f"probe {label} produced no result: {why}")

    with ctx.step("judge the probes"):
        t3_same = not any(sc.node != chosen.name for ph in phases for sc in ph if "t3" in sc.pod)
        subs, matrix = judge_all(probes, specs, skipped, t3_same_node=t3_same, problems=problems)
        for sub_id in TESTS:
            s = subs[sub_id]
            ctx.record(
                sub_id,
                s.verdict,
                s.summary,
                expected=s.expected,
                observed=s.observed,
                **{
                    ("detail_" + k if k in ("verdict", "summary", "expected", "observed", "required") else k): v
                    for k, v in s.details.items()
                },
            )
        if not t3_same:
            ctx.note("T3 ran across two nodes (no node had two free accelerators): weaker than two pods on one node")
        if not any(pr.cap_mknod for pr in probes.values()):
            ctx.note(
                "no probe held CAP_MKNOD (the runtime's default set lacks it): cross-access was tried only on "
                "device nodes that already existed in the container"
            )
        if all(subs[s].verdict is Verdict.PASS for s in TESTS):
            ctx.proves(
                f"on {', '.join(used)}, containers without a request saw and opened no accelerator, also with "
                "NVIDIA_VISIBLE_DEVICES=all set; a container granted one accelerator saw exactly one",
                "two pods granted one accelerator each saw distinct UUIDs and the devices cgroup refused each the other's "
                "device node, even a node created with mknod",
                "in a pod with two containers only the one with the request saw the accelerator",
            )

    dra_sub = run_dra(ctx, ns, nodes, cm, hold_s, probes, specs)
    matrix = iso.build_visibility_matrix(
        [probes[s.label] for s in specs if s.label in probes],
        {s.label: s.granted for s in specs},
        {s.label: s.group for s in specs},
    )
    ctx.metric("visibility_matrix", matrix.to_dict())
    _save(ctx, probes, specs, matrix, {**subs, **({"dra_isolation": dra_sub} if dra_sub else {})})
    ctx.does_not_prove(
        "that accelerator memory is cleared between tenants (no data is written and read back)",
        "isolation on accelerator nodes of other types or with other runtime configurations than the one probed",
    )


def _all_unknown(ctx: CheckContext, why: str) -> None:
    for sub in SUBCHECKS:
        if sub == "dra_isolation":
            ctx.record(sub, Verdict.UNKNOWN, why)
        else:
            ctx.record(sub, Verdict.UNKNOWN, why, required=sub != "accelerator_nodes")


def _container_started(pod: dict[str, Any]) -> bool:
    st = pod.get("status") or {}
    if st.get("phase") in ("Succeeded", "Failed"):
        return True
    statuses = st.get("containerStatuses") or []
    n = len((pod.get("spec") or {}).get("containers") or [])
    return (
        st.get("phase") == "Running"
        and len(statuses) == n
        and all("running" in (c.get("state") or {}) or "terminated" in (c.get("state") or {}) for c in statuses)
    )


def _container_terminated(pod: dict[str, Any] | None, container: str) -> bool:
    for c in ((pod or {}).get("status") or {}).get("containerStatuses") or []:
        if c.get("name") == container and "terminated" in (c.get("state") or {}):
            return True
    return pod is None


def _pod_state(pod: dict[str, Any] | None) -> str:
    if pod is None:
        return "absent"
    st = pod.get("status") or {}
    bits = [st.get("phase", "?")]
    for c in st.get("conditions") or []:
        if c.get("status") == "False" and c.get("message"):
            bits.append(f"{c.get('type')}: {c.get('message')}")
    for c in st.get("containerStatuses") or []:
        waiting = (c.get("state") or {}).get("waiting")
        if waiting:
            bits.append(f"{c.get('name')}: {waiting.get('reason')} {waiting.get('message', '')}".strip())
    return "; ".join(bits)[:300]


def _run_phase(
    ctx: CheckContext,
    ns: str,
    phase_id: str,
    phase: list[Scenario],
    nodes: dict[str, AccelNode],
    cm: str,
    hold_s: int,
    probes: dict[str, iso.Probe],
    problems: dict[str, str],
    claim_template_name: str | None = None,
) -> None:
    """Create the phase's pods, read every probe from the logs, delete the pods (their accelerators are freed)."""
    p = ctx.params
    image = p.secure_access_probe_image or p.image_python
    names = []
    for sc in phase:
        node = nodes[sc.node]
        try_open = nvidia_try_open(node_gpu_count(node))
        containers = [probe_container(s, p, image, try_open, hold_s) for s in sc.specs]
        uses_claim = any(s.claim for s in sc.specs)
        ctx.create(
            probe_pod(
                sc.pod,
                ns,
                node,
                containers,
                p,
                phase=phase_id,
                configmap=cm,
                claim_template=claim_template_name if uses_claim else None,
            )
        )
        names.append(sc.pod)
    selector = f"{PHASE_LABEL}={phase_id}"
    try:
        pods = ctx.kube.wait_until(
            "v1",
            "Pod",
            ns,
            lambda objs: len(objs) == len(names) and all(_container_started(o) for o in objs),
            p.pod_start_timeout_s,
            f"probe pods {', '.join(names)} to start",
            label_selector=selector,
            describe=lambda objs: "; ".join(f"{o['metadata']['name']}: {_pod_state(o)}" for o in objs),
        )
    except WaitTimeout:
        pods = ctx.kube.list("v1", "Pod", ns, label_selector=selector)
    by_pod = {o["metadata"]["name"]: o for o in pods}
    for sc in phase:
        pod = by_pod.get(sc.pod)
        if pod is None or not _container_started(pod):
            for s in sc.specs:
                problems[s.label] = f"pod {sc.pod} did not start within {p.pod_start_timeout_s}s ({_pod_state(pod)})"
            continue
        for s in sc.specs:

            def read(s: ProbeSpec = s, sc: Scenario = sc) -> tuple[str, bool]:
                text = ctx.kube.pod_logs(sc.pod, ns, container=s.container, tail_lines=2000)
                if END_MARKER in text:
                    return text, True
                return text, _container_terminated(ctx.kube.get("v1", "Pod", sc.pod, ns), s.container)

            try:
                text, _ = ctx.kube.sample(
                    read, 1.0, lambda r: r[1], p.secure_access_probe_timeout_s, f"the probe output of {s.label}"
                )
            except WaitTimeout as e:
                problems[s.label] = f"no probe output within {p.secure_access_probe_timeout_s}s: {e.last_seen[-200:]}"
                continue
            doc = parse_probe_log(text)
            if doc is None:
                problems[s.label] = f"the log holds no probe document: {text.strip()[-200:]}"
                continue
            probes[s.label] = iso.load_probe(doc, s.label)
    for name in names:
        ctx.kube.delete("v1", "Pod", name, ns)
    ctx.kube.wait_until(
        "v1",
        "Pod",
        ns,
        lambda objs: not objs,
        p.cleanup_timeout_s,
        f"probe pods of {phase_id} to be gone (their accelerators freed)",
        label_selector=selector,
    )


def _save(
    ctx: CheckContext,
    probes: dict[str, iso.Probe],
    specs: list[ProbeSpec],
    matrix: iso.VisibilityMatrix,
    subs: dict[str, SubCheck],
) -> None:
    for label, pr in probes.items():
        ctx.save_evidence(f"probes/{label}.json", json.dumps(pr.raw, indent=1) + "\n")
    ctx.save_evidence(
        "isolation.yaml",
        {
            "rows": [
                {
                    "label": s.label,
                    "pod": s.pod,
                    "container": s.container,
                    "node": s.node,
                    "granted": s.granted,
                    "group": s.group,
                    "env": s.env,
                    "via": "ResourceClaim" if s.claim else "extended resource",
                    "ran": s.label in probes,
                }
                for s in specs
            ],
            "matrix": matrix.to_dict(),
            "verdicts": {k: {"verdict": str(v.verdict), "summary": v.summary} for k, v in subs.items()},
        },
    )
    for s in specs:
        pr = probes.get(s.label)
        ctx.series("probes").add(
            label=s.label,
            pod=s.pod,
            container=s.container,
            node=s.node,
            granted=s.granted,
            group=s.group,
            env=",".join(f"{k}={v}" for k, v in s.env.items()),
            ran=pr is not None,
            nodes=" ".join(pr.gpu_nodes) if pr else "",
            uuids=" ".join(pr.uuids) if pr else "",
            smi=("absent" if not pr.smi_found else f"rc {pr.smi_rc}") if pr else "",
            opened=" ".join(pr.reached()) if pr else "",
            refused=" ".join(
                f"{a['path']}:{(a.get('open') or {}).get('errno')}"
                for a in pr.open_attempts
                if not (a.get("open") or {}).get("ok") and a["path"] not in pr.reached()
            )
            if pr
            else "",
        )


def run_dra(
    ctx: CheckContext,
    ns: str,
    nodes: list[AccelNode],
    cm: str,
    hold_s: int,
    probes: dict[str, iso.Probe],
    specs: list[ProbeSpec],
) -> SubCheck | None:
    """DRA mode: T2-T4 with ResourceClaims when a DRA driver serves accelerators on a node that runs processes."""
    p = ctx.params
    with ctx.step("look for a DRA accelerator driver"):
        if p.secure_access_dra == "off":
            return ctx.record("dra_isolation", Verdict.NOT_APPLICABLE, "DRA mode disabled (secure_access_dra: off)")
        if "v1" not in ctx.kube.served_versions("resource.k8s.io"):
            return ctx.record(
                "dra_isolation",
                Verdict.NOT_APPLICABLE,
                "resource.k8s.io/v1 is not served: accelerators are granted through the device plugin only",
            )
        dc = ctx.kube.get(DRA_API, "DeviceClass", p.dra_device_class)
        slices = ctx.kube.list(DRA_API, "ResourceSlice")
        all_nodes = {n["metadata"]["name"]: n for n in ctx.kube.list("v1", "Node")}
        from aiconf.facts import is_simulated

        simulated = {n for n, obj in all_nodes.items() if is_simulated(obj)}
        target, why = dra_target(dc, slices, all_nodes, p.dra_device_class, simulated)
        ctx.metric("dra_mode", {"node": target, "reason": why})
        if target is None:
            return ctx.record(
                "dra_isolation",
                Verdict.NOT_APPLICABLE,
                why,
                expected="a DRA driver preparing devices on a node that runs processes",
                observed=why,
            )
    node_obj = all_nodes[target]
    node = next((n for n in nodes if n.name == target), None) or AccelNode(
        target,
        0,
        False,
        taints=list((node_obj.get("spec") or {}).get("taints") or []),
        labels=dict(node_obj["metadata"].get("labels") or {}),
    )
    ctx.create(claim_template("one-accelerator", ns, p.dra_device_class))
    # Free devices are unknown up front (claims of other tenants): two at a time, as with two free accelerators.
    phases, skipped = plan_phases(node, 2, None, dra=True)
    dra_specs: list[ProbeSpec] = []
    problems: dict[str, str] = {}
    for i, phase in enumerate(phases, 1):
        with ctx.step(f"DRA probe phase {i}: {', '.join(sc.pod for sc in phase)}"):
            dra_specs += [s for sc in phase for s in sc.specs]
            _run_phase(
                ctx,
                ns,
                f"dra{i}",
                phase,
                {node.name: node},
                cm,
                hold_s,
                probes,
                problems,
                claim_template_name="one-accelerator",
            )
    specs += dra_specs
    subs, _ = judge_all(probes, dra_specs, skipped, dra=True, problems=problems)
    sub = combine_dra(subs)
    ctx.record("dra_isolation", sub.verdict, sub.summary, expected=sub.expected, observed=sub.observed, **sub.details)
    if sub.verdict is Verdict.PASS:
        ctx.proves(
            f"with ResourceClaims of {p.dra_device_class} on {target}, containers saw exactly the device "
            "allocated to them and not the other pod's"
        )
    return sub
