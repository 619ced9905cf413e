"""Comparing two runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiconf.errors import ConfigError
from aiconf.report.compare import change_of, compare

RUNS = Path(__file__).resolve().parents[2] / "data" / "runs"


@pytest.fixture(scope="module")
def comparison():
    return compare(RUNS / "baseline", RUNS / "mixed")


@pytest.mark.parametrize(
    "a, b, change",
    [
        ("PASS", "FAIL", "regressed"),
        ("FAIL", "UNKNOWN", "improved"),
        ("PASS", "PASS", "same"),
        (None, "PASS", "added"),
        ("PASS", None, "removed"),
        ("NOT_APPLICABLE", "PASS", "improved"),
        ("ERROR", "FAIL", "regressed"),
        ("PASS", "NOT_APPLICABLE", "regressed"),
    ],
)
def test_change_of(a, b, change):
    assert change_of(a, b) == change


def test_verdict_changes(comparison):
    changed = comparison.changed_verdicts.set_index("requirement")
    assert changed.loc["gang_scheduling", "change"] == "regressed"
    assert changed.loc["accelerator_metrics", "change"] == "improved"
    assert changed.loc["gpu_sharing", "change"] == "added"
    assert changed.loc["high_performance_networking", "change"] == "removed"
    assert "dra_support" not in changed.index
    assert comparison.regressions == ["ai_inference", "gang_scheduling", "robust_controller"]


def test_subcheck_changes(comparison):
    subs = comparison.changed_subchecks.set_index(["requirement", "subcheck"])
    assert subs.loc[("gang_scheduling", "no_partial_admission"), "change"] == "regressed"
    assert subs.loc[("accelerator_metrics", "exporter_found"), "change"] == "improved"
    assert subs.loc[("dra_support", "slices_published"), "change"] == "added"
    assert ("dra_support", "api_served") not in subs.index


def test_timing_changes(comparison):
    notable = comparison.notable_timings.set_index("requirement")
    assert notable.loc["pod_autoscaling", "delta_s"] == pytest.approx(71.9)
    assert "dra_support" not in notable.index  # 15.0 -> 14.2: below the 5 s threshold
    assert len(comparison.timings) == 7  # requirements timed in both runs


def test_text_rendering(comparison):
    text = comparison.text()
    assert text.startswith("A: 20261113-090000-ffee00")
    assert "Verdicts: 7 of 10 requirement(s) changed" in text
    assert "  gang_scheduling              PASS            -> FAIL            regressed" in text
    assert "  gpu_sharing                  -               -> NOT_APPLICABLE  added" in text
    assert "nan" not in text
    assert "pod_autoscaling                 180.0s ->    251.9s (+71.9s)" in text


def test_html_rendering(comparison):
    html = comparison.to_html()
    assert '<td class="aiconf-regressed">regressed</td>' in html
    assert "<h4>Timing changes</h4>" in html


def test_identical_runs_have_no_changes():
    same = compare(RUNS / "mixed", RUNS / "mixed")
    assert same.changed_verdicts.empty and same.changed_subchecks.empty and same.notable_timings.empty
    assert same.notes == []
    assert "Verdicts: 0 of 9 requirement(s) changed" in same.text()


def test_different_profiles_are_noted():
    notes = compare(RUNS / "passing", RUNS / "mixed").notes
    assert "profiles differ (on-prem-no-autoscaler vs sandbox)" in notes


def test_not_a_run_folder(tmp_path):
    with pytest.raises(ConfigError):
        compare(tmp_path, RUNS / "mixed")
