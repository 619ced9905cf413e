"""The ``aiconf`` command line: run, plan, list, cleanup, sandbox, report, compare, submission.

Bad input gets one clear line on stderr and exit code 2; tracebacks only with ``--debug``.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import Any

import click

from aiconf import __version__
from aiconf.errors import AiconfError


class AiconfGroup(click.Group):
    """Turns toolkit errors into one line + exit 2 (and click usage errors into exit 2 as well)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AiconfError as e:
            if ctx.obj and ctx.obj.get("debug"):
                traceback.print_exc()
            click.echo(f"aiconf: error: {e}", err=True)
            sys.exit(e.exit_code)
        except click.UsageError as e:
            # click prints usage, a blank line and the error: keep to one line, like every other bad input.
            names, c = [], e.ctx
            while c is not None and c.parent is not None:
                names.insert(0, c.info_name)
                c = c.parent
            click.echo(f"aiconf: error: {e.format_message()} (see `{' '.join(['aiconf', *names, '--help'])}`)", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            # Before the runner installs its handlers (connecting, planning) nothing has been created yet.
            if ctx.obj and ctx.obj.get("debug"):
                traceback.print_exc()
            click.echo("aiconf: interrupted", err=True)
            sys.exit(130)


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _split_ids(values: tuple[str, ...]) -> list[str]:
    return [x.strip() for v in values for x in v.split(",") if x.strip()]


def _params(profile: str | None, sets: tuple[str, ...], kubeconfig: str | None, context: str | None,
            checklist_version: str | None = None) -> Any:
    from aiconf.params import load_parameters

    overrides = list(sets)
    if kubeconfig:
        overrides.append(f"kubeconfig={kubeconfig}")
    if context:
        overrides.append(f"context={context}")
    if checklist_version:
        overrides.append(f"checklist_version={checklist_version}")
    params = load_parameters(profile, overrides)
    if params.checklist_version:
        from aiconf import checklists

        checklists.load().check_version(params.checklist_version)  # bad input first, before the cluster
    if params.kubeconfig and params.kubeconfig.startswith("~"):
        params = params.replace(kubeconfig=str(Path(params.kubeconfig).expanduser()))
    return params


cluster_options = [
    click.option("--profile", "-p", default=None, help="parameter profile (parameters/<name>.yaml) or a YAML file"),
    click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="override a parameter (repeatable)"),
    click.option("--kubeconfig", default=None, help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)"),
    click.option("--context", default=None, help="kubeconfig context (default: current)"),
    click.option("--checklist-version", default=None, help="1.33..1.36 (default: from the server version)"),
]


def with_cluster_options(fn: Any) -> Any:
    for option in reversed(cluster_options):
        fn = option(fn)
    return fn


