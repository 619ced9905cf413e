"""Interrupted and timed-out checks clean up exactly once and say where they were (issue 9), without a cluster.

A fake check (registered over a real requirement id) sleeps in a named step while its fake client reports what it is
waiting for; its cleanup is slow and leaves a file behind when it completes. The same machinery is exercised against the
sandbox in tests/integration/test_reliability_interrupts.py.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import nbformat
import psutil
import pytest

from aiconf import registry, runner
from aiconf.execute import STOP_MARKER, run_check
from aiconf.model import RequirementResult, Verdict
from aiconf.params import load_parameters

RID = "gang_scheduling"


class FakeKube:
    server = "https://fake"
    waiting_for = ""


def _params(**kw):
    return load_parameters(None, {"checklist_version": "1.36", **kw})


@pytest.fixture
def slow_check(monkeypatch, tmp_path):
    """Registers a check that waits ``body_s`` in a step and takes ``cleanup_s`` to clean up."""
    state = {"body_s": 30.0, "cleanup_s": 1.5, "in_body": threading.Event(), "in_cleanup": threading.Event()}

    def cleanup():
        state["in_cleanup"].set()
        time.sleep(state["cleanup_s"])
        (tmp_path / "cleanup-done").write_text("done")

    def check(ctx):
        ctx.on_cleanup("slow cleanup", cleanup)
        # Set before the step prints its line: the line may reach the runner while the kernel still flushes it.
        ctx.kube.waiting_for = "the fake gang to stay unscheduled"
        with ctx.step("hold the fake gang"):
            state["in_body"].set()
            time.sleep(state["body_s"])
            ctx.kube.waiting_for = ""
        ctx.record("a", True)

    monkeypatch.setitem(registry._REGISTRY, RID, registry.CheckSpec(RID, check, ("a",)))
    return state


def _signal_later(wait_for: threading.Event, *, times: int = 1, gap_s: float = 0.2) -> threading.Thread:
    def fire():
        wait_for.wait(20)
        time.sleep(0.2)
        for _ in range(times):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(gap_s)

    t = threading.Thread(target=fire, daemon=True)
    t.start()
    return t


def test_sigint_interrupts_the_check_which_records_its_step_and_cleans_up(slow_check, tmp_path):
    _signal_later(slow_check["in_body"])
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_check(RID, _params(), run_id="20260101-000000-abcdef", run_dir=tmp_path, kube=FakeKube())
    assert time.monotonic() - started < 10  # not the 30 s the step would take
    result = RequirementResult.read(tmp_path / "results" / f"{RID}.json")
    assert result.verdict is Verdict.ERROR
    assert result.error["step"] == "hold the fake gang"
    assert result.error["message"] == ("interrupted during step 'hold the fake gang' while waiting for the fake gang "
                                       "to stay unscheduled")
    assert (tmp_path / "cleanup-done").exists()


def test_further_sigints_do_not_cut_cleanup_short(slow_check, tmp_path):
    slow_check["cleanup_s"] = 2.0
    _signal_later(slow_check["in_body"])
    _signal_later(slow_check["in_cleanup"], times=5, gap_s=0.2)  # a user hammering Ctrl-C during cleanup
    before = signal.getsignal(signal.SIGINT)  # not always the default: a shell starts background jobs ignoring it
    with pytest.raises(KeyboardInterrupt):
        run_check(RID, _params(), run_id="20260101-000000-abcdef", run_dir=tmp_path, kube=FakeKube())
    assert (tmp_path / "cleanup-done").read_text() == "done"
    assert signal.getsignal(signal.SIGINT) is before  # restored


def test_the_stop_marker_interrupts_a_check_that_missed_the_signal(slow_check, tmp_path):
    def write_marker():
        slow_check["in_body"].wait(20)
        (tmp_path / STOP_MARKER).write_text("SIGTERM\n")

    threading.Thread(target=write_marker, daemon=True).start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_check(RID, _params(), run_id="20260101-000000-abcdef", run_dir=tmp_path, kube=FakeKube())
    assert time.monotonic() - started < 10
    result = RequirementResult.read(tmp_path / "results" / f"{RID}.json")
    assert result.verdict is Verdict.ERROR and "hold the fake gang" in result.error["message"]
    assert (tmp_path / "cleanup-done").exists()


def test_a_check_does_not_start_after_the_run_was_interrupted(slow_check, tmp_path):
    (tmp_path / STOP_MARKER).write_text("SIGINT\n")
    with pytest.raises(KeyboardInterrupt):
        run_check(RID, _params(), run_id="20260101-000000-abcdef", run_dir=tmp_path, kube=FakeKube())
    result = RequirementResult.read(tmp_path / "results" / f"{RID}.json")
    assert result.verdict is Verdict.ERROR
    assert result.error["message"] == "the run was interrupted before this check started"
    assert not slow_check["in_body"].is_set()


# --- through papermill kernels ------------------------------------------------------------------------------------

NOTEBOOK = '''
import time
from pathlib import Path
from aiconf import registry
from aiconf.execute import run_check
from aiconf.params import load_parameters

class FakeKube:
    server = "https://fake"
    waiting_for = ""

def cleanup():
    time.sleep({cleanup_s})
    Path(output_dir, "cleanup-{rid}").write_text("done")

def check(ctx):
    ctx.on_cleanup("slow cleanup", cleanup)
    # Set before the step prints its line: the line may reach the runner while the kernel still flushes it.
    ctx.kube.waiting_for = "the fake gang to stay unscheduled"
    with ctx.step("hold the fake gang"):
        time.sleep({body_s})
        ctx.kube.waiting_for = ""
    ctx.record("a", True)

registry._REGISTRY["{rid}"] = registry.CheckSpec("{rid}", check, ("a",))
run_check("{rid}", load_parameters(None, {{"checklist_version": "1.36"}}), run_id=run_id, run_dir=output_dir,
          kube=FakeKube())
'''


def make_notebook(directory: Path, rid: str, body_s: float, cleanup_s: float = 1.0) -> None:
    param = nbformat.v4.new_code_cell('run_id = ""\noutput_dir = ""\n')
    param.metadata["tags"] = ["parameters"]
    code = NOTEBOOK.format(rid=rid, body_s=body_s, cleanup_s=cleanup_s)
    nb = nbformat.v4.new_notebook(cells=[param, nbformat.v4.new_code_cell(code)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, directory / f"{rid}.ipynb")


@pytest.fixture
def plan(tmp_path):
    p = runner.Plan("20260101-000000-abcdef", tmp_path / "run", "1.36", [], [], [])
    (p.run_dir / "results").mkdir(parents=True)
    (p.run_dir / "notebooks").mkdir()
    return p


def test_a_notebook_timeout_interrupts_the_check_which_cleans_up_and_says_where_it_was(tmp_path, plan):
    nbdir = tmp_path / "nb"
    nbdir.mkdir()
    make_notebook(nbdir, RID, body_s=120, cleanup_s=2)
    params = _params()
    started = time.monotonic()
    outcome = runner.execute_notebook(RID, params, plan, timeout_s=5, notebook_dir=nbdir, stop=threading.Event())
    assert time.monotonic() - started < 60
    assert outcome.status == "timeout"
    result = runner.ensure_result(RID, plan, outcome, params)
    assert result.verdict is Verdict.ERROR
    assert result.error["type"] == "notebook-timeout"
    assert result.error["message"] == ("notebook exceeded its 5s timeout: interrupted during step 'hold the fake gang' "
                                       "while waiting for the fake gang to stay unscheduled; its cleanup ran")
    assert (plan.run_dir / f"cleanup-{RID}").read_text() == "done"


class _NoCluster:
    """What the runner needs of a cluster when every notebook brings its own fake."""

    server = "https://fake"

    def __getattr__(self, name):
        raise RuntimeError("no cluster in unit tests")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_to_the_runner_interrupts_every_check_and_exits_130(monkeypatch, tmp_path, signum):
    """Two checks run (gang_scheduling, robust_controller); one waits for the exclusive lock (pod_autoscaling)."""
    nbdir = tmp_path / "nb"
    nbdir.mkdir()
    selected = ["gang_scheduling", "robust_controller", "pod_autoscaling"]
    for rid in selected:
        make_notebook(nbdir, rid, body_s=120, cleanup_s=1)
    monkeypatch.setattr(runner, "connect", lambda params: _NoCluster())
    swept = []
    monkeypatch.setattr(runner, "_sweep", lambda kube, run_id, params, progress: swept.append(run_id))
    stream = _Lines()
    fired = []

    def interrupt_when_both_run():
        if stream.wait_for(lambda text: text.count("hold the fake gang ...") >= 2, 120):
            fired.append(time.monotonic())
            os.kill(os.getpid(), signum)

    threading.Thread(target=interrupt_when_both_run, daemon=True).start()
    handler_before = signal.getsignal(signum)
    code = runner.run(_params(), only=selected, parallel=3, output=tmp_path / "out", report=False,
                      notebook_dir=nbdir, progress_stream=stream)
    assert fired, stream.text
    assert code == runner.EXIT_INTERRUPTED, stream.text
    assert time.monotonic() - fired[0] < 30  # cleanup takes 1 s; the kernels shut down
    run_dir = next((tmp_path / "out").glob("2*"))
    for rid in ("gang_scheduling", "robust_controller"):
        result = RequirementResult.read(run_dir / "results" / f"{rid}.json")
        assert result.verdict is Verdict.ERROR, rid
        assert result.error["message"] == ("interrupted during step 'hold the fake gang' while waiting for the fake "
                                           "gang to stay unscheduled"), rid
        assert (run_dir / f"cleanup-{rid}").read_text() == "done"
    queued = RequirementResult.read(run_dir / "results" / "pod_autoscaling.json")
    assert queued.verdict is Verdict.ERROR and "before this check started" in queued.reason
    assert not (run_dir / "cleanup-pod_autoscaling").exists()
    assert len(swept) == 1
    assert not (run_dir / STOP_MARKER).exists()
    assert signal.getsignal(signum) is handler_before  # the runner's handler is gone again
    assert _live_kernels_after(10) == []


def _live_kernels_after(timeout_s: float) -> list[int]:
    """Kernel processes still alive after up to ``timeout_s`` (an exited, not yet reaped one is a zombie: gone)."""
    deadline = time.monotonic() + timeout_s
    while True:
        live = []
        for p in psutil.Process().children(recursive=True):
            try:
                if p.status() != psutil.STATUS_ZOMBIE and "ipykernel" in " ".join(p.cmdline()):
                    live.append(p.pid)
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                continue
        if not live or time.monotonic() > deadline:
            return live
        psutil.wait_procs([psutil.Process(pid) for pid in live if psutil.pid_exists(pid)], timeout=0.5)


class _Lines:
    """A progress stream the test can wait on."""

    def __init__(self):
        self.text = ""
        self.cond = threading.Condition()

    def write(self, s):
        with self.cond:
            self.text += s
            self.cond.notify_all()
        sys.stderr.write(s)

    def flush(self):
        pass

    def wait_for(self, predicate, timeout_s):
        with self.cond:
            return self.cond.wait_for(lambda: predicate(self.text), timeout_s)
