"""Benchmarks (not timed tests): each prints and saves JSON with machine info under benchmarks/results/.

    python benchmarks/run.py --quick        # runner overhead, report + bundle generation (seconds)
    python benchmarks/run.py                # also sandbox warm start/stop and cold-build times from the cache records
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def machine() -> dict:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "date": datetime.now(UTC).isoformat(timespec="seconds")}


def save(name: str, data: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = {"benchmark": name, "machine": machine(), **data}
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
    print(json.dumps(data, indent=2))


def bench_runner_overhead(repeats: int = 5) -> None:
    """A no-op check through the runner's notebook path vs calling the same function directly."""
    from aiconf import runner
    from aiconf.model import RequirementResult, SubCheck, Verdict
    from aiconf.params import load_parameters

    def direct(out: Path) -> None:
        r = RequirementResult("gang_scheduling", "1.36", "MUST", subchecks=[SubCheck("a", Verdict.PASS)])
        r.finalize().write(out / "results" / "gang_scheduling.json")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        nbdir = tmp / "nb"
        nbdir.mkdir()
        param = nbformat.v4.new_code_cell('run_id = ""\noutput_dir = ""')
        param.metadata["tags"] = ["parameters"]
        body = nbformat.v4.new_code_cell(
            "from pathlib import Path\nfrom aiconf.model import RequirementResult, SubCheck, Verdict\n"
            "r = RequirementResult('gang_scheduling', '1.36', 'MUST', subchecks=[SubCheck('a', Verdict.PASS)])\n"
            "r.finalize().write(Path(output_dir) / 'results' / 'gang_scheduling.json')"
        )
        nb = nbformat.v4.new_notebook(cells=[param, body])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, nbdir / "gang_scheduling.ipynb")
        params = load_parameters()
        through, plain = [], []
        for i in range(repeats):
            plan = runner.Plan(f"bench-{i}", tmp / f"run{i}", "1.36", [], [], [])
            (plan.run_dir / "results").mkdir(parents=True)
            (plan.run_dir / "notebooks").mkdir()
            t = time.perf_counter()
            outcome = runner.execute_notebook("gang_scheduling", params, plan, timeout_s=60, notebook_dir=nbdir)
            runner.ensure_result("gang_scheduling", plan, outcome, params)
            through.append(time.perf_counter() - t)
            t = time.perf_counter()
            direct(plan.run_dir)
            plain.append(time.perf_counter() - t)
    overhead = [a - b for a, b in zip(through, plain, strict=True)]
    save("runner_overhead", {"repeats": repeats, "through_runner_s": through, "direct_s": plain,
                             "overhead_median_s": statistics.median(overhead), "target_s": 1.0})


def bench_build_records() -> None:
    """Cold build seconds of each sandbox component, as recorded by the builder (build.json beside the binaries)."""
    from aiconf.sandbox.gobuild import CACHE_ROOT

    records = {}
    for path in sorted((CACHE_ROOT / "bin").glob("*/build.json")):
        data = json.loads(path.read_text())
        records[data["component"]] = data["seconds"]
    save("sandbox_build", {"cold_build_s": records, "total_s": round(sum(records.values()), 1),
                           "note": "seconds of the build that populated ~/.cache/aiconf on this machine"})


def bench_sandbox_start() -> None:
    from aiconf.sandbox.cluster import Sandbox

    with tempfile.TemporaryDirectory() as tmp:
        sb = Sandbox(Path(tmp) / "sb")
        t = time.perf_counter()
        sb.up(addons=[])
        up_s = time.perf_counter() - t
        t = time.perf_counter()
        sb.down()
        down_s = time.perf_counter() - t
    save("sandbox_start", {"control_plane_and_nodes_up_s": round(up_s, 2), "down_s": round(down_s, 2), "target_up_s": 20})


def bench_suite(kubeconfig: str) -> None:
    """The whole suite on a running sandbox, serial vs --parallel 4; per-requirement durations; report + bundle."""
    import subprocess

    from aiconf.model import RequirementResult

    out: dict = {"kubeconfig": "<sandbox>", "runs": {}}
    for label, parallel in (("serial", 1), ("parallel_4", 4)):
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "aiconf.cli", "run", "--profile", "sandbox", "--set",
                                   f"kubeconfig={kubeconfig}", "--parallel", str(parallel), "--output", tmp, "--no-report"],
                                  capture_output=True, text=True, timeout=1800)
            wall = time.perf_counter() - t
            run_dir = next(p for p in Path(tmp).iterdir() if p.is_dir() and not p.is_symlink())
            durations = {p.stem: RequirementResult.read(p).duration_s for p in (run_dir / "results").glob("*.json")}
            entry = {"wall_s": round(wall, 1), "exit_code": proc.returncode,
                     "per_requirement_s": {k: v for k, v in sorted(durations.items()) if v}}
            if label == "parallel_4":
                from aiconf.report import build_report
                from aiconf.submission import build as build_bundle

                t = time.perf_counter()
                build_report(run_dir)
                entry["report_s"] = round(time.perf_counter() - t, 2)
                template = ROOT / "tests" / "data" / "submission" / "AIConformance-1.36.yaml"
                metadata = ROOT / "tests" / "data" / "submission" / "metadata.yaml"
                if template.exists() and metadata.exists():
                    t = time.perf_counter()
                    build_bundle(run_dir, template, metadata)
                    entry["bundle_s"] = round(time.perf_counter() - t, 2)
            out["runs"][label] = entry
    out["speedup"] = round(out["runs"]["serial"]["wall_s"] / out["runs"]["parallel_4"]["wall_s"], 2)
    save("suite", out)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="only the fast benchmarks")
    parser.add_argument("--suite-kubeconfig", default="", help="also time the whole suite on this running sandbox")
    args = parser.parse_args()
    bench_runner_overhead()
    if not args.quick:
        bench_build_records()
        bench_sandbox_start()
    if args.suite_kubeconfig:
        bench_suite(args.suite_kubeconfig)
    return 0


if __name__ == "__main__":
    sys.exit(main())
