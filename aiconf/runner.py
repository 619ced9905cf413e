"""Execute requirement notebooks headless with papermill, in-process, and leave a complete run folder.

The runner records every notebook's outcome itself: papermill does not mark cell timeouts as failures, and a dead
kernel or a notebook that never wrote its result must still yield an ERROR result with the reason. Notebooks that
change cluster capacity (``exclusive`` in the checklist data) never overlap. On SIGINT/SIGTERM the kernels are
interrupted (so each check's cleanup runs), then everything labelled with the run id is swept.

Run folder::

    outputs/<run-id>/run.json  notebooks/<id>.ipynb  results/<id>.json  evidence/<id>/...  junit.xml  report.html
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiconf import __version__, checklists, facts, registry
from aiconf.context import now_iso
from aiconf.errors import AiconfError
from aiconf.execute import STOP_MARKER, connect, new_run_id, resolve_version
from aiconf.model import RequirementResult, SubCheck, Verdict
from aiconf.notebooks import NOTEBOOK_DIR
from aiconf.params import Params

EXIT_OK, EXIT_MUST_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130


@dataclass
class Plan:
    run_id: str
    run_dir: Path
    checklist_version: str
    selected: list[str]
    not_selected: list[str]
    not_automated: list[str]


@dataclass
class NotebookOutcome:
    requirement_id: str
    status: str = "not-run"  #: ok | failed | timeout | dead-kernel | interrupted | not-run
    duration_s: float = 0.0
    error: str = ""
    path: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class _Progress:
    """Plain lines (CI) or an updating status line (terminal) about which notebook runs and for how long."""

    def __init__(self, total: int, stream: Any = None):
        self.total, self.done = total, 0
        self.stream = stream or sys.stderr
        self.lock = threading.Lock()

    def line(self, text: str) -> None:
        with self.lock:
            print(text, file=self.stream, flush=True)

    def started(self, rid: str) -> None:
        self.line(f"[aiconf] start  {rid}")

    def finished(self, rid: str, verdict: str, seconds: float) -> None:
        with self.lock:
            self.done += 1
            done = self.done
        self.line(f"[aiconf] done   {rid:<28} {verdict:<15} {seconds:6.1f}s  ({done}/{self.total})")


def _drop_unknown_parameter_warnings(record: logging.LogRecord) -> bool:
    """Every notebook receives every parameter (one set of values for the whole run) but declares only those it
    reads; papermill warns about each other one, which is noise here."""
    return not record.getMessage().startswith("Passed unknown parameter")


class _CellLogHandler(logging.Handler):
    """papermill's ``log_output`` sends cell stdout/stderr to its logger; forward the checks' step lines."""

    def __init__(self, progress: _Progress):
        super().__init__(logging.INFO)
        self.progress = progress

    def emit(self, record: logging.LogRecord) -> None:
        for line in record.getMessage().splitlines():
            if line.startswith("[") and "]" in line and not line.startswith("[aiconf]"):
                self.progress.line("         " + line.strip())


def plan_run(params: Params, *, only: list[str] | None = None, skip: list[str] | None = None,
             run_id: str = "", output: str | Path = "outputs", kube: Any = None) -> Plan:
    checklist = checklists.load()
    for rid in (only or []) + (skip or []):
        checklist.get(rid)  # unknown ids -> ConfigError naming the id
    version = resolve_version(params, kube) if kube is not None else checklist.check_version(params.checklist_version)
    listed = [r.id for r in checklist.for_version(version)]
    # Requirements not in the version run only when asked for by name (informational, e.g. dra_support on 1.36).
    candidates = listed + [rid for rid in (only or []) if rid not in listed]
    selected = [rid for rid in candidates if (not only or rid in only) and rid not in (skip or [])]
    implemented = set(registry.implemented())
    run_id = run_id or new_run_id()
    return Plan(
        run_id=run_id,
        run_dir=Path(output) / run_id,
        checklist_version=version,
        selected=[rid for rid in selected if rid in implemented],
        not_selected=[rid for rid in listed if rid not in selected],
        not_automated=[rid for rid in selected if rid not in implemented],
    )


def run(
    params: Params,
    *,
    only: list[str] | None = None,
    skip: list[str] | None = None,
    parallel: int = 1,
    output: str | Path = "outputs",
    timeout_s: float = 1800,
    profile: str = "",
    report: bool = True,
    notebook_dir: Path = NOTEBOOK_DIR,
    progress_stream: Any = None,
) -> int:
    """Run the selected checks; return the exit code (0 all MUSTs pass, 1 a MUST failed/unknown, 130 interrupted)."""
    for rid in (only or []) + (skip or []):
        checklists.load().get(rid)  # bad ids fail before anything touches the cluster
    _check_output(Path(output))
    kube = connect(params)
    plan = plan_run(params, only=only, skip=skip, output=output, kube=kube)
    nodes_seen = _NodeNames(kube) if params.redact else None
    if nodes_seen is not None:
        # One key for the whole run (kernels inherit the environment): a node gets the same pseudonym in every file.
        from aiconf.evidence import REDACT_KEY_ENV

        os.environ.setdefault(REDACT_KEY_ENV, secrets.token_hex(16))
        nodes_seen.start()
    run_dir = plan.run_dir
    (run_dir / "results").mkdir(parents=True, exist_ok=True)
    (run_dir / "notebooks").mkdir(exist_ok=True)
    params = params.replace(checklist_version=plan.checklist_version)
    progress = _Progress(len(plan.selected), progress_stream)
    started = time.monotonic()
    manifest: dict[str, Any] = {
        "schema_version": 1,
        "run_id": plan.run_id,
        "toolkit_version": __version__,
        "checklist_version": plan.checklist_version,
        "profile": profile or "default",
        "started_at": now_iso(),
        "cluster": _safe_fingerprint(kube, params),
        "parameters": params.redacted(),
        "selected": plan.selected,
        "not_selected": plan.not_selected,
        "not_automated": plan.not_automated,
        "notebooks": {},
    }
    _write_json(run_dir / "run.json", manifest)
    _update_latest(Path(output), run_dir)

    from aiconf import cleanup

    leftovers = [x for x in _safe(lambda: cleanup.find_leftovers(kube), []) if x.run_id != plan.run_id]
    if leftovers:
        progress.line(f"[aiconf] found {len(leftovers)} object(s) left by earlier runs (remove with `aiconf cleanup --all`): "
                      + ", ".join(map(str, leftovers[:5])) + (" ..." if len(leftovers) > 5 else ""))
        manifest["leftovers_at_start"] = [str(x) for x in leftovers]
    progress.line(f"[aiconf] run {plan.run_id}: checklist {plan.checklist_version}, {len(plan.selected)} check(s), "
                  f"output {run_dir}")

    stop = threading.Event()
    outcomes: dict[str, NotebookOutcome] = {}
    checklist = checklists.load()
    handler = _CellLogHandler(progress)
    pm_logger = logging.getLogger("papermill")
    pm_logger.addHandler(handler)
    pm_logger.addFilter(_drop_unknown_parameter_warnings)
    pm_logger.setLevel(logging.INFO)
    pm_logger.propagate = False
    # From here on a SIGINT/SIGTERM interrupts the checks (they clean up) and the run ends with the sweep below.
    previous = _install_signal_handlers(stop, progress, run_dir / STOP_MARKER)

    # Workers take the next check that may start now: capacity-changing ("exclusive") checks never overlap, and a
    # worker does not sit waiting for the exclusive slot while other checks could run.
    pending = list(plan.selected)
    slot = threading.Condition()
    exclusive_running = False

    def take() -> str | None:
        nonlocal exclusive_running
        with slot:
            while pending and not stop.is_set():
                for i, rid in enumerate(pending):
                    if not checklist.get(rid).exclusive:
                        return pending.pop(i)
                    if not exclusive_running:
                        exclusive_running = True
                        return pending.pop(i)
                slot.wait(0.5)  # only exclusive checks are left and one runs; wake up to notice a stop too
            return None

    def release(rid: str) -> None:
        nonlocal exclusive_running
        if checklist.get(rid).exclusive:
            with slot:
                exclusive_running = False
                slot.notify_all()

    def one(rid: str) -> None:
        progress.started(rid)
        outcome = execute_notebook(rid, params, plan, timeout_s=timeout_s, notebook_dir=notebook_dir, stop=stop)
        outcomes[rid] = outcome
        result = ensure_result(rid, plan, outcome, params)
        progress.finished(rid, str(result.verdict), outcome.duration_s)

    def worker() -> None:
        while (rid := take()) is not None:
            try:
                one(rid)
            finally:
                release(rid)

    interrupted = False
    try:
        if (notebook_dir / "00_preflight.ipynb").exists() and not stop.is_set():
            pre = execute_notebook("00_preflight", params, plan, timeout_s=min(timeout_s, 300),
                                   notebook_dir=notebook_dir, stop=stop)
            manifest["preflight"] = pre.__dict__
            if pre.status != "ok":
                progress.line(f"[aiconf] preflight notebook {pre.status}: {pre.error}")
        workers = max(1, min(parallel, len(plan.selected)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="aiconf-nb") as pool:
            futures = [pool.submit(worker) for _ in range(workers)]
            for f in futures:
                f.result()  # signal handlers still run in this (main) thread while it waits
    finally:
        interrupted = stop.is_set()
        pm_logger.removeHandler(handler)
        pm_logger.removeFilter(_drop_unknown_parameter_warnings)
        # The second net: whatever a crashed or interrupted check left behind, by run-id label. The signal handlers
        # stay installed until it is done: a second Ctrl-C or SIGTERM must not cut the sweep short.
        try:
            if params.cleanup:
                _sweep(kube, plan.run_id, params, progress)
        finally:
            _restore_signal_handlers(previous)
            (run_dir / STOP_MARKER).unlink(missing_ok=True)

    for rid in plan.not_automated:
        _write_not_automated(rid, plan, params)
    for rid in plan.selected:
        if rid not in outcomes:
            outcomes[rid] = NotebookOutcome(rid, "interrupted", error="run interrupted before this check started")
        if not (run_dir / "results" / f"{rid}.json").exists():  # checks that never started, too
            ensure_result(rid, plan, outcomes[rid], params)

    results = load_results(run_dir)
    code = EXIT_INTERRUPTED if interrupted else exit_code(results.values())
    manifest.update(
        finished_at=now_iso(),
        duration_s=round(time.monotonic() - started, 3),
        exit_code=code,
        notebooks={rid: o.__dict__ for rid, o in outcomes.items()},
        verdicts={rid: str(r.verdict) for rid, r in results.items()},
    )
    _write_json(run_dir / "run.json", manifest)
    redacted = True
    if nodes_seen is not None:
        nodes_seen.stop.set()
        redacted = _redact_run(run_dir, kube, progress, nodes_seen.names)
    _write_ci_files(run_dir, progress)
    if report and not interrupted and redacted:
        _build_report(run_dir, progress)
    progress.line(f"[aiconf] finished in {manifest['duration_s']:.1f}s, exit code {code}; results in {run_dir}")
    return code


def _check_output(output: Path) -> None:
    """The runs folder can be created and written (bad input, reported before the cluster is touched)."""
    from aiconf.errors import ConfigError

    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create the runs folder {output}: {e.strerror}") from None
    if not os.access(output, os.W_OK | os.X_OK):
        raise ConfigError(f"the runs folder {output} is not writable")


def execute_notebook(rid: str, params: Params, plan: Plan, *, timeout_s: float,
                     notebook_dir: Path = NOTEBOOK_DIR, stop: threading.Event | None = None) -> NotebookOutcome:
    """Run ``notebooks/<rid>.ipynb`` with papermill in this process and classify how it ended.

    A cell that runs past ``timeout_s`` is interrupted (KeyboardInterrupt in the kernel: the check records the step it
    was in and cleans up), given ``cleanup_timeout_s`` + 60 s more, then abandoned (kernel shut down). ``stop`` is set
    when the run was interrupted: a KeyboardInterrupt is then the run's, not the timeout's.
    """
    import papermill as pm
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    source = notebook_dir / f"{rid}.ipynb"
    target = plan.run_dir / "notebooks" / f"{rid}.ipynb"
    outcome = NotebookOutcome(rid, path=str(target.relative_to(plan.run_dir)))
    parameters = {**params.to_dict(), "run_id": plan.run_id, "output_dir": str(plan.run_dir.resolve()), "profile": ""}
    timed_out = f"notebook exceeded its {timeout_s:g}s timeout"
    started = time.monotonic()
    try:
        pm.execute_notebook(
            str(source), str(target), parameters=parameters, kernel_name="python3", progress_bar=False,
            log_output=True, execution_timeout=timeout_s, cwd=str(plan.run_dir.resolve()),
            engine_name=_interrupting_engine(), cleanup_grace_s=float(params.cleanup_timeout_s) + 60,
        )
        outcome.status = "ok"
    except CellTimeoutError:
        outcome.status, outcome.error = "timeout", timed_out + " (and did not stop when interrupted)"
    except DeadKernelError:
        outcome.status, outcome.error = "dead-kernel", "the notebook's kernel died (out of memory, or killed)"
    except pm.PapermillExecutionError as e:
        outcome.status = "failed"
        outcome.error = f"cell {e.exec_count} raised {e.ename}: {e.evalue}"[:500]
        if e.ename == "KeyboardInterrupt":
            # Only two things interrupt a kernel: the run being interrupted, and the cell timeout.
            if stop is not None and stop.is_set():
                outcome.status = "interrupted"
            elif time.monotonic() - started >= timeout_s:
                outcome.status, outcome.error = "timeout", timed_out
            else:
                outcome.status = "interrupted"
    except Exception as e:  # kernel could not start, notebook missing, ...
        outcome.status, outcome.error = "failed", f"{type(e).__name__}: {e}"[:500]
    outcome.duration_s = round(time.monotonic() - started, 3)
    return outcome


def ensure_result(rid: str, plan: Plan, outcome: NotebookOutcome, params: Params) -> RequirementResult:
    """The notebook's result, or an ERROR result saying why the notebook did not produce one."""
    path = plan.run_dir / "results" / f"{rid}.json"
    requirement = checklists.load().get(rid)
    if path.exists():
        result = RequirementResult.read(path)
        if outcome.status == "timeout" and result.error and result.error.get("type") == "KeyboardInterrupt":
            # The check was interrupted by the timeout and cleaned up; its message says where it was.
            result.error = {**result.error, "type": "notebook-timeout",
                            "message": f"{outcome.error}: {result.error.get('message', '')}; its cleanup ran"}
            result.finalize()
            result.write(path)
            return result
        if outcome.status not in ("ok",) and result.verdict is not Verdict.ERROR and not result.error:
            # The check finished but a later cell failed (a chart, say): keep the verdict, record the problem.
            result.notes.append(f"notebook {outcome.status} after the check finished: {outcome.error}")
            result.write(path)
        return result
    result = RequirementResult(rid, plan.checklist_version, requirement.level(plan.checklist_version),
                               requirement.title, run_id=plan.run_id, toolkit_version=__version__,
                               started_at=now_iso(), finished_at=now_iso(), duration_s=outcome.duration_s)
    result.error = {"type": f"notebook-{outcome.status}",
                    "message": outcome.error or "the notebook finished without writing its result", "step": "notebook"}
    result.finalize()
    result.write(path)
    return result


