"""The offline HTML report, built for real from a fixture run (papermill kernel + nbconvert), then opened in headless
Chromium with name resolution disabled: it must render, and the page must not try to fetch anything.

Chromium comes from Debian's ``chromium`` package; without it the browser tests are skipped with that reason.
Network attempts are read from Chromium's NetLog (``--log-net-log``): every URL request the page made carries the
page's ``file://`` network isolation key, which tells them apart from the browser's own background requests. A
negative control (a page with a CDN script) proves the detection sees what it should.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest

from aiconf.report import build_report, external_references
from aiconf.report.run import load_run

pytestmark = pytest.mark.report

RUNS = Path(__file__).resolve().parents[1] / "data" / "runs"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium is not installed (Debian: apt-get install -y chromium)"
)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The mixed fixture run with its report (and a baseline comparison), built once for the module."""
    run_dir = tmp_path_factory.mktemp("report") / "mixed"
    shutil.copytree(RUNS / "mixed", run_dir)
    started = time.monotonic()
    path = build_report(run_dir, baseline=RUNS / "baseline")
    return run_dir, path, time.monotonic() - started


@pytest.fixture(scope="module")
def soup(built):
    bs4 = pytest.importorskip("bs4", reason="beautifulsoup4 (dev dependency) is not installed")
    return bs4.BeautifulSoup(built[1].read_text(encoding="utf-8"), "html.parser")


def test_report_is_written_next_to_the_run_quickly(built):
    run_dir, path, seconds = built
    assert path == run_dir / "report.html"
    assert (run_dir / "summary.ipynb").is_file()  # the executed summary notebook stays as evidence
    assert seconds < 30, f"report took {seconds:.1f}s"


def test_every_requirement_appears_with_its_verdict(built, soup):
    run = load_run(built[0])
    for rid, result in run.results.items():
        heading = soup.find("h2", id=rid)
        assert heading is not None, rid
        assert str(result.verdict) in heading.get_text(), rid
        row = next(tr for tr in soup.select("table.aiconf-overview tr") if tr.find("a", href=f"#{rid}"))
        assert str(result.verdict) in row.get_text()


def test_no_code_cells_and_a_title(soup):
    assert soup.select("div.jp-CodeCell div.jp-InputArea") == []
    assert "from aiconf.report import summary" not in soup.get_text()
    assert soup.title.get_text().startswith("AI Conformance 1.35 report - 20261120-100000-a1b2c3")


def test_nothing_is_fetched_from_a_network_host(built, soup):
    assert external_references(built[1].read_text(encoding="utf-8")) == []
    for script in soup.find_all("script", src=True):
        assert not script["src"].startswith(("http:", "https:", "//")), script["src"]
    for link in soup.find_all("link", href=True):
        assert not link["href"].startswith(("http:", "https:", "//")), link["href"]


def test_charts_are_embedded_png(soup):
    images = soup.find_all("img")
    assert len(images) >= 2  # the durations chart and the gang timeline at least
    assert all(img["src"].startswith("data:image/png;base64,") for img in images)


def test_links_to_notebooks_and_evidence_are_relative_and_exist(built, soup):
    run_dir = built[0]
    hrefs = [a["href"] for a in soup.select("div.aiconf-links a")]
    assert "notebooks/gang_scheduling.ipynb" in hrefs
    assert "evidence/pod_autoscaling/hpa_curve.csv" in hrefs
    for href in hrefs:
        assert not href.startswith(("/", "http")), href
        assert (run_dir / href).exists(), href


def test_baseline_section_and_product_statuses(soup):
    text = " ".join(soup.get_text(" ").split())
    assert "Baseline (A): 20261113-090000-ffee00" in text
    assert "MUST written as 'N/A'" in text
    assert "Accelerator nodes are simulated" in text


def test_print_css_is_included(built):
    page = built[1].read_text(encoding="utf-8")
    assert "@media print" in page and "break-before: page" in page


# -- in a browser ------------------------------------------------------------------------------------------------------
def chromium(url: str, tmp_path: Path, *extra: str) -> tuple[list[str], Path]:
    """Open ``url`` headless with name resolution disabled; return the page's network requests and a screenshot."""
    netlog = tmp_path / "netlog.json"
    shot = tmp_path / "screenshot.png"
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--log-net-log={netlog}",
        "--net-log-capture-mode=Default",
        "--window-size=1280,2400",
        f"--screenshot={shot}",
        *extra,
        url,
    ]
    subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    return page_requests(netlog), shot


def page_requests(netlog: Path) -> list[str]:
    """URLs the page (file:// origin) asked the network stack for; the browser's own traffic is left out."""
    data = json.loads(netlog.read_text())
    names = {v: k for k, v in data["constants"]["logEventTypes"].items()}
    out = []
    for event in data["events"]:
        params = event.get("params") or {}
        if (
            names.get(event["type"]) == "URL_REQUEST_START_JOB"
            and "url" in params
            and "file://" in str(params.get("network_isolation_key", ""))
        ):
            out.append(params["url"])
    return out


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", head[16:24])


@needs_chromium
def test_detection_sees_a_page_that_fetches(tmp_path):
    page = tmp_path / "cdn.html"
    page.write_text(
        '<html><body><script src="https://cdn.example.invalid/lib.js"></script>'
        '<img src="http://img.example.invalid/a.png"></body></html>'
    )
    requests, _ = chromium(page.as_uri(), tmp_path)
    assert "https://cdn.example.invalid/lib.js" in requests
    assert "http://img.example.invalid/a.png" in requests


@needs_chromium
def test_report_renders_offline_without_network_requests(built, tmp_path):
    requests, shot = chromium(built[1].as_uri(), tmp_path)
    assert requests == [], f"the report tried to fetch: {requests}"
    assert shot.is_file() and shot.stat().st_size > 20_000  # a rendered page, not a blank one
    assert png_size(shot) == (1280, 2400)
    keep = Path(built[0]).parent / "report-screenshot.png"
    shutil.copy(shot, keep)  # for a human look: pytest's tmp folder keeps it after the run


@needs_chromium
def test_report_prints_to_pdf(built, tmp_path):
    pdf = tmp_path / "report.pdf"
    requests, _ = chromium(built[1].as_uri(), tmp_path, "--no-pdf-header-footer", f"--print-to-pdf={pdf}")
    assert requests == []
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 20_000


# -- report + submission bundle ---------------------------------------------------------------------------------------
def test_report_and_bundle_in_time_and_links_work_inside_the_bundle(tmp_path):
    """The budget is 10 s on an idle 2-core machine; the assertion allows for a loaded CI machine."""
    bs4 = pytest.importorskip("bs4", reason="beautifulsoup4 (dev dependency) is not installed")
    from aiconf.submission import build

    run_dir = tmp_path / "passing"
    shutil.copytree(RUNS / "passing", run_dir)
    data = RUNS.parent / "submission"
    started = time.monotonic()
    build_report(run_dir)
    bundle = build(run_dir, data / "AIConformance-1.35.yaml", data / "metadata.yaml")
    seconds = time.monotonic() - started
    print(f"report + bundle: {seconds:.1f}s")
    assert seconds < 30, f"report + bundle took {seconds:.1f}s (budget 10 s idle)"
    assert bundle.valid, [str(p) for p in bundle.problems]
    soup = bs4.BeautifulSoup((bundle.out_dir / "report.html").read_text(encoding="utf-8"), "html.parser")
    hrefs = [a["href"] for a in soup.select("div.aiconf-links a")]
    assert hrefs and all((bundle.out_dir / h).exists() for h in hrefs)
