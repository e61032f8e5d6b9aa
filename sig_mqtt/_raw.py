"""Foreign topics (outside sig's tree): the handlers the bridge's rules and Home Assistant discovery add.

Messages on them reach every handler whose filter matches, in the order handlers were
added, on the node's dispatcher thread; one that raises is logged and the others still run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ._topics import filter_matches

__all__ = ["RawHandler", "RawTopics"]

logger = logging.getLogger("sig.mqtt.node")

#: ``handler(topic, payload, retained)`` for foreign topics (the bridge's rules).
RawHandler = Callable[[str, bytes, bool], None]


class RawTopics:
    """The foreign filters of a node and their handlers.

    Args:
        first: sees every message first and may claim it (True: no handler gets it).
    """

    def __init__(self, first: Callable[[str, bytes], bool] | None = None) -> None:
        self.first = first
        self.handlers: list[tuple[str, RawHandler]] = []

    def add(self, topic_filter: str, handler: RawHandler) -> None:
        """Hand messages on ``topic_filter`` to ``handler`` from now on."""
        self.handlers.append((topic_filter, handler))

    def dispatch(self, topic: str, payload: bytes, retained: bool) -> None:
        """A message on a foreign topic (dispatcher thread)."""
        if self.first is not None and self.first(topic, payload):
            return
        for topic_filter, handler in list(self.handlers):
            if filter_matches(topic_filter, topic):
                try:
                    handler(topic, payload, retained)
                except Exception:
                    logger.exception("handler of %s failed on %s", topic_filter, topic)
