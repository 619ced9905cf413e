"""The context a check runs in: parameters, the cluster, the result being built, evidence, and cleanup.

Everything a check creates goes through the context so it is labelled with the run id and removed afterwards, in
LIFO order, on success, failure, timeout and interruption. Evidence about a namespace is captured *before* the
namespace is deleted.
"""

from __future__ import annotations

import contextlib
import csv
import io
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from aiconf import __version__
from aiconf.model import NotApplicable, RequirementResult, SubCheck, Verdict
from aiconf.params import Params

if TYPE_CHECKING:
    from aiconf.kube import Kube

LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_RUN_ID = "aiconf.io/run-id"
LABEL_REQUIREMENT = "aiconf.io/requirement"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass
class TimeSeries:
    """Rows sampled over time for a chart; saved as ``evidence/<requirement>/<name>.csv``."""

    name: str
    t0: float = field(default_factory=time.monotonic)
    rows: list[dict[str, Any]] = field(default_factory=list)

    def add(self, **values: Any) -> dict[str, Any]:
        row = {"t_s": round(time.monotonic() - self.t0, 3), "time": now_iso(), **values}
        self.rows.append(row)
        return row

    def mark(self, event: str, **values: Any) -> dict[str, Any]:
        """A marker row (load on/off, phase change) drawn as a vertical line on charts."""
        return self.add(event=event, **values)

    def to_csv(self) -> str:
        keys: list[str] = []
        for row in self.rows:
            keys += [k for k in row if k not in keys]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys)
        writer.writeheader()
        writer.writerows(self.rows)
        return buf.getvalue()


