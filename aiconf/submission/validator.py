"""Our validator for a PRODUCT.yaml: the rules of the program's ``scripts/validate.go``, re-implemented, plus a few
warnings of our own. Offline by default; ``offline=False`` also checks that every URL answers (HEAD, then GET).

Rules (errors), as the program applies them:

1. the file parses as YAML into a mapping with ``metadata`` and ``spec``;
2. required metadata (camelCase or snake_case) are strings, non-empty and not ``[placeholder]``; ``k8sConformanceUrl``
   points at a product folder of cncf/k8s-conformance; every metadata URL answers (online);
3. ``vendorName`` is a CNCF member in the landscape file, when one is given;
4. every category and every requirement id of the checklist version is present;
5. a SHOULD with an empty status and no evidence is skipped; otherwise the status is one of Implemented,
   Not Implemented, Partially Implemented, N/A; a MUST is Implemented; N/A carries notes;
6. evidence is a list; each entry is a URL that answers (online) or a path, relative to the PRODUCT.yaml's folder,
   that exists.

Warnings (ours): the file is not in a ``vX.Y/`` folder (the program picks the checklist from the folder name); the
folder's version differs from ``kubernetesVersion``; a level differs from the checklist; extra or duplicate ids; a
MUST with no evidence; a logo that is not SVG/EPS/AI (an open upstream proposal).
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from aiconf.errors import ConfigError
from aiconf.submission import schema

ERROR, WARNING, INFO = "error", "warning", "info"


@dataclass(frozen=True)
class Problem:
    """One finding: where (a requirement id, ``metadata.<key>`` or ``file``), what, and how bad."""

    where: str
    message: str
    severity: str = ERROR

    def __str__(self) -> str:
        prefix = "" if self.severity == ERROR else f"{self.severity}: "
        return f"{prefix}{self.where}: {self.message}"


def is_valid(problems: list[Problem]) -> bool:
    return not any(p.severity == ERROR for p in problems)


def read_product(path: str | Path) -> dict[str, Any]:
    """Parse a PRODUCT.yaml.

    Raises:
        ConfigError: missing, unreadable, not YAML, or not a mapping (unusable input, exit 2).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} does not exist or is not a file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path} is unreadable: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {schema.yaml_error(e)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a YAML mapping with metadata and spec")
    return data


def validate(
    path: str | Path,
    offline: bool = True,
    *,
    landscape: str | Path | None = None,
    timeout_s: float = 10.0,
    version: str | None = None,
) -> list[Problem]:
    """Check a PRODUCT.yaml; return every problem found (empty: valid), one per line when printed.

    Args:
        path: the PRODUCT.yaml.
        offline: skip URL reachability (listed as one ``info`` line instead).
        landscape: a CNCF ``landscape.yml`` (file, or URL when online) to check ``vendorName`` against.
        timeout_s: per-URL timeout when online.
        version: the checklist version; by default from the ``vX.Y/`` folder, else ``kubernetesVersion``, else the
            set of requirement ids and levels.

    Raises:
        ConfigError: the file cannot be used at all (missing, not YAML, version unknown).
    """
    path = Path(path)
    data = read_product(path)
    problems: list[Problem] = []
    meta = data.get("metadata")
    spec = data.get("spec")

    path_version = schema.version_from_path(path)
    meta_version = schema.version_from_kubernetes_version(
        schema.lookup(meta, "kubernetesVersion")[1] if isinstance(meta, dict) else None
    )
    version = schema.require_version(
        version or path_version or meta_version or schema.version_from_spec(spec), str(path)
    )
    if not path_version:
        problems.append(
            Problem(
                "file",
                f"not inside a folder named v{version}/ (the program's validator picks the "
                "checklist from that folder: submit as vX.Y/<product>/PRODUCT.yaml)",
                WARNING,
            )
        )
    elif meta_version and meta_version != path_version:
        problems.append(
            Problem("metadata.kubernetesVersion", f"says {meta_version} but the folder is v{path_version}/", WARNING)
        )

    urls: list[tuple[str, str]] = []  # (where, url) to check online
    problems += _check_metadata(meta, urls)
    if landscape:
        problems += _check_vendor(meta, landscape, offline, timeout_s)
    problems += _check_spec(spec, version, path.parent, urls)

    if urls and offline:
        problems.append(Problem("file", f"{len(urls)} URL(s) not checked (offline)", INFO))
    elif urls:
        problems += _check_urls(urls, timeout_s)
    return problems


# -- metadata ----------------------------------------------------------------------------------------------------------
def _check_metadata(meta: Any, urls: list[tuple[str, str]]) -> list[Problem]:
    if not isinstance(meta, dict):
        return [Problem("metadata", "missing or not a mapping")]
    problems = []
    for key in schema.KNOWN_METADATA:
        actual, value = schema.lookup(meta, key)
        where = f"metadata.{key}"
        if actual is None:
            if key in schema.REQUIRED_METADATA:
                problems.append(Problem(where, "required field is missing"))
            continue
        if not isinstance(value, str):
            if key in schema.REQUIRED_METADATA or value is not None:
                problems.append(Problem(where, f"must be a string, not {type(value).__name__}"))
            continue
        if not value.strip():
            if key in schema.REQUIRED_METADATA:
                problems.append(Problem(where, "is empty"))
            continue
        if schema.is_placeholder(value):
            problems.append(Problem(where, f"still holds the template placeholder {value.strip()}"))
            continue
        if key == "k8sConformanceUrl" and not schema.K8S_CONFORMANCE_URL.match(value.strip()):
            problems.append(
                Problem(
                    where,
                    f"must be https://github.com/cncf/k8s-conformance/tree/master/vX.Y/<product> (got {value.strip()})",
                )
            )
        if key == "productLogoUrl" and not value.strip().lower().split("?")[0].endswith(schema.LOGO_SUFFIXES):
            problems.append(Problem(where, "should link to an SVG, EPS or AI file (proposed program rule)", WARNING))
        if key == "contactEmailAddress" and "@" not in value:
            problems.append(Problem(where, f"is not an e-mail address ({value})"))
        if value.strip().lower().startswith("http"):
            urls.append((where, value.strip()))
    return problems


def landscape_members(text: str) -> set[str]:
    """Names of the CNCF members in a ``landscape.yml`` text, without `` (member)`` / `` (supporter)``."""
    data = yaml.safe_load(text) or {}
    members: set[str] = set()
    for cat in data.get("landscape") or []:
        if not isinstance(cat, dict) or str(cat.get("name", "")).strip() != "CNCF Members":
            continue
        for sub in cat.get("subcategories") or []:
            for item in (sub or {}).get("items") or []:
                name = str((item or {}).get("name", "")).strip()
                for suffix in (" (member)", " (supporter)"):
                    if name.endswith(suffix):
                        name = name[: -len(suffix)]
                if name:
                    members.add(name.strip())
    return members


def _check_vendor(meta: Any, landscape: str | Path, offline: bool, timeout_s: float) -> list[Problem]:
    vendor = schema.lookup(meta, "vendorName")[1] if isinstance(meta, dict) else None
    if not isinstance(vendor, str) or not vendor.strip() or schema.is_placeholder(vendor):
        return []  # reported by the metadata rules
    source = str(landscape)
    try:
        if schema.URL.match(source):
            if offline:
                return [Problem("metadata.vendorName", "not checked against the landscape (offline)", INFO)]
            req = urllib.request.Request(source, headers={"User-Agent": schema.USER_AGENT})
            with urllib.request.urlopen(req, timeout=max(timeout_s, 60)) as resp:  # noqa: S310 - user-given URL
                text = resp.read().decode("utf-8")
        else:
            text = Path(source).read_text(encoding="utf-8")
        members = landscape_members(text)
    except (OSError, ValueError, yaml.YAMLError, urllib.error.URLError) as e:
        raise ConfigError(f"landscape file {source} is unusable: {e}") from None
    if vendor.strip() not in members:
        close = sorted(m for m in members if m.lower() == vendor.strip().lower())
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return [Problem("metadata.vendorName", f"'{vendor.strip()}' is not a CNCF member in the landscape{hint}")]
    return []


# -- spec --------------------------------------------------------------------------------------------------------------
def _check_spec(spec: Any, version: str, base: Path, urls: list[tuple[str, str]]) -> list[Problem]:
    if not isinstance(spec, dict):
        return [Problem("spec", "missing or not a mapping")]
    problems: list[Problem] = []
    expected = schema.expected_spec(version)
    known = {rid: (cat, level) for cat, rs in expected.items() for rid, level in rs}
    seen: dict[str, str] = {}
    for category, entries in spec.items():
        if not isinstance(entries, list):
            problems.append(Problem(f"spec.{category}", "must be a list of requirements"))
            continue
        for entry in entries:
            if not isinstance(entry, dict) or "id" not in entry:
                problems.append(Problem(f"spec.{category}", "an entry without an id"))
                continue
            rid = str(entry["id"])
            if rid in seen:
                problems.append(Problem(rid, f"listed twice (in {seen[rid]} and {category})", WARNING))
                continue
            seen[rid] = category
            if rid not in known:
                problems.append(
                    Problem(rid, f"is not a requirement of checklist {version} (ignored by the program)", WARNING)
                )
                continue
            want_category, level = known[rid]
            if category != want_category:
                problems.append(
                    Problem(rid, f"is under {category}; checklist {version} lists it under {want_category}")
                )
                continue
            problems += _check_requirement(rid, entry, level, base, urls)
    for category, rs in expected.items():
        if category not in spec:
            problems.append(Problem(f"spec.{category}", f"category is missing (checklist {version})"))
            continue
        for rid, _ in rs:
            if rid not in seen:
                problems.append(Problem(rid, f"is missing from spec.{category} (checklist {version})"))
    return problems


def _check_requirement(
    rid: str, entry: dict[str, Any], level: str, base: Path, urls: list[tuple[str, str]]
) -> list[Problem]:
    problems = []
    if str(entry.get("level", "")) != level:
        problems.append(
            Problem(rid, f"level is '{entry.get('level')}' but checklist says {level} (must not be changed)", WARNING)
        )
    status = entry.get("status", "")
    status = "" if status is None else status
    evidence = entry.get("evidence", [])
    evidence = [] if evidence is None else evidence
    notes = entry.get("notes", "")
    if not isinstance(evidence, list):
        problems.append(
            Problem(
                rid,
                "evidence must be a list of strings (the program's validator cannot read "
                f"a single {type(evidence).__name__})",
            )
        )
        evidence = []
    if not isinstance(status, str):
        return problems + [Problem(rid, f"status must be a string, not {type(status).__name__}")]
    if level == "SHOULD" and status == "" and not any(isinstance(e, str) and e.strip() for e in evidence):
        return problems  # a SHOULD left unanswered is allowed
    if status not in schema.STATUSES:
        what = "status is empty" if not status.strip() else f"status '{status}' is not valid"
        problems.append(Problem(rid, f"{what}; expected one of: {', '.join(schema.STATUSES)}"))
    elif level == "MUST" and status != "Implemented":
        problems.append(Problem(rid, f"MUST requirement has status '{status}'; the program accepts only 'Implemented'"))
    if status == "N/A" and not (isinstance(notes, str) and notes.strip()):
        problems.append(Problem(rid, "status N/A needs a justification in notes"))
    if level == "MUST" and not any(isinstance(e, str) and e.strip() for e in evidence):
        problems.append(Problem(rid, "MUST requirement lists no evidence", WARNING))
    for i, item in enumerate(evidence):
        if not isinstance(item, str):
            problems.append(Problem(rid, f"evidence[{i}] must be a string, not {type(item).__name__}"))
            continue
        item = item.strip()
        if not item:
            continue
        if schema.URL.match(item):
            urls.append((rid, item))
        # The program joins the entry to the file's folder as a path (a leading / does not make it absolute).
        elif not (base / item.lstrip("/")).exists():
            problems.append(Problem(rid, f"evidence file '{item}' does not exist (relative to {base})"))
    return problems


# -- online ------------------------------------------------------------------------------------------------------------
def url_problem(url: str, timeout_s: float) -> str | None:
    """None when ``url`` answers below 400 to HEAD (or, failing that, GET); else why not."""
    last = ""
    for method in ("HEAD", "GET"):
        req = urllib.request.Request(url, method=method, headers={"User-Agent": schema.USER_AGENT})
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:  # noqa: S310 - checking user-given URLs
                if resp.status < 400:
                    return None
                last = f"HTTP {resp.status}"
        except urllib.error.HTTPError as e:
            last = f"HTTP {e.code}"
        except (urllib.error.URLError, OSError, ValueError) as e:
            last = str(getattr(e, "reason", e))
    return last or "no answer"


def _check_urls(urls: list[tuple[str, str]], timeout_s: float) -> list[Problem]:
    unique = sorted({u for _, u in urls})
    workers = min(8, max(1, len(unique)), (os.cpu_count() or 2) * 4)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        answers = dict(zip(unique, pool.map(lambda u: url_problem(u, timeout_s), unique), strict=True))
    return [Problem(where, f"URL {url} is not reachable ({answers[url]})") for where, url in urls if answers[url]]
