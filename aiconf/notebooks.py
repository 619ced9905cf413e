"""Notebook sources: each ``notebooks/<name>.py`` (jupytext percent format) is the source of ``notebooks/<name>.ipynb``.

Developers edit the ``.py`` (reviewable diffs); ``python -m aiconf.notebooks sync`` regenerates the ``.ipynb``
without outputs; ``check`` fails when they differ (run by the tests), so committed notebooks are always clean.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jupytext
import nbformat

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def render(source: Path) -> nbformat.NotebookNode:
    nb = jupytext.read(source, fmt="py:percent")
    nb.metadata = {"kernelspec": KERNELSPEC, "language_info": {"name": "python"}}
    for i, cell in enumerate(nb.cells):
        cell.id = f"{source.stem[:40].replace('_', '-')}-{i}"
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.metadata.pop("lines_to_next_cell", None)
    return nb


def text(nb: nbformat.NotebookNode) -> str:
    return nbformat.writes(nb, version=4) + "\n"


def sources(directory: Path = NOTEBOOK_DIR) -> list[Path]:
    return sorted(p for p in directory.glob("*.py") if not p.name.startswith("_"))


def sync(directory: Path = NOTEBOOK_DIR) -> list[Path]:
    written = []
    for src in sources(directory):
        target = src.with_suffix(".ipynb")
        new = text(render(src))
        if not target.exists() or target.read_text() != new:
            target.write_text(new)
            written.append(target)
    return written


def stale(directory: Path = NOTEBOOK_DIR) -> list[str]:
    problems = []
    for src in sources(directory):
        target = src.with_suffix(".ipynb")
        if not target.exists():
            problems.append(f"{target.name} is missing (run: python -m aiconf.notebooks sync)")
        elif target.read_text() != text(render(src)):
            problems.append(f"{target.name} differs from {src.name} (run: python -m aiconf.notebooks sync)")
    for nb_path in directory.glob("*.ipynb"):
        if not nb_path.with_suffix(".py").exists():
            problems.append(f"{nb_path.name} has no source {nb_path.with_suffix('.py').name}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aiconf.notebooks")
    parser.add_argument("command", choices=["sync", "check"])
    args = parser.parse_args(argv)
    if args.command == "sync":
        for path in sync():
            print(f"wrote {path}")
        return 0
    problems = stale()
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
