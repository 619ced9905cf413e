"""``python -m aiconf.sandbox.deviceplugin``: run the fake GPU device plugin."""

import sys

from aiconf.sandbox.deviceplugin.plugin import main

sys.exit(main())
