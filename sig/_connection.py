"""One peer of a stream carrier (TCP or serial): threads, framing, lock-step or pipelining.

Each connection has three threads:

* the *reader* reads bytes, splits frames, resolves replies at once and hands
  calls on: ``request`` calls to the carrier's pool, everything else to
* the *dispatcher*, which runs calls one at a time in arrival order (so a
  sender's signals keep their order) and queues their replies;
* the *writer* sends queued frames. Towards a pysig 0.7.3 peer it keeps one
  message in flight and each message in its own write; towards a sig peer it
  batches frames and never waits.

Towards a sig peer, a call or reply that finds nothing queued is sent at once, without
blocking, by the thread that makes it (one thread hand-off less per request hop).

No user code ever runs on the reader, so a listener may wait for a reply
(e.g. make a request) without dead-locking the connection that must read it.
"""

from __future__ import annotations

import itertools
import logging
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import TYPE_CHECKING, Any, Protocol

from ._carrier import log_failed_post
from ._codec import CAPABILITIES, DEFAULT_MAX_FRAME, BadFrame, FrameDecoder, Status, encode, is_reply, make_reply
from ._errors import CarrierError, ProtocolError
from ._limits import CallQueue, RequestGate

if TYPE_CHECKING:
    from ._carrier import Carrier

__all__ = ["Stream", "Connection"]

logger = logging.getLogger("sig.connection")

#: Largest message sent to a pysig 0.7.3 peer without a warning: it reads with ``recv(4096)``.
LEGACY_FRAME_LIMIT = 4096
#: Seconds between a frame sent to a 0.7.3 peer with no proof it was read (a reply) and the
#: next one, so that the two do not land in one of its ``recv`` calls.
LEGACY_GAP = 0.02


class Stream(Protocol):
    """What a connection needs from a byte stream (a socket, a serial port ...)."""

    def recv(self, size: int) -> bytes:
        """Block until some bytes arrive; ``b""`` at end of stream."""

    def sendall(self, data: bytes) -> None:
        """Send every byte or raise :class:`OSError`."""

    def close(self) -> None:
        """Close the stream; a ``recv`` blocked in another thread must return."""


class _Item:
    __slots__ = ("frame", "future", "method")

    def __init__(self, frame: bytes, future: Future[Any] | None, method: str) -> None:
        self.frame = frame
        self.future = future
        self.method = method


