"""The auditor's report: ``notebooks/summary.ipynb`` executed over a run folder, exported as one offline HTML file.

``build_report`` runs the summary notebook with papermill in this process (parameters ``run_dir`` and
``baseline_dir``) into ``<run>/summary.ipynb``, then exports it with nbconvert's HTML exporter through the
``aiconf_offline`` template (the lab template minus every CDN script), without code cells, prompts or stderr. The
result is checked: a ``src``/``href`` to a network host in the page is an error, not a warning, because auditors open
these reports on machines without network access.
"""

from __future__ import annotations

import re
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from aiconf.errors import AiconfError
from aiconf.report.run import load_run

TEMPLATES = Path(__file__).resolve().parent / "templates"
TEMPLATE_NAME = "aiconf_offline"
SUMMARY_NOTEBOOK = "summary.ipynb"

#: Cell tags whose cells never reach the HTML.
REMOVE_CELL_TAGS = {"parameters", "injected-parameters", "remove_cell"}

#: (tag, attribute) pairs that make a browser fetch something when the page is opened.
FETCHING_ATTRIBUTES = {
    ("script", "src"),
    ("link", "href"),
    ("img", "src"),
    ("img", "srcset"),
    ("iframe", "src"),
    ("frame", "src"),
    ("embed", "src"),
    ("object", "data"),
    ("source", "src"),
    ("source", "srcset"),
    ("video", "src"),
    ("video", "poster"),
    ("audio", "src"),
    ("track", "src"),
    ("input", "src"),
    ("image", "href"),
    ("image", "xlink:href"),
    ("use", "href"),
    ("use", "xlink:href"),
    ("feimage", "href"),
    ("body", "background"),
}
_REMOTE = re.compile(r"^\s*(https?:)?//", re.I)
_CSS_URL = re.compile(r"""(?:url\(\s*['"]?|@import\s+['"])\s*((?:https?:)?//[^'")\s]+)""", re.I)


class ReportError(AiconfError):
    """The report could not be built, or the built page would fetch from the network."""

    exit_code = 1  # not bad input: the run folder was fine, the report was not


