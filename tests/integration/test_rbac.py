"""Least privilege (issue 9): the whole suite runs as a ServiceAccount bound to exactly rbac/aiconf-clusterrole.yaml
(a kubeconfig with the ServiceAccount's token), with the same verdicts as cluster-admin; a missing permission gives a
clear message naming the verb and the resource (a ForbiddenError line, or an ERROR result naming it), not a crash.

The ServiceAccounts, ClusterRoles and bindings are created with the admin kubeconfig and removed afterwards; the
whole-suite run is shared with test_reliability_secrets.py (``whole_suite_run`` in conftest.py).
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from aiconf import cleanup
from aiconf.kube import Kube
from aiconf.model import RequirementResult, Verdict

pytestmark = pytest.mark.sandbox

ROLE = yaml.safe_load((Path(__file__).resolve().parents[2] / "rbac" / "aiconf-clusterrole.yaml").read_text())


def aiconf(*args: str, timeout_s: float = 1200) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aiconf.cli", *args], check=False, capture_output=True, text=True,
                          timeout=timeout_s, env={**os.environ, "MPLBACKEND": "Agg"})


def run_id_of(stderr: str) -> str:
    return re.search(r"\[aiconf\] run (\S+):", stderr).group(1)


def test_the_role_is_what_the_docs_explain():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text()
    for rule in ROLE["rules"]:
        for resource in rule.get("resources", []) + rule.get("nonResourceURLs", [])[:1]:
            assert f"`{resource}`" in doc, f"docs/security.md does not explain {resource}"
    assert not any("secrets" in r.get("resources", []) for r in ROLE["rules"])
    assert not any("*" in r.get("verbs", []) for r in ROLE["rules"])


def test_the_whole_suite_runs_as_a_service_account_with_exactly_the_role(whole_suite_run, admin):
    kubeconfig, token, proc = whole_suite_run.kubeconfig, whole_suite_run.token, whole_suite_run.proc
    who = Kube.connect(str(kubeconfig)).raw("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                                            {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    assert who["status"]["userInfo"]["username"] == "system:serviceaccount:aiconf:aiconf"

    plan = aiconf("plan", "--profile", "sandbox", "--kubeconfig", str(kubeconfig), timeout_s=300)
    assert plan.returncode == 0, plan.stderr
    assert "forbidden" not in plan.stdout + plan.stderr

    run_dir = whole_suite_run.run_dir
    run_id = run_dir.name
    results = {p.stem: RequirementResult.read(p) for p in (run_dir / "results").glob("*.json")}
    # The checks this role was written for get the verdicts they get as cluster-admin on the sandbox.
    for rid in ("gang_scheduling", "pod_autoscaling", "cluster_autoscaling", "robust_controller"):
        r = results[rid]
        assert r.verdict is Verdict.PASS, (rid, r.reason, [(s.id, s.verdict, s.summary) for s in r.subchecks])
    # No check, whatever its verdict here, was refused anything.
    for rid, r in results.items():
        text = " ".join([r.reason, *r.notes, *(s.summary + " " + s.observed for s in r.subchecks)]).lower()
        assert "forbidden" not in text, (rid, text[:500])
    assert "forbidden" not in proc.stderr.lower()
    assert cleanup.find_leftovers(admin, run_id) == []
    assert (run_dir / "report.html").exists()
    # The token it ran with is nowhere in what the run wrote.
    for path, data in whole_suite_run.files.items():
        assert token.encode() not in data, path

    dry = aiconf("cleanup", "--all", "--dry-run", "--kubeconfig", str(kubeconfig), timeout_s=300)
    assert dry.returncode == 0 and "nothing to clean up" in dry.stdout, dry.stdout + dry.stderr


def without(rule_resources: set[str], name: str) -> dict:
    role = copy.deepcopy(ROLE)
    role["metadata"]["name"] = name
    role["rules"] = [r for r in role["rules"] if not rule_resources & set(r.get("resources", []))]
    assert len(role["rules"]) == len(ROLE["rules"]) - 1, "remove exactly one rule"
    return role


# (the rule removed, the command, what the message must name)
MISSING = [
    ({"resourceflavors"}, ["run", "--only", "gang_scheduling"], "create ResourceFlavor"),
    ({"workloads"}, ["run", "--only", "gang_scheduling"], "Workload"),
    ({"namespaces"}, ["run", "--only", "robust_controller"], "create Namespace"),
    ({"rayclusters"}, ["run", "--only", "robust_controller"], "RayCluster"),
    ({"nodes"}, ["plan"], "list Node"),
]


@pytest.mark.parametrize("removed, command, names", MISSING, ids=[min(m[0]) for m in MISSING])
def test_a_missing_permission_is_named_not_a_crash(service_accounts, admin, tmp_path, removed, command, names):
    sa = f"aiconf-no-{min(removed)}"[:50]
    role = without(removed, sa)
    service_accounts.bind(sa, role)
    try:
        kubeconfig, _ = service_accounts.kubeconfig(sa, tmp_path / "kubeconfig")
        proc = aiconf(*command, "--profile", "sandbox", "--kubeconfig", str(kubeconfig),
                      *(["--output", str(tmp_path / "out"), "--no-report"] if command[0] == "run" else []),
                      timeout_s=900)
        out = proc.stdout + proc.stderr
        assert "Traceback" not in out, out
        if command[0] == "plan":
            # Nothing runs: one line on stderr naming the verb and resource, exit 2.
            assert proc.returncode == 2, out
            line = [x for x in proc.stderr.splitlines() if x.strip()][-1]
            assert line.startswith("aiconf: error: forbidden: cannot ") and names in line, line
            print(f"\n[measure] {sorted(removed)}: {line}")
            return
        assert proc.returncode == 1, out
        run_id = run_id_of(proc.stderr)
        rid = command[2]
        result = RequirementResult.read(tmp_path / "out" / run_id / "results" / f"{rid}.json")
        text = " ".join([result.reason, *(s.summary + " " + s.observed for s in result.subchecks)])
        print(f"\n[measure] {sorted(removed)}: {result.verdict}: {text[:300]}")
        assert result.verdict in (Verdict.ERROR, Verdict.UNKNOWN), text
        assert "forbidden: cannot " in text and names in text, text
        assert cleanup.find_leftovers(admin, run_id) == []
    finally:
        service_accounts.unbind(sa, role["metadata"]["name"])
