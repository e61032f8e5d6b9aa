"""The decisions of one peer of a stream carrier (TCP or serial), without I/O: a sans-I/O core.

:class:`Peer` is what :class:`~sig._connection.Connection` (the threaded shell) feeds and obeys,
in the style of h11: bytes and messages go in by method calls, with the time passed in as
a number; what to do comes back as events (:class:`Dispatch` a call, :class:`Resolve` a pending
call with its reply, :class:`Write` bytes now, :data:`WAKE` the writer, :class:`Close` ...). It
never touches a socket, a thread, a lock or a clock, so a test drives it with bytes and numbers.

What it decides:

* framing: bytes in through :class:`~sig._codec.FrameDecoder` (newline-delimited JSON, or
  objects back to back as pysig 0.7.3 sends them); a frame that cannot be used is answered
  with an error reply (status -3) carrying its ``id`` when one could be read;
* capability negotiation: ``get_version`` with ``{"capabilities": [...]}``; a 0.7.3 peer never
  announces any, and stays *lock-step*;
* pacing: towards a sig peer (``pipeline``) frames go in batches and never wait; towards a
  0.7.3 peer at most one message is in flight (nothing goes until its reply, or
  ``legacy_timeout``), each frame is written alone, and a frame after a reply (which gives no
  proof it was read) waits :data:`LEGACY_GAP`, so that two never land in one of its ``recv``;
* ping: towards a peer with ``ping``, a ping is due after ``ping_interval`` seconds without a
  batch written; one still unanswered when the next is due means the peer vanished;
* the request table: message ids to the caller's tokens (futures, in the shell); a reply
  resolves its token once; a call the caller gave up on (:meth:`Peer.forget`) is gone, so its
  late reply is only logged and never answers another call (ids are never reused).

Not thread-safe: the shell calls it with its own lock held, and carries out the events after
releasing it (so no user code, e.g. a future's callbacks, runs under that lock).
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ._codec import CAPABILITIES, DEFAULT_MAX_FRAME, BadFrame, FrameDecoder, Status, encode, make_reply
from ._errors import CarrierError, ProtocolError

__all__ = [
    "Peer",
    "Dispatch",
    "RunRequest",
    "Resolve",
    "Write",
    "Wake",
    "WAKE",
    "Close",
    "SendPing",
    "Event",
    "LEGACY_FRAME_LIMIT",
    "LEGACY_GAP",
    "PING",
    "reply_frame",
]

logger = logging.getLogger("sig.connection")

T = TypeVar("T")

# The events are plain (not frozen) dataclasses only because they are made for every frame and
# frozen ones take half as long again to build; nothing changes them once made.

#: Largest message sent to a pysig 0.7.3 peer without a warning: it reads with ``recv(4096)``.
LEGACY_FRAME_LIMIT = 4096
#: Seconds between a frame sent to a 0.7.3 peer with no proof it was read (a reply) and the
#: next one, so that the two do not land in one of its ``recv`` calls.
LEGACY_GAP = 0.02
#: Most frames written in one batch to a sig peer.
MAX_BATCH = 512
#: The ping a peer sends when one is due (:class:`SendPing`).
PING: dict[str, Any] = {"method": "ping", "params": {}}
_NEVER = float("-inf")


@dataclass(slots=True)
class Dispatch:
    """Run this call (a signal, a registration ...) after those before it, in arrival order."""

    frame: dict[str, Any]


@dataclass(slots=True)
class RunRequest:
    """Run this ``request`` call off the reader, beside the others (it may take long)."""

    frame: dict[str, Any]


@dataclass(slots=True)
class Resolve(Generic[T]):
    """The reply to a pending call arrived: give it to the call's token."""

    token: T
    reply: dict[str, Any]


@dataclass(slots=True)
class Write:
    """Write these bytes now, from this thread, without blocking; then call :meth:`Peer.written`."""

    data: bytes


@dataclass(slots=True)
class Wake:
    """The writer may have something to do (or a drain may be over): wake it."""


#: The one :class:`Wake` event.
WAKE = Wake()


@dataclass(slots=True)
class Close:
    """Close the connection, for this reason."""

    reason: str


@dataclass(slots=True)
class SendPing:
    """A ping is due: make a call of :data:`PING` with ``ping=True``."""


Event = Dispatch | RunRequest | Resolve[T] | Write | Wake | Close | SendPing


@dataclass(slots=True)
class _Outgoing:
    frame: bytes
    id: Any  # None: a notification (to a sig peer), nothing awaits its reply
    method: str


