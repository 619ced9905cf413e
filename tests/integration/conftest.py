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

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from aiconf.sandbox.cluster import Sandbox


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
