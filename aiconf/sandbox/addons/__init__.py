"""The sandbox add-ons: upstream components (and one project-written adapter) wired to the local control plane.

``ALL`` maps add-on name to :class:`~aiconf.sandbox.addon.Addon`, in the order the runtime should start them:
CRD-only add-ons first, KubeRay before Kueue (Kueue enables its Ray integration only when the RayCluster CRD
exists when it starts). ``DEFAULT`` lists the names started by ``aiconf sandbox up`` without ``--addons``.

cluster-autoscaler is absent: the Go module proxy refuses it (see :mod:`.cluster_autoscaler`). Node autoscaling
comes from ``karpenter`` (Karpenter's kwok provider), not started by default.

``prometheus`` and ``traefik`` serve the real node (monitoring and the Gateway data plane): they are default
add-ons but start nothing when the sandbox runs without ``--real-node`` (their ``start`` records why and returns
no process).
"""

from __future__ import annotations

from aiconf.sandbox.addon import Addon
from aiconf.sandbox.addons import custom_metrics, gatewayapi, karpenter, kuberay, kueue, prometheus, traefik

ALL: dict[str, Addon] = {
    a.name: a
    for a in (
        gatewayapi.ADDON,
        kuberay.ADDON,
        kueue.ADDON,
        custom_metrics.ADDON,
        karpenter.ADDON,
        prometheus.ADDON,
        traefik.ADDON,
    )
}
DEFAULT: tuple[str, ...] = tuple(name for name, a in ALL.items() if a.default)

__all__ = ["ALL", "DEFAULT"]
