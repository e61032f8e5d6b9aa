"""Small MQTT helpers of the link: the Last Will, MQTT 5 properties, the TLS context from a setting."""

from __future__ import annotations

import ssl
from typing import Any

from paho.mqtt.properties import Properties

from sig import ArgumentTypeError

__all__ = ["Will", "make_tls_context", "properties"]


class Will:
    """The Last Will: topic, payload, retained, QoS 1."""

    def __init__(self, topic: str, payload: bytes) -> None:
        self.topic = topic
        self.payload = payload


def properties(packet_type: int, **values: Any) -> Properties:
    """MQTT 5 properties of one packet type, e.g. ``properties(PacketTypes.PUBLISH, ResponseTopic=...)``."""
    props = Properties(packet_type)  # type: ignore[no-untyped-call]
    for name, value in values.items():
        setattr(props, name, value)
    return props


def make_tls_context(tls: Any) -> ssl.SSLContext | None:
    """``tls``: ``None``/False (no TLS), True (system CAs), a CA file path, or an :class:`ssl.SSLContext`."""
    if tls is None or tls is False:
        return None
    if isinstance(tls, ssl.SSLContext):
        return tls
    if tls is True:
        return ssl.create_default_context()
    if isinstance(tls, str):
        return ssl.create_default_context(cafile=tls)
    raise ArgumentTypeError("tls must be None, True, a CA file path or an ssl.SSLContext, not %s" % type(tls).__name__)
