"""What notebooks show: verdict banner, sub-check table, charts drawn from evidence, "proves / does not prove".

Notebooks stay thin: one call per cell. The summary report uses the same functions, so a chart looks the same in
a requirement's notebook and in the auditor's report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless under papermill; JupyterLab's inline backend still renders returned figures
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from aiconf.model import RequirementResult, Verdict  # noqa: E402

VERDICT_COLOURS = {
    Verdict.PASS: "#1a7f37",
    Verdict.FAIL: "#cf222e",
    Verdict.NOT_APPLICABLE: "#6e7781",
    Verdict.UNKNOWN: "#9a6700",
    Verdict.ERROR: "#8250df",
    Verdict.SKIPPED: "#6e7781",
}


class Html:
    """A tiny rich-display wrapper (Jupyter renders ``_repr_html_``; plain text elsewhere)."""

    def __init__(self, html: str, text: str = ""):
        self.html, self.text = html, text

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:
        return self.text or self.html


def run_dir_of(result: RequirementResult) -> Path:
    return Path(getattr(result, "run_dir", ".") or ".")


def verdict(result: RequirementResult) -> Html:
    colour = VERDICT_COLOURS.get(result.verdict, "#000")
    level = result.level or "not in this checklist version"
    html = (
        f'<div class="aiconf-verdict" style="border-left:6px solid {colour};padding:6px 12px;margin:8px 0">'
        f'<strong style="color:{colour}">{result.verdict}</strong> &nbsp; {result.requirement_id} '
        f"({level}, checklist {result.checklist_version})<br><span>{_esc(result.reason)}</span>"
    )
    if result.not_applicable:
        html += f"<br><em>Not applicable ({_esc(result.not_applicable.reason_code)}):</em> {_esc(result.not_applicable.justification)}"
    if result.error:
        html += f"<br><em>Error in step '{_esc(result.error.get('step', ''))}':</em> {_esc(result.error.get('message', ''))}"
    for n in result.notes:
        html += f"<br><small>{_esc(n)}</small>"
    html += "</div>"
    return Html(html, f"{result.verdict} {result.requirement_id}: {result.reason}")


def subchecks_frame(result: RequirementResult) -> pd.DataFrame:
    rows = [
        {
            "sub-check": s.id,
            "verdict": str(s.verdict),
            "required": "yes" if s.required else "informational",
            "summary": s.summary,
            "expected": s.expected,
            "observed": s.observed,
        }
        for s in result.subchecks
    ]
    return pd.DataFrame(rows, columns=["sub-check", "verdict", "required", "summary", "expected", "observed"])


def subchecks(result: RequirementResult) -> Any:
    """The sub-check table, verdict cells coloured."""
    frame = subchecks_frame(result)
    if frame.empty:
        return Html("<p><em>No sub-check was recorded.</em></p>", "no sub-checks")

    def colour(value: str) -> str:
        try:
            return f"color:{VERDICT_COLOURS[Verdict(value)]};font-weight:bold"
        except ValueError:
            return ""

    return frame.style.map(colour, subset=["verdict"]).hide(axis="index")


def proves(result: RequirementResult) -> Html:
    def items(xs: list[str]) -> str:
        return "".join(f"<li>{_esc(x)}</li>" for x in xs) or "<li><em>(not stated)</em></li>"

    html = (
        "<div class='aiconf-proves'><h4>What this verdict proves</h4><ul>" + items(result.proves) + "</ul>"
        "<h4>What it does not prove</h4><ul>" + items(result.does_not_prove) + "</ul></div>"
    )
    return Html(html, "proves: " + "; ".join(result.proves))


def series(result: RequirementResult, name: str) -> pd.DataFrame:
    """A time series recorded by the check (``evidence/<requirement>/<name>.csv``); empty when absent."""
    rel = (result.metrics.get("series") or {}).get(name)
    if not rel:
        return pd.DataFrame()
    path = run_dir_of(result) / rel
    return pd.read_csv(path) if path.exists() else pd.DataFrame()


def chart(result: RequirementResult, name: str, *, figsize: tuple[float, float] = (9, 3.6)) -> Any:
    """Draw the check's chart ``name`` (registered with ``@check(..., charts=...)``) from the evidence."""
    from aiconf import registry

    draw = registry.get(result.requirement_id).charts.get(name)
    fig, ax = plt.subplots(figsize=figsize)
    if draw is None:
        ax.text(0.5, 0.5, f"no chart '{name}'", ha="center", va="center")
    else:
        draw(ax, result)
    fig.tight_layout()
    plt.close(fig)  # returned, not shown twice
    return fig


def _figure_png(fig: Any) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def _register_png_formatter() -> None:
    """Show returned figures as PNG in kernels: with the Agg backend forced (headless papermill), IPython would
    otherwise print ``<Figure size ...>`` instead of the chart."""
    try:
        from IPython import get_ipython
        from matplotlib.figure import Figure
    except ImportError:
        return
    ip = get_ipython()
    if ip is not None and hasattr(ip, "display_formatter"):
        ip.display_formatter.formatters["image/png"].for_type(Figure, _figure_png)


_register_png_formatter()


def _esc(text: str) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
