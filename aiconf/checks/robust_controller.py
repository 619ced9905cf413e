"""robust_controller (KAR-0063; MUST in 1.33-1.36): a complex AI operator runs, its webhook guards its API, and its
custom resources are reconciled and cleaned up.

The operator is described by a *profile* (data, :class:`OperatorProfile`): KubeRay by default, or ``custom`` from
parameters. Sub-checks and what each proves:

* ``operator_running`` - the operator's pods are Ready. An operator run outside the cluster (the sandbox runs
  KubeRay as a host process, reached through an ExternalName Service on 127.0.0.1) has no pods to inspect; then the
  evidence that it runs is its webhook answering and its controller reconciling, and the summary says so.
* ``crds_established`` - the profile's CRDs are Established and their names accepted by the API server.
* ``webhooks_configured`` - a validating webhook covers the custom resource (CREATE), carries a caBundle, and the
  Service it names exists (ready endpoints, or an ExternalName target).
* ``invalid_cr_rejected_by_webhook`` - a custom resource that passes the CRD schema but is semantically wrong
  (KubeRay: two worker groups with one name) is refused on a server-side dry-run create *by the admission
  webhook*. Refusals by the CRD schema or CEL rules, by a ValidatingAdmissionPolicy, or a webhook that could not be
  called are told apart and do not pass (existing suites count a schema refusal as a webhook test).
* ``valid_cr_reconciled`` - a valid CPU-only custom resource reaches its ready state, and its children (Pods,
  Services) carry ownerReferences to it.
* ``children_garbage_collected`` - once the custom resource is deleted its children disappear (observed by watch).
* ``webhook_fail_closed`` (informational) - the webhook's failurePolicy is Fail: with Ignore, an unreachable
  webhook silently admits invalid resources.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import yaml
from kubernetes.client.exceptions import ApiException

from aiconf import display
from aiconf.errors import ConfigError, ForbiddenError, WaitTimeout
from aiconf.kube import condition
from aiconf.model import Verdict
from aiconf.registry import check

if TYPE_CHECKING:
    from aiconf.context import CheckContext
    from aiconf.kube import Kube
    from aiconf.params import Params

SUBCHECKS = (
    "operator_running",
    "crds_established",
    "webhooks_configured",
    "invalid_cr_rejected_by_webhook",
    "valid_cr_reconciled",
    "children_garbage_collected",
    "webhook_fail_closed",
)

ADMISSION_API = "admissionregistration.k8s.io/v1"
CRD_API = "apiextensions.k8s.io/v1"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


# --- operator profiles ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OperatorProfile:
    """What the check needs to know about one operator.

    Attributes:
        name: profile id (``kuberay``, ``custom``).
        title: human name for the narrative.
        group: the API group of its custom resources.
        crds: CRD names that must be Established.
        api_version / kind: the custom resource the check creates.
        namespace: where the operator's pods run ("" = every namespace).
        pod_selector: label selector of the operator's pods ("" = found through its webhook Service's selector).
        valid_cr: a valid, CPU-only custom resource (the check sets name and namespace).
        invalid_cr: a schema-valid custom resource the operator's webhook must refuse.
        invalid_because: why ``invalid_cr`` is invalid (narrative).
        denial_contains: text the operator's own webhook puts in its refusal ("" = any webhook denial).
        ready_field: dotted path whose value means ready (``status.state``), or ``condition:<Type>``.
        ready_value: the value of ``ready_field`` when ready (``ready``; ``True`` for conditions).
        child_kinds: ``(apiVersion, kind)`` of the children it must create, each owned by the custom resource.
        webhook_match: regular expression that tells the operator's own webhooks from others covering the same kind
            (matched against configuration name, Service and URL; "" = every webhook naming the group explicitly).
            Kueue, for one, registers webhooks for ``ray.io`` kinds with the same names KubeRay uses.
        remediation: what to do when the operator's webhook is missing (appended to that FAIL).
    """

    name: str
    title: str
    group: str
    crds: tuple[str, ...]
    api_version: str
    kind: str
    namespace: str
    pod_selector: str
    valid_cr: dict[str, Any]
    invalid_cr: dict[str, Any]
    invalid_because: str
    denial_contains: str
    ready_field: str
    ready_value: str
    child_kinds: tuple[tuple[str, str], ...] = (("v1", "Pod"), ("v1", "Service"))
    webhook_match: str = ""
    remediation: str = ""

    def is_ready(self, obj: dict[str, Any] | None) -> bool:
        return obj is not None and ready_state(obj, self.ready_field) == self.ready_value


def parse_selector(text: str) -> dict[str, str]:
    """``"a=b,c=d"`` -> ``{"a": "b", "c": "d"}`` (equality selectors only, for nodeSelector)."""
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            raise ConfigError(f"node selector '{text}' must be key=value[,key=value]")
        out[key.strip()] = value.strip().lstrip("=")
    return out


def raycluster(
    name: str,
    namespace: str,
    *,
    image: str,
    pull_policy: str = "IfNotPresent",
    worker_groups: tuple[str, ...] = ("workers",),
    replicas: int = 1,
    node_selector: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A small CPU-only RayCluster: one head and ``replicas`` workers per group (no accelerator requested)."""

    def template(container: str) -> dict[str, Any]:
        spec: dict[str, Any] = {
            # Ray images run as user "ray" (uid 1000); the uid is given because a named user cannot be verified
            # against runAsNonRoot. No readOnlyRootFilesystem: Ray writes its session directory, sockets and logs
            # under /tmp/ray and files under the user's home, at paths that change between Ray versions.
            "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": container,
                    "image": image,
                    "imagePullPolicy": pull_policy,
                    "resources": {
                        "requests": {"cpu": "200m", "memory": "512Mi"},
                        "limits": {"cpu": "1", "memory": "2Gi"},
                    },
                    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                }
            ],
        }
        if node_selector:
            spec["nodeSelector"] = dict(node_selector)
        return {"spec": spec}

    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "headGroupSpec": {"rayStartParams": {}, "template": template("ray-head")},
            "workerGroupSpecs": [
                {
                    "groupName": g,
                    "replicas": replicas,
                    "minReplicas": 0,
                    "maxReplicas": max(replicas, 1),
                    "rayStartParams": {},
                    "template": template("ray-worker"),
                }
                for g in worker_groups
            ],
        },
    }


