"""Container images without a registry: OCI image-layout tarballs built from directories, with the stdlib only.

The real node (:mod:`aiconf.sandbox.realnode`) runs pods from three local images, imported into its containerd
with ``ctr -n k8s.io images import`` (pods use ``imagePullPolicy: Never``; nothing is ever pulled):

- ``localhost/pause:aiconf`` (:data:`PAUSE`): a static C ``pause`` (``aiconf/sandbox/images/pause.c``, built with
  ``gcc -static``), the infra container of every pod.
- ``localhost/aiconf-utility:0.1`` (:data:`UTILITY`): busybox-static from Debian (``sh``, ``sleep``, ``nc``,
  ``httpd``...). Its ``wget`` segfaults in a bare rootfs (static glibc NSS, local-cluster.md §1.5): use ``nc``.
- ``localhost/aiconf-python:0.1`` (:data:`PYTHON`): Debian's python3.11 (the interpreter, the standard library and
  exactly the shared libraries ``ldd`` names, copied from the machine's installed Debian packages, so the build is
  offline) plus busybox, plus a second layer with the toolkit's workload modules baked in: ``aiconf/__init__.py``
  and ``aiconf/workloads/*.py`` under ``/usr/lib/python3/dist-packages`` (importable as ``python3 -m
  aiconf.workloads.<name>``, no PYTHONPATH), and the fake ``nvidia-smi`` (``/usr/bin/nvidia-smi``, see
  :mod:`aiconf.workloads.fake_nvidia_smi`). Baked in rather than mounted so check manifests need no hostPath and
  look the same on a real cluster with public images.

Layers are uncompressed tars written deterministically (sorted, uid/gid 0, mtime 0), so the same inputs give the
same digests. Built archives are cached under ``~/.cache/aiconf/images/`` (``$AICONF_CACHE/images``) in files
named by a key over everything that goes in (recipe version, file contents, modes, link targets): a second build
of unchanged inputs hashes the inputs and reuses the file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import re
import shutil
import stat
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from aiconf.errors import SandboxError
from aiconf.sandbox import gobuild

#: Bumped when a recipe changes in a way file contents do not show (layout, config, env).
RECIPE_VERSION = "1"

PAUSE = "localhost/pause:aiconf"
UTILITY = "localhost/aiconf-utility:0.1"
PYTHON = "localhost/aiconf-python:0.1"

#: Where the recipe inputs that ship with the toolkit live (pause.c, the nvidia-smi wrapper).
RECIPES = Path(__file__).parent / "images"
#: The toolkit package, whose ``workloads`` go into the Python image.
AICONF_PKG = Path(__file__).resolve().parent.parent

#: Python image: the interpreter and what of its standard library a workload server can need.
PYTHON_BIN = Path("/usr/bin/python3.11")
PYTHON_LIB = Path("/usr/lib/python3.11")
_PYTHON_LIB_SKIP = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "pydoc_data",
                    "config-3.11-x86_64-linux-gnu", "site-packages", "dist-packages", "venv"}
#: Inside the image, where Debian's python looks for packages (no PYTHONPATH needed).
DIST_PACKAGES = "usr/lib/python3/dist-packages"
#: Where the fake nvidia-smi's implementation sits in images (the device plugin mounts the same path).
SMI_IMPL = "usr/local/share/aiconf/fake_nvidia_smi.py"

_MERGED_USR = {"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib", "lib64": "usr/lib64"}
_ETC_PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
_ETC_GROUP = "root:x:0:\nnogroup:x:65534:\n"


def cache_dir() -> Path:
    return gobuild.CACHE_ROOT / "images"


# --- a rootfs as data ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Entry:
    """One thing in a layer: a directory, a regular file (host ``source`` or inline ``data``) or a symlink."""

    kind: str  # "dir" | "file" | "symlink"
    mode: int = 0o755
    source: Path | None = None
    data: bytes | None = None
    target: str | None = None


class Rootfs:
    """A layer's content, keyed by image path (relative, no leading slash). Parents are added as needed."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}

    def _parents(self, path: str) -> None:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            p = "/".join(parts[:i])
            if p and p not in self.entries:
                self.entries[p] = Entry("dir", 0o755)

    def dir(self, path: str, mode: int = 0o755) -> None:
        path = path.strip("/")
        self._parents(path)
        self.entries[path] = Entry("dir", mode)

    def file(self, path: str, *, source: Path | None = None, data: bytes | str | None = None,
             mode: int | None = None) -> None:
        path = path.strip("/")
        if isinstance(data, str):
            data = data.encode()
        if source is not None and mode is None:
            mode = stat.S_IMODE(source.stat().st_mode)
        self._parents(path)
        self.entries[path] = Entry("file", 0o644 if mode is None else mode, source=source, data=data)

    def symlink(self, path: str, target: str) -> None:
        path = path.strip("/")
        self._parents(path)
        self.entries[path] = Entry("symlink", 0o777, target=target)

    def add_host_path(self, host: Path) -> None:
        """Copy a host file into the same place, recreating every symlink on the way (so ``/lib64/ld-linux...``
        on a merged-/usr Debian becomes the same chain of links and one real file)."""
        seen = 0
        cur = Path("/")
        parts = list(host.parts[1:])
        while parts:
            seen += 1
            if seen > 64:
                raise SandboxError(f"image: too many symlinks resolving {host}")
            cur = cur / parts.pop(0)
            rel = str(cur)[1:]
            if cur.is_symlink():
                target = os.readlink(cur)
                if rel not in self.entries:
                    self.symlink(rel, target)
                resolved = (cur.parent / target) if not target.startswith("/") else Path(target)
                parts = list(Path(os.path.normpath(resolved)).parts[1:]) + parts
                cur = Path("/")
                continue
            if not parts:
                if cur.is_dir():
                    self.dir(rel)
                else:
                    self.file(rel, source=cur)

    def add_tree(self, host_dir: Path, image_dir: str, skip: Callable[[Path], bool] = lambda p: False) -> None:
        """Copy a host directory tree (files, dirs, symlinks as they are) to ``image_dir``."""
        for root, dirs, files in os.walk(host_dir):
            r = Path(root)
            dirs[:] = sorted(d for d in dirs if not skip(r / d))
            rel_root = image_dir.strip("/") + ("/" + str(r.relative_to(host_dir)) if r != host_dir else "")
            rel_root = rel_root.rstrip("/.")
            self.dir(rel_root, stat.S_IMODE(r.stat().st_mode))
            for name in sorted(files) + [d for d in dirs if (r / d).is_symlink()]:
                p = r / name
                if skip(p):
                    continue
                if p.is_symlink():
                    self.symlink(f"{rel_root}/{name}", os.readlink(p))
                elif p.is_file():
                    self.file(f"{rel_root}/{name}", source=p)

    def digest_inputs(self) -> str:
        """sha256 over every entry (path, kind, mode, content or link target): the cache key of this layer."""
        h = hashlib.sha256()
        for path in sorted(self.entries):
            e = self.entries[path]
            h.update(f"{path}\0{e.kind}\0{e.mode:o}\0{e.target or ''}\0".encode())
            if e.kind == "file":
                if e.data is not None:
                    h.update(hashlib.sha256(e.data).digest())
                else:
                    with open(e.source, "rb") as f:
                        h.update(hashlib.file_digest(f, "sha256").digest())
        return h.hexdigest()

    def write_tar(self, out) -> None:
        """Write the layer as a deterministic tar to the binary file object ``out``."""
        with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
            for path in sorted(self.entries, key=lambda p: p.split("/")):
                e = self.entries[path]
                ti = tarfile.TarInfo(path)
                ti.mtime = 0
                ti.uid = ti.gid = 0
                ti.uname = ti.gname = ""
                ti.mode = e.mode
                if e.kind == "dir":
                    ti.type = tarfile.DIRTYPE
                    tar.addfile(ti)
                elif e.kind == "symlink":
                    ti.type = tarfile.SYMTYPE
                    ti.linkname = e.target or ""
                    tar.addfile(ti)
                elif e.data is not None:
                    ti.size = len(e.data)
                    tar.addfile(ti, io.BytesIO(e.data))
                else:
                    ti.size = e.source.stat().st_size
                    with open(e.source, "rb") as f:
                        tar.addfile(ti, f)


