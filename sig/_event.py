"""Events (who listens) and signals (what fires them).

An :class:`Event` holds the listeners of one event of one sender as an
immutable tuple that is replaced, never changed in place, under the router's
lock. A :class:`Signal` reads those tuples without any lock, so a listener may
register or remove listeners while it is being called, and no lock is ever
held while listeners run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ._ident import Ident, is_channel

if TYPE_CHECKING:
    from ._sender import Sender

__all__ = ["Event", "Signal", "Listener", "EventInfo"]

logger = logging.getLogger("sig.event")

#: A listener is called as ``listener(info, data)``.
Listener = Callable[[dict[str, Any], Any], Any]
#: The ``info`` dict passed to listeners: ``{"sender": ..., "event": ...}``.
EventInfo = dict[str, Any]


class Event:
    """The listeners of one event of one sender.

    The router-wide broadcast sender (name ``None``) holds the router broadcast
    event (name ``None``) and one event per channel (``"#name"``). A channel
    event of a named sender links to the channel event of that same name, so
    triggering it also reaches the channel's listeners.
    """

    def __init__(self, objsender: Sender, name: Ident | None) -> None:
        self.listeners: tuple[Listener, ...] = ()
        self.name = name
        self.objsender = objsender
        self.channel: Event | None = None
        if is_channel(name) and objsender.name is not None:
            self.channel = objsender.objrouter._channel_event(name)  # type: ignore[arg-type]

    def getListeners(self) -> tuple[Listener, ...]:
        """Return the listeners registered to this event, in registration order."""
        return self.listeners

    def getSender(self) -> Sender:
        """Return the sender this event belongs to."""
        return self.objsender

    def getName(self) -> Ident | None:
        """Return the event identifier (``None`` for a broadcast event)."""
        return self.name

    def isChannel(self) -> bool:
        """Tell whether this event is a channel (``#name``) of a named sender."""
        return self.channel is not None

    get_listeners = getListeners
    get_sender = getSender
    get_name = getName
    is_channel = isChannel

    def __repr__(self) -> str:
        return "<%s %r of %r, %d listeners>" % (
            type(self).__name__,
            self.name,
            self.objsender.name,
            len(self.listeners),
        )


class Signal:
    """Fires one event: ``signal.trigger(data)``.

    Listeners are called in pysig's order: router broadcast listeners, then the
    sender broadcast listeners, then the channel's listeners (for ``#events``),
    then the event's own listeners, each group in registration order. A
    listener that raises is logged with its traceback; the others still run.

    Subclasses may override :meth:`trigger` and add keys to :attr:`event_info`
    (the ``info`` dict the listeners receive), as pysig's documentation shows.

    Args:
        objevent: the event to fire.
        broad_events: the broadcast and channel events fired before it.
    """

    def __init__(self, objevent: Event, broad_events: Sequence[Event]) -> None:
        self.broad_events = list(broad_events)
        objsender = objevent.getSender()
        self.event_info: dict[str, Any] = {"sender": objsender.getName(), "event": objevent.getName()}
        self.objsender = objsender
        self.objevent = objevent
        self._router = objsender.objrouter
        # (router generation, flattened listeners), replaced in one store so that
        # two threads rebuilding at once never pair a stale tuple with a new generation.
        self._cache: tuple[int, tuple[Listener, ...]] = (-1, ())

    def getListeners(self) -> tuple[Listener, ...]:
        """Return the listeners a trigger calls now, in call order."""
        router = self._router
        generation, listeners = self._cache
        if generation != router._generation:
            # Read the generation first: a change racing with this rebuild
            # leaves it stale, so the next trigger rebuilds again.
            generation = router._generation
            listeners = ()
            for event in self.broad_events:
                listeners += event.listeners
            listeners += self.objevent.listeners
            self._cache = (generation, listeners)
        return listeners

    def trigger(self, data: Any = None) -> None:
        """Call every listener of this event with ``(info, data)``."""
        info = self.event_info
        generation, listeners = self._cache
        if generation != self._router._generation:
            listeners = self.getListeners()
        for listener in listeners:
            try:
                listener(info, data)
            except Exception:
                logger.exception("listener %r failed on %r:%r", listener, info.get("sender"), info.get("event"))

    get_listeners = getListeners

    def __repr__(self) -> str:
        return "<%s %r:%r>" % (type(self).__name__, self.event_info.get("sender"), self.event_info.get("event"))
