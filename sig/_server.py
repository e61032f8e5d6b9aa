"""ServerRouter: the router every client router talks to, through one or more carriers.

Senders registered by any client, or on the server itself, are visible to
every listener; a client that disconnects has its senders removed (firing
``#disconnect``) and its listeners dropped.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import threading
from typing import Any

from ._access import AccessControl
from ._carrier import Carrier, ClientId
from ._codec import CAPABILITIES, PROTOCOL_VERSION
from ._errors import (
    AccessDeniedError,
    CarrierError,
    InvalidArgumentError,
    InvalidIdentifierError,
    LimitExceededError,
    NotRegisteredError,
    UnknownSenderError,
)
from ._event import Event, Signal
from ._forward import Forward, start_forward
from ._ident import Ident, check_optional_ident
from ._remote import ident_param, param, remote_call
from ._router import Router
from ._sender import Sender

__all__ = ["ServerRouter"]

logger = logging.getLogger("sig.server")

_Key = tuple[Carrier, ClientId]

#: Methods a client may call before it authenticated.
OPEN_METHODS = frozenset({"get_version", "auth"})
#: Default most senders plus listeners one client may register.
DEFAULT_MAX_REGISTRATIONS = 1000
#: Failed ``auth`` calls after which a connection's further attempts are refused unchecked.
MAX_AUTH_FAILURES = 5


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
        try:
            self.carrier.post_signal(self.clientid, self.listener_id, info, data)
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
        self.user: str | None = None  # who it authenticated as (None: anonymous)
        self.authenticated = False
        self.auth_failures = 0


class ServerRouter(Router):
    """A :class:`Router` that serves client routers through carriers.

    Args:
        carrier: the first carrier (e.g. :class:`~sig.carrier.tcpserver.CarrierTCPServer`);
            more can be attached with :meth:`attach`.
        request_timeout: seconds to wait for a client to answer a request.
        access: an :class:`~sig.AccessControl`: clients authenticate (RPC ``auth``) and
            the ACL says which senders each may register, listen to and request;
            refusals answer status -4. None (the default): every client may do everything.
        max_registrations: most senders plus listeners one client may register (None: no limit).
        max_payload: largest JSON size, in characters, of one signal's data or one
            request's params from a client (None: only the carrier's frame limit).
            Both limits apply to the clients of carriers that serve remote peers
            (``Carrier.remote_peers``: TCP and serial servers), not to in-process ones.

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
        access: AccessControl | None = None,
        max_registrations: int | None = DEFAULT_MAX_REGISTRATIONS,
        max_payload: int | None = None,
    ) -> None:
        super().__init__(class_sender=class_sender, class_signal=class_signal, class_event=class_event)
        self.request_timeout = request_timeout
        self.access = access
        self.max_registrations = max_registrations
        self.max_payload = max_payload
        self.carriers: list[Carrier] = []
        self._clients: dict[_Key, _Client] = {}
        self._clients_lock = threading.Lock()
        self._listener_ids = itertools.count(1)
        #: senders being removed because their client's connection was lost (not removed by the
        #: client): ``#disconnect`` listeners may tell the two apart (Home Assistant discovery)
        self.lost_senders: set[Any] = set()
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
            "auth": self.handle_auth,
            "list_senders": self.handle_list_senders,
            "add_sender": self.handle_add_sender,
            "remove_sender": self.handle_remove_sender,
            "add_listener": self.handle_add_listener,
            "remove_listener": self.handle_remove_listener,
            "signal": self.handle_signal,
            "request": self.handle_request,
        }
        carrier.methods = {
            name: functools.partial(self._guarded, name, handler, carrier) for name, handler in handlers.items()
        }
        carrier.callback_client_connected = functools.partial(self._client_connected, carrier)
        carrier.callback_client_disconnected = functools.partial(self._client_disconnected, carrier)
        carrier.callback_all_clients_disconnected = functools.partial(self._all_disconnected, carrier)
        carrier.callback_forward = functools.partial(start_forward, self, carrier)
        self.carriers.append(carrier)
        bind = getattr(carrier, "bind_router", None)
        if bind is not None:  # carriers that act on the router itself (MQTT)
            bind(self)

    # -- RPC methods (called as method((carrier, clientid), params)) -----------

    def handle_get_version(self, key: _Key, params: dict[str, Any]) -> Any:
        """Answer ``get_version``: "1.01" to a pysig 0.7.3 peer, a dict to a sig peer."""
        if isinstance(params.get("capabilities"), list):
            from . import VERSION

            capabilities = list(CAPABILITIES)
            if self.access is None:
                return {"version": VERSION, "protocol": PROTOCOL_VERSION, "capabilities": capabilities}
            return {"version": VERSION, "protocol": PROTOCOL_VERSION, "capabilities": [*capabilities, "auth"],
                    "anonymous": self.access.anonymous}
        return self.server_version

    def handle_auth(self, key: _Key, params: dict[str, Any]) -> dict[str, Any]:
        """Authenticate a client: params ``{"user", "password"}`` or ``{"token"}``; answer ``{"user"}``.

        Without access control there is nothing to check: ``{"user": None, "access_control": False}``.
        """
        access = self.access
        if access is None:
            return {"user": None, "access_control": False}
        client = self._client(key)
        if client.authenticated:
            raise AccessDeniedError("already authenticated as %r on this connection" % (client.user,))
        if client.auth_failures >= MAX_AUTH_FAILURES:
            raise AccessDeniedError("authentication failed %d times on this connection: reconnect to try again"
                                    % client.auth_failures)
        try:
            user = access.authenticate(params)
        except AccessDeniedError:
            client.auth_failures += 1
            raise
        client.user, client.authenticated = user, True
        logger.info("[SR] client %s authenticated as %r", key[1], user)
        return {"user": user}

    def handle_list_senders(self, key: _Key, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Answer ``list_senders``: ``[{"sender", "connected"[, "events"]}]``."""
        list_events = bool(params.get("list_events", False))
        response = []
        for objsender in self._visible_senders(key):
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
        if params.get("shared"):
            raise InvalidArgumentError("this server cannot host shared (load-balanced) senders: %r not added (an MQTT "
                                       "carrier on a broker with shared subscriptions can)" % (sender,))
        self._check(key, "senders", sender)
        client = self._client(key)
        self._check_room(key, client)
        requests = None
        if requests_list is not None:
            requests = {}
            carrier, clientid = key
            for method in requests_list:
                check_optional_ident(method, "request method")  # before it is used as a key
                requests[method] = Forward(self, carrier, clientid, sender) if method is None else Forward(
                    self, carrier, clientid, sender, method)
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
        self._check(key, "listen", sender)
        client = self._client(key)
        self._check_room(key, client)
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
        info = params.get("info")
        if type(info) is not dict:
            info = param(params, "info", dict)
        sender, event = info.get("sender"), info.get("event")
        if type(sender) is not str:  # a str is an identifier: the common case needs no more checks
            sender = ident_param(info, "sender")
        if type(event) is not str:
            event = ident_param(info, "event")
        client = self._clients.get(key) or self._client(key)
        signal = client.signals.get((sender, event))  # type: ignore[arg-type]
        if signal is None:
            if sender not in client.senders:
                raise UnknownSenderError("sender %r is not connected through this client" % (sender,))
            signal = self.getSender(sender).getSignal(event)  # type: ignore[arg-type]
            client.signals[(sender, event)] = signal  # type: ignore[index]
        data = params.get("data")
        if self.max_payload is not None and key[0].remote_peers:
            self._check_payload(data, "signal data")
        signal.trigger(data)

    def handle_request(self, key: _Key, params: dict[str, Any]) -> Any:
        """Run a request on a sender, wherever it is registered, and answer its response."""
        sender, method = self._request_target(key, params)
        return self.request(sender, method, params.get("params"))

    def _request_target(self, key: _Key, params: dict[str, Any]) -> tuple[Ident, Ident]:
        """The sender and method of a request, checked (identifiers, ACL, size)."""
        sender = ident_param(params, "sender")
        method = ident_param(params, "method")
        self._check(key, "request", sender)
        if self.max_payload is not None and key[0].remote_peers:
            self._check_payload(params.get("params"), "request params")
        return sender, method  # type: ignore[return-value]

    # -- access and limits --------------------------------------------------------------

    def _guarded(self, name: str, handler: Any, carrier: Carrier, clientid: ClientId, params: Any) -> Any:
        """Run an RPC method for a client: params must be an object, and the client admitted."""
        if not isinstance(params, dict):
            raise InvalidArgumentError("params must be a JSON object")
        key = (carrier, clientid)
        access = self.access
        if access is not None and name not in OPEN_METHODS and not access.anonymous:
            if not self._client(key).authenticated:
                raise AccessDeniedError("authentication required: call auth before %s" % name)
        return handler(key, params)

    def _check(self, key: _Key, right: str, sender: Any) -> None:
        """Raise :class:`AccessDeniedError` unless the client's ACL gives ``right`` on ``sender``."""
        if self.access is not None:
            self.access.check(self._client(key).user, right, sender)

    def _visible_senders(self, key: _Key) -> list[Sender]:
        """The senders a client may know of: those it may listen to or request (all, without an ACL)."""
        access = self.access
        senders = self.getSenders()
        if access is None or not access.has_acl:
            return senders
        user = self._client(key).user
        return [s for s in senders
                if access.allowed(user, "listen", s.getName()) or access.allowed(user, "request", s.getName())]

    def _check_room(self, key: _Key, client: _Client) -> None:
        count = len(client.senders) + len(client.listeners)
        if self.max_registrations is not None and key[0].remote_peers and count >= self.max_registrations:
            raise LimitExceededError("too many registrations: this client has %d senders and listeners (limit %d)"
                                     % (count, self.max_registrations))

    def _check_payload(self, value: Any, what: str) -> None:
        assert self.max_payload is not None
        size = len(json.dumps(value, separators=(",", ":")))
        if size > self.max_payload:
            raise LimitExceededError("%s too large: %d characters of JSON (limit %d)" % (what, size, self.max_payload))

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
            self.lost_senders.add(sender)
            try:
                self.removeSender(sender)
            except UnknownSenderError:
                pass
            finally:
                self.lost_senders.discard(sender)
        if client.senders or client.listeners:
            logger.info("[SR] client %s gone: removed %d sender(s), %d listener(s)", clientid,
                        len(client.senders), len(client.listeners))

    def _all_disconnected(self, carrier: Carrier) -> None:
        for key in [key for key in list(self._clients) if key[0] is carrier]:
            self._client_disconnected(*key)

    add_carrier = addCarrier = attach

