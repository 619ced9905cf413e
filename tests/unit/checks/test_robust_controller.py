"""robust_controller without a cluster: the admission classifier on real API server error bodies, the verdict rules,
webhook and operator discovery against a fake API, operator profiles, the chart, and the FAIL path of the check."""

from __future__ import annotations

import base64
import json
from typing import Any

import matplotlib.pyplot as plt
import pytest
from kubernetes.client.exceptions import ApiException

from aiconf.checks import robust_controller as rc
from aiconf.checks.robust_controller import AdmissionOutcome as O
from aiconf.errors import ConfigError, ForbiddenError
from aiconf.execute import run_check
from aiconf.model import Verdict
from aiconf.params import load_parameters

PARAMS = load_parameters()

# --- real answers of a Kubernetes 1.36.3 API server (the sandbox, KubeRay v1.6.2 + Kueue v0.19.2), trimmed ----------
_GROUP = '{\\"groupName\\":\\"w\\",\\"replicas\\":1,\\"minReplicas\\":0,\\"maxReplicas\\":1}'

#: KubeRay's validating webhook refusing duplicate worker group names. The webhook's own refusal is a 422 with field
#: causes ("Invalid value"), exactly like schema validation: only the "admission webhook ... denied" prefix tells.
WEBHOOK_DENIED = (
    '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"admission webhook '
    '\\"vraycluster.kb.io\\" denied the request: RayCluster.ray.io \\"dup\\" is invalid: spec.workerGroupSpecs[1]: '
    f'Invalid value: {_GROUP}: worker group names must be unique","reason":"Invalid","details":{{"name":"dup",'
    '"group":"ray.io","kind":"RayCluster","causes":[{"reason":"FieldValueInvalid","message":"Invalid value: '
    f'{_GROUP}: worker group names must be unique","field":"spec.workerGroupSpecs[1]"}}]}},"code":422}}\n'
)
#: The CRD's OpenAPI schema refusing a RayCluster without headGroupSpec (what Gardener's suite logged as "rejected").
SCHEMA_REQUIRED = (
    '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"RayCluster.ray.io \\"noschema\\" '
    'is invalid: [spec.headGroupSpec: Required value, \\u003cnil\\u003e: Invalid value: null: some validation rules '
    'were not checked because the object was invalid; correct the existing errors to complete validation]",'
    '"reason":"Invalid","details":{"name":"noschema","group":"ray.io","kind":"RayCluster","causes":[{"reason":'
    '"FieldValueRequired","message":"Required value","field":"spec.headGroupSpec"},{"reason":"FieldValueInvalid",'
    '"message":"Invalid value: null: some validation rules were not checked because the object was invalid; correct '
    'the existing errors to complete validation","field":"\\u003cnil\\u003e"}]},"code":422}\n'
)
#: Kueue's *mutating* RayCluster webhook failing to decode a wrongly typed field (a webhook, but not KubeRay's).
OTHER_WEBHOOK_DECODE = (
    '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"admission webhook '
    '\\"mraycluster.kb.io\\" denied the request: json: cannot unmarshal string into Go struct field '
    'WorkerGroupSpec.spec.workerGroupSpecs.replicas of type int32","code":400}\n'
)
#: A ValidatingAdmissionPolicy (CEL inside the API server) refusing the object.
POLICY_DENIED = (
    '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"rayclusters.ray.io \\"vapdenied\\" '
    "is forbidden: ValidatingAdmissionPolicy 'aiconf-capture-vap' with binding 'aiconf-capture-vap' denied request: "
    'name vapdenied is not allowed","reason":"Invalid","details":{"name":"vapdenied","group":"ray.io","kind":'
    '"rayclusters","causes":[{"message":"ValidatingAdmissionPolicy \'aiconf-capture-vap\' with binding '
    '\'aiconf-capture-vap\' denied request: name vapdenied is not allowed"}]},"code":422}\n'
)
#: A fail-closed webhook nobody answers.
WEBHOOK_UNREACHABLE = (
    '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Internal error occurred: failed '
    'calling webhook \\"dead.aiconf.io\\": failed to call webhook: Post \\"https://127.0.0.1:1/validate?timeout=2s\\": '
    'dial tcp 127.0.0.1:1: connect: connection refused","reason":"InternalError","details":{"causes":[{"message":'
    '"failed calling webhook \\"dead.aiconf.io\\": failed to call webhook: Post \\"https://127.0.0.1:1/validate?'
    'timeout=2s\\": dial tcp 127.0.0.1:1: connect: connection refused"}]},"code":500}\n'
)
#: controller-runtime's admission.Denied("...") answers 403 without field causes.
DENIED_403 = 'admission webhook "vtrainjob.kb.io" denied the request: spec.runtimeRef.name must not be empty'


