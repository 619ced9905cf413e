"""Secrets never appear in a run's outputs, and ``redact`` removes node names and IPs (issue 9, "secrets").

One full run on the sandbox (every check of the detected checklist, the HTML report included) with ``redact=true``,
as the least-privilege ServiceAccount (``whole_suite_run`` in conftest.py, shared with test_rbac.py).
Then every file of the run folder is searched for

- the token the run authenticated with, the admin kubeconfig's client key and certificate (base64 as in the kubeconfig, and every line of the decoded PEM),
  any token in it, and every file of the sandbox's PKI folder (CA, API server, ServiceAccount signing keys, ...);
- the data of every Secret in the cluster (base64 and decoded);
- every node name the cluster had during the run (including nodes an autoscaler added and removed), and the IP
  addresses the sandbox hands out (pods 10.99.x.x, loopback endpoints).
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
import yaml

from aiconf.kube import Kube
from aiconf.model import RequirementResult

pytestmark = pytest.mark.sandbox


def pem_lines(pem: str) -> list[str]:
    """The base64 body lines of every PEM block (a key leaks if any one of them shows up)."""
    return [line.strip() for line in pem.splitlines() if line.strip() and "-----" not in line and len(line.strip()) >= 40]


def secret_material(kubeconfig: Path, kube: Kube) -> dict[str, str]:
    """name -> a string that must not appear in any output."""
    found: dict[str, str] = {}
    cfg = yaml.safe_load(kubeconfig.read_text())
    for user in cfg.get("users", []):
        u = user.get("user") or {}
        for field in ("client-key-data", "client-certificate-data"):
            if u.get(field):
                found[f"kubeconfig {field}"] = u[field][:60]
                for i, line in enumerate(pem_lines(base64.b64decode(u[field]).decode())):
                    found[f"kubeconfig {field} PEM line {i}"] = line
        for field in ("token", "password"):
            if u.get(field):
                found[f"kubeconfig {field}"] = u[field]
    pki = kubeconfig.parent / "pki"
    if pki.is_dir():
        for path in sorted(pki.rglob("*")):
            if path.is_file():
                for i, line in enumerate(pem_lines(path.read_text(errors="replace"))):
                    found[f"{path.name} line {i}"] = line
    for secret in kube.list("v1", "Secret"):
        for key, value in (secret.get("data") or {}).items():
            where = f"Secret {secret['metadata']['namespace']}/{secret['metadata']['name']} {key}"
            if len(value) >= 16:
                found[where] = value[:60]
            try:
                decoded = base64.b64decode(value).decode()
            except (ValueError, UnicodeDecodeError):
                continue
            for i, line in enumerate(pem_lines(decoded) or ([decoded] if len(decoded) >= 12 else [])):
                found[f"{where} decoded {i}"] = line[:60]
    return found


@pytest.fixture(scope="module")
def redacted_run(whole_suite_run, admin):
    r = whole_suite_run
    return r.run_dir, r.files, r.nodes, r.proc.stderr, admin


def test_the_run_is_complete(redacted_run):
    run_dir, files, _, stderr, _ = redacted_run
    names = {p.relative_to(run_dir).as_posix() for p in files}
    assert {"run.json", "junit.xml", "e2e.log", "report.html"} <= names, sorted(names)
    assert any(n.startswith("evidence/") for n in names)
    assert "redacted node names, IP addresses and account ids" in stderr
    results = [RequirementResult.read(run_dir / "results" / f"{rid}.json")
               for rid in ("gang_scheduling", "pod_autoscaling", "cluster_autoscaling", "robust_controller")]
    assert all(r.verdict.value == "PASS" for r in results), [(r.requirement_id, r.verdict, r.reason) for r in results]


def test_no_credential_or_secret_data_in_any_output(kube_sandbox, redacted_run, whole_suite_run):
    run_dir, files, _, _, kube = redacted_run
    material = secret_material(Path(kube_sandbox.kubeconfig), kube)
    material.update(secret_material(whole_suite_run.kubeconfig, kube))  # the ServiceAccount token it ran with
    assert any(k.startswith("kubeconfig client-key-data") for k in material), "no client key to look for"
    leaks = [(what, path.relative_to(run_dir).as_posix()) for what, needle in material.items()
             for path, data in files.items() if needle.encode() in data]
    assert leaks == []
    print(f"\n[measure] searched {len(files)} files for {len(material)} pieces of key/cert/token/Secret material: none")


def test_redact_removes_every_node_name_and_sandbox_ip(redacted_run):
    run_dir, files, nodes, _, _ = redacted_run
    assert len(nodes.names) >= 3
    leaks = []
    ip = re.compile(rb"\b(?:10\.99\.\d{1,3}\.\d{1,3}|127\.0\.0\.1|10\.96\.\d{1,3}\.\d{1,3})\b")
    for path, data in files.items():
        rel = path.relative_to(run_dir).as_posix()
        leaks += [(name, rel) for name in nodes.names if re.search(rb"(?<![\w-])" + re.escape(name.encode()) + rb"(?![\w-])", data)]
        leaks += [(m.decode(), rel) for m in set(ip.findall(data))]
        leaks += [(a, rel) for a in nodes.addresses if re.search(rb"(?<![\d.])" + re.escape(a.encode()) + rb"(?![\d.])", data)]
    assert leaks == []
    text = (run_dir / "results" / "cluster_autoscaling.json").read_text()
    assert re.search(r"node-[0-9a-f]{8}", text), "pseudonyms expected where node names were"
    print(f"\n[measure] {len(nodes.names)} node names (incl. autoscaled) and sandbox IPs: none left in {len(files)} files")