class Connection:
    """A peer of a stream carrier.

    Args:
        carrier: the carrier whose ``handleRX`` runs the peer's calls.
        clientid: how the carrier names this peer.
        stream: the byte stream.
        name: for log lines.
        executor: runs ``request`` calls off the reader and dispatcher threads.
        on_closed: called once, on the dispatcher thread, after the last call ran.
        max_frame: largest frame accepted.
        max_queue: most messages waiting to be sent.
        block_when_full: wait for room (backpressure) instead of closing the
            connection when the queue is full (a server closes a peer that
            stops reading; a client makes its own triggers wait).
        stall_timeout: without ``block_when_full``, seconds a full queue may make no progress
            before the peer is closed (a slow reader slows the senders down instead).
        ping_interval: idle seconds before a ping to a sig peer; a ping not
            answered by the next one closes the connection.
        legacy_timeout: most seconds a 0.7.3 peer may take to reply before the
            next message goes anyway.
    """

    def __init__(
        self,
        carrier: Carrier,
        clientid: Any,
        stream: Stream,
        *,
        name: str,
        executor: Executor,
        on_closed: Callable[[Connection], None],
        max_frame: int = DEFAULT_MAX_FRAME,
        max_queue: int = 10000,
        block_when_full: bool = False,
        stall_timeout: float = 1.0,
        ping_interval: float = 15.0,
        legacy_timeout: float = 10.0,
    ) -> None:
        self.carrier = carrier
        self.clientid = clientid
        self.stream = stream
        self.name = name
        self.executor = executor
        self.on_closed = on_closed
        self.max_queue = max_queue
        self.block_when_full = block_when_full
        self.stall_timeout = stall_timeout
        self.ping_interval = ping_interval
        self.legacy_timeout = legacy_timeout
        self.decoder = FrameDecoder(max_frame)
        self._capabilities: frozenset[str] = frozenset()  # what both sides have; empty: a 0.7.3 peer
        self.closed = threading.Event()
        self.close_reason = ""
        self._ids = itertools.count(1)
        self._pending: dict[Any, Future[Any]] = {}
        self._cond = threading.Condition()
        self._replies: deque[bytes] = deque()
        self._messages: deque[_Item] = deque()
        self._in_flight: _Item | None = None  # lock-step: the message whose reply we wait for
        self._in_flight_since = 0.0
        self._last_write = 0.0  # lock-step: when the last frame not yet known to be read was sent
        self._last_was_reply = False
        self._sending = 0
        self._drainers = 0
        self._send_now = _nonblocking_send(stream)
        self._ping: Future[Any] | None = None
        self.requests = RequestGate()  # the carrier sets its limit
        self.calls = CallQueue(self.closed, self._pending)  # the carrier sets its limit
        self._threads: list[threading.Thread] = []

    # -- life cycle ------------------------------------------------------------

    @property
    def capabilities(self) -> frozenset[str]:
        """What both sides have (set after the ``get_version`` handshake); empty: a 0.7.3 peer."""
        return self._capabilities

    @capabilities.setter
    def capabilities(self, value: frozenset[str]) -> None:
        with self._cond:
            self._capabilities = value
            if "pipeline" in value:
                self._in_flight = None  # the handshake's get_version, sent lock-step, is answered
            self._cond.notify_all()  # the writer may now pipeline, or ping while idle

    @property
    def pipelined(self) -> bool:
        """Whether the peer is a sig peer that takes pipelined, newline-framed messages."""
        return "pipeline" in self.capabilities

    def start(self) -> None:
        """Start the reader, writer and dispatcher threads."""
        for target, role in ((self._read_loop, "rx"), (self._write_loop, "tx"), (self._dispatch_loop, "run")):
            thread = threading.Thread(target=target, name="sig-%s-%s" % (self.name, role), daemon=True)
            self._threads.append(thread)
            thread.start()

    def close(self, reason: str) -> None:
        """Close the connection (idempotent); pending calls fail with :class:`CarrierError`."""
        with self._cond:
            if self.closed.is_set():
                return
            self.close_reason = reason
            self.closed.set()
            self._cond.notify_all()
        logger.info("[%s] connection closed: %s", self.name, reason)
        try:
            self.stream.close()
        except OSError:
            pass
        error = CarrierError("connection %s closed: %s" % (self.name, reason))
        for future in list(self._pending.values()):
            if not future.done():
                future.set_exception(error)
        self._pending.clear()
        self.calls.wake()

    def drain(self, timeout: float) -> bool:
        """Wait until everything queued is sent (and, lock-step, answered); False on timeout."""
        with self._cond:
            self._drainers += 1
            try:
                return self._cond.wait_for(
                    lambda: self.closed.is_set()
                    or not (self._messages or self._replies or self._sending or self._awaiting_reply()),
                    timeout,
                )
            finally:
                self._drainers -= 1

    def _awaiting_reply(self) -> bool:
        """Lock-step: whether a message sent still waits for its reply (call with the lock held)."""
        in_flight = self._in_flight
        return in_flight is not None and in_flight.future is not None and not in_flight.future.done()

    def join(self, timeout: float) -> None:
        """Wait for the connection's threads to end (call after :meth:`close`)."""
        deadline = time.monotonic() + timeout
        for thread in list(self._threads):
            # a thread not started yet (the connection is being set up) has nothing to wait for
            if thread.ident is not None and thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))

    # -- sending ---------------------------------------------------------------

    def call(self, message: dict[str, Any], timeout: float | None = None) -> Future[Any]:
        """Send a message that wants a reply; the future gets the reply dict."""
        message_id = next(self._ids)
        future: Future[Any] = Future()
        self._pending[message_id] = future
        future.add_done_callback(lambda _f: self._pending.pop(message_id, None))
        try:
            self._enqueue(dict(message, id=message_id), future, timeout)
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
        return future

    def post(self, message: dict[str, Any], timeout: float | None = None) -> None:
        """Send a message that needs no reply (a notification to a sig peer).

        A 0.7.3 peer always replies, so it gets an id; a failed reply is logged.
        """
        if self.pipelined:
            self._enqueue(message, None, timeout)
            return
        future = self.call(message, timeout)
        future.add_done_callback(log_failed_post)

    def send_reply(self, reply: dict[str, Any]) -> None:
        """Queue a reply; replies go before waiting messages and need no room."""
        try:
            frame = encode(reply)
        except (TypeError, ValueError) as exc:
            frame = encode(make_reply(reply.get("id"), Status.METHOD_FAILED, exc=exc))
        with self._cond:
            if self.closed.is_set():
                return
            if self._idle_pipelined():
                self._sending = 1
            else:
                self._replies.append(frame)
                self._cond.notify_all()
                return
        self._send_direct(frame)

    def _enqueue(self, message: dict[str, Any], future: Future[Any] | None, timeout: float | None) -> None:
        frame = encode(message)  # raises TypeError/ValueError in the caller's thread
        method = str(message.get("method"))
        if not self.pipelined and len(frame) >= LEGACY_FRAME_LIMIT:
            logger.warning("[%s] %d-byte %s to a pysig 0.7.3 peer, which reads 4096 bytes at most", self.name,
                           len(frame), method)
        with self._cond:
            if self.closed.is_set():
                raise CarrierError("connection %s is closed: %s" % (self.name, self.close_reason))
            if len(self._messages) >= self.max_queue:
                wait = timeout
                if not self.block_when_full:
                    wait = self.stall_timeout if timeout is None else min(timeout, self.stall_timeout)
                full = not self._cond.wait_for(
                    lambda: self.closed.is_set() or len(self._messages) < self.max_queue, wait
                )
                if self.closed.is_set():
                    raise CarrierError("connection %s is closed: %s" % (self.name, self.close_reason))
                if full:
                    reason = "peer is not reading: %d messages queued, none sent in %.1f s" % (
                        len(self._messages), wait if wait is not None else 0.0)
                    threading.Thread(target=self.close, args=(reason,), daemon=True).start()
                    raise CarrierError("connection %s dropped: %s" % (self.name, reason))
            if future is None or not self._idle_pipelined():
                self._messages.append(_Item(frame, future, method))
                self._cond.notify_all()
                return
            self._sending = 1
        self._send_direct(frame)

    def _idle_pipelined(self) -> bool:
        """Whether a frame may go at once, from the caller's thread (call with the lock held)."""
        idle = not (self._sending or self._replies or self._messages)
        return idle and self._send_now is not None and "pipeline" in self._capabilities

    def _send_direct(self, frame: bytes) -> None:
        """Send ``frame`` now, not blocking (the caller set ``_sending``); the writer sends the rest."""
        assert self._send_now is not None
        try:
            sent = self._send_now(frame)
        except OSError:
            sent = 0  # the writer's sendall meets the error again and closes the connection
        with self._cond:
            self._sending = 0
            if sent < len(frame):
                self._replies.appendleft(frame[sent:])  # before anything else
            if self._replies or self._messages or self._drainers:
                self._cond.notify_all()

    def _write_loop(self) -> None:
        try:
            while True:
                batch = self._next_batch()
                if batch is None:
                    return
                try:
                    self.stream.sendall(b"".join(batch) if len(batch) > 1 else batch[0])
                finally:
                    with self._cond:
                        self._sending = 0
                        self._last_write = time.monotonic()
                        self._cond.notify_all()
        except OSError as exc:
            self.close("send failed: %s" % exc)
        except Exception:
            logger.exception("[%s] writer failed", self.name)
            self.close("writer failed")

    def _next_batch(self) -> list[bytes] | None:
        """Wait for frames to send; None when closed. Sends pings when idle."""
        with self._cond:
            while True:
                if self.closed.is_set():
                    return None
                batch: list[bytes] = []
                wait: float | None = None
                if self._sending:
                    pass  # another thread is sending a frame directly; it wakes us when done
                elif self.pipelined:
                    while self._replies:
                        batch.append(self._replies.popleft())
                    while self._messages and len(batch) < 512:
                        batch.append(self._messages.popleft().frame)
                else:
                    wait = self._next_legacy_frame(batch)
                if batch:
                    self._sending = len(batch)
                    self._cond.notify_all()
                    return batch
                if "ping" in self.capabilities and self.ping_interval > 0:
                    wait = self.ping_interval if wait is None else min(wait, self.ping_interval)
                if not self._cond.wait(wait):
                    if "ping" in self.capabilities and not self._messages and not self._replies:
                        self._cond.release()
                        try:
                            self._send_ping()
                        finally:
                            self._cond.acquire()

    def _next_legacy_frame(self, batch: list[bytes]) -> float | None:
        """Towards a 0.7.3 peer, put the next frame into ``batch`` if it may go now.

        A 0.7.3 peer takes each ``recv`` as one JSON document: nothing goes while a message
        waits for its reply (which shows it was read); after a reply (no such proof) the next
        frame waits LEGACY_GAP. Replies first, but a message after a reply (none starves).
        Return how long to wait before trying again (None: until woken).
        """
        in_flight = self._in_flight
        if in_flight is not None:
            future = in_flight.future
            assert future is not None
            if future.done():
                self._in_flight = None
                if not future.cancelled() and future.exception() is None:
                    self._last_write = 0.0  # answered: the peer has read everything sent so far
            elif time.monotonic() - self._in_flight_since > self.legacy_timeout:
                logger.warning("[%s] no reply to %s in %.0f s; sending on", self.name, in_flight.method,
                               self.legacy_timeout)
                self._in_flight = None
            else:
                return self._in_flight_since + self.legacy_timeout - time.monotonic()
        if not (self._replies or self._messages):
            return None
        gap = self._last_write + LEGACY_GAP - time.monotonic()
        if gap > 0:
            return gap
        if self._replies and not (self._messages and self._last_was_reply):
            batch.append(self._replies.popleft())  # replies first, but not always: messages must not starve
            self._last_was_reply = True
            return None
        self._last_was_reply = False
        item = self._messages.popleft()
        batch.append(item.frame)
        if item.future is not None:
            self._in_flight, self._in_flight_since = item, time.monotonic()
            item.future.add_done_callback(self._wake)
        return None

    def _wake(self, _future: Future[Any]) -> None:
        with self._cond:
            self._cond.notify_all()

    def _send_ping(self) -> None:
        ping = self._ping
        if ping is not None and not ping.done():
            self.close("peer vanished: no answer to ping in %.1f s" % self.ping_interval)
            return
        self._ping = self.call({"method": "ping", "params": {}})

    # -- receiving -------------------------------------------------------------

    def _read_loop(self) -> None:
        try:
            while not self.closed.is_set():
                data = self.stream.recv(65536)
                if not data:
                    self.close("peer closed the connection")
                    break
                for frame in self.decoder.feed(data):
                    self._on_frame(frame)
        except OSError as exc:
            self.close("receive failed: %s" % exc)
        except Exception:
            logger.exception("[%s] reader failed", self.name)
            self.close("reader failed")
        finally:
            self.calls.put(None, wait=False)  # the dispatcher ends after the calls before it

    def _on_frame(self, frame: dict[str, Any] | BadFrame) -> None:
        if isinstance(frame, BadFrame):
            logger.warning("[%s] bad frame: %s", self.name, frame.reason)
            self.send_reply(make_reply(frame.id, Status.NO_METHOD, exc=ProtocolError(frame.reason)))
            return
        if is_reply(frame):
            future = self._pending.pop(frame.get("id"), None)
            if future is None:
                logger.warning("[%s] reply to no pending message: %.200r", self.name, frame)
            elif not future.done():
                future.set_result(frame)
            return
        method = frame.get("method")
        if method == "ping":
            if "id" in frame:
                self.send_reply(make_reply(frame["id"], Status.OK, {"pong": True}))
        elif method == "request":
            self.requests.submit(self, frame)
        else:
            self.calls.put(frame)

    def _dispatch_loop(self) -> None:
        try:
            while True:
                frame = self.calls.get()
                if frame is None:
                    break
                self._run(frame)
        finally:
            try:
                self.on_closed(self)
            except Exception:
                logger.exception("[%s] disconnect handling failed", self.name)

    def _run(self, frame: dict[str, Any]) -> None:
        reply = self.carrier.handleRX(self.clientid, frame)
        if reply is None or ("id" not in frame and self.pipelined):
            return  # a notification gets no reply
        self.send_reply(reply)
        if frame.get("method") == "get_version" and reply.get("status") == Status.OK:
            params = frame.get("params")
            offered = params.get("capabilities") if isinstance(params, dict) else None
            if isinstance(offered, list):
                self.capabilities = frozenset(CAPABILITIES) & frozenset(c for c in offered if isinstance(c, str))
                logger.debug("[%s] peer capabilities: %s", self.name, sorted(self.capabilities))


def _nonblocking_send(stream: Any) -> Callable[[bytes], int] | None:
    """Return ``send(data) -> bytes taken`` that never blocks, if ``stream`` wraps a plain socket."""
    sock = getattr(stream, "sock", None)
    flag = getattr(socket, "MSG_DONTWAIT", 0)
    if not flag or not isinstance(sock, socket.socket) or isinstance(sock, ssl.SSLSocket):
        return None

    def send(data: bytes) -> int:
        try:
            return sock.send(data, flag)
        except (BlockingIOError, InterruptedError):
            return 0

    return send
