"""What a PRODUCT.yaml must look like: metadata keys, status vocabulary, URL rules, title-casing, version detection.

Shared by the builder, the validator and the README generator. The rules restate those of the program's validator
(``scripts/validate.go`` in cncf/k8s-ai-conformance, see ``shared/research/requirements.md`` §3.2); the requirement
ids, categories and levels per version come from :mod:`aiconf.checklists`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from aiconf import checklists
from aiconf.errors import ConfigError

#: Metadata every submission must carry (camelCase as in the template; snake_case is accepted too).
REQUIRED_METADATA = (
    "kubernetesVersion",
    "platformName",
    "platformVersion",
    "vendorName",
    "websiteUrl",
    "documentationUrl",
    "productLogoUrl",
    "description",
    "contactEmailAddress",
    "k8sConformanceUrl",
)
OPTIONAL_METADATA = ("repoUrl",)
KNOWN_METADATA = REQUIRED_METADATA + OPTIONAL_METADATA

#: PRODUCT.yaml status values; "" is allowed only for a SHOULD left without evidence.
STATUSES = ("Implemented", "Not Implemented", "Partially Implemented", "N/A")

PLACEHOLDER = re.compile(r"^\s*\[.*\]\s*$", re.S)
K8S_CONFORMANCE_URL = re.compile(r"^https://github\.com/cncf/k8s-conformance/tree/(master|main)/v\d+\.\d+/[^/]+/?$")
VERSION_IN_PATH = re.compile(r"(?:^|/)v(\d+\.\d+)/")
VERSION_IN_TEMPLATE_NAME = re.compile(r"AIConformance-(\d+\.\d+)\.ya?ml$", re.I)
URL = re.compile(r"^https?://", re.I)
#: File types the program accepts for the product logo (rule of an open upstream PR; reported as a warning).
LOGO_SUFFIXES = (".svg", ".eps", ".ai")
USER_AGENT = "aiconf-submission-validator (+CNCF Kubernetes AI Conformance; offline-first)"

#: Words written in capitals in titles (the layout of the program's proposed PRODUCT.md generator).
ACRONYMS = {"dra": "DRA", "api": "API", "gpu": "GPU", "ai": "AI", "url": "URL", "crd": "CRD"}
CATEGORY_TITLES = {
    "accelerators": "🚀 Accelerators",
    "networking": "🌐 Networking",
    "schedulingOrchestration": "📅 Scheduling & Orchestration",
    "observability": "📊 Observability",
    "security": "🔒 Security",
    "operator": "⚙️ Operator Support",
}
STATUS_ICONS = {"Implemented": "✅", "Partially Implemented": "🟡", "Not Implemented": "❌", "N/A": "⚪"}


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


def lookup(meta: dict[str, Any], key: str) -> tuple[str | None, Any]:
    """``(actual key, value)`` of a camelCase metadata key, also found under its snake_case spelling."""
    for k in (key, snake(key)):
        if k in meta:
            return k, meta[k]
    return None, None


def is_placeholder(value: Any) -> bool:
    return isinstance(value, str) and bool(PLACEHOLDER.match(value))


def title(requirement_id: str) -> str:
    """``dra_support`` -> ``DRA Support``."""
    return " ".join(ACRONYMS.get(w, w.capitalize()) for w in requirement_id.split("_"))


def status_icon(status: str) -> str:
    return STATUS_ICONS.get(status, "⬜")


def version_from_path(path: str | Path) -> str | None:
    m = VERSION_IN_PATH.search(Path(path).resolve().as_posix())
    return m.group(1) if m else None


def version_from_kubernetes_version(value: Any) -> str | None:
    m = re.match(r"^v?(\d+\.\d+)", str(value or "").strip())
    return m.group(1) if m else None


def version_from_spec(spec: Any) -> str | None:
    """The checklist version whose ids and levels match ``spec`` exactly (None when none or several do)."""
    if not isinstance(spec, dict):
        return None
    found = {}
    for entries in spec.values():
        for entry in entries or []:
            if isinstance(entry, dict) and "id" in entry:
                found[str(entry["id"])] = str(entry.get("level", ""))
    checklist = checklists.load()
    matches = [v for v in checklist.versions if {r.id: r.level(v) for r in checklist.for_version(v)} == found]
    return matches[0] if len(matches) == 1 else None


def expected_spec(version: str) -> dict[str, list[tuple[str, str]]]:
    """Category -> [(requirement id, level)] of a checklist version, in the program's order."""
    checklist = checklists.load()
    checklist.check_version(version)
    out: dict[str, list[tuple[str, str]]] = {c: [] for c in checklist.categories}
    for r in checklist.for_version(version):
        out[r.category].append((r.id, r.level(version) or ""))
    return {c: rs for c, rs in out.items() if rs}


def require_version(version: str | None, where: str) -> str:
    if not version:
        raise ConfigError(
            f"{where}: cannot tell which checklist version this is (name the file AIConformance-X.Y.yaml, "
            "put it in a vX.Y/ folder, or set metadata.kubernetesVersion)"
        )
    return checklists.load().check_version(version)


def yaml_error(e: Exception) -> str:
    """A YAML parse error in one line: what, and where (PyYAML and ruamel.yaml errors alike)."""
    what = getattr(e, "problem", None) or getattr(e, "context", None) or str(e).splitlines()[0]
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    return f"{what} (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else str(what)
