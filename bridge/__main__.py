"""``python -m bridge``: the ``sig-bridge`` service."""

import sys

from .cli import main

sys.exit(main())
