"""CI-style outputs of a run: ``junit.xml`` and a ``go test -v``-like ``e2e.log``.

Vendors attach files like these to a submission (``junit_01.xml`` and ``e2e.log``, as from the program's e2e suite),
and CI systems read them. One ``<testsuite>`` per requirement, one ``<testcase>`` per sub-check:

=================  ==========================================================================================
sub-check verdict  JUnit outcome
=================  ==========================================================================================
PASS               passed
FAIL               ``<failure type="FAIL">`` (an informational sub-check's FAIL is ``<skipped>``: it never
                   changes the requirement's verdict)
NOT_APPLICABLE     ``<skipped>`` with the reason
SKIPPED            ``<skipped>``
ERROR              ``<error type="ERROR">``: the toolkit or environment failed
UNKNOWN            ``<error type="UNKNOWN">``: manual evidence is needed, so it must not read as passed
=================  ==========================================================================================

A requirement whose check crashed gets a ``check_completed`` testcase carrying the error; a declared sub-check that
was never recorded gets a testcase with ``<error type="UNKNOWN">``. Each testcase carries a short transcript
(summary, expected, observed) in ``<system-out>``.
"""

from __future__ import annotations

import json
import socket
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from aiconf.model import RequirementResult, SubCheck, Verdict
from aiconf.report.run import Run, load_run

#: Requirement verdicts that make the whole run read FAIL at the end of ``e2e.log``.
FAILING = (Verdict.FAIL, Verdict.ERROR, Verdict.UNKNOWN)


@dataclass
class Case:
    """One testcase, whatever it came from (a sub-check, a missing sub-check, a crashed check)."""

    requirement_id: str
    name: str
    outcome: str  #: passed | failed | skipped | error
    kind: str  #: the verdict as text (FAIL, UNKNOWN, ...)
    message: str
    transcript: str
    seconds: float


def _outcome(sub: SubCheck) -> str:
    v = sub.verdict
    if v is Verdict.PASS:
        return "passed"
    if not sub.required and v is not Verdict.ERROR:
        return "skipped"  # informational: reported, never decisive
    return {
        Verdict.FAIL: "failed",
        Verdict.NOT_APPLICABLE: "skipped",
        Verdict.SKIPPED: "skipped",
        Verdict.ERROR: "error",
        Verdict.UNKNOWN: "error",
    }[v]


def _transcript(sub: SubCheck) -> str:
    lines = [f"verdict: {sub.verdict}{'' if sub.required else ' (informational)'}"]
    for label, value in (("summary", sub.summary), ("expected", sub.expected), ("observed", sub.observed)):
        if value:
            lines.append(f"{label}: {value}")
    if sub.details:
        details = json.dumps(sub.details, default=str, sort_keys=True)
        lines.append("details: " + (details if len(details) <= 600 else details[:600] + " ..."))
    return "\n".join(lines)


def cases(result: RequirementResult) -> list[Case]:
    """The testcases of one requirement, in recording order."""
    rid = result.requirement_id
    out: list[Case] = []
    for s in result.subchecks:
        outcome = _outcome(s)
        message = s.summary or s.observed or str(s.verdict)
        if outcome == "skipped" and not s.required and s.verdict is not Verdict.PASS:
            message = f"informational sub-check {s.verdict}: {message}"
        elif s.verdict is Verdict.NOT_APPLICABLE:
            why = result.not_applicable.justification if result.not_applicable else ""
            message = f"not applicable: {message}" + (f" ({why})" if why else "")
        elif s.verdict is Verdict.UNKNOWN:
            message = f"manual evidence needed: {message}"
        out.append(Case(rid, s.id, outcome, str(s.verdict), message, _transcript(s), float(s.duration_s or 0.0)))
    recorded = {s.id for s in result.subchecks}
    for missing in result.expected_subchecks:
        if missing not in recorded:
            out.append(
                Case(
                    rid,
                    missing,
                    "error",
                    "UNKNOWN",
                    "declared sub-check was never recorded",
                    "the check ended before recording this sub-check",
                    0.0,
                )
            )
    if result.error:
        err = result.error
        transcript = "\n".join(f"{k}: {err[k]}" for k in ("type", "step", "message") if err.get(k))
        if err.get("traceback"):
            transcript += "\n" + str(err["traceback"])
        out.append(
            Case(
                rid,
                "check_completed",
                "error",
                str(err.get("type") or "ERROR"),
                f"step '{err.get('step', '?')}': {err.get('message', 'error')}",
                transcript,
                0.0,
            )
        )
    if not out:
        if result.verdict is Verdict.SKIPPED:
            out.append(
                Case(rid, "check_completed", "skipped", "SKIPPED", result.reason or "the check did not run", "", 0.0)
            )
        else:
            out.append(
                Case(
                    rid,
                    "check_completed",
                    "error",
                    str(result.verdict),
                    result.reason or "no sub-check was recorded",
                    "",
                    0.0,
                )
            )
    return out


