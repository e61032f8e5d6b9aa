"""The Carrier contract: how routers send and receive messages.

A carrier moves messages between a :class:`~sig.ServerRouter` and its
:class:`~sig.ClientRouter` peers. The documented pysig contract is kept:

* ``pack(message)`` / ``unpack(data)``: JSON by default, may be overridden;
* ``handleRX(clientid, message)``: the carrier calls it for every message (not
  reply) it receives; it returns the reply to send back;
* ``handleTX(clientid, message)``: the router calls it to send a message and
  gets the (unpacked) reply back. A custom carrier implements this;
* ``handle_client_connected(clientid)`` / ``handle_client_disconnected(clientid)``
  / ``handle_all_clients_diconnected()`` (sic): the carrier tells the router.

sig adds two non-blocking entry points, :meth:`Carrier.call` and
:meth:`Carrier.post`. The built-in carriers implement them so that signals are
pipelined; for a custom carrier written the 0.7.3 way they fall back to
``handleTX``, in lock-step.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from ._codec import Status, make_reply, signal_message
from ._errors import AccessDeniedError, CarrierError

__all__ = ["Carrier", "ClientId", "RpcMethod", "log_failed_post", "log_method_failure", "plain_rx", "rpc_reply"]

logger = logging.getLogger("sig.carrier")

#: Identifies one peer of a carrier (any hashable).
ClientId = Any
#: An RPC method: ``method(clientid, params) -> response``.
RpcMethod = Callable[[Any, dict[str, Any]], Any]
#: :attr:`Carrier.callback_forward`: ``start(clientid, message, answer) -> started``.
ForwardStarter = Callable[[Any, dict[str, Any], Callable[[dict[str, Any]], None]], bool]


class Carrier:
    """Base class of every carrier.

    Attributes:
        methods: ``{name: method(clientid, params)}``; set by the router.
        callback_rx: optional ``callback(clientid, message)`` run for every message received.
        callback_client_connected, callback_client_disconnected,
        callback_all_clients_disconnected, callback_client_ready: set by the router.
        callback_forward: set by a :class:`~sig.ServerRouter`: ``callback_forward(clientid, message,
            answer)`` starts a ``request`` that the router only passes on to a peer of a carrier with
            :meth:`call_nowait`, without blocking or running user code, and returns True; ``answer(reply)``
            gets the reply later, once. False: nothing started, the request runs the usual way
            (:meth:`handleRX`, off the reader).
    """

    #: Whether the peers are other processes or machines (a server's per-client limits apply
    #: to them), not in-process routers.
    remote_peers = False

    def __init__(self) -> None:
        self.callback_rx: Callable[[ClientId, dict[str, Any]], Any] | None = None
        self.methods: dict[str, RpcMethod] | None = None
        self.callback_client_connected: Callable[[ClientId], Any] | None = None
        self.callback_client_disconnected: Callable[[ClientId], Any] | None = None
        self.callback_all_clients_disconnected: Callable[[], Any] | None = None
        self.callback_client_ready: Callable[[ClientId], Any] | None = None
        self.callback_forward: ForwardStarter | None = None

    # -- packing -----------------------------------------------------------

    def pack(self, message: dict[str, Any]) -> Any:
        """Encode a message for the medium (JSON text by default); ``None`` if it cannot be."""
        try:
            return json.dumps(message)
        except (TypeError, ValueError) as exc:
            logger.error("pack failed: %s", exc)
            return None

    def unpack(self, data: Any) -> dict[str, Any] | None:
        """Decode data from the medium into a message dict; ``None`` if it cannot be."""
        try:
            message = json.loads(data)
        except (TypeError, ValueError) as exc:
            logger.error("unpack failed: %s", exc)
            return None
        if not isinstance(message, dict):
            logger.error("unpack failed: a message must be a JSON object, not %s", type(message).__name__)
            return None
        return message

    # -- receiving -----------------------------------------------------------

    def handleRX(self, clientid: ClientId, message: dict[str, Any]) -> dict[str, Any] | None:
        """Handle a received message; return the reply to send back (never raises)."""
        if self.callback_rx is not None:
            try:
                self.callback_rx(clientid, message)
            except Exception:
                logger.exception("callback_rx failed")
        if self.methods is not None:
            return self.handleRPC(clientid, message)
        return None

    def handleRPC(self, clientid: ClientId, message: Any) -> dict[str, Any]:
        """Run the RPC method a message names and return the reply (never raises)."""
        if not isinstance(message, dict):
            return make_reply(None, Status.NO_METHOD, exc=TypeError("a message must be a JSON object"))
        message_id = message.get("id")
        method = message.get("method")
        if method is None:
            logger.error("no method in message %.200r", _redacted(message))
            return make_reply(message_id, Status.NO_METHOD, exc=ValueError("the message has no method field"))
        params = message.get("params")
        if params is None:
            params = {}
        fn = self.methods.get(method) if isinstance(method, str) and self.methods else None
        if fn is None:
            logger.error("unknown method %r from %r", method, clientid)
            return make_reply(message_id, Status.UNKNOWN_METHOD, exc=LookupError("unknown method %r" % (method,)))
        if not isinstance(params, dict):
            logger.warning("method %r from %r: params is %s, not a JSON object", method, clientid,
                           type(params).__name__)
            return make_reply(
                message_id, Status.METHOD_FAILED, exc=TypeError("params of %r must be a JSON object" % method)
            )
        return rpc_reply(message_id, method, clientid, fn, params)

    # -- sending ---------------------------------------------------------------

    def handleTX(self, clientid: ClientId, message: dict[str, Any]) -> dict[str, Any] | None:
        """Send ``message`` to ``clientid`` and return its unpacked reply.

        A carrier written the pysig 0.7.3 way implements this. The default does nothing.
        """
        return None

    def call(self, clientid: ClientId, message: dict[str, Any], timeout: float | None = None) -> Future[Any]:
        """Send a message that wants a reply; the future gets the reply dict.

        The default runs :meth:`handleTX` in the calling thread.
        """
        future: Future[Any] = Future()
        try:
            reply = self.handleTX(clientid, message)
        except Exception as exc:
            future.set_exception(CarrierError("sending %s failed: %s" % (message.get("method"), exc)))
            return future
        if reply is None:
            future.set_exception(CarrierError("no reply to %s" % (message.get("method"),)))
        else:
            future.set_result(reply)
        return future

    def call_nowait(self, clientid: ClientId, message: dict[str, Any]) -> Future[Any] | None:
        """Like :meth:`call`, but only if it neither blocks nor waits for room; else None (the default)."""
        return None

    def post(self, clientid: ClientId, message: dict[str, Any]) -> None:
        """Send a message that needs no reply (a signal). The default runs :meth:`handleTX`."""
        log_failed_post(self.call(clientid, message))

    def post_signal(self, clientid: ClientId, listener_id: int, info: dict[str, Any], data: Any) -> None:
        """:meth:`post` the signal of an event to a peer's remote listener ``listener_id``."""
        self.post(clientid, signal_message(listener_id, info, data))

    def isConnected(self) -> bool:
        """Tell whether the carrier can move messages now (always true unless overridden)."""
        return True

    # -- peer state ----------------------------------------------------------------

    def handle_client_connected(self, clientid: ClientId) -> None:
        """Tell the router a peer connected."""
        if self.callback_client_connected is not None:
            self.callback_client_connected(clientid)

    def handle_client_ready(self, clientid: ClientId) -> None:
        """Tell the router a peer is connected and its ``on_connected`` callback has run."""
        if self.callback_client_ready is not None:
            self.callback_client_ready(clientid)

    def handle_client_disconnected(self, clientid: ClientId) -> None:
        """Tell the router a peer disconnected."""
        if self.callback_client_disconnected is not None:
            self.callback_client_disconnected(clientid)

    def handle_all_clients_diconnected(self) -> None:
        """Tell the router every peer disconnected (pysig's spelling; see the alias)."""
        if self.callback_all_clients_disconnected is not None:
            self.callback_all_clients_disconnected()

    def handle_all_clients_disconnected(self) -> None:
        """Tell the router every peer disconnected (correctly spelled alias)."""
        self.handle_all_clients_diconnected()

    is_connected = isConnected


