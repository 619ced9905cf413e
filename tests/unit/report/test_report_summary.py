"""The summary notebook's building blocks, called directly (no kernel), and the offline HTML export."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest

from aiconf.model import Verdict
from aiconf.report import summary
from aiconf.report.html import export_html, external_references
from aiconf.report.run import load_run

RUNS = Path(__file__).resolve().parents[2] / "data" / "runs"


@pytest.fixture(scope="module")
def run():
    return load_run(RUNS / "mixed")


def test_header_warns_about_simulated_nodes_and_counts(run):
    html = summary.header(run).html
    assert "Accelerator nodes are simulated (gpu-node-1, gpu-node-2)" in html
    assert "v1.35.2" in html and "20261120-100000-a1b2c3" in html
    assert ">2 PASS<" in html and ">1 FAIL<" in html and ">1 SKIPPED<" in html


def test_overview_is_a_styled_table_linking_sections(run):
    html = summary.overview(run).to_html()
    assert '<a href="#gang_scheduling">gang_scheduling</a>' in html
    assert "Partially Implemented" in html  # suggested status of the FAIL with a passing sub-check
    assert "background: #cf222e" in html  # FAIL coloured


def test_product_statuses_show_the_must_na_warning(run):
    out = summary.product_statuses(run)
    assert "cluster_autoscaling: MUST written as 'N/A'" in out.text
    with_note = summary.product_statuses(run, "implemented-with-note")
    assert "written as 'Implemented' with a conditional note" in with_note.text


def test_sections_have_anchor_verdict_subchecks_and_links(run):
    parts = summary.requirement_section(run, run.results["gang_scheduling"])
    html = "".join(p._repr_html_() if hasattr(p, "_repr_html_") else p.to_html() for p in parts)
    assert '<h2 id="gang_scheduling"' in html
    assert "no_partial_admission" in html
    assert 'href="notebooks/gang_scheduling.ipynb"' in html
    assert 'href="evidence/gang_scheduling/timeline.csv"' in html
    assert "(missing)" not in html
    assert html.count('src="data:image/png;base64,') >= 1  # the timeline series, drawn


def test_missing_evidence_is_flagged(tmp_path):
    target = tmp_path / "mixed"
    shutil.copytree(RUNS / "mixed", target)
    (target / "evidence" / "gang_scheduling" / "aiconf-gang-scheduling-a1b2c3" / "events.txt").unlink()
    run = load_run(target)
    html = summary.links(run, run.results["gang_scheduling"]).html
    assert "events.txt</a> <em>(missing)</em>" in html


def test_charts_fall_back_to_a_generic_view_when_the_check_is_absent(run):
    result = run.results["gang_scheduling"]
    result_copy = type(result).from_dict(result.to_dict())
    result_copy.requirement_id = "not_a_real_check"
    result_copy.run_dir = result.run_dir
    charts = summary.charts(result_copy)
    assert [c for c, _ in charts] == ["not_a_real_check: recorded series 'timeline' (generic view)"]


def test_a_chart_that_raises_is_reported_not_fatal(run, monkeypatch):
    from aiconf import registry

    class Spec:
        charts = {"broken": lambda ax, result: 1 / 0}

    monkeypatch.setattr(registry, "get", lambda rid: Spec())
    charts = summary.charts(run.results["gang_scheduling"])
    assert [c for c, _ in charts] == ["gang_scheduling: broken (failed)"]


def test_no_series_no_generic_chart(run):
    assert all("generic" not in caption for caption, _ in summary.charts(run.results["accelerator_metrics"]))


def test_legend_lists_every_verdict():
    html = summary.legend().html
    for v in Verdict:
        assert f">{v}<" in html


def test_baseline_section(run):
    assert "No baseline run was given" in summary.baseline(run, "").html
    assert "regressed" in summary.baseline(run, RUNS / "baseline").html


def test_fmt_seconds():
    assert summary.fmt_seconds(None) == "-"
    assert summary.fmt_seconds(12.34) == "12.3 s"
    assert summary.fmt_seconds(251.9) == "4 min 12 s"
    assert summary.fmt_seconds(3725) == "1 h 02 min"


# -- offline export ----------------------------------------------------------------------------------------------------
def notebook_with(html: str, stderr: str = "") -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("secret_code_input()", execution_count=1)
    cell.outputs = [nbformat.v4.new_output("display_data", {"text/html": html})]
    if stderr:
        cell.outputs.append(nbformat.v4.new_output("stream", name="stderr", text=stderr))
    params = nbformat.v4.new_code_cell("run_dir = ''", metadata={"tags": ["parameters"]})
    nb.cells = [nbformat.v4.new_markdown_cell("# Title"), params, cell]
    return nb


def test_export_has_no_code_no_stderr_and_no_cdn():
    page = export_html(notebook_with("<p>hello report</p>", stderr="WARNING noise"), title="My report")
    assert "hello report" in page
    assert "secret_code_input" not in page and "run_dir = ''" not in page
    assert "WARNING noise" not in page
    assert "<title>My report</title>" in page
    assert external_references(page) == []
    assert "cdnjs" not in page and "<script src" not in page


@pytest.mark.parametrize(
    "snippet, found",
    [
        ('<script src="https://cdn.example.com/x.js"></script>', [("script", "https://cdn.example.com/x.js")]),
        ('<link rel="stylesheet" href="http://fonts.example.com/f.css">', [("link", "http://fonts.example.com/f.css")]),
        ('<img src="//example.com/a.png">', [("img", "//example.com/a.png")]),
        ('<img srcset="a.png 1x, https://x.example/b.png 2x">', [("img", "https://x.example/b.png 2x")]),
        ("<style>@import 'https://x.example/a.css';</style>", [("style", "https://x.example/a.css")]),
        ('<div style="background:url(https://x.example/bg.png)"></div>', [("div style", "https://x.example/bg.png")]),
        (
            '<script type="module">import("https://cdn.example.com/m.mjs")</script>',
            [("script", "https://cdn.example.com/m.mjs")],
        ),
        ('<a href="https://cncf.io">a plain link is fine</a>', []),
        ('<img src="data:image/png;base64,AAAA"><a href="evidence/x.yaml">x</a>', []),
    ],
    ids=[
        "script",
        "link",
        "protocol-relative-img",
        "srcset",
        "css-import",
        "inline-style",
        "module-import",
        "plain-link",
        "data-and-relative",
    ],
)
def test_external_references(snippet, found):
    assert external_references(f"<html><head></head><body>{snippet}</body></html>") == found


def test_long_file_lists_are_collapsed(tmp_path):
    target = tmp_path / "mixed"
    shutil.copytree(RUNS / "mixed", target)
    run = load_run(target)
    result = run.results["gang_scheduling"]
    for i in range(12):
        rel = f"evidence/gang_scheduling/logs/pod-{i}.log"
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        (target / rel).write_text("log\n")
        result.evidence.append(rel)
    html = summary.links(run, result).html
    assert "<summary>7 more file(s)</summary>" in html  # notebook + result + 3 evidence + 12 logs = 17, 10 shown


def test_empty_run_dir_means_the_latest_run(tmp_path, monkeypatch):
    (tmp_path / "outputs").mkdir()
    (tmp_path / "outputs" / "latest").symlink_to(RUNS / "mixed")
    monkeypatch.chdir(tmp_path)
    assert summary.load("").run_id == "20261120-100000-a1b2c3"
