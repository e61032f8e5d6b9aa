"""Per-peer limits of the stream carriers: requests a peer may have running or waiting at once.

A peer's ``request`` calls run on the carrier's shared pool, off the reader; without a
bound, one peer that floods requests at a slow sender would fill the pool's queue (and
memory) and make every other peer wait. :class:`RequestGate` counts them per peer and
answers the ones over the limit at once with an error (status -2), keeping the peer
connected.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from ._codec import Status, make_reply
from ._errors import LimitExceededError

if TYPE_CHECKING:
    from ._connection import Connection

__all__ = ["RequestGate", "DEFAULT_MAX_PENDING_REQUESTS"]

logger = logging.getLogger("sig.limits")

#: Default most requests one client of a server carrier may have running or waiting at once.
DEFAULT_MAX_PENDING_REQUESTS = 100


class RequestGate:
    """Counts the requests of one peer that run or wait; refuses those over ``limit``.

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

    def submit(self, conn: Connection, frame: dict[str, Any]) -> None:
        """Run ``frame`` (a request) on the connection's pool, or answer it with an error if over the limit."""
        limit = self.limit
        if limit is None:
            conn.executor.submit(conn._run, frame)
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
            conn.executor.submit(self._run, conn, frame)
        except RuntimeError:  # the pool is shut down (the carrier is stopping)
            self._done()

    def _run(self, conn: Connection, frame: dict[str, Any]) -> None:
        try:
            conn._run(frame)
        finally:
            self._done()

    def _done(self) -> None:
        with self._lock:
            self.pending -= 1
            if self._refusing and self.limit is not None and self.pending < self.limit:
                self._refusing = False
