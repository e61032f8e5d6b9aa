"""Server-sent events of ``sig web``: the page hears new entries, subscription changes, clears, limits
and whether the sig server is reachable.

The log changes on carrier threads; each change is handed to the event loop
(``call_soon_threadsafe``) and put in every open stream's queue there. A
stream that falls too far behind is closed; the browser reconnects with
``Last-Event-ID`` and gets what it missed from the log.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

from ._eventlog import Entry, EventLog
from ._subs import Subscriptions

__all__ = ["Streams", "QUEUE_SIZE", "PING_SECONDS"]

logger = logging.getLogger("sig.web.sse")

#: Most messages waiting for one slow client before its stream is closed.
QUEUE_SIZE = 1000

#: Seconds between two keep-alive comments on a quiet stream.
PING_SECONDS = 15.0


def _message(event: str, data: Any, ident: int | None = None) -> bytes:
    head = "event: %s\n" % event + ("id: %d\n" % ident if ident is not None else "")
    return (head + "data: %s\n\n" % json.dumps(data, ensure_ascii=False)).encode("utf-8")


def entry_message(entry: Entry) -> bytes:
    """The ``entry`` event of one log entry (its ``id`` is the entry id, for ``Last-Event-ID``)."""
    return _message("entry", entry.to_json(), entry.id)


class Streams:
    """The open event streams of one application."""

    def __init__(self, log: EventLog, subscriptions: Subscriptions) -> None:
        self.log = log
        self.subscriptions = subscriptions
        self._queues: set[asyncio.Queue[tuple[int, bytes] | None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.linked = True  # whether the sig server is reachable (see :meth:`watch_link`)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start relaying changes of the log and the subscriptions to the streams, on ``loop``."""
        self._loop = loop
        self.log.watch(self._from_thread)
        self.subscriptions.watch(lambda: self._from_thread("regs", None))

    def _from_thread(self, what: str, entry: Entry | None) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._publish, what, entry)
        except RuntimeError:  # the loop closed meanwhile: nobody listens any more
            pass

    async def watch_link(self, is_connected: Callable[[], bool], every: float = 0.5) -> None:
        """Tell the streams (``link`` events) when the sig server is lost or back; runs until cancelled."""
        while True:
            linked = is_connected()
            if linked != self.linked:
                self.linked = linked
                self._send((0, self._link_message()))
            await asyncio.sleep(every)

    def _link_message(self) -> bytes:
        return _message("link", {"connected": self.linked})

    def _regs_message(self) -> bytes:
        return _message("regs", [{"sender": s, "event": e} for s, e in self.subscriptions.list()])

    def _publish(self, what: str, entry: Entry | None) -> None:
        if what == "entry" and entry is not None:
            item = (entry.id, entry_message(entry))
        elif what == "regs":
            item = (0, self._regs_message())
        elif what == "config":
            item = (0, _message("config", {"limit": self.log.limit}))
        else:
            item = (0, _message("clear", {}))
        self._send(item)

    def _send(self, item: tuple[int, bytes]) -> None:
        for queue in list(self._queues):
            try:
                queue.put_nowait(item)
            except asyncio.QueueFull:
                logger.warning("An event stream fell %d messages behind; closing it", QUEUE_SIZE)
                self._queues.discard(queue)
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(None)

    def close_all(self) -> None:
        """End every open stream (the server is stopping)."""
        for queue in list(self._queues):
            self._queues.discard(queue)
            try:
                queue.put_nowait(None)
            except asyncio.QueueFull:
                pass

    async def serve(self, request: web.Request, after: int) -> web.StreamResponse:
        """Answer one ``/stream`` request: the subscriptions, the entries after ``after``, then changes."""
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                               "Cache-Control": "no-store", "X-Accel-Buffering": "no"})
        await response.prepare(request)
        queue: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue(QUEUE_SIZE)
        self._queues.add(queue)  # before reading the backlog, so nothing falls between the two
        try:
            await response.write(b"retry: 1000\n\n" + self._link_message() + self._regs_message())
            last = after
            for entry in self.log.entries(after=after):
                await response.write(entry_message(entry))
                last = entry.id
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), PING_SECONDS)
                except asyncio.TimeoutError:
                    await response.write(b": ping\n\n")
                    continue
                if item is None:
                    break
                ident, data = item
                if ident and ident <= last:
                    continue  # already sent with the backlog
                await response.write(data)
        except ConnectionError:
            pass  # the browser went away
        finally:
            self._queues.discard(queue)
        return response
