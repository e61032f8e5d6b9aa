"""One peer of a stream carrier (TCP or serial): threads, framing, lock-step or pipelining.

Each connection has three threads:

* the *reader* reads bytes, splits frames, resolves replies at once and hands
  calls on: ``request`` calls to the carrier's pool, everything else to
* the *dispatcher*, which runs calls one at a time in arrival order (so a
  sender's signals keep their order) and queues their replies;
* the *writer* sends queued frames. Towards a pysig 0.7.3 peer it keeps one
  message in flight and each message in its own write; towards a sig peer it
  batches frames and never waits.

No user code ever runs on the reader, so a listener may wait for a reply
(e.g. make a request) without dead-locking the connection that must read it.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from concurrent.futures import Executor, Future
from typing import TYPE_CHECKING, Any, Callable, Protocol

from ._carrier import log_failed_post
from ._codec import CAPABILITIES, DEFAULT_MAX_FRAME, BadFrame, FrameDecoder, Status, encode, is_reply, make_reply
from ._errors import CarrierError, ProtocolError

if TYPE_CHECKING:
    from ._carrier import Carrier

__all__ = ["Stream", "Connection"]

logger = logging.getLogger("sig.connection")

#: Largest message sent to a pysig 0.7.3 peer without a warning: it reads with ``recv(4096)``.
LEGACY_FRAME_LIMIT = 4096


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
        self.ping_interval = ping_interval
        self.legacy_timeout = legacy_timeout
        self.decoder = FrameDecoder(max_frame)
        self.capabilities: frozenset[str] = frozenset()  # what both sides have; empty: a 0.7.3 peer
        self.closed = threading.Event()
        self.close_reason = ""
        self._ids = itertools.count(1)
        self._pending: dict[Any, Future[Any]] = {}
        self._cond = threading.Condition()
        self._replies: deque[bytes] = deque()
        self._messages: deque[_Item] = deque()
        self._in_flight: _Item | None = None  # lock-step: the message whose reply we wait for
        self._in_flight_since = 0.0
        self._sending = 0
        self._ping: Future[Any] | None = None
        self._calls: deque[Any] = deque()
        self._calls_ready = threading.Condition()
        self._threads: list[threading.Thread] = []

    # -- life cycle ------------------------------------------------------------

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
        with self._calls_ready:
            self._calls_ready.notify_all()

    def drain(self, timeout: float) -> bool:
        """Wait until everything queued is sent (and, lock-step, answered); False on timeout."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self.closed.is_set()
                or not (self._messages or self._replies or self._sending or self._in_flight),
                timeout,
            )

    def join(self, timeout: float) -> None:
        """Wait for the connection's threads to end (call after :meth:`close`)."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            if thread is not threading.current_thread():
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
            self._replies.append(frame)
            self._cond.notify_all()

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
                if not self.block_when_full:
                    full = True
                else:
                    full = not self._cond.wait_for(
                        lambda: self.closed.is_set() or len(self._messages) < self.max_queue, timeout
                    )
                    if self.closed.is_set():
                        raise CarrierError("connection %s is closed: %s" % (self.name, self.close_reason))
                if full:
                    reason = "peer is not reading: %d messages queued" % len(self._messages)
                    threading.Thread(target=self.close, args=(reason,), daemon=True).start()
                    raise CarrierError("connection %s dropped: %s" % (self.name, reason))
            self._messages.append(_Item(frame, future, method))
            self._cond.notify_all()

    def _write_loop(self) -> None:
        try:
            while True:
                batch = self._next_batch()
                if batch is None:
                    return
                try:
                    self.stream.sendall(b"".join(batch) if self.pipelined else batch[0])
                    for frame in batch[1:] if not self.pipelined else ():
                        self.stream.sendall(frame)  # a 0.7.3 peer reads one message per recv
                finally:
                    with self._cond:
                        self._sending = 0
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
                while self._replies:
                    batch.append(self._replies.popleft())
                in_flight = self._in_flight
                if in_flight is not None and in_flight.future is not None and not in_flight.future.done():
                    if time.monotonic() - self._in_flight_since > self.legacy_timeout:
                        logger.warning("[%s] no reply to %s in %.0f s; sending on", self.name, in_flight.method,
                                       self.legacy_timeout)
                        in_flight = self._in_flight = None
                else:
                    in_flight = self._in_flight = None
                if in_flight is None and self._messages:
                    if self.pipelined:
                        while self._messages and len(batch) < 512:
                            batch.append(self._messages.popleft().frame)
                    else:
                        item = self._messages.popleft()
                        batch.append(item.frame)
                        if item.future is not None:
                            self._in_flight, self._in_flight_since = item, time.monotonic()
                            item.future.add_done_callback(self._wake)
                if batch:
                    self._sending = len(batch)
                    self._cond.notify_all()
                    return batch
                wait = self.legacy_timeout if self._in_flight is not None else None
                if "ping" in self.capabilities and self.ping_interval > 0:
                    wait = self.ping_interval if wait is None else min(wait, self.ping_interval)
                if not self._cond.wait(wait):
                    if "ping" in self.capabilities and not self._messages and not self._replies:
                        self._cond.release()
                        try:
                            self._send_ping()
                        finally:
                            self._cond.acquire()

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
            with self._calls_ready:
                self._calls.append(None)  # the dispatcher ends after the calls before it
                self._calls_ready.notify_all()

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
            self.executor.submit(self._run, frame)
        else:
            with self._calls_ready:
                self._calls.append(frame)
                self._calls_ready.notify()

    def _dispatch_loop(self) -> None:
        try:
            while True:
                with self._calls_ready:
                    while not self._calls:
                        self._calls_ready.wait()
                    frame = self._calls.popleft()
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