def _write_not_automated(rid: str, plan: Plan, params: Params) -> None:
    requirement = checklists.load().get(rid)
    result = RequirementResult(rid, plan.checklist_version, requirement.level(plan.checklist_version),
                               requirement.title, run_id=plan.run_id, toolkit_version=__version__)
    result.subchecks.append(SubCheck("automated_check", Verdict.UNKNOWN,
                                     "this toolkit version has no automated check for this requirement yet",
                                     expected="an automated check", observed="none: attach manual evidence"))
    result.finalize()
    result.write(plan.run_dir / "results" / f"{rid}.json")


def load_results(run_dir: Path) -> dict[str, RequirementResult]:
    return {p.stem: RequirementResult.read(p) for p in sorted((run_dir / "results").glob("*.json"))}


def exit_code(results: Any) -> int:
    """0 when every MUST passed (NOT_APPLICABLE counts as acceptable), 1 when any MUST is FAIL/UNKNOWN/ERROR."""
    for r in results:
        if r.level == "MUST" and r.verdict not in (Verdict.PASS, Verdict.NOT_APPLICABLE, Verdict.SKIPPED):
            return EXIT_MUST_FAILED
    return EXIT_OK


# -- helpers -------------------------------------------------------------------------------------------------------
def _install_signal_handlers(stop: threading.Event, progress: _Progress, marker: Path | None = None) -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            progress.line(f"[aiconf] {signal.Signals(signum).name} again: still cleaning up (each step bounded by "
                          "cleanup_timeout_s); SIGKILL leaves objects for `aiconf cleanup --all`")
            return
        stop.set()
        progress.line(f"[aiconf] {signal.Signals(signum).name}: interrupting running checks (they clean up), "
                      "then sweeping this run's objects ...")
        if marker is not None:
            # Checks whose kernel misses the SIGINT below (starting, or between cells) see this and stop too.
            try:
                marker.write_text(f"{signal.Signals(signum).name}\n")
            except OSError:
                pass
        _interrupt_kernels()

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)
    return previous


