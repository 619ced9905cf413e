"""Helpers shared by the sandbox add-ons: module sources, manifests, bounded waits, loopback probes."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiconf.errors import SandboxError
from aiconf.sandbox.addon import SandboxHandle
from aiconf.sandbox.gobuild import CACHE_ROOT, go_env


@functools.cache
def go_module_dir(module: str, version: str) -> Path:
    """The extracted source of ``module@version`` in the Go module cache (downloaded through the proxy if missing).

    Used for manifests (CRDs, webhook configurations) that ship inside the module; nothing is compiled.
    """
    go = shutil.which("go")
    if go is None:
        raise SandboxError(f"reading {module}@{version}: the 'go' command is not on PATH")
    proc = subprocess.run(
        [go, "mod", "download", "-json", f"{module}@{version}"],
        check=False,
        env=go_env(),
        capture_output=True,
        text=True,
        timeout=600,
        cwd="/",
    )
    try:
        info = json.loads(proc.stdout)
    except json.JSONDecodeError:
        info = {}
    if proc.returncode != 0 or info.get("Error") or not info.get("Dir"):
        detail = info.get("Error") or proc.stderr.strip() or f"exit {proc.returncode}"
        raise SandboxError(f"go mod download {module}@{version} failed: {detail}")
    return Path(info["Dir"])


def load_yaml_docs(path: Path) -> list[dict]:
    """Every non-empty document of a (multi-document) YAML file, as plain dicts.

    CRDs are large (KubeRay's are 3 MB of YAML, several seconds to parse on a busy 2-core machine), so the parsed
    documents are cached as JSON under ``<aiconf cache>/manifests/``, keyed by path and size. Files under the Go
    module cache never change for a given version.
    """
    path = Path(path)
    st = path.stat()
    key = hashlib.sha256(f"{path.resolve()}:{st.st_size}:{int(st.st_mtime)}".encode()).hexdigest()[:16]
    cached = CACHE_ROOT / "manifests" / f"{path.stem}-{key}.json"
    try:
        return json.loads(cached.read_text())
    except (OSError, json.JSONDecodeError):
        pass
    text = path.read_text()
    try:
        import yaml  # PyYAML (a dependency of the kubernetes client); its C loader is ~4x faster than ruamel's

        docs = list(yaml.load_all(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))
    except ImportError:
        from ruamel.yaml import YAML

        docs = list(YAML(typ="safe", pure=True).load_all(text))
    docs = [d for d in docs if d]
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(docs))
        tmp.replace(cached)
    except OSError:
        pass  # a read-only cache only costs the parse next time
    return docs


def addon_dir(sb: SandboxHandle, name: str) -> Path:
    """``state_dir/<name>/``, created."""
    d = Path(sb.state_dir) / name
    d.mkdir(parents=True, exist_ok=True)
    return d


def ca_bundle(sb: SandboxHandle) -> str:
    """The cluster CA as a base64 ``caBundle`` value."""
    return base64.b64encode(Path(sb.ca_cert).read_bytes()).decode()


def install_cert_pair(cert: Path, key: Path, folder: Path) -> Path:
    """Copy a cert/key pair into ``folder`` as ``tls.crt``/``tls.key`` (the names controller-runtime expects)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cert, folder / "tls.crt")
    shutil.copyfile(key, folder / "tls.key")
    (folder / "tls.key").chmod(0o600)
    return folder


def service_dns_names(name: str, namespace: str) -> list[str]:
    """The names the API server verifies a Service-referenced webhook/APIService certificate against."""
    return [name, f"{name}.{namespace}", f"{name}.{namespace}.svc", f"{name}.{namespace}.svc.cluster.local"]


def namespace_doc(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def loopback_service(name: str, namespace: str, port: int) -> dict:
    """A Service the API server resolves to ``127.0.0.1`` (type ExternalName).

    kube-apiserver's service resolver returns ``https://<externalName>:<port>`` for ExternalName Services, for both
    webhooks and APIServices, so a process on 127.0.0.1 can serve them. The port in the webhook/APIService reference
    is what the API server dials; the one here only documents it.
    """
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "aiconf-sandbox"},
        },
        "spec": {
            "type": "ExternalName",
            "externalName": "127.0.0.1",
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        },
    }


def kube_json(sb: SandboxHandle, *args: str) -> Any:
    return json.loads(sb.kubectl(*args, "-o", "json"))


def wait_for(what: str, probe: Callable[[], tuple[bool, str]], *, timeout_s: float, interval_s: float = 1.0) -> None:
    """Call ``probe`` until it returns ``(True, _)``; bounded. Raises SandboxError with the last state seen.

    ``probe`` may raise SandboxError (a kubectl failure); that counts as "not yet" and its text is kept.
    """
    deadline = time.monotonic() + timeout_s
    last = ""
    while True:
        try:
            ok, last = probe()
        except SandboxError as e:
            ok, last = False, str(e)
        if ok:
            return
        if time.monotonic() >= deadline:
            raise SandboxError(
                f"timed out after {timeout_s:g}s waiting for {what}" + (f" (last seen: {last})" if last else "")
            )
        time.sleep(interval_s)


def http_ok(url: str, *, timeout_s: float = 2.0, insecure_tls: bool = True) -> bool:
    """True when ``url`` (on 127.0.0.1) answers 2xx. For readiness probes of local processes only."""
    ctx = None
    if url.startswith("https://"):
        ctx = ssl.create_default_context()
        if insecure_tls:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=timeout_s, context=ctx) as resp:
            return 200 <= resp.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def tcp_open(port: int, host: str = "127.0.0.1", timeout_s: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


_SUFFIXES = {
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
}


def parse_quantity(q: str | float) -> float:
    """A Kubernetes resource quantity as a number (``"500m"`` → 0.5, ``"2Gi"`` → 2147483648)."""
    s = str(q).strip()
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if s.endswith(suffix):
            return float(s[: -len(suffix)]) * _SUFFIXES[suffix]
    return float(s)


def create_custom_object(
    sb: SandboxHandle,
    group: str,
    version: str,
    plural: str,
    body: dict,
    *,
    namespace: str | None = None,
    dry_run: bool = False,
) -> tuple[int, str]:
    """Create a custom object through the API (not kubectl); returns ``(HTTP status, Status message)``.

    kubectl rewrites 422 answers as "The X is invalid: <causes>" and drops the message, which is where the API
    server says which admission webhook denied a request; this keeps it.
    """
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=str(sb.kubeconfig))
    try:
        co = client.CustomObjectsApi(api)
        kwargs = {"dry_run": "All"} if dry_run else {}
        if namespace:
            co.create_namespaced_custom_object(group, version, namespace, plural, body, _request_timeout=30, **kwargs)
        else:
            co.create_cluster_custom_object(group, version, plural, body, _request_timeout=30, **kwargs)
        return 201, ""
    except client.ApiException as e:
        try:
            message = json.loads(e.body or "{}").get("message", "")
        except json.JSONDecodeError:
            message = e.body or ""
        return e.status or 0, message or str(e.reason)
    finally:
        api.close()


def read_info(sb: SandboxHandle, name: str) -> dict:
    """An add-on's ``state_dir/<name>/info.json`` (ports, paths, or ``{"skipped": reason}``); ``{}`` when absent."""
    try:
        return json.loads((Path(sb.state_dir) / name / "info.json").read_text())
    except (OSError, ValueError):
        return {}


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (a reader never sees half a file)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)
