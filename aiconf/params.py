"""Parameters: ``parameters/default.yaml`` (every knob, with its type given by its default), profiles that override
it, and ``--set key=value`` overrides on top. Unknown keys and wrong types are rejected with one line naming the key
and the file.

A profile is a YAML mapping of overrides; ``extends: <profile>`` chains profiles (the default is always the base).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from aiconf.errors import ConfigError

REPO_PARAMETERS = Path(__file__).resolve().parent.parent / "parameters"

#: Keys whose values never leave the process unredacted (run.json, reports).
SECRET_KEY = re.compile(r"(token|password|secret|credential|apikey|api_key)", re.I)


def parameters_dir() -> Path:
    return Path(os.environ.get("AICONF_PARAMETERS_DIR", REPO_PARAMETERS))


class Params(Mapping[str, Any]):
    """Read-only parameter values with attribute access (``params.gang_timeout_s``)."""

    def __init__(self, values: dict[str, Any], sources: dict[str, str] | None = None):
        self._values = dict(values)
        self._sources = dict(sources or {})

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __getattr__(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(f"no parameter named '{key}'") from None

    def source(self, key: str) -> str:
        """Where the value came from: ``default``, a profile file, or ``--set``."""
        return self._sources.get(key, "default")

    def replace(self, **changes: Any) -> Params:
        merged = Params(self._values, self._sources)
        for key, value in changes.items():
            merged._values[key] = _coerce(key, value, self._values, "override")
            merged._sources[key] = "override"
        return merged

    def redacted(self) -> dict[str, Any]:
        return {k: ("<redacted>" if SECRET_KEY.search(k) and v else v) for k, v in self._values.items()}

    def to_dict(self) -> dict[str, Any]:
        return dict(self._values)


def load_defaults(directory: Path | None = None) -> dict[str, Any]:
    path = (directory or parameters_dir()) / "default.yaml"
    return _read_mapping(path)


def profile_path(profile: str | Path, directory: Path | None = None) -> Path:
    p = Path(profile)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise ConfigError(f"profile file {p} does not exist")
        return p
    candidate = (directory or parameters_dir()) / f"{profile}.yaml"
    if not candidate.is_file():
        known = sorted(x.stem for x in (directory or parameters_dir()).glob("*.yaml"))
        raise ConfigError(f"unknown profile '{profile}' (known: {', '.join(known)})")
    return candidate


def load_parameters(
    profile: str | Path | None = None,
    overrides: Mapping[str, Any] | Iterable[str] | None = None,
    *,
    directory: Path | None = None,
) -> Params:
    """Merge default.yaml, the profile chain and overrides, validating every key and type.

    Args:
        profile: a profile name (``parameters/<name>.yaml``) or a path to a YAML file; None = defaults only.
        overrides: ``{"key": value}`` or ``["key=value", ...]`` (``--set`` strings; values parsed as YAML scalars).
        directory: the parameters folder (tests use a temporary one).
    """
    directory = directory or parameters_dir()
    defaults = load_defaults(directory)
    values = dict(defaults)
    sources: dict[str, str] = {}
    if profile not in (None, "", "default"):
        for path in _profile_chain(profile, directory):
            for key, value in _read_mapping(path).items():
                if key == "extends":
                    continue
                values[key] = _coerce(key, value, defaults, str(path))
                sources[key] = str(path)
    for key, value in _parse_overrides(overrides).items():
        values[key] = _coerce(key, value, defaults, "--set")
        sources[key] = "--set"
    return Params(values, sources)


def _profile_chain(profile: str | Path, directory: Path) -> list[Path]:
    chain: list[Path] = []
    current: str | Path | None = profile
    while current not in (None, "", "default"):
        path = profile_path(current, directory)
        if path in chain:
            raise ConfigError(f"profile {path} extends itself (cycle: {' -> '.join(map(str, chain))})")
        chain.append(path)
        current = _read_mapping(path).get("extends")
    return list(reversed(chain))


def _read_mapping(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as e:
        raise ConfigError(f"cannot read parameters file {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"parameters file {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"parameters file {path} must hold a mapping of key: value, not {type(data).__name__}")
    return data


def _parse_overrides(overrides: Mapping[str, Any] | Iterable[str] | None) -> dict[str, Any]:
    if overrides is None:
        return {}
    if isinstance(overrides, Mapping):
        return dict(overrides)
    parsed: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got '{item}'")
        try:
            parsed[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            parsed[key.strip()] = raw
    return parsed


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a mapping"}.get(
        type(value), type(value).__name__
    )


def _coerce(key: str, value: Any, defaults: Mapping[str, Any], where: str) -> Any:
    if key not in defaults:
        close = [k for k in defaults if k.split("_")[0] == key.split("_")[0]][:5]
        hint = f" (did you mean: {', '.join(close)}?)" if close else ""
        raise ConfigError(f"unknown parameter '{key}' in {where}{hint}")
    default = defaults[key]
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise ConfigError(f"parameter '{key}' in {where} must be a boolean (true/false), got {value!r}")
    if isinstance(default, int) and not isinstance(default, bool):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"parameter '{key}' in {where} must be an integer, got {value!r}")
    if isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"parameter '{key}' in {where} must be a number, got {value!r}")
    if isinstance(default, str):
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"parameter '{key}' in {where} must be a string, got {_type_name(value)} {value!r}")
    if isinstance(default, (list, dict)) and not isinstance(value, type(default)):
        raise ConfigError(f"parameter '{key}' in {where} must be {_type_name(default)}, got {value!r}")
    return value