def _restore_signal_handlers(previous: dict[int, Any]) -> None:
    for sig, h in previous.items():
        signal.signal(sig, h)


def _interrupt_kernels() -> None:
    """SIGINT every kernel this process started: the cell gets KeyboardInterrupt and the check's cleanup runs."""
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil comes with ipykernel
        return
    for child in psutil.Process(os.getpid()).children(recursive=True):
        try:
            if "ipykernel" in " ".join(child.cmdline()):
                child.send_signal(signal.SIGINT)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue


_ENGINE_NAME = "aiconf"


def _interrupting_engine() -> str:
    """Register (once) and name a papermill engine whose cell timeout interrupts the kernel instead of abandoning it.

    papermill's nbclient engine raises CellTimeoutError and shuts the kernel down: the check's cleanup never runs and
    its result never says where it was. Here the first timeout sends the kernel a SIGINT (the check records its step
    and cleans up), the kernel gets ``cleanup_grace_s`` more, and only then the cell fails as before.
    """
    import asyncio

    from nbclient.exceptions import CellTimeoutError
    from nbclient.util import ensure_async
    from papermill import engines
    from papermill.clientwrap import PapermillNotebookClient
    from traitlets import Float

    if _ENGINE_NAME in engines.papermill_engines._engines:
        return _ENGINE_NAME

    class InterruptingClient(PapermillNotebookClient):
        cleanup_grace_s = Float(300.0).tag(config=True)
        _timed_out_at: float | None = None

        async def _async_handle_timeout(self, timeout: int, cell: Any = None) -> None:
            if self._timed_out_at is None:
                self._timed_out_at = time.monotonic()
                self.log.warning(f"cell timed out after {timeout}s: interrupting the kernel so the check cleans up")
                await ensure_async(self.km.interrupt_kernel())
                return None
            if time.monotonic() - self._timed_out_at < self.cleanup_grace_s:
                await asyncio.sleep(1)  # nbclient polls again; never spin
                return None
            raise CellTimeoutError.error_from_timeout_and_cell("Cell execution timed out", timeout, cell)

    class InterruptingEngine(engines.NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man: Any, kernel_name: str, log_output: bool = False,
                                     stdout_file: Any = None, stderr_file: Any = None, start_timeout: int = 60,
                                     execution_timeout: Any = None, **kwargs: Any) -> Any:
            # Same as papermill's NBClientEngine (2.7.0), with the client above.
            kwargs = engines.remove_args(["input_path"], **kwargs)
            safe_kwargs = engines.remove_args(["timeout", "startup_timeout"], **kwargs)
            final_kwargs = engines.merge_kwargs(
                safe_kwargs, timeout=execution_timeout if execution_timeout else kwargs.get("timeout"),
                startup_timeout=start_timeout, kernel_name=kernel_name, log=engines.logger, log_output=log_output,
                stdout_file=stdout_file, stderr_file=stderr_file,
            )
            return InterruptingClient(nb_man, interrupt_on_timeout=True, **final_kwargs).execute()

    engines.papermill_engines.register(_ENGINE_NAME, InterruptingEngine)
    return _ENGINE_NAME


