"""``aiconf sandbox …`` (also ``python -m aiconf.sandbox …``): build, start, inspect and stop the local cluster.

Commands: ``build``, ``up``, ``down``, ``status``, ``logs COMPONENT``, ``kubeconfig``, ``plan`` (dry run of ``up``).
The state dir is ``--state-dir``, else ``$AICONF_SANDBOX_DIR``, else ``~/.local/share/aiconf/sandbox``. Errors are one
line on stderr and exit code 2; ``--debug`` shows the traceback. Progress goes to stderr, results to stdout.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import click

from aiconf.errors import AiconfError, ConfigError


def _addons_module():
    """``aiconf.sandbox.addons`` if present (written separately); None otherwise."""
    try:
        from aiconf.sandbox import addons
    except ImportError:
        return None
    return addons


def _all_addons() -> dict:
    mod = _addons_module()
    if mod is None:
        return {}
    catalogue = getattr(mod, "ALL", {})
    if isinstance(catalogue, dict):
        return dict(catalogue)
    return {a.name: a for a in catalogue}


def resolve_addons(names: str | None, no_addons: bool) -> list:
    """Add-on objects for ``--addons a,b`` (in catalogue order), none for ``--no-addons``, else the defaults."""
    catalogue = _all_addons()
    if no_addons:
        return []
    if names is None:
        mod = _addons_module()
        default = getattr(mod, "DEFAULT", None) if mod else None
        if default is None:
            return [a for a in catalogue.values() if getattr(a, "default", False)]
        return [catalogue[n] for n in default if n in catalogue]
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in catalogue]
    if unknown:
        have = ", ".join(catalogue) or "none installed"
        raise ConfigError(f"unknown add-on(s) {', '.join(unknown)} (available: {have})")
    return [a for n, a in catalogue.items() if n in wanted]


class _Group(click.Group):
    """Turns AiconfError into one stderr line and exit 2 (tracebacks only with --debug)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except AiconfError as e:
            if ctx.find_root().params.get("debug") or (ctx.obj or {}).get("debug"):
                raise
            # One line; a startup failure appends the dead component's last log lines after it.
            click.echo(f"error: {e}", err=True)
            ctx.exit(e.exit_code)


def _sandbox(ctx: click.Context):
    from aiconf.sandbox.cluster import Sandbox

    return Sandbox(ctx.obj.get("state_dir"), progress=lambda m: click.echo(m, err=True))


@click.group("sandbox", cls=_Group)
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), envvar="AICONF_SANDBOX_DIR",
              help="Sandbox folder (default $AICONF_SANDBOX_DIR or ~/.local/share/aiconf/sandbox).")
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
@click.pass_context
def sandbox(ctx: click.Context, state_dir: Path | None, debug: bool) -> None:
    """A local Kubernetes with fake NVIDIA GPU nodes, built from upstream sources (no Docker, no images)."""
    ctx.ensure_object(dict)
    ctx.obj.setdefault("state_dir", state_dir)
    ctx.obj["debug"] = ctx.obj.get("debug") or debug


#: Whether ``up``/``plan`` start the real node unless told (--real-node/--no-real-node): one kubelet + containerd
#: node with simulated GPUs beside the kwok nodes (aiconf.sandbox.realnode; needs root and the Debian packages
#: make setup installs).
REAL_NODE_DEFAULT = True


def _real_node(real_node: bool, gpus: int, gpu_replicas: int = 1):
    from aiconf.sandbox.realnode import RealNodeSpec

    return RealNodeSpec(gpus=gpus, gpu_replicas=gpu_replicas) if real_node else False


def _node_options(f):
    f = click.option("--real-node-gpus", type=click.IntRange(0, 16), default=2, show_default=True,
                     help="Simulated GPUs the real node's device plugin advertises.")(f)
    f = click.option("--real-node-gpu-replicas", type=click.IntRange(1, 16), default=1, show_default=True,
                     help="Time-slicing replicas per real-node GPU (1: no sharing; N: GPUs x N units, GFD-style "
                     "time-slicing labels).")(f)
    f = click.option("--real-node/--no-real-node", default=REAL_NODE_DEFAULT, show_default=True,
                     help="Also run one real node (kubelet + containerd + runc in its own network namespace).")(f)
    f = click.option("--gpu-taint", is_flag=True, help="Taint GPU nodes nvidia.com/gpu:NoSchedule.")(f)
    f = click.option("--cpu-nodes", type=click.IntRange(0, 64), default=1, show_default=True)(f)
    f = click.option("--gpus-per-node", type=click.IntRange(1, 64), default=8, show_default=True)(f)
    f = click.option("--gpu-nodes", type=click.IntRange(0, 64), default=2, show_default=True)(f)
    f = click.option("--addons", "addon_names", metavar="A,B", default=None,
                     help="Add-ons to start (default: the default set; see `status`).")(f)
    f = click.option("--no-addons", is_flag=True, help="Start no add-ons.")(f)
    return f


