"""What the summary notebook (``notebooks/summary.py``) shows: one call per cell, all logic here.

Each function returns something Jupyter displays (an :class:`~aiconf.display.Html`, a pandas ``Styler``) or displays
a sequence itself (:func:`requirement_sections`). The per-requirement parts reuse :mod:`aiconf.display`, so a verdict,
a sub-check table and a chart look the same here as in the requirement's own notebook.

Links are relative to the run folder (``report.html`` lives there), so the report still finds the executed
notebooks and evidence when the folder is copied or archived. Charts are PNG data URIs: the page needs no file
beside it and no network.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

from aiconf import display
from aiconf.display import VERDICT_COLOURS, Html
from aiconf.model import MustNaPolicy, RequirementResult, Verdict, product_status
from aiconf.report.run import Run, load_run

#: Verdicts in the order the report lists counts.
VERDICT_ORDER = [Verdict.PASS, Verdict.FAIL, Verdict.NOT_APPLICABLE, Verdict.UNKNOWN, Verdict.ERROR, Verdict.SKIPPED]

#: What each verdict means, for the reader (shown once, under the overview).
VERDICT_MEANING = {
    Verdict.PASS: "the behaviour was observed",
    Verdict.FAIL: "the behaviour was tested and not observed",
    Verdict.NOT_APPLICABLE: "the requirement's condition does not hold on this platform (justification drafted)",
    Verdict.UNKNOWN: "stack or hardware not recognised, or evidence incomplete: manual evidence needed",
    Verdict.ERROR: "the toolkit or the environment failed; no verdict on the platform",
    Verdict.SKIPPED: "the check did not run in this run",
}

CHART_DPI = 100
MAX_LISTED_FILES = 10


def load(run_dir: str | Path) -> Run:
    """The run folder the notebook reports on (see :func:`aiconf.report.run.load_run`).

    Empty (the notebook opened by hand in JupyterLab): the latest run, ``outputs/latest`` beside or above the
    notebook's folder.
    """
    if not run_dir:
        for candidate in (Path("outputs/latest"), Path("../outputs/latest")):
            if (candidate / "run.json").is_file():
                run_dir = candidate
                break
        else:
            run_dir = "."
    return load_run(run_dir)


def esc(text: Any) -> str:
    return html.escape(str(text if text is not None else ""), quote=True)


def policy_of(run: Run) -> MustNaPolicy:
    try:
        return MustNaPolicy(run.parameters.get("must_na_policy") or MustNaPolicy.NA)
    except ValueError:
        return MustNaPolicy.NA


def badge(verdict: Verdict | str, text: str | None = None) -> str:
    try:
        colour = VERDICT_COLOURS[Verdict(verdict)]
    except ValueError:
        colour = "#57606a"
    return f'<span class="aiconf-badge" style="background:{colour}">{esc(text or verdict)}</span>'


def fmt_seconds(value: float | None) -> str:
    if value is None or value != value:  # None or NaN
        return "-"
    value = float(value)
    if value < 60:
        return f"{value:.1f} s"
    minutes, seconds = divmod(int(round(value)), 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


# -- header: what was evaluated, where ---------------------------------------------------------------------------------
def header(run: Run) -> Html:
    """Run identity, cluster facts, verdict counts, and the warnings an auditor must see first."""
    m = run.manifest
    cluster = run.cluster
    rows = [
        ("Checklist version", run.checklist_version or "?"),
        ("Run", run.run_id),
        ("Toolkit", f"aiconf {run.toolkit_version}" if run.toolkit_version else "aiconf"),
        ("Profile", run.profile),
        ("Started / finished", f"{m.get('started_at', '?')} / {m.get('finished_at', 'not finished')}"),
        ("Duration", fmt_seconds(m.get("duration_s"))),
        ("Runner exit code", m.get("exit_code", "-")),
        ("Kubernetes server", cluster.get("server_version") or "?"),
        ("Platform", cluster.get("platform") or "?"),
    ]
    accel = cluster.get("accelerators") or {}
    if accel:
        rows.append(("Accelerators", ", ".join(f"{k}: {v}" for k, v in accel.items())))
    if cluster.get("components"):
        rows.append(("Components found", ", ".join(map(str, cluster["components"]))))
    facts = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)

    counts = run.counts()
    chips = " ".join(badge(v, f"{counts[str(v)]} {v}") for v in VERDICT_ORDER if counts[str(v)])
    warnings = []
    if run.simulated_nodes:
        warnings.append(
            f"Accelerator nodes are simulated ({', '.join(run.simulated_nodes)}): this run demonstrates the toolkit "
            "and the control plane; it is not evidence about real accelerators and cannot support a certification."
        )
    if "error" in cluster:
        warnings.append(f"The cluster could not be described: {cluster['error']}")
    if not m.get("finished_at"):
        warnings.append("The run did not finish (no finished_at in run.json): results may be incomplete.")
    warnings += run.problems
    for rid in m.get("not_automated") or []:
        warnings.append(f"{rid}: no automated check in this toolkit version; manual evidence is needed.")
    warn_html = "".join(f'<div class="aiconf-warning">{esc(w)}</div>' for w in warnings)

    nodes = cluster.get("nodes") or []
    node_html = ""
    if nodes:
        head = "<tr><th>node</th><th>ready</th><th>accelerators</th><th>product</th><th>simulated</th></tr>"
        body = "".join(
            f"<tr><td>{esc(n.get('name'))}</td><td>{'yes' if n.get('ready') else 'NO'}</td>"
            f"<td>{esc(n.get('gpu_allocatable', 0))}</td><td>{esc(n.get('gpu_product', ''))}</td>"
            f"<td>{'yes' if n.get('simulated') else 'no'}</td></tr>"
            for n in nodes
        )
        node_html = (
            f'<details class="aiconf-nodes"><summary>{len(nodes)} node(s)</summary>'
            f'<table class="aiconf-table">{head}{body}</table></details>'
        )
    text = f"{run.run_id}: " + ", ".join(f"{counts[str(v)]} {v}" for v in VERDICT_ORDER if counts[str(v)])
    return Html(
        f'<div class="aiconf-header">{warn_html}<table class="aiconf-facts">{facts}</table>{node_html}'
        f'<p class="aiconf-counts">{len(run.results)} requirement(s): {chips}</p></div>',
        text,
    )


# -- overview ----------------------------------------------------------------------------------------------------------
def overview_frame(run: Run) -> Any:
    frame = run.frame.copy()
    policy = policy_of(run)
    frame["suggested status"] = [
        str(product_status(run.results[rid], policy)[0]) or "(auditor)" for rid in frame["requirement"]
    ]
    return frame


def overview(run: Run) -> Any:
    """Requirement x level x verdict x duration, verdict cells coloured, ids linking to their section."""
    frame = overview_frame(run)
    if frame.empty:
        return Html("<p><em>No requirement results in this run.</em></p>", "no results")
    frame = frame[["requirement", "title", "level", "verdict", "duration_s", "suggested status", "reason"]].copy()
    frame["requirement"] = [f'<a href="#{esc(r)}">{esc(r)}</a>' for r in frame["requirement"]]
    frame["duration"] = [fmt_seconds(d) for d in frame.pop("duration_s")]
    frame = frame[["requirement", "title", "level", "verdict", "duration", "suggested status", "reason"]]

    def colour(value: str) -> str:
        try:
            return f"color:#fff;background:{VERDICT_COLOURS[Verdict(value)]};font-weight:bold;text-align:center"
        except ValueError:
            return ""

    def level_style(value: str) -> str:
        return "font-weight:bold" if value == "MUST" else ""

    styler = (
        frame.style.map(colour, subset=["verdict"])
        .map(level_style, subset=["level"])
        .format({"title": esc, "reason": esc, "suggested status": esc})
        .hide(axis="index")
        .set_table_attributes('class="aiconf-overview"')
    )
    return styler


def legend() -> Html:
    items = "".join(f"<li>{badge(v)} {esc(VERDICT_MEANING[v])}</li>" for v in VERDICT_ORDER)
    return Html(f'<ul class="aiconf-legend">{items}</ul>', "verdict legend")


def durations_chart(run: Run) -> Html:
    """A bar per requirement: how long its notebook ran, coloured by verdict."""
    import matplotlib.pyplot as plt

    frame = run.frame
    if frame.empty:
        return Html("", "")
    frame = frame.iloc[::-1]
    values = [float(d) if d is not None and d == d else 0.0 for d in frame["duration_s"]]
    height = max(1.6, 0.32 * len(frame) + 0.8)
    fig, ax = plt.subplots(figsize=(9, height))
    colours = [VERDICT_COLOURS.get(Verdict(v), "#57606a") for v in frame["verdict"]]
    ax.barh(list(frame["requirement"]), values, color=colours)
    for y, (v, verdict) in enumerate(zip(values, frame["verdict"], strict=True)):
        ax.text(v, y, f"  {fmt_seconds(v)}  {verdict}", va="center", fontsize=8)
    ax.set_xlabel("seconds")
    ax.set_title("Time per requirement (coloured by verdict)", fontsize=10)
    ax.set_xlim(0, max(values + [1.0]) * 1.35)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return Html(figure_html(fig, "Time per requirement, coloured by verdict"), "durations chart")


# -- PRODUCT.yaml suggestions ------------------------------------------------------------------------------------------
def product_statuses(run: Run, policy: MustNaPolicy | str | None = None) -> Html:
    """What ``aiconf submission build`` would write for each requirement, and every warning the mapping raises."""
    policy = MustNaPolicy(policy) if policy else policy_of(run)
    rows, warnings = [], []
    for rid, r in run.results.items():
        status, notes, warns = product_status(r, policy)
        warnings += warns
        rows.append(
            f"<tr><td><a href='#{esc(rid)}'>{esc(rid)}</a></td><td>{esc(r.level or '-')}</td>"
            f"<td>{badge(r.verdict)}</td><td><strong>{esc(status or '(left for the auditor)')}</strong></td>"
            f"<td>{esc(notes)}</td></tr>"
        )
    head = "<tr><th>requirement</th><th>level</th><th>verdict</th><th>suggested status</th><th>drafted notes</th></tr>"
    warn_html = "".join(f"<li>{esc(w)}</li>" for w in warnings) or "<li>none</li>"
    return Html(
        f"<p>MUST judged not applicable is written as <code>{esc(policy)}</code> "
        "(<code>--must-na-policy</code>; the program's FAQ accepts N/A with a justification, "
        "its validator does not).</p>"
        f'<table class="aiconf-table">{head}{"".join(rows)}</table>'
        f'<div class="aiconf-warnings"><strong>Warnings</strong><ul>{warn_html}</ul></div>',
        "\n".join(warnings),
    )


# -- baseline ----------------------------------------------------------------------------------------------------------
def baseline(run: Run, baseline_dir: str | Path | None) -> Html:
    """Differences from an earlier run (verdicts, sub-checks, timings); says so when there is no baseline."""
    if not baseline_dir:
        return Html(
            "<p><em>No baseline run was given (<code>aiconf report RUN --baseline OTHER_RUN</code>).</em></p>",
            "no baseline",
        )
    from aiconf.report.compare import compare

    comparison = compare(baseline_dir, run.run_dir)
    return Html(comparison.to_html(), comparison.text())


# -- per requirement ---------------------------------------------------------------------------------------------------
def toc(run: Run) -> Html:
    items = "".join(
        f'<li><a href="#{esc(rid)}">{esc(rid)}</a> {badge(r.verdict)} <small>{esc(r.level or "")}</small></li>'
        for rid, r in run.results.items()
    )
    return Html(f'<ol class="aiconf-toc">{items}</ol>', "contents")


def requirement_sections(run: Run) -> None:
    """Display one section per requirement: heading, verdict, charts, sub-checks, proves, notes, links."""
    from IPython.display import display as show

    for result in run.results.values():
        for part in requirement_section(run, result):
            show(part)


def requirement_section(run: Run, result: RequirementResult) -> list[Any]:
    rid = result.requirement_id
    level = result.level or "not in this checklist version"
    parts: list[Any] = [
        Html(
            f'<h2 id="{esc(rid)}" class="aiconf-req">{esc(result.title or rid)} <code>{esc(rid)}</code> '
            f"{badge(result.verdict)} <small>{esc(level)} &middot; {esc(fmt_seconds(run.duration(rid)))}</small></h2>",
            f"== {rid} ==",
        ),
        display.verdict(result),
    ]
    if result.error and result.error.get("traceback"):
        parts.append(
            Html(
                f"<details><summary>traceback</summary><pre>{esc(result.error['traceback'])}</pre></details>",
                "traceback",
            )
        )
    parts += [Html(figure_html(fig, caption), caption) for caption, fig in charts(result)]
    parts.append(display.subchecks(result))
    missing = [s for s in result.expected_subchecks if result.subcheck(s) is None]
    if missing:
        parts.append(Html(f"<p><em>Declared but never recorded:</em> {esc(', '.join(missing))}</p>", "missing"))
    if result.proves or result.does_not_prove:
        parts.append(display.proves(result))
    parts.append(links(run, result))
    return parts


def charts(result: RequirementResult) -> list[tuple[str, Any]]:
    """``(caption, figure)`` for each chart the check registered; a generic plot of recorded series when the check
    module is absent or registers none. A chart that fails to draw becomes a caption saying so."""
    import matplotlib.pyplot as plt

    out: list[tuple[str, Any]] = []
    try:
        from aiconf import registry

        names = list(registry.get(result.requirement_id).charts)
    except Exception:  # the check module is absent or fails to import: its charts are simply not drawn
        names = []
    for name in names:
        try:
            out.append((f"{result.requirement_id}: {name}", display.chart(result, name)))
        except Exception as e:  # a chart must never sink the report; say what happened instead
            fig, ax = plt.subplots(figsize=(9, 0.8))
            ax.axis("off")
            ax.text(0, 0.5, f"chart '{name}' could not be drawn: {type(e).__name__}: {e}"[:160], va="center")
            plt.close(fig)
            out.append((f"{result.requirement_id}: {name} (failed)", fig))
    if not names:
        for series_name in result.metrics.get("series") or {}:
            fig = generic_series_chart(result, series_name)
            if fig is not None:
                out.append((f"{result.requirement_id}: recorded series '{series_name}' (generic view)", fig))
    return out


def generic_series_chart(result: RequirementResult, name: str) -> Any:
    """Numeric columns of a recorded series over time, with event markers; None when there is nothing to draw."""
    import matplotlib.pyplot as plt
    import pandas as pd

    frame = display.series(result, name)
    if frame.empty:
        return None
    x = frame["t_s"] if "t_s" in frame else pd.Series(range(len(frame)))
    numeric = [c for c in frame.columns if c not in ("t_s",) and pd.api.types.is_numeric_dtype(frame[c])][:6]
    if not numeric:
        return None
    fig, ax = plt.subplots(figsize=(9, 3.2))
    for column in numeric:
        ax.plot(x, frame[column], label=column, drawstyle="steps-post")
    if "event" in frame:
        for t, event in zip(x, frame["event"], strict=True):
            if isinstance(event, str) and event:
                ax.axvline(t, color="#6e7781", linestyle="--", linewidth=0.8)
                ax.annotate(event, (t, ax.get_ylim()[1]), fontsize=7, rotation=90, va="top", ha="right")
    ax.set_xlabel("seconds since start" if "t_s" in frame else "sample")
    ax.legend(fontsize=8, loc="best")
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    plt.close(fig)
    return fig


def links(run: Run, result: RequirementResult) -> Html:
    """Relative links to the executed notebook, the result file and every evidence file (missing ones flagged)."""
    rid = result.requirement_id
    entries: list[tuple[str, str]] = []
    nb = run.notebook_path(rid)
    if nb:
        entries.append(("executed notebook", nb))
    if (run.run_dir / "results" / f"{rid}.json").is_file():
        entries.append(("result (JSON)", f"results/{rid}.json"))
    seen = {rel for _, rel in entries}
    for rel in list(result.evidence) + list((result.metrics.get("series") or {}).values()):
        if rel not in seen:
            seen.add(rel)
            entries.append(("evidence", rel))
    items = []
    for kind, rel in entries:
        exists = (run.run_dir / rel).exists()
        mark = "" if exists else " <em>(missing)</em>"
        items.append(f'<li>{esc(kind)}: <a href="{esc(rel)}">{esc(rel)}</a>{mark}</li>')
    if len(items) > MAX_LISTED_FILES:  # pod logs and object dumps can be many: keep the section readable
        rest = items[MAX_LISTED_FILES:]
        items = items[:MAX_LISTED_FILES] + [
            f"<li><details><summary>{len(rest)} more file(s)</summary><ul>{''.join(rest)}</ul></details></li>"
        ]
    notebook_status = (run.notebooks.get(rid) or {}).get("status")
    extra = f"<p><small>notebook status: {esc(notebook_status)}</small></p>" if notebook_status else ""
    body = "".join(items) or "<li><em>no files</em></li>"
    return Html(
        f'<div class="aiconf-links"><h4>Files</h4><ul>{body}</ul>{extra}</div>',
        "files: " + ", ".join(rel for _, rel in entries),
    )


# -- helpers -----------------------------------------------------------------------------------------------------------
def figure_html(fig: Any, caption: str) -> str:
    """A matplotlib figure as an embedded PNG with a caption (no file, no network)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=CHART_DPI, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return (
        f'<figure class="aiconf-figure"><img src="data:image/png;base64,{data}" alt="{esc(caption)}">'
        f"<figcaption>{esc(caption)}</figcaption></figure>"
    )


def parameters_table(run: Run) -> Html:
    """The run's (redacted) parameters, collapsed."""
    rows = "".join(
        f"<tr><th>{esc(k)}</th><td>{esc(json.dumps(v) if not isinstance(v, str) else v)}</td></tr>"
        for k, v in sorted(run.parameters.items())
    )
    return Html(
        f"<details><summary>{len(run.parameters)} parameter(s)</summary>"
        f'<table class="aiconf-table">{rows}</table></details>',
        "parameters",
    )