class _NodeNames(threading.Thread):
    """Every node name the cluster shows during the run (``redact``): nodes an autoscaler adds and removes again are
    named in results and events but are gone from the Node list by the end."""

    def __init__(self, kube: Any, interval_s: float = 3.0):
        super().__init__(name="aiconf-node-names", daemon=True)
        self.kube, self.interval_s = kube, interval_s
        self.names: set[str] = set()
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.names.update(n["metadata"]["name"] for n in self.kube.list("v1", "Node"))
            except Exception:  # a gap; names are also learned from the files
                pass
            self.stop.wait(self.interval_s)


def _redact_run(run_dir: Path, kube: Any, progress: _Progress, seen: set[str] = frozenset()) -> bool:
    """``redact``: node names, IPs and cloud account ids out of everything the run wrote, before the CI files and the
    report are built from it (the checks already redacted their own evidence and results)."""
    from aiconf import evidence

    try:
        changed = evidence.redact_tree(run_dir, evidence.redactor_for(kube, seen),
                                       ("run.json", "results/*.json", "evidence/**/*", "notebooks/*.ipynb"))
    except Exception as e:  # say so loudly, and build no report from files that may not be redacted
        progress.line(f"[aiconf] redaction FAILED ({type(e).__name__}: {e}): the run folder is not redacted; no report")
        return False
    progress.line(f"[aiconf] redacted node names, IP addresses and account ids ({len(changed)} file(s) changed)")
    return True


