"""Least privilege (issue 9): the whole suite runs as a ServiceAccount bound to exactly rbac/aiconf-clusterrole.yaml
(a kubeconfig with the ServiceAccount's token), with the same verdicts as cluster-admin; a missing permission gives a
clear message naming the verb and the resource (a ForbiddenError line, or an ERROR result naming it), not a crash.

The ServiceAccounts, ClusterRoles and bindings are created with the admin kubeconfig and removed afterwards.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from aiconf import cleanup
from aiconf.kube import Kube
from aiconf.model import RequirementResult, Verdict

pytestmark = pytest.mark.sandbox

RBAC = Path(__file__).resolve().parents[2] / "rbac"
ROLE = yaml.safe_load((RBAC / "aiconf-clusterrole.yaml").read_text())
BINDING_DOCS = list(yaml.safe_load_all((RBAC / "aiconf-binding.yaml").read_text()))
NAMESPACE = "aiconf"


@pytest.fixture(scope="module")
def admin(kube_sandbox) -> Kube:
    return Kube.connect(str(kube_sandbox.kubeconfig))


def token_kubeconfig(kube_sandbox, admin: Kube, sa: str, path: Path) -> tuple[Path, str]:
    """A kubeconfig that authenticates with a fresh token of ServiceAccount ``sa`` (TokenRequest, 2 h)."""
    answer = admin.raw("POST", f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/{sa}/token",
                       {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                        "spec": {"expirationSeconds": 7200}})
    token = answer["status"]["token"]
    cfg = yaml.safe_load(Path(kube_sandbox.kubeconfig).read_text())
    cluster = cfg["clusters"][0]
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "sandbox", "cluster": cluster["cluster"]}],
        "users": [{"name": sa, "user": {"token": token}}],
        "contexts": [{"name": sa, "context": {"cluster": "sandbox", "user": sa}}],
        "current-context": sa,
    }))
    path.chmod(0o600)
    return path, token


def bind(admin: Kube, sa: str, role: dict) -> None:
    """The binding example (namespace, ServiceAccount, ClusterRoleBinding), renamed to ``sa``, bound to ``role``."""
    admin.apply(role)
    for doc in copy.deepcopy(BINDING_DOCS):
        if doc["kind"] == "ServiceAccount":
            doc["metadata"]["name"] = sa
        elif doc["kind"] == "ClusterRoleBinding":
            doc["metadata"]["name"] = sa
            doc["roleRef"]["name"] = role["metadata"]["name"]
            doc["subjects"][0]["name"] = sa
        admin.apply(doc)


def unbind(admin: Kube, sa: str, role_name: str) -> None:
    admin.delete("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", sa)
    admin.delete("rbac.authorization.k8s.io/v1", "ClusterRole", role_name)
    admin.delete("v1", "ServiceAccount", sa, NAMESPACE)


@pytest.fixture(scope="module")
def sa_kubeconfig(kube_sandbox, admin, tmp_path_factory):
    bind(admin, "aiconf", ROLE)  # exactly the shipped role and binding
    try:
        yield token_kubeconfig(kube_sandbox, admin, "aiconf", tmp_path_factory.mktemp("sa") / "kubeconfig")
    finally:
        unbind(admin, "aiconf", "aiconf")
        admin.delete_namespace(NAMESPACE, 120)


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


def test_the_whole_suite_runs_as_a_service_account_with_exactly_the_role(sa_kubeconfig, admin, tmp_path):
    kubeconfig, token = sa_kubeconfig
    who = Kube.connect(str(kubeconfig)).raw("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                                            {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    assert who["status"]["userInfo"]["username"] == f"system:serviceaccount:{NAMESPACE}:aiconf"

    plan = aiconf("plan", "--profile", "sandbox", "--kubeconfig", str(kubeconfig), timeout_s=300)
    assert plan.returncode == 0, plan.stderr
    assert "forbidden" not in plan.stdout + plan.stderr

    started = time.monotonic()
    proc = aiconf("run", "--profile", "sandbox", "--kubeconfig", str(kubeconfig), "--output", str(tmp_path),
                  "--parallel", "2")
    print(f"\n[measure] full suite as the ServiceAccount: {time.monotonic() - started:.0f}s, exit {proc.returncode}")
    run_id = run_id_of(proc.stderr)
    run_dir = tmp_path / run_id
    assert proc.returncode in (0, 1), proc.stderr  # 1: requirements without an automated check are UNKNOWN
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
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path

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
def test_a_missing_permission_is_named_not_a_crash(kube_sandbox, admin, tmp_path, removed, command, names):
    sa = f"aiconf-no-{min(removed)}"[:50]
    role = without(removed, sa)
    bind(admin, sa, role)
    try:
        kubeconfig, _ = token_kubeconfig(kube_sandbox, admin, sa, tmp_path / "kubeconfig")
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
        unbind(admin, sa, role["metadata"]["name"])
