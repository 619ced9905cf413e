"""A run folder read back: ``run.json`` plus ``results/*.json``, in checklist order, as model objects and frames.

Everything the report, the JUnit/e2e writers, the comparison and the submission builder know about a run comes from
here. Nothing touches the cluster. A selected requirement whose result file is missing (an interrupted run, a
notebook that died before writing) still appears: as ERROR with the notebook's status as the reason, or SKIPPED when
it never ran.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from aiconf import checklists
from aiconf.errors import ConfigError
from aiconf.model import RequirementResult, Verdict

#: Notebook statuses (run.json ``notebooks.<id>.status``) that mean the check never started.
NEVER_RAN = ("not-run", "interrupted")


@dataclass
class Run:
    """A finished (or interrupted) run folder."""

    run_dir: Path
    manifest: dict[str, Any]
    results: dict[str, RequirementResult] = field(default_factory=dict)  #: checklist order
    problems: list[str] = field(default_factory=list)  #: unreadable result files and the like

    # -- identity --------------------------------------------------------------------------------------------
    @property
    def run_id(self) -> str:
        return str(self.manifest.get("run_id") or self.run_dir.name)

    @property
    def checklist_version(self) -> str:
        return str(self.manifest.get("checklist_version") or "")

    @property
    def toolkit_version(self) -> str:
        return str(self.manifest.get("toolkit_version") or "")

    @property
    def profile(self) -> str:
        return str(self.manifest.get("profile") or "default")

    @property
    def cluster(self) -> dict[str, Any]:
        return self.manifest.get("cluster") or {}

    @property
    def parameters(self) -> dict[str, Any]:
        return self.manifest.get("parameters") or {}

    @property
    def notebooks(self) -> dict[str, dict[str, Any]]:
        return self.manifest.get("notebooks") or {}

    @property
    def selected(self) -> list[str]:
        return list(self.manifest.get("selected") or self.results)

    @property
    def simulated_nodes(self) -> list[str]:
        return [n.get("name", "?") for n in self.cluster.get("nodes") or [] if n.get("simulated")]

    def level(self, requirement_id: str) -> str | None:
        """MUST/SHOULD in this run's checklist version (None: not part of it)."""
        r = self.results.get(requirement_id)
        if r is not None and r.level:
            return r.level
        try:
            return checklists.load().get(requirement_id).level(self.checklist_version)
        except ConfigError:
            return None

    def title(self, requirement_id: str) -> str:
        r = self.results.get(requirement_id)
        if r is not None and r.title:
            return r.title
        try:
            return checklists.load().get(requirement_id).title
        except ConfigError:
            return requirement_id

    def category(self, requirement_id: str) -> str:
        try:
            return checklists.load().get(requirement_id).category
        except ConfigError:
            return ""

    def duration(self, requirement_id: str) -> float | None:
        """Wall time of the requirement's notebook (run.json), else the check's own duration."""
        nb = self.notebooks.get(requirement_id) or {}
        if nb.get("duration_s") is not None:
            return float(nb["duration_s"])
        r = self.results.get(requirement_id)
        return r.duration_s if r is not None else None

    def notebook_path(self, requirement_id: str) -> str | None:
        """The executed notebook, relative to the run folder, when it exists."""
        rel = (self.notebooks.get(requirement_id) or {}).get("path") or f"notebooks/{requirement_id}.ipynb"
        return rel if (self.run_dir / rel).is_file() else None

    # -- frames ----------------------------------------------------------------------------------------------
    @cached_property
    def frame(self) -> pd.DataFrame:
        """One row per requirement: id, category, title, level, verdict, reason, duration, notebook status."""
        rows = []
        for rid, r in self.results.items():
            rows.append(
                {
                    "requirement": rid,
                    "category": self.category(rid),
                    "title": self.title(rid),
                    "level": r.level or "-",
                    "verdict": str(r.verdict),
                    "reason": r.reason,
                    "duration_s": self.duration(rid),
                    "notebook": (self.notebooks.get(rid) or {}).get("status", ""),
                    "subchecks": len(r.subchecks),
                }
            )
        columns = [
            "requirement",
            "category",
            "title",
            "level",
            "verdict",
            "reason",
            "duration_s",
            "notebook",
            "subchecks",
        ]
        return pd.DataFrame(rows, columns=columns)

    def counts(self) -> dict[str, int]:
        """Verdict -> number of requirements, every verdict present (zeros included), in a fixed order."""
        out = {str(v): 0 for v in Verdict}
        for r in self.results.values():
            out[str(r.verdict)] += 1
        return out

    def subcheck_frame(self) -> pd.DataFrame:
        rows = []
        for rid, r in self.results.items():
            for s in r.subchecks:
                rows.append(
                    {
                        "requirement": rid,
                        "subcheck": s.id,
                        "verdict": str(s.verdict),
                        "required": s.required,
                        "duration_s": s.duration_s,
                        "summary": s.summary,
                    }
                )
        return pd.DataFrame(rows, columns=["requirement", "subcheck", "verdict", "required", "duration_s", "summary"])