#: Parameters whose values never reach a log line.
SECRET_PARAMS = frozenset({"password", "token"})


def _redacted(message: dict[str, Any]) -> dict[str, Any]:
    """``message`` with the values of secret parameters (``password``, ``token``) masked, for logs."""
    params = message.get("params")
    if not isinstance(params, dict) or not SECRET_PARAMS & params.keys():
        return message
    return dict(message, params={k: "***" if k in SECRET_PARAMS else v for k, v in params.items()})


def rpc_reply(
    message_id: Any, method: str, clientid: ClientId, fn: Callable[[Any, Any], Any], params: Any
) -> dict[str, Any]:
    """Run ``fn(clientid, params)``, the RPC method ``method``, and return its reply (never raises)."""
    try:
        response = fn(clientid, params)
    except Exception as exc:
        return make_reply(message_id, log_method_failure(method, clientid, exc), exc=exc)
    return make_reply(message_id, Status.OK, response)


def log_method_failure(method: Any, clientid: ClientId, exc: Exception) -> Status:
    """Log that the RPC method ``method`` raised ``exc``; return the status of its reply."""
    if isinstance(exc, AccessDeniedError):  # authentication or ACL: status -4 (the text holds no secret)
        logger.warning("method %r from %r refused: %s", method, clientid, exc)
        return Status.REFUSED
    logger.warning("method %r from %r failed: %s", method, clientid, exc)
    logger.debug("method %r traceback", method, exc_info=exc)
    return Status.METHOD_FAILED


def log_failed_post(future: Future[Any]) -> None:
    """Log a notification (a message nobody waits for) that failed to arrive or to run."""
    exc = future.exception()
    if exc is not None:
        logger.warning("notification not delivered: %s", exc)
        return
    reply = future.result()
    if reply.get("status") != Status.OK:
        logger.warning("notification failed on the far side: %s", reply.get("exception"))


def plain_rx(cls: type[Carrier]) -> bool:
    """Whether a carrier class handles received messages as :class:`Carrier` does (not overridden)."""
    return cls.handleRX is Carrier.handleRX and cls.handleRPC is Carrier.handleRPC
