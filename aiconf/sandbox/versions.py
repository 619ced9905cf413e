"""The pinned upstream components of the sandbox, as data. Change a version here and the cache key changes."""

from __future__ import annotations

from aiconf.sandbox.gobuild import GoComponent, kube_version_ldflags

KUBERNETES_VERSION = "v1.36.3"
KUBERNETES_STAGING_VERSION = "v0.36.3"
ETCD_VERSION = "v3.6.13"
KWOK_VERSION = "v0.8.0"

KUBE = GoComponent(
    name="kube",
    module="k8s.io/kubernetes",
    version=KUBERNETES_VERSION,
    packages=tuple(
        f"k8s.io/kubernetes/cmd/{cmd}"
        for cmd in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy")
    ),
    staging_replaces_from="k8s.io/kubernetes",
    staging_version=KUBERNETES_STAGING_VERSION,
    ldflags=kube_version_ldflags(KUBERNETES_VERSION),
)

ETCD = GoComponent(
    name="etcd",
    module="go.etcd.io/etcd/server/v3",
    version=ETCD_VERSION,
    # etcd's own main package sits in a module with local replaces; etcdmain.Main is the same entry point.
    main_go='package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n',
    binary_names=("etcd",),
)

KWOK = GoComponent(
    name="kwok",
    module="sigs.k8s.io/kwok",
    version=KWOK_VERSION,
    packages=("sigs.k8s.io/kwok/cmd/kwok",),
)

CORE = (KUBE, ETCD, KWOK)
