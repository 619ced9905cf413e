"""KubeRay operator (RayCluster/RayJob/RayService) with its validating webhook, run out of cluster.

Wiring:

* Binary: ``ray-operator`` built from ray-operator v1.6.2 through a condensed entry point (see
  :data:`.components.KUBERAY_MAIN_GO`) whose only functional change is that the webhook server binds
  ``127.0.0.1:<free port>`` (upstream: controller-runtime's default ``:9443`` on every interface, no flag) and
  reads ``tls.crt``/``tls.key`` from ``state_dir/kuberay/webhook-certs/`` (upstream: ``$TMPDIR/k8s-webhook-server/
  serving-certs``). ``ENABLE_WEBHOOKS=true`` turns the RayCluster validator on, as upstream. Leader election is
  off, metrics and probes are on free loopback ports. Admin kubeconfig; KubeRay's RBAC is not applied.
* The API server calls the webhook at ``clientConfig.url: https://127.0.0.1:<port>/validate-ray-io-v1-raycluster``
  (cert from the cluster CA with ``IP:127.0.0.1``). Not an ExternalName Service: see :mod:`.kueue` (kube-apiserver
  1.36 refuses ExternalName for webhooks when ``--enable-aggregator-routing=true``).
* CRDs: ``config/crd/bases/ray.io_*.yaml`` server-side (they are far above the client-side apply limit).
  Webhook: only ``vraycluster.kb.io`` (``/validate-ray-io-v1-raycluster``) of ``config/webhook/manifests.yaml``;
  v1.6 registers no RayJob/RayService validator, so those entries would fail closed with 404.
* ``wait_ready``: a RayCluster with duplicate worker group names is refused *by the webhook* (the error names
  ``vraycluster.kb.io``). A valid RayCluster reaching ``status.state: ready`` on kwok nodes is the test's job,
  since it needs kwok nodes that accept the pods.
"""

from __future__ import annotations

import json
from pathlib import Path

from aiconf.errors import SandboxError
from aiconf.sandbox.addon import Addon, Process, SandboxHandle
from aiconf.sandbox.addons._common import (
    addon_dir,
    ca_bundle,
    create_custom_object,
    go_module_dir,
    http_ok,
    install_cert_pair,
    load_yaml_docs,
    service_dns_names,
    wait_for,
)
from aiconf.sandbox.addons.components import KUBERAY, KUBERAY_VERSION

NAMESPACE = "ray-system"
WEBHOOK_SERVICE = "kuberay-webhook-service"
WEBHOOK_NAME = "vraycluster.kb.io"
WEBHOOK_CONFIGURATION = "kuberay-validating-webhook-configuration"
#: KubeRay's own refusal text for duplicate worker group names. Kueue's Ray integration registers a webhook with
#: the same name (``vraycluster.kb.io``), so the name alone does not tell which one answered.
DUPLICATE_GROUP_MESSAGE = "worker group names must be unique"


def crds() -> list[dict]:
    folder = go_module_dir(KUBERAY.module, KUBERAY_VERSION) / "config" / "crd" / "bases"
    return [d for f in sorted(folder.glob("ray.io_*.yaml")) for d in load_yaml_docs(f)]


def webhook_configuration(sb: SandboxHandle, port: int) -> dict:
    src = go_module_dir(KUBERAY.module, KUBERAY_VERSION) / "config" / "webhook" / "manifests.yaml"
    (doc,) = [d for d in load_yaml_docs(src) if d.get("kind") == "ValidatingWebhookConfiguration"]
    hooks = [w for w in doc["webhooks"] if w["name"] == WEBHOOK_NAME]
    if not hooks:
        raise SandboxError(f"kuberay add-on: {src} has no {WEBHOOK_NAME} webhook")
    for wh in hooks:
        path = wh["clientConfig"]["service"]["path"]
        wh["clientConfig"] = {"url": f"https://127.0.0.1:{port}{path}", "caBundle": ca_bundle(sb)}
        wh["timeoutSeconds"] = 10
    doc["metadata"] = {"name": WEBHOOK_CONFIGURATION}
    doc["webhooks"] = hooks
    return doc


