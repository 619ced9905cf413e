"""Run one requirement check and always leave a result: the executor never raises on a check's behalf.

``run_check`` is what notebooks call (and tests, and benchmarks). It resolves the checklist version and level,
builds the :class:`~aiconf.context.CheckContext`, runs the check, cleans up, derives the verdict and writes
``results/<requirement>.json`` — also when the check raised, timed out or was interrupted (then the result is
ERROR with the step it was in, and the exception propagates after cleanup so papermill marks the cell).
"""

from __future__ import annotations

import os
import signal
import threading
import time
import traceback
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiconf import checklists, registry
from aiconf.context import CheckContext, now_iso
from aiconf.errors import AiconfError, ClusterAccessError, WaitTimeout
from aiconf.kube import Kube
from aiconf.model import RequirementResult
from aiconf.params import Params, load_parameters


#: Written into the run folder by the runner when the run is interrupted (SIGINT/SIGTERM): a check that has not
#: started does not start, and a running one is interrupted even if its kernel missed the runner's SIGINT (a kernel
#: ignores SIGINT between cells and while it starts).
STOP_MARKER = ".interrupted"


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]


def connect(params: Params) -> Kube:
    return Kube.connect(params.kubeconfig, params.context, request_timeout_s=params.request_timeout_s,
                        retries=params.api_retries)


def resolve_version(params: Params, kube: Kube) -> str:
    if params.checklist_version:
        return checklists.load().check_version(params.checklist_version)
    return checklists.version_from_server(kube.version().get("gitVersion", ""))


def run_check(
    requirement_id: str,
    params: Params | None = None,
    *,
    run_id: str = "",
    run_dir: str | Path = "",
    kube: Kube | None = None,
    progress: Any = None,
) -> RequirementResult:
    """Run the check of ``requirement_id`` and write its result under ``run_dir/results/``.

    Args:
        requirement_id: an id from the checklist.
        params: parameters (default: ``parameters/default.yaml``).
        run_id: labels every object created; a new one when empty (interactive use).
        run_dir: the run folder; ``outputs/interactive-<run id>`` when empty.
        kube: an existing connection (the runner shares one).
    """
    params = params or load_parameters()
    checklist = checklists.load()
    requirement = checklist.get(requirement_id)
    spec = registry.get(requirement_id)
    run_id = run_id or new_run_id()
    run_dir = Path(run_dir or Path("outputs") / f"interactive-{run_id}")
    result_path = run_dir / "results" / f"{requirement_id}.json"
    started = time.monotonic()
    started_at = now_iso()

    # Connection problems are environment errors: an ERROR result with the reason, never a platform verdict.
    try:
        kube = kube or connect(params)
        version = resolve_version(params, kube)
    except AiconfError as e:
        result = RequirementResult(requirement_id, params.checklist_version or "", None, requirement.title,
                                   run_id=run_id, started_at=started_at)
        result.error = {"type": type(e).__name__, "message": str(e), "step": "connect"}
        result.finalize()
        result.finished_at = now_iso()
        result.write(result_path)
        raise

    ctx = CheckContext(
        requirement_id, params, kube, run_id=run_id, run_dir=run_dir, checklist_version=version,
        level=requirement.level(version), title=requirement.title, expected_subchecks=spec.subchecks,
        progress=progress,
    )
    ctx.result.started_at = started_at
    if ctx.result.level is None:
        ctx.note(f"{requirement_id} is not part of checklist {version}: informational only")
    pending: BaseException | None = None
    guard = _InterruptGuard(ctx, run_dir / STOP_MARKER)
    try:
        guard.start()
        spec.run(ctx)
    except WaitTimeout as e:
        ctx.result.error = {"type": "WaitTimeout", "message": str(e), "step": ctx.step_of(e)}
    except ClusterAccessError as e:
        ctx.result.error = {"type": type(e).__name__, "message": str(e), "step": ctx.step_of(e)}
    except AiconfError as e:
        ctx.result.error = {"type": type(e).__name__, "message": str(e), "step": ctx.step_of(e)}
    except Exception as e:  # a bug or an unexpected API answer: ERROR with the traceback, never a verdict
        ctx.result.error = {"type": type(e).__name__, "message": str(e) or type(e).__name__,
                            "step": ctx.step_of(e), "traceback": traceback.format_exc(limit=8)}
    except BaseException as e:  # KeyboardInterrupt (Ctrl-C, papermill cell timeout), SystemExit: clean up, then re-raise
        guard.body_done()
        step = ctx.step_of(e)
        waiting = f" while waiting for {kube.waiting_for}" if getattr(kube, "waiting_for", "") else ""
        message = str(e) if isinstance(e, KeyboardInterrupt) and e.args else f"interrupted during step '{step}'{waiting}"
        ctx.result.error = {"type": type(e).__name__, "message": message, "step": step}
        pending = e
    finally:
        guard.body_done()  # from here on a further SIGINT is ignored: cleanup runs to its own bounds
        try:
            ctx.close()
        finally:
            guard.stop()
            result = ctx.result
            result.finalize()
            result.finished_at = now_iso()
            result.duration_s = round(time.monotonic() - started, 3)
            result.write(result_path)
            if params.redact:
                result = _redact(result, result_path, ctx)
            result.run_dir = run_dir  # not serialised: lets notebooks find the evidence
    if pending is not None:
        raise pending
    return result


