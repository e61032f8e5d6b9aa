"""Requests and replies over MQTT: correlation, timeouts, and a responder that answers once.

Requester: MQTT 5 sends the params as the payload with Response Topic,
Correlation Data and Message Expiry; MQTT 3.1.1 (or a responder that speaks it)
gets the envelope ``{"id", "reply_to", "params"}``. Responder: an envelope is
answered on its ``reply_to`` (with its ``id``), anything else (``mosquitto_rr``,
Node-RED) on its Response Topic. A QoS 1 redelivery of a request runs nothing
twice: the responder remembers recent ids and sends the same reply again.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.properties import Properties

from sig import CarrierError, RequestTimeout, Status, make_reply, reply_error

from ._packets import publish_properties
from ._payload import decode_data, encode_json
from ._topics import is_topic_name

__all__ = ["Rpc", "Publish"]

logger = logging.getLogger("sig.mqtt.rpc")

#: ``publish(topic, payload, qos, retain, buffer=..., properties=...)``, the node's.
Publish = Callable[..., None]

_DEDUP = 1024  # recent request ids a responder remembers


class _Waiter:
    """One pending request: a plain lock its requester waits on (a Future's Condition costs more on
    both sides of the hand-off from paho's thread); the first reply or failure counts."""

    __slots__ = ("_lock", "_value")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self._value: dict[str, Any] | Exception | None = None

    def set(self, value: dict[str, Any] | Exception) -> None:
        if self._value is None:
            self._value = value
            try:
                self._lock.release()
            except RuntimeError:  # released already (two replies at once)
                pass

    fail = set

    def wait(self, timeout: float) -> dict[str, Any] | None:
        """The reply; None after ``timeout`` seconds; raises the failure."""
        if not self._lock.acquire(timeout=timeout):
            return None
        value = self._value
        if isinstance(value, Exception):
            raise value
        return value


class Rpc:
    """Pending requests of one node, and the replies it sent lately.

    Args:
        reply_topic: where this node gets its replies (``P/reply/NID``).
        publish: the node's publish function.
        protocol: tells the MQTT version of the connection now (5 or 4).
    """

    def __init__(self, reply_topic: str, publish: Publish, protocol: Callable[[], int]) -> None:
        self.reply_topic = reply_topic
        self._publish = publish
        self._protocol = protocol
        self._pending: dict[str, _Waiter] = {}
        self._answered: OrderedDict[tuple[Any, Any], dict[str, Any] | None] = OrderedDict()
        self._lock = threading.Lock()
        self._nonce = uuid.uuid4().hex[:12]  # this Rpc's own: correlations never repeat across restarts
        self._ids = itertools.count(1)
        self._reply_topics: set[str] = set()  # reply topics found usable

    # -- requester ----------------------------------------------------------------------

    def call(self, topic: str, params: Any, timeout: float, v5: bool, what: str) -> Any:
        """Publish a request on ``topic`` and return the response of its reply.

        Raises:
            RequestTimeout: no reply in ``timeout`` seconds.
            RemoteError: the reply says the far side failed.
        """
        correlation = "%s-%d" % (self._nonce, next(self._ids))
        waiter = _Waiter()
        self._pending[correlation] = waiter
        try:
            if v5:
                props = publish_properties(ResponseTopic=self.reply_topic, CorrelationData=correlation.encode("ascii"),
                                           MessageExpiryInterval=max(1, math.ceil(timeout)))
                self._publish(topic, encode_json(params), 1, False, properties=props, now=True)
            else:
                envelope = {"id": correlation, "reply_to": self.reply_topic, "params": params}
                self._publish(topic, encode_json(envelope), 1, False, now=True)
            reply = waiter.wait(timeout)
            if reply is None:
                raise RequestTimeout("no reply to %s in %.1f s" % (what, timeout))
        finally:
            self._pending.pop(correlation, None)
        if reply.get("status") != Status.OK:
            raise reply_error(reply, what)
        return reply.get("response")

    def resolve(self, body: dict[str, Any], props: Properties | None) -> None:
        """A reply arrived (paho's thread): complete its request."""
        correlation: Any = getattr(props, "CorrelationData", None) if props is not None else None
        if isinstance(correlation, bytes):
            correlation = correlation.decode("ascii", "replace")
        if correlation is None:
            correlation = body.get("id")
        waiter = self._pending.get(correlation) if isinstance(correlation, str) else None
        if waiter is None:
            logger.debug("reply to an unknown or expired request: %.100r", correlation)
        else:
            waiter.set(body)

    def fail_all(self, error: Exception) -> None:
        """Fail every pending request (the broker is gone)."""
        for waiter in list(self._pending.values()):
            waiter.fail(error)

    # -- responder ----------------------------------------------------------------------------

    def answer(self, run: Callable[[Any], Any], message: paho.MQTTMessage, what: str) -> None:
        """Run ``run(params)`` for a request message and publish its reply (once per request id)."""
        props = message.properties
        response_topic = getattr(props, "ResponseTopic", None) if props is not None else None
        correlation = getattr(props, "CorrelationData", None) if props is not None else None
        params, _ = decode_data(bytes(message.payload))
        envelope = isinstance(params, dict) and "reply_to" in params and "id" in params
        if envelope:
            reply_to, request_id, params = params["reply_to"], params["id"], params.get("params")
        else:
            reply_to, request_id = response_topic, correlation
        if not isinstance(reply_to, str) or (reply_to not in self._reply_topics and not self._usable(reply_to)):
            # Mosquitto drops a client that publishes on such a topic (and paho would
            # send the QoS 1 reply again on every reconnect): answer nobody.
            logger.warning("%s names no usable reply topic (%.80r): answered nobody", what, reply_to)
            return
        key = (reply_to, request_id)
        if not isinstance(request_id, (str, int, float, bytes)) or isinstance(request_id, bool):
            request_id = None  # not a usable id (a list, ...): answered, but not remembered
        if request_id is not None:
            with self._lock:
                if key in self._answered:
                    cached = self._answered[key]
                    if cached is not None:  # else still running: a redelivery
                        logger.debug("%s redelivered: sending the same reply", what)
                        self._send(reply_to, cached, correlation)
                    return
                self._answered[key] = None
                if len(self._answered) > _DEDUP:
                    self._answered.popitem(last=False)
        try:
            reply = make_reply(None, Status.OK, run(params))
        except Exception as exc:
            logger.info("%s failed: %s", what, exc)
            reply = make_reply(None, Status.METHOD_FAILED, exc=exc)
        if envelope:
            reply["id"] = key[1]
        else:
            del reply["id"]
        if "exception" in reply:
            del reply["response"]
        if request_id is not None:
            with self._lock:
                if key in self._answered:
                    self._answered[key] = reply
        self._send(reply_to, reply, None if envelope else correlation)

    def _usable(self, reply_to: Any) -> bool:
        """Whether a reply can go to ``reply_to`` (remembered: requesters use the same topic again)."""
        if not is_topic_name(reply_to):
            return False
        if len(self._reply_topics) >= _DEDUP:
            self._reply_topics.clear()
        self._reply_topics.add(reply_to)
        return True

    def _send(self, reply_to: str, reply: dict[str, Any], correlation: Any) -> None:
        props = None
        if correlation is not None and self._protocol() == 5:
            props = publish_properties(CorrelationData=correlation)
        try:
            payload = encode_json(reply)
        except (TypeError, ValueError) as exc:
            payload = encode_json(make_reply(None, Status.METHOD_FAILED, exc=ValueError("reply is not JSON: %s" % exc)))
        try:
            self._publish(reply_to, payload, 1, False, buffer=True, properties=props, now=True)
        except CarrierError as exc:
            logger.warning("reply to %s not sent: %s", reply_to, exc)