def start(sb: SandboxHandle, bins: dict[str, Path]) -> list[Process]:
    d = addon_dir(sb, "kuberay")
    webhook_port, metrics_port, probe_port = sb.free_port(), sb.free_port(), sb.free_port()
    cert, key = sb.issue_cert(
        "kuberay-webhook", dns_names=service_dns_names(WEBHOOK_SERVICE, NAMESPACE), ip_addresses=["127.0.0.1"]
    )
    cert_dir = install_cert_pair(cert, key, d / "webhook-certs")
    sb.apply(crds())
    sb.apply([webhook_configuration(sb, webhook_port)])
    (d / "ports.json").write_text(
        json.dumps({"webhook": webhook_port, "metrics": metrics_port, "probe": probe_port}, indent=2) + "\n"
    )
    argv = [
        str(bins["ray-operator"]),
        f"--kubeconfig={sb.kubeconfig}",
        f"--metrics-addr=127.0.0.1:{metrics_port}",
        f"--health-probe-bind-address=127.0.0.1:{probe_port}",
        "--webhook-host=127.0.0.1",
        f"--webhook-port={webhook_port}",
        f"--webhook-cert-dir={cert_dir}",
    ]
    return [
        Process(
            name="kuberay-operator",
            argv=argv,
            env={"ENABLE_WEBHOOKS": "true", "TMPDIR": str(d)},
            cwd=d,
            ready=lambda: http_ok(f"http://127.0.0.1:{probe_port}/readyz"),
            ready_timeout_s=120.0,
        )
    ]


def raycluster(
    name: str,
    namespace: str,
    *,
    worker_groups: tuple[str, ...] = ("workers",),
    replicas: int = 1,
    node_selector: dict[str, str] | None = None,
) -> dict:
    """A small CPU-only RayCluster (for checks and tests); ``node_selector`` keeps its pods on fake nodes."""

    def pod_template(container: str) -> dict:
        return {
            "spec": {
                **({"nodeSelector": dict(node_selector)} if node_selector else {}),
                "containers": [
                    {
                        "name": container,
                        "image": "rayproject/ray:2.46.0",
                        "resources": {
                            "requests": {"cpu": "100m", "memory": "256Mi"},
                            "limits": {"cpu": "1", "memory": "1Gi"},
                        },
                    }
                ],
            }
        }

    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "headGroupSpec": {"rayStartParams": {}, "template": pod_template("ray-head")},
            "workerGroupSpecs": [
                {
                    "groupName": g,
                    "replicas": replicas,
                    "minReplicas": 0,
                    "maxReplicas": max(replicas, 1),
                    "rayStartParams": {},
                    "template": pod_template("ray-worker"),
                }
                for g in worker_groups
            ],
        },
    }


def wait_ready(sb: SandboxHandle, timeout_s: float = 90.0) -> None:
    bad = raycluster("aiconf-webhook-probe", "default", worker_groups=("dup", "dup"))

    def rejected_by_webhook() -> tuple[bool, str]:
        code, msg = create_custom_object(sb, "ray.io", "v1", "rayclusters", bad, namespace="default", dry_run=True)
        if code == 201:
            return False, "an invalid RayCluster was accepted"
        return (
            f'admission webhook "{WEBHOOK_NAME}" denied' in msg and DUPLICATE_GROUP_MESSAGE in msg,
            f"{code}: {msg[:300]}",
        )

    wait_for(
        "KubeRay's webhook to refuse an invalid RayCluster", rejected_by_webhook, timeout_s=timeout_s, interval_s=2.0
    )


ADDON = Addon(
    name="kuberay",
    summary=f"KubeRay operator {KUBERAY_VERSION} with the RayCluster validating webhook on 127.0.0.1",
    components=(KUBERAY,),
    start=start,
    wait_ready=wait_ready,
)
