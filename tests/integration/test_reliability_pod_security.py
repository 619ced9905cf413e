"""The API server's own Pod Security admission accepts every pod template the checks build at the ``restricted``
level (issue 9, "workloads the toolkit creates"): each template becomes a Pod created with a server-side dry run in
a namespace that *enforces* restricted. tests/unit/test_reliability_security_contexts.py inspects the same templates
without a cluster; this asks the real admission plugin.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

from aiconf.errors import ForbiddenError
from aiconf.kube import Kube

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from test_reliability_security_contexts import EXEMPT, templates

pytestmark = pytest.mark.sandbox


@pytest.fixture(scope="module")
def restricted_namespace(kube_sandbox):
    kube = Kube.connect(str(kube_sandbox.kubeconfig))
    name = f"aiconf-psa-{uuid.uuid4().hex[:6]}"
    kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {
        "pod-security.kubernetes.io/enforce": "restricted", "app.kubernetes.io/managed-by": "aiconf",
        "aiconf.io/run-id": f"itest-psa-{name[-6:]}"}}})
    yield kube, name
    kube.delete_namespace(name, 120)


def test_restricted_pod_security_admits_every_template(restricted_namespace):
    kube, ns = restricted_namespace
    admitted, refused = [], []
    for builder, specs in templates("sandbox").items():
        for i, spec in enumerate(specs):
            # Pod Security is the question here: a ServiceAccount the check creates beside its pod (the endpoint
            # picker's) does not exist in this namespace, and the ServiceAccount admission would refuse the pod for it.
            spec = {k: v for k, v in spec.items() if k != "serviceAccountName"}
            pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"{builder.replace('_', '-')}-{i}",
                                                                   "namespace": ns}, "spec": spec}
            try:
                kube.create(pod, dry_run=True)
                admitted.append(f"{builder}[{i}]")
            except ForbiddenError as e:
                refused.append(f"{builder}[{i}]: {e.detail}")
    # readOnlyRootFilesystem is not part of the restricted level: the RayCluster exemption does not matter here.
    assert EXEMPT and all(setting == "readOnlyRootFilesystem" for _, setting in EXEMPT)
    assert refused == [], refused
    print(f"\n[measure] restricted Pod Security admitted {len(admitted)} pod templates: {', '.join(admitted)}")


def test_a_privileged_pod_is_refused_there(restricted_namespace):
    """The namespace really enforces: the same dry run of a root pod is refused."""
    kube, ns = restricted_namespace
    with pytest.raises(ForbiddenError) as err:
        kube.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "root", "namespace": ns},
                     "spec": {"containers": [{"name": "c", "image": "busybox", "securityContext": {"privileged": True}}]}},
                    dry_run=True)
    assert "restricted" in err.value.detail
