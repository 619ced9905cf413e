"""Build pinned upstream Go components through the Go module proxy, cached by version outside the repo.

Each component is data (:class:`GoComponent`): a module, a version, the packages to compile and how its wrapper
module must be shaped. :func:`ensure` builds what is missing into ``<cache>/bin/<name>-<version>/`` and returns the
binary paths; a second call with a warm cache does nothing. Wrapper modules live beside the binaries so a failed
build can be inspected, and every step writes to one log file named in the error.

Why wrappers: ``go install pkg@version`` refuses modules whose go.mod has ``replace``/``exclude`` lines
(k8s.io/kubernetes, etcd's server, cluster-autoscaler), and k8s.io/kubernetes requires its staging modules at
``v0.0.0``, which only its own replaces resolve. A throwaway module that requires the target and replaces each
staging module with the published ``v0.X.Y`` builds the real commands.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiconf.errors import SandboxError

#: Where built binaries and wrapper modules are cached (never inside the repo).
CACHE_ROOT = Path(os.environ.get("AICONF_CACHE", Path.home() / ".cache" / "aiconf"))


@dataclass(frozen=True)
class GoComponent:
    """One upstream Go build.

    Attributes:
        name: short name; the cache folder is ``<name>-<version>``.
        module: the module to require (``k8s.io/kubernetes``).
        version: a tag or pseudo-version the proxy serves.
        packages: import paths to compile; each yields a binary named after its last path element
            (or as given in ``binary_names``).
        staging_replaces_from: when set, a module (usually the same) whose go.mod lists ``k8s.io/* v0.0.0``
            requirements; each is replaced by ``<mod>@<staging_version>``.
        staging_version: the version used for those replaces (``v0.36.3`` for Kubernetes v1.36.3).
        extra_go_mod: lines appended verbatim to the wrapper go.mod (replace/exclude/require blocks copied from
            upstream, for example).
        main_go: source for a wrapper ``main.go`` (for modules whose command is not importable as a main
            package, like etcd's ``etcdmain``); the binary is then ``binary_names[0]``.
        ldflags: extra ``-X`` flags (version stamping); ``-s -w`` is always added.
        tags: Go build tags.
        cgo: whether CGO stays enabled (runc needs it; the rest builds static with CGO off).
        binary_names: override binary names, in the order of ``packages`` (or one name for ``main_go``).
    """

    name: str
    module: str
    version: str
    packages: tuple[str, ...] = ()
    staging_replaces_from: str | None = None
    staging_version: str | None = None
    extra_go_mod: str = ""
    main_go: str | None = None
    ldflags: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    cgo: bool = False
    binary_names: tuple[str, ...] = ()
    extra_files: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.name}-{self.version}"

    def binaries(self) -> tuple[str, ...]:
        if self.binary_names:
            return self.binary_names
        return tuple(p.rstrip("/").rsplit("/", 1)[-1] for p in self.packages)


def kube_version_ldflags(version: str) -> tuple[str, ...]:
    """The ``-X`` flags upstream's hack/lib/version.sh sets, so binaries report ``v1.X.Y`` and not ``v0.0.0``."""
    major, minor = version.lstrip("v").split(".")[:2]
    flags = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={version}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
            f"-X {pkg}.buildDate=1970-01-01T00:00:00Z",
        ]
    return tuple(flags)


def component_dir(component: GoComponent, cache_root: Path | None = None) -> Path:
    return (cache_root or CACHE_ROOT) / "bin" / component.key


def binary_paths(component: GoComponent, cache_root: Path | None = None) -> dict[str, Path]:
    out = component_dir(component, cache_root)
    return {b: out / b for b in component.binaries()}


def is_built(component: GoComponent, cache_root: Path | None = None) -> bool:
    return all(p.is_file() and os.access(p, os.X_OK) for p in binary_paths(component, cache_root).values())


def go_env(cgo: bool = False) -> dict[str, str]:
    env = dict(os.environ)
    env.update(GOTOOLCHAIN="local", CGO_ENABLED="1" if cgo else "0", GOFLAGS="-mod=mod")
    # Module and build caches stay in the user's cache so later builds on the same machine are fast.
    env.setdefault("GOMODCACHE", str(Path.home() / "go" / "pkg" / "mod"))
    env.setdefault("GOCACHE", str(Path.home() / ".cache" / "go-build"))
    return env


def ensure(
    component: GoComponent,
    *,
    cache_root: Path | None = None,
    progress: Callable[[str], None] | None = None,
    jobs: int | None = None,
) -> dict[str, Path]:
    """Build ``component`` unless every binary is already cached; return ``{binary name: path}``.

    Raises:
        SandboxError: Go is missing or a build step failed; the message names the step and the log file.
    """
    say = progress or (lambda msg: print(msg, file=sys.stderr, flush=True))
    paths = binary_paths(component, cache_root)
    if is_built(component, cache_root):
        return paths
    go = shutil.which("go")
    if go is None:
        raise SandboxError(f"building {component.key}: the 'go' command is not on PATH (Go >= 1.26 is required)")
    out = component_dir(component, cache_root)
    out.mkdir(parents=True, exist_ok=True)
    # Several sandboxes (and engineers) share one cache: one build per component at a time; whoever waited
    # finds the binaries built when it gets the lock.
    with _build_lock(out / ".lock", component.key, say):
        if is_built(component, cache_root):
            return paths
        return _build(component, out, paths, go, say, jobs)


@contextlib.contextmanager
def _build_lock(path: Path, key: str, say: Callable[[str], None], timeout_s: float = 3600):
    """An exclusive flock on ``path``, polled (bounded by ``timeout_s``) so the waiter can say why it waits."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout_s
        announced = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise SandboxError(f"building {key}: another build still holds {path} after {timeout_s:g}s") from None
                if not announced:
                    say(f"[build] {key}: waiting for another build of it to finish")
                    announced = True
                time.sleep(1)
        yield
    finally:
        os.close(fd)  # also releases the lock


def _build(
    component: GoComponent, out: Path, paths: dict[str, Path], go: str, say: Callable[[str], None], jobs: int | None
) -> dict[str, Path]:
    wrapper = out / "wrapper"
    wrapper.mkdir(parents=True, exist_ok=True)
    log_path = out / "build.log"
    env = go_env(component.cgo)
    started = time.monotonic()

    with open(log_path, "a") as log:

        def run(step: str, argv: list[str]) -> str:
            log.write(f"\n$ {' '.join(argv)}\n")
            log.flush()
            proc = subprocess.run(argv, cwd=wrapper, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
            log.write(proc.stdout)
            if proc.returncode != 0:
                raise SandboxError(f"building {component.key}: step '{step}' failed (exit {proc.returncode}); see {log_path}")
            return proc.stdout

        say(f"[build] {component.key}: preparing wrapper module")
        (wrapper / "go.mod").write_text("module aiconf.local/build/" + component.name.replace("-", "") + "\n\ngo 1.26\n")
        run("require", [go, "mod", "edit", f"-require={component.module}@{component.version}"])
        if component.staging_replaces_from:
            staged = _staging_modules(run, go, component.staging_replaces_from, component.version)
            for mod in staged:
                run("replace", [go, "mod", "edit", f"-replace={mod}={mod}@{component.staging_version}"])
        if component.extra_go_mod:
            with open(wrapper / "go.mod", "a") as f:
                f.write("\n" + component.extra_go_mod.strip() + "\n")
        for name, text in component.extra_files.items():
            target = wrapper / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        if component.main_go is not None:
            (wrapper / "main.go").write_text(component.main_go)
            targets = ["."]
            # `go get` of the required module version keeps MVS from picking a newer one.
            run("resolve", [go, "get", f"{component.module}@{component.version}"])
            run("tidy", [go, "mod", "tidy"])
        else:
            targets = list(component.packages)
            # Pin each package to the component's version: a bare `go get pkg` would upgrade to the latest tag.
            run("resolve", [go, "get", *[f"{p}@{component.version}" for p in targets]])
        say(f"[build] {component.key}: compiling {', '.join(component.binaries())} (cold builds take minutes; log: {log_path})")
        ldflags = " ".join(("-s", "-w", *component.ldflags))
        argv = [go, "build", "-trimpath", "-ldflags", ldflags]
        if jobs:
            argv += ["-p", str(jobs)]
        if component.tags:
            argv += ["-tags", ",".join(component.tags)]
        if component.main_go is not None:
            argv += ["-o", str(out / component.binaries()[0]), "."]
            run("compile", argv)
        elif component.binary_names:
            for pkg, name in zip(component.packages, component.binary_names, strict=True):
                run("compile", [*argv, "-o", str(out / name), pkg])
        else:
            run("compile", [*argv, "-o", str(out) + "/", *targets])
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise SandboxError(f"building {component.key}: compile finished but {', '.join(missing)} is missing; see {log_path}")
    (out / "build.json").write_text(
        json.dumps({"component": component.key, "seconds": round(time.monotonic() - started, 1)}, indent=2)
    )
    say(f"[build] {component.key}: done in {time.monotonic() - started:.0f}s")
    return paths


def _staging_modules(run: Callable[[str, list[str]], str], go: str, module: str, version: str) -> list[str]:
    """The ``k8s.io/*`` modules that ``module``'s go.mod requires at ``v0.0.0`` (its staging tree)."""
    info = json.loads(run("download", [go, "mod", "download", "-json", f"{module}@{version}"]))
    staged = []
    in_require = False
    for line in Path(info["GoMod"]).read_text().splitlines():
        words = line.split()
        if line.startswith("require ("):
            in_require = True
            continue
        if in_require and line.startswith(")"):
            in_require = False
            continue
        if words[:1] == ["require"]:
            words = words[1:]
        elif not in_require:
            continue
        if len(words) >= 2 and words[0].startswith("k8s.io/") and words[1] == "v0.0.0":
            staged.append(words[0])
    return staged