@pytest.mark.parametrize(
    ("code", "body", "outcome", "webhook"),
    [
        (422, WEBHOOK_DENIED, O.WEBHOOK_DENIED, "vraycluster.kb.io"),
        (422, WEBHOOK_DENIED.encode(), O.WEBHOOK_DENIED, "vraycluster.kb.io"),
        (422, SCHEMA_REQUIRED, O.API_VALIDATION, ""),
        (400, OTHER_WEBHOOK_DECODE, O.WEBHOOK_DENIED, "mraycluster.kb.io"),
        (422, POLICY_DENIED, O.POLICY_DENIED, "aiconf-capture-vap"),
        (500, WEBHOOK_UNREACHABLE, O.WEBHOOK_UNREACHABLE, "dead.aiconf.io"),
        (403, {"message": DENIED_403, "code": 403}, O.WEBHOOK_DENIED, "vtrainjob.kb.io"),
        (409, '{"kind":"Status","message":"rayclusters.ray.io \\"x\\" already exists","reason":"AlreadyExists","code":409}', O.OTHER, ""),
        (400, "strict decoding error: unknown field \"spec.bogus\"", O.API_VALIDATION, ""),
        (None, None, O.ACCEPTED, ""),
        (201, None, O.ACCEPTED, ""),
    ],
    ids=["webhook-422", "webhook-bytes", "schema-required", "other-webhook-400", "vap", "unreachable", "denied-403",
         "conflict", "strict-decoding", "no-error", "created"],
)
def test_classify_admission(code, body, outcome, webhook):
    a = rc.classify_admission(code, body)
    assert a.outcome is outcome
    assert a.webhook == webhook


def test_classifier_keeps_the_fields_and_message():
    a = rc.classify_admission(422, SCHEMA_REQUIRED)
    assert a.fields[0] == "spec.headGroupSpec"
    assert "Required value" in a.message
    assert rc.classify_admission(422, WEBHOOK_DENIED).fields == ("spec.workerGroupSpecs[1]",)


KUBERAY = rc.kuberay_profile(PARAMS)


@pytest.mark.parametrize(
    ("code", "body", "verdict", "text"),
    [
        (422, WEBHOOK_DENIED, Verdict.PASS, "refused by the operator's admission webhook vraycluster.kb.io"),
        (None, None, Verdict.FAIL, "was accepted: no webhook refused it"),
        (422, SCHEMA_REQUIRED, Verdict.FAIL, "schema/CEL validation, not by a webhook"),
        (422, POLICY_DENIED, Verdict.FAIL, "ValidatingAdmissionPolicy"),
        (500, WEBHOOK_UNREACHABLE, Verdict.FAIL, "could not be called"),
        (400, OTHER_WEBHOOK_DECODE, Verdict.UNKNOWN, "not with the operator's reason"),
        (409, '{"message":"already exists","code":409}', Verdict.FAIL, "another reason (HTTP 409)"),
    ],
    ids=["webhook", "accepted", "schema", "policy", "unreachable", "other-webhook", "conflict"],
)
def test_only_the_operators_webhook_refusal_passes(code, body, verdict, text):
    v, summary = rc.judge_rejection(rc.classify_admission(code, body), KUBERAY, ["vraycluster.kb.io"])
    assert v is verdict
    assert text in summary


