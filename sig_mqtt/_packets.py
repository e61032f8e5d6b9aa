"""Small MQTT helpers of the link: the Last Will, MQTT 5 properties, the TLS context from a setting."""

from __future__ import annotations

import ssl
import struct
from typing import Any

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties, VariableByteIntegers

from sig import ArgumentTypeError

__all__ = ["Will", "make_tls_context", "properties", "publish_properties"]


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


_TEMPLATE = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
#: The PUBLISH properties :func:`publish_properties` packs itself: identifier and how, in paho's order.
_QUICK = {"MessageExpiryInterval": (2, "int"), "ResponseTopic": (8, "str"), "CorrelationData": (9, "bytes")}


class _PackedProperties(Properties):
    """PUBLISH properties whose bytes were packed when made (see :func:`publish_properties`)."""

    types = _TEMPLATE.types
    names = _TEMPLATE.names
    properties = _TEMPLATE.properties

    _packed: bytes | None

    def __init__(self, packed: bytes, values: dict[str, Any]) -> None:  # not paho's: no tables built
        object.__setattr__(self, "packetType", PacketTypes.PUBLISH)
        for name, value in values.items():
            object.__setattr__(self, name, value)
        object.__setattr__(self, "_packed", packed)

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)  # type: ignore[no-untyped-call]
        object.__setattr__(self, "_packed", None)  # changed: packed again by paho's code

    def pack(self) -> bytes:
        packed = self._packed
        return super().pack() if packed is None else packed  # type: ignore[no-untyped-call]


def publish_properties(**values: Any) -> Properties:
    """``properties(PacketTypes.PUBLISH, **values)``, packed at once when they are among a request's
    (Message Expiry Interval, Response Topic, Correlation Data): paho checks every name against all
    of them on every set, and packs by walking them all, which costs more than the message itself."""
    if not values.keys() <= _QUICK.keys():
        return properties(PacketTypes.PUBLISH, **values)
    parts = []
    for name, (identifier, kind) in _QUICK.items():
        if name not in values:
            continue
        value = values[name]
        if kind == "int":
            parts.append(struct.pack("!BL", identifier, value))
        else:
            data = value.encode("utf-8") if kind == "str" else bytes(value)
            parts.append(struct.pack("!BH", identifier, len(data)) + data)
    body = b"".join(parts)
    return _PackedProperties(VariableByteIntegers.encode(len(body)) + body, values)  # type: ignore[no-untyped-call]


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
