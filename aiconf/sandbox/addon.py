"""The contract between the sandbox runtime and its add-ons (Kueue, KubeRay, metrics adapter, autoscaler, ...).

An add-on is data plus two functions: what it needs built, and how to start it against a running control plane.
The runtime (``aiconf.sandbox.cluster``) owns processes: it launches the :class:`Process` entries an add-on returns,
records their PIDs, logs and ports, and stops them on ``down``. Add-ons never fork processes themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from aiconf.sandbox.gobuild import GoComponent


@dataclass(frozen=True)
class Process:
    """A long-running process the runtime starts, tracks by PID and stops.

    Attributes:
        name: unique within the sandbox; names the log file ``logs/<name>.log`` and the pid file.
        argv: full command line (absolute binary path first).
        env: extra environment (merged over a minimal base environment).
        cwd: working directory (defaults to the sandbox state dir).
        ready: called repeatedly (bounded by ``ready_timeout_s``) until it returns True; None = started is ready.
        ready_timeout_s: bound for ``ready``.
        netns: run inside this network namespace (``nsenter --net=/run/netns/<netns>``), or on the host.
        depends_on: names of processes that must be ready first.
    """

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    ready: Callable[[], bool] | None = None
    ready_timeout_s: float = 60.0
    netns: str | None = None
    depends_on: tuple[str, ...] = ()


class SandboxHandle(Protocol):
    """What an add-on may use of a running sandbox."""

    state_dir: Path  #: the sandbox's state folder (add-ons keep their files under ``state_dir/<addon name>/``)
    kubeconfig: Path  #: admin kubeconfig (system:masters)
    ca_cert: Path  #: cluster CA certificate (PEM); also trusted by the API server for webhooks signed by it
    ca_key: Path  #: cluster CA key, for issuing serving certificates

    def issue_cert(
        self, name: str, *, dns_names: list[str] = (), ip_addresses: list[str] = (), client: bool = False
    ) -> tuple[Path, Path]:
        """Issue a cert signed by the cluster CA; returns (cert path, key path) under ``state_dir/pki/``."""

    def free_port(self) -> int:
        """A free TCP port on 127.0.0.1, not handed out before in this sandbox."""

    def apply(self, docs: list[dict], *, field_manager: str = "aiconf-sandbox") -> None:
        """Server-side apply of manifests (CRDs first is the caller's job); waits for CRDs to be Established."""

    def kubectl(self, *args: str, input: str | None = None) -> str:
        """Run kubectl against the sandbox; raises SandboxError on failure; returns stdout."""


@dataclass(frozen=True)
class Addon:
    """A sandbox add-on.

    Attributes:
        name: short id used by ``aiconf sandbox up --addons``.
        summary: one line for ``aiconf sandbox status``.
        components: Go builds it needs (built by ``aiconf sandbox build``).
        start: given the running sandbox and ``{binary name: path}`` of the built components, installs what it
            needs in the cluster (CRDs, webhook configurations, APIServices, ...) and returns processes to launch.
        wait_ready: after its processes are ready, waits (bounded) until the add-on is usable from the API
            (webhook answering, APIService Available, ...); raises SandboxError with the reason otherwise.
        default: started by ``aiconf sandbox up`` without ``--addons``.
    """

    name: str
    summary: str
    components: tuple[GoComponent, ...]
    start: Callable[[SandboxHandle, dict[str, Path]], list[Process]]
    wait_ready: Callable[[SandboxHandle], None] = lambda sb: None
    default: bool = True