def kuberay_profile(params: Params) -> OperatorProfile:
    nodes = parse_selector(params.operator_node_selector)
    kw = {"image": params.operator_ray_image, "pull_policy": params.image_pull_policy, "node_selector": nodes}
    return OperatorProfile(
        name="kuberay",
        title="KubeRay",
        group="ray.io",
        crds=("rayclusters.ray.io", "rayjobs.ray.io", "rayservices.ray.io"),
        api_version="ray.io/v1",
        kind="RayCluster",
        namespace="",
        pod_selector="app.kubernetes.io/name=kuberay-operator",
        valid_cr=raycluster("valid", "", **kw),
        invalid_cr=raycluster("invalid", "", worker_groups=("workers", "workers"), **kw),
        invalid_because="two worker groups share the name 'workers'",
        denial_contains="worker group names must be unique",
        ready_field="status.state",
        ready_value="ready",
        child_kinds=(("v1", "Pod"), ("v1", "Service")),
        webhook_match=r"kuberay|ray-operator",
        remediation="KubeRay serves its RayCluster webhook only when installed with webhooks enabled "
        "(ENABLE_WEBHOOKS=true and a serving certificate; the kuberay-operator Helm chart has a webhook option)",
    )


def _yaml_param(params: Params, key: str) -> dict[str, Any]:
    text = params[key]
    if not text:
        raise ConfigError(f"operator_profile=custom needs parameter '{key}' (a YAML manifest)")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"parameter '{key}' is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(doc, dict) or "apiVersion" not in doc or "kind" not in doc:
        raise ConfigError(f"parameter '{key}' must be one manifest with apiVersion and kind")
    return doc


def custom_profile(params: Params) -> OperatorProfile:
    valid, invalid = _yaml_param(params, "operator_valid_cr"), _yaml_param(params, "operator_invalid_cr")
    group = params.operator_crd_group or valid["apiVersion"].split("/")[0]
    if not params.operator_crds:
        raise ConfigError("operator_profile=custom needs parameter 'operator_crds' (CRD names)")
    if not params.operator_ready_field:
        raise ConfigError("operator_profile=custom needs parameter 'operator_ready_field'")
    kinds = []
    for item in params.operator_child_kinds or ["v1/Pod"]:
        api_version, _, kind = str(item).rpartition("/")
        if not api_version or not kind:
            raise ConfigError(f"operator_child_kinds entry '{item}' must be <apiVersion>/<Kind>, e.g. v1/Pod")
        kinds.append((api_version, kind))
    ready_value = params.operator_ready_value or ("True" if params.operator_ready_field.startswith("condition:") else "")
    return OperatorProfile(
        name="custom",
        title=f"custom operator ({group})",
        group=group,
        crds=tuple(params.operator_crds),
        api_version=valid["apiVersion"],
        kind=valid["kind"],
        namespace="",
        pod_selector="",
        valid_cr=valid,
        invalid_cr=invalid,
        invalid_because="the manifest given in operator_invalid_cr",
        denial_contains=params.operator_denial_contains,
        ready_field=params.operator_ready_field,
        ready_value=ready_value,
        child_kinds=tuple(kinds),
        webhook_match=params.operator_webhook_match,
    )


PROFILES = {"kuberay": kuberay_profile, "custom": custom_profile}


def operator_profile(params: Params) -> OperatorProfile:
    """The profile named by ``operator_profile``, with ``operator_namespace``/``operator_pod_selector`` applied."""
    try:
        build = PROFILES[params.operator_profile]
    except KeyError:
        raise ConfigError(f"unknown operator_profile '{params.operator_profile}' (known: {', '.join(PROFILES)})") from None
    prof = build(params)
    changes: dict[str, Any] = {}
    if params.operator_namespace:
        changes["namespace"] = params.operator_namespace
    if params.operator_pod_selector:
        changes["pod_selector"] = params.operator_pod_selector
    return dataclasses.replace(prof, **changes) if changes else prof


def dig(obj: dict[str, Any] | None, path: str) -> Any:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def ready_state(obj: dict[str, Any] | None, ready_field: str) -> str:
    """The value the readiness predicate looks at (``""`` when absent)."""
    if ready_field.startswith("condition:"):
        return condition(obj, ready_field.split(":", 1)[1]) or ""
    value = dig(obj, ready_field)
    return "" if value is None else str(value)


def instantiate(manifest: dict[str, Any], name: str, namespace: str) -> dict[str, Any]:
    obj = copy.deepcopy(manifest)
    meta = obj.setdefault("metadata", {})
    meta["name"], meta["namespace"] = name, namespace
    meta.pop("generateName", None)
    return obj


# --- admission: what refused (or admitted) a request ----------------------------------------------------------------


class AdmissionOutcome(StrEnum):
    ACCEPTED = "accepted"  #: the API server admitted the object
    WEBHOOK_DENIED = "webhook_denied"  #: an admission webhook answered and refused it
    WEBHOOK_UNREACHABLE = "webhook_unreachable"  #: a fail-closed webhook could not be called
    POLICY_DENIED = "policy_denied"  #: a ValidatingAdmissionPolicy (CEL, in the API server) refused it
    API_VALIDATION = "api_validation"  #: the CRD's OpenAPI schema or x-kubernetes-validations (CEL) refused it
    OTHER = "other"  #: any other refusal (conflict, bad request, ...)


