"""Senders: named endpoints that declare events and may answer requests."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ._errors import InvalidArgumentError, UnknownEventError, UnknownMethodError
from ._event import Event, Listener, Signal
from ._ident import BUILTIN_EVENTS, Ident, check_ident

if TYPE_CHECKING:
    from ._router import Router

__all__ = ["Sender", "RequestHandlers"]

logger = logging.getLogger("sig.sender")

#: ``{method: handler(params), None: default_handler(method, params)}``.
RequestHandlers = Mapping[Any, Callable[..., Any]]


class Sender:
    """An endpoint that signals events and optionally answers requests.

    Senders are made by :meth:`Router.addSender` (or, for a sender nobody has
    registered yet, by a listener subscribing to it); do not build them
    directly. The sender named ``None`` is the router's broadcaster: it holds
    the router broadcast event and the channel events.
    """

    def __init__(self, objrouter: Router, name: Ident | None) -> None:
        self.events: dict[Ident | None, Event] = {}
        self.name = name
        self.objrouter = objrouter
        self.connected_sender = False
        self.requests: dict[Any, Callable[..., Any]] | None = None
        self.declared: tuple[Ident, ...] = ()
        self.class_event: type[Event] = objrouter.class_event
        self.class_signal: type[Signal] = objrouter.class_signal
        self.events[None] = self.class_event(self, None)
        if name is not None:
            for builtin in BUILTIN_EVENTS:
                self.events[builtin] = self.class_event(self, builtin)

    # -- queries ---------------------------------------------------------

    def isConnected(self) -> bool:
        """Tell whether the sender is registered (connected) now."""
        return self.connected_sender

    def getRouter(self) -> Router:
        """Return the router this sender belongs to."""
        return self.objrouter

    def getName(self) -> Ident | None:
        """Return the sender identifier."""
        return self.name

    def getEvents(self) -> dict[Ident | None, Event]:
        """Return a snapshot of ``{event identifier: Event}`` (``None`` is the broadcast event)."""
        return dict(self.events)

    def getEvent(self, event: Ident | None, create: bool = False) -> Event | None:
        """Return the :class:`Event` object of ``event``, or ``None`` if it has none.

        With ``create=True`` a missing one is made (call it under the router's lock).
        """
        objevent = self.events.get(event)
        if objevent is None and create:
            objevent = self.class_event(self, event)
            self.events[event] = objevent
        return objevent

    def countListeners(self) -> int:
        """Return how many listeners are registered to this sender's events."""
        return sum(len(objevent.listeners) for objevent in list(self.events.values()))

    def hasListeners(self) -> bool:
        """Tell whether any listener is registered to this sender's events."""
        return any(objevent.listeners for objevent in list(self.events.values()))

    def describe(self) -> dict[str, Any]:
        """Return what ``#connect`` / ``#disconnect`` carry: ``{"events": [...], "requests": [...] or None}``."""
        requests = self.requests
        return {"events": list(self.declared), "requests": None if requests is None else list(requests)}

    # -- signals and requests ---------------------------------------------

    def getSignal(self, event: Ident) -> Signal:
        """Return a :class:`Signal` that fires ``event`` of this sender.

        Raises:
            UnknownEventError: the sender does not declare ``event``.
        """
        if self.name is None or event is None:
            raise InvalidArgumentError("a signal needs a named sender and a named event")
        check_ident(event, "event")
        objevent = self.events.get(event)
        if objevent is None or not self._declares(event):
            raise UnknownEventError("sender %r does not declare event %r" % (self.name, event))
        broad_events = [self.objrouter.getBroadcastEvent(), self.events[None]]
        if objevent.channel is not None:
            broad_events.append(objevent.channel)
        return self.class_signal(objevent, broad_events)

    def request(self, method: Ident, params: Any = None) -> Any:
        """Run the handler of ``method`` with ``params`` and return its response.

        A named handler is called as ``handler(params)``; the default handler
        (key ``None``) as ``handler(method, params)``. An exception raised by the
        handler reaches the caller unchanged.

        Raises:
            UnknownMethodError: no handler for ``method`` and no default handler.
        """
        if method is None:
            raise InvalidArgumentError("request method undefined")
        check_ident(method, "request method")
        requests = self.requests
        if requests is None:
            raise UnknownMethodError("sender %r does not answer requests" % (self.name,))
        handler = requests.get(method)
        if handler is not None:
            return handler(params)
        default = requests.get(None)
        if default is None:
            raise UnknownMethodError("sender %r has no handler for method %r" % (self.name, method))
        return default(method, params)

    # -- registration (delegates to the router, which holds the lock) ------

    def addListener(self, listener: Listener, event: Ident | None = None) -> None:
        """Register ``listener`` to ``event`` of this sender (``None``: all its events)."""
        self.objrouter.addListener(listener, self.name, event)

    def removeListener(self, listener: Listener, event: Ident | None = None) -> None:
        """Remove ``listener`` from ``event`` of this sender.

        Raises:
            NotRegisteredError: it was not registered there.
        """
        self.objrouter.removeListener(listener, self.name, event)

    def remove(self) -> None:
        """Disconnect this sender from its router (fires ``#disconnect``)."""
        self.objrouter.removeSender(self)

    def setRequests(self, requests: RequestHandlers | None) -> None:
        """Replace the request handlers (``None``: the sender answers no requests)."""
        self.requests = None if requests is None else dict(requests)

    # -- state changes, called by the router under its lock -----------------

    def _declares(self, event: Ident) -> bool:
        return event in self.declared or event in BUILTIN_EVENTS

    def _attach(self, events: list[Ident], requests: RequestHandlers | None) -> None:
        self.setRequests(requests)
        self.declared = tuple(events)
        for event in events:
            self.getEvent(event, create=True)
        for name, objevent in list(self.events.items()):
            if name is None or self._declares(name):
                continue
            if objevent.listeners:
                logger.warning(
                    "sender %r does not declare event %r: its %d listener(s) stay idle",
                    self.name,
                    name,
                    len(objevent.listeners),
                )
            else:
                del self.events[name]

    is_connected = isConnected
    get_router = getRouter
    get_name = getName
    get_events = getEvents
    get_event = getEvent
    count_listeners = countListeners
    has_listeners = hasListeners
    get_signal = getSignal
    add_listener = addListener
    remove_listener = removeListener
    set_requests = setRequests

    def __repr__(self) -> str:
        state = "connected" if self.connected_sender else "disconnected"
        return "<%s %r %s, events %r>" % (type(self).__name__, self.name, state, list(self.declared))
