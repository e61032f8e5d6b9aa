"""``python -m sig``: the ``sig`` command line (it lives in :mod:`sig_apps.cli`)."""

from __future__ import annotations

import sys

from sig_apps.cli import main

sys.exit(main())
