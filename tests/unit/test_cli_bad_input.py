"""Bad input: one clear line on stderr naming what is wrong, exit code 2, no traceback (README "Bad input")."""

import subprocess
import sys
from pathlib import Path

import pytest

KUBECONFIG_CLOSED_PORT = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: not-a-real-token}}]
contexts: [{name: ctx, context: {cluster: c, user: u}}]
current-context: ctx
"""


def aiconf(*args, **kw):
    return subprocess.run([sys.executable, "-m", "aiconf.cli", *args], capture_output=True, text=True, timeout=60, **kw)


@pytest.fixture
def closed_port_kubeconfig(tmp_path):
    p = tmp_path / "kubeconfig"
    p.write_text(KUBECONFIG_CLOSED_PORT)
    return p


@pytest.fixture
def unreadable(tmp_path):
    p = tmp_path / "secret-kubeconfig"
    p.write_text(KUBECONFIG_CLOSED_PORT)
    p.chmod(0)
    return p


CASES = {
    "missing kubeconfig": (["plan", "--kubeconfig", "/nonexistent/kubeconfig"], "kubeconfig /nonexistent/kubeconfig does not exist"),
    "garbage kubeconfig": (["plan", "--kubeconfig", "{garbage}"], "kubeconfig"),
    "unknown context": (["plan", "--kubeconfig", "{closed}", "--context", "nope"], "nope"),
    "unreachable server": (["plan", "--kubeconfig", "{closed}", "--set", "api_retries=0"], "unreachable"),
    "unknown profile": (["run", "--profile", "nosuch"], "unknown profile 'nosuch'"),
    "unknown parameter": (["run", "--set", "gang_sizes=3"], "unknown parameter 'gang_sizes'"),
    "wrong type": (["run", "--set", "gang_size=three"], "must be an integer"),
    "unknown requirement": (["run", "--kubeconfig", "{closed}", "--set", "api_retries=0", "--checklist-version", "1.36", "--only", "gpu_magic"], "unknown requirement id 'gpu_magic'"),
    "unsupported version": (["list", "--checklist-version", "1.30"], "unsupported checklist version '1.30'"),
    "cleanup without scope": (["cleanup"], "--run-id ID or --all"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_and_exit_2(case, closed_port_kubeconfig, tmp_path):
    args, message = CASES[case]
    garbage = tmp_path / "garbage"
    garbage.write_text("::: not yaml [")
    args = [a.format(closed=closed_port_kubeconfig, garbage=garbage) for a in args]
    proc = aiconf(*args)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert message in lines[0]
    assert "Traceback" not in proc.stderr


def test_debug_shows_the_traceback():
    proc = aiconf("--debug", "run", "--profile", "nosuch")
    assert proc.returncode == 2 and "Traceback" in proc.stderr


def test_unreadable_kubeconfig(unreadable):
    import os
    if os.geteuid() == 0:
        pytest.skip("root reads files regardless of their mode")
    proc = aiconf("plan", "--kubeconfig", str(unreadable))
    assert proc.returncode == 2 and "not readable" in proc.stderr