# --- OCI image layout --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ImageConfig:
    """The runtime part of an image config (what ``docker inspect`` shows under Config)."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)
    workdir: str = "/"
    labels: tuple[tuple[str, str], ...] = ()


def _sha256_file(path: Path) -> tuple[str, int]:
    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    return digest, path.stat().st_size


def write_oci_archive(out: Path, ref: str, layers: list[Path], config: ImageConfig) -> str:
    """Write an OCI image-layout tarball holding one image (``ref``) made of the uncompressed layer tars
    ``layers`` (bottom first); returns the manifest digest (``sha256:...``).

    The index names the image twice, ``org.opencontainers.image.ref.name`` (OCI) and ``io.containerd.image.name``
    (what ``ctr images import`` uses as the full reference).
    """
    layer_descs, diff_ids = [], []
    for layer in layers:
        digest, size = _sha256_file(layer)
        diff_ids.append(f"sha256:{digest}")  # uncompressed: the diff id is the blob digest
        layer_descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar",
                            "digest": f"sha256:{digest}", "size": size})
    cfg_doc = {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {
            **({"Entrypoint": list(config.entrypoint)} if config.entrypoint else {}),
            **({"Cmd": list(config.cmd)} if config.cmd else {}),
            "Env": list(config.env),
            "WorkingDir": config.workdir,
            **({"Labels": dict(config.labels)} if config.labels else {}),
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "aiconf.sandbox.images"} for _ in layers],
    }
    cfg = json.dumps(cfg_doc, sort_keys=True, separators=(",", ":")).encode()
    cfg_digest = hashlib.sha256(cfg).hexdigest()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": f"sha256:{cfg_digest}",
                   "size": len(cfg)},
        "layers": layer_descs,
    }, sort_keys=True, separators=(",", ":")).encode()
    man_digest = hashlib.sha256(manifest).hexdigest()
    index = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": f"sha256:{man_digest}",
            "size": len(manifest),
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {"org.opencontainers.image.ref.name": ref, "io.containerd.image.name": ref},
        }],
    }, sort_keys=True, separators=(",", ":")).encode()

    def add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
        ti = tarfile.TarInfo(name)
        ti.size, ti.mtime, ti.mode = len(data), 0, 0o644
        tar.addfile(ti, io.BytesIO(data))

    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    with tarfile.open(tmp, mode="w", format=tarfile.GNU_FORMAT) as tar:
        add_bytes(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add_bytes(tar, "index.json", index)
        done = set()
        for layer, desc in zip(layers, layer_descs, strict=True):
            name = "blobs/sha256/" + desc["digest"].split(":", 1)[1]
            if name in done:
                continue
            done.add(name)
            ti = tarfile.TarInfo(name)
            ti.size, ti.mtime, ti.mode = desc["size"], 0, 0o644
            with open(layer, "rb") as f:
                tar.addfile(ti, f)
        add_bytes(tar, f"blobs/sha256/{cfg_digest}", cfg)
        add_bytes(tar, f"blobs/sha256/{man_digest}", manifest)
    tmp.replace(out)
    return f"sha256:{man_digest}"


def read_oci_archive(path: Path) -> dict:
    """The index, manifest, config and layer member lists of an archive written by :func:`write_oci_archive`
    (for tests and ``status``)."""
    with tarfile.open(path) as tar:
        index = json.load(tar.extractfile("index.json"))
        desc = index["manifests"][0]
        manifest = json.load(tar.extractfile("blobs/sha256/" + desc["digest"].split(":", 1)[1]))
        config = json.load(tar.extractfile("blobs/sha256/" + manifest["config"]["digest"].split(":", 1)[1]))
        layers = []
        for ld in manifest["layers"]:
            with tarfile.open(fileobj=tar.extractfile("blobs/sha256/" + ld["digest"].split(":", 1)[1])) as lt:
                layers.append(lt.getnames())
    return {"index": index, "manifest": manifest, "config": config, "layers": layers,
            "ref": desc["annotations"]["io.containerd.image.name"]}


# --- recipes ---------------------------------------------------------------------------------------------------


def _base_files(fs: Rootfs, merged_usr: bool = True) -> None:
    if merged_usr:
        for link, target in _MERGED_USR.items():
            fs.dir(target)
            fs.symlink(link, target)
    fs.file("etc/passwd", data=_ETC_PASSWD)
    fs.file("etc/group", data=_ETC_GROUP)
    fs.dir("tmp", 0o1777)
    fs.dir("root", 0o700)
    for d in ("proc", "sys", "dev", "run", "var/tmp"):
        fs.dir(d, 0o1777 if d == "var/tmp" else 0o755)


def _busybox(fs: Rootfs) -> None:
    """busybox-static at /usr/bin/busybox and a link per applet (``busybox --list-full``)."""
    bb = shutil.which("busybox") or "/bin/busybox"
    if not Path(bb).is_file():
        raise SandboxError("busybox is missing: install the Debian package busybox-static (make setup does)")
    # Debian's busybox-static is /bin/busybox; a dynamically linked one names its loader in the ELF .interp section.
    if b"/lib64/ld-linux" in Path(bb).read_bytes()[:4096]:
        raise SandboxError(f"{bb} is dynamically linked; the images need busybox-static")
    fs.file("usr/bin/busybox", source=Path(bb).resolve(), mode=0o755)
    out = subprocess.run([bb, "--list-full"], capture_output=True, text=True, timeout=10, check=True).stdout
    for applet in sorted(set(out.split())):
        path = applet.strip("/")
        for link, target in _MERGED_USR.items():
            if path.startswith(link + "/"):
                path = target + path[len(link):]
        if path == "usr/bin/busybox" or path in fs.entries:
            continue
        fs.symlink(path, "/usr/bin/busybox")


def compile_pause(out: Path) -> None:
    """``gcc -static -Os`` the pause program into ``out`` (stripped)."""
    gcc = shutil.which("gcc")
    if not gcc:
        raise SandboxError("gcc is missing: the pause image is a static C binary (install gcc and libc6-dev)")
    src = RECIPES / "pause.c"
    r = subprocess.run([gcc, "-static", "-Os", "-s", "-o", str(out), str(src)], capture_output=True, text=True,
                       timeout=120)
    if r.returncode != 0:
        raise SandboxError(f"building the pause binary failed (gcc -static needs libc6-dev): {r.stderr.strip()}")


def pause_rootfs(work: Path) -> Rootfs:
    binary = work / "pause"
    compile_pause(binary)
    fs = Rootfs()
    fs.file("pause", source=binary, mode=0o755)
    return fs


def utility_rootfs() -> Rootfs:
    fs = Rootfs()
    _base_files(fs)
    _busybox(fs)
    # The fake nvidia-smi's sh fallback (this image has no python3): lists the GPU nodes the container may open.
    fs.file("usr/bin/nvidia-smi", data=_smi_wrapper(), mode=0o755)
    return fs


def _ldd(paths: Iterable[Path]) -> set[Path]:
    """The shared libraries (and the loader) ``ldd`` names for ``paths``."""
    libs: set[Path] = set()
    for p in paths:
        r = subprocess.run(["ldd", str(p)], capture_output=True, text=True, timeout=30)
        for line in r.stdout.splitlines():
            m = re.search(r"=>\s+(/\S+)", line) or re.match(r"\s*(/\S+)\s+\(", line)
            if m:
                libs.add(Path(m.group(1)))
    return libs


def python_base_rootfs() -> Rootfs:
    """Debian's python3.11 + busybox, copied from the installed packages (python3.11-minimal,
    libpython3.11-stdlib and the libraries they link)."""
    if not PYTHON_BIN.is_file() or not (PYTHON_LIB / "os.py").is_file():
        raise SandboxError(f"{PYTHON_BIN} or {PYTHON_LIB} is missing: install the Debian package python3.11 "
                           "(make setup does); the sandbox's Python image is made from it")
    fs = Rootfs()
    _base_files(fs)
    _busybox(fs)
    fs.file("usr/bin/python3.11", source=PYTHON_BIN, mode=0o755)
    fs.symlink("usr/bin/python3", "python3.11")
    fs.symlink("usr/bin/python", "python3")

    def skip(p: Path) -> bool:
        rel = p.relative_to(PYTHON_LIB).parts
        return rel[0] in _PYTHON_LIB_SKIP

    fs.add_tree(PYTHON_LIB, "usr/lib/python3.11", skip=skip)
    fs.dir(DIST_PACKAGES)
    dynload = sorted((PYTHON_LIB / "lib-dynload").glob("*.so"))
    for lib in sorted(_ldd([PYTHON_BIN, *dynload])):
        fs.add_host_path(lib)
    return fs


def _smi_wrapper() -> str:
    return (RECIPES / "nvidia-smi").read_text()


def workloads_rootfs() -> Rootfs:
    """The toolkit's workload modules (stdlib-only programs run inside pods) and the fake nvidia-smi."""
    fs = Rootfs()
    fs.file(f"{DIST_PACKAGES}/aiconf/__init__.py", source=AICONF_PKG / "__init__.py", mode=0o644)
    wl = AICONF_PKG / "workloads"
    for f in sorted(wl.glob("*.py")):
        fs.file(f"{DIST_PACKAGES}/aiconf/workloads/{f.name}", source=f, mode=0o644)
    smi = wl / "fake_nvidia_smi.py"
    if smi.is_file():
        fs.file(SMI_IMPL, source=smi, mode=0o644)
    fs.file("usr/bin/nvidia-smi", data=_smi_wrapper(), mode=0o755)
    return fs


