"""The runner records each notebook's outcome itself (fixture notebooks for every failure mode, no cluster)."""

import json
from pathlib import Path

import nbformat
import pytest

from aiconf import runner
from aiconf.model import RequirementResult, SubCheck, Verdict
from aiconf.params import load_parameters

PARAMS_CELL = 'run_id = ""\noutput_dir = ""\n'
WRITE_RESULT = (
    "from pathlib import Path\n"
    "from aiconf.model import RequirementResult, SubCheck, Verdict\n"
    "r = RequirementResult('{rid}', '1.36', 'MUST', subchecks=[SubCheck('a', Verdict.PASS)], run_id=run_id)\n"
    "r.finalize().write(Path(output_dir) / 'results' / '{rid}.json')\n"
)
BODIES = {
    "ok": WRITE_RESULT,
    "raises": "raise RuntimeError('chart failed')",
    "slow": "import time\ntime.sleep(30)",
    "dies": "import os\nos._exit(1)",
    "silent": "x = 1",
    "writes-then-fails": WRITE_RESULT + "raise ValueError('after the check')",
}


def make_notebook(directory: Path, rid: str, body: str) -> None:
    param = nbformat.v4.new_code_cell(PARAMS_CELL)
    param.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=[param, nbformat.v4.new_code_cell(body.format(rid=rid))])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, directory / f"{rid}.ipynb")


@pytest.fixture
def plan(tmp_path):
    p = runner.Plan("20260101-000000-abcdef", tmp_path / "run", "1.36", [], [], [])
    (p.run_dir / "results").mkdir(parents=True)
    (p.run_dir / "notebooks").mkdir()
    return p


@pytest.mark.parametrize(
    "kind, status, verdict, message",
    [
        ("ok", "ok", Verdict.PASS, None),
        ("raises", "failed", Verdict.ERROR, "RuntimeError: chart failed"),
        ("slow", "timeout", Verdict.ERROR, "exceeded its 3s timeout"),
        ("dies", "dead-kernel", Verdict.ERROR, "kernel died"),
        ("silent", "ok", Verdict.ERROR, "without writing its result"),
        ("writes-then-fails", "failed", Verdict.PASS, None),
    ],
)
def test_every_notebook_outcome_yields_a_result(tmp_path, plan, kind, status, verdict, message):
    nbdir = tmp_path / "nb"
    nbdir.mkdir()
    make_notebook(nbdir, "gang_scheduling", BODIES[kind])
    params = load_parameters()
    outcome = runner.execute_notebook("gang_scheduling", params, plan, timeout_s=3, notebook_dir=nbdir)
    assert outcome.status == status
    result = runner.ensure_result("gang_scheduling", plan, outcome, params)
    assert result.verdict is verdict
    if message:
        assert message in result.reason
    assert RequirementResult.read(plan.run_dir / "results" / "gang_scheduling.json").verdict is verdict
    assert (plan.run_dir / "notebooks" / "gang_scheduling.ipynb").exists() or kind == "dies"
    if kind == "writes-then-fails":
        assert any("after the check finished" in n for n in result.notes)


def _res(rid, level, verdict):
    return RequirementResult(rid, "1.36", level, verdict=verdict, subchecks=[SubCheck("a", verdict)])


@pytest.mark.parametrize(
    "verdicts, code",
    [
        ([("MUST", Verdict.PASS), ("SHOULD", Verdict.FAIL)], 0),
        ([("MUST", Verdict.NOT_APPLICABLE)], 0),
        ([("MUST", Verdict.FAIL)], 1),
        ([("MUST", Verdict.UNKNOWN)], 1),
        ([("MUST", Verdict.ERROR)], 1),
        ([(None, Verdict.FAIL)], 0),
    ],
)
def test_exit_code_follows_must_verdicts(verdicts, code):
    assert runner.exit_code([_res(f"r{i}", lvl, v) for i, (lvl, v) in enumerate(verdicts)]) == code


def test_plan_selects_by_version_only_and_skip():
    params = load_parameters(None, ["checklist_version=1.36"])
    p = runner.plan_run(params, only=None, skip=["pod_autoscaling"])
    assert "dra_support" not in p.selected + p.not_automated  # absent from 1.36
    assert "pod_autoscaling" in p.not_selected
    p = runner.plan_run(params, only=["dra_support"])
    assert p.selected + p.not_automated == ["dra_support"]  # run by name: informational


class _NoCluster:
    server = "https://fake"

    def __getattr__(self, name):
        raise RuntimeError("no cluster in unit tests")


TIMED = (
    "import json, time\nfrom pathlib import Path\n"
    "start = time.time()\ntime.sleep({seconds})\n"
    "Path(output_dir, 'times-{rid}.json').write_text(json.dumps([start, time.time()]))\n"
)


def test_exclusive_checks_never_overlap_and_no_worker_waits_for_them_while_others_could_run(monkeypatch, tmp_path):
    """Two capacity-changing checks and two ordinary ones on two workers: the exclusive two run one after the other,
    and the ordinary ones run meanwhile (before, a worker sat waiting for the exclusive lock)."""
    nbdir = tmp_path / "nb"
    nbdir.mkdir()
    seconds = {"cluster_autoscaling": 3, "pod_autoscaling": 3, "gang_scheduling": 1, "robust_controller": 1}
    for rid, s in seconds.items():
        nb_body = TIMED.replace("{seconds}", str(s)).replace("{rid}", rid)
        param = nbformat.v4.new_code_cell(PARAMS_CELL)
        param.metadata["tags"] = ["parameters"]
        nb = nbformat.v4.new_notebook(cells=[param, nbformat.v4.new_code_cell(nb_body)])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, nbdir / f"{rid}.ipynb")
    monkeypatch.setattr(runner, "connect", lambda params: _NoCluster())
    monkeypatch.setattr(runner, "_sweep", lambda *a, **kw: None)
    params = load_parameters(None, {"checklist_version": "1.36"})
    with open(tmp_path / "progress.log", "w") as stream:
        runner.run(params, only=list(seconds), parallel=2, output=tmp_path / "out", report=False, notebook_dir=nbdir,
                   progress_stream=stream)
    run_dir = next((tmp_path / "out").glob("2*"))
    times = {rid: json.loads((run_dir / f"times-{rid}.json").read_text()) for rid in seconds}
    ca, pa = times["cluster_autoscaling"], times["pod_autoscaling"]
    assert ca[1] <= pa[0] or pa[1] <= ca[0], times  # the exclusive two never overlap
    first_exclusive_end = min(ca[1], pa[1])
    # Both ordinary checks started while the first exclusive check still ran.
    assert times["gang_scheduling"][0] < first_exclusive_end and times["robust_controller"][0] < first_exclusive_end
