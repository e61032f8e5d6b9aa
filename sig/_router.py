"""The local router: who is registered, and who gets which event.

The router does no I/O. One re-entrant lock guards the registry; it is never
held while listeners or request handlers run.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from threading import RLock  # the registry lock; the core never starts threads or waits
from typing import Any

from ._errors import InvalidArgumentError, NotRegisteredError, SenderConnectedError, UnknownSenderError
from ._event import Event, Listener, Signal
from ._ident import (
    EVENT_CONNECT,
    EVENT_DISCONNECT,
    Ident,
    check_ident,
    check_listener,
    check_optional_ident,
    is_channel,
    normalize_events,
)
from ._sender import RequestHandlers, Sender

__all__ = ["Router", "ListenerWatcher"]

logger = logging.getLogger("sig.router")

#: ``watcher(sender, event, added)``: told of every listener registration and removal.
ListenerWatcher = Callable[[Any, Any, bool], None]


class Router:
    """Creates and manages senders and listeners, and routes events between them.

    Args:
        class_sender: class of the senders this router makes.
        class_signal: class of the signals its senders make.
        class_event: class of the events its senders make.

    All methods are thread-safe. Listeners run on the thread that triggers the
    event, with no lock held; they may register and remove listeners.
    """

    def __init__(
        self,
        class_sender: type[Sender] = Sender,
        class_signal: type[Signal] = Signal,
        class_event: type[Event] = Event,
    ) -> None:
        self.class_sender = class_sender
        self.class_event = class_event
        self.class_signal = class_signal
        self._lock = RLock()
        # Bumped on every listener change; signals rebuild their listener list when it moves.
        self._generation = 0
        self.senders: dict[Ident | None, Sender] = {}
        broadcaster = class_sender(self, None)
        broadcaster.connected_sender = True
        self.senders[None] = broadcaster
        self._broadcast_event = broadcaster.events[None]
        self._watchers: tuple[ListenerWatcher, ...] = ()

    # -- listeners ---------------------------------------------------------

    def addListener(self, listener: Listener, sender: Ident | None = None, event: Ident | None = None) -> None:
        """Register ``listener(info, data)`` to events.

        Args:
            listener: called as ``listener(info, data)`` with
                ``info == {"sender": ..., "event": ...}``.
            sender: the sender to listen to; ``None`` for any sender.
            event: the event to listen to; ``None`` for every event of ``sender``.
                With ``sender=None`` only channel events (``"#name"``) and
                ``None`` (every event of every sender) ever fire.

        The sender need not exist yet.
        """
        check_listener(listener)
        check_optional_ident(sender, "sender")
        check_optional_ident(event, "event")
        with self._lock:
            objsender = self._sender(sender)
            objevent = objsender.getEvent(event, create=True)
            assert objevent is not None
            objevent.listeners = objevent.listeners + (listener,)
            self._generation += 1
            if event is None:
                idle = False
            elif sender is None:
                idle = not is_channel(event)
            else:
                idle = objsender.connected_sender and not objsender._declares(event)
        self._notify_watchers(sender, event, True)
        if idle:
            if sender is None:
                logger.warning("listener on (None, %r) never fires: only '#' channel events reach any sender", event)
            else:
                logger.warning("sender %r does not declare event %r: the listener stays idle", sender, event)

    def removeListener(self, listener: Listener, sender: Ident | None = None, event: Ident | None = None) -> None:
        """Remove one registration of ``listener`` from ``(sender, event)``.

        Raises:
            NotRegisteredError: ``listener`` is not registered there.
        """
        check_optional_ident(sender, "sender")
        check_optional_ident(event, "event")
        with self._lock:
            objsender = self.senders.get(sender)
            objevent = objsender.events.get(event) if objsender is not None else None
            if objsender is None or objevent is None or listener not in objevent.listeners:
                raise NotRegisteredError("listener %r is not registered to (%r, %r)" % (listener, sender, event))
            listeners = list(objevent.listeners)
            listeners.remove(listener)
            objevent.listeners = tuple(listeners)
            self._generation += 1
            if not listeners and event is not None:
                # An idle event nobody listens to is dropped; declared events and
                # channels stay, because signals hold them.
                if not (is_channel(event) if sender is None else objsender._declares(event)):
                    del objsender.events[event]
            if sender is not None and not objsender.connected_sender and not objsender.hasListeners():
                del self.senders[sender]
        self._notify_watchers(sender, event, False)

    def watchListeners(self, watcher: ListenerWatcher) -> None:
        """Call ``watcher(sender, event, added)`` after every listener registration or removal.

        Carriers that subscribe on demand (MQTT) use it to follow what this
        router's listeners need. The watcher runs on the registering thread,
        with no lock held, and must not raise.
        """
        with self._lock:
            self._watchers = self._watchers + (watcher,)

    def unwatchListeners(self, watcher: ListenerWatcher) -> None:
        """Stop calling a watcher given to :meth:`watchListeners`."""
        with self._lock:
            self._watchers = tuple(w for w in self._watchers if w != watcher)

    def _notify_watchers(self, sender: Ident | None, event: Ident | None, added: bool) -> None:
        for watcher in self._watchers:
            try:
                watcher(sender, event, added)
            except Exception:
                logger.exception("listener watcher %r failed", watcher)

    @contextlib.contextmanager
    def listening(
        self, listener: Listener, sender: Ident | None = None, event: Ident | None = None
    ) -> Iterator[Listener]:
        """Register ``listener`` for the duration of a ``with`` block."""
        self.addListener(listener, sender, event)
        try:
            yield listener
        finally:
            self.removeListener(listener, sender, event)

    # -- senders -----------------------------------------------------------

    def addSender(
        self, sender: Ident, events: Any, requests: RequestHandlers | None = None, *, announce: bool = True
    ) -> Sender:
        """Register (connect) a sender and fire its ``#connect`` event.

        Args:
            sender: the sender identifier (str, int or float).
            events: the events it may trigger: a list, or a single identifier.
                Events starting with ``#`` are channels.
            requests: ``{method: handler(params)}``, optionally with a default
                handler under the key ``None``, called as ``handler(method, params)``.
            announce: False registers it without firing ``#connect``: the sender was
                connected before this router learned of it (a late joiner's view, e.g.
                a retained MQTT birth), as pysig tells no listener that subscribes
                after a sender connected.

        Returns:
            The :class:`Sender`; get signals from it with :meth:`Sender.getSignal`.

        Raises:
            SenderConnectedError: a sender of that name is connected already.
        """
        if sender is None:
            raise InvalidArgumentError("no given sender name")
        check_ident(sender, "sender")
        declared = normalize_events(events)
        if requests is not None:
            _check_requests(requests)
        elif not declared:
            raise InvalidArgumentError("no events or requests registered for sender %r" % (sender,))
        with self._lock:
            objsender = self._sender(sender)
            if objsender.connected_sender:
                raise SenderConnectedError("sender %r is already connected" % (sender,))
            objsender._attach(declared, requests)
            objsender.connected_sender = True
            data = objsender.describe()
        logger.debug("sender %r connected with events %r", sender, declared)
        if announce:
            objsender.getSignal(EVENT_CONNECT).trigger(data)
        return objsender

    def removeSender(self, sender: Sender | Ident, *, announce: bool = True) -> None:
        """Disconnect a sender, given as object or identifier, and fire ``#disconnect``.

        Its listeners stay registered and hear it again when it is added again.
        ``announce=False`` fires nothing: the sender is about to be added again at once
        (an MQTT node that starts hosting a shared sender another node hosts).

        Raises:
            UnknownSenderError: it is not connected.
        """
        if sender is None:
            raise InvalidArgumentError("cannot remove the broadcast sender")
        if isinstance(sender, Sender):
            if sender.objrouter is not self:
                raise InvalidArgumentError("sender %r belongs to another router" % (sender.name,))
            name = sender.name
        else:
            name = check_ident(sender, "sender")
        with self._lock:
            objsender = self.senders.get(name)
            if objsender is None or not objsender.connected_sender or (
                isinstance(sender, Sender) and sender is not objsender
            ):
                raise UnknownSenderError("sender %r is not connected" % (name,))
            data = objsender.describe()
            objsender.connected_sender = False
            objsender.requests = None
            if not objsender.hasListeners():
                del self.senders[name]
        logger.debug("sender %r disconnected", name)
        if announce:
            objsender.getSignal(EVENT_DISCONNECT).trigger(data)

    def dispatch(self, sender: Ident, event: Ident, data: Any = None, info: dict[str, Any] | None = None) -> int:
        """Deliver one event to its listeners, whether or not ``sender`` is registered here.

        For events that come from elsewhere: a plain MQTT device that never
        registers, or an event that overtook its sender's registration. The
        listeners are those a :class:`Signal` of that sender would call, in the
        same order; ``info`` adds keys to the ``{"sender", "event"}`` they get.

        Returns:
            How many listeners were called.
        """
        check_ident(sender, "sender")
        check_ident(event, "event")
        with self._lock:
            listeners = self._broadcast_event.listeners
            objsender = self.senders.get(sender)
            if objsender is not None:
                listeners += objsender.events[None].listeners
            if is_channel(event):
                channel = self.senders[None].events.get(event)
                if channel is not None:
                    listeners += channel.listeners
            objevent = objsender.events.get(event) if objsender is not None else None
            if objevent is not None:
                listeners += objevent.listeners
        full_info: dict[str, Any] = {"sender": sender, "event": event}
        if info:
            full_info.update(info)
        for listener in listeners:
            try:
                listener(full_info, data)
            except Exception:
                logger.exception("listener %r failed on %r:%r", listener, sender, event)
        return len(listeners)

    def getSender(self, sender: Ident | None, create: bool = False) -> Sender:
        """Return the :class:`Sender` object of ``sender``.

        A sender that only has listeners (not connected) has an object too.

        Raises:
            UnknownSenderError: the router knows no such sender (and ``create`` is false).
        """
        check_optional_ident(sender, "sender")
        if create:
            with self._lock:
                return self._sender(sender)
        objsender = self.senders.get(sender)
        if objsender is None:
            raise UnknownSenderError("unknown sender %r" % (sender,))
        return objsender

    def getSenders(self) -> list[Sender]:
        """Return the named senders the router knows (connected or only listened to)."""
        return [objsender for name, objsender in list(self.senders.items()) if name is not None]

    def getBroadcastEvent(self) -> Event:
        """Return the router broadcast event (its listeners hear every event)."""
        return self._broadcast_event

    def request(self, sender: Ident, method: Ident, params: Any = None) -> Any:
        """Send a request to a connected sender and return its response.

        Raises:
            UnknownSenderError: ``sender`` is unknown or not connected.
            UnknownMethodError: it has no handler for ``method``.
            Exception: whatever the handler raised.
        """
        check_optional_ident(sender, "sender")
        objsender = self.senders.get(sender) if sender is not None else None
        if objsender is None or not objsender.connected_sender:
            raise UnknownSenderError("sender %r is not connected" % (sender,))
        return objsender.request(method, params)

    # -- internals ----------------------------------------------------------

    def _sender(self, sender: Ident | None) -> Sender:
        objsender = self.senders.get(sender)
        if objsender is None:
            objsender = self.class_sender(self, sender)
            self.senders[sender] = objsender
        return objsender

    def _channel_event(self, name: Ident) -> Event:
        with self._lock:
            objevent = self.senders[None].getEvent(name, create=True)
        assert objevent is not None
        return objevent

    add_listener = addListener
    remove_listener = removeListener
    watch_listeners = watchListeners
    unwatch_listeners = unwatchListeners
    add_sender = addSender
    remove_sender = removeSender
    get_sender = getSender
    get_senders = getSenders
    get_broadcast_event = getBroadcastEvent

    def __repr__(self) -> str:
        return "<%s %d senders>" % (type(self).__name__, len(self.senders) - 1)


def _check_requests(requests: Any) -> None:
    if not hasattr(requests, "items"):
        raise InvalidArgumentError("requests must be a dict {method: handler}, not %s" % type(requests).__name__)
    for method, handler in requests.items():
        if method is not None:
            check_ident(method, "request method")
        if not callable(handler):
            raise InvalidArgumentError("request handler for %r is not callable" % (method,))

