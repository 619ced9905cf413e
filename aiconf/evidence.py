"""Evidence capture: the objects a check made (with their final status), events and pod logs, as files an auditor
can open. Secrets are never written: Secret objects are listed by name only, and data fields are dropped.

With the ``redact`` parameter, :class:`Redactor` replaces node names, IP addresses and cloud account ids in what a run
writes (evidence, results, run.json, executed notebooks), before the report is built from them.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import ipaddress
import json
import os
import re
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from aiconf.context import CheckContext

#: Namespaced kinds dumped from a check's namespace (apiVersion, kind). Missing APIs are skipped.
NAMESPACED_KINDS: tuple[tuple[str, str], ...] = (
    ("v1", "Pod"),
    ("v1", "Service"),
    ("v1", "ConfigMap"),
    ("apps/v1", "Deployment"),
    ("batch/v1", "Job"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("resource.k8s.io/v1", "ResourceClaim"),
    ("resource.k8s.io/v1", "ResourceClaimTemplate"),
    ("kueue.x-k8s.io/v1beta2", "Workload"),
    ("kueue.x-k8s.io/v1beta2", "LocalQueue"),
    ("ray.io/v1", "RayCluster"),
    ("gateway.networking.k8s.io/v1", "Gateway"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
)


_PEM = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----.*?-----END \1-----", re.S)
#: base64 of "-----BEGIN " (how PEM appears in caBundle fields and kubeconfig *-data fields)
_PEM_BASE64 = re.compile(r"LS0tLS1CRUdJTi[A-Za-z0-9+/=]{40,}")


def scrub_pem(text: str) -> str:
    """Certificates and keys (PEM, or PEM in base64) become one line naming what was there: evidence never carries
    key or certificate material (a namespace's kube-root-ca.crt ConfigMap, a webhook's caBundle, a Secret's data)."""

    def pem(m: re.Match[str]) -> str:
        digest = hashlib.sha256(m.group(0).encode()).hexdigest()[:16]
        return f"<{m.group(1).lower()} removed, sha256 {digest}>"

    text = _PEM.sub(pem, text)
    return _PEM_BASE64.sub(lambda m: f"<base64 PEM removed, sha256 {hashlib.sha256(m.group(0).encode()).hexdigest()[:16]}>",
                           text)


def strip_noise(obj: dict[str, Any]) -> dict[str, Any]:
    """Drop managedFields and last-applied annotations (long, not evidence) and any Secret data."""
    obj = dict(obj)
    meta = dict(obj.get("metadata") or {})
    meta.pop("managedFields", None)
    ann = dict(meta.get("annotations") or {})
    ann.pop("kubectl.kubernetes.io/last-applied-configuration", None)
    if ann:
        meta["annotations"] = ann
    else:
        meta.pop("annotations", None)
    obj["metadata"] = meta
    if obj.get("kind") == "Secret":
        obj.pop("data", None)
        obj.pop("stringData", None)
    return obj


def dump_objects(objs: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all([strip_noise(o) for o in objs], sort_keys=False, default_flow_style=False)


def capture_namespace(ctx: CheckContext, namespace: str) -> None:
    kube = ctx.kube
    objects: list[dict[str, Any]] = []
    for api_version, kind in NAMESPACED_KINDS:
        try:
            if not kube.has_kind(api_version, kind):
                continue
            for o in kube.list(api_version, kind, namespace):
                o.setdefault("apiVersion", api_version)
                o.setdefault("kind", kind)
                objects.append(o)
        except Exception as e:  # evidence is best effort; the failure itself is noted
            ctx.note(f"evidence: could not list {kind} in {namespace}: {e}")
    if objects:
        ctx.save_evidence(f"{namespace}/objects.yaml", dump_objects(objects))
    events = kube.events(namespace)
    if events:
        lines = []
        for e in sorted(events, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or ""):
            involved = e.get("involvedObject") or {}
            lines.append(
                f"{e.get('lastTimestamp') or e.get('eventTime') or ''} {e.get('type', '')} {e.get('reason', '')} "
                f"{involved.get('kind', '')}/{involved.get('name', '')}: {e.get('message', '')}".strip()
            )
        ctx.save_evidence(f"{namespace}/events.txt", "\n".join(lines) + "\n")
    for pod in (o for o in objects if o["kind"] == "Pod"):
        node = pod.get("spec", {}).get("nodeName", "")
        if not _runs_processes(kube, node):
            continue  # simulated (kwok) nodes have no containers and no logs
        for c in pod.get("spec", {}).get("containers", []):
            text = kube.pod_logs(pod["metadata"]["name"], namespace, c["name"])
            ctx.save_evidence(f"{namespace}/logs/{pod['metadata']['name']}.{c['name']}.log", text)


_REAL_NODES: dict[str, bool] = {}


def _runs_processes(kube: Any, node_name: str) -> bool:
    if not node_name:
        return False
    if node_name not in _REAL_NODES:
        node = kube.get("v1", "Node", node_name) or {}
        ann = node.get("metadata", {}).get("annotations") or {}
        _REAL_NODES[node_name] = ann.get("kwok.x-k8s.io/node") != "fake"
    return _REAL_NODES[node_name]


# --- redaction (parameter ``redact``) --------------------------------------------------------------------------------

#: The key of a run's pseudonyms. The runner sets it (kernels inherit it) so every file of a run maps a node name to
#: the same pseudonym; it is never written anywhere. Interactive use gets a key per process.
REDACT_KEY_ENV = "AICONF_REDACT_KEY"

_IPV4 = re.compile(r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?!\.?\d)(?![\w])")
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
#: Cloud account identifiers, each with the group that holds the id.
_ACCOUNTS = (
    re.compile(r"\barn:aws[\w-]*:[\w-]*:[\w-]*:(\d{12}):"),  # AWS ARNs
    re.compile(r"\b(\d{12})\.dkr\.ecr\."),  # AWS ECR registries
    re.compile(r"(?i)\b(?:aws[_-]?)?account[_-]?id[\"']?\s*[:=]\s*[\"']?(\d{12})\b"),
    re.compile(r"\bgce://([a-z][a-z0-9-]{4,28}[a-z0-9])/"),  # GCE providerID
    re.compile(r"\bprojects/([a-z][a-z0-9-]{4,28}[a-z0-9])/"),  # GCP resource paths
    re.compile(r"\b(?:[a-z0-9-]+-docker\.pkg\.dev|(?:[a-z]+\.)?gcr\.io)/([a-z][a-z0-9-]{4,28}[a-z0-9])/"),
    re.compile(r"(?i)/subscriptions/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"),  # Azure
    re.compile(r"\b(ocid1\.tenancy\.[\w.-]+)"),  # Oracle Cloud tenancy
)
#: Where node names show up in evidence besides the Node list (pods of deleted nodes, events, CSV columns).
_NODE_FIELDS = re.compile(
    r"""(?:(?<![\w.-])["']?(?:nodeName|node_name|node|hostname|kubernetes\.io/hostname)["']?\s*[:=]\s*["']?"""
    r"""|\b(?:Node|node|nodeclaim|NodeClaim)/|\bassigned \S+ to )([A-Za-z0-9][A-Za-z0-9._-]{2,252})"""
)
#: A learned name must look like a host name, with a letter and a dash, dot or digit: never "true", "none",
#: "pending" or a count.
_NAME_LIKE = re.compile(r"^(?=.*[A-Za-z])(?=.*[-.0-9])[A-Za-z0-9][A-Za-z0-9._-]*$")
_CSV_NODE_COLUMN = re.compile(r"(?i)^(node|node_?name|nodes|host|hostname|new_nodes?)$")


class Redactor:
    """Replaces node names, IP addresses and cloud account ids with stable pseudonyms (``node-1a2b3c4d``,
    ``ip-…``, ``account-…``): an HMAC of the value under the run's key, so the same node is the same pseudonym in
    every file of a run, and the real value cannot be recovered without the key."""

    def __init__(self, node_names: Iterable[str] = (), key: bytes | None = None):
        self.key = key or _redact_key()
        self.nodes: set[str] = set()
        for n in node_names:
            self.add_node(n)

    def add_node(self, name: str) -> None:
        if name and len(name) >= 3 and not name.startswith("node-"):
            self.nodes.add(name)

    def pseudonym(self, kind: str, value: str) -> str:
        return f"{kind}-" + hmac.new(self.key, value.encode(), hashlib.sha256).hexdigest()[:8]

    def learn(self, text: str) -> None:
        """Collect node names the text names in the usual places (``nodeName:``, ``Node/<name>``, node columns)."""
        learned = [m.group(1).rstrip(".-") for m in _NODE_FIELDS.finditer(text)]
        first, _, rest = text.partition("\n")
        if "," in first and rest:
            header = next(csv.reader([first]))
            columns = [i for i, h in enumerate(header) if _CSV_NODE_COLUMN.match(h.strip())]
            if columns:
                for row in csv.reader(io.StringIO(rest)):
                    for i in columns:
                        learned += (row[i] if i < len(row) else "").replace(";", " ").split()
        for name in learned:
            if _NAME_LIKE.match(name.strip()):
                self.add_node(name.strip())

    def text(self, text: str) -> str:
        if self.nodes:
            names = sorted(self.nodes, key=len, reverse=True)
            rx = re.compile(r"(?<![A-Za-z0-9_-])(" + "|".join(map(re.escape, names)) + r")(?![A-Za-z0-9_-])")
            text = rx.sub(lambda m: self.pseudonym("node", m.group(1)), text)
        for rx in _ACCOUNTS:
            text = rx.sub(lambda m: m.group(0).replace(m.group(1), self.pseudonym("account", m.group(1))), text)
        text = _IPV4.sub(lambda m: self.pseudonym("ip", m.group(0)), text)
        return _IPV6.sub(self._ipv6, text)

    def _ipv6(self, m: re.Match[str]) -> str:
        value = m.group(0)
        groups = [g for g in value.split(":") if g]
        try:
            ipaddress.IPv6Address(value)
        except ValueError:
            return value
        # At least two groups: "::1", "::2" (slices, C++ scopes) are left alone.
        return self.pseudonym("ip", value) if len(groups) >= 2 and ("::" in value or len(groups) == 8) else value

    def files(self, paths: Iterable[Path]) -> list[Path]:
        """Redact text files in place (two passes: learn names from all of them, then replace). Returns the changed
        ones; binary files are left as they are."""
        texts: dict[Path, str] = {}
        for path in paths:
            try:
                texts[path] = path.read_text()
            except (UnicodeDecodeError, OSError):
                continue
        for text in texts.values():
            self.learn(text)
        changed = []
        for path, text in texts.items():
            new = self._json(text, path) if path.suffix in (".json", ".ipynb") else self.text(text)
            if new != text:
                path.write_text(new)
                changed.append(path)
        return changed

    def _json(self, text: str, path: Path) -> str:
        """JSON (results, run.json, notebooks): only string values and keys change, so the file stays valid."""
        try:
            data = json.loads(text)
        except ValueError:
            return self.text(text)

        def walk(v: Any) -> Any:
            if isinstance(v, str):
                return self.text(v)
            if isinstance(v, list):
                return [walk(x) for x in v]
            if isinstance(v, dict):
                return {self.text(k): walk(x) for k, x in v.items()}
            return v

        redacted = walk(data)
        if redacted == data:
            return text
        return json.dumps(redacted, indent=1 if path.suffix == ".ipynb" else 2, ensure_ascii=False) + "\n"


def _redact_key() -> bytes:
    key = os.environ.get(REDACT_KEY_ENV)
    if not key:
        key = os.environ[REDACT_KEY_ENV] = secrets.token_hex(16)
    return key.encode()


def redactor_for(kube: Any, seen: Iterable[str] = ()) -> Redactor:
    """A redactor that knows the cluster's current node names and those ``seen`` earlier (and learns more from the
    files it redacts)."""
    try:
        names = [n["metadata"]["name"] for n in kube.list("v1", "Node")]
    except Exception:  # the API server is away: names are still learned from the files
        names = []
    return Redactor([*names, *seen])


def redact_tree(root: Path, redactor: Redactor, patterns: Iterable[str] = ("**/*",)) -> list[Path]:
    paths = sorted({p for pattern in patterns for p in Path(root).glob(pattern) if p.is_file()})
    return redactor.files(paths)
