"""Load-balanced senders: several nodes host one sender and share its requests (MQTT 5 shared subscriptions).

``router.addRemoteSender("S", events, requests=..., shared=True)`` on several nodes: each
host subscribes ``$share/<group>/P/request/S/+`` instead of ``P/request/S/+``, and the broker
hands each request to one member of the group (Mosquitto round-robins, on MQTT 5 and
3.1.1 alike). :func:`share_group` derives the group from the prefix and the sender, so
every host of S joins one group and no other sender's. Events go out from each host as
usual. Births of a shared sender say ``"shared": true``; listeners get ``#connect`` when
the first host appears and ``#disconnect`` when the last one goes (:mod:`._presence`). A
shared and a non-shared claim on one name conflict (``NameError``, :mod:`._claims`).

Not every broker has shared subscriptions: amqtt 0.12 has none, NATS and RabbitMQ accept
``$share/...`` and deliver nothing. So the first shared registration of a node probes
(:class:`SharedProbe`): it subscribes ``$share/<probe group>/P/reply/NID/probe``,
publishes on ``P/reply/NID/probe`` and waits for its message; a refused subscription or
nothing within ``timeout`` seconds fails the registration with
:class:`SharedSubscriptionsUnsupported`.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import uuid
from typing import Any

from sig import SigError

from ._topics import Topics

__all__ = ["SharedProbe", "SharedSubscriptionsUnsupported", "share_group", "shared_request_filter"]

logger = logging.getLogger("sig.mqtt.shared")

_SHARE = "$share/"


class SharedSubscriptionsUnsupported(SigError, NotImplementedError):
    """A shared sender needs MQTT shared subscriptions (``$share/...``), which this broker does
    not support (amqtt; NATS and RabbitMQ accept them but deliver nothing)."""


def share_group(prefix: str, sender_level: str) -> str:
    """The shared-subscription group of a sender (its topic level) under ``prefix``: ``sig-`` and
    16 hex digits of a hash of both (a group name may hold no ``/``, ``+`` or ``#``)."""
    digest = hashlib.blake2s(("%s\x00%s" % (prefix, sender_level)).encode("utf-8"), digest_size=8).hexdigest()
    return "sig-" + digest


def shared_request_filter(topics: Topics, sender: Any) -> str:
    """``$share/<group>/P/request/S/+``: the request filter of a host of shared sender ``sender``."""
    request_filter = topics.request_filter(sender)
    level = request_filter[len(topics.prefix) + len("/request/"):-len("/+")]
    return "%s%s/%s" % (_SHARE, share_group(topics.prefix, level), request_filter)


class SharedProbe:
    """Tells once per node whether its broker delivers through shared subscriptions.

    Args:
        node: the :class:`~sig_mqtt._node.MqttNode`.
        timeout: seconds to wait for the probe's SUBACK and then for its message.
    """

    def __init__(self, node: Any, timeout: float = 2.0) -> None:
        self.node = node
        self.timeout = timeout
        self.supported = False  # True once a probe came back
        self.topic = node.topics.reply(node.nid) + "/probe"
        self._lock = threading.Lock()
        self._token: str | None = None
        self._came = threading.Event()

    def check(self) -> None:
        """Probe (the first time): return when shared subscriptions work here.

        Raises:
            SharedSubscriptionsUnsupported: they do not (or the broker refused the probe).
        """
        with self._lock:
            if self.supported:
                return
            link = self.node.link
            probe_filter = "%ssig-probe-%s/%s" % (_SHARE, uuid.uuid4().hex[:8], self.topic)
            before = link.subacks.mark()
            link.subscribe([(probe_filter, None)], 1)
            after = link.subacks.mark()
            try:
                acked = link.wait_subscribed(after, self.timeout)
                refused = link.subacks.refusals(before, after)
                if refused or not acked:
                    raise SharedSubscriptionsUnsupported(
                        "shared subscriptions are not supported by this broker (%s:%s): it %s" % (
                            *(link.address or ("?", 0)), "refused %s (%s)" % refused[0] if refused
                            else "did not acknowledge %s in %.1f s" % (probe_filter, self.timeout)))
                self._token = uuid.uuid4().hex
                self._came.clear()
                self.node.outlet.publish(self.topic, self._token.encode("ascii"), 1, False)
                if not self._came.wait(self.timeout):
                    raise SharedSubscriptionsUnsupported(
                        "shared subscriptions are not supported by this broker (%s:%s): nothing came through "
                        "%s in %.1f s" % (*(link.address or ("?", 0)), probe_filter, self.timeout))
                self.supported = True
                logger.debug("the broker delivers through shared subscriptions")
            finally:
                self._token = None
                link.unsubscribe([probe_filter])

    def arrived(self, topic: str, payload: bytes) -> bool:
        """A message on a foreign topic (dispatcher): True when it was the probe's."""
        if topic != self.topic:
            return False
        token = self._token
        if token is not None and payload == token.encode("ascii"):
            self._came.set()
        return True
