"""aiconf.workloads.device_probe on a machine without GPUs: the document's shape and the vendor-tolerant paths."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from aiconf.accel import isolation
from aiconf.workloads import device_probe

PROBE = Path(device_probe.__file__)


def run_probe(tmp_path: Path, *extra: str, env: dict[str, str] | None = None) -> dict:
    out = tmp_path / "probe.json"
    subprocess.run([sys.executable, str(PROBE), "--out", str(out), *extra], check=True, timeout=60,
                   env={**os.environ, **(env or {})})
    return json.loads(out.read_text())


def test_probe_runs_as_a_plain_script_and_finds_nothing_without_gpus(tmp_path):
    doc = run_probe(tmp_path, "--label", "unit", "--device-glob", str(tmp_path / "nvidia*"), "--smi", "no-such-smi -L",
                    env={"NVIDIA_VISIBLE_DEVICES": "all"})
    assert doc["schema"] == device_probe.SCHEMA and doc["label"] == "unit"
    assert doc["env"]["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert doc["gpu_nodes"] == [] and doc["uuids"] == []
    assert doc["smi"]["found"] is False and doc["smi"]["rc"] is None
    probe = isolation.load_probe(doc)
    assert probe.env_all and isolation.judge_no_request([probe]).verdict == "PASS"


def test_a_fake_vendor_listing_command_is_parsed_for_uuids(tmp_path):
    smi = tmp_path / "fake-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H200 (UUID: GPU-0a1b2c3d-1111-2222-3333-444455556666)'\n")
    smi.chmod(0o755)
    doc = run_probe(tmp_path, "--smi", f"{smi} -L", "--device-glob", str(tmp_path / "none*"), "--no-nvml", "--no-cuda")
    assert doc["smi"]["rc"] == 0 and doc["uuids"] == ["GPU-0a1b2c3d-1111-2222-3333-444455556666"]
    assert doc["nvml"] is None and doc["cuda"] is None


def test_a_failing_listing_command_yields_no_uuids(tmp_path):
    smi = tmp_path / "fail-smi"
    smi.write_text("#!/bin/sh\necho 'GPU-0a1b2c3d-1111-2222-3333-444455556666'\necho 'no driver' >&2\nexit 9\n")
    smi.chmod(0o755)
    doc = run_probe(tmp_path, "--smi", str(smi), "--device-glob", str(tmp_path / "none*"), "--no-nvml", "--no-cuda")
    assert doc["smi"]["rc"] == 9 and doc["smi"]["uuids"] == [] and "no driver" in doc["smi"]["stderr"]


def test_device_globs_list_char_devices_with_numbers(tmp_path):
    nodes = device_probe.list_nodes(["/dev/nul*", str(tmp_path / "x*")])
    assert nodes[0]["path"] == "/dev/null" and nodes[0]["type"] == "char" and (nodes[0]["major"], nodes[0]["minor"]) == (1, 3)


def test_try_open_of_an_absent_node_without_numbers_is_enoent(tmp_path):
    att = device_probe.try_open(str(tmp_path / "nvidia7"), None, can_mknod=False, created=[])
    assert att["exists"] is False and att["open"]["errno"] == "ENOENT" and att["mknod"] is None


def test_try_open_without_cap_mknod_records_the_refusal(tmp_path):
    att = device_probe.try_open(str(tmp_path / "nvidia7"), (195, 7), can_mknod=False, created=[])
    assert att["mknod"] == {"attempted": False, "ok": False, "errno": None, "node": None, "error": "no CAP_MKNOD"}


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
def test_try_open_creates_the_node_with_mknod(tmp_path):
    created: list[str] = []
    # 1:3 is /dev/null: creating it proves the mknod path; opening it succeeds outside a devices cgroup
    att = device_probe.try_open(str(tmp_path / "nvidia9"), (1, 3), can_mknod=True, created=created)
    assert att["mknod"]["ok"] and stat.S_ISCHR(os.stat(created[0]).st_mode) and att["open"]["ok"]


def test_parse_try_open():
    assert device_probe.parse_try_open("/dev/nvidia1=195:1") == ("/dev/nvidia1", (195, 1))
    assert device_probe.parse_try_open("/dev/nvidia1") == ("/dev/nvidia1", None)


def test_capabilities_are_read_from_proc():
    caps = device_probe.capabilities()
    assert not caps or ("cap_mknod" in caps and len(caps["effective_hex"]) == 16)