def is_run_dir(path: Path) -> bool:
    return (path / "run.json").is_file()


def load_run(run_dir: str | Path) -> Run:
    """Read a run folder.

    Raises:
        ConfigError: the folder is missing, is not a run folder (no ``run.json``), or ``run.json`` is unreadable.
    """
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise ConfigError(f"run folder {run_dir} does not exist")
    if not run_dir.is_dir() or not is_run_dir(run_dir):
        raise ConfigError(
            f"{run_dir} is not a run folder (no run.json; expected outputs/<run-id>/ written by `aiconf run`)"
        )
    try:
        manifest = json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{run_dir / 'run.json'} is unreadable: {e}") from None
    if not isinstance(manifest, dict):
        raise ConfigError(f"{run_dir / 'run.json'} is not a JSON object")
    if int(manifest.get("schema_version", 1)) > 1:
        raise ConfigError(
            f"{run_dir / 'run.json'} has schema version {manifest['schema_version']}, newer than this "
            "toolkit understands (1)"
        )
    run = Run(run_dir=run_dir, manifest=manifest)
    found: dict[str, RequirementResult] = {}
    for path in sorted((run_dir / "results").glob("*.json")):
        try:
            found[path.stem] = RequirementResult.read(path)
        except (OSError, ValueError, TypeError, KeyError) as e:
            run.problems.append(f"{path.relative_to(run_dir)}: unreadable result ({type(e).__name__}: {e})")
    for rid in manifest.get("selected") or []:
        if rid not in found:
            found[rid] = _missing_result(run, rid)
    run.results = {rid: found[rid] for rid in _ordered(found, run.checklist_version)}
    for r in run.results.values():
        r.run_dir = run_dir  # lets aiconf.display find evidence CSVs
    return run


def _missing_result(run: Run, rid: str) -> RequirementResult:
    nb = run.notebooks.get(rid) or {}
    status = nb.get("status", "not-run")
    r = RequirementResult(
        rid, run.checklist_version, run.level(rid), run.title(rid), run_id=run.run_id, duration_s=nb.get("duration_s")
    )
    if status in NEVER_RAN:
        r.verdict = Verdict.SKIPPED
        r.reason = f"the check did not run ({status}{': ' + nb['error'] if nb.get('error') else ''})"
    else:
        r.error = {
            "type": f"notebook-{status}",
            "step": "notebook",
            "message": nb.get("error") or "the notebook finished without writing its result",
        }
        r.finalize()
    return r


def _ordered(ids: dict[str, Any], version: str) -> list[str]:
    """Checklist order (category, then the data file's order); ids unknown to the checklist last, by name."""
    checklist = checklists.load()
    try:
        listed = [r.id for r in checklist.for_version(version)] if version else []
    except ConfigError:
        listed = []
    known = listed + [r.id for r in checklist.requirements if r.id not in listed]
    return [rid for rid in known if rid in ids] + sorted(rid for rid in ids if rid not in known)