def test_refusal_by_a_webhook_that_is_not_the_operators_needs_a_human():
    denied = rc.classify_admission(422, WEBHOOK_DENIED.replace("vraycluster.kb.io", "policy.example.com"))
    v, summary = rc.judge_rejection(denied, KUBERAY, ["vraycluster.kb.io"])
    assert v is Verdict.UNKNOWN and "not one of the operator's" in summary


# --- submit(): ApiException and 403 handling --------------------------------------------------------------------


class Raiser:
    def __init__(self, exc: Exception | None):
        self.exc = exc

    def create(self, obj: dict, *, dry_run: bool = False) -> dict:
        if self.exc:
            raise self.exc
        return {**obj, "metadata": {**obj["metadata"], "uid": "u1"}}


def _api_exc(status: int, body: str) -> ApiException:
    e = ApiException(status=status, reason="x")
    e.body = body
    return e


def test_submit_classifies_api_errors_and_webhook_403s():
    obj = {"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": "a", "namespace": "n"}}
    assert rc.submit(Raiser(_api_exc(422, WEBHOOK_DENIED)), obj, dry_run=True)[0].outcome is O.WEBHOOK_DENIED
    a, created = rc.submit(Raiser(None), obj, dry_run=True)
    assert a.outcome is O.ACCEPTED and created["metadata"]["uid"] == "u1"
    denied = ForbiddenError("create", "RayCluster", "n", DENIED_403)
    assert rc.submit(Raiser(denied), obj, dry_run=True)[0].outcome is O.WEBHOOK_DENIED


def test_submit_lets_rbac_refusals_raise():
    rbac = ForbiddenError("create", "RayCluster", "n", 'rayclusters.ray.io is forbidden: User "x" cannot create resource')
    obj = {"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": "a", "namespace": "n"}}
    with pytest.raises(ForbiddenError):
        rc.submit(Raiser(rbac), obj, dry_run=True)


# --- webhooks, CRDs and operator pods ----------------------------------------------------------------------------------

CA = base64.b64encode(b"-----BEGIN CERTIFICATE-----").decode()


def webhook_cfg(name: str, hooks: list[dict], kind: str = "ValidatingWebhookConfiguration") -> dict:
    return {"kind": kind, "metadata": {"name": name}, "webhooks": hooks}


def hook(name: str, *, groups=("ray.io",), resources=("rayclusters",), ops=("CREATE", "UPDATE"), url: str = "",
         service: dict | None = None, ca: bool = True, policy: str = "Fail") -> dict:
    cc: dict[str, Any] = {"caBundle": CA} if ca else {}
    if url:
        cc["url"] = url
    else:
        cc["service"] = service or {"namespace": "ray-system", "name": "kuberay-operator", "port": 443}
    return {"name": name, "failurePolicy": policy, "sideEffects": "None", "clientConfig": cc,
            "rules": [{"apiGroups": list(groups), "apiVersions": ["v1"], "operations": list(ops), "resources": list(resources)}]}


