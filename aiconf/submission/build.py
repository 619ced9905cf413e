"""Build a submission bundle from a run: the program's template filled in, a README, the evidence, checksums.

Bundle layout (the run folder's layout is kept, so the report's relative links still work inside the bundle)::

    <out>/PRODUCT.yaml   README.md   report.html   junit_01.xml   e2e.log   run.json
          results/<id>.json   notebooks/<id>.ipynb   evidence/<id>/...   SHA256SUMS

The default ``<out>`` is ``<run>/submission/v<X.Y>/<product>/``: the folder name the program's validator derives the
checklist version from. Statuses come from :func:`aiconf.model.product_status` with the MUST/N-A policy; what the
toolkit cannot decide (UNKNOWN, ERROR, not run) is left empty unless the user's metadata file answers it.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aiconf.errors import ConfigError
from aiconf.model import MustNaPolicy, ProductStatus, RequirementResult, Verdict, product_status
from aiconf.report.run import Run, load_run
from aiconf.submission import readme as readme_mod
from aiconf.submission import schema
from aiconf.submission.template import (
    UserInput,
    fill_metadata,
    load_template,
    load_user_input,
    placeholders_left,
    set_answer,
)
from aiconf.submission.validator import Problem, is_valid, validate

#: Run folder entries copied into the bundle (source -> name in the bundle).
COPIED_FILES = {"report.html": "report.html", "junit.xml": "junit_01.xml", "e2e.log": "e2e.log", "run.json": "run.json"}
COPIED_DIRS = ("results", "notebooks", "evidence")
GENERATED_MARK = "*Generated from PRODUCT.yaml by aiconf"


@dataclass
class Bundle:
    """What :func:`build` made."""

    out_dir: Path
    product_yaml: Path
    readme: Path
    checksums: Path
    version: str
    policy: MustNaPolicy
    files: list[str] = field(default_factory=list)  #: relative to ``out_dir``
    statuses: dict[str, str] = field(default_factory=dict)  #: requirement id -> status written
    warnings: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)  #: offline validation of the result

    @property
    def valid(self) -> bool:
        return is_valid(self.problems)


def build(
    run_dir: str | Path,
    template: str | Path,
    metadata: str | Path,
    out_dir: str | Path | None = None,
    policy: MustNaPolicy | str | None = None,
) -> Bundle:
    """Build the submission bundle of ``run_dir``.

    Args:
        run_dir: a run folder.
        template: the program's checklist template for the run's version (``AIConformance-X.Y.yaml``).
        metadata: the user's metadata file (see :func:`aiconf.submission.template.load_user_input`).
        out_dir: where to write; default ``<run>/submission/v<X.Y>/<product>/``. An existing folder is replaced only
            when it holds an earlier aiconf bundle.
        policy: how a MUST judged not applicable is written; default the run's ``must_na_policy`` parameter.

    Raises:
        ConfigError: a bad run folder, template or metadata file; a template of another checklist version; a
            ``[placeholder]`` left in the metadata; an output folder that is not empty and not an earlier bundle.
    """
    run = load_run(run_dir)
    tpl = load_template(template)
    user = load_user_input(metadata)
    if not run.checklist_version:
        raise ConfigError(f"{run.run_dir}/run.json names no checklist_version")
    if tpl.version != run.checklist_version:
        raise ConfigError(
            f"template {tpl.path} is for checklist {tpl.version} but run {run.run_id} evaluated "
            f"{run.checklist_version}: use AIConformance-{run.checklist_version}.yaml"
        )
    policy = MustNaPolicy(policy or run.parameters.get("must_na_policy") or MustNaPolicy.NA)

    warnings = fill_metadata(tpl, user.metadata)
    if schema.lookup(tpl.doc["metadata"], "k8sConformanceUrl")[0] is None:
        raise ConfigError(
            f"metadata file {user.path}: k8sConformanceUrl is required (the template lacks it, the "
            "program's validator requires it)"
        )
    left = placeholders_left(tpl)
    if left:
        raise ConfigError(
            f"metadata file {user.path} leaves template placeholder(s) in: {', '.join(left)} "
            "(set them under metadata:, or set an optional one to null to drop it)"
        )

    name = str(schema.lookup(tpl.doc["metadata"], "platformName")[1] or "product")
    out = Path(out_dir) if out_dir else run.run_dir / "submission" / f"v{tpl.version}" / slug(name)
    prepare_out_dir(out)

    warnings += copy_evidence(run, out)
    if run.simulated_nodes:
        warnings.append(
            f"accelerator nodes were simulated ({', '.join(run.simulated_nodes)}): this evidence does not "
            "demonstrate real accelerators and must not be submitted for certification"
        )
    ids = {e["id"] for _, e in tpl.requirements()}
    for section, answers in (("evidence", user.evidence), ("requirements", user.requirements)):
        for rid in answers:
            if rid not in ids:
                warnings.append(f"metadata file {section}.{rid}: not a requirement of checklist {tpl.version}; ignored")

    statuses: dict[str, str] = {}
    for _, entry in tpl.requirements():
        rid = str(entry["id"])
        status, evidence, notes, warns = answer(run, rid, str(entry.get("level", "")), out, user, policy)
        set_answer(entry, status, evidence, notes)
        statuses[rid] = status
        warnings += warns

    product_path = out / "PRODUCT.yaml"
    product_path.write_text(tpl.dumps(), encoding="utf-8")
    product = yaml.safe_load(product_path.read_text(encoding="utf-8"))
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    readme_path = out / "README.md"
    readme_path.write_text(
        readme_mod.render(product, run, user, files=files, policy=str(policy), template_name=tpl.path.name),
        encoding="utf-8",
    )
    problems = validate(product_path, offline=True, version=tpl.version)
    checksums = write_checksums(out)
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    return Bundle(out, product_path, readme_path, checksums, tpl.version, policy, files, statuses, warnings, problems)


def answer(
    run: Run, rid: str, level: str, out: Path, user: UserInput, policy: MustNaPolicy
) -> tuple[str, list[str], str, list[str]]:
    """``(status, evidence, notes, warnings)`` of one requirement."""
    warnings: list[str] = []
    result = run.results.get(rid)
    manual = user.requirements.get(rid, {})
    extra = list(user.evidence.get(rid, [])) + list(manual.get("evidence", []))
    if result is None:
        status, notes, files = "", "", []
        if not manual:
            warnings.append(
                f"{rid}: not evaluated in run {run.run_id}; left unanswered"
                + (" (a MUST must be answered)" if level == "MUST" else "")
            )
    else:
        status, notes, warns = product_status(result, policy)
        status = str(status)
        warnings += warns
        files = bundle_evidence(out, rid)
        if status == ProductStatus.IMPLEMENTED and result.verdict is Verdict.PASS:
            notes = implemented_note(run, result)
        elif status == ProductStatus.UNDECIDED and level == "SHOULD" and not manual:
            # A SHOULD with no status and no evidence is accepted as unanswered; with evidence it would be invalid.
            warnings.append(
                f"{rid}: SHOULD left unanswered (verdict {result.verdict}); answer it under "
                "requirements: in the metadata file to include its evidence"
            )
            return "", list(user.evidence.get(rid, [])) if user.evidence.get(rid) else [], "", warnings
    if manual:
        if "status" in manual:
            before = status
            status = str(manual["status"])
            if result is not None and before != status:
                warnings.append(
                    f"{rid}: status '{status}' set by the metadata file (toolkit suggested "
                    f"'{before or 'nothing'}', verdict {result.verdict})"
                )
        if "notes" in manual:
            notes = str(manual["notes"])
    if status == ProductStatus.NOT_APPLICABLE and not notes.strip():
        warnings.append(f"{rid}: N/A without notes; the program requires a justification")
    evidence = _unique(extra + files)
    return status, evidence, notes, warnings


def implemented_note(run: Run, result: RequirementResult) -> str:
    date = (run.manifest.get("started_at") or "")[:10]
    parts = [
        f"Demonstrated with aiconf {run.toolkit_version} (run {run.run_id}{', ' + date if date else ''}): "
        f"{result.reason}."
    ]
    parts += [f"{n.rstrip('.')}." for n in result.notes]
    parts.append(f"Details: report.html#{result.requirement_id}.")
    return " ".join(parts)


def bundle_evidence(out: Path, rid: str) -> list[str]:
    """The bundle's files about ``rid``, relative to the bundle (only those that exist)."""
    candidates = ["report.html", f"notebooks/{rid}.ipynb", f"results/{rid}.json", f"evidence/{rid}"]
    return [c for c in candidates if (out / c).exists()]


