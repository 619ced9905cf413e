"""Project files agree with each other: environment.yml vs pyproject.toml, notebooks vs their sources and defaults."""

import ast
import re
import tomllib
from pathlib import Path

import nbformat
import pytest
import yaml

from aiconf import notebooks
from aiconf.params import load_defaults

ROOT = Path(__file__).resolve().parents[2]
# PyPI name -> conda-forge name where they differ
CONDA_NAMES = {"kubernetes": "python-kubernetes", "prometheus-client": "prometheus_client"}


def _pins(specs):
    out = {}
    for spec in specs:
        m = re.match(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?\s*[=<>~!]=*\s*([\w.]+)", spec)
        if m:
            out[m.group(1).lower()] = m.group(2)
    return out


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = _pins(project["dependencies"] + project["optional-dependencies"]["dev"] + project["optional-dependencies"]["lab"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    conda = {}
    pip = {}
    for item in env:
        if isinstance(item, dict):
            pip.update(_pins(item["pip"]))
        elif "=" in item:
            name, version = item.split("=", 1)
            conda[name.lower()] = version
    for name, version in wanted.items():
        got = conda.get(CONDA_NAMES.get(name, name).lower(), pip.get(name))
        assert got == version, f"{name}: pyproject pins {version}, environment.yml has {got}"


def test_notebooks_are_in_sync_with_their_sources_and_have_no_outputs():
    assert notebooks.stale() == []
    for path in notebooks.NOTEBOOK_DIR.glob("*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, f"{path.name} has outputs"


def _parameters_cell(path):
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"{path.name} needs exactly one cell tagged 'parameters'"
    values = {}
    for node in ast.parse(cells[0].source).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            values[node.targets[0].id] = ast.literal_eval(node.value)
    return values


@pytest.mark.parametrize("path", sorted(notebooks.NOTEBOOK_DIR.glob("*.ipynb")), ids=lambda p: p.stem)
def test_parameters_cell_defaults_equal_default_yaml(path):
    defaults = load_defaults()
    values = _parameters_cell(path)
    for key in ("run_id", "output_dir"):
        if path.stem not in ("00_preflight", "summary"):
            assert key in values, f"{path.name} must accept the runner's {key}"
    for key, value in values.items():
        if key in defaults:
            assert value == defaults[key], f"{path.name}: {key} = {value!r} but default.yaml has {defaults[key]!r}"