def junit_tree(run: Run) -> ET.ElementTree:
    """The JUnit document of a run (schema: the common Jenkins/Ant JUnit format)."""
    hostname = socket.gethostname()
    root = ET.Element("testsuites", name=f"aiconf AI Conformance {run.checklist_version}")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    total_time = 0.0
    for rid, result in run.results.items():
        rcases = cases(result)
        counts = {
            "tests": len(rcases),
            "failures": sum(c.outcome == "failed" for c in rcases),
            "errors": sum(c.outcome == "error" for c in rcases),
            "skipped": sum(c.outcome == "skipped" for c in rcases),
        }
        seconds = float(run.duration(rid) or 0.0)
        suite = ET.SubElement(
            root,
            "testsuite",
            name=rid,
            **{k: str(v) for k, v in counts.items()},
            time=f"{seconds:.3f}",
            timestamp=(result.started_at or "")[:19],
            hostname=hostname,
        )
        props = ET.SubElement(suite, "properties")
        for name, value in (
            ("level", result.level or "informational"),
            ("verdict", str(result.verdict)),
            ("reason", result.reason),
            ("checklist_version", run.checklist_version),
            ("run_id", run.run_id),
            ("toolkit_version", run.toolkit_version),
        ):
            ET.SubElement(props, "property", name=name, value=str(value or ""))
        for c in rcases:
            case = ET.SubElement(
                suite, "testcase", name=f"{rid}/{c.name}", classname=f"aiconf.{rid}", time=f"{c.seconds:.3f}"
            )
            if c.outcome == "failed":
                ET.SubElement(case, "failure", message=c.message, type=c.kind).text = c.transcript
            elif c.outcome == "error":
                ET.SubElement(case, "error", message=c.message, type=c.kind).text = c.transcript
            elif c.outcome == "skipped":
                ET.SubElement(case, "skipped", message=c.message)
            if c.transcript:
                ET.SubElement(case, "system-out").text = c.transcript
        for k in totals:
            totals[k] += counts[k]
        total_time += seconds
    for k, v in totals.items():
        root.set(k, str(v))
    root.set("time", f"{float(run.manifest.get('duration_s') or total_time):.3f}")
    ET.indent(root)
    return ET.ElementTree(root)


def write_junit(run_dir: str | Path) -> Path:
    """Write ``<run>/junit.xml`` and return its path.

    Raises:
        ConfigError: ``run_dir`` is not a run folder.
    """
    run = load_run(run_dir)
    target = run.run_dir / "junit.xml"
    tmp = target.with_suffix(".xml.tmp")
    junit_tree(run).write(tmp, encoding="utf-8", xml_declaration=True)
    tmp.replace(target)
    return target


# -- e2e.log -------------------------------------------------------------------------------------------------------
_GO_VERB = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP", "error": "FAIL"}


def _requirement_verb(result: RequirementResult) -> str:
    if result.verdict is Verdict.PASS:
        return "PASS"
    if result.verdict in (Verdict.NOT_APPLICABLE, Verdict.SKIPPED):
        return "SKIP"
    return "FAIL"


def e2e_lines(run: Run) -> list[str]:
    """``go test -v``-shaped lines: RUN lines, then each result with its sub-results indented, then PASS/FAIL."""
    cluster = run.cluster
    lines = [
        f"aiconf{' ' + run.toolkit_version if run.toolkit_version else ''}: Kubernetes AI Conformance checklist "
        f"{run.checklist_version}, "
        f"run {run.run_id}, profile {run.profile}",
        f"cluster: {cluster.get('server_version', '?')} ({cluster.get('platform', '?')}), "
        f"{len(cluster.get('nodes') or [])} node(s)"
        + (f", simulated accelerator nodes: {', '.join(run.simulated_nodes)}" if run.simulated_nodes else ""),
        f"Will run {len(run.results)} requirement(s)",
        "",
    ]
    failed = False
    for rid, result in run.results.items():
        rcases = cases(result)
        lines.append(f"=== RUN   {rid}")
        for c in rcases:
            lines.append(f"=== RUN   {rid}/{c.name}")
        verb = _requirement_verb(result)
        failed = failed or result.verdict in FAILING
        lines.append(f"--- {verb}: {rid} ({float(run.duration(rid) or 0):.2f}s)")
        level = result.level or "informational"
        lines.append(f"    {rid}: {level} {result.verdict}: {result.reason}")
        for c in rcases:
            lines.append(f"    --- {_GO_VERB[c.outcome]}: {rid}/{c.name} ({c.seconds:.2f}s)")
            if c.outcome != "passed" or c.message != c.kind:
                lines.append(f"        {c.name}: {c.kind}: {c.message}")
    counts = run.counts()
    lines.append("")
    lines.append(
        "Ran {} requirement(s): {}".format(
            len(run.results), ", ".join(f"{n} {v}" for v, n in counts.items() if n) or "none"
        )
    )
    lines.append("FAIL" if failed else "PASS")
    total = float(run.manifest.get("duration_s") or sum(float(run.duration(r) or 0) for r in run.results))
    lines.append(f"{'FAIL' if failed else 'ok'}  \taiconf/{run.checklist_version}\t{total:.3f}s")
    return lines


def write_e2e_log(run_dir: str | Path) -> Path:
    """Write ``<run>/e2e.log`` and return its path.

    Raises:
        ConfigError: ``run_dir`` is not a run folder.
    """
    run = load_run(run_dir)
    target = run.run_dir / "e2e.log"
    tmp = target.with_suffix(".log.tmp")
    tmp.write_text("\n".join(e2e_lines(run)) + "\n")
    tmp.replace(target)
    return target
