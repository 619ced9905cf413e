"""Two runs side by side: which verdicts, sub-checks and timings changed between run A (before) and run B (after).

A change in verdict is *improved* or *regressed* by this order, best first: PASS, NOT_APPLICABLE, UNKNOWN, SKIPPED,
ERROR, FAIL (a FAIL is the only verdict that says the platform lacks the behaviour, so it ranks last). A timing change
is *notable* when it is both at least ``min_delta_s`` seconds and ``min_ratio`` of the earlier time.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from aiconf.model import Verdict
from aiconf.report.run import Run, load_run

RANK = {
    Verdict.PASS: 5,
    Verdict.NOT_APPLICABLE: 4,
    Verdict.UNKNOWN: 3,
    Verdict.SKIPPED: 2,
    Verdict.ERROR: 1,
    Verdict.FAIL: 0,
}


def _s(value: object) -> str:
    """A cell as text: None and NaN (pandas fills missing cells with it) become "-"."""
    return "-" if value is None or value != value else str(value)


def change_of(a: str | None, b: str | None) -> str:
    """``same``, ``improved``, ``regressed``, ``added`` (only in B) or ``removed`` (only in A)."""
    if a is None and b is None:
        return "same"
    if a is None:
        return "added"
    if b is None:
        return "removed"
    if a == b:
        return "same"
    return "improved" if RANK[Verdict(b)] > RANK[Verdict(a)] else "regressed"


@dataclass
class Comparison:
    """The differences between two runs. Frames hold every row; ``changed_*`` keep only the differences."""

    run_a: Run
    run_b: Run
    verdicts: pd.DataFrame  #: requirement, level_a, level_b, verdict_a, verdict_b, change
    subchecks: pd.DataFrame  #: requirement, subcheck, verdict_a, verdict_b, change
    timings: pd.DataFrame  #: requirement, duration_a, duration_b, delta_s, ratio, notable
    notes: list[str] = field(default_factory=list)  #: version/profile/cluster differences worth knowing

    @property
    def changed_verdicts(self) -> pd.DataFrame:
        return self.verdicts[self.verdicts["change"] != "same"]

    @property
    def changed_subchecks(self) -> pd.DataFrame:
        return self.subchecks[self.subchecks["change"] != "same"]

    @property
    def notable_timings(self) -> pd.DataFrame:
        return self.timings[self.timings["notable"]]

    @property
    def regressions(self) -> list[str]:
        return list(self.verdicts.loc[self.verdicts["change"] == "regressed", "requirement"])

    def text(self) -> str:
        """A plain-text rendering (the ``aiconf compare`` output)."""
        a, b = self.run_a, self.run_b
        lines = [
            f"A: {a.run_id} (checklist {a.checklist_version}, profile {a.profile}, {a.run_dir})",
            f"B: {b.run_id} (checklist {b.checklist_version}, profile {b.profile}, {b.run_dir})",
        ]
        lines += [f"note: {n}" for n in self.notes]
        lines.append("")
        changed = self.changed_verdicts
        lines.append(f"Verdicts: {len(changed)} of {len(self.verdicts)} requirement(s) changed")
        for row in changed.itertuples(index=False):
            lines.append(f"  {row.requirement:<28} {_s(row.verdict_a):<15} -> {_s(row.verdict_b):<15} {row.change}")
        subs = self.changed_subchecks
        lines.append(f"Sub-checks: {len(subs)} changed")
        for row in subs.itertuples(index=False):
            name = f"{row.requirement}/{row.subcheck}"
            lines.append(f"  {name:<50} {_s(row.verdict_a):<15} -> {_s(row.verdict_b):<15} {row.change}")
        timings = self.notable_timings
        lines.append(f"Timings: {len(timings)} notable change(s)")
        for row in timings.itertuples(index=False):
            lines.append(
                f"  {row.requirement:<28} {row.duration_a:8.1f}s -> {row.duration_b:8.1f}s ({row.delta_s:+.1f}s)"
            )
        return "\n".join(lines) + "\n"

    def to_html(self) -> str:
        """An HTML rendering for the summary's baseline section."""
        esc = html.escape
        a, b = self.run_a, self.run_b
        parts = [f"<p>Baseline (A): <code>{esc(a.run_id)}</code> &rarr; this run (B): <code>{esc(b.run_id)}</code></p>"]
        parts += [f'<div class="aiconf-warning">{esc(n)}</div>' for n in self.notes]

        def table(frame: pd.DataFrame, columns: list[str], empty: str) -> str:
            if frame.empty:
                return f"<p><em>{esc(empty)}</em></p>"
            head = "".join(f"<th>{esc(c)}</th>" for c in columns)
            body = ""
            for row in frame[columns].itertuples(index=False):
                cells = []
                for c, v in zip(columns, row, strict=True):
                    text = f"{v:.1f}" if isinstance(v, float) and v == v else _s(v)
                    cls = f' class="aiconf-{esc(text)}"' if c == "change" else ""
                    cells.append(f"<td{cls}>{esc(text)}</td>")
                body += "<tr>" + "".join(cells) + "</tr>"
            return f'<table class="aiconf-table"><tr>{head}</tr>{body}</table>'

        parts.append("<h4>Verdict changes</h4>")
        parts.append(
            table(self.changed_verdicts, ["requirement", "verdict_a", "verdict_b", "change"], "No verdict changed.")
        )
        parts.append("<h4>Sub-check changes</h4>")
        parts.append(
            table(
                self.changed_subchecks,
                ["requirement", "subcheck", "verdict_a", "verdict_b", "change"],
                "No sub-check changed.",
            )
        )
        parts.append("<h4>Timing changes</h4>")
        parts.append(
            table(
                self.notable_timings,
                ["requirement", "duration_a", "duration_b", "delta_s"],
                "No notable timing change.",
            )
        )
        return "\n".join(parts)


