"""Name-keyed registry of requirement checks: ``@check("gang_scheduling")`` on a module's ``run(ctx)``.

Check modules are imported explicitly by :func:`load_all` (no entry-point magic), so a missing module is an import
error at start, not a silently absent requirement.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiconf.errors import ConfigError

if TYPE_CHECKING:
    from aiconf.context import CheckContext

#: Check modules shipped with the toolkit, by requirement id (module ``aiconf.checks.<id>``).
CHECK_MODULES: tuple[str, ...] = (
    "dra_support",
    "gang_scheduling",
    "pod_autoscaling",
    "cluster_autoscaling",
    "robust_controller",
    "accelerator_metrics",
    "secure_accelerator_access",
    "ai_inference",
    "driver_runtime_management",
    "virtualized_accelerator",
    "gpu_sharing",
    "high_performance_networking",
    "advanced_inference_ingress",
    "disaggregated_inference",
    "ai_service_metrics",
)


@dataclass(frozen=True)
class CheckSpec:
    """A registered check.

    Attributes:
        requirement_id: the upstream requirement id.
        run: ``run(ctx)`` records sub-checks on the context; it may raise (the executor turns errors into results).
        subchecks: sub-check ids the check declares up front; one never recorded makes the verdict UNKNOWN.
        charts: ``{name: draw(ax, frames, result)}`` used by the notebook and the summary report.
        preflight: ``preflight(kube, params) -> (can_demonstrate: bool, detail: str)`` for ``aiconf plan``;
            read-only, creates nothing.
    """

    requirement_id: str
    run: Callable[[CheckContext], None]
    subchecks: tuple[str, ...] = ()
    charts: dict[str, Callable[..., Any]] = field(default_factory=dict)
    preflight: Callable[..., tuple[bool, str]] | None = None


_REGISTRY: dict[str, CheckSpec] = {}


def check(
    requirement_id: str,
    *,
    subchecks: tuple[str, ...] = (),
    charts: dict[str, Callable[..., Any]] | None = None,
    preflight: Callable[..., tuple[bool, str]] | None = None,
) -> Callable[[Callable[[CheckContext], None]], Callable[[CheckContext], None]]:
    """Register ``run`` as the check of ``requirement_id``."""

    def register(run: Callable[[CheckContext], None]) -> Callable[[CheckContext], None]:
        if requirement_id in _REGISTRY and _REGISTRY[requirement_id].run is not run:
            raise ValueError(f"two checks registered for '{requirement_id}'")
        _REGISTRY[requirement_id] = CheckSpec(requirement_id, run, tuple(subchecks), dict(charts or {}), preflight)
        return run

    return register


def load_all() -> dict[str, CheckSpec]:
    for name in CHECK_MODULES:
        importlib.import_module(f"aiconf.checks.{name}")
    return dict(_REGISTRY)


def get(requirement_id: str) -> CheckSpec:
    if requirement_id not in _REGISTRY and requirement_id in CHECK_MODULES:
        importlib.import_module(f"aiconf.checks.{requirement_id}")
    try:
        return _REGISTRY[requirement_id]
    except KeyError:
        raise ConfigError(f"no check is implemented for requirement '{requirement_id}'") from None


def implemented() -> list[str]:
    """Requirement ids that have a check module in this installation."""
    return [name for name in CHECK_MODULES if importlib.util.find_spec(f"aiconf.checks.{name}") is not None]
