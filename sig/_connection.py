"""One peer of a stream carrier (TCP or serial): the threads around its sans-I/O :class:`~sig._peer.Peer`.

The peer decides (framing, capability negotiation, lock-step or pipelining, when a ping is
due, the request table); the connection feeds it bytes, calls and the time under one lock,
and carries out the events it returns after releasing the lock. It has three threads:

* the *reader* reads bytes, splits frames, resolves replies at once and hands
  calls on: ``request`` calls to the carrier's pool (or, when the last of a read, it passes
  reading on to the connection's standby reader and runs the request itself: no thread
  wake-up on the request's way, see :mod:`sig._baton`), everything else to
* the *dispatcher*, which runs calls one at a time in arrival order (so a
  sender's signals keep their order) and queues their replies;
* the *writer* sends queued frames. Towards a pysig 0.7.3 peer it keeps one
  message in flight and each message in its own write; towards a sig peer it
  batches frames and never waits.

Towards a sig peer, a call or reply that finds nothing queued is sent at once, without
blocking, by the thread that makes it (one thread hand-off less per request hop).

No user code ever runs on the thread that reads, so a listener may wait for a reply
(e.g. make a request) without dead-locking the connection that must read it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from ._baton import Baton
from ._carrier import Carrier, log_failed_post, log_method_failure, plain_rx
from ._codec import DEFAULT_MAX_FRAME, BadFrame, encode
from ._errors import CarrierError
from ._limits import CallQueue, RequestGate
from ._peer import (
    LEGACY_FRAME_LIMIT,
    LEGACY_GAP,
    PING,
    WAKE,
    Close,
    Dispatch,
    Event,
    Peer,
    Resolve,
    RunRequest,
    SendPing,
    Write,
    reply_frame,
)
from ._pool import WorkerPool
from ._streams import Stream, nonblocking_send

__all__ = ["Stream", "Connection", "LEGACY_FRAME_LIMIT", "LEGACY_GAP"]

logger = logging.getLogger("sig.connection")

_Events = list[Event[Future[Any]]]


class Connection:
    """A peer of a stream carrier: the threads around its :class:`~sig._peer.Peer`.

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
        executor: WorkerPool,
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
        self._send_now = nonblocking_send(stream)
        self._plain = plain_rx(type(carrier))  # handleRX and handleRPC as Carrier has them
        self.peer: Peer[Future[Any]] = Peer(
            name, max_frame=max_frame, max_queue=max_queue, ping_interval=ping_interval,
            legacy_timeout=legacy_timeout, direct=self._send_now is not None,
        )
        self.decoder = self.peer.decoder
        self.closed = threading.Event()
        self._lock = threading.RLock()  # around every call into the peer
        self._cond = threading.Condition(self._lock)
        self._drainers = 0
        self.requests = RequestGate()  # the carrier sets its limit
        self.calls = CallQueue(self.closed, self.peer.pending)  # the carrier sets its limit
        self._threads: list[threading.Thread] = []
        self._baton = Baton()  # reading passed between the reader and the standby reader
        self._standby_started = False
        self._here: tuple[Callable[..., Any], tuple[Any, ...]] | None = None  # a request the reader runs itself

    # -- life cycle ------------------------------------------------------------

    @property
    def capabilities(self) -> frozenset[str]:
        """What both sides have (set after the ``get_version`` handshake); empty: a 0.7.3 peer."""
        return self.peer.capabilities

    @capabilities.setter
    def capabilities(self, value: frozenset[str]) -> None:
        with self._lock:
            self.peer.set_capabilities(value, time.monotonic())
            self._cond.notify_all()  # the writer may now pipeline, or ping while idle

    def negotiate(self, offered: Any) -> None:
        """Keep the capabilities of ours that the peer offered (the list in its ``get_version``)."""
        with self._lock:
            self.peer.negotiate(offered, time.monotonic())
            self._cond.notify_all()

    @property
    def pipelined(self) -> bool:
        """Whether the peer is a sig peer that takes pipelined, newline-framed messages."""
        return self.peer.pipelined

    @property
    def close_reason(self) -> str:
        """Why the connection closed (empty while open)."""
        return self.peer.close_reason

    def start(self) -> None:
        """Start the reader, writer and dispatcher threads."""
        for target, role in ((self._read_loop, "rx"), (self._write_loop, "tx"), (self._dispatch_loop, "run")):
            thread = threading.Thread(target=target, name="sig-%s-%s" % (self.name, role), daemon=True)
            self._threads.append(thread)
            thread.start()

    def close(self, reason: str) -> None:
        """Close the connection (idempotent); pending calls fail with :class:`CarrierError`."""
        with self._lock:
            if self.closed.is_set():
                return
            futures = self.peer.close(reason)
            self.closed.set()
            self._cond.notify_all()
        logger.info("[%s] connection closed: %s", self.name, reason)
        try:
            self.stream.close()
        except OSError:
            pass
        self._baton.close()
        error = CarrierError("connection %s closed: %s" % (self.name, reason))
        for future in futures:
            if not future.done():
                future.set_exception(error)
        self.calls.wake()

    def drain(self, timeout: float) -> bool:
        """Wait until everything queued is sent (and, lock-step, answered); False on timeout."""
        with self._lock:
            self._drainers += 1
            try:
                return self._cond.wait_for(lambda: self.closed.is_set() or self.peer.idle, timeout)
            finally:
                self._drainers -= 1

    def join(self, timeout: float) -> None:
        """Wait for the connection's threads to end (call after :meth:`close`)."""
        deadline = time.monotonic() + timeout
        for thread in list(self._threads):
            # a thread not started yet (the connection is being set up) has nothing to wait for
            if thread.ident is not None and thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))

    # -- carrying out the peer's events -------------------------------------------

    def _feed(self, events: _Events) -> _Events:
        """Wake the writer if the peer says so (call with the lock held); return the events."""
        if self._drainers:
            self._cond.notify_all()
            return events
        for event in events:
            if event is WAKE:
                self._cond.notify_all()
                break
        return events

    def _do(self, events: _Events) -> None:
        """Carry out events (with the lock released); calls to dispatch go to the queue together."""
        calls: list[dict[str, Any]] = []
        for event in events:
            if type(event) is Dispatch:
                calls.append(event.frame)
                continue
            if calls:
                self.calls.put_many(calls)
                calls = []
            if isinstance(event, Write):
                self._send_direct(event.data)
            elif isinstance(event, Resolve):
                if not event.token.done():
                    event.token.set_result(event.reply)
            elif isinstance(event, RunRequest):  # only the reader gets these
                self.requests.submit(self, event.frame, self._submit_here if event is events[-1] else None)
            elif isinstance(event, Close):
                self.close(event.reason)
            elif isinstance(event, SendPing):
                self.call(PING, ping=True)
        if calls:
            self.calls.put_many(calls)

    # -- sending ---------------------------------------------------------------

    def call(self, message: dict[str, Any], timeout: float | None = None, *, ping: bool = False) -> Future[Any]:
        """Send a message that wants a reply; the future gets the reply dict."""
        future = self._call(message, timeout, ping, True)
        assert future is not None
        return future

    def call_nowait(self, message: dict[str, Any]) -> Future[Any] | None:
        """Like :meth:`call`, but None at once if the queue is full or the connection closed."""
        return self._call(message, None, False, False)

    def _call(self, message: dict[str, Any], timeout: float | None, ping: bool, wait: bool) -> Future[Any] | None:
        message_id = self.peer.new_id()
        future: Future[Any] = Future()
        try:
            frame = encode(dict(message, id=message_id))  # raises TypeError/ValueError in the caller's thread
            with self._lock:
                if not wait and (self.peer.full or self.closed.is_set()):
                    return None
                if len(self.peer.messages) >= self.max_queue:
                    self._wait_for_room(timeout)
                events = self._feed(self.peer.call(frame, message_id, future, str(message.get("method")), ping=ping))
        except Exception as exc:
            if not wait:
                return None
            future.set_exception(exc)
            return future
        future.add_done_callback(lambda _f: self._forget(message_id))
        self._do(events)
        return future

    def _forget(self, message_id: Any) -> None:
        if message_id in self.peer.pending:  # not answered: given up, or failed
            with self._lock:
                self._feed(self.peer.forget(message_id))

    def post(self, message: dict[str, Any], timeout: float | None = None) -> None:
        """Send a message that needs no reply (a notification to a sig peer).

        A 0.7.3 peer always replies, so it gets an id; a failed reply is logged.
        """
        if "pipeline" not in self.peer.capabilities:
            self.call(message, timeout).add_done_callback(log_failed_post)
            return
        self.post_frame(encode(message), str(message.get("method")), timeout)  # encode raises in the caller's thread

    def post_frame(self, frame: bytes, method: str, timeout: float | None = None) -> None:
        """Queue the frame of a notification to a sig peer (see :meth:`post`)."""
        peer = self.peer
        with self._lock:
            if len(peer.messages) >= self.max_queue:
                self._wait_for_room(timeout)
            events = peer.post(frame, method)
            if events or self._drainers:
                self._feed(events)

    def send_reply(self, reply: dict[str, Any]) -> None:
        """Queue a reply; replies go before waiting messages and need no room."""
        frame = reply_frame(reply)
        with self._lock:
            events = self._feed(self.peer.queue_reply(frame))
        self._do(events)

    def _wait_for_room(self, timeout: float | None) -> None:
        """Wait while the queue is full (call with the lock held).

        Raises:
            CarrierError: the connection is closed, or (without ``block_when_full``) the peer
                stopped reading: then it is closed.
        """
        if self.closed.is_set():
            raise CarrierError("connection %s is closed: %s" % (self.name, self.close_reason))
        if not self.peer.full:
            return
        wait = timeout
        if not self.block_when_full:
            wait = self.stall_timeout if timeout is None else min(timeout, self.stall_timeout)
        full = not self._cond.wait_for(lambda: self.closed.is_set() or not self.peer.full, wait)
        if self.closed.is_set():
            raise CarrierError("connection %s is closed: %s" % (self.name, self.close_reason))
        if full:
            reason = "peer is not reading: %d messages queued, none sent in %.1f s" % (
                self.peer.queued, wait if wait is not None else 0.0)
            threading.Thread(target=self.close, args=(reason,), daemon=True).start()
            raise CarrierError("connection %s dropped: %s" % (self.name, reason))

    def _send_direct(self, frame: bytes) -> None:
        """Send ``frame`` now, not blocking (the peer counts it as sending); the writer sends the rest."""
        assert self._send_now is not None
        try:
            sent = self._send_now(frame)
        except OSError:
            sent = 0  # the writer's sendall meets the error again and closes the connection
        with self._lock:
            self._feed(self.peer.written(frame, sent))

    def _write_loop(self) -> None:
        try:
            while True:
                batch = self._next_batch()
                if batch is None:
                    return
                try:
                    self.stream.sendall(b"".join(batch) if len(batch) > 1 else batch[0])
                finally:
                    with self._lock:
                        self.peer.wrote(time.monotonic())
                        self._cond.notify_all()
        except OSError as exc:
            self.close("send failed: %s" % exc)
        except Exception:
            logger.exception("[%s] writer failed", self.name)
            self.close("writer failed")

    def _next_batch(self) -> list[bytes] | None:
        """Wait for frames to send; None when closed. Sends pings when due."""
        with self._lock:
            while True:
                if self.closed.is_set():
                    return None
                now = time.monotonic()
                batch, wait = self.peer.next_writes(now)
                if batch:
                    self._cond.notify_all()
                    return batch
                events, tick = self.peer.tick(now)
                if events:
                    self._cond.release()
                    try:
                        self._do(events)
                    finally:
                        self._cond.acquire()
                    continue
                if tick is not None:
                    wait = tick if wait is None else min(wait, tick)
                self._cond.wait(wait)

    # -- receiving -------------------------------------------------------------

    def _read_loop(self, standby: bool = False) -> None:
        """The reader thread, and the standby reader: each reads until it runs a request itself."""
        while True:
            if standby and not self._baton.wait():
                return  # closed
            task = self._read()
            if task is None:
                return
            fn, args = task
            try:
                fn(*args)
            except BaseException:
                logger.exception("[%s] request failed", self.name)
            del task, fn, args
            standby = True  # and reads again once the reader passes reading on

    def _read(self) -> tuple[Callable[..., Any], tuple[Any, ...]] | None:
        """Read until the stream ends (None) or a request is to run on this thread (reading passed on)."""
        try:
            while not self.closed.is_set():
                data = self.stream.recv(65536)
                if not data:
                    self.close("peer closed the connection")
                    break
                frames = self.peer.decoder.feed(data)  # only the thread that reads decodes: no lock
                if frames:
                    self._on_frames(frames)
                    task = self._here
                    if task is not None:
                        self._here = None
                        self._baton.pass_on()  # the standby reads on from here
                        return task
        except OSError as exc:
            self.close("receive failed: %s" % exc)
        except Exception:
            logger.exception("[%s] reader failed", self.name)
            self.close("reader failed")
        self.calls.put(None, wait=False)  # the dispatcher ends after the calls before it
        return None

    def _submit_here(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run a request (the last call of a read) on the reader, once it passed reading on; else on the pool."""
        if self._baton.claim():
            self._here = (fn, args)
            return
        if not self._standby_started and not self.closed.is_set():  # the first request starts the standby
            self._standby_started = True
            self._threads.append(threading.Thread(target=self._read_loop, args=(True,), daemon=True,
                                                  name="sig-%s-rx2" % self.name))
            self._threads[-1].start()
        self.executor.submit(fn, *args)

    def _on_frames(self, frames: list[dict[str, Any] | BadFrame]) -> None:
        """Hand the frames of one read to the peer, then carry out what it says."""
        with self._lock:
            events = self._feed(self.peer.receive_frames(frames))
        self._do(events)

    def _dispatch_loop(self) -> None:
        try:
            running = True
            while running:
                for frame in self.calls.get_many():
                    if frame is None:
                        running = False
                        break
                    self._run(frame)
        finally:
            try:
                self.on_closed(self)
            except Exception:
                logger.exception("[%s] disconnect handling failed", self.name)

    def _run(self, frame: dict[str, Any], done: Callable[[], None] | None = None) -> None:
        """Run a call; ``done()`` (a request's) is called once it ran, before its reply is sent."""
        carrier = self.carrier
        plain = self._plain and carrier.callback_rx is None
        if plain and "id" not in frame and "pipeline" in self.peer.capabilities:
            # A notification (a signal): what handleRX would do, without the reply nobody gets.
            method, params, methods = frame.get("method"), frame.get("params"), carrier.methods
            fn = methods.get(method) if type(method) is str and methods else None
            if fn is not None and type(params) is dict:
                try:
                    fn(self.clientid, params)
                except Exception as exc:
                    log_method_failure(method, self.clientid, exc)
                return
        reply = carrier.handleRX(self.clientid, frame)
        if done is not None:
            done()
        self._answer(frame, reply)

    def _answer(self, frame: dict[str, Any], reply: dict[str, Any] | None) -> None:
        """Send the reply to a call that was run (none to a notification)."""
        if reply is None or not self.peer.wants_reply(frame):
            return
        data = reply_frame(reply)
        with self._lock:
            events = self._feed(self.peer.answer(frame, reply, data, time.monotonic()))
        self._do(events)

    def forward(self, frame: dict[str, Any], done: Callable[[], None] | None = None) -> bool:
        """Start a request the router only passes on (:attr:`Carrier.callback_forward`), from this thread.

        When its reply comes, ``done()`` is called and the reply sent. False: nothing started (it is not
        such a request, or the carrier handles messages its own way): run it on the pool.
        """
        carrier = self.carrier
        start = carrier.callback_forward
        if start is None or carrier.callback_rx is not None or not self._plain:
            return False

        def answer(reply: dict[str, Any]) -> None:
            if done is not None:
                done()  # the place is free before the reply goes: the client may send its next one at once
            self._answer(frame, reply)

        return start(self.clientid, frame, answer)
