"""Carriers: how routers move messages (TCP, serial, in-process)."""

from __future__ import annotations

from .._carrier import Carrier

__all__ = ["Carrier"]
