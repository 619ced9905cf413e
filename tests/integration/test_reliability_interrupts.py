"""Interrupted runs leave nothing (issue 9), against the sandbox, through the real command line.

``aiconf run`` runs as a subprocess; the test reads its progress lines on stderr and delivers SIGINT or SIGTERM at a
chosen point (creating objects, waiting, collecting evidence). After the runner exits (130) nothing labelled with the
run id may remain: no namespace, no cluster-scoped object (Kueue ResourceFlavor/ClusterQueue). A SIGKILLed runner
cannot clean up: ``aiconf cleanup --all`` must find and remove what it left, and a second run must not be disturbed by
those leftovers (and must report them at start).

The measured time from the signal to the runner's exit is printed (``-s`` shows it).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from aiconf import cleanup
from aiconf.kube import Kube
from aiconf.model import RequirementResult, Verdict

pytestmark = pytest.mark.sandbox

RUN_LINE = re.compile(r"\[aiconf\] run (\S+):")


@pytest.fixture(scope="module")
def kube(kube_sandbox) -> Kube:
    k = Kube.connect(str(kube_sandbox.kubeconfig))
    if not k.has_kind("kueue.x-k8s.io/v1beta2", "ClusterQueue"):
        pytest.skip("Kueue is not running in this cluster (the default sandbox add-ons include it)")
    return k


class Run:
    """``aiconf run`` in a subprocess, its stderr collected line by line."""

    def __init__(self, kubeconfig: Path, output: Path, *args: str):
        self.lines: list[str] = []
        self.cond = threading.Condition()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aiconf.cli", "run", "--profile", "sandbox", "--kubeconfig", str(kubeconfig),
             "--output", str(output), "--no-report", *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env={**os.environ, "MPLBACKEND": "Agg"},
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            sys.stderr.write(line)
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()

    @property
    def text(self) -> str:
        with self.cond:
            return "\n".join(self.lines)

    def wait_line(self, pattern: str, timeout_s: float) -> str:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout_s
        with self.cond:
            while True:
                hit = next((x for x in self.lines if rx.search(x)), None)
                if hit is not None:
                    return hit
                if self.proc.poll() is not None and not self.reader.is_alive():
                    raise AssertionError(f"the run ended before a line matching {pattern!r}:\n" + "\n".join(self.lines))
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no line matching {pattern!r} within {timeout_s}s:\n" + "\n".join(self.lines))
                self.cond.wait(min(remaining, 1.0))

    @property
    def run_id(self) -> str:
        return RUN_LINE.search(self.wait_line(RUN_LINE.pattern, 120)).group(1)

    def wait(self, timeout_s: float) -> int:
        code = self.proc.wait(timeout_s)
        self.reader.join(10)
        return code

    def kernels(self) -> list[psutil.Process]:
        try:
            return [p for p in psutil.Process(self.proc.pid).children(recursive=True)
                    if "ipykernel" in " ".join(p.cmdline())]
        except psutil.NoSuchProcess:
            return []


def leftovers(kube: Kube, run_id: str) -> list[cleanup.Leftover]:
    return cleanup.find_leftovers(kube, run_id)


# (signal, check, the progress line that marks the point, what the point is)
POINTS = [
    (signal.SIGINT, "gang_scheduling", r"\[gang_scheduling\] create the check's ResourceFlavor and ClusterQueue",
     "object creation (cluster-scoped)"),
    (signal.SIGTERM, "gang_scheduling", r"\[gang_scheduling\] create the LocalQueue", "object creation (namespaced)"),
    (signal.SIGINT, "gang_scheduling", r"\[gang_scheduling\] hold a gang of", "a wait (the negative hold)"),
    (signal.SIGTERM, "pod_autoscaling", r"\[pod_autoscaling\] raise the metric and wait for the scale-up",
     "a wait (the scale-up)"),
    (signal.SIGINT, "gang_scheduling", r"\[gang_scheduling\] record gang-relevant configuration",
     "evidence collection"),
]


@pytest.mark.parametrize("signum, check, point, what", POINTS,
                         ids=[f"{s.name}-{c}-{w.split(' (')[0].replace(' ', '_')}" for s, c, _, w in POINTS])
def test_an_interrupted_run_leaves_nothing(kube_sandbox, kube, tmp_path, signum, check, point, what):
    run = Run(kube_sandbox.kubeconfig, tmp_path, "--only", check, "--timeout", "600")
    run_id = run.run_id
    run.wait_line(point, 400)
    if what.startswith("a wait"):
        time.sleep(2)  # the step creates or patches something before it waits
    sent = time.monotonic()
    run.proc.send_signal(signum)
    code = run.wait(400)
    took = time.monotonic() - sent
    assert code == 130, run.text
    assert f"[aiconf] {signum.name}: interrupting running checks" in run.text
    # Nothing labelled with the run id: namespaces fully gone, cluster-scoped objects too.
    assert leftovers(kube, run_id) == []
    assert kube.list("v1", "Namespace", label_selector=f"aiconf.io/run-id={run_id}") == []
    for kind in ("ClusterQueue", "ResourceFlavor", "LocalQueue"):
        assert kube.list("kueue.x-k8s.io/v1beta2", kind, label_selector=f"aiconf.io/run-id={run_id}") == [], kind
    assert not run.kernels()
    run_dir = tmp_path / run_id
    result = RequirementResult.read(run_dir / "results" / f"{check}.json")
    if what == "evidence collection" and result.verdict is not Verdict.ERROR:
        # The signal came after the check's last step: its verdict stands and its cleanup finished first.
        assert any("interrupted while this check cleaned up" in n for n in result.notes), result.notes
    else:
        # The progress line reaches the test a moment after the kernel printed it: the check may be a step further.
        assert result.verdict is Verdict.ERROR, (result.verdict, result.reason)
        assert result.error["step"] not in ("start", "notebook"), result.error
        assert result.error["message"].startswith(f"interrupted during step '{result.error['step']}'"), result.error
        if what.startswith("a wait"):
            assert result.error["step"].startswith(point.split("] ")[1]), result.error
            assert " while waiting for " in result.error["message"], result.error
    print(f"\n[measure] {signum.name} during {what} ({check}): runner exited {code} after {took:.1f}s; "
          f"result {result.verdict}: {result.reason}")
    assert (run_dir / "run.json").exists() and '"exit_code": 130' in (run_dir / "run.json").read_text()
    assert not (run_dir / ".interrupted").exists()
    assert took < 120


def test_a_second_signal_during_cleanup_does_not_cut_it_short(kube_sandbox, kube, tmp_path):
    run = Run(kube_sandbox.kubeconfig, tmp_path, "--only", "gang_scheduling")
    run_id = run.run_id
    run.wait_line(r"\[gang_scheduling\] run a gang of \d+ pods that fits", 400)
    run.proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    run.proc.send_signal(signal.SIGINT)  # the impatient Ctrl-C
    time.sleep(0.5)
    run.proc.send_signal(signal.SIGTERM)
    assert run.wait(400) == 130, run.text
    assert "again: still cleaning up" in run.text
    assert leftovers(kube, run_id) == []


def test_a_sigkilled_runner_leaves_objects_that_cleanup_all_removes_and_a_second_run_is_not_disturbed(
        kube_sandbox, kube, tmp_path):
    first = Run(kube_sandbox.kubeconfig, tmp_path / "first", "--only", "gang_scheduling")
    first_id = first.run_id
    first.wait_line(r"\[gang_scheduling\] run a gang of \d+ pods that fits", 400)
    kernels = first.kernels()
    first.proc.send_signal(signal.SIGKILL)
    first.wait(60)
    # Its kernel notices the dead parent and exits without cleaning up (ipykernel's parent poller); make sure.
    for k in kernels:
        try:
            k.wait(15)
        except psutil.TimeoutExpired:
            k.kill()
    left = leftovers(kube, first_id)
    kinds = {x.kind for x in left}
    assert {"Namespace", "ClusterQueue", "ResourceFlavor"} <= kinds, left

    # A second run starts while the first one's objects are still there: it reports them and is not disturbed.
    second = Run(kube_sandbox.kubeconfig, tmp_path / "second", "--only", "gang_scheduling")
    second_id = second.run_id
    code = second.wait(900)
    assert re.search(r"\[aiconf\] found \d+ object\(s\) left by earlier runs", second.text), second.text
    assert first_id in second.text
    result = RequirementResult.read(tmp_path / "second" / second_id / "results" / "gang_scheduling.json")
    assert result.verdict is Verdict.PASS, (result.reason, [(s.id, s.verdict, s.summary) for s in result.subchecks])
    assert code == 0, second.text
    assert leftovers(kube, second_id) == []
    assert {str(x) for x in leftovers(kube, first_id)} == {str(x) for x in left}  # the second run left them alone
    manifest = (tmp_path / "second" / second_id / "run.json").read_text()
    assert "leftovers_at_start" in manifest and first_id in manifest

    cli = [sys.executable, "-m", "aiconf.cli", "cleanup", "--all", "--kubeconfig", str(kube_sandbox.kubeconfig)]
    dry = subprocess.run([*cli, "--dry-run"], check=False, capture_output=True, text=True, timeout=120)
    assert dry.returncode == 0, dry.stderr
    for item in left:
        assert f"would remove {item}" in dry.stdout
    assert leftovers(kube, first_id)  # a dry run removes nothing
    started = time.monotonic()
    done = subprocess.run(cli, check=False, capture_output=True, text=True, timeout=400)
    print(f"\n[measure] aiconf cleanup --all removed {len(left)} object(s) of a SIGKILLed run in "
          f"{time.monotonic() - started:.1f}s")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"removed {len(left)} object(s)" in done.stdout
    assert leftovers(kube, first_id) == []
