"""The event log behind ``sig web``: a bounded list of entries and who watches it.

Pure bookkeeping: no sockets, no clock (the caller stamps each entry), no
event loop. One lock makes it safe to add entries from a carrier thread while
the web server reads them.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sig import EVENT_CONNECT, EVENT_DISCONNECT, InvalidArgumentError

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "Entry", "EventLog", "show_data"]

#: Entries kept by default (the documented "Queue limit").
DEFAULT_LIMIT = 20

#: The largest queue limit accepted.
MAX_LIMIT = 100_000


def show_data(data: Any) -> str:
    """Show event data as the documented listener does: its JSON text."""
    try:
        return json.dumps(data, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(data)


@dataclass(frozen=True)
class Entry:
    """One logged event.

    Attributes:
        id: a number that grows by one per entry (never reused, also after a clear).
        when: seconds since the epoch, when it arrived.
        sender: who triggered it.
        event: the event (``#connect`` / ``#disconnect`` when a sender came or went).
        data: the event data as received.
    """

    id: int
    when: float
    sender: Any
    event: Any
    data: Any

    @property
    def kind(self) -> str:
        """``"connect"``, ``"disconnect"`` or ``"event"``."""
        if self.event == EVENT_CONNECT:
            return "connect"
        if self.event == EVENT_DISCONNECT:
            return "disconnect"
        return "event"

    @property
    def time_text(self) -> str:
        """The local time it arrived, ``YYYY-MM-DD HH:MM:SS``."""
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.when))

    def matches(self, sender: str | None, event: str | None) -> bool:
        """Tell whether it passes the filters (``None`` lets everything through)."""
        return (sender is None or str(self.sender) == sender) and (event is None or str(self.event) == event)

    def to_json(self) -> dict[str, Any]:
        """Return it as a JSON-ready dict (``fmt=json``)."""
        return {"id": self.id, "time": self.time_text, "timestamp": self.when, "sender": self.sender,
                "event": self.event, "kind": self.kind, "data": self.data, "text": show_data(self.data)}

    def to_plain(self) -> str:
        """Return it as one line of text (``fmt=plain``)."""
        return "%s [%s] Event %s received with data '%s'" % (self.time_text, self.sender, self.event,
                                                              show_data(self.data))


class EventLog:
    """The last ``limit`` events received; the oldest is dropped when full.

    Args:
        limit: how many entries to keep (1 to :data:`MAX_LIMIT`).

    Watchers (see :meth:`watch`) are called with ``("entry", Entry)`` for
    each new entry, ``("clear", None)`` after :meth:`clear` and
    ``("config", None)`` after a new limit, on the thread that made the change.
    """

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self._entries: deque[Entry] = deque()
        self._limit = check_limit(limit)
        self._next_id = 1
        self._lock = threading.Lock()
        self._watchers: list[Callable[[str, Entry | None], None]] = []

    @property
    def limit(self) -> int:
        """How many entries are kept."""
        return self._limit

    @limit.setter
    def limit(self, value: int) -> None:
        with self._lock:
            self._limit = check_limit(value)
            while len(self._entries) > self._limit:
                self._entries.popleft()
        self._notify("config", None)

    @property
    def last_id(self) -> int:
        """The id of the last entry added (0 before the first), even if it was dropped or cleared since."""
        with self._lock:
            return self._next_id - 1

    def add(self, sender: Any, event: Any, data: Any, when: float) -> Entry:
        """Log one event that arrived at ``when`` (seconds since the epoch); return its entry."""
        with self._lock:
            entry = Entry(self._next_id, when, sender, event, data)
            self._next_id += 1
            self._entries.append(entry)
            while len(self._entries) > self._limit:
                self._entries.popleft()
        self._notify("entry", entry)
        return entry

    def clear(self) -> int:
        """Forget every entry; return how many there were."""
        with self._lock:
            count = len(self._entries)
            self._entries.clear()
        self._notify("clear", None)
        return count

    def entries(self, sender: str | None = None, event: str | None = None, after: int = 0) -> list[Entry]:
        """Return the entries, oldest first, that pass the filters and came after entry id ``after``."""
        with self._lock:
            kept = list(self._entries)
        return [e for e in kept if e.id > after and e.matches(sender, event)]

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def watch(self, watcher: Callable[[str, Entry | None], None]) -> Callable[[], None]:
        """Call ``watcher(what, entry)`` on every change; return a function that stops it."""
        with self._lock:
            self._watchers.append(watcher)

        def unwatch() -> None:
            with self._lock:
                if watcher in self._watchers:
                    self._watchers.remove(watcher)

        return unwatch

    def _notify(self, what: str, entry: Entry | None) -> None:
        with self._lock:
            watchers = list(self._watchers)
        for watcher in watchers:
            watcher(what, entry)


def check_limit(value: int) -> int:
    """Return ``value`` if it is a valid queue limit.

    Raises:
        ValueError: not a whole number from 1 to :data:`MAX_LIMIT`.
    """
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LIMIT:
        raise InvalidArgumentError("the limit must be a whole number from 1 to %d, not %r" % (MAX_LIMIT, value))
    return value


def plain_lines(lines: Iterable[str]) -> str:
    """Join lines of a ``fmt=plain`` answer (each ends with a newline)."""
    return "".join(line + "\n" for line in lines)
