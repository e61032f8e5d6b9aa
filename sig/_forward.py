"""Requests a ServerRouter passes on to the client whose sender answers them, without a thread each.

A sender a client registered answers its requests through that client: the server only sends
each request on and the reply back. Run as other requests are, that takes a pool thread that
waits for the reply: two thread hand-offs more per request (reader to pool, and the reply's
reader back to the waiting pool thread). A carrier that can send without waiting
(:meth:`~sig.Carrier.call_nowait`) lets the ServerRouter start such a request on the reader that
read it (:attr:`~sig.Carrier.callback_forward`): it is sent on at once, and the reply goes back
from the thread that resolves it (the target's reader, or :data:`DEADLINES` when it is late).
No user code runs there: only sig's checks, encoding and non-blocking sends.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from ._carrier import Carrier, ClientId, rpc_reply
from ._errors import CarrierError, RequestTimeout, UnknownSenderError
from ._remote import response_of

if TYPE_CHECKING:
    from ._server import ServerRouter

__all__ = ["Forward", "Deadlines", "DEADLINES"]

logger = logging.getLogger("sig.server")

_ANY = object()  # the default handler's method: given with the call


class Forward:
    """The request handler of a sender registered through a client: passes requests on to it.

    Called as a handler (``handler(params)``, or ``handler(method, params)`` as the default
    handler), it waits for the reply; :meth:`start` sends without waiting.
    """

    __slots__ = ("router", "carrier", "clientid", "sender", "method")

    def __init__(self, router: ServerRouter, carrier: Carrier, clientid: ClientId, sender: Any,
                 method: Any = _ANY) -> None:
        self.router = router
        self.carrier = carrier
        self.clientid = clientid
        self.sender = sender
        self.method = method

    def __call__(self, *args: Any) -> Any:
        method, params = args if self.method is _ANY else (self.method, *args)
        return self.router._forward_request(self.carrier, self.clientid, self.sender, method, params)

    def start(self, method: Any, params: Any, timeout: float, answer: Callable[[Future[Any]], None]) -> bool:
        """Send the request on without waiting; ``answer(future)`` gets the future of the reply.

        Returns False (nothing sent) when the carrier cannot send at once.
        """
        message = {"method": "request", "params": {"sender": self.sender, "method": method, "params": params}}
        future = self.carrier.call_nowait(self.clientid, message)
        if future is None:
            return False
        DEADLINES.add(future, timeout)
        future.add_done_callback(answer)
        return True

    def response(self, future: Future[Any], timeout: float) -> Any:
        """The response in the reply ``future`` got; raises as the waiting call would."""
        if future.cancelled():  # only DEADLINES cancels it
            raise RequestTimeout("no reply to request in %.1f s" % timeout)
        try:
            reply = future.result()
        except CarrierError as exc:  # its client is gone: the sender is disconnected
            raise UnknownSenderError("sender %r disconnected before answering (%s)" % (self.sender, exc)) from exc
        return response_of(reply, "request")


def forward_of(router: ServerRouter, sender: Any, method: Any) -> Forward | None:
    """The :class:`Forward` that answers ``method`` of ``sender`` (None: a handler of another kind runs)."""
    objsender = router.senders.get(sender)
    requests = objsender.requests if objsender is not None and objsender.connected_sender else None
    if not requests:
        return None
    handler = requests.get(method)
    if handler is None:
        handler = requests.get(None)
    return handler if type(handler) is Forward else None


def start_forward(router: ServerRouter, carrier: Carrier, clientid: ClientId, message: dict[str, Any],
                  answer: Callable[[dict[str, Any]], None]) -> bool:
    """Start a ``request`` the router only passes on (see the module); ``answer(reply)`` gets its reply.

    Returns False when it is not such a request, or not valid: then it runs the usual way.
    """
    params = message.get("params")
    if not isinstance(params, dict):
        return False  # the usual way answers with the error
    try:
        sender, method = router._guarded("request", router._request_target, carrier, clientid, params)
    except Exception:
        return False  # the usual way answers with the error
    forward = forward_of(router, sender, method)
    if forward is None:
        return False
    timeout = router.request_timeout
    message_id = message.get("id")

    def reply(future: Future[Any]) -> None:
        answer(rpc_reply(message_id, "request", clientid, lambda _c, _p: forward.response(future, timeout), None))

    return forward.start(method, params.get("params"), timeout, reply)


class Deadlines:
    """Cancels the futures still pending at their deadline, from one thread that ends when idle."""

    #: Seconds the thread waits with nothing to watch before it ends (the next :meth:`add` starts one).
    IDLE = 5.0

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Future[Any]]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._running = False
        self._until = 0.0  # when the thread wakes by itself (a deadline after it needs no wake-up)

    def add(self, future: Future[Any], timeout: float) -> None:
        """Cancel ``future`` in ``timeout`` seconds unless it is done by then."""
        entry = (time.monotonic() + timeout, next(self._seq), future)
        heap = self._heap
        with self._cond:
            while heap and heap[0][2].done():  # the oldest are mostly answered: drop them as we go
                heapq.heappop(heap)
            heapq.heappush(heap, entry)
            if not self._running:
                self._running = True
                threading.Thread(target=self._run, name="sig-deadlines", daemon=True).start()
            elif heap[0] is entry and entry[0] < self._until:
                self._cond.notify()  # only an earlier deadline than the one the thread sleeps to

    def __len__(self) -> int:
        return len(self._heap)

    def _run(self) -> None:
        heap = self._heap
        with self._cond:
            while True:
                while heap and heap[0][2].done():
                    heapq.heappop(heap)
                now = time.monotonic()
                if not heap:
                    self._until = now + self.IDLE
                    if not self._cond.wait(self.IDLE) and not heap:
                        self._running = False
                        return
                    continue
                wait = heap[0][0] - now
                if wait > 0:
                    self._until = heap[0][0]
                    self._cond.wait(wait)
                    continue
                future = heapq.heappop(heap)[2]
                self._cond.release()
                try:
                    future.cancel()  # its callbacks answer "no reply in time"
                except Exception:
                    logger.exception("cancelling a late request failed")
                finally:
                    self._cond.acquire()


#: The one :class:`Deadlines` of the process.
DEADLINES = Deadlines()
