"""The program's checklist template (``AIConformance-X.Y.yaml``, supplied by the user) and the user's metadata file.

The template is read with ruamel.yaml in round-trip mode, so the filled PRODUCT.yaml keeps the template's comments,
key order, quoting and descriptions; only ``status``, ``evidence``, ``notes`` and metadata values change. The
indentation is detected from the template's text (the program's templates use 2/4/2).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from aiconf.errors import ConfigError
from aiconf.submission import schema

USER_SECTIONS = ("metadata", "evidence", "requirements", "readme")
README_KEYS = ("about", "prerequisites", "reproduce")


@dataclass
class Template:
    path: Path
    doc: CommentedMap
    version: str
    yaml: YAML

    def requirements(self) -> Iterator[tuple[str, CommentedMap]]:
        """``(category, entry)`` for every requirement, in the template's order."""
        for category, entries in self.doc["spec"].items():
            for entry in entries or []:
                if isinstance(entry, dict) and "id" in entry:
                    yield str(category), entry

    def dumps(self) -> str:
        buf = io.StringIO()
        self.yaml.dump(self.doc, buf)
        return buf.getvalue()


def _indentation(text: str) -> tuple[int, int, int]:
    """``(mapping, sequence, offset)`` as ruamel.yaml wants them, read from the first nested map and list."""
    mapping, sequence, offset = 2, 4, 2
    lines = text.splitlines()
    for i, line in enumerate(lines[:-1]):
        stripped = line.split("#", 1)[0].rstrip()
        if not stripped.endswith(":") or stripped.lstrip().startswith("-"):
            continue
        parent = len(line) - len(line.lstrip())
        nxt = next((x for x in lines[i + 1 :] if x.strip() and not x.lstrip().startswith("#")), "")
        col = len(nxt) - len(nxt.lstrip())
        if nxt.lstrip().startswith("- "):
            offset = col - parent
            rest = nxt.lstrip()[2:]
            sequence = offset + 2 + (len(rest) - len(rest.lstrip()))
            break
        if col > parent and mapping == 2:
            mapping = col - parent
    return mapping, max(sequence, offset + 2), offset


def load_template(path: str | Path) -> Template:
    """Read the program's checklist template.

    Raises:
        ConfigError: unreadable, not YAML, no ``metadata``/``spec``, or no recognisable checklist version.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"template {path} is unreadable: {e}") from None
    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 4096  # never re-wrap the template's long description lines
    mapping, sequence, offset = _indentation(text)
    y.indent(mapping=mapping, sequence=sequence, offset=offset)
    try:
        doc = y.load(text)
    except YAMLError as e:
        raise ConfigError(f"template {path} is not valid YAML: {schema.yaml_error(e)}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("spec"), dict) or not isinstance(doc.get("metadata"), dict):
        raise ConfigError(f"template {path} has no metadata and spec: is it an AIConformance-X.Y.yaml checklist?")
    by_name = schema.VERSION_IN_TEMPLATE_NAME.search(path.name)
    by_content = schema.version_from_spec(doc["spec"])
    by_meta = schema.version_from_kubernetes_version(schema.lookup(doc["metadata"], "kubernetesVersion")[1])
    version = schema.require_version(
        (by_name.group(1) if by_name else None) or by_meta or by_content, f"template {path}"
    )
    if by_content and by_content != version:
        raise ConfigError(f"template {path} is named for {version} but its requirements are those of {by_content}")
    return Template(path, doc, version, y)


@dataclass
class UserInput:
    """The user's metadata file: metadata values, extra evidence, manual answers, README text."""

    path: Path
    metadata: dict[str, Any]
    evidence: dict[str, list[str]] = field(default_factory=dict)
    requirements: dict[str, dict[str, Any]] = field(default_factory=dict)
    readme: dict[str, str] = field(default_factory=dict)


