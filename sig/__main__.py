"""``python -m sig``: the ``sig`` command line (see :mod:`sig.cli`)."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
