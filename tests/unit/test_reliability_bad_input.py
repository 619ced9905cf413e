"""Bad input, broadly (issue 9): every row of the table in docs/bad-input.md is run here and must give exactly the
message the table shows, on one line of stderr, with the exit code it shows, and no traceback.

Rows whose "test" column names another file are checked there (tests/unit/test_cli_bad_input.py, the report and
submission tests, the integration tests); this file checks that the test exists. Regenerate the rows after a deliberate change of a message with::

    .venv/bin/python tests/unit/test_reliability_bad_input.py      # prints the table rows of this file's cases

``$TMP`` in a message stands for the folder the case's files are in; a message ending in ``…`` is compared up to it
(the rest lists things that grow, such as known profiles or parameters).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "bad-input.md"
DATA = ROOT / "tests" / "data"
HERE = "unit/test_reliability_bad_input.py"  # the "test" column names tests relative to tests/

CLOSED = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: not-a-real-token}}]
contexts: [{name: ctx, context: {cluster: c, user: u}}]
current-context: ctx
"""


def kubeconfig(cluster: str = '{server: "https://127.0.0.1:1"}', user: str = "{token: x}", context: str = "c",
               current: str = "ctx") -> str:
    return (f"apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {cluster}}}]\n"
            f"users: [{{name: u, user: {user}}}]\ncontexts: [{{name: ctx, context: {{cluster: {context}, user: u}}}}]\n"
            f"current-context: {current!r}\n")


