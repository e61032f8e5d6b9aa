"""sig over MQTT: pysig's senders, events, channels and requests on a broker's topic tree.

* :class:`CarrierMQTTClient`: a :class:`sig.ClientRouter` over a broker (no pysig server).
* :class:`CarrierMQTTServer`: attaches a :class:`sig.ServerRouter` to a broker as one node.
* :class:`~sig_mqtt.broker.EmbeddedBroker`: an amqtt broker in its own thread, for tests and first runs.
* :func:`connect_url`: a ClientRouter on an ``mqtt[s]://`` URL in one line.
"""

from __future__ import annotations

from typing import Any

import sig

try:
    import paho.mqtt.client  # noqa: F401 (sig_mqtt is paho's user; say so once, clearly)
except ImportError:  # pragma: no cover - depends on what is installed
    raise sig.MissingExtraError("sig_mqtt needs paho-mqtt: pip install 'sig[mqtt]'") from None

from ._hass_seen import AnnouncedSenders
from ._payload import CONVENTION, encode_data
from ._shared import SharedSubscriptionsUnsupported
from ._subacks import SubscriptionRefusedError
from ._topics import Topics, decode_level, encode_level
from ._url import BrokerURL, join_urls, parse_url, read_password_file
from .broker import EmbeddedBroker
from .client import CarrierMQTTClient
from .server import CarrierMQTTServer

__all__ = [
    "AnnouncedSenders",
    "BrokerURL",
    "CONVENTION",
    "CarrierMQTTClient",
    "CarrierMQTTServer",
    "EmbeddedBroker",
    "Topics",
    "connect_url",
    "decode_level",
    "encode_data",
    "encode_level",
    "join_urls",
    "parse_url",
    "SharedSubscriptionsUnsupported",
    "SubscriptionRefusedError",
    "read_password_file",
]


def connect_url(url: str, auto_reconnect: bool = True, **settings: Any) -> sig.ClientRouter:
    """Return a :class:`sig.ClientRouter` connected to the broker of ``url``.

    ``url`` is ``mqtt[s]://[user[:pass]@]host[:port][/prefix]``; ``settings`` go
    to :class:`CarrierMQTTClient`. With ``auto_reconnect`` an unreachable broker
    is retried in the background (check ``router.carrier.isConnected()``);
    without it, raises :class:`sig.CarrierError`.
    """
    request_timeout = settings.get("request_timeout", 10.0)
    carrier = CarrierMQTTClient.from_url(url, **settings)
    router = sig.ClientRouter(carrier, request_timeout=request_timeout)
    if not carrier.connect(auto_reconnect=auto_reconnect) and not auto_reconnect:
        raise sig.CarrierError("cannot connect to %s: %s" % (parse_url(url), carrier.last_error or "no answer"))
    return router
