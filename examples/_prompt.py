"""Prompts of the documented pysig examples: ``Label       (default: X):`` on stdin.

A blank answer (or the end of stdin) takes the default; ``None`` means None
where the documents allow it. A bad answer ends the example with one line.
"""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import sig

__all__ = ["ask", "ask_name", "ask_data", "ask_int", "ask_float", "ask_level", "ask_subscriptions", "fail"]

# Line-buffered output, so the log lines show up at once even through a pipe.
if hasattr(sys.stdout, "reconfigure"):
    sys.stdout.reconfigure(line_buffering=True)

_LEVELS = {name: level for level, name in sig.LOG_LEVELS.LEVEL_NAMES.items()}


def fail(message: str) -> NoReturn:
    """Print one error line on stderr and exit with status 2."""
    sys.stderr.write("error: %s\n" % message)
    sys.exit(2)


def ask(label: str, default: Any) -> str:
    """Ask ``label`` (padded as in the documents); return the answer, or ``str(default)`` if blank."""
    try:
        answer = input("%-12s(default: %s):" % (label, default)).strip()
    except EOFError:
        answer = ""
    return answer if answer else str(default)


def ask_name(label: str, default: str | None, allow_none: bool = False) -> str | None:
    """Ask for a sender / event / method name; ``None`` is None when ``allow_none``."""
    answer = ask(label, default)
    if answer == "None":
        if not allow_none:
            fail("%s needs a name, not None" % label)
        return None
    return answer


def ask_data(label: str, default: Any = None) -> Any:
    """Ask for event data or request params: JSON if it parses, else the text as is; ``None`` is None."""
    answer = ask(label, default)
    if answer == "None":
        return None
    try:
        return json.loads(answer)
    except ValueError:
        return answer


def ask_int(label: str, default: int) -> int:
    """Ask for a whole number (a port)."""
    answer = ask(label, default)
    try:
        return int(answer)
    except ValueError:
        fail("%s must be a whole number, not %r" % (label, answer))


def ask_float(label: str, default: float) -> float:
    """Ask for a positive number of seconds."""
    answer = ask(label, default)
    try:
        value = float(answer)
    except ValueError:
        fail("%s must be a number, not %r" % (label, answer))
    if value <= 0:
        fail("%s must be more than 0" % label)
    return value


def ask_level(label: str = "Log level", default: str = "info") -> int:
    """Ask for a log level name (trace, debug, info, warning, error, critical)."""
    answer = ask(label, default).lower()
    if answer not in _LEVELS:
        fail("%s must be one of %s, not %r" % (label, ", ".join(_LEVELS), answer))
    return _LEVELS[answer]


def ask_subscriptions() -> list[tuple[str | None, str | None]]:
    """Read ``Sender N:`` / ``Event  N:`` answers until a blank sender; ``None`` means any.

    A sender given with no event listens to all its events (web_events_logger, alert_listener).
    """
    subscriptions: list[tuple[str | None, str | None]] = []
    number = 0
    while True:
        number += 1
        sender = _answer("Sender %d:" % number)
        if not sender:
            return subscriptions
        count = 0
        while True:
            event = _answer("Event  %d:" % (count + 1))
            if not event:
                break
            count += 1
            subscriptions.append((None if sender == "None" else sender, None if event == "None" else event))
        if count == 0:
            subscriptions.append((None if sender == "None" else sender, None))


def _answer(prompt: str) -> str:
    try:
        return input(prompt).strip()
    except EOFError:
        return ""