# id -> (files to create in $TMP, the command line, extra environment)
CASES: dict[str, tuple[dict[str, str], list[str], dict[str, str]]] = {
    # --- kubeconfig ---
    "kubeconfig-empty": ({"kc": ""}, ["plan", "--kubeconfig", "{T}/kc"], {}),
    "kubeconfig-folder": ({}, ["plan", "--kubeconfig", "{T}"], {}),
    "kubeconfig-yaml-list": ({"kc": "- a\n- b\n"}, ["plan", "--kubeconfig", "{T}/kc"], {}),
    "kubeconfig-yaml-scalar": ({"kc": "hello\n"}, ["plan", "--kubeconfig", "{T}/kc"], {}),
    "kubeconfig-no-current-context": ({"kc": "apiVersion: v1\nkind: Config\nclusters: []\nusers: []\ncontexts: []\n"},
                                      ["plan", "--kubeconfig", "{T}/kc"], {}),
    "kubeconfig-context-names-no-cluster": ({"kc": kubeconfig(context="nocluster")}, ["plan", "--kubeconfig", "{T}/kc"], {}),
    "kubeconfig-cert-file-missing": ({"kc": kubeconfig(user="{client-certificate: /nonexistent/c.crt, "
                                                      "client-key: /nonexistent/c.key}")},
                                     ["plan", "--kubeconfig", "{T}/kc"], {}),
    "kubeconfig-bad-base64": ({"kc": kubeconfig(user='{client-key-data: "!!notbase64", client-certificate-data: "!!"}')},
                              ["plan", "--kubeconfig", "{T}/kc"], {}),
    "kubeconfig-server-not-a-url": ({"kc": kubeconfig(cluster='{server: "not a url"}')},
                                    ["plan", "--kubeconfig", "{T}/kc"], {}),
    "kubeconfig-env-missing": ({}, ["plan"], {"KUBECONFIG": "/nonexistent/kubeconfig"}),
    # --- context ---
    "context-empty-current": ({"kc": kubeconfig(current="")}, ["plan", "--kubeconfig", "{T}/kc"], {}),
    # --- profiles ---
    "profile-file-missing": ({}, ["run", "--profile", "{T}/nope.yaml"], {}),
    "profile-not-yaml": ({"p.yaml": "gang_size: [\n"}, ["run", "--profile", "{T}/p.yaml"], {}),
    "profile-not-a-mapping": ({"p.yaml": "- a\n- b\n"}, ["run", "--profile", "{T}/p.yaml"], {}),
    "profile-extends-cycle": ({"a.yaml": "extends: {T}/b.yaml\n", "b.yaml": "extends: {T}/a.yaml\n"},
                              ["run", "--profile", "{T}/a.yaml"], {}),
    "profile-extends-unknown": ({"p.yaml": "extends: nosuchbase\n"}, ["run", "--profile", "{T}/p.yaml"], {}),
    "profile-unknown-key": ({"p.yaml": "gang_sise: 3\n"}, ["run", "--profile", "{T}/p.yaml"], {}),
    "profile-wrong-type": ({"p.yaml": "gang_size: lots\n"}, ["run", "--profile", "{T}/p.yaml"], {}),
    "profile-list-for-string": ({"p.yaml": "gpu_resource_name: [a, b]\n"}, ["run", "--profile", "{T}/p.yaml"], {}),
    # --- parameters ---
    "set-without-equals": ({}, ["run", "--set", "gang_size"], {}),
    "set-empty-key": ({}, ["run", "--set", "=3"], {}),
    "set-not-a-boolean": ({}, ["run", "--set", "cleanup=maybe"], {}),
    "set-not-a-list": ({}, ["run", "--set", "operator_crds=abc"], {}),
    "set-not-a-number": ({}, ["run", "--set", "hpa_target_value=ten"], {}),
    "option-parallel-out-of-range": ({}, ["run", "--parallel", "0"], {}),
    "option-timeout-too-small": ({}, ["run", "--timeout", "5"], {}),
    "option-unknown": ({}, ["run", "--no-such-option"], {}),
    "option-missing-value": ({}, ["cleanup", "--run-id"], {}),
    "command-unknown": ({}, ["bogus"], {}),
    # --- requirement ids ---
    "skip-unknown-id": ({"kc": CLOSED}, ["run", "--kubeconfig", "{T}/kc", "--skip", "gpu_magic"], {}),
    "only-unknown-id-in-list": ({"kc": CLOSED}, ["run", "--kubeconfig", "{T}/kc", "--only", "gang_scheduling,gpu_magic"],
                                {}),
    # --- checklist versions (checked before the cluster is contacted: this kubeconfig's server is a closed port) ---
    "version-not-a-version": ({"kc": CLOSED}, ["run", "--kubeconfig", "{T}/kc", "--checklist-version", "abc"], {}),
    "version-too-new": ({"kc": CLOSED}, ["plan", "--kubeconfig", "{T}/kc", "--checklist-version", "1.37"], {}),
    "version-too-old-by-set": ({"kc": CLOSED}, ["run", "--kubeconfig", "{T}/kc", "--set", "checklist_version=1.32"], {}),
    # --- run folders ---
    "output-cannot-be-created": ({"afile": "x"}, ["run", "--output", "{T}/afile/runs"], {}),
    "output-is-a-file": ({"afile": "x"}, ["run", "--output", "{T}/afile"], {}),
    "report-run-json-corrupt": ({"run/run.json": "{not json"}, ["report", "{T}/run"], {}),
    "compare-missing-run": ({}, ["compare", "{T}/nope", str(DATA / "runs" / "mixed")], {}),
    "submission-run-folder-missing": ({}, ["submission", "build", "{T}/nope", "--template", "x", "--metadata", "y"], {}),
    "submission-missing-argument": ({}, ["submission", "build"], {}),
    # --- submission templates ---
    "template-not-yaml": ({"t.yaml": "spec: [\n"},
                          ["submission", "build", str(DATA / "runs" / "passing"), "--template", "{T}/t.yaml",
                           "--metadata", str(DATA / "submission" / "metadata.yaml")], {}),
    "template-not-a-checklist": ({"t.yaml": "a: 1\n"},
                                 ["submission", "build", str(DATA / "runs" / "passing"), "--template", "{T}/t.yaml",
                                  "--metadata", str(DATA / "submission" / "metadata.yaml")], {}),
    # --- submission metadata files ---
    "metadata-not-yaml": ({"m.yaml": "metadata: [\n"},
                          ["submission", "build", str(DATA / "runs" / "passing"), "--template",
                           str(DATA / "submission" / "AIConformance-1.35.yaml"), "--metadata", "{T}/m.yaml"], {}),
    "metadata-not-a-mapping": ({"m.yaml": "- a\n"},
                               ["submission", "build", str(DATA / "runs" / "passing"), "--template",
                                str(DATA / "submission" / "AIConformance-1.35.yaml"), "--metadata", "{T}/m.yaml"], {}),
    "metadata-unknown-section": ({"m.yaml": "metadata: {platformName: x}\nbogus: 1\n"},
                                 ["submission", "build", str(DATA / "runs" / "passing"), "--template",
                                  str(DATA / "submission" / "AIConformance-1.35.yaml"), "--metadata", "{T}/m.yaml"], {}),
    "product-yaml-not-a-mapping": ({"PRODUCT.yaml": "- a\n"}, ["submission", "validate", "{T}/PRODUCT.yaml", "--offline"],
                                   {}),
}


