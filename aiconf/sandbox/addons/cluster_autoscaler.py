"""cluster-autoscaler with its kwok cloud provider: not available in this environment, so no add-on is registered.

Node autoscaling in the sandbox comes from Karpenter's kwok provider instead (:mod:`.karpenter`, add-on
``karpenter``).

The Go module proxy refuses the module outright (checked 2026-11-28 with Go 1.26.8, GOPROXY=proxy.golang.org)::

    $ go mod download -json k8s.io/autoscaler/cluster-autoscaler@v0.0.0-20260722070747-35e8a280425c
    reading https://proxy.golang.org/k8s.io/autoscaler/cluster-autoscaler/@v/v0.0.0-20260722070747-35e8a280425c.info:
    403 Forbidden  server response: This module version is not available.
    $ go list -m -json k8s.io/autoscaler/cluster-autoscaler@latest
    reading https://proxy.golang.org/k8s.io/autoscaler/cluster-autoscaler/@v/list: 403 Forbidden
    server response: This module version is not available.

(``k8s.io/autoscaler/cluster-autoscaler/apis`` at the same pseudo-version is refused the same way.) The source
cannot be had any other way here, so the planned wiring is recorded for when it can be built:

* build: wrapper module requiring ``k8s.io/autoscaler/cluster-autoscaler@v0.0.0-20260722070747-35e8a280425c``
  (= cluster-autoscaler-1.36.1), upstream's replace block copied, ``.../apis`` required at the same commit,
  ``-tags kwok``;
* run: ``KWOK_PROVIDER_MODE=local POD_NAMESPACE=kube-system cluster-autoscaler --kubeconfig KC
  --cloud-provider=kwok --namespace=kube-system --leader-elect=false --scan-interval=10s
  --scale-down-unneeded-time=1m --scale-down-delay-after-add=1m --max-node-provision-time=2m``
  (plus ``--address=127.0.0.1:<free port>``);
* ConfigMaps in kube-system: ``kwok-provider-config`` (``readNodesFrom: configmap``,
  ``nodegroups.fromNodeLabelKey: cluster-autoscaler.kwok.nodegroup/name``) and ``kwok-provider-templates`` (a v1
  List with one GPU node template: ``nvidia.com/gpu`` allocatable, label ``nvidia.com/gpu.present=true``,
  annotations ``cluster-autoscaler.kwok.nodegroup/min-count: "0"`` / ``max-count: "2"``).
"""

from __future__ import annotations

UNAVAILABLE_REASON = (
    "k8s.io/autoscaler/cluster-autoscaler is refused by the Go module proxy "
    "(403 'This module version is not available' for @v/list and for v0.0.0-20260722070747-35e8a280425c)"
)
