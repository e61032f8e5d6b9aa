"""Deprecated path of the ``sig`` command, kept for one release: it lives in :mod:`sig_apps.cli`.

The applications sit above the library (``sig`` imports nothing of them); this module
and ``python -m sig`` are the two compatibility entry points that still reach up.
"""

from __future__ import annotations

from sig_apps.cli import build_parser, main

__all__ = ["build_parser", "main"]
