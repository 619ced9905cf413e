"""Commands for reports, comparisons and submissions, mounted into ``aiconf`` (``aiconf/cli.py``) and runnable alone
(``python -m aiconf.report.cli ...``).

    report RUN_DIR [--baseline RUN]
    compare RUN_A RUN_B [--fail-on-regression]
    submission build RUN_DIR --template F --metadata F [--out DIR] [--must-na-policy na|implemented-with-note]
    submission validate PRODUCT.yaml [--offline] [--landscape FILE] [--timeout S]

Exit codes: 0 done / valid; 1 the result is negative (invalid PRODUCT.yaml, a bundle with problems, a regression
when asked, a report that failed to render); 2 unusable input (one line naming the file or folder).
"""

from __future__ import annotations

import sys
from typing import Any

import click

from aiconf.errors import AiconfError
from aiconf.model import MustNaPolicy

EXIT_OK, EXIT_NEGATIVE, EXIT_USAGE = 0, 1, 2


@click.command("report")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=str))
@click.option(
    "--baseline",
    default=None,
    type=click.Path(file_okay=False, path_type=str),
    help="an earlier run folder to compare with",
)
def report(run_dir: str, baseline: str | None) -> None:
    """Build RUN_DIR/report.html: one offline HTML file for auditors."""
    from aiconf.report.html import timed_build

    path, seconds = timed_build(run_dir, baseline=baseline)
    click.echo(f"{path} ({seconds:.1f}s)")


@click.command("compare")
@click.argument("run_a", type=click.Path(file_okay=False, path_type=str))
@click.argument("run_b", type=click.Path(file_okay=False, path_type=str))
@click.option("--fail-on-regression", is_flag=True, help="exit 1 when a verdict got worse from A to B")
def compare(run_a: str, run_b: str, fail_on_regression: bool) -> None:
    """What changed from RUN_A (before) to RUN_B (after): verdicts, sub-checks, timings."""
    from aiconf.report.compare import compare as compare_runs

    comparison = compare_runs(run_a, run_b)
    click.echo(comparison.text(), nl=False)
    if fail_on_regression and comparison.regressions:
        sys.exit(EXIT_NEGATIVE)


@click.group("submission")
def submission() -> None:
    """Build and check a CNCF AI Conformance submission (PRODUCT.yaml, README.md, evidence)."""


@submission.command("build")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=str))
@click.option(
    "--template",
    required=True,
    type=click.Path(dir_okay=False, path_type=str),
    help="the program's checklist template, AIConformance-X.Y.yaml",
)
@click.option(
    "--metadata",
    required=True,
    type=click.Path(dir_okay=False, path_type=str),
    help="your metadata file (platform name, vendor, URLs; optional answers and README text)",
)
@click.option(
    "--out",
    default=None,
    type=click.Path(file_okay=False, path_type=str),
    help="output folder (default RUN_DIR/submission/vX.Y/<product>)",
)
@click.option(
    "--must-na-policy",
    type=click.Choice([p.value for p in MustNaPolicy]),
    default=None,
    help="how a MUST judged not applicable is written (default: the run's must_na_policy)",
)
def submission_build(run_dir: str, template: str, metadata: str, out: str | None, must_na_policy: str | None) -> None:
    """Fill the template from RUN_DIR's results and write the submission bundle."""
    from aiconf.submission import build

    bundle = build(run_dir, template, metadata, out, must_na_policy)
    counts: dict[str, int] = {}
    for status in bundle.statuses.values():
        counts[status or "unanswered"] = counts.get(status or "unanswered", 0) + 1
    click.echo(
        f"{bundle.out_dir}: {len(bundle.files)} files; checklist {bundle.version}, MUST N/A policy "
        f"{bundle.policy}; " + ", ".join(f"{n} {s}" for s, n in counts.items())
    )
    for warning in bundle.warnings:
        click.echo(f"warning: {warning}", err=True)
    for problem in bundle.problems:
        click.echo(str(problem), err=True)
    if not bundle.valid:
        click.echo(f"{bundle.product_yaml}: INVALID (see the lines above)", err=True)
        sys.exit(EXIT_NEGATIVE)
    click.echo(f"{bundle.product_yaml}: valid (offline checks)")


@submission.command("validate")
@click.argument("product_yaml", type=click.Path(dir_okay=False, path_type=str))
@click.option("--offline", is_flag=True, help="skip URL reachability checks (nothing leaves this machine)")
@click.option("--landscape", default=None, help="a CNCF landscape.yml (file, or URL when online) for vendorName")
@click.option(
    "--timeout",
    "timeout_s",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0.5, 120),
    help="seconds per URL when online",
)
def submission_validate(product_yaml: str, offline: bool, landscape: str | None, timeout_s: float) -> None:
    """Check PRODUCT_YAML against the program's rules: exit 0 valid, 1 invalid, 2 unusable."""
    from aiconf.submission.validator import ERROR, is_valid, validate

    problems = validate(product_yaml, offline=offline, landscape=landscape, timeout_s=timeout_s)
    for problem in problems:
        click.echo(str(problem), err=problem.severity != ERROR)
    if not is_valid(problems):
        sys.exit(EXIT_NEGATIVE)
    click.echo(f"{product_yaml}: valid" + (" (offline: URLs not checked)" if offline else ""), err=True)


class _Standalone(click.Group):
    """Like the main ``aiconf`` group: toolkit errors become one line on stderr and their exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AiconfError as e:
            click.echo(f"aiconf: error: {e}", err=True)
            sys.exit(e.exit_code)


@click.group(cls=_Standalone, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """aiconf reports, comparisons and submissions."""


main.add_command(report)
main.add_command(compare)
main.add_command(submission)

if __name__ == "__main__":
    main()
