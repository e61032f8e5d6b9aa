"""ClientRouter: registers senders and listeners on a ServerRouter through a carrier.

``addSender`` / ``addListener`` stay local, as in pysig; ``addRemoteSender``,
``addRemoteListener``, ``removeRemoteSender``, ``removeRemoteListener`` and
``remoteRequest`` reach the server.

Beyond pysig 0.7.3: remote registrations survive a reconnection (they are
registered again by themselves, after ``on_connected`` has run, unless the
callback registered them itself); signals triggered while disconnected are
buffered (bounded) and sent afterwards; replies are never awaited on the
thread that reads them, so a client may listen to and request its own senders.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from ._carrier import Carrier, ClientId
from ._errors import (
    CarrierError,
    NotRegisteredError,
    RemoteNameError,
    SenderConnectedError,
    SigError,
    UnknownSenderError,
)
from ._event import Event, Listener, Signal
from ._ident import BUILTIN_EVENTS, Ident, check_ident, check_listener, check_optional_ident
from ._outbox import DropOldestBuffer
from ._remote import ident_param, param, remote_call
from ._router import Router
from ._sender import RequestHandlers, Sender

__all__ = ["ClientRouter"]

logger = logging.getLogger("sig.client")


class _RemoteSender:
    """A sender this client registered on the server."""

    def __init__(self, objsender: Sender, events: Any, requests: RequestHandlers | None, shared: bool) -> None:
        self.objsender = objsender
        self.events = events
        self.requests = requests
        self.shared = shared
        self.session = -1  # the connection it is registered in; another one: to restore


class _RemoteListener:
    """A listener this client registered on the server."""

    def __init__(self, listener: Listener, sender: Any, event: Any) -> None:
        self.listener = listener
        self.sender = sender
        self.event = event
        self.listener_id: int | None = None
        self.session = -1


class ClientRouter(Router):
    """A :class:`Router` connected to a :class:`~sig.ServerRouter` through a carrier.

    Args:
        carrier: e.g. :class:`~sig.carrier.tcpclient.CarrierTCPClient`.
        request_timeout: default seconds to wait for a server reply (default: the
            carrier's own ``request_timeout`` when it has one, as the MQTT carriers do;
            else 10).
        buffer_size: most signals kept while disconnected (the oldest are dropped, logged and counted;
            default: the carrier's own ``buffer_size`` when it has one, as the MQTT client carrier
            does; else 10,000).

    All other arguments are those of :class:`Router`.
    """

    def __init__(
        self,
        carrier: Carrier,
        request_timeout: float | None = None,
        buffer_size: int | None = None,
        class_sender: type[Sender] = Sender,
        class_signal: type[Signal] = Signal,
        class_event: type[Event] = Event,
    ) -> None:
        super().__init__(class_sender=class_sender, class_signal=class_signal, class_event=class_event)
        self.carrier = carrier
        if request_timeout is None:
            carrier_timeout = getattr(carrier, "request_timeout", None)
            request_timeout = float(carrier_timeout) if isinstance(carrier_timeout, (int, float)) else 10.0
        self.request_timeout: float = request_timeout
        if buffer_size is None:
            carrier_size = getattr(carrier, "buffer_size", None)
            buffer_size = carrier_size if isinstance(carrier_size, int) else 10000
        self._remote_senders: dict[Ident, _RemoteSender] = {}
        self._remote_listeners: list[_RemoteListener] = []
        self._by_listener_id: dict[int, _RemoteListener] = {}
        self._remote_lock = threading.RLock()
        self._ids_known = threading.Condition()  # a listener id became known
        self._registering = 0  # add_listener calls waiting for their reply
        self._session = 0
        self._clientid: ClientId = getattr(carrier, "clientid", None)
        self._live = carrier.isConnected()
        self._buffer: DropOldestBuffer[dict[str, Any]] = DropOldestBuffer(buffer_size, "signal", logger)
        self._buffer_lock = threading.Lock()
        carrier.methods = {"signal": self.handle_signal, "request": self.handle_request}
        carrier.callback_client_connected = self._connected
        carrier.callback_client_ready = self._ready
        carrier.callback_client_disconnected = self._disconnected

    @property
    def dropped_signals(self) -> int:
        """Signals dropped (oldest first) because the buffer was full while disconnected."""
        return self._buffer.dropped

    # -- senders -----------------------------------------------------------------

    def addRemoteSender(self, sender: Ident, events: Any, requests: RequestHandlers | None = None,
                        shared: bool = False) -> Sender:
        """Register a sender on the server; its signals are sent there.

        Called again for the same sender after a reconnection (e.g. from
        ``on_connected``), it registers it again and returns the same sender.

        ``shared=True`` (a load-balanced sender): several clients may register the same
        sender, and each request to it is answered by one of them. Only carriers that
        support it accept it (``sig_mqtt.CarrierMQTTClient`` on a broker with MQTT shared
        subscriptions); a TCP server refuses it.

        Raises:
            SenderConnectedError: it is registered already (here or, as a
                ``RemoteNameError``, on the server by someone else).
            RemoteError: the server refused it (e.g. ``shared`` where it is not supported).
            CarrierError: not connected and not reconnecting.
        """
        check_ident(sender, "sender")
        with self._remote_lock:
            state = self._remote_senders.get(sender)
            if state is not None and state.session == self._session and self.carrier.isConnected():
                raise SenderConnectedError("remote sender %r is already registered" % (sender,))
            self._check_reachable()
            created = state is None
            if state is None:
                objsender = self._add_forwarded(sender, events, requests)
                state = self._remote_senders[sender] = _RemoteSender(objsender, events, requests, shared)
            elif (events, requests, shared) != (state.events, state.requests, state.shared):
                self._remove_forwarded(state)
                state.objsender = self._add_forwarded(sender, events, requests)
                state.events, state.requests, state.shared = events, requests, shared
            if self.carrier.isConnected():
                try:
                    self._register_sender(sender, state)
                except Exception:
                    if created:
                        self._drop_sender(sender, state)
                    raise
            return state.objsender

    def removeRemoteSender(self, sender: Sender | Ident) -> None:
        """Remove a sender this client registered on the server (fires ``#disconnect``).

        Raises:
            UnknownSenderError: it is not a remote sender of this client.
        """
        name = sender.getName() if isinstance(sender, Sender) else sender
        with self._remote_lock:
            state = self._remote_senders.get(name)  # type: ignore[arg-type]
            if state is None:
                raise UnknownSenderError("%r is not a remote sender of this client" % (name,))
            registered = state.session == self._session and self.carrier.isConnected()
            self._drop_sender(name, state)  # type: ignore[arg-type]
        if registered:
            self._call({"method": "remove_sender", "params": {"sender": name}})

    def _drop_sender(self, name: Ident, state: _RemoteSender) -> None:
        del self._remote_senders[name]
        self._remove_forwarded(state)

    def _add_forwarded(self, sender: Ident, events: Any, requests: RequestHandlers | None) -> Sender:
        """Add the local side of a remote sender: its events are forwarded to the server."""
        objsender = self.addSender(sender, events, requests=requests)
        objsender.addListener(self._forward_signal)
        return objsender

    def _remove_forwarded(self, state: _RemoteSender) -> None:
        state.objsender.removeListener(self._forward_signal)
        self.removeSender(state.objsender)

    def _register_sender(self, name: Ident, state: _RemoteSender, flush: bool = False) -> None:
        requests = None if state.requests is None else list(state.requests)
        params = {"sender": name, "events": state.events, "requests": requests}
        if state.shared:
            params["shared"] = True  # only then: a server that does not know the field is not bothered
        self._call({"method": "add_sender", "params": params})
        with self._buffer_lock:
            state.session = self._session
            if flush:
                self._live = False  # its buffered signals go before any new one
        if flush:
            self._flush()

    # -- listeners ---------------------------------------------------------------

    def addRemoteListener(self, listener: Listener, sender: Ident | None = None, event: Ident | None = None) -> None:
        """Register ``listener(info, data)`` on the server (same rules as :meth:`Router.addListener`).

        Raises:
            RemoteError: the server refused it.
            CarrierError: not connected and not reconnecting.
        """
        check_listener(listener)
        check_optional_ident(sender, "sender")
        check_optional_ident(event, "event")
        with self._remote_lock:
            self._check_reachable()
            reg = next(
                (r for r in self._remote_listeners
                 if r.session != self._session and (r.listener, r.sender, r.event) == (listener, sender, event)),
                None,
            )
            if reg is None:  # a new registration (else: one from before a reconnection)
                reg = _RemoteListener(listener, sender, event)
                self._remote_listeners.append(reg)
            if self.carrier.isConnected():
                try:
                    self._register_listener(reg)
                except Exception:
                    self._remote_listeners.remove(reg)
                    raise

    def removeRemoteListener(self, listener: Listener, sender: Ident | None = None, event: Ident | None = None) -> None:
        """Remove a listener registered with :meth:`addRemoteListener`.

        Raises:
            NotRegisteredError: it is not registered there.
        """
        with self._remote_lock:
            reg = next(
                (r for r in self._remote_listeners if (r.listener, r.sender, r.event) == (listener, sender, event)),
                None,
            )
            if reg is None:
                raise NotRegisteredError(
                    "listener %r is not registered remotely to (%r, %r)" % (listener, sender, event)
                )
            self._remote_listeners.remove(reg)
            listener_id = reg.listener_id
            if listener_id is not None:
                self._by_listener_id.pop(listener_id, None)
            registered = reg.session == self._session and self.carrier.isConnected()
        if registered:
            self._call({"method": "remove_listener", "params": {"listener_id": listener_id}})

    def _register_listener(self, reg: _RemoteListener) -> None:
        with self._ids_known:
            self._registering += 1
        try:
            self._add_listener(reg)
        finally:
            with self._ids_known:
                self._registering -= 1
                self._ids_known.notify_all()

    def _add_listener(self, reg: _RemoteListener) -> None:
        response = self._call({"method": "add_listener", "params": {"sender": reg.sender, "event": reg.event}})
        listener_id = response.get("listener_id") if isinstance(response, dict) else None
        if listener_id is None:
            raise SigError("the server answered add_listener without a listener_id: %r" % (response,))
        with self._remote_lock:
            if reg.listener_id is not None:
                self._by_listener_id.pop(reg.listener_id, None)
            reg.listener_id, reg.session = listener_id, self._session
            self._by_listener_id[listener_id] = reg

    # -- requests ------------------------------------------------------------------

    def remoteRequest(self, sender: Ident, method: Ident, params: Any = None, timeout: float | None = None) -> Any:
        """Send a request to a sender registered anywhere on the server; return its response.

        Raises:
            RemoteNameError: the sender is not connected (also a ``NameError``).
            RemoteLookupError: it has no such method (also a ``LookupError``).
            RemoteError: its handler raised.
            RequestTimeout: no reply in ``timeout`` (default ``request_timeout``) seconds.
            CarrierError: not connected.
        """
        check_ident(sender, "sender")
        check_ident(method, "method")
        message = {"method": "request", "params": {"sender": sender, "method": method, "params": params}}
        return self._call(message, timeout)

    # -- RPC methods the server calls ------------------------------------------------

    def handle_signal(self, clientid: ClientId, params: dict[str, Any]) -> None:
        """Deliver an event the server forwards to one of our remote listeners."""
        listener_id = params.get("listener_id")
        info = params.get("info")
        if type(listener_id) is not int or type(info) is not dict:  # else both are what param() would accept
            listener_id = param(params, "listener_id", int)
            info = param(params, "info", dict)
        reg = self._by_listener_id.get(listener_id)
        if reg is None:
            # The server may send an event as soon as it registered the listener, before
            # the thread that asked has read the id out of the reply: give it a moment.
            with self._ids_known:
                self._ids_known.wait_for(
                    lambda: listener_id in self._by_listener_id or not self._registering, 2.0)
            reg = self._by_listener_id.get(listener_id)
        if reg is None:
            raise NotRegisteredError("listener id %r not found" % (listener_id,))
        try:
            reg.listener(info, params.get("data"))
        except Exception:
            logger.exception("listener %r failed on %r:%r", reg.listener, info.get("sender"), info.get("event"))

    def handle_request(self, clientid: ClientId, params: dict[str, Any]) -> Any:
        """Answer a request the server forwards to one of our senders."""
        sender = ident_param(params, "sender")
        method = ident_param(params, "method")
        return self.request(sender, method, params.get("params"))  # type: ignore[arg-type]

    # -- carrier events ----------------------------------------------------------------

    def _connected(self, clientid: ClientId) -> None:
        with self._remote_lock:
            self._session += 1  # every registration now needs restoring
            self._clientid = clientid

    def _ready(self, clientid: ClientId) -> None:
        with self._remote_lock:
            senders = [(name, s) for name, s in self._remote_senders.items() if s.session != self._session]
            listeners = [r for r in self._remote_listeners if r.session != self._session]
        taken: list[Ident] = []
        for name, state in senders:
            try:
                self._register_sender(name, state)
            except RemoteNameError:
                taken.append(name)
                logger.warning("remote sender %r is still held by our previous connection; retrying", name)
            except Exception as exc:
                logger.error("could not register remote sender %r again: %s", name, exc)
        for reg in listeners:
            try:
                self._register_listener(reg)
            except Exception as exc:
                logger.error("could not register remote listener on (%r, %r) again: %s", reg.sender, reg.event, exc)
        if senders or listeners:
            logger.info("registered again %d sender(s) and %d listener(s)", len(senders), len(listeners))
        self._flush()
        if taken:
            retry = threading.Thread(target=self._retry_senders, args=(self._session, taken), daemon=True)
            retry.start()

    def _disconnected(self, clientid: ClientId) -> None:
        self._live = False

    def _check_reachable(self) -> None:
        if not self.carrier.isConnected() and not getattr(self.carrier, "auto_reconnect", False):
            raise CarrierError("not connected (connect first, or connect with auto_reconnect=True)")

    def _call(self, message: dict[str, Any], timeout: float | None = None) -> Any:
        if not self.carrier.isConnected():
            raise CarrierError("not connected: %s not sent" % message.get("method"))
        return remote_call(self.carrier, self._clientid, message, self.request_timeout if timeout is None else timeout)

    # -- signals -------------------------------------------------------------------------

    def _forward_signal(self, info: dict[str, Any], data: Any) -> None:
        if info.get("event") in BUILTIN_EVENTS:
            return  # the server fires those itself
        message = {"method": "signal", "params": {"info": info, "data": data}}
        state = self._remote_senders.get(info.get("sender"))  # type: ignore[arg-type]
        if self._live and state is not None and state.session == self._session:
            try:
                self.carrier.post(self._clientid, message)
                return
            except CarrierError as exc:
                logger.debug("signal buffered: %s", exc)
        with self._buffer_lock:
            self._buffer.append(message)

    def _flush(self) -> None:
        """Send the buffered signals of the senders registered now; keep those of the others."""
        while True:
            with self._buffer_lock:
                ready: list[dict[str, Any]] = []
                kept: list[dict[str, Any]] = []
                for message in self._buffer.take():
                    state = self._remote_senders.get(message["params"]["info"].get("sender"))
                    if state is not None:  # else the sender was removed meanwhile
                        (ready if state.session == self._session else kept).append(message)
                self._buffer.put_back(kept)
                if not ready:
                    self._live = True
                    return
            for index, message in enumerate(ready):
                try:
                    self.carrier.post(self._clientid, message)
                except CarrierError as exc:
                    logger.warning("sending buffered signals failed: %s", exc)
                    with self._buffer_lock:
                        self._buffer.put_back(ready[index:])
                    return

    def _retry_senders(self, session: int, names: list[Ident]) -> None:
        """Register again senders the server still held for our previous connection.

        A client that comes back before the server noticed its old connection died
        (half-open TCP, a Wi-Fi blip) finds its senders "already connected" until the
        server drops that connection (ping, keepalive); keep trying until then.
        """
        delay = 0.25
        while names and self._session == session and self.carrier.isConnected():
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
            for name in list(names):
                with self._remote_lock:
                    state = self._remote_senders.get(name)
                if state is None or state.session == session:
                    names.remove(name)
                    continue
                try:
                    self._register_sender(name, state, flush=True)
                except RemoteNameError:
                    continue
                except Exception as exc:
                    logger.error("could not register remote sender %r again: %s", name, exc)
                names.remove(name)
                logger.info("remote sender %r registered again", name)

    add_remote_sender = addRemoteSender
    remove_remote_sender = removeRemoteSender
    add_remote_listener = addRemoteListener
    remove_remote_listener = removeRemoteListener
    remote_request = remoteRequest