def copy_evidence(run: Run, out: Path) -> list[str]:
    """Copy the run's report, CI files, results, executed notebooks and evidence; return warnings."""
    from aiconf.report.junit import e2e_lines, junit_tree

    warnings = []
    src = run.run_dir
    if not (src / "report.html").is_file():
        try:
            from aiconf.report.html import build_report

            build_report(src)
        except Exception as e:  # the bundle is still useful without the report; say so
            warnings.append(f"report.html could not be built ({e}); the bundle has no report")
    for name, target in COPIED_FILES.items():
        if (src / name).is_file():
            shutil.copy2(src / name, out / target)
    if not (out / "junit_01.xml").exists():
        junit_tree(run).write(out / "junit_01.xml", encoding="utf-8", xml_declaration=True)
    if not (out / "e2e.log").exists():
        (out / "e2e.log").write_text("\n".join(e2e_lines(run)) + "\n")
    for name in COPIED_DIRS:
        if (src / name).is_dir():
            shutil.copytree(src / name, out / name, ignore=shutil.ignore_patterns("*.tmp"))
    return warnings


def prepare_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not is_bundle(out):
            raise ConfigError(
                f"output folder {out} is not empty and holds no earlier aiconf bundle; choose another --out or empty it"
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def is_bundle(path: Path) -> bool:
    readme = path / "README.md"
    return (
        (path / "PRODUCT.yaml").is_file()
        and (path / "SHA256SUMS").is_file()
        and readme.is_file()
        and GENERATED_MARK in readme.read_text(encoding="utf-8", errors="replace")
    )


def write_checksums(out: Path) -> Path:
    """``SHA256SUMS`` in ``sha256sum`` format over every other file of the bundle, sorted by path."""
    lines = []
    for path in sorted(p for p in out.rglob("*") if p.is_file() and p.name != "SHA256SUMS"):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        lines.append(f"{digest}  {path.relative_to(out).as_posix()}")
    target = out / "SHA256SUMS"
    target.write_text("\n".join(lines) + "\n")
    return target


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "product"


def _unique(items: list[Any]) -> list[str]:
    seen: list[str] = []
    for item in items:
        item = str(item).strip()
        if item and item not in seen:
            seen.append(item)
    return seen
