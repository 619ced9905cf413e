"""The ``redact`` parameter: node names, IP addresses and cloud account ids are replaced by stable pseudonyms in
evidence, results and everything the report is built from (issue 9, "secrets"). A full run on the sandbox with
``redact=true`` is in tests/integration/test_reliability_secrets.py.
"""

from __future__ import annotations

import json

import pytest

from aiconf import registry
from aiconf.evidence import Redactor
from aiconf.execute import run_check
from aiconf.model import RequirementResult
from aiconf.params import load_parameters

KEY = b"0123456789abcdef"


@pytest.mark.parametrize(
    "text, gone, kept",
    [
        ("nodeName: gpu-node-7", ["gpu-node-7"], ["nodeName: node-"]),
        ('"nodeName": "ip-10-0-3-17.ec2.internal"', ["ip-10-0-3-17", "10-0-3-17"], ['"nodeName": "node-']),
        ("Warning FailedScheduling Node/worker-a1: taint", ["worker-a1"], ["Node/node-"]),
        ("podIP: 10.99.3.4\nhostIP: 192.168.1.20", ["10.99.3.4", "192.168.1.20"], ["podIP: ip-"]),
        ("webhook https://127.0.0.1:8443/validate", ["127.0.0.1"], ["https://ip-", ":8443/validate"]),
        ("fd00:10:96::a and 2001:db8:0:0:1:0:0:1", ["fd00:10:96::a", "2001:db8"], []),
        ("role arn:aws:iam::123456789012:role/nodes", ["123456789012"], ["arn:aws:iam::account-", ":role/nodes"]),
        ("image: 123456789012.dkr.ecr.us-east-1.amazonaws.com/app:1", ["123456789012"], [".dkr.ecr.us-east-1"]),
        ("providerID: gce://my-gpu-project/us-central1-a/gke-n1", ["my-gpu-project"], ["gce://account-"]),
        ("image: europe-docker.pkg.dev/acme-ml-prod/serving/app", ["acme-ml-prod"], ["pkg.dev/account-"]),
        ("azure:///subscriptions/0b1f6471-1bf0-4dda-aec3-cb9272f09590/resourceGroups/rg",
         ["0b1f6471-1bf0-4dda-aec3-cb9272f09590"], ["/subscriptions/account-", "/resourceGroups/rg"]),
        ('accountId: "210987654321"', ["210987654321"], []),
    ],
)
def test_sensitive_values_are_replaced(text, gone, kept):
    r = Redactor(key=KEY)
    r.learn(text)
    out = r.text(text)
    for g in gone:
        assert g not in out, out
    for k in kept:
        assert k in out, out


@pytest.mark.parametrize(
    "text",
    [
        "Kubernetes v1.36.3, Kueue v0.19.2, python 3.11.7",
        "2026-11-28T14:13:13.123+00:00 took 0:01:05",
        "x = a[::2]; std::vector; ::1 is loopback",
        "mac 52:54:00:12:34:56",
        "cpu 250m memory 512Mi nvidia.com/gpu: 8",
        "run 20261128-141313-f18d45 gang_scheduling",
    ],
)
def test_ordinary_text_is_left_alone(text):
    r = Redactor(key=KEY)
    r.learn(text)
    assert r.text(text) == text


def test_pseudonyms_are_stable_within_a_run_and_differ_between_runs():
    a1, a2, b = Redactor(["gpu-node-7"], key=KEY), Redactor(["gpu-node-7"], key=KEY), Redactor(["gpu-node-7"], key=b"x")
    line = "pod on gpu-node-7 (10.0.0.5)"
    assert a1.text(line) == a2.text(line) != b.text(line)
    assert a1.text("gpu-node-8") == "gpu-node-8"  # not a node name it knows (nor one it learned)


def test_a_name_longer_than_a_known_one_is_not_half_replaced():
    r = Redactor(["gpu-1"], key=KEY)
    assert r.text("gpu-10 and gpu-1.") == f"gpu-10 and {r.pseudonym('node', 'gpu-1')}."