def compare(
    run_a: str | Path | Run, run_b: str | Path | Run, *, min_delta_s: float = 5.0, min_ratio: float = 0.2
) -> Comparison:
    """Compare run A (before, e.g. a baseline) with run B (after).

    Raises:
        ConfigError: either folder is not a run folder.
    """
    a = run_a if isinstance(run_a, Run) else load_run(run_a)
    b = run_b if isinstance(run_b, Run) else load_run(run_b)
    ids = list(a.results) + [rid for rid in b.results if rid not in a.results]

    verdict_rows, sub_rows, time_rows = [], [], []
    for rid in ids:
        ra, rb = a.results.get(rid), b.results.get(rid)
        va = str(ra.verdict) if ra else None
        vb = str(rb.verdict) if rb else None
        verdict_rows.append(
            {
                "requirement": rid,
                "level_a": ra.level if ra else None,
                "level_b": rb.level if rb else None,
                "verdict_a": va,
                "verdict_b": vb,
                "change": change_of(va, vb),
            }
        )
        subs_a = {s.id: str(s.verdict) for s in ra.subchecks} if ra else {}
        subs_b = {s.id: str(s.verdict) for s in rb.subchecks} if rb else {}
        for sid in list(subs_a) + [s for s in subs_b if s not in subs_a]:
            sa, sb = subs_a.get(sid), subs_b.get(sid)
            sub_rows.append(
                {"requirement": rid, "subcheck": sid, "verdict_a": sa, "verdict_b": sb, "change": change_of(sa, sb)}
            )
        da, db = a.duration(rid) if ra else None, b.duration(rid) if rb else None
        if da is not None and db is not None:
            delta = db - da
            ratio = (db / da) if da else float("inf")
            notable = abs(delta) >= min_delta_s and (da == 0 or abs(delta) / da >= min_ratio)
            time_rows.append(
                {
                    "requirement": rid,
                    "duration_a": float(da),
                    "duration_b": float(db),
                    "delta_s": round(delta, 3),
                    "ratio": ratio,
                    "notable": bool(notable),
                }
            )

    notes = []
    if a.checklist_version != b.checklist_version:
        notes.append(f"checklist versions differ ({a.checklist_version} vs {b.checklist_version}): levels may differ")
    if a.profile != b.profile:
        notes.append(f"profiles differ ({a.profile} vs {b.profile})")
    sa, sb = a.cluster.get("server_version"), b.cluster.get("server_version")
    if sa != sb:
        notes.append(f"Kubernetes server versions differ ({sa} vs {sb})")
    if a.toolkit_version != b.toolkit_version:
        notes.append(f"toolkit versions differ ({a.toolkit_version} vs {b.toolkit_version})")

    return Comparison(
        a,
        b,
        pd.DataFrame(verdict_rows, columns=["requirement", "level_a", "level_b", "verdict_a", "verdict_b", "change"]),
        pd.DataFrame(sub_rows, columns=["requirement", "subcheck", "verdict_a", "verdict_b", "change"]),
        pd.DataFrame(time_rows, columns=["requirement", "duration_a", "duration_b", "delta_s", "ratio", "notable"]),
        notes,
    )
