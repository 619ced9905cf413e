"""``custom.metrics.k8s.io/v1beta2`` behind a real APIService, served by the project's own small adapter.

Wiring:

* Process: ``python -m aiconf.sandbox.addons.metrics_adapter_server`` (stdlib HTTPS + the Kubernetes client; see
  that module for the served paths and the simplified authentication) on ``127.0.0.1:<free port>``, with a
  serving cert from the cluster CA naming ``custom-metrics-apiserver.custom-metrics.svc``.
* APIService ``v1beta2.custom.metrics.k8s.io`` → Service ``custom-metrics/custom-metrics-apiserver`` of type
  ExternalName → ``127.0.0.1``, port = the adapter's, ``caBundle`` = the cluster CA. An APIService has no URL
  form, so this needs kube-apiserver's ``--enable-aggregator-routing=false``: kube-apiserver 1.36 then resolves
  it with ``ResolveCluster``, which returns ``https://127.0.0.1:<port>`` for ExternalName; with routing on it uses
  ``ResolveEndpoint``, which refuses ExternalName ("unsupported service type"), and EndpointSlices cannot hold
  loopback addresses.
* Metric values: a pod annotated ``metrics.aiconf.io/<metric>: "<value>"`` reports that value for
  ``pods/<metric>``; an HPA (autoscaling/v2, ``type: Pods``) on a Deployment of kwok pods follows the annotation.
* ``wait_ready``: the APIService is ``Available`` and ``kubectl get --raw /apis/custom.metrics.k8s.io/v1beta2``
  answers through the aggregator.

The API server must run with the aggregation-layer flags (``--requestheader-client-ca-file``,
``--proxy-client-cert-file``/``--proxy-client-key-file``, ``--requestheader-allowed-names``, ...) for the
aggregator to authenticate to the adapter; without them the adapter serves any TLS client.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from aiconf.errors import SandboxError
from aiconf.sandbox.addon import Addon, Process, SandboxHandle
from aiconf.sandbox.addons._common import (
    addon_dir,
    ca_bundle,
    http_ok,
    kube_json,
    loopback_service,
    namespace_doc,
    service_dns_names,
    wait_for,
)

GROUP = "custom.metrics.k8s.io"
VERSION = "v1beta2"
#: A pod annotated ``metrics.aiconf.io/<metric>: "<value>"`` reports ``<value>`` for ``pods/<metric>``.
ANNOTATION_PREFIX = "metrics.aiconf.io/"
NAMESPACE = "custom-metrics"
SERVICE = "custom-metrics-apiserver"
APISERVICE = f"{VERSION}.{GROUP}"


def apiservice(sb: SandboxHandle, port: int) -> dict:
    return {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": APISERVICE},
        "spec": {
            "group": GROUP,
            "version": VERSION,
            "service": {"name": SERVICE, "namespace": NAMESPACE, "port": port},
            "caBundle": ca_bundle(sb),
            "groupPriorityMinimum": 100,
            "versionPriority": 200,
        },
    }


def start(sb: SandboxHandle, bins: dict[str, Path]) -> list[Process]:
    d = addon_dir(sb, "custom-metrics")
    port = sb.free_port()
    cert, key = sb.issue_cert(
        "custom-metrics-apiserver", dns_names=service_dns_names(SERVICE, NAMESPACE), ip_addresses=["127.0.0.1"]
    )
    sb.apply([namespace_doc(NAMESPACE), loopback_service(SERVICE, NAMESPACE, port), apiservice(sb, port)])
    (d / "ports.json").write_text(json.dumps({"adapter": port}, indent=2) + "\n")
    argv = [
        sys.executable, "-m", "aiconf.sandbox.addons.metrics_adapter_server",
        f"--kubeconfig={sb.kubeconfig}", f"--port={port}", f"--cert={cert}", f"--key={key}",
    ]  # fmt: skip
    # The runtime's base environment may not carry PYTHONPATH; point it at the tree this module was imported from
    # so a source checkout without an installed package still works.
    src_root = str(Path(__file__).resolve().parents[3])
    return [
        Process(
            name="custom-metrics-adapter",
            argv=argv,
            env={"PYTHONPATH": src_root, "PYTHONUNBUFFERED": "1"},
            cwd=d,
            ready=lambda: http_ok(f"https://127.0.0.1:{port}/readyz"),
            ready_timeout_s=60.0,
        )
    ]


def wait_ready(sb: SandboxHandle, timeout_s: float = 90.0) -> None:
    def available() -> tuple[bool, str]:
        svc = kube_json(sb, "get", "apiservice", APISERVICE)
        cond = next((c for c in svc.get("status", {}).get("conditions", []) if c["type"] == "Available"), {})
        return cond.get(
            "status"
        ) == "True", f"Available={cond.get('status')} {cond.get('reason', '')}: {cond.get('message', '')}"

    try:
        wait_for(f"APIService {APISERVICE} to be Available", available, timeout_s=timeout_s)
    except SandboxError as e:
        if "unsupported service type" in str(e):
            raise SandboxError(
                f"{e}; kube-apiserver must run with --enable-aggregator-routing=false for an APIService backed by an "
                "ExternalName Service (with it true, 1.36 resolves APIServices through EndpointSlices, and those "
                "cannot hold 127.0.0.1)"
            ) from None
        raise

    def discovery() -> tuple[bool, str]:
        doc = json.loads(sb.kubectl("get", "--raw", f"/apis/{GROUP}/{VERSION}"))
        return doc.get("groupVersion") == f"{GROUP}/{VERSION}", str(doc)[:200]

    wait_for(f"/apis/{GROUP}/{VERSION} to answer through the aggregator", discovery, timeout_s=timeout_s)


ADDON = Addon(
    name="custom-metrics",
    summary=f"{GROUP}/{VERSION} from pod annotations {ANNOTATION_PREFIX}<metric> (project adapter behind an APIService)",
    components=(),
    start=start,
    wait_ready=wait_ready,
)
