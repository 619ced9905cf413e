"""Bad input that needs a cluster to show itself (issue 9): rows of docs/bad-input.md whose test column names this
file. Credentials the API server rejects, a CA that does not match it, and parameters only a check can judge (their
message is the check's ERROR result; the run goes on and exits 1).
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from aiconf.model import RequirementResult, Verdict

pytestmark = pytest.mark.sandbox

ROOT = Path(__file__).resolve().parents[2]
HERE = "integration/test_reliability_bad_input.py"


def kubeconfig(kube_sandbox, path: Path, *, token: str | None = None, wrong_ca: bool = False) -> Path:
    cfg = yaml.safe_load(Path(kube_sandbox.kubeconfig).read_text())
    cluster = dict(cfg["clusters"][0]["cluster"])
    user = dict(cfg["users"][0]["user"])
    if token is not None:
        user = {"token": token}
    if wrong_ca:  # a CA that did not sign the API server's certificate: the front-proxy CA, or a throwaway one
        other = Path(kube_sandbox.kubeconfig).parent / "pki" / "front-proxy-ca.crt"
        if not other.is_file():
            pytest.skip("needs the sandbox's PKI folder next to its kubeconfig")
        cluster["certificate-authority-data"] = base64.b64encode(other.read_bytes()).decode()
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": user}], "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "ctx"}))
    return path


# id -> (kubeconfig variant, arguments after the kubeconfig, where the message is: stderr | stdout | result:<id>)
CASES = {
    "kubeconfig-token-rejected": ({"token": "not-a-valid-token"}, ["plan"], "stderr"),
    "kubeconfig-wrong-ca": ({"wrong_ca": True}, ["plan", "--set", "api_retries=0"], "stderr"),
    "check-parameter-unknown-value": ({}, ["run", "--only", "robust_controller", "--set", "operator_profile=bogus"],
                                      "result:robust_controller"),
    "check-parameter-malformed-selector": ({}, ["run", "--only", "gang_scheduling", "--set", "gang_node_selector=gpu"],
                                           "result:gang_scheduling"),
    "cleanup-unknown-run-id": ({}, ["cleanup", "--run-id", "20990101-000000-nosuch"], "stdout"),
}


def doc_rows() -> dict[str, dict[str, str]]:
    rows = {}
    for line in (ROOT / "docs" / "bad-input.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("| `") else []
        if len(cells) >= 6 and cells[5].strip("`") == HERE:
            rows[cells[0].strip("`")] = {"message": re.fullmatch(r"``\s?(.*?)\s?``", cells[3]).group(1),
                                         "exit": cells[4]}
    return rows


def test_every_case_here_is_in_the_table():
    assert set(doc_rows()) == set(CASES)


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_on_a_cluster_gives_the_documented_message(kube_sandbox, tmp_path, case):
    variant, args, where = CASES[case]
    kc = kubeconfig(kube_sandbox, tmp_path / "kubeconfig", **variant)
    server = yaml.safe_load(kc.read_text())["clusters"][0]["cluster"]["server"]
    extra = ["--profile", "sandbox", "--output", str(tmp_path / "out"), "--no-report"] if args[0] == "run" else []
    proc = subprocess.run([sys.executable, "-m", "aiconf.cli", args[0], "--kubeconfig", str(kc), *args[1:], *extra],
                          check=False, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "MPLBACKEND": "Agg"})
    assert "Traceback" not in proc.stderr, proc.stderr
    row = doc_rows()[case]
    if where == "stderr":
        lines = [x for x in proc.stderr.splitlines() if x.strip()]
        assert len(lines) == 1, proc.stderr
        got = lines[0]
    elif where == "stdout":
        got = proc.stdout.strip()
    else:
        run_id = re.search(r"\[aiconf\] run (\S+):", proc.stderr).group(1)
        result = RequirementResult.read(tmp_path / "out" / run_id / "results" / f"{where.split(':')[1]}.json")
        assert result.verdict is Verdict.ERROR
        got = result.reason
    assert got.replace(server, "$SERVER") == row["message"]
    assert str(proc.returncode) == row["exit"], proc.stderr