class FakeKube:
    def __init__(self, *, configs=(), services=(), slices=(), pods=(), crds=(), kinds=None, nodes=()):
        self.configs, self.services, self.slices = list(configs), list(services), list(slices)
        self.pods, self.crds, self.nodes = list(pods), {c["metadata"]["name"]: c for c in crds}, list(nodes)
        self.kinds = kinds or {}

    def version(self) -> dict:
        return {"gitVersion": "v1.35.2"}

    def list(self, api_version: str, kind: str, namespace: str | None = None, *, label_selector: str | None = None,
             **_: Any) -> list[dict]:
        def selected(o: dict) -> bool:
            if namespace and o["metadata"].get("namespace") != namespace:
                return False
            labels = o["metadata"].get("labels") or {}
            return all(labels.get(k) == v for k, _, v in (p.partition("=") for p in (label_selector or "").split(",") if p))

        pool = {"ValidatingWebhookConfiguration": [c for c in self.configs if c["kind"] == kind],
                "MutatingWebhookConfiguration": [c for c in self.configs if c["kind"] == kind],
                "EndpointSlice": self.slices, "Pod": self.pods, "Node": self.nodes}.get(kind, [])
        return [o for o in pool if selected(o)]

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict | None:
        if kind == "CustomResourceDefinition":
            return self.crds.get(name)
        if kind == "Service":
            return next((s for s in self.services if s["metadata"]["name"] == name and s["metadata"]["namespace"] == namespace), None)
        return None

    def has_kind(self, api_version: str, kind: str) -> bool:
        return kind in self.kinds.get(api_version, [])

    def api_resources(self, api_version: str) -> list[dict]:
        return [{"name": k.lower() + "s", "kind": k} for k in self.kinds.get(api_version, [])]


def svc(name: str, ns: str, **spec: Any) -> dict:
    return {"metadata": {"name": name, "namespace": ns}, "spec": spec}


def endpoint_slice(service: str, ns: str, ready: list[bool]) -> dict:
    return {"metadata": {"name": f"{service}-x", "namespace": ns, "labels": {"kubernetes.io/service-name": service}},
            "endpoints": [{"conditions": {"ready": r}} for r in ready]}


def rows_for(kube: FakeKube, match: str = r"kuberay|ray-operator") -> list[dict]:
    rows = rc.find_webhooks(kube, "ray.io", "rayclusters", match)
    for r in rows:
        r["backend"] = rc.inspect_backend(kube, r)
    return rows


@pytest.mark.parametrize(
    ("rule", "matches"),
    [
        ({"apiGroups": ["ray.io"], "resources": ["rayclusters"], "operations": ["CREATE"]}, True),
        ({"apiGroups": ["*"], "resources": ["*"], "operations": ["*"]}, True),
        ({"apiGroups": ["ray.io"], "resources": ["rayclusters/*"], "operations": ["CREATE"]}, True),
        ({"apiGroups": ["ray.io"], "resources": ["rayjobs"], "operations": ["CREATE"]}, False),
        ({"apiGroups": ["ray.io"], "resources": ["rayclusters"], "operations": ["UPDATE"]}, False),
        ({"apiGroups": ["kueue.x-k8s.io"], "resources": ["rayclusters"], "operations": ["CREATE"]}, False),
    ],
    ids=["exact", "wildcard", "subresources", "other-resource", "update-only", "other-group"],
)
def test_rule_matches(rule, matches):
    assert rc.rule_matches(rule, "ray.io", "rayclusters") is matches


def test_operator_webhook_told_apart_from_kueues_same_named_one():
    kube = FakeKube(configs=[
        webhook_cfg("kuberay-validating-webhook-configuration", [hook("vraycluster.kb.io", url="https://127.0.0.1:9443/validate-ray-io-v1-raycluster")]),
        webhook_cfg("kueue-validating-webhook-configuration", [hook("vraycluster.kb.io", service={"namespace": "kueue-system", "name": "kueue-webhook-service"})]),
        webhook_cfg("gatekeeper", [hook("validation.gatekeeper.sh", groups=("*",), resources=("*",))]),
        webhook_cfg("kueue-mutating-webhook-configuration", [hook("mraycluster.kb.io", service={"namespace": "kueue-system", "name": "kueue-webhook-service"})],
                    kind="MutatingWebhookConfiguration"),
    ])
    rows = rows_for(kube)
    assert [(r["configuration"], r["operator"]) for r in rows] == [
        ("kuberay-validating-webhook-configuration", True),
        ("kueue-validating-webhook-configuration", False),
        ("gatekeeper", False),
        ("kueue-mutating-webhook-configuration", False),
    ]
    assert rows[0]["backend"]["loopback"] is True
    assert rc.operator_webhooks(rows) == ["vraycluster.kb.io"]
    verdict, summary = rc.judge_webhooks(rows)
    assert verdict is Verdict.PASS and "kuberay-validating-webhook-configuration" in summary