def _sweep(kube: Any, run_id: str, params: Params, progress: _Progress) -> None:
    from aiconf import cleanup

    try:
        left = cleanup.find_leftovers(kube, run_id)
        if left:
            progress.line(f"[aiconf] removing {len(left)} leftover object(s) of this run: " + ", ".join(map(str, left[:5])))
            for problem in cleanup.delete_leftovers(kube, left, params.cleanup_timeout_s):
                progress.line(f"[aiconf] cleanup problem: {problem}")
    except Exception as e:
        progress.line(f"[aiconf] cleanup sweep failed: {e} (run `aiconf cleanup --run-id {run_id}`)")


def _safe(fn: Any, default: Any) -> Any:
    try:
        return fn()
    except Exception:
        return default


def _safe_fingerprint(kube: Any, params: Params) -> dict[str, Any]:
    try:
        return facts.fingerprint(kube, params)
    except AiconfError:
        raise
    except Exception as e:
        return {"error": f"{type(e).__name__}: {e}"}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    tmp.replace(path)


def _update_latest(output: Path, run_dir: Path) -> None:
    latest = output / "latest"
    try:
        if latest.is_symlink() or latest.exists():
            latest.unlink()
        latest.symlink_to(run_dir.name)
    except OSError:
        pass  # a read-only or Windows-shared folder: the run folder is still complete


def _write_ci_files(run_dir: Path, progress: _Progress) -> None:
    try:
        from aiconf.report import junit
    except ImportError:
        return
    try:
        junit.write_junit(run_dir)
        junit.write_e2e_log(run_dir)
    except Exception as e:
        progress.line(f"[aiconf] could not write junit.xml/e2e.log: {e}")


def _build_report(run_dir: Path, progress: _Progress) -> None:
    try:
        from aiconf.report import build_report
    except ImportError:
        return
    try:
        path = build_report(run_dir)
        progress.line(f"[aiconf] report: {path}")
    except Exception as e:
        progress.line(f"[aiconf] could not build the report: {e} (retry with `aiconf report {run_dir}`)")

