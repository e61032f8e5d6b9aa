"""Batches on the way from paho's network thread to the dispatcher (issue 13, speed).

paho's own ``loop_read`` reads ``max(1, messages in flight)`` packets per ``select()``:
at QoS 0 one packet per wake-up, so the network thread and the dispatcher trade the GIL
once per message. :class:`BatchingClient` reads what the socket holds (until it would
block, at most ``batch_limit`` packets) in one go, and tells a :class:`Batch` when such a
read begins and ends; :class:`JobQueue` keeps what the network thread queues meanwhile
and hands it to the dispatcher as one job, one wake-up per batch instead of one per message.
Order is kept: the batch's jobs run in the order they were queued, and nothing the
network thread queues after the batch can overtake it. On MQTT 5 it also reads each PUBLISH
with :func:`._fastprops.decode_publish` instead of paho's slower properties code.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import paho.mqtt.client as paho
from paho.mqtt import __version__ as PAHO_VERSION
from paho.mqtt.enums import MQTTErrorCode

from ._fastprops import decode_publish

__all__ = ["Batch", "BatchingClient", "JobQueue", "client_class"]

logger = logging.getLogger("sig.mqtt.dispatch")

#: paho-mqtt releases whose private methods :class:`BatchingClient` overrides were written for and
#: tested with; on any other release the link uses paho's own ``Client`` (slower, same behaviour).
PAHO_TESTED = ("2.1.", "2.2.")
_warned: list[str] = []

Job = Callable[[], None]

_PUBLISH, _DISCONNECT = paho.PUBLISH, paho.DISCONNECT  # packet types in the command byte


class Batch(Protocol):
    """What a :class:`BatchingClient` tells around each read of its socket."""

    def begin(self) -> None: ...

    def end(self) -> None: ...


class JobQueue:
    """A ``SimpleQueue`` of jobs for one consumer; jobs the batching thread queues between
    :meth:`begin` and :meth:`end` go in as one job at :meth:`end`."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._owner: int | None = None  # the thread between begin() and end()
        self._pending: list[Job] = []
        self._lock = threading.Lock()

    def put(self, job: Job | None) -> None:
        """Queue ``job`` (None: the consumer's stop).

        Another thread's job goes after the open batch's jobs so far: whatever that thread saw
        the batching thread do (a CONNACK handled, say) was queued before, and runs before.
        """
        with self._lock:
            if job is not None and self._owner is not None and threading.get_ident() == self._owner:
                self._pending.append(job)
                return
            if self._pending:
                self._flush()
            self._queue.put(job)

    def get(self, timeout: float | None = None) -> Job | None:
        """The next job; raises :class:`queue.Empty` after ``timeout`` s."""
        return self._queue.get(timeout=timeout)

    def empty(self) -> bool:
        """No job waits (none queued, none in an open batch)."""
        return self._queue.empty() and not self._pending

    def begin(self) -> None:
        """From now on, this thread's jobs wait for :meth:`end`."""
        self._owner = threading.get_ident()

    def end(self) -> None:
        """Queue what came since :meth:`begin`: one job for all of them."""
        with self._lock:
            self._owner = None
            if self._pending:
                self._flush()

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if len(pending) == 1:
            self._queue.put(pending[0])
        else:
            self._queue.put(lambda: _run_all(pending))


def _run_all(jobs: list[Job]) -> None:
    for job in jobs:
        try:
            job()
        except Exception:
            logger.exception("MQTT dispatcher job failed")


