"""ServerRouter: the router every client router talks to, through one or more carriers.

Senders registered by any client, or on the server itself, are visible to
every listener; a client that disconnects has its senders removed (firing
``#disconnect``) and its listeners dropped.
"""

from __future__ import annotations

import functools
import itertools
import logging
import threading
from typing import Any

from ._carrier import Carrier, ClientId
from ._codec import CAPABILITIES, PROTOCOL_VERSION
from ._errors import (
    CarrierError,
    InvalidArgumentError,
    InvalidIdentifierError,
    NotRegisteredError,
    UnknownSenderError,
)
from ._event import Event, Signal
from ._ident import Ident, check_optional_ident
from ._remote import ident_param, param, remote_call
from ._router import Router
from ._sender import Sender

__all__ = ["ServerRouter"]

logger = logging.getLogger("sig.server")

_Key = tuple[Carrier, ClientId]


class _RemoteListener:
    """Forwards the events one client registered for to that client."""

    __slots__ = ("listener_id", "carrier", "clientid", "sender", "event")

    def __init__(self, listener_id: int, carrier: Carrier, clientid: ClientId, sender: Any, event: Any) -> None:
        self.listener_id = listener_id
        self.carrier = carrier
        self.clientid = clientid
        self.sender = sender
        self.event = event

    def __call__(self, info: dict[str, Any], data: Any) -> None:
        message = {"method": "signal", "params": {"listener_id": self.listener_id, "info": info, "data": data}}
        try:
            self.carrier.post(self.clientid, message)
        except CarrierError as exc:
            logger.warning("event %r:%r not forwarded to %s: %s", info.get("sender"), info.get("event"),
                           self.clientid, exc)

    def __repr__(self) -> str:
        return "<remote listener %d of %s on (%r, %r)>" % (self.listener_id, self.clientid, self.sender, self.event)


class _Client:
    """What one connected client registered."""

    def __init__(self) -> None:
        self.senders: list[Ident] = []
        self.listeners: dict[int, _RemoteListener] = {}
        self.signals: dict[tuple[Ident, Ident], Signal] = {}