@dataclass(frozen=True)
class Admission:
    """The outcome of one create (or dry-run create) and the API server's words for it."""

    outcome: AdmissionOutcome
    code: int | None = None
    message: str = ""
    webhook: str = ""  #: the webhook named in a denial or call failure
    fields: tuple[str, ...] = ()  #: fields named by a validation error

    def describe(self) -> str:
        head = {
            AdmissionOutcome.ACCEPTED: "accepted",
            AdmissionOutcome.WEBHOOK_DENIED: f"denied by admission webhook {self.webhook}",
            AdmissionOutcome.WEBHOOK_UNREACHABLE: f"refused because webhook {self.webhook} could not be called",
            AdmissionOutcome.POLICY_DENIED: "denied by a ValidatingAdmissionPolicy",
            AdmissionOutcome.API_VALIDATION: "refused by the API server's schema/CEL validation",
            AdmissionOutcome.OTHER: "refused",
        }[self.outcome]
        code = f" (HTTP {self.code})" if self.code else ""
        return head + code + (f": {self.message}" if self.message else "")


_WEBHOOK_DENIED = re.compile(r'admission webhook "(?P<name>[^"]+)" denied the request')
_WEBHOOK_FAILED = re.compile(r'failed (?:calling|to call) webhook "(?P<name>[^"]+)"')
_POLICY_DENIED = re.compile(r"ValidatingAdmissionPolicy '(?P<name>[^']+)'.*denied request")
_FIELD_ERROR = re.compile(
    r"\b(Invalid value|Required value|Unsupported value|Duplicate value|Too long|Too many|Forbidden|Not found):"
)


def _status_body(body: Any) -> dict[str, Any]:
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            return {"message": body}
    return body if isinstance(body, dict) else {}


def classify_admission(code: int | None, body: Any) -> Admission:
    """Classify an API server answer to a create: ``code`` None (or 2xx) means admitted; otherwise ``body`` is the
    ``Status`` object (JSON text, bytes or dict) or a bare message.

    The webhook patterns are tested first: a webhook's own refusal often *contains* field errors ("spec...: Invalid
    value"), and must not be mistaken for schema validation.
    """
    if code is None or 200 <= code < 300:
        return Admission(AdmissionOutcome.ACCEPTED, code)
    status = _status_body(body)
    message = str(status.get("message") or "")
    causes = ((status.get("details") or {}).get("causes")) or []
    fields = tuple(c["field"] for c in causes if isinstance(c, dict) and c.get("field"))
    if m := _WEBHOOK_DENIED.search(message):
        return Admission(AdmissionOutcome.WEBHOOK_DENIED, code, message, m["name"], fields)
    if m := _WEBHOOK_FAILED.search(message):
        return Admission(AdmissionOutcome.WEBHOOK_UNREACHABLE, code, message, m["name"], fields)
    if m := _POLICY_DENIED.search(message):
        return Admission(AdmissionOutcome.POLICY_DENIED, code, message, m["name"], fields)
    reason = status.get("reason", "")
    if code == 422 or reason == "Invalid" or _FIELD_ERROR.search(message) or "strict decoding error" in message:
        return Admission(AdmissionOutcome.API_VALIDATION, code, message, "", fields)
    return Admission(AdmissionOutcome.OTHER, code, message, "", fields)


def submit(kube: Kube, obj: dict[str, Any], *, dry_run: bool) -> tuple[Admission, dict[str, Any] | None]:
    """Create ``obj`` (server-side dry run when asked) and classify the answer; RBAC refusals still raise."""
    try:
        created = kube.create(obj, dry_run=dry_run)
    except ApiException as e:
        return classify_admission(e.status, e.body or e.reason), None
    except ForbiddenError as e:
        # 403 is also how webhooks built on controller-runtime refuse (admission.Denied); a 403 that names no
        # webhook or policy is a toolkit permission problem and must stay an error.
        admission = classify_admission(403, {"message": e.detail, "code": 403})
        if admission.outcome in (AdmissionOutcome.WEBHOOK_DENIED, AdmissionOutcome.POLICY_DENIED):
            return admission, None
        raise
    return Admission(AdmissionOutcome.ACCEPTED, 201), created


def judge_rejection(invalid: Admission, profile: OperatorProfile, own_webhooks: list[str]) -> tuple[Verdict, str]:
    """Only a webhook's refusal passes; a refusal by another webhook for another reason needs a human eye."""
    o = invalid.outcome
    if o is AdmissionOutcome.WEBHOOK_DENIED:
        if profile.denial_contains and profile.denial_contains not in invalid.message:
            return Verdict.UNKNOWN, (
                f"webhook {invalid.webhook} refused it, but not with the operator's reason "
                f"('{profile.denial_contains}'): {invalid.message}"
            )
        if own_webhooks and invalid.webhook not in own_webhooks:
            return Verdict.UNKNOWN, f"refused by webhook {invalid.webhook}, which is not one of the operator's ({', '.join(own_webhooks)})"
        return Verdict.PASS, f"refused by the operator's admission webhook {invalid.webhook}"
    if o is AdmissionOutcome.ACCEPTED:
        return Verdict.FAIL, f"the invalid {profile.kind} was accepted: no webhook refused it ({profile.invalid_because})"
    if o is AdmissionOutcome.API_VALIDATION:
        return Verdict.FAIL, (
            "refused by the API server's schema/CEL validation, not by a webhook: this shows the CRD schema, not the "
            f"operator's webhook ({invalid.message})"
        )
    if o is AdmissionOutcome.POLICY_DENIED:
        return Verdict.FAIL, f"refused by a ValidatingAdmissionPolicy inside the API server, not the operator's webhook ({invalid.message})"
    if o is AdmissionOutcome.WEBHOOK_UNREACHABLE:
        return Verdict.FAIL, f"webhook {invalid.webhook} could not be called (refused fail-closed, not judged): {invalid.message}"
    return Verdict.FAIL, f"refused for another reason (HTTP {invalid.code}): {invalid.message}"


# --- CRDs, webhooks, operator pods -------------------------------------------------------------------------------------


