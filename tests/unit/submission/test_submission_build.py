"""Building a submission bundle from the fixture runs (the report itself is stubbed here; tests/report builds it)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import yaml

from aiconf.errors import ConfigError
from aiconf.model import MustNaPolicy
from aiconf.submission import build, validate
from aiconf.submission.build import is_bundle, slug

DATA = Path(__file__).resolve().parents[2] / "data"
TEMPLATE = DATA / "submission" / "AIConformance-1.35.yaml"
METADATA = DATA / "submission" / "metadata.yaml"


def copy_run(tmp_path: Path, name: str) -> Path:
    run = tmp_path / name
    shutil.copytree(DATA / "runs" / name, run)
    (run / "report.html").write_text("<html><body>stub report</body></html>")
    return run


def product(bundle) -> dict:
    return yaml.safe_load(bundle.product_yaml.read_text())


def entry(doc: dict, rid: str) -> dict:
    return next(e for entries in doc["spec"].values() for e in entries if e["id"] == rid)


@pytest.fixture
def passing(tmp_path):
    return copy_run(tmp_path, "passing")


def test_passing_run_builds_a_valid_bundle(passing):
    bundle = build(passing, TEMPLATE, METADATA)
    assert bundle.out_dir == passing / "submission" / "v1.35" / "example-ai-platform"
    assert bundle.valid, [str(p) for p in bundle.problems]
    assert bundle.policy is MustNaPolicy.IMPLEMENTED_WITH_NOTE  # from the run's parameters
    doc = product(bundle)
    assert doc["metadata"]["platformName"] == "Example AI Platform"
    assert entry(doc, "gang_scheduling")["status"] == "Implemented"
    # the user's URL first, then the bundle's own files, all relative
    assert entry(doc, "gang_scheduling")["evidence"] == [
        "https://docs.example.com/ai-platform/gang-scheduling",
        "report.html",
        "notebooks/gang_scheduling.ipynb",
        "results/gang_scheduling.json",
        "evidence/gang_scheduling",
    ]
    # MUST judged not applicable, under implemented-with-note: Implemented plus the justification
    ca = entry(doc, "cluster_autoscaling")
    assert ca["status"] == "Implemented" and ca["notes"].startswith("Not applicable to this configuration:")
    # a SHOULD judged not applicable: N/A with the drafted justification
    assert entry(doc, "gpu_sharing")["status"] == "N/A" and entry(doc, "gpu_sharing")["notes"]
    # answered by the user (not evaluated by the toolkit)
    assert entry(doc, "virtualized_accelerator")["status"] == "N/A"
    assert any("MUST judged not applicable" in w for w in bundle.warnings)


def test_bundle_files_and_checksums(passing):
    bundle = build(passing, TEMPLATE, METADATA)
    out = bundle.out_dir
    for name in (
        "PRODUCT.yaml",
        "README.md",
        "SHA256SUMS",
        "report.html",
        "junit_01.xml",
        "e2e.log",
        "run.json",
        "results/gang_scheduling.json",
        "notebooks/gang_scheduling.ipynb",
        "evidence/gang_scheduling/summary.txt",
    ):
        assert (out / name).is_file(), name
    lines = (out / "SHA256SUMS").read_text().splitlines()
    listed = {line.split("  ", 1)[1]: line.split("  ", 1)[0] for line in lines}
    on_disk = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.name != "SHA256SUMS"}
    assert set(listed) == on_disk
    for rel, digest in listed.items():
        assert hashlib.sha256((out / rel).read_bytes()).hexdigest() == digest
    assert lines == sorted(lines, key=lambda line: line.split("  ", 1)[1])
    # the bundle validates on its own, from its folder
    assert [p for p in validate(bundle.product_yaml) if p.severity == "error"] == []


def test_readme_is_generated_from_the_filled_product(passing):
    bundle = build(passing, TEMPLATE, METADATA)
    text = bundle.readme.read_text()
    assert text.startswith("# Example AI Platform 4.2: Kubernetes AI Conformance v1.35")
    assert "Kubernetes distribution for AI workloads" in text  # readme.about
    assert "## How to reproduce" in text and "aiconf 0.1.0" in text
    assert "aiconf run --profile on-prem-no-autoscaler --checklist-version 1.35 --set gang_scheduler=kueue" in text
    assert "| ✅ Implemented | 10 |" in text and "| ⚪ N/A | 2 |" in text and "| **Total** | **12** |" in text
    assert "| 📅 Scheduling & Orchestration | [Gang Scheduling](#req-gang_scheduling) | MUST | ✅ Implemented |" in text
    assert "#### ✅ DRA Support (`dra_support`)" in text
    assert (
        "- [docs.example.com/ai-platform/gang-scheduling](https://docs.example.com/ai-platform/gang-scheduling)" in text
    )
    assert "- [report.html](report.html)" in text
    assert "> Fixture description of gang_scheduling." in text  # the template's description, from PRODUCT.yaml
    assert text.rstrip().endswith("*Generated from PRODUCT.yaml by aiconf 0.1.0*")


def test_na_policy_makes_a_must_na_and_the_bundle_invalid(passing, tmp_path):
    bundle = build(passing, TEMPLATE, METADATA, tmp_path / "v1.35" / "x", policy="na")
    assert entry(product(bundle), "cluster_autoscaling")["status"] == "N/A"
    assert not bundle.valid
    assert [str(p) for p in bundle.problems if p.severity == "error"] == [
        "cluster_autoscaling: MUST requirement has status 'N/A'; the program accepts only 'Implemented'"
    ]
    assert any("validator rejects any MUST" in w for w in bundle.warnings)


def test_mixed_run_leaves_undecided_requirements_for_the_auditor(tmp_path):
    run = copy_run(tmp_path, "mixed")
    bundle = build(run, TEMPLATE, METADATA, tmp_path / "v1.35" / "mixed", policy="implemented-with-note")
    doc = product(bundle)
    assert entry(doc, "gang_scheduling")["status"] == "Partially Implemented"
    assert entry(doc, "accelerator_metrics")["status"] == ""  # UNKNOWN
    assert entry(doc, "robust_controller")["status"] == ""  # ERROR
    assert entry(doc, "ai_service_metrics")["evidence"] == []  # not selected in this run
    assert entry(doc, "driver_runtime_management")["status"] == ""  # a SHOULD not evaluated stays unanswered
    errors = {p.where for p in bundle.problems if p.severity == "error"}
    assert errors == {
        "ai_inference",
        "gang_scheduling",
        "accelerator_metrics",
        "ai_service_metrics",
        "secure_accelerator_access",
        "robust_controller",
    }
    assert any("simulated" in w for w in bundle.warnings)


def test_rebuild_replaces_an_earlier_bundle(passing):
    first = build(passing, TEMPLATE, METADATA)
    assert is_bundle(first.out_dir)
    (first.out_dir / "stale.txt").write_text("from before")
    second = build(passing, TEMPLATE, METADATA)
    assert not (second.out_dir / "stale.txt").exists()


def test_refuses_a_non_empty_foreign_output_folder(passing, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="is not empty"):
        build(passing, TEMPLATE, METADATA, out)
    assert (out / "notes.txt").read_text() == "keep me"


def test_template_of_another_version_is_rejected(passing):
    with pytest.raises(ConfigError, match="is for checklist 1.36 but run .* evaluated 1.35"):
        build(passing, DATA / "submission" / "AIConformance-1.36.yaml", METADATA)


def test_placeholder_left_is_an_error(passing, tmp_path):
    meta = tmp_path / "meta.yaml"
    meta.write_text("metadata:\n  platformName: X\n")
    with pytest.raises(ConfigError, match="leaves template placeholder.*platformVersion.*vendorName"):
        build(passing, TEMPLATE, meta)
    assert not (passing / "submission").exists()  # nothing written before the check


def test_not_a_run_folder(tmp_path):
    with pytest.raises(ConfigError, match="is not a run folder"):
        build(tmp_path, TEMPLATE, METADATA)


def test_slug():
    assert slug("Example AI Platform") == "example-ai-platform"
    assert slug("  ") == "product"
