"""Integration fixtures: one cluster per test session.

``kube_sandbox`` is the cluster every ``@pytest.mark.sandbox`` test uses:

- with ``AICONF_TEST_KUBECONFIG`` set, that cluster (nothing is started or stopped; ``.sandbox`` is None);
- otherwise a fresh :class:`~aiconf.sandbox.cluster.Sandbox` in a temporary state dir, started once with 2 GPU
  nodes x 8 GPUs + 1 CPU node (no add-ons), and stopped (``down``) at the end of the session.
  ``AICONF_TEST_SANDBOX_ADDONS=a,b`` starts those add-ons too; ``AICONF_KEEP_SANDBOX=1`` leaves it running and
  prints its kubeconfig. The sandbox also runs its real node (kubelet + containerd, 2 simulated GPUs, tainted so
  only pods that ask land there; see aiconf.sandbox.realnode) unless ``AICONF_TEST_REAL_NODE=0``.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from aiconf.kube import Kube
from aiconf.sandbox.cluster import Sandbox

RBAC = Path(__file__).resolve().parents[2] / "rbac"
#: The shipped least-privilege role and its binding example.
ROLE = yaml.safe_load((RBAC / "aiconf-clusterrole.yaml").read_text())
BINDING_DOCS = list(yaml.safe_load_all((RBAC / "aiconf-binding.yaml").read_text()))
SA_NAMESPACE = "aiconf"


@dataclass
class KubeSandbox:
    """What tests get: the kubeconfig path and, when the session started it, the Sandbox object."""

    kubeconfig: Path
    sandbox: Sandbox | None

    def api_client(self):
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))


@pytest.fixture(scope="session")
def kube_sandbox(tmp_path_factory) -> KubeSandbox:
    external = os.environ.get("AICONF_TEST_KUBECONFIG")
    if external:
        yield KubeSandbox(Path(external), None)
        return
    from aiconf.sandbox.cli import resolve_addons

    names = os.environ.get("AICONF_TEST_SANDBOX_ADDONS") or None  # None = the default add-ons
    addons = resolve_addons(None if names == "none" else names, no_addons=names == "none")
    state_dir = tmp_path_factory.mktemp("sandbox") / "state"
    sb = Sandbox(state_dir, progress=lambda m: print(m, file=sys.stderr, flush=True))
    real_node = os.environ.get("AICONF_TEST_REAL_NODE", "1") != "0"
    sb.up(gpu_nodes=2, gpus_per_node=8, cpu_nodes=1, addons=addons, real_node=real_node)
    try:
        yield KubeSandbox(sb.kubeconfig, sb)
    finally:
        if os.environ.get("AICONF_KEEP_SANDBOX"):
            print(f"\nkeeping sandbox: export KUBECONFIG={sb.kubeconfig}", file=sys.stderr)
        else:
            sb.down()


@pytest.fixture(scope="session")
def admin(kube_sandbox) -> Kube:
    """The sandbox as cluster-admin (its own kubeconfig)."""
    return Kube.connect(str(kube_sandbox.kubeconfig))


class ServiceAccounts:
    """ServiceAccounts bound to roles the way rbac/aiconf-binding.yaml shows, and kubeconfigs with their tokens."""

    def __init__(self, kube_sandbox: KubeSandbox, admin: Kube):
        self.kube_sandbox, self.admin = kube_sandbox, admin

    def bind(self, sa: str, role: dict) -> None:
        """The binding example (namespace, ServiceAccount, ClusterRoleBinding), renamed to ``sa``, bound to ``role``."""
        self.admin.apply(role)
        for doc in copy.deepcopy(BINDING_DOCS):
            if doc["kind"] == "ServiceAccount":
                doc["metadata"]["name"] = sa
            elif doc["kind"] == "ClusterRoleBinding":
                doc["metadata"]["name"] = sa
                doc["roleRef"]["name"] = role["metadata"]["name"]
                doc["subjects"][0]["name"] = sa
            self.admin.apply(doc)

    def unbind(self, sa: str, role_name: str) -> None:
        self.admin.delete("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", sa)
        self.admin.delete("rbac.authorization.k8s.io/v1", "ClusterRole", role_name)
        self.admin.delete("v1", "ServiceAccount", sa, SA_NAMESPACE)

    def kubeconfig(self, sa: str, path: Path) -> tuple[Path, str]:
        """A kubeconfig that authenticates with a fresh token of ServiceAccount ``sa`` (TokenRequest, 2 h)."""
        answer = self.admin.raw("POST", f"/api/v1/namespaces/{SA_NAMESPACE}/serviceaccounts/{sa}/token",
                                {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                 "spec": {"expirationSeconds": 7200}})
        token = answer["status"]["token"]
        cluster = yaml.safe_load(Path(self.kube_sandbox.kubeconfig).read_text())["clusters"][0]
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "sandbox", "cluster": cluster["cluster"]}],
            "users": [{"name": sa, "user": {"token": token}}],
            "contexts": [{"name": sa, "context": {"cluster": "sandbox", "user": sa}}],
            "current-context": sa,
        }))
        path.chmod(0o600)
        return path, token


@pytest.fixture(scope="session")
def service_accounts(kube_sandbox, admin) -> ServiceAccounts:
    return ServiceAccounts(kube_sandbox, admin)


@pytest.fixture(scope="session")
def sa_kubeconfig(service_accounts, admin, tmp_path_factory):
    """(kubeconfig, token) of ServiceAccount aiconf/aiconf bound to exactly the shipped role and binding."""
    service_accounts.bind("aiconf", ROLE)
    try:
        yield service_accounts.kubeconfig("aiconf", tmp_path_factory.mktemp("sa") / "kubeconfig")
    finally:
        service_accounts.unbind("aiconf", "aiconf")
        admin.delete_namespace(SA_NAMESPACE, 120)


class NodeWatcher:
    """Every node name and address the cluster shows while a run goes on (autoscaled nodes come and go)."""

    def __init__(self, kube: Kube):
        self.kube, self.names, self.addresses = kube, set(), set()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self.stop.is_set():
            try:
                for n in self.kube.list("v1", "Node"):
                    self.names.add(n["metadata"]["name"])
                    self.addresses |= {a["address"] for a in (n.get("status") or {}).get("addresses") or []
                                       if a.get("type") in ("InternalIP", "ExternalIP")}
            except Exception:
                pass
            self.stop.wait(1)

    def __enter__(self) -> NodeWatcher:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(10)


@dataclass
class SuiteRun:
    proc: subprocess.CompletedProcess
    run_dir: Path
    files: dict[Path, bytes]
    nodes: NodeWatcher
    kubeconfig: Path
    token: str
    seconds: float


@pytest.fixture(scope="session")
def whole_suite_run(kube_sandbox, admin, sa_kubeconfig, tmp_path_factory) -> SuiteRun:
    """The whole suite, once per test session (it is the slowest thing CI does): as the least-privilege
    ServiceAccount, with ``redact=true``, the HTML report included, while every node name is recorded.
    tests/integration/test_rbac.py and test_reliability_secrets.py assert on it."""
    kubeconfig, token = sa_kubeconfig
    out = tmp_path_factory.mktemp("whole-suite")
    started = time.monotonic()
    with NodeWatcher(admin) as nodes:
        proc = subprocess.run(
            [sys.executable, "-m", "aiconf.cli", "run", "--profile", "sandbox", "--kubeconfig", str(kubeconfig),
             "--set", "redact=true", "--parallel", "2", "--output", str(out)],
            check=False, capture_output=True, text=True, timeout=1800, env={**os.environ, "MPLBACKEND": "Agg"},
        )
    seconds = time.monotonic() - started
    print(f"\n[measure] full suite as the ServiceAccount, redacted: {seconds:.0f}s, exit {proc.returncode}",
          file=sys.stderr)
    assert proc.returncode in (0, 1) and "Traceback" not in proc.stderr, proc.stderr
    run_dir = out / re.search(r"\[aiconf\] run (\S+):", proc.stderr).group(1)
    files = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    return SuiteRun(proc, run_dir, files, nodes, kubeconfig, token, seconds)