@click.group(cls=AiconfGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="show tracebacks")
@click.version_option(__version__, prog_name="aiconf")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Evidence that a Kubernetes cluster meets the CNCF Kubernetes AI Conformance checklist (1.33-1.36)."""
    ctx.ensure_object(dict)["debug"] = debug


@main.command()
@with_cluster_options
@click.option("--only", multiple=True, help="requirement ids to run (comma-separated or repeated)")
@click.option("--skip", multiple=True, help="requirement ids to leave out")
@click.option("--parallel", default=1, show_default=True, type=click.IntRange(1, 8), help="notebooks at once")
@click.option("--output", default="outputs", show_default=True, type=click.Path(file_okay=False), help="runs folder")
@click.option("--timeout", "timeout_s", default=1800, show_default=True, type=click.IntRange(10), help="seconds per notebook")
@click.option("--no-report", is_flag=True, help="skip the HTML report")
def run(profile: str | None, sets: tuple[str, ...], kubeconfig: str | None, context: str | None,
        checklist_version: str | None, only: tuple[str, ...], skip: tuple[str, ...], parallel: int, output: str,
        timeout_s: int, no_report: bool) -> None:
    """Run the requirement notebooks against a cluster and write outputs/<run-id>/."""
    import signal

    from aiconf import runner

    signal.signal(signal.SIGTERM, _terminate)  # like Ctrl-C until the runner takes over (exit 130, not -15)
    params = _params(profile, sets, kubeconfig, context, checklist_version)
    code = runner.run(params, only=_split_ids(only) or None, skip=_split_ids(skip) or None, parallel=parallel,
                      output=output, timeout_s=timeout_s, profile=profile or "", report=not no_report)
    sys.exit(code)


@main.command()
@with_cluster_options
@click.option("--only", multiple=True)
@click.option("--skip", multiple=True)
def plan(profile: str | None, sets: tuple[str, ...], kubeconfig: str | None, context: str | None,
         checklist_version: str | None, only: tuple[str, ...], skip: tuple[str, ...]) -> None:
    """Show what a run would check on this cluster, and whether it can demonstrate each requirement.

    Creates nothing.
    """
    from aiconf import checklists, registry, runner
    from aiconf.execute import connect

    params = _params(profile, sets, kubeconfig, context, checklist_version)
    kube = connect(params)
    p = runner.plan_run(params, only=_split_ids(only) or None, skip=_split_ids(skip) or None, kube=kube)
    checklist = checklists.load()
    server = kube.version().get("gitVersion", "?")
    click.echo(f"cluster {kube.server} (Kubernetes {server}) -> checklist {p.checklist_version}")
    click.echo(f"{'requirement':<28} {'level':<7} {'can demonstrate':<16} detail")
    for rid in p.selected + p.not_automated:
        req = checklist.get(rid)
        level = req.level(p.checklist_version) or "info"
        if rid in p.not_automated:
            ok, detail = None, "no automated check yet: manual evidence"
        else:
            spec = registry.get(rid)
            if spec.preflight is None:
                ok, detail = None, "needs: " + ", ".join(req.needs)
            else:
                try:
                    ok, detail = spec.preflight(kube, params)
                except AiconfError:
                    raise
                except Exception as e:
                    ok, detail = False, f"preflight error: {type(e).__name__}: {e}"
        mark = {True: "yes", False: "no", None: "?"}[ok]
        click.echo(f"{rid:<28} {level:<7} {mark:<16} {detail}")
    for rid in p.not_selected:
        click.echo(f"{rid:<28} {checklist.get(rid).level(p.checklist_version):<7} {'(not selected)':<16}")


@main.command("list")
@click.option("--checklist-version", default=None, help="only this version")
def list_requirements(checklist_version: str | None) -> None:
    """List the requirements of each checklist version and which have automated checks."""
    from aiconf import checklists, registry

    cl = checklists.load()
    versions = [cl.check_version(checklist_version)] if checklist_version else list(cl.versions)
    implemented = set(registry.implemented())
    click.echo(f"{'requirement':<28} {'category':<25} " + " ".join(f"{v:<6}" for v in versions) + " automated")
    for r in cl.requirements:
        levels = " ".join(f"{(r.level(v) or '-'):<6}" for v in versions)
        click.echo(f"{r.id:<28} {r.category:<25} {levels} {'yes' if r.id in implemented else 'no'}")


@main.command()
@click.option("--run-id", default=None, help="remove what this run left")
@click.option("--all", "all_runs", is_flag=True, help="remove what any run left")
@click.option("--dry-run", is_flag=True, help="only list what would be removed")
@click.option("--kubeconfig", default=None)
@click.option("--context", default=None)
@click.option("--profile", "-p", default=None)
def cleanup(run_id: str | None, all_runs: bool, dry_run: bool, kubeconfig: str | None, context: str | None,
            profile: str | None) -> None:
    """Find and remove objects labelled by earlier runs (namespaces and cluster-scoped objects)."""
    from aiconf import cleanup as sweep
    from aiconf.errors import ConfigError
    from aiconf.execute import connect

    if not run_id and not all_runs:
        raise ConfigError("say which runs to clean: --run-id ID or --all")
    params = _params(profile, (), kubeconfig, context)
    kube = connect(params)
    left = sweep.find_leftovers(kube, None if all_runs else run_id)
    if not left:
        click.echo("nothing to clean up")
        return
    for item in left:
        click.echo(f"{'would remove' if dry_run else 'removing'} {item}")
    if dry_run:
        return
    problems = sweep.delete_leftovers(kube, left, params.cleanup_timeout_s)
    for p in problems:
        click.echo(f"problem: {p}", err=True)
    if problems:
        sys.exit(1)
    click.echo(f"removed {len(left)} object(s)")


def _mount_optional_groups() -> None:
    """Commands that live with their subsystems."""
    from aiconf.sandbox.cli import sandbox

    main.add_command(sandbox)
    try:
        from aiconf.report import cli as report_cli
    except ImportError:
        return
    for name in ("report", "compare", "submission"):
        cmd = getattr(report_cli, name, None)
        if cmd is not None:
            main.add_command(cmd, name)


_mount_optional_groups()


if __name__ == "__main__":
    main()
