"""Shared test configuration: tiers by folder and marker (see README "Tests")."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import signal

import pytest


@pytest.fixture(autouse=True)
def _restore_signal_handlers():
    """Workload entry points run in-process by tests install SIGTERM/SIGINT handlers: don't let them leak."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        if signal.getsignal(sig) is not handler:
            signal.signal(sig, handler)
