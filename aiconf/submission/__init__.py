"""A CNCF Kubernetes AI Conformance submission: PRODUCT.yaml from the program's template, README, evidence,
checksums, and our own validator of the program's rules.

Public entry points (the CLI calls these):

- :func:`build` ``(run_dir, template, metadata, out_dir=None, policy=None) -> Bundle``
- :func:`validate` ``(path, offline=True, *, landscape=None, timeout_s=10.0, version=None) -> list[Problem]``
"""

from aiconf.submission.build import Bundle, build
from aiconf.submission.validator import Problem, is_valid, validate

__all__ = ["Bundle", "Problem", "build", "is_valid", "validate"]