def test_only_foreign_webhooks_is_a_fail_that_names_them():
    kube = FakeKube(configs=[webhook_cfg("kueue-validating-webhook-configuration",
                                         [hook("vraycluster.kb.io", service={"namespace": "kueue-system", "name": "kueue-webhook-service"})])],
                    services=[svc("kueue-webhook-service", "kueue-system", type="ClusterIP")],
                    slices=[endpoint_slice("kueue-webhook-service", "kueue-system", [True])])
    verdict, summary = rc.judge_webhooks(rows_for(kube))
    assert verdict is Verdict.FAIL
    assert "others that do: vraycluster.kb.io (kueue-validating-webhook-configuration)" in summary


@pytest.mark.parametrize(
    ("services", "slices", "ca", "verdict", "text"),
    [
        ([svc("kuberay-operator", "ray-system", type="ClusterIP", selector={"app": "kuberay"})],
         [endpoint_slice("kuberay-operator", "ray-system", [False, True])], True, Verdict.PASS, "service ray-system/kuberay-operator"),
        ([svc("kuberay-operator", "ray-system", type="ClusterIP")], [endpoint_slice("kuberay-operator", "ray-system", [False])],
         True, Verdict.FAIL, "has no ready endpoints"),
        ([], [], True, Verdict.FAIL, "does not exist"),
        ([svc("kuberay-operator", "ray-system", type="ExternalName", externalName="127.0.0.1")], [], True, Verdict.PASS, "ExternalName 127.0.0.1"),
        ([svc("kuberay-operator", "ray-system", type="ExternalName", externalName="127.0.0.1")], [], False, Verdict.FAIL, "has no caBundle"),
    ],
    ids=["endpoints", "no-ready-endpoint", "no-service", "external-name", "no-ca-bundle"],
)
def test_webhook_backend_rules(services, slices, ca, verdict, text):
    kube = FakeKube(configs=[webhook_cfg("kuberay-operator-webhook", [hook("vraycluster.kb.io", ca=ca)])],
                    services=services, slices=slices)
    v, summary = rc.judge_webhooks(rows_for(kube))
    assert v is verdict and text in summary


def _crd(name: str, established: str = "True") -> dict:
    return {"metadata": {"name": name}, "spec": {"names": {"kind": "RayCluster", "plural": "rayclusters"},
                                                  "versions": [{"name": "v1", "served": True, "subresources": {"status": {}}}]},
            "status": {"conditions": [{"type": "Established", "status": established}, {"type": "NamesAccepted", "status": "True"}]}}


def test_crds_must_be_present_and_established():
    kube = FakeKube(crds=[_crd("rayclusters.ray.io"), _crd("rayjobs.ray.io", "False")])
    rows = rc.inspect_crds(kube, ("rayclusters.ray.io", "rayjobs.ray.io", "rayservices.ray.io"))
    assert rows[0]["subresources"] == ["status"]
    v, summary = rc.judge_crds(rows)
    assert v is Verdict.FAIL and summary == "CRD not installed: rayservices.ray.io"
    v, summary = rc.judge_crds(rows[:2])
    assert v is Verdict.FAIL and "rayjobs.ray.io" in summary
    assert rc.judge_crds(rows[:1])[0] is Verdict.PASS


def _pod(name: str, ready: str, ns: str = "ray-system", labels: dict | None = None, restarts: int = 0) -> dict:
    return {"metadata": {"name": name, "namespace": ns, "labels": labels or {"app.kubernetes.io/name": "kuberay-operator"}},
            "status": {"conditions": [{"type": "Ready", "status": ready}], "containerStatuses": [{"restartCount": restarts}]}}