def test_files_learn_names_from_each_other_and_stay_valid_json(tmp_path):
    """A node that existed only during the check (autoscaling) is named in a CSV column of one file and in free text
    of another: both are redacted; JSON and notebooks stay parseable."""
    (tmp_path / "nodes.csv").write_text("t_s,node,pods\n0.5,kwok-gpu-burst-x1,2\n")
    (tmp_path / "result.json").write_text(json.dumps({"summary": "1 node added (kwok-gpu-burst-x1) at 10.0.0.9"}))
    nb = {"cells": [{"outputs": [{"text": "[cluster_autoscaling] scaled_up: PASS - kwok-gpu-burst-x1\n"},
                                 {"data": {"image/png": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"}}]}]}
    (tmp_path / "nb.ipynb").write_text(json.dumps(nb))
    (tmp_path / "chart.png").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe binary")
    r = Redactor(key=KEY)
    changed = r.files(sorted(tmp_path.iterdir()))
    assert {p.name for p in changed} == {"nodes.csv", "result.json", "nb.ipynb"}
    for p in changed:
        assert "kwok-gpu-burst-x1" not in p.read_text()
        assert "10.0.0.9" not in p.read_text()
    assert json.loads((tmp_path / "nb.ipynb").read_text())["cells"][0]["outputs"][1] == nb["cells"][0]["outputs"][1]
    json.loads((tmp_path / "result.json").read_text())


class FakeKube:
    server = "https://10.20.30.40:6443"
    waiting_for = ""

    def list(self, api_version, kind, namespace=None, **kw):
        assert kind == "Node"
        return [{"metadata": {"name": "gpu-node-7"}}, {"metadata": {"name": "cpu-node-1"}}]


def test_run_check_redacts_its_result_and_evidence(monkeypatch, tmp_path):
    def check(ctx):
        ctx.record("a", True, "2 pods on gpu-node-7 (10.99.0.12)", observed="hostIP 192.168.7.7")
        ctx.save_evidence("placements.csv", "t_s,node,pod\n1.0,gpu-node-7,a\n2.0,burst-node-9,b\n")
        ctx.save_evidence("pods.yaml", {"spec": {"nodeName": "burst-node-9"}, "status": {"podIP": "10.99.0.13"}})
        ctx.note("the new node burst-node-9 went away; account arn:aws:iam::123456789012:root")

    monkeypatch.setitem(registry._REGISTRY, "gang_scheduling", registry.CheckSpec("gang_scheduling", check, ("a",)))
    params = load_parameters(None, {"checklist_version": "1.36", "redact": True})
    result = run_check("gang_scheduling", params, run_id="20260101-000000-abcdef", run_dir=tmp_path, kube=FakeKube())
    written = [tmp_path / "results" / "gang_scheduling.json", *(tmp_path / "evidence").rglob("*.*")]
    everything = "\n".join(p.read_text() for p in written)
    for secret in ("gpu-node-7", "burst-node-9", "10.99.0.12", "10.99.0.13", "192.168.7.7", "123456789012"):
        assert secret not in everything, secret
        assert secret not in json.dumps(result.to_dict()), secret  # what the notebook shows is redacted too
    assert "node-" in result.subchecks[0].summary
    assert RequirementResult.read(written[0]).subchecks[0].summary == result.subchecks[0].summary
    assert result.run_dir == tmp_path


def test_without_redact_nothing_is_replaced(monkeypatch, tmp_path):
    def check(ctx):
        ctx.record("a", True, "2 pods on gpu-node-7 (10.99.0.12)")

    monkeypatch.setitem(registry._REGISTRY, "gang_scheduling", registry.CheckSpec("gang_scheduling", check, ("a",)))
    result = run_check("gang_scheduling", load_parameters(None, {"checklist_version": "1.36"}),
                       run_id="20260101-000000-abcdef", run_dir=tmp_path, kube=FakeKube())
    assert result.subchecks[0].summary == "2 pods on gpu-node-7 (10.99.0.12)"


def test_json_stays_valid_and_literals_are_never_taken_for_node_names(tmp_path):
    """A full sandbox run once turned `"required": true` into `"required": node-…` (an unquoted value learned as a
    node name): only string values change, and a learned name must look like a host name."""
    doc = {"node": "gpu-node-7", "real_node": True, "required": True, "gpus_per_node": 8, "node_name": None,
           "nodes": ["gpu-node-7", "pending"], "summary": "node: pending on gpu-node-7"}
    path = tmp_path / "result.json"
    path.write_text(json.dumps(doc, indent=2))
    Redactor(key=KEY).files([path])
    out = json.loads(path.read_text())
    assert out["real_node"] is True and out["required"] is True and out["gpus_per_node"] == 8
    assert out["node_name"] is None and out["nodes"][1] == "pending"
    assert out["node"].startswith("node-") and "gpu-node-7" not in path.read_text()


def test_nodes_named_only_by_events_are_learned_and_counts_never_are():
    """An autoscaled node is gone from the Node list when the check ends; the scheduler's event still names it."""
    events = ("2026-11-28T14:14:28Z Normal Scheduled Pod/gpu-burst-1: Successfully assigned ns-a/gpu-burst-1 to "
              "kwok-aiconf-gpu-r7qlv-x\n2026-11-28T14:15:00Z Normal Ready Node/kwok-aiconf-gpu-r7qlv-x: ready\n")
    counts = "t_s,nodes,new_nodes,pending\n0.5,128,3,2\n"
    r = Redactor(key=KEY)
    r.learn(events)
    r.learn(counts)
    assert r.nodes == {"kwok-aiconf-gpu-r7qlv-x"}
    assert "kwok-aiconf-gpu-r7qlv-x" not in r.text(events)
    assert r.text(counts) == counts