def run_case(case: str, tmp: Path) -> subprocess.CompletedProcess:
    files, args, env = CASES[case]
    for name, content in files.items():
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content.replace("{T}", str(tmp)))
    args = [a.replace("{T}", str(tmp)) for a in args]
    environment = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    environment.update(HOME=str(tmp), **env)  # no ~/.kube/config of the machine running the tests
    return subprocess.run([sys.executable, "-m", "aiconf.cli", *args], check=False, capture_output=True, text=True,
                          timeout=120, cwd=tmp, env=environment)


def doc_rows() -> dict[str, dict[str, str]]:
    """id -> {message, exit, test} from the table rows of docs/bad-input.md."""
    rows = {}
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("| `") else []
        if len(cells) < 6:
            continue
        case_id = cells[0].strip("`")
        message = re.fullmatch(r"``\s?(.*?)\s?``", cells[3])
        assert message, f"docs/bad-input.md row {case_id}: the message must be in ``double backticks``"
        rows[case_id] = {"message": message.group(1), "exit": cells[4], "test": cells[5].strip("`")}
    return rows


ROWS = doc_rows() if DOC.exists() else {}


def test_every_case_here_is_in_the_table_and_every_row_has_a_test():
    mine = {k for k, r in ROWS.items() if r["test"] == HERE}
    assert mine == set(CASES), (sorted(set(CASES) - mine), sorted(mine - set(CASES)))
    sys.path.insert(0, str(Path(__file__).parent))
    import test_cli_bad_input

    for case_id, row in ROWS.items():
        if row["test"].startswith("unit/test_cli_bad_input.py::"):
            assert row["test"].split("::", 1)[1] in test_cli_bad_input.CASES or "::test_" in row["test"], row
        elif row["test"] != HERE:
            path, _, name = row["test"].partition("::")
            source = (ROOT / "tests" / path).read_text()
            # A file with its own table-driven cases names the case id; otherwise the row names a test function.
            assert f'"{case_id}"' in source if not name else f"def {name.split('[')[0]}(" in source, row


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_gives_the_documented_line(case, tmp_path):
    row = ROWS[case]
    proc = run_case(case, tmp_path)
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1, proc.stderr
    got = lines[0].replace(str(tmp_path), "$TMP")
    want = row["message"]
    if want.endswith("…"):
        assert got.startswith(want[:-1]), got
    else:
        assert got == want
    assert str(proc.returncode) == row["exit"], proc.stderr


if __name__ == "__main__":  # print the table rows of this file's cases (see the docstring)
    for case in CASES:
        with tempfile.TemporaryDirectory() as d:
            p = run_case(case, Path(d))
            line = next((x for x in p.stderr.splitlines() if x.strip()), "").replace(d, "$TMP")
            args = " ".join(CASES[case][1]).replace("{T}", "$TMP").replace(str(DATA), "tests/data")
            print(f"| `{case}` | | `aiconf {args}` | `` {line} `` | {p.returncode} | `{HERE}` |")