class ServerRouter(Router):
    """A :class:`Router` that serves client routers through carriers.

    Args:
        carrier: the first carrier (e.g. :class:`~sig.carrier.tcpserver.CarrierTCPServer`);
            more can be attached with :meth:`attach`.
        request_timeout: seconds to wait for a client to answer a request.

    All other arguments are those of :class:`Router`.
    """

    #: What a pysig 0.7.3 peer gets from ``get_version``.
    server_version = PROTOCOL_VERSION

    def __init__(
        self,
        carrier: Carrier | None = None,
        request_timeout: float = 10.0,
        class_sender: type[Sender] = Sender,
        class_signal: type[Signal] = Signal,
        class_event: type[Event] = Event,
    ) -> None:
        super().__init__(class_sender=class_sender, class_signal=class_signal, class_event=class_event)
        self.request_timeout = request_timeout
        self.carriers: list[Carrier] = []
        self._clients: dict[_Key, _Client] = {}
        self._clients_lock = threading.Lock()
        self._listener_ids = itertools.count(1)
        if carrier is not None:
            self.attach(carrier)

    @property
    def carrier(self) -> Carrier | None:
        """The first carrier (pysig had exactly one)."""
        return self.carriers[0] if self.carriers else None

    def attach(self, carrier: Carrier) -> None:
        """Serve the clients of one more carrier (TCP, serial, MQTT ... at once)."""
        handlers = {
            "get_version": self.handle_get_version,
            "list_senders": self.handle_list_senders,
            "add_sender": self.handle_add_sender,
            "remove_sender": self.handle_remove_sender,
            "add_listener": self.handle_add_listener,
            "remove_listener": self.handle_remove_listener,
            "signal": self.handle_signal,
            "request": self.handle_request,
        }
        carrier.methods = {
            name: functools.partial(_with_key, handler, carrier) for name, handler in handlers.items()
        }
        carrier.callback_client_connected = functools.partial(self._client_connected, carrier)
        carrier.callback_client_disconnected = functools.partial(self._client_disconnected, carrier)
        carrier.callback_all_clients_disconnected = functools.partial(self._all_disconnected, carrier)
        self.carriers.append(carrier)
        bind = getattr(carrier, "bind_router", None)
        if bind is not None:  # carriers that act on the router itself (MQTT)
            bind(self)

    # -- RPC methods (called as method((carrier, clientid), params)) -----------

    def handle_get_version(self, key: _Key, params: dict[str, Any]) -> Any:
        """Answer ``get_version``: "1.01" to a pysig 0.7.3 peer, a dict to a sig peer."""
        if isinstance(params.get("capabilities"), list):
            from . import VERSION

            return {"version": VERSION, "protocol": PROTOCOL_VERSION, "capabilities": list(CAPABILITIES)}
        return self.server_version

    def handle_list_senders(self, key: _Key, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Answer ``list_senders``: ``[{"sender", "connected"[, "events"]}]``."""
        list_events = bool(params.get("list_events", False))
        response = []
        for objsender in self.getSenders():
            entry: dict[str, Any] = {"sender": objsender.getName(), "connected": objsender.isConnected()}
            if list_events:
                entry["events"] = [{"event": name} for name in objsender.getEvents()]
            response.append(entry)
        return response

    def handle_add_sender(self, key: _Key, params: dict[str, Any]) -> None:
        """Register a client's sender; requests to it are forwarded to the client."""
        sender = ident_param(params, "sender")
        events = param(params, "events", (list, str, int, float), None)
        requests_list = param(params, "requests", list, None)
        requests = None
        if requests_list is not None:
            requests = {}
            carrier, clientid = key
            for method in requests_list:
                check_optional_ident(method, "request method")  # before it is used as a key
                forward = functools.partial(self._forward_request, carrier, clientid, sender)
                requests[method] = forward if method is None else functools.partial(forward, method)
        client = self._client(key)
        self.addSender(sender, events, requests=requests)  # type: ignore[arg-type]
        client.senders.append(sender)  # type: ignore[arg-type]

    def handle_remove_sender(self, key: _Key, params: dict[str, Any]) -> None:
        """Remove a sender the same client registered."""
        sender = ident_param(params, "sender")
        client = self._client(key)
        if sender not in client.senders:
            raise UnknownSenderError("sender %r was not registered by this client" % (sender,))
        client.senders.remove(sender)
        client.signals = {k: v for k, v in client.signals.items() if k[0] != sender}
        self.removeSender(sender)

    def handle_add_listener(self, key: _Key, params: dict[str, Any]) -> dict[str, int]:
        """Register a client's listener; answer ``{"listener_id": ...}``."""
        sender = ident_param(params, "sender", optional=True)
        event = ident_param(params, "event", optional=True)
        client = self._client(key)
        carrier, clientid = key
        listener = _RemoteListener(next(self._listener_ids), carrier, clientid, sender, event)
        self.addListener(listener, sender, event)
        client.listeners[listener.listener_id] = listener
        return {"listener_id": listener.listener_id}

    def handle_remove_listener(self, key: _Key, params: dict[str, Any]) -> None:
        """Remove a listener the same client registered."""
        listener_id = param(params, "listener_id", int)
        if isinstance(listener_id, bool):  # True == 1
            raise InvalidIdentifierError("parameter 'listener_id' must be int, not bool")
        listener = self._client(key).listeners.pop(listener_id, None)
        if listener is None:
            raise NotRegisteredError("listener %r is not registered by this client" % (listener_id,))
        self.removeListener(listener, listener.sender, listener.event)

    def handle_signal(self, key: _Key, params: dict[str, Any]) -> None:
        """Fire an event of a sender the same client registered."""
        info = param(params, "info", dict)
        sender = ident_param(info, "sender")
        event = ident_param(info, "event")
        client = self._client(key)
        signal = client.signals.get((sender, event))  # type: ignore[arg-type]
        if signal is None:
            if sender not in client.senders:
                raise UnknownSenderError("sender %r is not connected through this client" % (sender,))
            signal = self.getSender(sender).getSignal(event)  # type: ignore[arg-type]
            client.signals[(sender, event)] = signal  # type: ignore[index]
        signal.trigger(params.get("data"))

    def handle_request(self, key: _Key, params: dict[str, Any]) -> Any:
        """Run a request on a sender, wherever it is registered, and answer its response."""
        sender = ident_param(params, "sender")
        method = ident_param(params, "method")
        return self.request(sender, method, params.get("params"))  # type: ignore[arg-type]

    # -- clients ------------------------------------------------------------------

    def _forward_request(self, carrier: Carrier, clientid: ClientId, sender: Any, method: Any, params: Any) -> Any:
        message = {"method": "request", "params": {"sender": sender, "method": method, "params": params}}
        try:
            return remote_call(carrier, clientid, message, self.request_timeout)
        except CarrierError as exc:  # its client is gone: the sender is disconnected
            raise UnknownSenderError("sender %r disconnected before answering (%s)" % (sender, exc)) from exc

    def _client(self, key: _Key) -> _Client:
        client = self._clients.get(key)
        if client is None:  # a carrier that never said the client connected
            with self._clients_lock:
                client = self._clients.setdefault(key, _Client())
        return client

    def _client_connected(self, carrier: Carrier, clientid: ClientId) -> None:
        with self._clients_lock:
            self._clients[(carrier, clientid)] = _Client()

    def _client_disconnected(self, carrier: Carrier, clientid: ClientId) -> None:
        with self._clients_lock:
            client = self._clients.pop((carrier, clientid), None)
        if client is None:
            return
        for listener in client.listeners.values():
            try:
                self.removeListener(listener, listener.sender, listener.event)
            except NotRegisteredError:
                pass
        for sender in client.senders:
            try:
                self.removeSender(sender)
            except UnknownSenderError:
                pass
        if client.senders or client.listeners:
            logger.info("[SR] client %s gone: removed %d sender(s), %d listener(s)", clientid,
                        len(client.senders), len(client.listeners))

    def _all_disconnected(self, carrier: Carrier) -> None:
        for key in [key for key in list(self._clients) if key[0] is carrier]:
            self._client_disconnected(*key)

    add_carrier = addCarrier = attach


def _with_key(handler: Any, carrier: Carrier, clientid: ClientId, params: dict[str, Any]) -> Any:
    if not isinstance(params, dict):
        raise InvalidArgumentError("params must be a JSON object")
    return handler((carrier, clientid), params)
