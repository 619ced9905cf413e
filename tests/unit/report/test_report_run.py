"""Reading a run folder back."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from aiconf.errors import ConfigError
from aiconf.model import Verdict
from aiconf.report.run import load_run

RUNS = Path(__file__).resolve().parents[2] / "data" / "runs"


def test_results_in_checklist_order_with_every_selected_requirement():
    run = load_run(RUNS / "mixed")
    assert list(run.results) == [
        "dra_support",
        "gpu_sharing",
        "ai_inference",
        "gang_scheduling",
        "cluster_autoscaling",
        "pod_autoscaling",
        "accelerator_metrics",
        "secure_accelerator_access",
        "robust_controller",
    ]
    assert run.checklist_version == "1.35" and run.run_id == "20261120-100000-a1b2c3"
    assert run.simulated_nodes == ["gpu-node-1", "gpu-node-2"]


def test_missing_result_of_a_dead_notebook_is_error():
    r = load_run(RUNS / "mixed").results["ai_inference"]
    assert r.verdict is Verdict.ERROR
    assert r.error["type"] == "notebook-dead-kernel"
    assert r.level == "MUST" and r.title  # from the checklist data


def test_missing_result_of_a_check_that_never_ran_is_skipped():
    r = load_run(RUNS / "mixed").results["secure_accelerator_access"]
    assert r.verdict is Verdict.SKIPPED
    assert "run interrupted" in r.reason


def test_counts_and_frame():
    run = load_run(RUNS / "mixed")
    assert run.counts() == {"PASS": 2, "FAIL": 1, "NOT_APPLICABLE": 2, "UNKNOWN": 1, "ERROR": 2, "SKIPPED": 1}
    frame = run.frame
    assert list(frame.columns[:5]) == ["requirement", "category", "title", "level", "verdict"]
    row = frame.set_index("requirement").loc["pod_autoscaling"]
    assert row["duration_s"] == 251.9  # the notebook's wall time from run.json
    assert row["notebook"] == "ok"


def test_results_know_their_run_folder_for_evidence():
    r = load_run(RUNS / "mixed").results["gang_scheduling"]
    assert (r.run_dir / r.metrics["series"]["timeline"]).is_file()


def test_informational_requirement_outside_the_version_is_listed_last():
    run = load_run(RUNS / "baseline")
    assert list(run.results)[-1] == "high_performance_networking"
    assert run.level("high_performance_networking") is None


def test_unreadable_result_is_reported_not_fatal(tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(RUNS / "mixed", run_dir)
    (run_dir / "results" / "gpu_sharing.json").write_text("{not json")
    run = load_run(run_dir)
    assert run.problems and run.problems[0].startswith("results/gpu_sharing.json: unreadable result")
    assert run.results["gpu_sharing"].verdict is Verdict.ERROR  # selected, so still shown


@pytest.mark.parametrize(
    "setup, match",
    [
        (lambda p: None, "does not exist"),
        (lambda p: p.mkdir(), "is not a run folder"),
        (lambda p: (p.mkdir(), (p / "run.json").write_text("[")), "unreadable"),
        (lambda p: (p.mkdir(), (p / "run.json").write_text("[]")), "is not a JSON object"),
        (lambda p: (p.mkdir(), (p / "run.json").write_text(json.dumps({"schema_version": 9}))), "newer"),
    ],
    ids=["missing", "no-run-json", "bad-json", "not-object", "future-schema"],
)
def test_bad_run_folders(tmp_path, setup, match):
    path = tmp_path / "run"
    setup(path)
    with pytest.raises(ConfigError, match=match):
        load_run(path)