def inspect_crds(kube: Kube, names: tuple[str, ...]) -> list[dict[str, Any]]:
    rows = []
    for name in names:
        crd = kube.get(CRD_API, "CustomResourceDefinition", name)
        if crd is None:
            rows.append({"crd": name, "present": False, "established": False, "names_accepted": False})
            continue
        spec = crd.get("spec") or {}
        versions = spec.get("versions") or []
        rows.append(
            {
                "crd": name,
                "present": True,
                "established": condition(crd, "Established") == "True",
                "names_accepted": condition(crd, "NamesAccepted") == "True",
                "kind": (spec.get("names") or {}).get("kind", ""),
                "plural": (spec.get("names") or {}).get("plural", ""),
                "served": [v["name"] for v in versions if v.get("served")],
                "subresources": sorted({k for v in versions for k in (v.get("subresources") or {})}),
            }
        )
    return rows


def judge_crds(rows: list[dict[str, Any]]) -> tuple[Verdict, str]:
    if not rows:
        return Verdict.FAIL, "the profile names no CRD"
    missing = [r["crd"] for r in rows if not r["present"]]
    if missing:
        return Verdict.FAIL, f"CRD not installed: {', '.join(missing)}"
    bad = [r["crd"] for r in rows if not (r["established"] and r["names_accepted"])]
    if bad:
        return Verdict.FAIL, f"CRD not Established/NamesAccepted: {', '.join(bad)}"
    return Verdict.PASS, f"{len(rows)} CRDs Established with names accepted: {', '.join(r['crd'] for r in rows)}"


def rule_matches(rule: dict[str, Any], group: str, resource: str, operation: str = "CREATE") -> bool:
    groups, resources, ops = rule.get("apiGroups") or [], rule.get("resources") or [], rule.get("operations") or []
    return (
        (group in groups or "*" in groups)
        and any(r in (resource, "*", f"{resource}/*") for r in resources)
        and (operation in ops or "*" in ops)
    )


def find_webhooks(kube: Kube, group: str, resource: str, match: str = "") -> list[dict[str, Any]]:
    """Every admission webhook whose rules cover CREATE of ``group``/``resource``, one row each; ``operator`` says
    whether it is the operator's own (``match`` found in its configuration name, Service or URL; no wildcard
    rule)."""
    rows = []
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        for cfg in kube.list(ADMISSION_API, kind):
            for wh in cfg.get("webhooks") or []:
                if not any(rule_matches(r, group, resource) for r in wh.get("rules") or []):
                    continue
                cc = wh.get("clientConfig") or {}
                svc = cc.get("service")
                wildcard = any("*" in (r.get("apiGroups") or []) for r in wh.get("rules") or [])
                where = " ".join([cfg["metadata"]["name"], f"{(svc or {}).get('namespace', '')}/{(svc or {}).get('name', '')}",
                                  cc.get("url", "")])
                rows.append(
                    {
                        "configuration": cfg["metadata"]["name"],
                        "type": kind.replace("WebhookConfiguration", ""),
                        "webhook": wh.get("name", ""),
                        "failure_policy": wh.get("failurePolicy", "Fail"),
                        "side_effects": wh.get("sideEffects", ""),
                        "timeout_s": wh.get("timeoutSeconds"),
                        "ca_bundle": bool(cc.get("caBundle")),
                        "service": dict(svc) if svc else None,
                        "url": cc.get("url", ""),
                        "wildcard_rule": wildcard,
                        "operator": not wildcard and (not match or re.search(match, where) is not None),
                    }
                )
    return rows


def inspect_backend(kube: Kube, row: dict[str, Any]) -> dict[str, Any]:
    """Where a webhook's calls go: the Service (exists? ready endpoints? ExternalName?) or the URL."""
    if row.get("url"):
        host = re.sub(r"^https?://", "", row["url"]).split("/")[0].rsplit(":", 1)[0]
        return {"target": row["url"], "exists": True, "loopback": host in LOOPBACK_HOSTS, "ready_endpoints": None,
                "selector": None, "namespace": None}
    svc_ref = row.get("service") or {}
    ns, name = svc_ref.get("namespace", ""), svc_ref.get("name", "")
    target = f"service {ns}/{name}:{svc_ref.get('port', 443)}"
    svc = kube.get("v1", "Service", name, ns) if name else None
    if svc is None:
        return {"target": target, "exists": False, "loopback": False, "ready_endpoints": 0, "selector": None,
                "namespace": ns}
    spec = svc.get("spec") or {}
    if spec.get("type") == "ExternalName":
        ext = spec.get("externalName", "")
        return {"target": f"{target} -> ExternalName {ext}", "exists": True, "loopback": ext in LOOPBACK_HOSTS,
                "ready_endpoints": None, "selector": None, "namespace": ns}
    ready = 0
    for es in kube.list("discovery.k8s.io/v1", "EndpointSlice", ns, label_selector=f"kubernetes.io/service-name={name}"):
        for ep in es.get("endpoints") or []:
            if (ep.get("conditions") or {}).get("ready", True):
                ready += 1
    return {"target": target, "exists": True, "loopback": False, "ready_endpoints": ready,
            "selector": spec.get("selector") or None, "namespace": ns}


def judge_webhooks(rows: list[dict[str, Any]]) -> tuple[Verdict, str]:
    """At least one validating webhook for the resource, with a caBundle and a backend that exists."""
    validating = [r for r in rows if r["type"] == "Validating" and r["operator"]]
    if not validating:
        others = sorted({f"{r['webhook']} ({r['configuration']})" for r in rows})
        return Verdict.FAIL, "no validating admission webhook of the operator covers CREATE of the custom resource" + (
            f" (others that do: {', '.join(others)})" if others else "")
    usable = [
        r for r in validating
        if r["ca_bundle"] and r["backend"]["exists"] and r["backend"]["ready_endpoints"] != 0
    ]
    if not usable:
        problems = []
        for r in validating:
            if not r["ca_bundle"]:
                problems.append(f"{r['webhook']} ({r['configuration']}) has no caBundle")
            if not r["backend"]["exists"]:
                problems.append(f"{r['webhook']}: {r['backend']['target']} does not exist")
            elif r["backend"]["ready_endpoints"] == 0:
                problems.append(f"{r['webhook']}: {r['backend']['target']} has no ready endpoints")
        return Verdict.FAIL, "; ".join(problems)
    names = ", ".join(f"{r['webhook']} ({r['configuration']}, {r['backend']['target']})" for r in usable)
    return Verdict.PASS, f"validating webhook with caBundle and backend: {names}"


