"""Requirement checks, one module per requirement id (imported by :func:`aiconf.registry.load_all`)."""
