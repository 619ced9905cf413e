"""junit.xml and e2e.log from the mixed fixture run."""

from __future__ import annotations

import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from aiconf.report.junit import write_e2e_log, write_junit

RUNS = Path(__file__).resolve().parents[2] / "data" / "runs"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    target = tmp_path_factory.mktemp("junit") / "mixed"
    shutil.copytree(RUNS / "mixed", target)
    return target


@pytest.fixture(scope="module")
def junit(run_dir):
    return write_junit(run_dir)


def cases(root):
    return {c.get("name"): c for c in root.iter("testcase")}


def test_one_suite_per_requirement_one_case_per_subcheck(junit):
    root = ET.parse(junit).getroot()
    assert root.tag == "testsuites"
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert list(suites) == [
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
    gang = suites["gang_scheduling"]
    assert [c.get("name") for c in gang.iter("testcase")] == [
        "gang_scheduling/scheduler_detected",
        "gang_scheduling/gang_admitted_together",
        "gang_scheduling/no_partial_admission",
    ]
    assert gang.get("tests") == "3" and gang.get("failures") == "1" and gang.get("time") == "71.500"
    props = {p.get("name"): p.get("value") for p in gang.iter("property")}
    assert props["level"] == "MUST" and props["verdict"] == "FAIL" and props["checklist_version"] == "1.35"


def test_outcomes_per_verdict(junit):
    c = cases(ET.parse(junit).getroot())
    # PASS: no child element but the transcript
    assert [e.tag for e in c["gang_scheduling/scheduler_detected"]] == ["system-out"]
    # FAIL: failure with the summary and the expected/observed transcript
    failure = c["gang_scheduling/no_partial_admission"].find("failure")
    assert failure.get("type") == "FAIL" and "2 of 6 pods" in failure.get("message")
    assert (
        "expected: 0 of 6 pods Running for 30s" in failure.text and "observed: 2 of 6 Running after 5s" in failure.text
    )
    # informational FAIL never reads as a failure
    assert c["dra_support/slices_published"].find("skipped").get("message").startswith("informational sub-check FAIL")
    # NOT_APPLICABLE: skipped with the reason and the drafted justification
    skipped = c["cluster_autoscaling/autoscaler_detected"].find("skipped")
    assert "not applicable" in skipped.get("message") and "on-premises" in skipped.get("message")
    # UNKNOWN: an error, so it cannot read as passed
    unknown = c["accelerator_metrics/core_metrics"].find("error")
    assert unknown.get("type") == "UNKNOWN" and unknown.get("message").startswith("manual evidence needed")
    # a crashed check: its error, and the sub-checks it never recorded
    assert c["robust_controller/check_completed"].find("error").get("type") == "WaitTimeout"
    assert c["robust_controller/cr_reconciled"].find("error").get("message") == "declared sub-check was never recorded"
    # a dead notebook and a check that never ran
    assert c["ai_inference/check_completed"].find("error").get("type") == "notebook-dead-kernel"
    assert c["secure_accelerator_access/check_completed"].find("skipped") is not None


def test_totals_add_up(junit):
    root = ET.parse(junit).getroot()
    for attr in ("tests", "failures", "errors", "skipped"):
        assert int(root.get(attr)) == sum(int(s.get(attr)) for s in root.iter("testsuite"))
    assert (root.get("tests"), root.get("failures"), root.get("errors"), root.get("skipped")) == ("20", "1", "5", "4")


def test_junitparser_reads_it(junit):
    junitparser = pytest.importorskip("junitparser", reason="junitparser (test-only) is not installed")
    xml = junitparser.JUnitXml.fromfile(str(junit))
    suites = {s.name: s for s in xml}
    assert suites["gang_scheduling"].tests == 3 and suites["gang_scheduling"].failures == 1
    outcomes = {}
    for suite in xml:
        for case in suite:
            outcomes[case.name] = [type(r).__name__ for r in case.result] or ["passed"]
    assert outcomes["pod_autoscaling/scaled_up"] == ["passed"]
    assert outcomes["gang_scheduling/no_partial_admission"] == ["Failure"]
    assert outcomes["gpu_sharing/sharing_strategy"] == ["Skipped"]
    assert outcomes["accelerator_metrics/core_metrics"] == ["Error"]


def test_e2e_log_is_go_test_shaped(run_dir):
    text = write_e2e_log(run_dir).read_text()
    lines = text.splitlines()
    assert "=== RUN   gang_scheduling" in lines
    assert "=== RUN   gang_scheduling/no_partial_admission" in lines
    assert "--- FAIL: gang_scheduling (71.50s)" in lines
    assert "    --- PASS: gang_scheduling/scheduler_detected (0.30s)" in lines
    assert "    --- FAIL: gang_scheduling/no_partial_admission (30.40s)" in lines
    assert "--- PASS: pod_autoscaling (251.90s)" in lines
    assert "--- SKIP: cluster_autoscaling (2.40s)" in lines
    assert "--- FAIL: accelerator_metrics (12.00s)" in lines  # UNKNOWN is not a pass
    assert lines[-2] == "FAIL"
    assert re.match(r"FAIL  \taiconf/1\.35\t1262\.000s", lines[-1])
    assert "simulated accelerator nodes: gpu-node-1, gpu-node-2" in lines[1]
    # every RUN line has its result line
    runs = {line.split()[-1] for line in lines if line.startswith("=== RUN")}
    results = {re.search(r"--- \w+: (\S+)", line).group(1) for line in lines if re.match(r"\s*--- \w+: ", line)}
    assert runs == results


def test_e2e_log_passes_when_every_requirement_passes_or_is_not_applicable(tmp_path):
    target = tmp_path / "passing"
    shutil.copytree(RUNS / "passing", target)
    lines = write_e2e_log(target).read_text().splitlines()
    assert lines[-2] == "PASS" and lines[-1].startswith("ok  \taiconf/1.35")