def operator_webhooks(rows: list[dict[str, Any]]) -> list[str]:
    """Names of the operator's own validating webhooks."""
    return sorted({r["webhook"] for r in rows if r["type"] == "Validating" and r["operator"]})


def find_operator_pods(kube: Kube, profile: OperatorProfile, rows: list[dict[str, Any]]) -> tuple[list[dict], str]:
    """The operator's pods, by the profile's selector, else by its webhook Service's selector."""
    if profile.pod_selector:
        pods = kube.list("v1", "Pod", profile.namespace or None, label_selector=profile.pod_selector)
        if pods:
            return pods, f"label selector {profile.pod_selector}" + (f" in {profile.namespace}" if profile.namespace else "")
    for r in rows:
        backend = r.get("backend") or {}
        if backend.get("selector"):
            sel = ",".join(f"{k}={v}" for k, v in backend["selector"].items())
            pods = kube.list("v1", "Pod", backend["namespace"], label_selector=sel)
            if pods:
                return pods, f"the selector of webhook Service {backend['target']} ({sel})"
    where = f"label selector {profile.pod_selector or '(none)'}" + (f" in {profile.namespace}" if profile.namespace else "")
    return [], where


def judge_operator_pods(pods: list[dict[str, Any]]) -> tuple[Verdict, str]:
    if not pods:
        return Verdict.FAIL, "no operator pod found"
    not_ready = [p["metadata"]["name"] for p in pods if condition(p, "Ready") != "True"]
    if not_ready:
        return Verdict.FAIL, f"operator pods not Ready: {', '.join(not_ready)}"
    restarts = sum(cs.get("restartCount", 0) for p in pods for cs in (p.get("status") or {}).get("containerStatuses") or [])
    return Verdict.PASS, f"{len(pods)} operator pod(s) Ready ({restarts} container restarts)"


def judge_without_pods(webhook_answered: bool, reconciled: bool, out_of_cluster: str, searched: str) -> tuple[Verdict, str]:
    """No operator pod found: judge the operator by what it did, and say where it was looked for.

    ``out_of_cluster`` is the loopback address its webhook points to ("" when it does not): an operator run as a host
    process (the sandbox) has no pods by design. Elsewhere a missing pod with a working controller means the selector
    is wrong, which needs a human (UNKNOWN), not a verdict.
    """
    evidence = []
    if webhook_answered:
        evidence.append("its webhook answered (refused the invalid resource)")
    if reconciled:
        evidence.append("its controller reconciled the valid resource")
    if out_of_cluster:
        where = f"the operator runs outside the cluster as a host process (webhook {out_of_cluster}); no pods to inspect"
        if not evidence:
            return Verdict.FAIL, f"{where}, and nothing shows it running: its webhook did not answer and nothing was reconciled"
        return Verdict.PASS, f"{where}; evidence that it runs: {' and '.join(evidence)}"
    if not evidence:
        return Verdict.FAIL, f"no operator pod found ({searched}), its webhook did not answer and nothing was reconciled"
    return Verdict.UNKNOWN, (f"no operator pod found ({searched}), yet {' and '.join(evidence)}: set operator_namespace / "
                             "operator_pod_selector so its pods can be inspected")


def owned_by(obj: dict[str, Any], uid: str) -> dict[str, Any] | None:
    return next((r for r in obj.get("metadata", {}).get("ownerReferences") or [] if r.get("uid") == uid), None)


def judge_children(children: dict[str, list[dict[str, Any]]], expected: tuple[tuple[str, str], ...]) -> tuple[bool, str]:
    """Each expected kind has at least one child owned by the custom resource."""
    missing = [k for _, k in expected if not children.get(k)]
    counts = ", ".join(f"{len(children.get(k, []))} {k}" for _, k in expected)
    if missing:
        return False, f"no owned {', '.join(missing)} found (owned children: {counts})"
    return True, f"owned children: {counts}"


# --- charts ----------------------------------------------------------------------------------------------------------


def draw_cr_timeline(ax: Any, result: Any) -> None:
    """The custom resource's state over time (step) and its owned children (right axis), with latencies."""
    frame = display.series(result, "cr_timeline")
    if frame.empty:
        ax.text(0.5, 0.5, "no timeline recorded", ha="center", va="center", transform=ax.transAxes)
        return
    rows = frame[frame["state"].notna()] if "state" in frame else frame.iloc[0:0]
    states: list[str] = []
    for s in rows["state"].astype(str):
        if s not in states:
            states.append(s)
    y = [states.index(str(s)) for s in rows["state"]]
    ax.step(rows["t_s"], y, where="post", color="#0969da", linewidth=2, label="custom resource state")
    ax.set_yticks(range(len(states)), states)
    ax.set_xlabel("seconds since the custom resource was created")
    ax.set_ylabel("state")
    if "children" in frame:
        kids = frame[frame["children"].notna()]
        if not kids.empty:
            ax2 = ax.twinx()
            ax2.step(kids["t_s"], kids["children"], where="post", color="#bf8700", label="owned children")
            ax2.set_ylabel("owned children")
            ax2.set_ylim(0, max(1, float(kids["children"].max())) + 0.5)
    if "event" in frame:
        for _, r in frame[frame["event"].notna()].iterrows():
            ax.axvline(r["t_s"], color="#6e7781", linestyle="--", linewidth=0.8)
            ax.text(r["t_s"], 0.98, f" {r['event']}", rotation=90, fontsize=7, va="top", ha="right",
                    transform=ax.get_xaxis_transform(), color="#57606a")
    m = result.metrics
    bits = []
    if m.get("reconcile_latency_s") is not None:
        bits.append(f"reconcile {m['reconcile_latency_s']:.1f}s")
    if m.get("gc_latency_s") is not None:
        bits.append(f"garbage collection {m['gc_latency_s']:.1f}s")
    ax.set_title(f"{m.get('operator_kind', 'custom resource')} lifecycle" + (f" ({', '.join(bits)})" if bits else ""))