# --- build and cache -------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Built:
    """One image archive: its reference, file, manifest digest, size and whether it came from the cache."""

    ref: str
    path: Path
    digest: str
    size: int
    cached: bool
    seconds: float


def _cached_layer(fs: Rootfs, name: str, cdir: Path) -> tuple[Path, bool]:
    key = hashlib.sha256(f"{RECIPE_VERSION}\0{name}\0{fs.digest_inputs()}".encode()).hexdigest()[:20]
    path = cdir / "layers" / f"{name}-{key}.tar"
    if path.is_file():
        return path, True
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        fs.write_tar(f)
    tmp.replace(path)
    return path, False


def _archive(ref: str, stem: str, layers: list[Path], config: ImageConfig, cdir: Path) -> tuple[Path, str, bool]:
    key_src = json.dumps([RECIPE_VERSION, ref, [p.name for p in layers], dataclasses.asdict(config)])
    key = hashlib.sha256(key_src.encode()).hexdigest()[:20]
    path = cdir / f"{stem}-{key}.tar"
    digest_file = path.with_suffix(".digest")
    if path.is_file() and digest_file.is_file():
        return path, digest_file.read_text().strip(), True
    digest = write_oci_archive(path, ref, layers, config)
    digest_file.write_text(digest + "\n")
    return path, digest, False


