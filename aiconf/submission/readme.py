"""README.md of a submission, generated from the filled PRODUCT.yaml and the run it came from.

Layout: the product blurb and platform table, "How to reproduce" (cluster, toolkit version, profile, parameters that
differ from the defaults, the commands), then the sections of the program's proposed PRODUCT.md generator
(compliance summary, requirements at a glance, detailed requirements per category with evidence links and notes),
so the file also serves as a PRODUCT.md should that proposal land.
"""

from __future__ import annotations

import json
from typing import Any

from aiconf.report.run import Run
from aiconf.submission import schema
from aiconf.submission.template import UserInput


def _link(target: str) -> str:
    shown = target
    for scheme in ("https://", "http://"):
        if shown.startswith(scheme):
            shown = shown[len(scheme) :]
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"[{_md(shown)}]({target})"


def _md(text: Any) -> str:
    """Text safe inside a Markdown table cell or line."""
    return str(text if text is not None else "").replace("|", "\\|").replace("\n", " ").strip()


def _meta(product: dict[str, Any], key: str) -> str:
    value = schema.lookup(product.get("metadata") or {}, key)[1]
    return "" if value is None or schema.is_placeholder(value) else str(value)


def changed_parameters(run: Run) -> dict[str, Any]:
    """The run's parameters that differ from what its profile gives (``--set`` values, in effect); against the plain
    defaults when the profile cannot be loaded here, and everything when neither can."""
    try:
        from aiconf.params import load_defaults, load_parameters

        try:
            base = load_parameters(run.profile).to_dict()
        except Exception:  # a profile file from another machine: compare with the defaults instead
            base = load_defaults()
    except Exception:  # the defaults travel with the toolkit; without them, show everything rather than nothing
        base = {}
    return {
        k: v
        for k, v in run.parameters.items()
        if k != "checklist_version" and v != "<redacted>" and base.get(k, object()) != v
    }


def render(
    product: dict[str, Any], run: Run, user: UserInput, *, files: list[str], policy: str, template_name: str
) -> str:
    """The README.md text."""
    name = _meta(product, "platformName") or "Platform"
    version = _meta(product, "platformVersion")
    k8s = _meta(product, "kubernetesVersion")
    checklist = run.checklist_version
    lines = [f"# {name}{' ' + version if version else ''}: Kubernetes AI Conformance v{checklist}", ""]
    about = user.readme.get("about", "").strip() or _meta(product, "description")
    if about:
        lines += [about, ""]

    lines += ["## Platform information", "", "| | |", "|---|---|"]
    for label, key, link in (
        ("Vendor", "vendorName", False),
        ("Platform", "platformName", False),
        ("Platform version", "platformVersion", False),
        ("Kubernetes version", "kubernetesVersion", False),
        ("Website", "websiteUrl", True),
        ("Repository", "repoUrl", True),
        ("Documentation", "documentationUrl", True),
        ("Kubernetes conformance", "k8sConformanceUrl", True),
        ("Contact", "contactEmailAddress", False),
    ):
        value = _meta(product, key)
        if value:
            lines.append(f"| **{label}** | {_link(value) if link else _md(value)} |")
    description = _meta(product, "description")
    if description:
        lines += ["", f"> {_md(description)}"]
    lines.append("")

    lines += _reproduce(run, user, policy, template_name, k8s)
    lines += _summary(product)
    lines += _details(product)

    lines += ["## Files in this submission", ""]
    described = {
        "PRODUCT.yaml": "the checklist answers (the program's template, filled in)",
        "README.md": "this file",
        "report.html": "the evaluation report: open it in any browser, no network needed",
        "junit_01.xml": "one test case per sub-check (JUnit XML)",
        "e2e.log": "the run as test output (`go test -v` style)",
        "run.json": "what ran where: toolkit, checklist, cluster facts, parameters (redacted)",
        "results/": "one result file per requirement (JSON: verdicts, sub-checks, expected vs observed)",
        "notebooks/": "the executed notebook of every requirement",
        "evidence/": "objects, events, logs and time series captured by each check",
        "SHA256SUMS": "checksums of every other file (`sha256sum -c SHA256SUMS`)",
    }
    for entry, what in described.items():
        if entry in files or any(f.startswith(entry) for f in files) or entry in ("README.md", "SHA256SUMS"):
            lines.append(f"- `{entry}`: {what}")
    lines += ["", "---", "", f"*Generated from PRODUCT.yaml by aiconf {run.toolkit_version}*", ""]
    return "\n".join(lines)


