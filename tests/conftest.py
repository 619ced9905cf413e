"""Shared test configuration: tiers by folder and marker (see README "Tests")."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")