# --- notebook tables -----------------------------------------------------------------------------------------------


def webhooks_frame(result: Any) -> Any:
    """One row per admission webhook covering the custom resource (from the ``webhooks_configured`` details)."""
    import pandas as pd

    sub = result.subcheck("webhooks_configured")
    rows = [
        {"configuration": w.get("configuration"), "type": w.get("type"), "webhook": w.get("webhook"),
         "operator's own": w.get("operator"), "failurePolicy": w.get("failure_policy"), "caBundle": w.get("ca_bundle"),
         "calls go to": (w.get("backend") or {}).get("target")}
        for w in (sub.details.get("webhooks", []) if sub else [])
    ]
    return pd.DataFrame(rows, columns=["configuration", "type", "webhook", "operator's own", "failurePolicy", "caBundle",
                                       "calls go to"])


def admission_frame(result: Any) -> Any:
    """What the API server answered to the dry-run creates, as classified."""
    import pandas as pd

    sub = result.subcheck("invalid_cr_rejected_by_webhook")
    if sub is None or "outcome" not in sub.details:
        return pd.DataFrame(columns=["request", "outcome", "answer"])
    d = sub.details
    return pd.DataFrame([
        {"request": "invalid resource (dry run)", "outcome": d.get("outcome"), "answer": sub.observed},
        {"request": "valid resource (dry run)", "outcome": "", "answer": d.get("valid_dry_run")},
    ])


def lifecycle_frame(result: Any) -> Any:
    """The profile, where the operator runs, and the measured latencies."""
    import pandas as pd

    m = result.metrics
    rows = [
        ("operator profile", m.get("operator_profile", "")),
        ("custom resource", m.get("operator_kind", "")),
        ("operator outside the cluster (host process)", m.get("operator_out_of_cluster", "")),
        ("create -> ready (s, watch)", m.get("reconcile_latency_s", "-")),
        ("delete -> children gone (s, watch)", m.get("gc_latency_s", "-")),
        ("operator's own state transition times", m.get("state_transition_times", "-")),
    ]
    return pd.DataFrame(rows, columns=["", "value"]).set_index("")


# --- preflight -------------------------------------------------------------------------------------------------------


def preflight(kube: Kube, params: Params) -> tuple[bool, str]:
    prof = operator_profile(params)
    group_version = prof.api_version
    if not kube.has_kind(group_version, prof.kind):
        return False, f"{prof.title}: {prof.kind} ({group_version}) is not served; install the operator first"
    hooks = find_webhooks(kube, prof.group, _plural(kube, prof), prof.webhook_match)
    validating = [h for h in hooks if h["type"] == "Validating" and h["operator"]]
    return True, f"{prof.title}: {prof.kind} served; {len(validating)} validating webhook(s) cover it"


def _plural(kube: Kube, prof: OperatorProfile) -> str:
    for r in kube.api_resources(prof.api_version):
        if r.get("kind") == prof.kind and "/" not in r["name"]:
            return r["name"]
    return prof.kind.lower() + "s"


# --- the check -------------------------------------------------------------------------------------------------------


class _Timeline:
    """Feeds ``cr_timeline`` with one row per observed change of the custom resource (or its children count)."""

    def __init__(self, ctx: CheckContext, profile: OperatorProfile):
        self.series = ctx.series("cr_timeline")
        self.profile = profile
        self.last: tuple | None = None

    def observe(self, obj: dict[str, Any] | None, phase: str) -> None:
        if obj is None:
            key = ("absent",)
            if key != self.last:
                self.series.add(phase=phase, state="(deleted)")
        else:
            status = obj.get("status") or {}
            state = ready_state(obj, self.profile.ready_field) or "(no state yet)"
            conds = ";".join(f"{c.get('type')}={c.get('status')}" for c in status.get("conditions") or [])
            key = (state, conds, bool(obj["metadata"].get("deletionTimestamp")))
            if key != self.last:
                self.series.add(phase=phase, state=state, conditions=conds,
                                deleting=bool(obj["metadata"].get("deletionTimestamp")))
        self.last = key

    def children(self, count: int, phase: str) -> None:
        self.series.add(phase=phase, children=count)