def _reproduce(run: Run, user: UserInput, policy: str, template_name: str, k8s: str) -> list[str]:
    cluster = run.cluster
    lines = ["## How to reproduce", "", "### The cluster", ""]
    if user.readme.get("prerequisites", "").strip():
        lines += [user.readme["prerequisites"].strip(), ""]
    nodes = cluster.get("nodes") or []
    accel = ", ".join(f"{k}: {v}" for k, v in (cluster.get("accelerators") or {}).items())
    lines.append(
        f"Evaluated on Kubernetes {cluster.get('server_version') or k8s or '?'} "
        f"({cluster.get('platform') or '?'}), {len(nodes)} node(s)" + (f"; accelerators {accel}" if accel else "") + "."
    )
    if cluster.get("components"):
        lines.append(f"Components found: {', '.join(map(str, cluster['components']))}.")
    if run.simulated_nodes:
        lines.append(
            f"**Note:** accelerator nodes were simulated ({', '.join(run.simulated_nodes)}); this evidence "
            "does not demonstrate real accelerators."
        )
    lines += ["", "### The evaluation", ""]
    if user.readme.get("reproduce", "").strip():
        lines += [user.readme["reproduce"].strip(), ""]
    changed = changed_parameters(run)
    sets = " ".join(f"--set {k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in sorted(changed.items()))
    run_cmd = f"aiconf run --profile {run.profile} --checklist-version {run.checklist_version}" + (
        f" {sets}" if sets else ""
    )
    lines += [
        f"The evidence was produced by **aiconf {run.toolkit_version}** (profile `{run.profile}`, checklist "
        f"{run.checklist_version}), run `{run.run_id}` from {run.manifest.get('started_at', '?')}"
        f" ({_duration(run.manifest.get('duration_s'))}). The toolkit runs one notebook per requirement against the "
        "cluster and records what it created and observed.",
        "",
        "```sh",
        run_cmd,
        "aiconf report outputs/<run-id>",
        f"aiconf submission build outputs/<run-id> --template {template_name} --metadata metadata.yaml "
        f"--must-na-policy {policy}",
        "aiconf submission validate <submission>/PRODUCT.yaml --offline",
        "```",
        "",
    ]
    if changed:
        lines += [f"Parameters set on top of the profile `{run.profile}`:", "", "| parameter | value |", "|---|---|"]
        lines += [
            f"| `{_md(k)}` | `{_md(json.dumps(v) if not isinstance(v, str) else v)}` |"
            for k, v in sorted(changed.items())
        ]
        lines.append("")
    return lines


def _duration(seconds: Any) -> str:
    try:
        s = float(seconds)
    except (TypeError, ValueError):
        return "duration unknown"
    return f"{s / 60:.1f} min" if s >= 60 else f"{s:.0f} s"


def _entries(product: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for category, entries in (product.get("spec") or {}).items():
        for entry in entries or []:
            if isinstance(entry, dict) and "id" in entry:
                out.append((str(category), entry))
    return out


def _summary(product: dict[str, Any]) -> list[str]:
    entries = _entries(product)
    counts = {s: 0 for s in schema.STATUSES}
    unanswered = 0
    for _, e in entries:
        status = str(e.get("status") or "")
        if status in counts:
            counts[status] += 1
        else:
            unanswered += 1
    lines = [
        "## Compliance summary",
        "",
        "| Status | Count |",
        "|---|---|",
        f"| {schema.status_icon('Implemented')} Implemented | {counts['Implemented']} |",
    ]
    for status in ("Partially Implemented", "Not Implemented", "N/A"):
        if counts[status]:
            lines.append(f"| {schema.status_icon(status)} {status} | {counts[status]} |")
    if unanswered:
        lines.append(f"| {schema.status_icon('')} Not answered | {unanswered} |")
    lines += [
        f"| **Total** | **{len(entries)}** |",
        "",
        "### Requirements at a glance",
        "",
        "| Category | Requirement | Level | Status |",
        "|---|---|---|---|",
    ]
    for category, e in entries:
        status = str(e.get("status") or "")
        lines.append(
            f"| {schema.CATEGORY_TITLES.get(category, category)} | [{schema.title(str(e['id']))}](#{_anchor(e)}) "
            f"| {e.get('level', '')} | {schema.status_icon(status)} {status or 'not answered'} |"
        )
    lines.append("")
    return lines


def _anchor(entry: dict[str, Any]) -> str:
    return f"req-{entry['id']}"


def _details(product: dict[str, Any]) -> list[str]:
    lines = ["---", "", "## Detailed requirements", ""]
    current = None
    for category, e in _entries(product):
        if category != current:
            lines += [f"### {schema.CATEGORY_TITLES.get(category, category)}", ""]
            current = category
        status = str(e.get("status") or "")
        level = str(e.get("level", ""))
        level_icon = "🔴" if level == "MUST" else "🟡"
        lines += [
            f'<a id="{_anchor(e)}"></a>',
            "",
            f"#### {schema.status_icon(status)} {schema.title(str(e['id']))} (`{e['id']}`)",
            "",
            f"**Level:** {level_icon} {level} | **Status:** {status or 'not answered'}",
            "",
        ]
        if e.get("description"):
            lines += [f"> {_md(e['description'])}", ""]
        evidence = [x for x in (e.get("evidence") or []) if isinstance(x, str) and x.strip()]
        if evidence:
            lines += ["**Evidence:**", ""] + [f"- {_link(x)}" for x in evidence] + [""]
        if str(e.get("notes") or "").strip():
            lines += ["**Notes:**", "", f"> {_md(e['notes'])}", ""]
    return lines
