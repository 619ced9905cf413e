"""The report/compare/submission commands, standalone (``python -m aiconf.report.cli``): exit codes and lines."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from aiconf.report.cli import main

DATA = Path(__file__).resolve().parents[2] / "data"
TEMPLATE = DATA / "submission" / "AIConformance-1.35.yaml"
METADATA = DATA / "submission" / "metadata.yaml"


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def passing(tmp_path):
    run = tmp_path / "passing"
    shutil.copytree(DATA / "runs" / "passing", run)
    (run / "report.html").write_text("<html>stub</html>")
    return run


def test_compare_prints_the_text_and_exits_0():
    r = invoke("compare", DATA / "runs" / "baseline", DATA / "runs" / "mixed")
    assert r.exit_code == 0
    assert "gang_scheduling              PASS            -> FAIL            regressed" in r.output


def test_compare_fail_on_regression_exits_1():
    assert invoke("compare", DATA / "runs" / "baseline", DATA / "runs" / "mixed", "--fail-on-regression").exit_code == 1
    assert invoke("compare", DATA / "runs" / "mixed", DATA / "runs" / "mixed", "--fail-on-regression").exit_code == 0


@pytest.mark.parametrize("command", [["report"], ["compare", DATA / "runs" / "mixed"]], ids=["report", "compare"])
def test_not_a_run_folder_is_one_line_and_exit_2(tmp_path, command):
    r = invoke(*command, tmp_path)
    assert r.exit_code == 2
    assert r.output.strip().splitlines() == [
        f"aiconf: error: {tmp_path} is not a run folder (no run.json; expected "
        "outputs/<run-id>/ written by `aiconf run`)"
    ]


def test_missing_run_folder_exit_2(tmp_path):
    r = invoke("report", tmp_path / "nope")
    assert r.exit_code == 2 and "does not exist" in r.output


def test_submission_build_valid_then_validate(passing, tmp_path):
    out = tmp_path / "v1.35" / "example"
    r = invoke("submission", "build", passing, "--template", TEMPLATE, "--metadata", METADATA, "--out", out)
    assert r.exit_code == 0, r.output
    assert "PRODUCT.yaml: valid (offline checks)" in r.output
    r = invoke("submission", "validate", out / "PRODUCT.yaml", "--offline")
    assert r.exit_code == 0
    assert "valid (offline: URLs not checked)" in r.output


def test_submission_build_with_na_policy_exits_1_with_one_line_per_problem(passing, tmp_path):
    out = tmp_path / "v1.35" / "example"
    r = invoke(
        "submission",
        "build",
        passing,
        "--template",
        TEMPLATE,
        "--metadata",
        METADATA,
        "--out",
        out,
        "--must-na-policy",
        "na",
    )
    assert r.exit_code == 1
    assert "cluster_autoscaling: MUST requirement has status 'N/A'; the program accepts only 'Implemented'" in r.output
    assert "INVALID" in r.output


def test_submission_validate_invalid_exits_1(passing, tmp_path):
    out = tmp_path / "v1.35" / "example"
    invoke("submission", "build", passing, "--template", TEMPLATE, "--metadata", METADATA, "--out", out)
    product = out / "PRODUCT.yaml"
    product.write_text(product.read_text().replace('status: "Implemented"', 'status: "Done"', 1))
    r = invoke("submission", "validate", product, "--offline")
    assert r.exit_code == 1
    assert (
        "dra_support: status 'Done' is not valid; expected one of: Implemented, Not Implemented, "
        "Partially Implemented, N/A" in r.output
    )


@pytest.mark.parametrize(
    "args, match",
    [
        (["--template", DATA / "nope.yaml", "--metadata", METADATA], "template"),
        (["--template", TEMPLATE, "--metadata", DATA / "nope.yaml"], "metadata file"),
        (
            ["--template", DATA / "submission" / "AIConformance-1.36.yaml", "--metadata", METADATA],
            "is for checklist 1.36",
        ),
    ],
    ids=["template-missing", "metadata-missing", "wrong-version"],
)
def test_submission_build_bad_input_exit_2(passing, args, match):
    r = invoke("submission", "build", passing, *args)
    assert r.exit_code == 2
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("aiconf: error: ") and match in lines[0]


def test_submission_validate_unusable_input_exit_2(tmp_path):
    bad = tmp_path / "PRODUCT.yaml"
    bad.write_text("metadata: [")
    r = invoke("submission", "validate", bad, "--offline")
    assert r.exit_code == 2
    assert r.output.strip().splitlines() == [
        f"aiconf: error: {bad} is not valid YAML: expected the node content, but found '<stream end>' "
        "(line 1, column 12)"
    ]


def test_commands_are_mountable_by_name():
    from aiconf.report import cli

    assert {cli.report.name, cli.compare.name, cli.submission.name} == {"report", "compare", "submission"}
    assert set(cli.submission.commands) == {"build", "validate"}


@pytest.mark.parametrize(
    "args, line",
    [
        (["report", "/nonexistent/run"], "aiconf: error: run folder /nonexistent/run does not exist"),
        (
            ["submission", "validate", "/nonexistent/PRODUCT.yaml"],
            "aiconf: error: /nonexistent/PRODUCT.yaml does not exist or is not a file",
        ),
    ],
    ids=["report", "submission-validate"],
)
def test_mounted_in_the_main_cli(args, line):
    """Through ``aiconf`` itself (aiconf/cli.py mounts these commands): one line on stderr, exit 2."""
    import subprocess
    import sys

    pytest.importorskip("aiconf.cli", reason="the main CLI is not importable")
    r = subprocess.run([sys.executable, "-m", "aiconf.cli", *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [line]
