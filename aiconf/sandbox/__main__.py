"""``python -m aiconf.sandbox …``: the same commands as ``aiconf sandbox …`` (see :mod:`aiconf.sandbox.cli`)."""

from aiconf.sandbox.cli import main

main()
