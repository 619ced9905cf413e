"""robust_controller end to end against the sandbox (needs the ``kuberay`` add-on), and against broken clusters: the
operator's webhook configuration deleted, and the webhook fail-open (failurePolicy Ignore) with its endpoint down.
Both leave the configuration looking plausible to a presence check; the invalid RayCluster is then accepted and the
check must not PASS. The webhook configuration is restored after each broken test.
"""

from __future__ import annotations

import copy
import re
import time
import uuid
from collections.abc import Iterator

import pytest

from aiconf.checks import robust_controller as rc
from aiconf.execute import run_check
from aiconf.kube import Kube
from aiconf.model import Verdict
from aiconf.params import load_parameters

pytestmark = pytest.mark.sandbox

ADMISSION = "admissionregistration.k8s.io/v1"
KWOK_ONLY = "type=kwok"  # the RayCluster's pods stay on kwok nodes (a real node could not pull the Ray image)


@pytest.fixture(scope="module")
def kube(kube_sandbox) -> Kube:
    return Kube.connect(str(kube_sandbox.kubeconfig))


def params(kube_sandbox, **overrides):
    return load_parameters("sandbox", {"kubeconfig": str(kube_sandbox.kubeconfig), "operator_node_selector": KWOK_ONLY,
                                       **overrides})


def run_id() -> str:
    return f"itest-rc-{uuid.uuid4().hex[:6]}"


def operator_webhook_configuration(kube: Kube) -> dict:
    """KubeRay's ValidatingWebhookConfiguration (the one whose webhooks the kuberay profile calls its own)."""
    if not kube.has_kind("ray.io/v1", "RayCluster"):
        pytest.skip("KubeRay is not running in this cluster (start the sandbox with AICONF_TEST_SANDBOX_ADDONS=kuberay,kueue)")
    for cfg in kube.list(ADMISSION, "ValidatingWebhookConfiguration"):
        if re.search(rc.kuberay_profile(params_defaults()).webhook_match, cfg["metadata"]["name"]):
            return cfg
    pytest.skip("KubeRay runs without its validating webhook here")


def params_defaults():
    return load_parameters()


def invalid_is_denied(kube: Kube, ns: str = "default") -> bool:
    prof = rc.kuberay_profile(params_defaults())
    admission, _ = rc.submit(kube, rc.instantiate(prof.invalid_cr, "aiconf-itest-probe", ns), dry_run=True)
    return admission.outcome is rc.AdmissionOutcome.WEBHOOK_DENIED


def wait_for(what: str, probe, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout_s:g}s waiting for {what}")


@pytest.fixture
def restore_webhook(kube) -> Iterator[dict]:
    """Hand the test KubeRay's webhook configuration; put the original back afterwards and wait until it denies again."""
    original = operator_webhook_configuration(kube)
    name = original["metadata"]["name"]
    yield copy.deepcopy(original)
    current = kube.get(ADMISSION, "ValidatingWebhookConfiguration", name)
    clean = {"apiVersion": ADMISSION, "kind": "ValidatingWebhookConfiguration",
             "metadata": {"name": name, "labels": original["metadata"].get("labels") or {}},
             "webhooks": original["webhooks"]}
    if current is None:
        kube.create(clean)
    else:
        kube.patch(ADMISSION, "ValidatingWebhookConfiguration", name, {"webhooks": original["webhooks"]})
    # The API server picks webhook configurations up through an informer: wait until the refusal is back.
    wait_for("KubeRay's webhook to refuse the invalid RayCluster again", lambda: invalid_is_denied(kube))


def assert_cleaned_up(kube: Kube, rid: str) -> None:
    assert kube.list("v1", "Namespace", label_selector=f"aiconf.io/run-id={rid}") == []