@contextlib.contextmanager
def _build_lock(cdir: Path, timeout_s: float = 600):
    """Concurrent sandboxes build the same images: one builds, the others wait (polled, bounded) and then find the
    result in the cache."""
    import fcntl

    cdir.mkdir(parents=True, exist_ok=True)
    with open(cdir / ".lock", "w") as lk:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(lk, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise SandboxError(f"another image build still holds {cdir / '.lock'} after "
                                       f"{timeout_s:g}s") from None
                time.sleep(0.2)
        yield


#: Cached archives (and layers) kept per image: the newest few, so a cache shared by checkouts stays small.
KEEP_PER_IMAGE = 3


def _prune(keep: Path) -> None:
    """Remove older siblings of ``keep`` (same name up to the key: ``<name>-<key>.tar``), newest first kept."""
    name = keep.name.rsplit("-", 1)[0]
    siblings = [p for p in keep.parent.glob(f"{name}-*.tar") if p != keep and p.name.rsplit("-", 1)[0] == name]
    for p in sorted(siblings, key=lambda p: p.stat().st_mtime, reverse=True)[KEEP_PER_IMAGE - 1:]:
        with contextlib.suppress(OSError):
            p.unlink()
            p.with_suffix(".digest").unlink(missing_ok=True)


def build(name: str, cdir: Path | None = None) -> Built:
    """Build (or reuse) one image: ``pause``, ``utility`` or ``python``."""
    cdir = cdir or cache_dir()
    started = time.monotonic()
    with _build_lock(cdir):
        if name == "pause":
            # Keyed on the source and the compiler, so an unchanged pause.c is not compiled again.
            gcc = subprocess.run(["gcc", "--version"], capture_output=True, text=True, timeout=10).stdout
            src_key = hashlib.sha256((RECIPES / "pause.c").read_bytes() + gcc.encode()).hexdigest()[:20]
            layer = cdir / "layers" / f"pause-{src_key}.tar"
            cached = layer.is_file()
            if not cached:
                with tempfile.TemporaryDirectory(prefix="aiconf-pause-") as work:
                    fs = pause_rootfs(Path(work))
                    layer.parent.mkdir(parents=True, exist_ok=True)
                    tmp = layer.with_name(layer.name + f".tmp{os.getpid()}")
                    with open(tmp, "wb") as f:
                        fs.write_tar(f)
                    tmp.replace(layer)
            layers = [layer]
            config = ImageConfig(entrypoint=("/pause",), env=(), labels=(("io.aiconf.image", "pause"),))
            ref, stem = PAUSE, "pause"
        elif name == "utility":
            layer, cached = _cached_layer(utility_rootfs(), "utility", cdir)
            layers = [layer]
            config = ImageConfig(cmd=("sh",), labels=(("io.aiconf.image", "utility"),))
            ref, stem = UTILITY, "utility"
        elif name == "python":
            base, c1 = _cached_layer(python_base_rootfs(), "python-base", cdir)
            app, c2 = _cached_layer(workloads_rootfs(), "python-workloads", cdir)
            layers, cached = [base, app], c1 and c2
            config = ImageConfig(cmd=("python3",), env=(
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8",
                "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1"), labels=(("io.aiconf.image", "python"),))
            ref, stem = PYTHON, "python"
        else:
            raise SandboxError(f"unknown sandbox image {name!r} (pause, utility, python)")
        path, digest, arch_cached = _archive(ref, stem, layers, config, cdir)
        if not arch_cached:
            for p in (path, *layers):
                _prune(p)
    return Built(ref, path, digest, path.stat().st_size, cached and arch_cached, round(time.monotonic() - started, 2))


ALL = ("pause", "utility", "python")


def build_all(cdir: Path | None = None) -> list[Built]:
    return [build(n, cdir) for n in ALL]