@sandbox.command()
@click.option("--addons", "addon_names", metavar="A,B", default=None, help="Add-ons to build (default: all).")
@click.option("--no-addons", is_flag=True, help="Build only the control plane.")
@click.pass_context
def build(ctx: click.Context, addon_names: str | None, no_addons: bool) -> None:
    """Compile the control plane (and add-on) binaries that are not cached yet."""
    addons = [] if no_addons else (resolve_addons(addon_names, False) if addon_names else list(_all_addons().values()))
    bins = _sandbox(ctx).build(addons=addons)
    for name, path in sorted(bins.items()):
        click.echo(f"{name}\t{path}")


@sandbox.command()
@_node_options
@click.pass_context
def up(ctx: click.Context, gpu_nodes: int, gpus_per_node: int, cpu_nodes: int, gpu_taint: bool,
       addon_names: str | None, no_addons: bool, real_node: bool, real_node_gpus: int,
       real_node_gpu_replicas: int) -> None:
    """Start the sandbox (says so and exits 0 if it already runs)."""
    addons = resolve_addons(addon_names, no_addons)
    sb = _sandbox(ctx)
    # SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C, so a half-started sandbox is stopped, not orphaned.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    st = sb.up(gpu_nodes=gpu_nodes, gpus_per_node=gpus_per_node, cpu_nodes=cpu_nodes, gpu_taint=gpu_taint,
               addons=addons, real_node=_real_node(real_node, real_node_gpus, real_node_gpu_replicas))
    if st.get("already_up"):
        click.echo(f"sandbox already up ({sb.state_dir})")
    click.echo(f"export KUBECONFIG={sb.kubeconfig}")


@sandbox.command()
@click.pass_context
def down(ctx: click.Context) -> None:
    """Stop every sandbox process, remove its routes and delete its state dir."""
    _sandbox(ctx).down()


@sandbox.command()
@click.option("--json", "as_json", is_flag=True, help="Print the full status as JSON.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Show what runs (exit 0 when running, 1 otherwise)."""
    st = _sandbox(ctx).status()
    if as_json:
        click.echo(json.dumps(st, indent=2))
    else:
        click.echo(f"state: {st['state']}  ({st['state_dir']})")
        if st["state"] != "absent":
            click.echo(f"api: {st.get('apiserver', '-')}  ready: {st.get('api_ready')}")
            click.echo(f"kubeconfig: {st.get('kubeconfig')}")
            v = st.get("versions", {})
            click.echo("versions: " + ", ".join(f"{k} {val}" for k, val in v.items()))
            n = st.get("nodes", {})
            if n:
                click.echo(f"nodes: {n.get('gpu_nodes')} GPU x {n.get('gpus_per_node')} + {n.get('cpu_nodes')} CPU"
                           f"{' (GPU taint)' if n.get('gpu_taint') else ''}; pod CIDR {st.get('pod_cidr')}")
            rn = st.get("real_node")
            if rn:
                t = rn.get("timings", {})
                click.echo(f"real node: {rn.get('node')} {rn.get('node_ip')} pods {rn.get('pod_cidr')} "
                           f"GPUs {rn.get('gpus')}"
                           + (f" x {rn['gpu_replicas']} replicas" if (rn.get("gpu_replicas") or 1) > 1 else "")
                           + f"; Ready {t.get('node_ready_s', '-')}s after kubelet start")
            for name, p in st.get("processes", {}).items():
                click.echo(f"  {name:<28} pid {p.get('pid'):<8} {'alive' if p['alive'] else 'DEAD'}")
            names = [a["name"] for a in st.get("addons", [])]
            click.echo("add-ons: " + (", ".join(names) or "none"))
        cat = _all_addons()
        if cat:
            click.echo("available add-ons: " + ", ".join(
                f"{n}{'*' if getattr(a, 'default', False) else ''}" for n, a in cat.items()) + "  (* = default)")
    ctx.exit(0 if st["state"] == "running" else 1)


@sandbox.command()
@click.argument("component")
@click.option("--tail", "tail_lines", type=click.IntRange(1), default=None, help="Only the last N lines.")
@click.pass_context
def logs(ctx: click.Context, component: str, tail_lines: int | None) -> None:
    """Print a process's log (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok, add-ons)."""
    click.echo(_sandbox(ctx).logs(component, tail_lines), nl=False)


@sandbox.command()
@click.pass_context
def kubeconfig(ctx: click.Context) -> None:
    """Print the admin kubeconfig's path."""
    click.echo(str(_sandbox(ctx).kubeconfig))


@sandbox.command()
@_node_options
@click.pass_context
def plan(ctx: click.Context, gpu_nodes: int, gpus_per_node: int, cpu_nodes: int, gpu_taint: bool,
         addon_names: str | None, no_addons: bool, real_node: bool, real_node_gpus: int,
         real_node_gpu_replicas: int) -> None:
    """Print what `up` would do (folders, files, routes, argv); changes nothing."""
    addons = resolve_addons(addon_names, no_addons)
    for line in _sandbox(ctx).plan(gpu_nodes=gpu_nodes, gpus_per_node=gpus_per_node, cpu_nodes=cpu_nodes,
                                   gpu_taint=gpu_taint, addons=addons,
                                   real_node=_real_node(real_node, real_node_gpus, real_node_gpu_replicas)):
        click.echo(line)


def main(argv: list[str] | None = None) -> None:
    sandbox.main(args=argv, prog_name="aiconf sandbox")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
