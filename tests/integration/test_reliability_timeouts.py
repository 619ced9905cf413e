"""A check that runs past its notebook timeout yields ERROR saying where it was waiting, and its cleanup still runs
(issue 9, "timeouts"): ``aiconf run --timeout 20`` on gang_scheduling, which needs about a minute on the sandbox.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from aiconf import cleanup
from aiconf.kube import Kube
from aiconf.model import RequirementResult, Verdict

pytestmark = pytest.mark.sandbox


def test_a_check_past_its_notebook_timeout_is_error_with_where_it_waited_and_cleans_up(kube_sandbox, tmp_path):
    kube = Kube.connect(str(kube_sandbox.kubeconfig))
    if not kube.has_kind("kueue.x-k8s.io/v1beta2", "ClusterQueue"):
        pytest.skip("Kueue is not running in this cluster")
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "aiconf.cli", "run", "--profile", "sandbox", "--kubeconfig", str(kube_sandbox.kubeconfig),
         "--only", "gang_scheduling", "--timeout", "20", "--output", str(tmp_path), "--no-report"],
        check=False, capture_output=True, text=True, timeout=600, env={**os.environ, "MPLBACKEND": "Agg"},
    )
    took = time.monotonic() - started
    assert proc.returncode == 1, proc.stderr  # a MUST in ERROR; not 130: nobody interrupted the run
    run_id = re.search(r"\[aiconf\] run (\S+):", proc.stderr).group(1)
    result = RequirementResult.read(tmp_path / run_id / "results" / "gang_scheduling.json")
    print(f"\n[measure] --timeout 20: run took {took:.1f}s; {result.reason}")
    assert result.verdict is Verdict.ERROR
    assert result.error["type"] == "notebook-timeout"
    message = result.error["message"]
    assert message.startswith("notebook exceeded its 20s timeout: interrupted during step '"), message
    assert f"step '{result.error['step']}'" in message and result.error["step"] not in ("start", "notebook")
    assert " while waiting for " in message, message  # the check spends its time in waits
    assert message.endswith("its cleanup ran")
    # The check's own cleanup ran: its namespace was captured as evidence, then deleted; nothing is left.
    assert any(e.endswith("/events.txt") for e in result.evidence), result.evidence
    assert cleanup.find_leftovers(kube, run_id) == []
    assert "removing" not in proc.stderr  # the run-level sweep found nothing left by the check
    assert took < 20 + 120
