"""The image builder without a cluster: deterministic layers, the OCI layout containerd imports, the cache."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from aiconf.sandbox import images

needs_busybox = pytest.mark.skipif(not shutil.which("busybox"), reason="busybox-static is not installed")
needs_gcc = pytest.mark.skipif(not shutil.which("gcc"), reason="gcc is not installed")


def _layer_bytes(fs: images.Rootfs) -> bytes:
    buf = io.BytesIO()
    fs.write_tar(buf)
    return buf.getvalue()


def _sample(tmp_path: Path) -> images.Rootfs:
    """A layer from a small tree under ``tmp_path/src`` (made on first use, then taken as it is)."""
    src = tmp_path / "src"
    if not src.exists():
        (src / "sub").mkdir(parents=True)
        (src / "sub" / "a.txt").write_text("hello\n")
        (src / "run.sh").write_text("#!/bin/sh\necho hi\n")
        (src / "run.sh").chmod(0o755)
        os.symlink("sub/a.txt", src / "link")
    fs = images.Rootfs()
    fs.add_tree(src, "opt/app")
    fs.file("etc/motd", data="inline\n")
    fs.dir("tmp", 0o1777)
    return fs


def test_layer_tar_is_deterministic_and_normalised(tmp_path):
    fs = _sample(tmp_path)
    first = _layer_bytes(fs)
    os.utime(tmp_path / "src" / "sub" / "a.txt", (12345, 12345))  # mtimes never reach the layer
    assert _layer_bytes(_sample(tmp_path)) == first
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        names = tar.getnames()
    assert names.index("opt") < names.index("opt/app") < names.index("opt/app/sub") < names.index("opt/app/sub/a.txt")
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 for m in members.values())
    assert members["opt/app/link"].issym() and members["opt/app/link"].linkname == "sub/a.txt"
    assert stat.S_IMODE(members["opt/app/run.sh"].mode) == 0o755
    assert stat.S_IMODE(members["tmp"].mode) == 0o1777
    assert members["etc/motd"].size == len("inline\n")


def test_input_digest_changes_with_content_mode_and_links(tmp_path):
    base = _sample(tmp_path).digest_inputs()
    assert _sample(tmp_path).digest_inputs() == base
    (tmp_path / "src" / "sub" / "a.txt").write_text("changed\n")
    changed = _sample(tmp_path).digest_inputs()
    assert changed != base
    (tmp_path / "src" / "run.sh").chmod(0o644)
    assert _sample(tmp_path).digest_inputs() != changed


def test_add_host_path_recreates_the_symlink_chain(tmp_path):
    real = tmp_path / "usr" / "lib" / "libx.so.1.2"
    real.parent.mkdir(parents=True)
    real.write_bytes(b"\x7fELF")
    os.symlink("libx.so.1.2", real.parent / "libx.so.1")
    os.symlink("usr/lib", tmp_path / "lib")
    fs = images.Rootfs()
    fs.add_host_path(tmp_path / "lib" / "libx.so.1")
    rel = str(tmp_path)[1:]
    assert fs.entries[f"{rel}/lib"].kind == "symlink" and fs.entries[f"{rel}/lib"].target == "usr/lib"
    assert fs.entries[f"{rel}/usr/lib/libx.so.1"].target == "libx.so.1.2"
    assert fs.entries[f"{rel}/usr/lib/libx.so.1.2"].kind == "file"


def test_oci_archive_has_the_layout_containerd_imports(tmp_path):
    layer = tmp_path / "layer.tar"
    with open(layer, "wb") as f:
        _sample(tmp_path).write_tar(f)
    out = tmp_path / "img.tar"
    cfg = images.ImageConfig(entrypoint=("/opt/app/run.sh",), labels=(("k", "v"),))
    digest = images.write_oci_archive(out, "localhost/test:1", [layer], cfg)
    with tarfile.open(out) as tar:
        names = tar.getnames()
        assert json.load(tar.extractfile("oci-layout")) == {"imageLayoutVersion": "1.0.0"}
        for name in names:
            if name.startswith("blobs/sha256/"):  # every blob is named by its digest
                assert hashlib.sha256(tar.extractfile(name).read()).hexdigest() == name.rsplit("/", 1)[1]
    doc = images.read_oci_archive(out)
    desc = doc["index"]["manifests"][0]
    assert desc["digest"] == digest and desc["platform"] == {"architecture": "amd64", "os": "linux"}
    assert desc["annotations"]["io.containerd.image.name"] == "localhost/test:1" == doc["ref"]
    assert doc["manifest"]["layers"][0]["mediaType"] == "application/vnd.oci.image.layer.v1.tar"
    layer_digest = "sha256:" + hashlib.sha256(layer.read_bytes()).hexdigest()
    assert doc["config"]["rootfs"]["diff_ids"] == [layer_digest] == [doc["manifest"]["layers"][0]["digest"]]
    assert doc["config"]["config"]["Entrypoint"] == ["/opt/app/run.sh"]
    assert "opt/app/run.sh" in doc["layers"][0]
    # same inputs, same bytes
    again = tmp_path / "again.tar"
    assert images.write_oci_archive(again, "localhost/test:1", [layer], cfg) == digest
    assert again.read_bytes() == out.read_bytes()


@needs_busybox
def test_utility_image_is_busybox_with_applets_and_the_nvidia_smi_fallback(tmp_path):
    built = images.build("utility", tmp_path)
    doc = images.read_oci_archive(built.path)
    names = set(doc["layers"][0])
    assert {"usr/bin/busybox", "bin", "usr/bin/nc", "bin/sh" if "bin/sh" in names else "usr/bin/sh"} <= names
    assert "usr/bin/nvidia-smi" in names and "etc/passwd" in names
    assert doc["ref"] == images.UTILITY
    again = images.build("utility", tmp_path)
    assert again.cached and again.path == built.path and again.digest == built.digest


@needs_gcc
def test_pause_image_runs_a_static_pause(tmp_path):
    built = images.build("pause", tmp_path)
    doc = images.read_oci_archive(built.path)
    assert doc["layers"][0] == ["pause"] and doc["config"]["config"]["Entrypoint"] == ["/pause"]
    with tarfile.open(built.path) as tar:
        layer_name = "blobs/sha256/" + doc["manifest"]["layers"][0]["digest"].split(":")[1]
        with tarfile.open(fileobj=tar.extractfile(layer_name)) as lt:
            binary = lt.extractfile("pause").read()
    exe = tmp_path / "pause"
    exe.write_bytes(binary)
    exe.chmod(0o755)
    assert b"/lib64/ld-linux" not in binary[:4096]  # static: runs in an empty rootfs
    assert subprocess.run([str(exe), "-v"], capture_output=True, text=True, timeout=10).stdout.startswith("pause")
    assert images.build("pause", tmp_path).cached


@needs_busybox
def test_python_image_carries_the_interpreter_its_libraries_and_the_workloads(tmp_path):
    if not images.PYTHON_BIN.is_file():
        pytest.skip("Debian's python3.11 is not installed")
    built = images.build("python", tmp_path)
    doc = images.read_oci_archive(built.path)
    base, app = (set(x) for x in doc["layers"])
    assert "usr/bin/python3.11" in base and "usr/lib/python3.11/os.py" in base
    assert not any(n.startswith("usr/lib/python3.11/test/") for n in base)
    assert any(n.endswith("ld-linux-x86-64.so.2") for n in base) and any("libssl.so" in n for n in base)
    assert f"{images.DIST_PACKAGES}/aiconf/workloads/dcgm_sim.py" in app
    assert f"{images.DIST_PACKAGES}/aiconf/workloads/fake_nvidia_smi.py" in app
    assert images.SMI_IMPL in app and "usr/bin/nvidia-smi" in app
    assert "PYTHONUNBUFFERED=1" in doc["config"]["config"]["Env"]
    assert images.build("python", tmp_path).cached


def test_unknown_image_is_refused(tmp_path):
    from aiconf.errors import SandboxError

    with pytest.raises(SandboxError, match="unknown sandbox image"):
        images.build("nope", tmp_path)


def test_cache_keeps_only_the_newest_archives_per_image(tmp_path):
    layers = tmp_path / "layers"
    layers.mkdir()
    for i in range(5):
        names = (f"python-k{i}.tar", f"layers/python-base-k{i}.tar", f"layers/python-workloads-k{i}.tar")
        for p in (tmp_path / n for n in names):
            p.write_text("x")
            os.utime(p, (1000 + i, 1000 + i))
    images._prune(tmp_path / "python-k4.tar")
    images._prune(layers / "python-base-k4.tar")
    assert sorted(p.name for p in tmp_path.glob("*.tar")) == ["python-k2.tar", "python-k3.tar", "python-k4.tar"]
    assert sorted(p.name for p in layers.glob("python-base-*.tar")) == [f"python-base-k{i}.tar" for i in (2, 3, 4)]
    assert len(list(layers.glob("python-workloads-*.tar"))) == 5  # another layer's files are not its siblings