class BatchingClient(paho.Client):
    """A paho client whose ``loop_read`` reads until the socket would block (at most
    ``batch_limit`` packets) and tells ``batch`` when it begins and ends.

    With a ``batch``, its network thread is also woken once per round of its loop, not
    once per packet queued: paho writes a byte on its socketpair for every PUBLISH, so
    that a publisher and the network thread traded the GIL once per event.

    A thread that publishes inside :meth:`writing_now` (a request, a reply: one message
    that someone waits for) writes it to the socket itself when nobody else is writing and
    the socket is a plain one, instead of waking the network thread to write it: one
    thread hand-off less on the way. paho writes only under :attr:`write_lock` then.
    """

    batch: Batch | None = None
    batch_limit = 256
    _woken = False  # a wake-up byte is on the socketpair since the loop's round began
    _reading = False  # the network thread is in loop_read

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.write_lock = threading.Lock()  # around every write of the packet queue
        self._now = threading.local()

    @contextlib.contextmanager
    def writing_now(self) -> Iterator[None]:
        """What this thread publishes in the block is written by it at once if it can be."""
        self._now.on = True
        try:
            yield
        finally:
            self._now.on = False

    def publish_now(self, *args: Any) -> paho.MQTTMessageInfo:
        """``publish(*args)`` inside :meth:`writing_now`."""
        now = self._now
        now.on = True
        try:
            return self.publish(*args)
        finally:
            now.on = False

    def _packet_write(self) -> MQTTErrorCode:
        with self.write_lock:
            return super()._packet_write()

    def _write_now(self) -> bool:
        """Write the queued packets from this thread, if that is safe now; True when all are written.

        Not a QoS 0 PUBLISH nor a DISCONNECT (paho runs callbacks once they are written), not on
        a TLS or WebSocket connection (one thread at a time there), never waiting for the lock.
        """
        sock = self._sock
        if type(sock) is not socket.socket or threading.current_thread() is self._thread:
            return False
        if not self.write_lock.acquire(blocking=False):
            return False
        try:
            out = self._out_packet
            while out:
                packet = out[0]
                kind = packet["command"] & 0xF0
                if (kind == _PUBLISH and packet["qos"] == 0) or kind == _DISCONNECT:
                    return False
                try:
                    sent = sock.send(packet["packet"][packet["pos"]:])
                except OSError:  # would block, or failed: the network thread carries on (and meets the error)
                    return False
                packet["pos"] += sent
                packet["to_process"] -= sent
                if packet["to_process"]:
                    return False
                out.popleft()
            with self._msgtime_mutex:
                self._last_msg_out = time.monotonic()
            return True
        finally:
            self.write_lock.release()

    def _loop(self, timeout: float = 1.0) -> MQTTErrorCode:
        # Cleared before paho looks at what there is to write: a packet queued before this
        # is written in this round (paho selects for writing), one queued after wakes it.
        self._woken = False
        return super()._loop(timeout)

    def _packet_queue(self, command: int, packet: bytes | bytearray, mid: int, qos: int,
                      info: paho.MQTTMessageInfo | None = None) -> MQTTErrorCode:
        if self.batch is None or self._thread is None:
            return super()._packet_queue(command, packet, mid, qos, info)
        self._out_packet.append({"command": command, "mid": mid, "qos": qos, "pos": 0,
                                 "to_process": len(packet), "packet": packet, "info": info})
        if getattr(self._now, "on", False) and self._write_now():
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        if self._reading and threading.current_thread() is self._thread:
            return MQTTErrorCode.MQTT_ERR_SUCCESS  # an acknowledgement: written when the read ends
        wake = self._sockpairW
        if wake is not None and not self._woken:
            self._woken = True
            try:
                wake.send(b"0")
            except BlockingIOError:
                pass
        self._call_socket_register_write()
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _handle_publish(self) -> MQTTErrorCode:
        if self._protocol != paho.MQTTv5:
            return super()._handle_publish()
        message = decode_publish(self._in_packet["command"], self._in_packet["packet"])
        message.timestamp = paho.time_func()
        if message.qos == 0:
            self._handle_on_message(message)
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        if message.qos == 1:
            self._handle_on_message(message)
            return MQTTErrorCode.MQTT_ERR_SUCCESS if self._manual_ack else self._send_puback(message.mid)
        if message.qos == 2:  # as paho: delivered on PUBREL
            rc = self._send_pubrec(message.mid)
            message.state = paho.mqtt_ms_wait_for_pubrel
            with self._in_message_mutex:
                self._in_messages[message.mid] = message
            return rc
        return MQTTErrorCode.MQTT_ERR_PROTOCOL

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        batch = self.batch
        if batch is None:
            return super().loop_read(max_packets)
        batch.begin()
        self._reading = True
        try:
            read = self._packet_read
            for _ in range(self.batch_limit):
                if self._sock is None:
                    return MQTTErrorCode.MQTT_ERR_NO_CONN
                rc = read()
                if rc > 0:
                    return self._loop_rc_handle(rc)
                if rc == MQTTErrorCode.MQTT_ERR_AGAIN:
                    break
        finally:
            self._reading = False
            batch.end()
        # What the read queued (PUBACKs, ...) goes now, not after another round of the loop.
        return self.loop_write() if self._out_packet and self._sock is not None else MQTTErrorCode.MQTT_ERR_SUCCESS


def client_class(version: str = PAHO_VERSION) -> type[paho.Client]:
    """:class:`BatchingClient` on a paho release in :data:`PAHO_TESTED`, else paho's ``Client``."""
    if version.startswith(PAHO_TESTED):
        return BatchingClient
    if not _warned:
        _warned.append(version)
        logger.warning("paho-mqtt %s is newer than sig was tested with (%s): using its plain client, "
                       "without sig's batching", version, ", ".join(v + "x" for v in PAHO_TESTED))
    return paho.Client