class CheckContext:
    """Built by :func:`aiconf.execute.run_check`; handed to a check's ``run(ctx)``."""

    def __init__(
        self,
        requirement_id: str,
        params: Params,
        kube: Kube,
        *,
        run_id: str,
        run_dir: Path,
        checklist_version: str,
        level: str | None,
        title: str = "",
        expected_subchecks: tuple[str, ...] = (),
        progress: Any = None,
    ):
        self.requirement_id = requirement_id
        self.params = params
        self.kube = kube
        self.run_id = run_id
        self.run_dir = Path(run_dir)
        self.evidence_dir = self.run_dir / "evidence" / requirement_id
        self.result = RequirementResult(
            requirement_id=requirement_id,
            checklist_version=checklist_version,
            level=level,
            title=title,
            expected_subchecks=list(expected_subchecks),
            run_id=run_id,
            toolkit_version=__version__,
        )
        self.labels = {LABEL_MANAGED_BY: "aiconf", LABEL_RUN_ID: run_id, LABEL_REQUIREMENT: requirement_id}
        self.current_step = "start"
        self._failed: tuple[BaseException, str] | None = None
        self.series_by_name: dict[str, TimeSeries] = {}
        self.namespaces: list[str] = []
        self._cleanup = contextlib.ExitStack()
        self._progress = progress or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self._step_started = time.monotonic()

    # -- narrative and verdicts ------------------------------------------------------------------------------
    def log(self, message: str) -> None:
        self._progress(f"[{self.requirement_id}] {message}")

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Name the current step (shown as progress, and in ERROR results when something fails inside it)."""
        previous, self.current_step = self.current_step, name
        started = time.monotonic()
        self.log(f"{name} ...")
        try:
            yield
        except BaseException as e:
            # Remember the innermost step an exception left: by the time the executor sees it, current_step has
            # been restored to the outer step.
            if self._failed is None or self._failed[0] is not e:
                self._failed = (e, name)
            raise
        finally:
            self.result.metrics.setdefault("steps", []).append(
                {"step": name, "seconds": round(time.monotonic() - started, 3)}
            )
            self.current_step = previous

    def step_of(self, error: BaseException) -> str:
        """The step ``error`` was raised in (the current step when it left no step)."""
        if self._failed is not None and self._failed[0] is error:
            return self._failed[1]
        return self.current_step

    def record(
        self,
        sub_id: str,
        verdict: Verdict | bool,
        summary: str = "",
        *,
        expected: str = "",
        observed: str = "",
        required: bool = True,
        **details: Any,
    ) -> SubCheck:
        """Record a sub-check verdict (a bool means PASS/FAIL). Recording the same id again replaces it."""
        if isinstance(verdict, bool):
            verdict = Verdict.PASS if verdict else Verdict.FAIL
        sub = SubCheck(sub_id, Verdict(verdict), summary, expected, observed, required, details)
        self.result.subchecks = [s for s in self.result.subchecks if s.id != sub_id] + [sub]
        self.log(f"{sub_id}: {sub.verdict} {('- ' + summary) if summary else ''}")
        return sub

    def not_applicable(self, reason_code: str, justification: str) -> None:
        """Mark the requirement's condition as not met here (sub-checks record NOT_APPLICABLE separately)."""
        self.result.not_applicable = NotApplicable(reason_code, justification)

    def note(self, text: str) -> None:
        if text not in self.result.notes:
            self.result.notes.append(text)

    def proves(self, *texts: str) -> None:
        self.result.proves.extend(t for t in texts if t not in self.result.proves)

    def does_not_prove(self, *texts: str) -> None:
        self.result.does_not_prove.extend(t for t in texts if t not in self.result.does_not_prove)

    def metric(self, name: str, value: Any) -> None:
        self.result.metrics[name] = value

    def series(self, name: str) -> TimeSeries:
        if name not in self.series_by_name:
            self.series_by_name[name] = TimeSeries(name)
        return self.series_by_name[name]

    # -- evidence --------------------------------------------------------------------------------------------
    def save_evidence(self, name: str, content: str | bytes | dict | list) -> Path:
        """Write an evidence file under ``evidence/<requirement>/`` and list it in the result."""
        path = self.evidence_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, (dict, list)):
            content = yaml.safe_dump(content, sort_keys=False)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            from aiconf.evidence import scrub_pem

            path.write_text(scrub_pem(content))  # no certificate or key material in evidence
        rel = str(path.relative_to(self.run_dir))
        if rel not in self.result.evidence:
            self.result.evidence.append(rel)
        return path

    def capture_namespace(self, namespace: str) -> None:
        """Dump every object the check made in ``namespace`` (with final status), its events and pod logs."""
        from aiconf import evidence

        evidence.capture_namespace(self, namespace)

    # -- objects and cleanup ---------------------------------------------------------------------------------
    def labelled(self, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj.setdefault("metadata", {})
        meta.setdefault("labels", {}).update(self.labels)
        return obj

    def namespace(self, suffix: str = "") -> str:
        """Create a labelled namespace for this check; captured as evidence then deleted at cleanup."""
        base = f"{self.params.namespace_prefix}-{self.requirement_id.replace('_', '-')}"
        name = f"{base}-{suffix}-{self.run_id[-6:]}" if suffix else f"{base}-{self.run_id[-6:]}"
        name = name[:63].rstrip("-").lower()
        ns = self.labelled(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": name,
                    # Pod Security admission: the toolkit's own pods run restricted where they can; checks that need
                    # more (device probes) relabel their namespace and say why.
                    "labels": {"pod-security.kubernetes.io/enforce": "baseline", "pod-security.kubernetes.io/warn": "restricted"},
                },
            }
        )
        self.kube.create(ns)
        self.namespaces.append(name)
        self._cleanup.callback(self._delete_namespace, name)
        self._cleanup.callback(self._safe, f"capture evidence of namespace {name}", self.capture_namespace, name)
        return name

    def create(self, obj: dict[str, Any], *, cleanup: bool = True) -> dict[str, Any]:
        """Create a labelled object; cluster-scoped objects are deleted at cleanup (namespaced ones go with their
        namespace)."""
        created = self.kube.create(self.labelled(obj))
        meta = created.get("metadata", {})
        if cleanup and not meta.get("namespace"):
            self._cleanup.callback(
                self._safe, f"delete {created['kind']}/{meta['name']}", self.kube.delete, created["apiVersion"], created["kind"], meta["name"], None
            )
        return created

    def on_cleanup(self, description: str, fn: Any, *args: Any, **kwargs: Any) -> None:
        """Run ``fn`` at cleanup (LIFO), logging instead of raising when it fails."""
        self._cleanup.callback(self._safe, description, fn, *args, **kwargs)

    def close(self) -> None:
        """Write time series, then run every cleanup callback (LIFO)."""
        for series in self.series_by_name.values():
            if series.rows:
                path = self.save_evidence(f"{series.name}.csv", series.to_csv())
                self.result.metrics.setdefault("series", {})[series.name] = str(path.relative_to(self.run_dir))
        if not self.params.cleanup:
            kept = ", ".join(f"{k}={v}" for k, v in self.labels.items() if k == LABEL_RUN_ID)
            self.note(f"cleanup disabled: objects kept in the cluster (select them with {kept})")
            self._cleanup.pop_all()
            for name in self.namespaces:  # evidence is still captured; only deletion is skipped
                self._safe(f"capture evidence of namespace {name}", self.capture_namespace, name)
            return
        self._cleanup.close()

    def _delete_namespace(self, name: str) -> None:
        self._safe(f"delete namespace {name}", self.kube.delete_namespace, name, self.params.cleanup_timeout_s)

    def _safe(self, description: str, fn: Any, *args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except Exception as e:  # cleanup must go on; the run-level sweep deletes by label as a second net
            self.log(f"cleanup step failed ({description}): {e}")
            self.note(f"cleanup step failed: {description}: {e}")