def load_user_input(path: str | Path) -> UserInput:
    """Read the user's metadata file.

    The file has a ``metadata:`` mapping (the template's metadata keys, camelCase or snake_case) and optionally
    ``evidence: {requirement_id: [url, ...]}``, ``requirements: {requirement_id: {status, notes, evidence}}`` for
    what the toolkit could not decide, and ``readme: {about, prerequisites, reproduce}``. A file with only metadata
    keys at the top level is read as the metadata itself.

    Raises:
        ConfigError: unreadable, not YAML, or wrongly shaped (names the key).
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"metadata file {path} is unreadable: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"metadata file {path} is not valid YAML: {schema.yaml_error(e)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"metadata file {path} must be a YAML mapping (metadata: {{platformName: ...}})")
    if "metadata" not in data:
        data = {"metadata": data}
    unknown = [k for k in data if k not in USER_SECTIONS]
    if unknown:
        raise ConfigError(
            f"metadata file {path}: unknown section(s) {', '.join(map(str, unknown))} "
            f"(allowed: {', '.join(USER_SECTIONS)})"
        )
    meta = {} if data.get("metadata") is None else data["metadata"]
    if not isinstance(meta, dict):
        raise ConfigError(f"metadata file {path}: metadata must be a mapping")
    evidence = data.get("evidence") or {}
    if not isinstance(evidence, dict) or not all(
        isinstance(v, list) and all(isinstance(x, str) for x in v) for v in evidence.values()
    ):
        raise ConfigError(f"metadata file {path}: evidence must map requirement ids to lists of URLs")
    reqs = data.get("requirements") or {}
    if not isinstance(reqs, dict) or not all(isinstance(v, dict) for v in reqs.values()):
        raise ConfigError(f"metadata file {path}: requirements must map requirement ids to {{status, notes, evidence}}")
    for rid, answer in reqs.items():
        extra = set(answer) - {"status", "notes", "evidence"}
        if extra:
            raise ConfigError(f"metadata file {path}: requirements.{rid} has unknown key(s) {', '.join(sorted(extra))}")
        if "status" in answer and answer["status"] not in (*schema.STATUSES, ""):
            raise ConfigError(
                f"metadata file {path}: requirements.{rid}.status '{answer['status']}' is not one of "
                f"{', '.join(schema.STATUSES)}"
            )
        if "evidence" in answer and not (
            isinstance(answer["evidence"], list) and all(isinstance(x, str) for x in answer["evidence"])
        ):
            raise ConfigError(f"metadata file {path}: requirements.{rid}.evidence must be a list of strings")
    readme = data.get("readme") or {}
    if not isinstance(readme, dict) or set(readme) - set(README_KEYS):
        raise ConfigError(f"metadata file {path}: readme may only have {', '.join(README_KEYS)}")
    return UserInput(
        path,
        {str(k): v for k, v in meta.items()},
        {str(k): list(v) for k, v in evidence.items()},
        {str(k): dict(v) for k, v in reqs.items()},
        {k: str(v) for k, v in readme.items()},
    )


# -- filling -----------------------------------------------------------------------------------------------------------
def quoted(text: str) -> DoubleQuotedScalarString:
    """A one-line double-quoted YAML string (the template's style)."""
    return DoubleQuotedScalarString(re.sub(r"\s*\n\s*", " ", str(text)).strip())


def fill_metadata(template: Template, values: dict[str, Any]) -> list[str]:
    """Write the user's metadata into the template; return warnings. Keys the template lacks but the program
    requires (``k8sConformanceUrl`` in the 1.36 template) are added; an optional key set to null/"" is removed."""
    meta: CommentedMap = template.doc["metadata"]
    warnings = []
    given: dict[str, Any] = {}
    for key, value in values.items():
        canonical = schema.camel(key) if "_" in key else key
        if canonical not in schema.KNOWN_METADATA:
            warnings.append(f"metadata.{key}: not a PRODUCT.yaml metadata key; ignored")
            continue
        given[canonical] = value
    for key, value in given.items():
        actual, existing = schema.lookup(meta, key)
        if value is None or (isinstance(value, str) and not value.strip()):
            if key in schema.OPTIONAL_METADATA and actual is not None:
                del meta[actual]
            continue
        meta[actual or key] = _scalar(value, existing)
    return warnings


def _scalar(value: Any, existing: Any) -> Any:
    """The template's style: double-quoted, except where the template wrote a plain string (``v1.35``) and the new
    value stays a string when read back."""
    text = str(value).strip()
    if isinstance(existing, str) and not isinstance(existing, DoubleQuotedScalarString):
        try:
            if yaml.safe_load(text) == text:
                return text
        except yaml.YAMLError:
            pass
    return quoted(text)


def placeholders_left(template: Template) -> list[str]:
    meta = template.doc["metadata"]
    return [str(k) for k, v in meta.items() if schema.is_placeholder(v)]


def set_answer(entry: CommentedMap, status: str, evidence: list[str], notes: str) -> None:
    """Fill one requirement in place (``evidence`` keeps its node, so the template's comment stays beside it)."""
    entry["status"] = quoted(status)
    seq = entry.get("evidence")
    if not isinstance(seq, CommentedSeq):
        seq = CommentedSeq()
        entry["evidence"] = seq
    del seq[:]
    seq.extend(quoted(e) for e in evidence)
    entry["notes"] = quoted(notes)
