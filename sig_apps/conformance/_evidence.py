"""What the probe saw and did during a check: the input of the rules (plain data, no I/O)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Evidence", "Message", "Sent", "cite", "parse_json"]

_MISSING = object()


@dataclass(frozen=True)
class Message:
    """One PUBLISH the probe received: ``at`` is the probe's monotonic clock, in seconds."""

    topic: str
    payload: bytes
    retain: bool
    at: float
    correlation: bytes | None = None


@dataclass(frozen=True)
class Sent:
    """A test request the probe published: ``kind`` is ``envelope``, ``v5`` or ``unknown``."""

    kind: str
    topic: str
    correlation: str
    at: float


def parse_json(payload: bytes) -> Any:
    """The JSON value of a payload, or :data:`_MISSING` when it is none."""
    try:
        return json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return _MISSING


def is_json(value: Any) -> bool:
    """Tell whether :func:`parse_json` found a JSON value."""
    return value is not _MISSING


def cite(message: Message, note: str = "") -> dict[str, Any]:
    """A message as evidence: topic, payload (text, cut at 300 characters), retain flag."""
    text = message.payload.decode("utf-8", "replace")
    entry: dict[str, Any] = {"topic": message.topic, "payload": text[:300] + ("..." if len(text) > 300 else ""),
                             "retain": message.retain}
    if message.correlation is not None:
        entry["correlation"] = message.correlation.decode("utf-8", "replace")
    if note:
        entry["note"] = note
    return entry


@dataclass
class Evidence:
    """The probe's record, thread-safe to append to (paho's thread adds messages).

    ``node`` is the node's topic level (as published, not decoded); ``sender`` the
    topic level of the one sender under test (``None``: all of the node's).
    ``retain_as_published``: the probe's subscriptions keep the publisher's RETAIN flag
    (MQTT 5), so a live message without it was not retained.
    """

    prefix: str
    node: str | None = None
    sender: str | None = None
    reply_topic: str = ""
    retain_as_published: bool = False
    messages: list[Message] = field(default_factory=list)
    snapshot_end: float | None = None
    rebirth: tuple[float, float] | None = None
    requests: list[Sent] = field(default_factory=list)
    requests_until: float | None = None
    heartbeat: tuple[float, float] | None = None
    will: tuple[float, float] | None = None
    skips: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, message: Message) -> None:
        """Record a received message."""
        with self._lock:
            self.messages.append(message)

    def seen(self) -> list[Message]:
        """The messages so far, in arrival order."""
        with self._lock:
            return list(self.messages)

    def on(self, topic: str, since: float = float("-inf"), until: float = float("inf")) -> list[Message]:
        """The messages on ``topic`` that arrived in ``[since, until]``."""
        return [m for m in self.seen() if m.topic == topic and since <= m.at <= until]

    # -- the tree's topics (as published: levels are not decoded here) ------------------

    @property
    def node_topic(self) -> str:
        """``P/node/NID``."""
        return "%s/node/%s" % (self.prefix, self.node)

    def birth_levels(self) -> list[str]:
        """Sender levels of the births seen under the node (only the sender under test's, if one is)."""
        root = self.node_topic + "/sender/"
        levels: list[str] = []
        for message in self.seen():
            if message.topic.startswith(root):
                level = message.topic[len(root):]
                if level not in levels and (self.sender is None or level == self.sender):
                    levels.append(level)
        return levels

    def event_messages(self, levels: list[str]) -> list[tuple[str, list[str], Message]]:
        """``(sender level, levels after it, message)`` of each event of those senders."""
        root = self.prefix + "/event/"
        found = []
        for message in self.seen():
            if message.topic.startswith(root):
                sender, _, rest = message.topic[len(root):].partition("/")
                if sender in levels:
                    found.append((sender, rest.split("/"), message))
        return found
