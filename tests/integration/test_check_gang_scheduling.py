"""gang_scheduling end to end against the sandbox (needs the ``kueue`` add-on), and against broken clusters: a gang
scheduler that is not installed, the check's ClusterQueue deleted mid-way, Kueue frozen. A broken cluster must never
PASS, and the reason must say why. Everything the check creates must be gone afterwards.
"""

from __future__ import annotations

import os
import signal
import threading
import uuid

import pytest

from aiconf.execute import run_check
from aiconf.kube import Kube
from aiconf.model import Verdict
from aiconf.params import load_parameters

pytestmark = pytest.mark.sandbox

#: Sandbox pods must stay on kwok nodes (a real node could not pull the images).
KWOK_ONLY = "type=kwok"


@pytest.fixture(scope="module")
def kube(kube_sandbox) -> Kube:
    return Kube.connect(str(kube_sandbox.kubeconfig))


def params(kube_sandbox, **overrides):
    return load_parameters("sandbox", {"kubeconfig": str(kube_sandbox.kubeconfig), "gang_node_selector": KWOK_ONLY,
                                       **overrides})


def require_kueue(kube: Kube) -> None:
    if not kube.has_kind("kueue.x-k8s.io/v1beta2", "ClusterQueue"):
        pytest.skip("Kueue is not running in this cluster (start the sandbox with AICONF_TEST_SANDBOX_ADDONS=kuberay,kueue)")


def run_id() -> str:
    return f"itest-gang-{uuid.uuid4().hex[:6]}"


def assert_cleaned_up(kube: Kube, rid: str) -> None:
    assert kube.list("v1", "Namespace", label_selector=f"aiconf.io/run-id={rid}") == []
    for kind in ("ClusterQueue", "ResourceFlavor"):
        # Deleted at cleanup without waiting; Kueue drops its finalizers within moments.
        kube.wait_until("kueue.x-k8s.io/v1beta2", kind, None, lambda objs: not objs, 60, f"{kind} of run {rid} gone",
                        label_selector=f"aiconf.io/run-id={rid}")


def test_gang_scheduling_passes_with_kueue(kube_sandbox, kube, tmp_path):
    require_kueue(kube)
    rid = run_id()
    result = run_check("gang_scheduling", params(kube_sandbox), run_id=rid, run_dir=tmp_path)
    assert result.verdict is Verdict.PASS, (result.reason, [(s.id, s.verdict, s.summary) for s in result.subchecks])
    subs = {s.id: s for s in result.subchecks}
    assert "Kueue" in subs["scheduler_detected"].summary and "activated ClusterQueue" in subs["scheduler_detected"].summary
    n = result.metrics["gang_size"]
    assert n >= 2
    assert subs["gang_admitted_together"].summary.startswith(f"all {n} pods Running at the same time")
    assert "no pod was even created" in subs["no_partial_admission"].summary
    assert f"all {n + 1} pods Running at the same time" in subs["admitted_after_release"].summary
    assert result.metrics["gang_uses_accelerators"] is True  # the sandbox has 16 free simulated GPUs
    assert any("simulated (kwok" in note for note in result.notes)
    pods = subs["gang_admitted_together"].details["pods"]
    assert len(pods) == n and all(p["created_at"] and p["scheduled_at"] and p["started_at"] for p in pods)
    assert result.metrics["positive_observed_start_skew_s"] is not None
    evidence = set(result.evidence)
    for name in ("pod_timeline.csv", "running_pods.csv", "positive-gang.yaml", "negative-gang-held.yaml",
                 "negative-gang-released.yaml", "cluster-objects.yaml"):
        assert f"evidence/gang_scheduling/{name}" in evidence, name
    assert any(e.endswith("/events.txt") for e in evidence)
    held = (tmp_path / "evidence" / "gang_scheduling" / "negative-gang-held.yaml").read_text()
    assert "suspend: true" in held and "QuotaReserved" in held
    assert_cleaned_up(kube, rid)


