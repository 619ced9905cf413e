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

# --- the real node (aiconf/sandbox/realnode.py) ---------------------------------------------------------------------
# kubelet and kube-proxy come from KUBE above; containerd, runc and the CNI plugins are Debian packages.

COREDNS_VERSION = "v1.14.7"

# A CoreDNS with only the plugins the sandbox uses (the full build pulls every cloud provider's SDK). Cluster names
# only: no `forward` plugin, so a name outside cluster.local is never sent anywhere.
_COREDNS_MAIN = """package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
	"github.com/coredns/coredns/coremain"
)

// The plugin.cfg order, restricted to the plugins compiled in.
var directives = []string{"bind", "ready", "health", "errors", "log", "cache", "kubernetes"}

func init() { dnsserver.Directives = directives }

func main() { coremain.Run() }
"""

COREDNS = GoComponent(
    name="coredns",
    module="github.com/coredns/coredns",
    version=COREDNS_VERSION,
    main_go=_COREDNS_MAIN,
    binary_names=("coredns",),
)

#: What the real node builds besides CORE (`aiconf sandbox build` builds it too).
REAL_NODE = (COREDNS,)
