"""Validation of identifiers and listeners.

pysig identifiers are "JSON-serializable and hashable": ``str``, ``int`` or
``float``. ``None`` means "any" where a subscription allows it. ``bool`` is
refused because ``True == 1`` would silently merge two keys.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Union

from ._errors import InvalidArgumentError, InvalidIdentifierError

__all__ = [
    "Ident",
    "CHANNEL_DECORATOR",
    "EVENT_CONNECT",
    "EVENT_DISCONNECT",
    "BUILTIN_EVENTS",
    "check_ident",
    "check_optional_ident",
    "check_listener",
    "is_channel",
    "normalize_events",
]

#: A sender, event or request method identifier.
Ident = Union[str, int, float]  # noqa: UP007 - a runtime alias that 3.10's typing also accepts

#: Prefix that marks an event as a channel shared by every sender declaring it.
CHANNEL_DECORATOR = "#"


def check_ident(value: object, what: str) -> Ident:
    """Return ``value`` if it is a usable identifier, else raise.

    Raises:
        InvalidIdentifierError: ``value`` is not a str, int or float (or is a bool).
        InvalidArgumentError: ``value`` is a float that JSON cannot carry (nan, inf).
    """
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise InvalidIdentifierError(
            "%s must be a str, int or float, not %s (%r)" % (what, type(value).__name__, value)
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidArgumentError("%s must be a finite number, not %r" % (what, value))
    return value


def check_optional_ident(value: object, what: str) -> Ident | None:
    """Like :func:`check_ident`, but ``None`` (meaning "any") is allowed."""
    if value is None:
        return None
    return check_ident(value, what)


def check_listener(listener: Any) -> Callable[..., Any]:
    """Return ``listener`` if it is callable, else raise :class:`InvalidIdentifierError`."""
    if not callable(listener):
        raise InvalidIdentifierError("listener must be callable, not %s" % type(listener).__name__)
    return listener  # type: ignore[no-any-return]


def is_channel(name: object) -> bool:
    """Tell whether ``name`` is a channel event (a str starting with ``#``)."""
    return isinstance(name, str) and name.startswith(CHANNEL_DECORATOR)

#: Built-in channel event fired when a sender connects.
EVENT_CONNECT = "#connect"
#: Built-in channel event fired when a sender disconnects.
EVENT_DISCONNECT = "#disconnect"
#: The built-in events every named sender has.
BUILTIN_EVENTS = (EVENT_CONNECT, EVENT_DISCONNECT)


def normalize_events(events: object) -> list[Ident]:
    """Return the declared events as a list without duplicates, in the given order.

    A single identifier stands for a list of one, as in pysig; ``None`` for no
    events. The built-in ``#connect`` / ``#disconnect`` are left out: every
    sender has them.
    """
    if events is None:
        return []
    if isinstance(events, (str, int, float)) and not isinstance(events, bool):
        items: list[object] = [events]
    elif isinstance(events, (list, tuple)):
        items = list(events)
    else:
        raise InvalidIdentifierError("events must be a list of identifiers, not %s" % type(events).__name__)
    result: list[Ident] = []
    for item in items:
        if item is None:
            raise InvalidArgumentError("an event cannot be None: None means any event")
        ident = check_ident(item, "event")
        if ident not in result and ident not in BUILTIN_EVENTS:  # every sender has those
            result.append(ident)
    return result
