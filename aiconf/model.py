"""Verdicts and results: frozen-in-spirit, serialisable trees with one stated aggregation rule.

A requirement result holds sub-checks; its overall verdict is derived from them by :func:`aggregate`:

1. the check itself crashed or was interrupted                          -> ERROR
2. any required sub-check FAIL                                          -> FAIL
3. else any required sub-check ERROR                                    -> ERROR
4. else a declared sub-check was never recorded                         -> UNKNOWN (never a silent PASS)
5. else any required sub-check UNKNOWN                                  -> UNKNOWN
6. else no required sub-check PASS and at least one NOT_APPLICABLE      -> NOT_APPLICABLE
7. else at least one required PASS                                      -> PASS
8. nothing recorded at all                                              -> UNKNOWN

Informational (``required=False``) sub-checks never change the verdict; they are reported beside it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1


class Verdict(StrEnum):
    PASS = "PASS"  #: the behaviour was observed
    FAIL = "FAIL"  #: the behaviour was tested and not observed
    NOT_APPLICABLE = "NOT_APPLICABLE"  #: the requirement's condition does not hold here (reason code + justification)
    UNKNOWN = "UNKNOWN"  #: stack or hardware not recognised, or evidence incomplete: manual evidence needed
    ERROR = "ERROR"  #: the toolkit or the environment failed; never a verdict on the platform
    SKIPPED = "SKIPPED"  #: not selected for this run


class ProductStatus(StrEnum):
    IMPLEMENTED = "Implemented"
    NOT_IMPLEMENTED = "Not Implemented"
    PARTIALLY_IMPLEMENTED = "Partially Implemented"
    NOT_APPLICABLE = "N/A"
    UNDECIDED = ""  #: left for the auditor (UNKNOWN / ERROR / SKIPPED)


class MustNaPolicy(StrEnum):
    """How a MUST requirement judged NOT_APPLICABLE is written into PRODUCT.yaml.

    The program's FAQ allows N/A with a justification for conditional MUSTs (cluster autoscaling on-prem), but the
    official validator rejects every MUST whose status is not ``Implemented``. Submissions after the validator
    write ``Implemented`` plus the conditional justification in ``notes``. The choice is the user's; both warn.
    """

    NA = "na"  #: status N/A + notes; the official validator will reject the file
    IMPLEMENTED_WITH_NOTE = "implemented-with-note"  #: status Implemented + "not applicable because ..." notes


@dataclass
class SubCheck:
    """One observable claim of a requirement, with what was expected and what was seen."""

    id: str
    verdict: Verdict
    summary: str = ""
    expected: str = ""
    observed: str = ""
    required: bool = True
    details: dict[str, Any] = field(default_factory=dict)
    duration_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["verdict"] = str(self.verdict)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SubCheck:
        return cls(**{**d, "verdict": Verdict(d["verdict"])})


@dataclass
class NotApplicable:
    """Why a requirement does not apply, as a reason code and a drafted justification for PRODUCT.yaml notes."""

    reason_code: str
    justification: str


@dataclass
class RequirementResult:
    """The result of one requirement check (``results/<requirement_id>.json``)."""

    requirement_id: str
    checklist_version: str
    level: str | None  #: MUST / SHOULD / None (not in this checklist version: informational)
    title: str = ""
    verdict: Verdict = Verdict.UNKNOWN
    reason: str = ""  #: one line explaining the verdict
    subchecks: list[SubCheck] = field(default_factory=list)
    expected_subchecks: list[str] = field(default_factory=list)
    proves: list[str] = field(default_factory=list)
    does_not_prove: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  #: e.g. "GPU nodes are simulated (kwok)"
    not_applicable: NotApplicable | None = None
    status_suggestion: str | None = None  #: a check may suggest e.g. "Partially Implemented" (DRA beta on 1.33)
    evidence: list[str] = field(default_factory=list)  #: paths relative to the run folder
    metrics: dict[str, Any] = field(default_factory=dict)
    run_id: str = ""
    started_at: str = ""
    finished_at: str = ""
    duration_s: float | None = None
    error: dict[str, Any] | None = None
    toolkit_version: str = ""
    schema_version: int = SCHEMA_VERSION

    # -- building --------------------------------------------------------------------------------------------
    def subcheck(self, sub_id: str) -> SubCheck | None:
        return next((s for s in self.subchecks if s.id == sub_id), None)

    def finalize(self) -> RequirementResult:
        """Derive the overall verdict and reason from the sub-checks (see module docstring)."""
        self.verdict, self.reason = aggregate(self)
        return self

    # -- serialisation ---------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["verdict"] = str(self.verdict)
        d["subchecks"] = [s.to_dict() for s in self.subchecks]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RequirementResult:
        d = dict(d)
        version = d.get("schema_version", SCHEMA_VERSION)
        if version > SCHEMA_VERSION:
            raise ValueError(f"result schema version {version} is newer than this toolkit understands ({SCHEMA_VERSION})")
        d["verdict"] = Verdict(d["verdict"])
        d["subchecks"] = [SubCheck.from_dict(s) for s in d.get("subchecks", [])]
        if d.get("not_applicable"):
            d["not_applicable"] = NotApplicable(**d["not_applicable"])
        return cls(**d)

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, default=str) + "\n")
        tmp.replace(path)  # atomic: a reader never sees half a result
        return path

    @classmethod
    def read(cls, path: Path) -> RequirementResult:
        result = cls.from_dict(json.loads(Path(path).read_text()))
        result.run_dir = Path(path).resolve().parent.parent  # not a field: never serialised
        return result


def aggregate(result: RequirementResult) -> tuple[Verdict, str]:
    """The overall verdict of ``result`` and a one-line reason (rules in the module docstring)."""
    if result.error:
        return Verdict.ERROR, f"check did not complete: {result.error.get('message', 'error')}"
    recorded = {s.id for s in result.subchecks}
    missing = [s for s in result.expected_subchecks if s not in recorded]
    required = [s for s in result.subchecks if s.required]
    by_verdict: dict[Verdict, list[SubCheck]] = {}
    for s in required:
        by_verdict.setdefault(s.verdict, []).append(s)

    def names(v: Verdict) -> str:
        return ", ".join(s.id for s in by_verdict[v])

    if Verdict.FAIL in by_verdict:
        return Verdict.FAIL, f"failed: {names(Verdict.FAIL)}"
    if Verdict.ERROR in by_verdict:
        return Verdict.ERROR, f"could not be evaluated: {names(Verdict.ERROR)}"
    if missing:
        return Verdict.UNKNOWN, f"never recorded: {', '.join(missing)}"
    if Verdict.UNKNOWN in by_verdict:
        return Verdict.UNKNOWN, f"manual evidence needed: {names(Verdict.UNKNOWN)}"
    if Verdict.PASS not in by_verdict and Verdict.NOT_APPLICABLE in by_verdict:
        why = result.not_applicable.reason_code if result.not_applicable else names(Verdict.NOT_APPLICABLE)
        return Verdict.NOT_APPLICABLE, f"not applicable: {why}"
    if Verdict.PASS in by_verdict:
        return Verdict.PASS, f"passed: {names(Verdict.PASS)}"
    return Verdict.UNKNOWN, "no sub-check was recorded"


def product_status(result: RequirementResult, policy: MustNaPolicy = MustNaPolicy.NA) -> tuple[str, str, list[str]]:
    """Map a result to a PRODUCT.yaml ``(status, notes, warnings)``.

    PASS -> Implemented; FAIL -> Not Implemented, or Partially Implemented when some required sub-check passed;
    NOT_APPLICABLE -> N/A with the drafted justification (for MUST: per ``policy``); UNKNOWN/ERROR/SKIPPED ->
    left empty for the auditor. A check's explicit ``status_suggestion`` wins for PASS/FAIL.
    """
    warnings: list[str] = []
    rid = result.requirement_id
    v = result.verdict
    notes = ""
    if v is Verdict.NOT_APPLICABLE:
        justification = result.not_applicable.justification if result.not_applicable else result.reason
        if result.level == "MUST":
            if policy is MustNaPolicy.IMPLEMENTED_WITH_NOTE:
                warnings.append(
                    f"{rid}: MUST judged not applicable, written as 'Implemented' with a conditional note "
                    "(accepted by the official validator; reviewers read the note)"
                )
                return ProductStatus.IMPLEMENTED, f"Not applicable to this configuration: {justification}", warnings
            warnings.append(
                f"{rid}: MUST written as 'N/A' - the program's FAQ allows it with a justification, but the official "
                "validator rejects any MUST that is not 'Implemented' (use --must-na-policy implemented-with-note)"
            )
        return ProductStatus.NOT_APPLICABLE, justification, warnings
    if v is Verdict.PASS:
        return result.status_suggestion or ProductStatus.IMPLEMENTED, notes, warnings
    if v is Verdict.FAIL:
        if result.status_suggestion:
            status = result.status_suggestion
        else:
            some_pass = any(s.verdict is Verdict.PASS for s in result.subchecks if s.required)
            status = ProductStatus.PARTIALLY_IMPLEMENTED if some_pass else ProductStatus.NOT_IMPLEMENTED
        if result.level == "MUST":
            warnings.append(f"{rid}: MUST is '{status}' - the submission cannot be certified until it passes")
        return status, result.reason, warnings
    warnings.append(f"{rid}: verdict {v} - status left empty for the auditor ({result.reason})")
    return ProductStatus.UNDECIDED, result.reason, warnings
