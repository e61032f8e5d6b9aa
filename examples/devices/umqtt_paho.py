"""The stand-in for MicroPython's ``umqtt.simple.MQTTClient``, over paho-mqtt (CPython).

Only what ``upython_device.py`` uses, with umqtt's names and behaviour: topics and
payloads are bytes, ``check_msg()`` runs the callback for each waiting message and raises
``OSError`` once the connection is gone (as umqtt does when its socket closes).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion


class MQTTClient:
    """``MQTTClient(client_id, server, port=1883, keepalive=0)``: MQTT 3.1.1, as umqtt."""

    def __init__(self, client_id: str, server: str, port: int = 1883, keepalive: int = 0) -> None:
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv311,
                                   reconnect_on_failure=False)
        self._server = server
        self._port = port
        self._keepalive = keepalive or 60
        self._callback: Callable[[bytes, bytes], None] | None = None
        self._inbox: queue.SimpleQueue[tuple[bytes, bytes]] = queue.SimpleQueue()
        self._up = threading.Event()
        self._down = threading.Event()
        self._client.on_connect = lambda c, u, f, reason, p: (self._down if reason.is_failure else self._up).set()
        self._client.on_disconnect = lambda *args: self._down.set()
        self._client.on_message = lambda c, u, m: self._inbox.put((m.topic.encode(), bytes(m.payload)))

    def set_last_will(self, topic: bytes, msg: bytes, retain: bool = False, qos: int = 0) -> None:
        self._client.will_set(topic.decode(), msg, qos, retain)

    def set_callback(self, callback: Callable[[bytes, bytes], None]) -> None:
        self._callback = callback

    def connect(self, clean_session: bool = True) -> int:
        self._client.connect(self._server, self._port, self._keepalive)
        self._client.loop_start()
        if not self._up.wait(5) or self._down.is_set():
            self._client.loop_stop()
            raise OSError("MQTT connect failed")
        return 0

    def publish(self, topic: bytes, msg: bytes, retain: bool = False, qos: int = 0) -> None:
        if self._down.is_set():
            raise OSError("MQTT connection lost")
        self._client.publish(topic.decode(), msg, qos, retain)

    def subscribe(self, topic: bytes, qos: int = 0) -> None:
        self._client.subscribe(topic.decode(), qos)

    def check_msg(self) -> Any:
        while True:
            try:
                topic, msg = self._inbox.get_nowait()
            except queue.Empty:
                break
            if self._callback is not None:
                self._callback(topic, msg)
        if self._down.is_set():
            raise OSError("MQTT connection lost")
        return None

    def disconnect(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
