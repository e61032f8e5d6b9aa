"""Per-peer limits of the stream carriers: pending requests, calls waiting to run, events for a slow peer.

A peer's ``request`` calls run on the carrier's shared pool, off the reader; without a
bound, one peer that floods requests at a slow sender would fill the pool's queue (and
memory) and make every other peer wait. :class:`RequestGate` counts them per peer and
answers the ones over the limit at once with an error (status -2), keeping the peer
connected.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._codec import Status, make_reply
from ._errors import LimitExceededError

if TYPE_CHECKING:
    from ._connection import Connection

__all__ = ["RequestGate", "QueueOverflow", "CallQueue", "DEFAULT_MAX_PENDING_REQUESTS", "DEFAULT_MAX_CALLS"]

logger = logging.getLogger("sig.limits")

#: Default most requests one client of a server carrier may have running or waiting at once.
DEFAULT_MAX_PENDING_REQUESTS = 100
#: Default most calls (signals ...) of one client of a server carrier read and waiting to run.
DEFAULT_MAX_CALLS = 1000


class RequestGate:
    """Counts the requests of one peer that run or wait; refuses those over ``limit``.

    A request the server only passes on to another peer is started at once, on the reader
    (:meth:`~sig._connection.Connection.forward`); it counts until its reply is sent.

    Attributes:
        limit: most requests at once (None: no limit).
        refused: how many requests were refused so far.
    """

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit
        self.pending = 0
        self.refused = 0
        self._lock = threading.Lock()
        self._refusing = False

    def submit(self, conn: Connection, frame: dict[str, Any],
               run: Callable[..., None] | None = None) -> None:
        """Run ``frame`` (a request) on the connection's pool, or answer it with an error if over the limit.

        ``run(fn, *args)``, if given, runs it instead of the pool's ``submit``.
        """
        limit = self.limit
        run = conn.executor.submit if run is None else run
        if limit is None:
            if not conn.forward(frame):
                run(conn._run, frame)
            return
        with self._lock:
            over = self.pending >= limit
            if over:
                self.refused += 1
                first, self._refusing = not self._refusing, True
            else:
                self.pending += 1
        if over:
            if first:  # once per burst: a flood must not flood the log too
                logger.warning("[%s] too many pending requests (limit %d): refusing more until some finish",
                               conn.name, limit)
            if "id" in frame or not conn.pipelined:
                error = LimitExceededError("too many pending requests from this client (limit %d)" % limit)
                conn.send_reply(make_reply(frame.get("id"), Status.METHOD_FAILED, exc=error))
            return
        try:
            if not conn.forward(frame, self._done):  # passed on at once (answered later), or run on the pool
                run(self._run, conn, frame)
        except RuntimeError:  # no worker thread could be started: the request is not run
            self._done()

    def _run(self, conn: Connection, frame: dict[str, Any]) -> None:
        finished: list[bool] = []

        def done() -> None:  # once: before the reply is sent (a client may send its next request at once)
            if not finished:
                finished.append(True)
                self._done()

        try:
            conn._run(frame, done)
        finally:
            done()

    def _done(self) -> None:
        with self._lock:
            self.pending -= 1
            if self._refusing and self.limit is not None and self.pending < self.limit:
                self._refusing = False


class QueueOverflow:
    """What a server carrier does with an event for a client whose send queue is full.

    A full queue first gets ``grace`` seconds to make room (a client that reads as fast as
    it can is only momentarily behind a burst: it loses nothing, and the burst is slowed down
    by as much), unless the client fell behind in the last ``memory`` seconds. If it does
    not, the client is not keeping up: its events are dropped, for that client only
    (counted, and logged once per episode), so a slow listener never slows its sender, or
    the other listeners, down; the episode ends (logged with what it dropped) once the
    client has read half its queue. A client whose full queue makes no progress at all for
    the connection's ``stall_timeout`` is stuck (stopped, or not reading): it is
    disconnected, and its senders with it.

    Attributes:
        dropped: events dropped per client id, since it connected.
        total: events dropped in all.
    """

    def __init__(self, grace: float = 0.05, memory: float = 10.0) -> None:
        self.grace = grace
        self.memory = memory
        self.dropped: dict[Any, int] = {}
        self._behind: dict[Any, float] = {}  # clientid: when its last episode ended
        self.total = 0
        self._episodes: dict[Any, list[Any]] = {}  # clientid: [dropped, queue length, when it last shrank]
        self._lock = threading.Lock()

    def admit(self, conn: Connection) -> bool:
        """Tell whether an event may be queued for ``conn``; if not, count it as dropped."""
        key = conn.clientid
        episode = self._episodes.get(key)
        if episode is None and not conn.peer.full:
            return True
        if episode is None and time.monotonic() - self._behind.get(key, -self.memory) >= self.memory:
            if self._room(conn):
                return True
        queued = conn.peer.queued + conn.peer.sending  # the batch being written is not sent yet
        now = time.monotonic()
        with self._lock:
            episode = self._episodes.get(key)
            if episode is not None and queued < conn.max_queue // 2:  # caught up
                del self._episodes[key]
                self._behind[key] = now
                logger.info("[%s] client caught up: %d event(s) were dropped while it was behind", conn.name,
                            episode[0])
                return True
            if episode is None:
                episode = self._episodes[key] = [0, queued, now]
                logger.warning("[%s] client is not keeping up (%d messages queued): dropping events for it until "
                               "it catches up", conn.name, queued)
            episode[0] += 1
            self.dropped[key] = self.dropped.get(key, 0) + 1
            self.total += 1
            if queued < episode[1]:
                episode[1], episode[2] = queued, now
            stuck = now - episode[2] > conn.stall_timeout
        if stuck:
            conn.close("peer is not reading: %d messages queued, none sent in %.1f s" % (queued, now - episode[2]))
        return False

    def _room(self, conn: Connection) -> bool:
        """Wait up to ``grace`` seconds for room in the queue of ``conn``."""
        with conn._cond:
            return conn._cond.wait_for(lambda: conn.closed.is_set() or not conn.peer.full, self.grace)

    def forget(self, clientid: Any) -> int:
        """Forget a client that is gone; return how many events were dropped for it."""
        with self._lock:
            self._episodes.pop(clientid, None)
            self._behind.pop(clientid, None)
            return self.dropped.pop(clientid, 0)


class CallQueue:
    """The calls a connection's reader hands to its dispatcher, in arrival order.

    With a ``limit`` (server connections), a full queue makes the reader wait, so a peer that
    sends faster than its calls run is slowed down by TCP itself instead of filling memory;
    but never while a reply from that peer is awaited (a forwarded request, a ping): the reader
    must stay free to read it, or the dispatcher waiting for it would never make room.

    Attributes:
        limit: most calls waiting (None: no limit, as on client connections).
    """

    def __init__(self, closed: threading.Event, pending: dict[Any, Any], limit: int | None = None) -> None:
        self.limit = limit
        self._closed = closed
        self._pending = pending
        self._items: deque[Any] = deque()
        self._cond = threading.Condition()

    def put(self, frame: Any, wait: bool = True) -> None:
        """Queue a call (``None``: the end); with ``wait``, first wait for room (see above)."""
        self.put_many([frame], wait)

    def put_many(self, frames: list[Any], wait: bool = True) -> None:
        """Queue calls in order, taking the lock (and waking the dispatcher) once when there is room."""
        items, cond, limit = self._items, self._cond, self.limit
        with cond:
            if limit is None or not wait:
                items.extend(frames)
                cond.notify_all()
                return
            start, count = 0, len(frames)
            while start < count:
                while len(items) >= limit and not self._closed.is_set() and not self._pending:
                    self._cond.wait(0.05)
                room = max(limit - len(items), 1) if not (self._closed.is_set() or self._pending) else count
                items.extend(frames[start : start + room])
                start += room
                cond.notify_all()

    def get(self) -> Any:
        """Wait for the next call and return it."""
        return self.get_many(1)[0]

    def get_many(self, most: int = 64) -> list[Any]:
        """Wait for calls and return those queued, in order (``most`` at most)."""
        items = self._items
        with self._cond:
            while not items:
                self._cond.wait()
            if len(items) <= most:
                batch = list(items)
                items.clear()
            else:
                batch = [items.popleft() for _ in range(most)]
            self._cond.notify_all()  # room for a waiting reader
            return batch

    def wake(self) -> None:
        """Wake the waiting threads (the connection closed)."""
        with self._cond:
            self._cond.notify_all()

    def __len__(self) -> int:
        return len(self._items)