def test_robust_controller_passes_with_kuberay(kube_sandbox, kube, tmp_path):
    operator_webhook_configuration(kube)
    rid = run_id()
    result = run_check("robust_controller", params(kube_sandbox), run_id=rid, run_dir=tmp_path)
    assert result.verdict is Verdict.PASS, (result.reason, [(s.id, s.verdict, s.summary) for s in result.subchecks])
    subs = {s.id: s for s in result.subchecks}
    assert subs["invalid_cr_rejected_by_webhook"].details["outcome"] == "webhook_denied"
    assert "worker group names must be unique" in subs["invalid_cr_rejected_by_webhook"].details["message"]
    assert "owned children: 2 Pod, 1 Service" in subs["valid_cr_reconciled"].summary
    assert subs["children_garbage_collected"].verdict is Verdict.PASS
    assert result.metrics["reconcile_latency_s"] > 0 and result.metrics["gc_latency_s"] > 0
    if result.metrics["operator_out_of_cluster"]:  # the sandbox runs KubeRay as a host process
        assert "outside the cluster as a host process" in subs["operator_running"].summary
    assert any("simulated (kwok)" in note for note in result.notes)
    for name in ("admission.yaml", "webhooks.yaml", "crds.yaml", "raycluster-ready.yaml", "children.yaml", "cr_timeline.csv"):
        assert f"evidence/robust_controller/{name}" in result.evidence, name
    ready = (tmp_path / "evidence" / "robust_controller" / "raycluster-ready.yaml").read_text()
    assert "state: ready" in ready
    assert_cleaned_up(kube, rid)


def test_webhook_configuration_deleted_is_not_pass(kube_sandbox, kube, restore_webhook, tmp_path):
    name = restore_webhook["metadata"]["name"]
    kube.delete(ADMISSION, "ValidatingWebhookConfiguration", name)
    wait_for("the invalid RayCluster to be admitted without KubeRay's webhook", lambda: not invalid_is_denied(kube))
    rid = run_id()
    result = run_check("robust_controller", params(kube_sandbox), run_id=rid, run_dir=tmp_path)
    assert result.verdict is Verdict.FAIL, result.reason
    assert "invalid_cr_rejected_by_webhook" in result.reason and "webhooks_configured" in result.reason
    rejected = result.subcheck("invalid_cr_rejected_by_webhook")
    assert rejected.verdict is Verdict.FAIL and "was accepted: no webhook refused it" in rejected.summary
    assert "no validating admission webhook of the operator" in result.subcheck("webhooks_configured").summary
    # The controller still works: the failure is pinned on the webhook, not on everything.
    assert result.subcheck("valid_cr_reconciled").verdict is Verdict.PASS
    assert_cleaned_up(kube, rid)


def test_webhook_fail_open_and_down_is_not_pass(kube_sandbox, kube, restore_webhook, tmp_path):
    """failurePolicy Ignore and nothing listening: the configuration still looks complete (caBundle, endpoint), which
    is all a presence check sees, but nothing refuses the invalid RayCluster."""
    name = restore_webhook["metadata"]["name"]
    hooks = copy.deepcopy(restore_webhook["webhooks"])
    for wh in hooks:
        wh["failurePolicy"] = "Ignore"
        wh["timeoutSeconds"] = 2
        cc = wh["clientConfig"]
        if cc.get("url"):
            cc["url"] = re.sub(r"^(https://[^/:]+):\d+", r"\1:1", cc["url"])  # 127.0.0.1:1 - nothing listens there
        else:
            cc["service"]["port"] = 1
    kube.patch(ADMISSION, "ValidatingWebhookConfiguration", name, {"webhooks": hooks})
    wait_for("the invalid RayCluster to be admitted past the dead webhook", lambda: not invalid_is_denied(kube))
    rid = run_id()
    result = run_check("robust_controller", params(kube_sandbox), run_id=rid, run_dir=tmp_path)
    assert result.verdict is Verdict.FAIL, result.reason
    assert result.reason == "failed: invalid_cr_rejected_by_webhook"
    assert result.subcheck("webhooks_configured").verdict is Verdict.PASS  # what a presence check would stop at
    rejected = result.subcheck("invalid_cr_rejected_by_webhook")
    assert rejected.verdict is Verdict.FAIL and "was accepted" in rejected.summary
    fail_closed = result.subcheck("webhook_fail_closed")
    assert fail_closed.verdict is Verdict.FAIL and not fail_closed.required and "failurePolicy Ignore" in fail_closed.summary
    assert_cleaned_up(kube, rid)