@check("robust_controller", subchecks=SUBCHECKS, charts={"cr_timeline": draw_cr_timeline}, preflight=preflight)
def run(ctx: CheckContext) -> None:
    p, kube = ctx.params, ctx.kube
    prof = operator_profile(p)
    ctx.metric("operator_profile", prof.name)
    ctx.metric("operator_kind", prof.kind)

    with ctx.step(f"check the {prof.title} CRDs"):
        crds = inspect_crds(kube, prof.crds)
        verdict, summary = judge_crds(crds)
        ctx.record("crds_established", verdict, summary, expected="every CRD of the profile Established and NamesAccepted",
                   observed="; ".join(f"{r['crd']}: established={r['established']}" for r in crds), crds=crds)
        ctx.save_evidence("crds.yaml", crds)
        if not kube.has_kind(prof.api_version, prof.kind):
            why = f"not run: {prof.kind} ({prof.api_version}) is not served, so {prof.title} is not installed"
            for sub in ("operator_running", "webhooks_configured", "invalid_cr_rejected_by_webhook",
                        "valid_cr_reconciled", "children_garbage_collected"):
                ctx.record(sub, Verdict.FAIL if sub == "operator_running" else Verdict.UNKNOWN, why)
            ctx.record("webhook_fail_closed", Verdict.UNKNOWN, why, required=False)
            _narrative(ctx, prof)
            return

    with ctx.step(f"find the admission webhooks for {prof.kind}"):
        plural = _plural(kube, prof)
        hooks = find_webhooks(kube, prof.group, plural, prof.webhook_match)
        for h in hooks:
            h["backend"] = inspect_backend(kube, h)
        verdict, summary = judge_webhooks(hooks)
        if verdict is Verdict.FAIL and prof.remediation:
            summary += f". {prof.remediation}"
        ctx.record("webhooks_configured", verdict, summary,
                   expected=f"a validating webhook for CREATE {prof.group}/{plural}, with caBundle, backend reachable",
                   observed=f"{len(hooks)} webhook(s): " + ", ".join(
                       f"{h['type']} {h['webhook']} ({h['configuration']}{'' if h['operator'] else ', not the operator'})"
                       for h in hooks),
                   webhooks=hooks)
        ctx.save_evidence("webhooks.yaml", hooks)
        mine = operator_webhooks(hooks)
        validating = [h for h in hooks if h["type"] == "Validating" and h["operator"]]
        ignore = [h["webhook"] for h in validating if h["failure_policy"] == "Ignore"]
        if not validating:
            ctx.record("webhook_fail_closed", Verdict.UNKNOWN, "no validating webhook to judge", required=False)
        elif ignore:
            ctx.record("webhook_fail_closed", Verdict.FAIL, f"failurePolicy Ignore on {', '.join(ignore)}: when the webhook "
                       "is down, invalid resources are admitted without a word", required=False)
        else:
            ctx.record("webhook_fail_closed", Verdict.PASS, "every validating webhook of the operator fails closed "
                       "(failurePolicy Fail)", required=False)

    with ctx.step(f"find the {prof.title} operator"):
        pods, how = find_operator_pods(kube, prof, hooks)
        loopback = next((h["backend"]["target"] for h in validating if h["backend"]["loopback"]), "")
        ctx.metric("operator_out_of_cluster", not pods and bool(loopback))
        if pods:
            verdict, summary = judge_operator_pods(pods)
            ctx.record("operator_running", verdict, summary, expected="operator pods Ready",
                       observed=f"found by {how}: " + ", ".join(
                           f"{x['metadata']['namespace']}/{x['metadata']['name']} Ready={condition(x, 'Ready')}" for x in pods))
        elif loopback:
            ctx.note(f"The {prof.title} operator runs outside the cluster (its webhook is reached at {loopback}): "
                     "there are no operator pods; that it runs is judged by its webhook answering and its controller "
                     "reconciling.")

    ns = ctx.namespace()
    invalid_obj = instantiate(prof.invalid_cr, "aiconf-invalid", ns)
    valid_obj = instantiate(prof.valid_cr, "aiconf-valid", ns)
    ctx.labelled(valid_obj)
    ctx.labelled(invalid_obj)

    with ctx.step(f"submit an invalid {prof.kind} (server-side dry run)"):
        invalid, _ = submit(kube, invalid_obj, dry_run=True)
        valid_dry, _ = submit(kube, valid_obj, dry_run=True)
        ctx.save_evidence("admission.yaml", {
            "invalid": {"why_invalid": prof.invalid_because, "outcome": str(invalid.outcome), "code": invalid.code,
                        "webhook": invalid.webhook, "message": invalid.message, "manifest": invalid_obj},
            "valid_dry_run": {"outcome": str(valid_dry.outcome), "code": valid_dry.code, "message": valid_dry.message},
        })
        verdict, summary = judge_rejection(invalid, prof, mine)
        if verdict is Verdict.PASS and valid_dry.outcome is not AdmissionOutcome.ACCEPTED:
            verdict, summary = Verdict.FAIL, f"{summary}, but it also refuses the valid {prof.kind}: {valid_dry.describe()}"
        ctx.record("invalid_cr_rejected_by_webhook", verdict, summary,
                   expected=f"refused by the operator's admission webhook ({prof.invalid_because})",
                   observed=invalid.describe(), outcome=str(invalid.outcome), webhook=invalid.webhook,
                   code=invalid.code, message=_head_and_tail(invalid.message), valid_dry_run=valid_dry.describe())

    timeline = _Timeline(ctx, prof)
    reconciled = False
    with ctx.step(f"create a valid {prof.kind} and wait until it is {prof.ready_value}"):
        if valid_dry.outcome is not AdmissionOutcome.ACCEPTED:
            ctx.record("valid_cr_reconciled", Verdict.FAIL, f"the valid {prof.kind} was refused: {valid_dry.describe()}")
            ctx.record("children_garbage_collected", Verdict.UNKNOWN, "not run: nothing was created")
        else:
            reconciled = _reconcile_and_collect(ctx, prof, valid_obj, ns, timeline)

    if not pods:
        answered = invalid.outcome is AdmissionOutcome.WEBHOOK_DENIED and (not mine or invalid.webhook in mine)
        verdict, summary = judge_without_pods(answered, reconciled, loopback, how)
        ctx.record("operator_running", verdict, summary, expected="operator pods Ready (for an operator outside the "
                   "cluster: its webhook answering and its controller reconciling)",
                   observed=f"no pods ({how})" + (f"; webhook at {loopback}" if loopback else ""))
    _narrative(ctx, prof)