def test_operator_pods_by_profile_selector_then_by_webhook_service():
    kube = FakeKube(pods=[_pod("kuberay-operator-1", "True", restarts=2)])
    pods, how = rc.find_operator_pods(kube, KUBERAY, [])
    assert [p["metadata"]["name"] for p in pods] == ["kuberay-operator-1"] and "app.kubernetes.io/name" in how
    assert rc.judge_operator_pods(pods) == (Verdict.PASS, "1 operator pod(s) Ready (2 container restarts)")
    kube = FakeKube(pods=[_pod("op-1", "False", ns="ops", labels={"app": "ray-op"})])
    rows = [{"backend": {"selector": {"app": "ray-op"}, "namespace": "ops", "target": "service ops/ray-op:443"}}]
    pods, how = rc.find_operator_pods(kube, KUBERAY, rows)
    assert pods and "webhook Service" in how
    assert rc.judge_operator_pods(pods) == (Verdict.FAIL, "operator pods not Ready: op-1")


@pytest.mark.parametrize(
    ("answered", "reconciled", "loopback", "verdict"),
    [
        (True, True, "https://127.0.0.1:9443/v", Verdict.PASS),
        (False, True, "https://127.0.0.1:9443/v", Verdict.PASS),
        (False, False, "https://127.0.0.1:9443/v", Verdict.FAIL),
        (True, True, "", Verdict.UNKNOWN),
        (False, False, "", Verdict.FAIL),
    ],
    ids=["host-process", "host-process-webhook-down", "host-process-dead", "pods-not-found", "nothing"],
)
def test_operator_without_pods_is_judged_by_what_it_did(answered, reconciled, loopback, verdict):
    v, summary = rc.judge_without_pods(answered, reconciled, loopback, "label selector x")
    assert v is verdict
    if loopback:
        assert "outside the cluster as a host process" in summary


def test_children_must_be_owned_for_each_expected_kind():
    owned = {"metadata": {"name": "p", "ownerReferences": [{"uid": "u1", "controller": True}]}}
    assert rc.owned_by(owned, "u1")["controller"] is True and rc.owned_by(owned, "u2") is None
    ok, summary = rc.judge_children({"Pod": [owned, owned], "Service": []}, KUBERAY.child_kinds)
    assert not ok and summary.startswith("no owned Service found")
    assert rc.judge_children({"Pod": [owned], "Service": [owned]}, KUBERAY.child_kinds) == (True, "owned children: 1 Pod, 1 Service")


# --- profiles -------------------------------------------------------------------------------------------------------


def test_kuberay_profile_manifests():
    valid, invalid = KUBERAY.valid_cr, KUBERAY.invalid_cr
    assert [g["groupName"] for g in invalid["spec"]["workerGroupSpecs"]] == ["workers", "workers"]
    assert len({g["groupName"] for g in valid["spec"]["workerGroupSpecs"]}) == 1
    for c in [valid["spec"]["headGroupSpec"]] + valid["spec"]["workerGroupSpecs"]:
        res = c["template"]["spec"]["containers"][0]["resources"]
        assert not any("gpu" in k for k in {**res["requests"], **res["limits"]}), "the CR must be CPU-only"
    obj = rc.instantiate(valid, "aiconf-valid", "ns1")
    assert obj["metadata"] == {"name": "aiconf-valid", "namespace": "ns1"} and valid["metadata"]["namespace"] == ""
    assert KUBERAY.is_ready({"status": {"state": "ready"}}) and not KUBERAY.is_ready({"status": {}})


def test_node_selector_and_overrides():
    prof = rc.operator_profile(PARAMS.replace(operator_node_selector="type=kwok", operator_namespace="ray",
                                              operator_pod_selector="app=op"))
    assert prof.valid_cr["spec"]["headGroupSpec"]["template"]["spec"]["nodeSelector"] == {"type": "kwok"}
    assert (prof.namespace, prof.pod_selector) == ("ray", "app=op")
    with pytest.raises(ConfigError):
        rc.parse_selector("type")