def build_report(
    run_dir: str | Path, *, baseline: str | Path | None = None, timeout_s: float = 600, notebook_dir: Path | None = None
) -> Path:
    """Execute the summary notebook over ``run_dir`` and write ``run_dir/report.html``; return its path.

    Args:
        run_dir: a run folder (``run.json``, ``results/``...).
        baseline: an earlier run folder to compare with (adds a "changes since baseline" section).
        timeout_s: per-cell execution timeout of the summary notebook.
        notebook_dir: where ``summary.ipynb`` is (the repository's ``notebooks/``).

    Raises:
        ConfigError: ``run_dir`` or ``baseline`` is not a run folder.
        ReportError: the summary notebook failed (a partial ``report.html`` showing the error is still written), or
            the page would load something from a network host.
    """
    import papermill as pm

    from aiconf.notebooks import NOTEBOOK_DIR

    notebook_dir = notebook_dir or NOTEBOOK_DIR
    run_dir = Path(run_dir).resolve()
    load_run(run_dir)  # a clear ConfigError before a kernel starts
    baseline_dir = Path(baseline).resolve() if baseline else None
    if baseline_dir is not None:
        load_run(baseline_dir)
    source = notebook_dir / SUMMARY_NOTEBOOK
    if not source.is_file():
        raise ReportError(f"the summary notebook {source} is missing")
    executed = run_dir / SUMMARY_NOTEBOOK
    failure: str | None = None
    try:
        nb = pm.execute_notebook(
            str(source),
            str(executed),
            parameters={"run_dir": str(run_dir), "baseline_dir": str(baseline_dir or "")},
            kernel_name="python3",
            progress_bar=False,
            log_output=False,
            cwd=str(run_dir),
            execution_timeout=timeout_s,
            kernel_manager_class=_kernel_manager_class(),
            request_save_on_cell_execute=False,
        )
    except pm.PapermillExecutionError as e:
        failure = f"the summary notebook failed in cell {e.exec_count}: {e.ename}: {e.evalue}"
        nb = None
    except Exception as e:  # kernel did not start, timeout, dead kernel: no notebook worth exporting
        raise ReportError(f"the summary notebook could not be executed: {type(e).__name__}: {e}") from e
    if nb is None:
        import nbformat

        nb = nbformat.read(executed, as_version=4)
    title = _title(run_dir)
    page = export_html(nb, title=title)
    remote = external_references(page)
    if remote:
        raise ReportError("the report would fetch from the network: " + ", ".join(f"<{t}> {u}" for t, u in remote[:5]))
    target = run_dir / "report.html"
    tmp = target.with_suffix(".html.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(target)
    if failure:
        raise ReportError(f"{failure} (partial report written to {target})")
    return target


def export_html(nb: Any, *, title: str = "AI Conformance report") -> str:
    """An executed notebook as one self-contained HTML page: no inputs, no prompts, no stderr, no CDN assets."""
    import copy

    from nbconvert import HTMLExporter
    from traitlets.config import Config

    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.get("cell_type") == "code":
            cell["outputs"] = [
                o
                for o in cell.get("outputs", [])
                if not (o.get("output_type") == "stream" and o.get("name") == "stderr")
            ]
    nb.metadata["title"] = title
    c = Config()
    c.HTMLExporter.extra_template_basedirs = [str(TEMPLATES)]
    c.HTMLExporter.template_name = TEMPLATE_NAME
    c.HTMLExporter.exclude_input = True
    c.HTMLExporter.exclude_input_prompt = True
    c.HTMLExporter.exclude_output_prompt = True
    c.HTMLExporter.embed_images = True
    c.TagRemovePreprocessor.enabled = True
    c.TagRemovePreprocessor.remove_cell_tags = set(REMOVE_CELL_TAGS)
    exporter = HTMLExporter(config=c)
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    return body


class _Fetches(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, str]] = []
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        tag = tag.lower()
        for name, value in attrs:
            name = (name or "").lower()
            if not value:
                continue
            if (tag, name) in FETCHING_ATTRIBUTES:
                for url in re.split(r",\s*", value) if name == "srcset" else [value]:
                    if _REMOTE.match(url):
                        self.found.append((tag, url.strip()))
            if name == "style":
                self.found += [(f"{tag} style", u) for u in _CSS_URL.findall(value)]
        self._in = tag if tag in ("style", "script") else None

    def handle_endtag(self, tag: str) -> None:
        self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "style":
            self.found += [("style", u) for u in _CSS_URL.findall(data)]
        elif self._in == "script":
            # An inline script that imports or fetches from a host (Mermaid's loader does this).
            for m in re.finditer(
                r"""(?:import\s*\(|from\s+|fetch\s*\(|src\s*=\s*)\s*['"`]((?:https?:)?//[^'"`]+)""", data
            ):
                self.found.append(("script", m.group(1)))


def external_references(page: str) -> list[tuple[str, str]]:
    """Everything in ``page`` that a browser would fetch from a network host when opening it, as ``(tag, url)``.

    Plain links (``<a href>``) are not fetched and are allowed; so are ``data:`` URIs and relative paths.
    """
    parser = _Fetches()
    parser.feed(page)
    parser.close()
    return parser.found


def _kernel_manager_class() -> type:
    """A kernel manager that provisions transport encryption where pyzmq supports it.

    ipykernel >= 7.3 warns on every kernel started over unencrypted TCP; the summary kernel talks to this process
    only, but the warning would end up in every log.
    """
    import zmq
    from jupyter_client.manager import KernelManager

    if not zmq.has("curve") or "transport_encryption" not in KernelManager.class_trait_names():
        return KernelManager

    class EncryptedKernelManager(KernelManager):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.transport_encryption = "auto"

    return EncryptedKernelManager


def _title(run_dir: Path) -> str:
    run = load_run(run_dir)
    return f"AI Conformance {run.checklist_version} report - {run.run_id}"


def timed_build(run_dir: str | Path, **kwargs: Any) -> tuple[Path, float]:
    """``build_report`` and the seconds it took (for the benchmark and the CLI's message)."""
    started = time.monotonic()
    path = build_report(run_dir, **kwargs)
    return path, time.monotonic() - started