def test_gang_scheduler_that_is_not_installed_fails(kube_sandbox, kube, tmp_path):
    if kube.served_versions("scheduling.volcano.sh"):
        pytest.skip("Volcano is installed here")
    rid = run_id()
    result = run_check("gang_scheduling", params(kube_sandbox, gang_scheduler="volcano"), run_id=rid, run_dir=tmp_path)
    assert kube.list("v1", "Namespace", label_selector=f"aiconf.io/run-id={rid}") == []
    assert result.verdict is Verdict.FAIL
    assert result.reason == "failed: scheduler_detected"
    assert "Volcano requested (gang_scheduler=volcano) but its API scheduling.volcano.sh is not served" in \
        result.subcheck("scheduler_detected").summary


def test_no_gang_scheduler_at_all_fails(kube_sandbox, kube, tmp_path):
    if any(kube.served_versions(g) for g in ("kueue.x-k8s.io", "scheduling.volcano.sh", "scheduling.run.ai",
                                             "scheduling.x-k8s.io")):
        pytest.skip("a gang scheduler is installed here")
    result = run_check("gang_scheduling", params(kube_sandbox), run_id=run_id(), run_dir=tmp_path)
    assert result.verdict is Verdict.FAIL
    assert "no gang scheduling solution found" in result.subcheck("scheduler_detected").summary


def test_cluster_queue_deleted_midway_is_not_pass(kube_sandbox, kube, tmp_path):
    """The check's ClusterQueue vanishes when the oversized gang is submitted: nothing runs during the hold (that
    part still looks fine), but the gang never runs either - the release sub-check must catch it."""
    require_kueue(kube)
    rid = run_id()
    deleted: list[str] = []

    def delete_queue_when_the_big_gang_appears() -> None:
        kube.wait_until("batch/v1", "Job", None, lambda jobs: bool(jobs), 240, "the oversized gang's Job",
                        label_selector=f"aiconf.io/run-id={rid},aiconf.io/gang=negative")
        for cq in kube.list("kueue.x-k8s.io/v1beta2", "ClusterQueue", label_selector=f"aiconf.io/run-id={rid}"):
            kube.delete("kueue.x-k8s.io/v1beta2", "ClusterQueue", cq["metadata"]["name"])
            deleted.append(cq["metadata"]["name"])

    saboteur = threading.Thread(target=delete_queue_when_the_big_gang_appears, daemon=True)
    saboteur.start()
    result = run_check("gang_scheduling", params(kube_sandbox, gang_negative_hold_s=5, gang_timeout_s=45, gang_pod_run_s=3),
                       run_id=rid, run_dir=tmp_path)
    saboteur.join(5)
    assert deleted, "the ClusterQueue was never deleted (the test did not exercise anything)"
    assert result.verdict is Verdict.FAIL, result.reason
    assert "admitted_after_release" in result.reason
    release = result.subcheck("admitted_after_release")
    assert release.verdict is Verdict.FAIL
    assert "no longer exists" in release.summary or "never admitted" in release.summary
    assert result.subcheck("gang_admitted_together").verdict is Verdict.PASS
    assert_cleaned_up(kube, rid)


def _kueue_pid(kube_sandbox) -> int:
    sb = kube_sandbox.sandbox
    if sb is None:
        pytest.skip("needs the sandbox this test session started (its Kueue process), not an external cluster")
    proc = (sb.status().get("processes") or {}).get("kueue")
    if not proc or not proc.get("alive"):
        pytest.skip("Kueue is not running in this sandbox")
    return int(proc["pid"])


def test_kueue_frozen_is_not_pass(kube_sandbox, kube, tmp_path):
    """Kueue's process is stopped (SIGSTOP): its fail-closed webhook cannot answer, so Kueue is not working."""
    require_kueue(kube)
    pid = _kueue_pid(kube_sandbox)
    rid = run_id()
    os.killpg(pid, signal.SIGSTOP)
    try:
        result = run_check("gang_scheduling", params(kube_sandbox, api_retries=0), run_id=rid, run_dir=tmp_path)
    finally:
        os.killpg(pid, signal.SIGCONT)
    assert kube.list("v1", "Namespace", label_selector=f"aiconf.io/run-id={rid}") == []
    assert result.verdict is Verdict.FAIL
    detected = result.subcheck("scheduler_detected")
    assert detected.verdict is Verdict.FAIL
    assert "not working" in detected.summary and "does not answer" in detected.summary
    for sub in ("gang_admitted_together", "no_partial_admission", "admitted_after_release"):
        assert result.subcheck(sub).verdict is Verdict.UNKNOWN
