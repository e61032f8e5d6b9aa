"""A compact JSON encoder made once, for the hot paths (every frame, every MQTT payload).

``json.JSONEncoder.encode`` builds a new C encoder (and a dict for circular references)
on every call; that setup costs more than encoding a small message. :func:`compact_encoder`
builds the C encoder once, without the circular-reference dict: a circular value then
overruns the recursion limit, which is reported as the ``ValueError`` ``json`` raises for it.
A lone string or int is encoded without it (its setup costs more than they do).
The output is byte for byte that of ``json.dumps(value, separators=(",", ":"), ...)``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from json import encoder as _encoder
from typing import Any

__all__ = ["compact_encoder"]


def _default(value: Any) -> Any:
    raise TypeError("Object of type %s is not JSON serializable" % type(value).__name__)


def compact_encoder(*, ensure_ascii: bool = True, allow_nan: bool = False) -> Callable[[Any], str]:
    """Return ``encode(value) -> str``: compact JSON (``","`` and ``":"`` separators).

    ``encode`` raises ``TypeError`` for a value JSON cannot carry and ``ValueError`` for
    nan / inf (unless ``allow_nan``) and for a circular reference, as ``json.dumps`` does.
    """
    make = getattr(_encoder, "c_make_encoder", None)
    if make is None:  # no C accelerator (another Python): json's own encoder
        return json.JSONEncoder(ensure_ascii=ensure_ascii, separators=(",", ":"), allow_nan=allow_nan).encode
    strings: Callable[[str], str] = _encoder.encode_basestring_ascii if ensure_ascii else _encoder.encode_basestring
    c_encode = make(None, _default, strings, None, ":", ",", False, False, allow_nan)
    join = "".join
    int_repr = int.__repr__

    def encode(value: Any) -> str:
        kind = type(value)  # a lone string or int (event data, often) needs no encoder set up
        if kind is str:
            return strings(value)
        if kind is int:
            return int_repr(value)
        try:
            return join(c_encode(value, 0))
        except RecursionError:
            raise ValueError("Circular reference detected") from None

    return encode