def test_custom_profile_from_parameters():
    params = PARAMS.replace(
        operator_profile="custom",
        operator_crds=["trainjobs.trainer.kubeflow.org"],
        operator_valid_cr="apiVersion: trainer.kubeflow.org/v1alpha1\nkind: TrainJob\nspec: {runtimeRef: {name: torch}}\n",
        operator_invalid_cr="apiVersion: trainer.kubeflow.org/v1alpha1\nkind: TrainJob\nspec: {runtimeRef: {name: ''}}\n",
        operator_ready_field="condition:Complete",
        operator_child_kinds=["jobset.x-k8s.io/v1alpha2/JobSet"],
    )
    prof = rc.operator_profile(params)
    assert (prof.group, prof.kind, prof.ready_value) == ("trainer.kubeflow.org", "TrainJob", "True")
    assert prof.child_kinds == (("jobset.x-k8s.io/v1alpha2", "JobSet"),)
    assert prof.is_ready({"status": {"conditions": [{"type": "Complete", "status": "True"}]}})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({}, "operator_valid_cr"),
        ({"operator_valid_cr": "kind: X", "operator_invalid_cr": "kind: X"}, "apiVersion and kind"),
        ({"operator_valid_cr": "a: [", "operator_invalid_cr": "x"}, "not valid YAML"),
        ({"operator_valid_cr": "apiVersion: a/v1\nkind: X", "operator_invalid_cr": "apiVersion: a/v1\nkind: X"}, "operator_crds"),
    ],
    ids=["missing", "no-kind", "bad-yaml", "no-crds"],
)
def test_custom_profile_errors(changes, message):
    with pytest.raises(ConfigError, match=message):
        rc.operator_profile(PARAMS.replace(operator_profile="custom", **changes))


def test_unknown_profile():
    with pytest.raises(ConfigError, match="unknown operator_profile"):
        rc.operator_profile(PARAMS.replace(operator_profile="kserve"))


# --- the check against a fake API ------------------------------------------------------------------------------------


def test_operator_not_installed_fails(tmp_path):
    result = run_check("robust_controller", PARAMS, kube=FakeKube(), run_dir=tmp_path)
    assert result.verdict is Verdict.FAIL
    assert result.subcheck("crds_established").summary.startswith("CRD not installed: rayclusters.ray.io")
    assert result.subcheck("operator_running").verdict is Verdict.FAIL
    assert result.subcheck("invalid_cr_rejected_by_webhook").verdict is Verdict.UNKNOWN
    assert json.loads((tmp_path / "results" / "robust_controller.json").read_text())["verdict"] == "FAIL"


# --- chart -----------------------------------------------------------------------------------------------------------


def test_timeline_chart(tmp_path):
    from aiconf.context import TimeSeries
    from aiconf.model import RequirementResult

    ts = TimeSeries("cr_timeline", rows=[
        {"t_s": 0.0, "event": "created"}, {"t_s": 0.0, "phase": "reconcile", "children": 0},
        {"t_s": 0.1, "phase": "reconcile", "state": "(no state yet)"}, {"t_s": 1.5, "phase": "reconcile", "state": "ready"},
        {"t_s": 1.6, "phase": "ready", "children": 3}, {"t_s": 2.0, "event": "deleted"},
        {"t_s": 2.1, "phase": "delete", "state": "(deleted)"}, {"t_s": 2.4, "phase": "delete", "children": 0},
    ])
    (tmp_path / "cr_timeline.csv").write_text(ts.to_csv())
    result = RequirementResult("robust_controller", "1.36", "MUST", metrics={
        "operator_kind": "RayCluster", "reconcile_latency_s": 1.5, "gc_latency_s": 0.4, "series": {"cr_timeline": "cr_timeline.csv"}})
    result.run_dir = tmp_path
    fig, ax = plt.subplots()
    rc.draw_cr_timeline(ax, result)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["(no state yet)", "ready", "(deleted)"]
    assert ax.get_title() == "RayCluster lifecycle (reconcile 1.5s, garbage collection 0.4s)"
    plt.close(fig)