def run_from_notebook(requirement_id: str, namespace: dict[str, Any]) -> RequirementResult:
    """Notebook entry: collect papermill-injected parameters from the notebook's globals and run the check.

    Every variable whose name is a parameter (``parameters/default.yaml``) overrides the default; ``profile``
    names a profile; ``run_id`` and ``output_dir`` come from the runner (empty in interactive use).
    """
    from aiconf.params import load_defaults

    defaults = load_defaults()
    # Only values that differ from default.yaml override: a parameters cell repeats the defaults, and those must
    # not mask the profile's values when the notebook runs interactively.
    overrides = {k: namespace[k] for k in defaults if k in namespace and namespace[k] != defaults[k]}
    params = load_parameters(namespace.get("profile") or os.environ.get("AICONF_PROFILE") or None, overrides)
    result = run_check(requirement_id, params, run_id=namespace.get("run_id", ""),
                       run_dir=namespace.get("output_dir", ""))
    return result


def _redact(result: RequirementResult, result_path: Path, ctx: CheckContext) -> RequirementResult:
    """Redact the check's evidence and result on disk (``redact``), and return the redacted result, so what the
    notebook then shows and draws is redacted too. The runner redacts the whole run folder again at the end."""
    from aiconf import evidence

    redactor = evidence.redactor_for(ctx.kube)
    paths = [result_path, *(p for p in ctx.evidence_dir.rglob("*") if p.is_file())]
    redactor.files(paths)
    return RequirementResult.read(result_path)


class _InterruptGuard:
    """Makes an interrupted check clean up exactly once.

    While the check runs, the first SIGINT raises KeyboardInterrupt (the check's cleanup runs); any later one (a second
    Ctrl-C, the runner's marker seen after its SIGINT, nbclient re-interrupting after a cell timeout) is ignored until
    cleanup has finished, because a KeyboardInterrupt inside cleanup would leave objects behind. A watcher thread turns
    the runner's stop marker into that first SIGINT. Only in the main thread (where Python delivers signals); elsewhere
    (a check run from a worker thread) it does nothing.
    """

    def __init__(self, ctx: CheckContext, marker: Path, poll_s: float = 0.25):
        self.ctx, self.marker, self.poll_s = ctx, marker, poll_s
        self.active = threading.current_thread() is threading.main_thread()
        self.interrupted = False
        self.running = threading.Event()
        self.previous: Any = False  # False = nothing installed

    def start(self) -> None:
        if self.marker.exists():
            raise KeyboardInterrupt("the run was interrupted before this check started")
        if not self.active:
            return
        self.running.set()
        self.previous = signal.signal(signal.SIGINT, self._on_sigint)
        threading.Thread(target=self._watch, name=f"aiconf-stop-{self.ctx.requirement_id}", daemon=True).start()

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self.interrupted or not self.running.is_set():
            if not self.interrupted:  # the check had finished: its verdict stands, its cleanup goes on
                self.interrupted = True
                self.ctx.note("the run was interrupted while this check cleaned up; its cleanup and evidence capture "
                              "were completed first")
            self.ctx.log("interrupt ignored: the check is cleaning up (bounded by cleanup_timeout_s)")
            return
        self.interrupted = True
        raise KeyboardInterrupt

    def _watch(self) -> None:
        while self.running.is_set():
            if self.marker.exists():
                if self.running.is_set() and not self.interrupted:
                    signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
                return
            time.sleep(self.poll_s)

    def body_done(self) -> None:
        self.running.clear()

    def stop(self) -> None:
        self.running.clear()
        if self.active and self.previous is not False:
            # None: the previous handler was not installed from Python; Python's own default is the closest.
            signal.signal(signal.SIGINT, self.previous if self.previous is not None else signal.default_int_handler)
            self.previous = False
