"""What auditors and the CNCF program consume: the offline HTML report, JUnit/e2e logs, run comparisons.

Public entry points (the runner and the CLI call these):

- :func:`build_report` ``(run_dir, *, baseline=None) -> Path``: ``<run>/report.html``
- :func:`write_junit` ``(run_dir) -> Path``: ``<run>/junit.xml``
- :func:`write_e2e_log` ``(run_dir) -> Path``: ``<run>/e2e.log``
- :func:`compare` ``(run_a, run_b) -> Comparison``
- :func:`load_run` ``(run_dir) -> Run``
"""

from aiconf.report.compare import Comparison, compare
from aiconf.report.html import ReportError, build_report, export_html, external_references
from aiconf.report.junit import write_e2e_log, write_junit
from aiconf.report.run import Run, load_run

__all__ = [
    "Comparison",
    "ReportError",
    "Run",
    "build_report",
    "compare",
    "export_html",
    "external_references",
    "load_run",
    "write_e2e_log",
    "write_junit",
]