def reply_frame(reply: dict[str, Any]) -> bytes:
    """Return the frame of ``reply``; a response JSON cannot carry becomes an error reply (status -2).

    So does an id JSON cannot carry (``Infinity`` is read, never written): then the reply has none.
    """
    try:
        return encode(reply)
    except (TypeError, ValueError) as exc:
        try:
            return encode(make_reply(reply.get("id"), Status.METHOD_FAILED, exc=exc))
        except (TypeError, ValueError):
            return encode(make_reply(None, Status.METHOD_FAILED, exc=exc))


class Peer(Generic[T]):
    """The sans-I/O state of one peer: framing, negotiation, pacing, ping and the request table.

    Args:
        name: for log lines.
        max_frame: largest frame accepted.
        max_queue: most messages waiting to be written (:attr:`full` tells; the shell waits).
        ping_interval: seconds without a batch written before a ping to a sig peer (0: never).
        legacy_timeout: most seconds a 0.7.3 peer may take to reply before the next message goes.
        direct: whether the shell can write a frame at once, without blocking, from the thread
            that makes it (a plain socket); then an idle sig peer gets :class:`Write` events.

    Attributes:
        capabilities: what both sides have (after ``get_version``); empty: a 0.7.3 peer.
        pending: the request table, message id to token (the shell may read its length unlocked).
        replies, messages: frames waiting to be written; replies go first and need no room.
        sending: frames being written (by the writer, or directly by a caller).
        closed, close_reason: whether and why the connection closed.
    """

    def __init__(
        self,
        name: str = "peer",
        *,
        max_frame: int = DEFAULT_MAX_FRAME,
        max_queue: int = 10000,
        ping_interval: float = 15.0,
        legacy_timeout: float = 10.0,
        direct: bool = False,
    ) -> None:
        self.name = name
        self.max_queue = max_queue
        self.ping_interval = ping_interval
        self.legacy_timeout = legacy_timeout
        self.direct = direct
        self.decoder = FrameDecoder(max_frame)
        self.capabilities: frozenset[str] = frozenset()
        self.pending: dict[Any, T] = {}
        self.replies: deque[bytes] = deque()
        self.messages: deque[_Outgoing] = deque()
        self.sending = 0
        self.closed = False
        self.close_reason = ""
        self._ids = itertools.count(1)
        self._in_flight: _Outgoing | None = None  # lock-step: the message whose reply we wait for
        self._in_flight_since = 0.0
        self._in_flight_answered = False
        self._last_write = _NEVER  # lock-step: when the last frame not yet known to be read was written
        self._last_was_reply = False
        self._ping_id: Any = None
        self._ping_due: float | None = None  # None: no pings (not negotiated)

    # -- state -------------------------------------------------------------------

    @property
    def pipelined(self) -> bool:
        """Whether the peer is a sig peer that takes pipelined, newline-framed messages."""
        return "pipeline" in self.capabilities

    @property
    def full(self) -> bool:
        """Whether the message queue holds ``max_queue`` messages (a caller must wait for room)."""
        return len(self.messages) >= self.max_queue

    @property
    def queued(self) -> int:
        """How many messages wait to be written."""
        return len(self.messages)

    @property
    def idle(self) -> bool:
        """Whether everything queued is written and, lock-step, the last message answered."""
        in_flight = self._in_flight
        awaiting = in_flight is not None and in_flight.id in self.pending
        return not (self.messages or self.replies or self.sending or awaiting)

    def new_id(self) -> int:
        """Return a fresh message id (never reused; safe from any thread: one ``itertools.count`` step)."""
        return next(self._ids)

    def negotiate(self, offered: Any, now: float) -> list[Event[T]]:
        """Keep the capabilities of ours that the peer ``offered`` (its ``get_version`` list)."""
        names = offered if isinstance(offered, list) else []
        capabilities = frozenset(CAPABILITIES) & frozenset(c for c in names if isinstance(c, str))
        return self.set_capabilities(capabilities, now)

    def set_capabilities(self, capabilities: frozenset[str], now: float) -> list[Event[T]]:
        """Set what both sides have; from now on a sig peer is pipelined (and pinged)."""
        self.capabilities = capabilities
        if "pipeline" in capabilities:
            self._in_flight = None  # the handshake's get_version, sent lock-step, is answered
        self._ping_due = now + self.ping_interval if "ping" in capabilities and self.ping_interval > 0 else None
        logger.debug("[%s] peer capabilities: %s", self.name, sorted(capabilities))
        return [WAKE]

    # -- receiving ---------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event[T]]:
        """Take bytes read from the peer; return what to do about the frames they complete."""
        return self.receive_frames(self.decoder.feed(data))

    def receive_frames(self, frames: list[dict[str, Any] | BadFrame]) -> list[Event[T]]:
        """Take the frames :attr:`decoder` gave for one read; return what to do about them.

        The replies among them come first: a call handed on may have to wait for room in a full
        call queue, and the call before it may be waiting for one of these replies.
        """
        if len(frames) == 1:
            return self.receive_frame(frames[0])
        resolved: list[Event[T]] = []
        events: list[Event[T]] = []
        for frame in frames:
            if type(frame) is dict:
                method = frame.get("method")
                if type(method) is str and method != "ping" and method != "request" and "status" not in frame:
                    events.append(Dispatch(frame))  # the usual call (a signal ...): as receive_frame says
                    continue
            out = self.receive_frame(frame)
            (resolved if out and isinstance(out[0], Resolve) else events).extend(out)
        return resolved + events if resolved else events

    def receive_frame(self, frame: dict[str, Any] | BadFrame) -> list[Event[T]]:
        """Take one decoded frame (from :attr:`decoder`); return what to do about it."""
        if isinstance(frame, BadFrame):
            logger.warning("[%s] bad frame: %s", self.name, frame.reason)
            return self.queue_reply(encode(make_reply(frame.id, Status.NO_METHOD, exc=ProtocolError(frame.reason))))
        if "status" in frame and "method" not in frame:  # a reply (is_reply)
            message_id = frame.get("id")
            try:
                token = self.pending.pop(message_id)
            except (KeyError, TypeError):  # TypeError: an id JSON made a list or dict
                logger.warning("[%s] reply to no pending message: %.200r", self.name, frame)
                return []
            in_flight = self._in_flight
            if in_flight is not None and in_flight.id == message_id:
                self._in_flight_answered = True  # proof the peer read everything sent so far
                return [Resolve(token, frame), WAKE]
            return [Resolve(token, frame)]
        method = frame.get("method")
        if method == "ping":
            if "id" in frame:
                return self.queue_reply(reply_frame(make_reply(frame["id"], Status.OK, {"pong": True})))
            return []
        if method == "request":
            return [RunRequest(frame)]
        return [Dispatch(frame)]

    def wants_reply(self, frame: dict[str, Any]) -> bool:
        """Whether a call that was run gets its reply: a notification from a sig peer does not."""
        return "id" in frame or "pipeline" not in self.capabilities

    def answer(self, frame: dict[str, Any], reply: dict[str, Any], data: bytes, now: float) -> list[Event[T]]:
        """Send the reply (``data``: :func:`reply_frame` of ``reply``) to a call that was run.

        A notification from a sig peer gets none. An answered ``get_version`` that offered
        capabilities settles them (after its reply is queued, which still goes lock-step).
        """
        if not self.wants_reply(frame):
            return []
        events = self.queue_reply(data)
        if frame.get("method") == "get_version" and reply.get("status") == Status.OK:
            params = frame.get("params")
            offered = params.get("capabilities") if isinstance(params, dict) else None
            if isinstance(offered, list):
                events.extend(self.negotiate(offered, now))
        return events

    # -- sending -----------------------------------------------------------------

    def queue_reply(self, data: bytes) -> list[Event[T]]:
        """Queue a reply frame: replies go before waiting messages and need no room."""
        if self.closed:
            return []
        if self._idle_pipelined():
            self.sending = 1
            return [Write(data)]
        self.replies.append(data)
        return [WAKE]

    def call(self, data: bytes, message_id: Any, token: T, method: str, *, ping: bool = False) -> list[Event[T]]:
        """Queue a message that wants a reply (``data`` carries ``message_id``, from :meth:`new_id`).

        Raises:
            CarrierError: the connection is closed.
        """
        self._check_open()
        self.pending[message_id] = token
        if ping:
            self._ping_id = message_id
        if self._idle_pipelined():
            self.sending = 1
            return [Write(data)]
        return self._queue(_Outgoing(data, message_id, method))

    def post(self, data: bytes, method: str) -> list[Event[T]]:
        """Queue a notification (only a sig peer gets them; a 0.7.3 peer gets calls).

        Raises:
            CarrierError: the connection is closed.
        """
        if self.closed:
            self._check_open()
        messages = self.messages
        idle = not (messages or self.replies or self.sending)
        if "pipeline" in self.capabilities:
            messages.append(_Outgoing(data, None, method))  # what _queue does, for the usual case
            return [WAKE] if idle else []  # else the writer is awake already, or wakes for what is queued
        events = self._queue(_Outgoing(data, None, method))
        return events if idle else []

    def forget(self, message_id: Any) -> list[Event[T]]:
        """Drop a call from the request table (its caller gave up, or it failed); a late reply is ignored."""
        if self.pending.pop(message_id, None) is None:
            return []
        in_flight = self._in_flight
        return [WAKE] if in_flight is not None and in_flight.id == message_id else []

    def _check_open(self) -> None:
        if self.closed:
            raise CarrierError("connection %s is closed: %s" % (self.name, self.close_reason))

    def _queue(self, item: _Outgoing) -> list[Event[T]]:
        if "pipeline" not in self.capabilities and len(item.frame) >= LEGACY_FRAME_LIMIT:
            logger.warning("[%s] %d-byte %s to a pysig 0.7.3 peer, which reads 4096 bytes at most", self.name,
                           len(item.frame), item.method)
        self.messages.append(item)
        return [WAKE]

    def _idle_pipelined(self) -> bool:
        """Whether a frame may be written at once, by the thread that makes it."""
        idle = not (self.sending or self.replies or self.messages)
        return idle and self.direct and "pipeline" in self.capabilities

    def written(self, data: bytes, sent: int) -> list[Event[T]]:
        """A :class:`Write` is done: ``sent`` bytes of ``data`` went (the writer sends the rest)."""
        self.sending = 0
        if sent < len(data):
            self.replies.appendleft(data[sent:])  # before anything else
        return [WAKE] if self.replies or self.messages else []

    def next_writes(self, now: float) -> tuple[list[bytes], float | None]:
        """For the writer: the frames to write now (one write), and how long to wait if none.

        The wait is None when only an event (a frame queued, a reply) can change things.
        Call :meth:`wrote` once the frames are written.
        """
        if self.sending:
            return [], None  # another thread is writing a frame directly; it wakes the writer when done
        if "pipeline" in self.capabilities:
            batch = list(self.replies)
            self.replies.clear()
            while self.messages and len(batch) < MAX_BATCH:
                batch.append(self.messages.popleft().frame)
            self.sending = len(batch)
            return batch, None
        batch, wait = self._next_legacy(now)
        self.sending = len(batch)
        return batch, wait

    def _next_legacy(self, now: float) -> tuple[list[bytes], float | None]:
        """Towards a 0.7.3 peer: the next frame, if it may go now.

        A 0.7.3 peer takes each ``recv`` as one JSON document: nothing goes while a message
        waits for its reply (which shows it was read); after a reply (no such proof) the next
        frame waits LEGACY_GAP. Replies first, but a message after a reply (none starves).
        """
        in_flight = self._in_flight
        if in_flight is not None:
            if in_flight.id not in self.pending:  # answered, given up, or failed
                self._in_flight = None
                if self._in_flight_answered:
                    self._last_write = _NEVER  # the peer has read everything sent so far
            elif now - self._in_flight_since > self.legacy_timeout:
                logger.warning("[%s] no reply to %s in %.0f s; sending on", self.name, in_flight.method,
                               self.legacy_timeout)
                self._in_flight = None
            else:
                return [], self._in_flight_since + self.legacy_timeout - now
        if not (self.replies or self.messages):
            return [], None
        gap = self._last_write + LEGACY_GAP - now
        if gap > 0:
            return [], gap
        if self.replies and not (self.messages and self._last_was_reply):
            self._last_was_reply = True  # replies first, but not always: messages must not starve
            return [self.replies.popleft()], None
        self._last_was_reply = False
        item = self.messages.popleft()
        if item.id is not None:
            self._in_flight, self._in_flight_since, self._in_flight_answered = item, now, False
        return [item.frame], None

    def wrote(self, now: float) -> None:
        """The writer wrote the frames of :meth:`next_writes` (or failed to)."""
        self.sending = 0
        self._last_write = now
        if self._ping_due is not None:
            self._ping_due = now + self.ping_interval

    # -- time and closing --------------------------------------------------------

    def tick(self, now: float) -> tuple[list[Event[T]], float | None]:
        """Say whether a ping is due, or the peer vanished; and when to tick again (None: no need)."""
        due = self._ping_due
        if due is None or self.closed:
            return [], None
        if now < due:
            return [], due - now
        if self.messages or self.replies:
            return [], self.ping_interval  # the writer has work; it writes first
        self._ping_due = now + self.ping_interval
        if self._ping_id is not None and self._ping_id in self.pending:
            return [Close("peer vanished: no answer to ping in %.1f s" % self.ping_interval)], None
        return [SendPing()], self.ping_interval

    def close(self, reason: str) -> list[T]:
        """Close (once; then return nothing): return the tokens of the calls still pending, to fail."""
        if self.closed:
            return []
        self.closed, self.close_reason = True, reason
        tokens = list(self.pending.values())
        self.pending.clear()
        return tokens
