"""The subscriptions of ``sig web``: remote listeners on a ClientRouter that feed an :class:`EventLog`."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from sig import ClientRouter, Ident, InvalidArgumentError, NotRegisteredError, is_channel

from ..options import with_builtins
from ._eventlog import EventLog

__all__ = ["Subscription", "Subscriptions", "NotSubscribedError", "AlreadySubscribedError"]

logger = logging.getLogger("sig.web.subs")

#: One subscription: ``(sender, event)``, ``None`` meaning any.
Subscription = tuple[Ident | None, Ident | None]


class AlreadySubscribedError(InvalidArgumentError):
    """The subscription is there already."""


class NotSubscribedError(NotRegisteredError):
    """There is no such subscription."""


class Subscriptions:
    """The user's subscriptions, kept as remote listeners on ``router``, each event logged in ``log``.

    Each subscription ``(S, E)`` also brings ``(S, #connect)`` and
    ``(S, #disconnect)`` (unless another subscription covers them already),
    so the log shows senders coming and going. An event that several
    subscriptions match is logged once. Adding and removing block while the
    server answers: call them from a worker thread in a web server.
    """

    def __init__(self, router: ClientRouter, log: EventLog) -> None:
        self.router = router
        self.log = log
        self._wanted: list[Subscription] = []
        self._registered: list[Subscription] = []  # in the order they were registered
        self._listeners: dict[Subscription, Callable[[dict[str, Any], Any], None]] = {}
        self._lock = threading.Lock()  # one change at a time (held while the server answers)
        self._state_lock = threading.Lock()  # guards the lists for readers (never held while waiting)
        self._watchers: list[Callable[[], None]] = []

    def list(self) -> list[Subscription]:
        """Return the user's subscriptions, in the order they were added."""
        with self._state_lock:
            return list(self._wanted)

    def add(self, sender: Ident | None, event: Ident | None) -> None:
        """Subscribe to ``(sender, event)``.

        Raises:
            AlreadySubscribedError: it is there already.
            SigError: the server refused it or cannot be reached (nothing changes then).
        """
        with self._lock:
            sub = (sender, event)
            if sub in self._wanted:
                raise AlreadySubscribedError("already subscribed to %s:%s" % sub)
            logger.info("Registering to %s:%s", sender, event)
            with self._state_lock:
                self._wanted.append(sub)
            try:
                self._sync()
            except Exception:
                with self._state_lock:
                    self._wanted.remove(sub)
                self._sync_quietly()
                raise
            logger.info("done")
        self._notify()

    def remove(self, sender: Ident | None, event: Ident | None) -> None:
        """Unsubscribe from ``(sender, event)``.

        Raises:
            NotSubscribedError: there is no such subscription.
            SigError: the server cannot be reached (the subscription is gone here anyway).
        """
        with self._lock:
            sub = (sender, event)
            if sub not in self._wanted:
                raise NotSubscribedError("not subscribed to %s:%s" % sub)
            logger.info("Unregistering from %s:%s", sender, event)
            with self._state_lock:
                self._wanted.remove(sub)
            try:
                self._sync()
            finally:
                self._notify()  # watchers only schedule work: fine under the lock

    def watch(self, watcher: Callable[[], None]) -> None:
        """Call ``watcher()`` (no arguments) after every change of the subscriptions."""
        self._watchers.append(watcher)

    def _notify(self) -> None:
        for watcher in list(self._watchers):
            watcher()

    def _sync(self) -> None:
        """Make the remote listeners those the wanted subscriptions need (lock held)."""
        target = with_builtins(self._wanted)
        for sub in [s for s in self._registered if s not in target]:
            with self._state_lock:
                self._registered.remove(sub)
                listener = self._listeners.pop(sub)
            self.router.removeRemoteListener(listener, *sub)
        for sub in [s for s in target if s not in self._registered]:
            listener = self._listener_for(sub)
            self.router.addRemoteListener(listener, *sub)
            with self._state_lock:
                self._registered.append(sub)
                self._listeners[sub] = listener

    def _sync_quietly(self) -> None:
        try:
            self._sync()
        except Exception as exc:
            logger.warning("could not undo a failed subscription: %s", exc)

    def _listener_for(self, sub: Subscription) -> Callable[[dict[str, Any], Any], None]:
        def listener(info: dict[str, Any], data: Any) -> None:
            self._deliver(sub, info, data)

        return listener

    def _deliver(self, sub: Subscription, info: dict[str, Any], data: Any) -> None:
        """Log an event once, however many registrations brought it (the first one that matches counts)."""
        sender, event = info.get("sender"), info.get("event")
        with self._state_lock:
            first = next((reg for reg in self._registered if _matches(reg, sender, event)), sub)
        if first == sub:
            self.log.add(sender, event, data, time.time())


def _matches(reg: Subscription, sender: Any, event: Any) -> bool:
    """Tell whether the server delivers ``(sender, event)`` to a listener on ``reg`` (as Router.dispatch does)."""
    reg_sender, reg_event = reg
    if reg_event is None:
        return reg_sender is None or reg_sender == sender
    if reg_event != event:
        return False
    return reg_sender == sender or (reg_sender is None and is_channel(event))
