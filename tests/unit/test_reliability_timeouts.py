"""Every wait a check makes has a bound that comes from a parameter (issue 9, "timeouts").

Static: each call of ``wait_until`` / ``wait_for`` / ``wait_for_deletion`` / ``sample`` in ``aiconf/checks/`` must
pass a timeout, and the expression must read a parameter of ``parameters/default.yaml`` (``p.gang_timeout_s``), or a
local variable computed from one (``remaining = p.x_timeout_s - elapsed``). The waits themselves are bounded in
``aiconf/kube.py`` (tests/integration/test_reliability_apiserver.py shows the bound holds while the API server is away).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from aiconf.params import load_defaults

CHECKS_DIR = Path(__file__).resolve().parents[2] / "aiconf" / "checks"
#: The timeout's position among the positional arguments of each wait helper (aiconf/kube.py).
TIMEOUT_ARG = {"wait_until": 4, "wait_for": 5, "wait_for_deletion": 4, "sample": 3}
PARAMS = set(load_defaults())


def _reads_parameter(expr: ast.AST, assignments: dict[str, list[ast.AST]], depth: int = 0) -> bool:
    for node in ast.walk(expr):
        if isinstance(node, ast.Attribute) and node.attr in PARAMS:
            return True
        if isinstance(node, ast.Name) and node.id in assignments and depth < 3 \
                and any(_reads_parameter(v, assignments, depth + 1) for v in assignments[node.id]):
            return True
    return False


def wait_calls() -> list[tuple[str, str, ast.AST | None, dict[str, list[ast.AST]]]]:
    calls = []
    for path in sorted(CHECKS_DIR.glob("*.py")):
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            assignments: dict[str, list[ast.AST]] = {}
            for node in ast.walk(fn):
                if isinstance(node, ast.Assign):
                    for target in node.targets:
                        if isinstance(target, ast.Name):
                            assignments.setdefault(target.id, []).append(node.value)
                elif isinstance(node, (ast.AugAssign, ast.AnnAssign)) and isinstance(node.target, ast.Name) \
                        and node.value is not None:
                    assignments.setdefault(node.target.id, []).append(node.value)
            for node in ast.walk(fn):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in TIMEOUT_ARG:
                    kw = {k.arg: k.value for k in node.keywords}
                    pos = TIMEOUT_ARG[node.func.attr]
                    expr = kw.get("timeout_s", node.args[pos] if len(node.args) > pos else None)
                    calls.append((f"{path.stem}:{node.lineno} {node.func.attr}", fn.name, expr, assignments))
    return calls


CALLS = wait_calls()


def test_the_checks_wait():
    assert len(CALLS) >= 20  # the scan finds the waits (guards against a scan that silently finds nothing)


@pytest.mark.parametrize("where, function, expr, assignments", CALLS, ids=[c[0] for c in CALLS])
def test_every_wait_is_bounded_by_a_parameter(where, function, expr, assignments):
    assert expr is not None, f"{where} in {function}() has no timeout"
    assert _reads_parameter(expr, assignments), (
        f"{where} in {function}(): the timeout {ast.unparse(expr)!r} does not come from a parameter")


def test_kube_waits_have_no_unbounded_default():
    """The helpers take the bound as a required argument: a check cannot forget it."""
    import inspect

    from aiconf.kube import Kube

    for name in TIMEOUT_ARG:
        param = inspect.signature(getattr(Kube, name)).parameters["timeout_s"]
        assert param.default is inspect.Parameter.empty, name
