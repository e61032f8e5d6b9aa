"""Round trips through the broker: a marker we publish to our own reply topic and wait to see back.

The broker handles one client's packets in order and delivers one publisher's
messages to a subscriber in order, so when our marker comes back, everything it
had queued for us before it (the retained births and states of filters we just
subscribed) has come first. Two uses: a caller that waits (``watch`` / ``claim``:
presence known), and the marker of each connect (our own stale births can go).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

__all__ = ["RoundTrips"]


class RoundTrips:
    """Markers in flight: ``send(token)`` publishes one (``{"sync": token}`` on our reply topic)."""

    def __init__(self, send: Callable[[str], None]) -> None:
        self._send = send
        self._waiting: dict[str, threading.Event] = {}
        self._connect_token: str | None = None

    def wait(self, timeout: float) -> bool:
        """Publish a marker and wait for it; False after ``timeout`` seconds."""
        token = uuid.uuid4().hex
        event = self._waiting[token] = threading.Event()
        self._send(token)
        if event.wait(timeout):
            return True
        self._waiting.pop(token, None)
        return False

    def mark_connect(self) -> None:
        """Publish the marker of a new connection (see :meth:`arrived`)."""
        self._connect_token = uuid.uuid4().hex
        self._send(self._connect_token)

    def arrived(self, token: object) -> bool:
        """A marker came back; True when it is the current connection's (time to clean up)."""
        waiting = self._waiting.pop(token, None) if isinstance(token, str) else None
        if waiting is not None:
            waiting.set()
            return False
        return token is not None and token == self._connect_token