def _reconcile_and_collect(ctx: CheckContext, prof: OperatorProfile, obj: dict[str, Any], ns: str,
                           timeline: _Timeline) -> bool:
    p, kube = ctx.params, ctx.kube
    name = obj["metadata"]["name"]
    t0 = time.monotonic()
    created = ctx.create(obj)
    uid = created["metadata"]["uid"]
    timeline.series.mark("created")
    timeline.children(0, "reconcile")
    last: list[dict[str, Any] | None] = [created]

    def on_change(objs: list[dict[str, Any]]) -> None:
        cur = next((o for o in objs if o["metadata"]["name"] == name), None)
        last[0] = cur
        timeline.observe(cur, "reconcile")

    try:
        kube.wait_until(prof.api_version, prof.kind, ns, lambda objs: any(prof.is_ready(o) for o in objs),
                        p.operator_reconcile_timeout_s, f"{prof.kind} {name} to be {prof.ready_value}",
                        field_selector=f"metadata.name={name}", on_change=on_change)
    except WaitTimeout as e:
        pods = kube.list("v1", "Pod", ns)
        why = "; ".join(f"{x['metadata']['name']}: {(x.get('status') or {}).get('phase')}" for x in pods) or "no pods"
        ctx.record("valid_cr_reconciled", Verdict.FAIL, f"not {prof.ready_value} within {p.operator_reconcile_timeout_s}s "
                   f"(last state: {ready_state(last[0], prof.ready_field) or 'none'}; pods: {why})",
                   expected=f"{prof.ready_field} == {prof.ready_value}", observed=e.last_seen)
        ctx.save_evidence(f"{prof.kind.lower()}-not-ready.yaml", _strip(last[0]))
        ctx.record("children_garbage_collected", Verdict.UNKNOWN, "not run: the resource never became ready")
        return False
    latency = time.monotonic() - t0
    ctx.metric("reconcile_latency_s", round(latency, 3))
    timeline.series.mark("ready")
    ready_obj = kube.get(prof.api_version, prof.kind, name, ns) or last[0]
    ctx.save_evidence(f"{prof.kind.lower()}-ready.yaml", _strip(ready_obj))
    transitions = dig(ready_obj, "status.stateTransitionTimes")
    if transitions:
        ctx.metric("state_transition_times", transitions)

    children: dict[str, list[dict[str, Any]]] = {}
    for api_version, kind in prof.child_kinds:
        children[kind] = [o for o in kube.list(api_version, kind, ns) if owned_by(o, uid)]
    ok, summary = judge_children(children, prof.child_kinds)
    timeline.children(sum(len(v) for v in children.values()), "ready")
    ctx.save_evidence("children.yaml", [{"kind": k, "name": o["metadata"]["name"], "ownerReference": owned_by(o, uid),
                                         "node": (o.get("spec") or {}).get("nodeName")} for k, objs in children.items() for o in objs])
    simulated = _simulated_nodes(kube, children.get("Pod", []))
    if simulated:
        ctx.note(f"The {prof.kind}'s pods ran on simulated (kwok) nodes ({', '.join(sorted(simulated))}): "
                 f"'{prof.ready_value}' means the operator saw its pods Running and Ready as kwok reports them; "
                 "no container process ran.")
    ctx.record("valid_cr_reconciled", ok,
               f"{prof.kind} {name} {prof.ready_value} after {latency:.1f}s; {summary}" if ok else
               f"{prof.kind} {name} {prof.ready_value} after {latency:.1f}s, but {summary}",
               expected=f"{prof.ready_field} == {prof.ready_value}; children {', '.join(k for _, k in prof.child_kinds)} "
               "owned by it", observed=summary, reconcile_latency_s=round(latency, 3))

    # Deletion: background propagation, so the children go through the garbage collector following their
    # ownerReferences (not the client deleting them).
    t_del = time.monotonic()
    kube.delete(prof.api_version, prof.kind, name, ns)
    timeline.series.mark("deleted")
    try:
        kube.wait_until(prof.api_version, prof.kind, ns, lambda objs: not any(o["metadata"]["name"] == name for o in objs),
                        p.operator_gc_timeout_s, f"{prof.kind} {name} to be gone", field_selector=f"metadata.name={name}",
                        on_change=lambda objs: timeline.observe(next(iter(objs), None), "delete"))
        left: dict[str, int] = {}
        for api_version, kind in prof.child_kinds:
            remaining = max(1.0, p.operator_gc_timeout_s - (time.monotonic() - t_del))
            kube.wait_until(api_version, kind, ns, lambda objs: not [o for o in objs if owned_by(o, uid)], remaining,
                            f"the {kind}s owned by {prof.kind} {name} to be garbage-collected",
                            on_change=lambda objs: timeline.children(len([o for o in objs if owned_by(o, uid)]), "delete"))
            left[kind] = 0
    except WaitTimeout as e:
        ctx.record("children_garbage_collected", Verdict.FAIL, f"not cleaned up within {p.operator_gc_timeout_s}s: {e.what}",
                   expected="the resource and its owned children gone", observed=e.last_seen)
        return True
    gc = time.monotonic() - t_del
    ctx.metric("gc_latency_s", round(gc, 3))
    timeline.series.mark("children gone")
    n = sum(len(v) for v in children.values())
    ctx.record("children_garbage_collected", True, f"{prof.kind} and its {n} owned children gone {gc:.1f}s after deletion",
               expected="the resource and its owned children gone", observed=", ".join(f"{k}: 0 left" for k in left),
               gc_latency_s=round(gc, 3))
    return True


def _simulated_nodes(kube: Kube, pods: list[dict[str, Any]]) -> set[str]:
    from aiconf.facts import is_simulated

    out = set()
    for node_name in {(x.get("spec") or {}).get("nodeName") for x in pods} - {None, ""}:
        node = kube.get("v1", "Node", node_name)
        if node and is_simulated(node):
            out.add(node_name)
    return out


def _strip(obj: dict[str, Any] | None) -> dict[str, Any]:
    from aiconf.evidence import strip_noise

    return strip_noise(obj) if obj else {}


def _narrative(ctx: CheckContext, prof: OperatorProfile) -> None:
    ctx.proves(
        f"The {prof.title} API ({prof.group}) is registered: its CRDs are Established.",
        f"Its admission webhook is wired (caBundle, backend) and answers: a {prof.kind} that is wrong "
        f"({prof.invalid_because}) but that the CRD schema accepts is refused by the webhook itself, not by schema "
        "validation.",
        f"Its controller reconciles: a valid {prof.kind} reaches '{prof.ready_value}' with children that carry "
        "ownerReferences to it, and deleting it makes those children disappear (observed by watch).",
    )
    ctx.does_not_prove(
        "That the operator's workloads do useful work (on simulated nodes no container process runs).",
        "Behaviour under operator restarts, upgrades or leader-election failover.",
        "That every validation rule of the webhook is correct: one representative refusal is tested.",
    )


def _head_and_tail(text: str, keep: int = 300) -> str:
    """Shorten a long admission message keeping both ends: the API server echoes the whole object in the middle,
    and the webhook's reason comes last."""
    return text if len(text) <= 2 * keep + 5 else f"{text[:keep]} ... {text[-keep:]}"

