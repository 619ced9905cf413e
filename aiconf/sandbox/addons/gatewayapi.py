"""Gateway API CRDs (standard channel) from ``sigs.k8s.io/gateway-api``'s module source; nothing is built or run.

The CRD files ship in the Go module (``config/crd/standard/``), so ``go mod download`` is the whole install. The
standard channel also carries a ValidatingAdmissionPolicy (``safe-upgrades``) that upstream's install applies;
it is applied too. No data plane yet: Gateways stay unprogrammed.
"""

from __future__ import annotations

from pathlib import Path

from aiconf.sandbox.addon import Addon, Process, SandboxHandle
from aiconf.sandbox.addons._common import go_module_dir, kube_json, load_yaml_docs, wait_for
from aiconf.sandbox.addons.components import GATEWAY_API_VERSION

MODULE = "sigs.k8s.io/gateway-api"

#: The CRDs a conformant Gateway API install has (checked by ``wait_ready``).
CORE_CRDS = (
    "gatewayclasses.gateway.networking.k8s.io",
    "gateways.gateway.networking.k8s.io",
    "httproutes.gateway.networking.k8s.io",
    "grpcroutes.gateway.networking.k8s.io",
    "referencegrants.gateway.networking.k8s.io",
)


def manifests(version: str = GATEWAY_API_VERSION) -> list[dict]:
    """The standard-channel documents of ``gateway-api@version``: CRDs first, then the rest."""
    folder = go_module_dir(MODULE, version) / "config" / "crd" / "standard"
    docs = [d for f in sorted(Path(folder).glob("*.yaml")) for d in load_yaml_docs(f)]
    return sorted(docs, key=lambda d: d.get("kind") != "CustomResourceDefinition")


def start(sb: SandboxHandle, bins: dict[str, Path]) -> list[Process]:
    sb.apply(manifests())
    return []


def wait_ready(sb: SandboxHandle, timeout_s: float = 60.0) -> None:
    def established() -> tuple[bool, str]:
        missing = []
        for name in CORE_CRDS:
            crd = kube_json(sb, "get", "crd", name)
            conds = {c["type"]: c["status"] for c in crd.get("status", {}).get("conditions", [])}
            if conds.get("Established") != "True":
                missing.append(name)
        return not missing, "not Established: " + ", ".join(missing)

    wait_for("Gateway API CRDs to be Established", established, timeout_s=timeout_s)


ADDON = Addon(
    name="gateway-api",
    summary=f"Gateway API {GATEWAY_API_VERSION} standard CRDs (no data plane)",
    components=(),
    start=start,
    wait_ready=wait_ready,
)
