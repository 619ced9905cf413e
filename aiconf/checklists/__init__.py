"""The checklist versions as data: which requirements each version lists, at which level.

``requirements.yaml`` beside this file is the single source; nothing about levels or categories is hard-coded in
the checks. Version selection maps a server's minor version to a checklist version.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from aiconf.errors import ConfigError

DATA = Path(__file__).with_name("requirements.yaml")


@dataclass(frozen=True)
class Requirement:
    id: str
    category: str
    title: str
    summary: str
    levels: dict[str, str]  #: checklist version -> MUST | SHOULD
    needs: tuple[str, ...] = ()
    kar: str | None = None
    exclusive: bool = False

    def level(self, version: str) -> str | None:
        """MUST, SHOULD, or None when ``version`` does not list this requirement."""
        return self.levels.get(version)


@dataclass(frozen=True)
class Checklist:
    versions: tuple[str, ...]
    categories: tuple[str, ...]
    requirements: tuple[Requirement, ...]

    def ids(self) -> list[str]:
        return [r.id for r in self.requirements]

    def get(self, requirement_id: str) -> Requirement:
        for r in self.requirements:
            if r.id == requirement_id:
                return r
        raise ConfigError(f"unknown requirement id '{requirement_id}' (known: {', '.join(self.ids())})")

    def for_version(self, version: str) -> list[Requirement]:
        """Requirements listed by ``version``, in the program's category order."""
        self.check_version(version)
        listed = [r for r in self.requirements if r.level(version)]
        return sorted(listed, key=lambda r: self.categories.index(r.category))

    def check_version(self, version: str) -> str:
        if version not in self.versions:
            raise ConfigError(f"unsupported checklist version '{version}' (supported: {', '.join(self.versions)})")
        return version


@cache
def load(path: Path = DATA) -> Checklist:
    raw = yaml.safe_load(Path(path).read_text())
    categories = tuple(raw["categories"])
    reqs = []
    for r in raw["requirements"]:
        if r["category"] not in categories:
            raise ConfigError(f"{path}: requirement {r['id']} has unknown category {r['category']}")
        reqs.append(
            Requirement(
                id=r["id"],
                category=r["category"],
                title=r["title"],
                summary=r["summary"],
                levels={str(k): v for k, v in r["levels"].items()},
                needs=tuple(r.get("needs", ())),
                kar=r.get("kar"),
                exclusive=bool(r.get("exclusive", False)),
            )
        )
    return Checklist(versions=tuple(raw["versions"]), categories=categories, requirements=tuple(reqs))


def version_from_server(git_version: str, *, nearest: bool = False) -> str:
    """The checklist version for a server version string such as ``v1.36.3`` or ``v1.35.2-gke.100``.

    Args:
        git_version: the server's ``gitVersion``.
        nearest: for a server outside the supported range, use the nearest supported version instead of failing
            (only when the user asked for it explicitly).

    Raises:
        ConfigError: unparseable, or outside 1.33-1.36 without ``nearest``.
    """
    m = re.match(r"v?(\d+)\.(\d+)", git_version or "")
    if not m:
        raise ConfigError(f"cannot read a Kubernetes version from '{git_version}'")
    minor = f"{m.group(1)}.{m.group(2)}"
    versions = load().versions
    if minor in versions:
        return minor
    if nearest:
        as_num = [(abs(int(v.split(".")[1]) - int(m.group(2))), v) for v in versions]
        return min(as_num)[1]
    raise ConfigError(
        f"server version {git_version} has no AI Conformance checklist (supported: {', '.join(versions)}); "
        "pass --checklist-version X.Y to evaluate against one explicitly"
    )
