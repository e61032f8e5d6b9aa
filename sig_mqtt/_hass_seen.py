"""Which senders are announced to Home Assistant, read from the retained discovery configs on a broker.

Any observer (``sig web --mqtt``) can tell it without asking the announcer: every config
sig publishes names its sender's device as ``sig:<prefix>/<sender level>``
(:meth:`sig_mqtt.hass.Discovery.device_id`); an empty retained payload removes a config.
Plain object, thread-safe; the observer feeds it the messages of :attr:`filters`.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from ._topics import decode_level

__all__ = ["AnnouncedSenders"]


class AnnouncedSenders:
    """Tracks the senders of sig topic tree ``prefix`` that have entities in Home Assistant.

    Args:
        prefix: sig's topic prefix (e.g. ``sig``).
        discovery_prefix: Home Assistant's (``homeassistant`` by default).
    """

    def __init__(self, prefix: str, discovery_prefix: str = "homeassistant") -> None:
        self.device_root = "sig:%s/" % prefix
        self.node_root = self.device_root + "node/"
        self.filters = ("%s/+/+/config" % discovery_prefix, "%s/+/+/+/config" % discovery_prefix)
        self._lock = threading.Lock()
        self._by_topic: dict[str, Any] = {}

    def config(self, topic: str, payload: bytes) -> None:
        """A retained discovery config (empty: removed) was seen on ``topic``."""
        sender = self._sender(payload)
        with self._lock:
            if sender is None:
                self._by_topic.pop(topic, None)
            else:
                self._by_topic[topic] = sender

    def senders(self) -> list[Any]:
        """The announced senders, in the order of their names."""
        with self._lock:
            found = {repr(s): s for s in self._by_topic.values()}
        return [found[key] for key in sorted(found)]

    def _sender(self, payload: bytes) -> Any:
        if not payload:
            return None
        try:
            body = json.loads(payload)
        except ValueError:
            return None
        device = body.get("device") if isinstance(body, dict) else None
        ids = device.get("identifiers") if isinstance(device, dict) else None
        for ident in ids if isinstance(ids, list) else []:
            if isinstance(ident, str) and ident.startswith(self.device_root) and not ident.startswith(self.node_root):
                try:
                    return decode_level(ident[len(self.device_root):])
                except (TypeError, ValueError):
                    return None
        return None
