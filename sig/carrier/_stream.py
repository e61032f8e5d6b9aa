"""Shared parts of the stream carriers (TCP, serial): one server side, one client side.

A concrete carrier only says how to open its byte streams; framing, threads,
the capability handshake, pipelining and reconnection live here.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from .._carrier import Carrier, ClientId
from .._codec import CAPABILITIES, DEFAULT_MAX_FRAME, Status, signal_frame, signal_message
from .._connection import Connection, Stream
from .._errors import AccessDeniedError, CarrierError, InvalidArgumentError
from .._limits import DEFAULT_MAX_CALLS, DEFAULT_MAX_PENDING_REQUESTS, QueueOverflow
from .._pool import WorkerPool

__all__ = ["StreamServerCarrier", "StreamClientCarrier"]

logger = logging.getLogger("sig.carrier.stream")


class _StreamCarrier(Carrier):
    """What both sides share: connection settings and the request pool.

    ``request_workers`` bounds the pool's threads; besides them, each connection may run one request
    on the thread that read it, once it passed reading on to its standby reader (:mod:`sig._baton`).
    """

    def __init__(
        self,
        *,
        max_frame: int = DEFAULT_MAX_FRAME,
        max_queue: int = 10000,
        ping_interval: float = 15.0,
        call_timeout: float = 10.0,
        request_workers: int = 32,
        max_pending_requests: int | None = None,
        max_calls: int = DEFAULT_MAX_CALLS,
    ) -> None:
        super().__init__()
        self.max_frame = max_frame
        self.max_pending_requests = max_pending_requests
        self.max_calls = max_calls
        self.max_queue = max_queue
        self.ping_interval = ping_interval
        self.call_timeout = call_timeout
        self._executor = WorkerPool(request_workers, "sig-request")

    def _connection(self, clientid: ClientId) -> Connection | None:
        raise NotImplementedError

    #: The class of this carrier's connections (a carrier may extend :class:`Connection`).
    connection_class: type[Connection] = Connection

    def _new_connection(
        self, clientid: ClientId, stream: Stream, name: str, on_closed: Callable[[Connection], None], client: bool
    ) -> Connection:
        conn = self.connection_class(
            self,
            clientid,
            stream,
            name=name,
            executor=self._executor,
            on_closed=on_closed,
            max_frame=self.max_frame,
            max_queue=self.max_queue,
            block_when_full=client,
            ping_interval=self.ping_interval,
            legacy_timeout=self.call_timeout,
        )
        conn.requests.limit = self.max_pending_requests
        conn.calls.limit = None if client else self.max_calls
        return conn

    def call(self, clientid: ClientId, message: dict[str, Any], timeout: float | None = None) -> Future[Any]:
        """Send a message that wants a reply; the future gets the reply dict."""
        conn = self._connection(clientid)
        if conn is None:
            future: Future[Any] = Future()
            future.set_exception(CarrierError("not connected to %r" % (clientid,)))
            return future
        return conn.call(message, timeout)

    def call_nowait(self, clientid: ClientId, message: dict[str, Any]) -> Future[Any] | None:
        """Like :meth:`call`, but None at once if not connected or the peer's queue is full."""
        conn = self._connection(clientid)
        return None if conn is None else conn.call_nowait(message)

    def post(self, clientid: ClientId, message: dict[str, Any]) -> None:
        """Send a notification (a signal): pipelined to sig peers, lock-step to 0.7.3 peers.

        Raises:
            CarrierError: not connected, or the peer stopped reading.
        """
        conn = self._connection(clientid)
        if conn is None:
            raise CarrierError("not connected to %r" % (clientid,))
        conn.post(message, self.call_timeout)

    def handleTX(self, clientid: ClientId, message: dict[str, Any]) -> dict[str, Any] | None:
        """Send ``message`` and wait for its reply (pysig's blocking contract)."""
        return self.call(clientid, message).result(self.call_timeout)  # type: ignore[no-any-return]


class StreamServerCarrier(_StreamCarrier):
    """The server side: many peers, each a :class:`~sig._connection.Connection`.

    ``max_pending_requests`` (default 100): most requests one client may have running or
    waiting at once; more are answered with an error at once (the client stays connected).
    ``max_calls`` (default 1000): most calls (signals ...) of one client read and waiting to
    run; beyond it the server reads no more from that client until they ran (TCP slows it down).

    An event for a client whose queue (``max_queue``) is full is dropped for that client,
    counted in :attr:`overflow` and logged, so a slow listener slows no one else down; a
    client whose full queue makes no progress for a second is disconnected.
    """

    remote_peers = True

    def __init__(self, **settings: Any) -> None:
        settings.setdefault("max_pending_requests", DEFAULT_MAX_PENDING_REQUESTS)
        super().__init__(**settings)
        #: Events dropped for clients that did not keep up (``overflow.dropped``, ``overflow.total``).
        self.overflow = QueueOverflow()
        self._connections: dict[ClientId, Connection] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    def _connection(self, clientid: ClientId) -> Connection | None:
        return self._connections.get(clientid)

    def post(self, clientid: ClientId, message: dict[str, Any]) -> None:
        """Send a notification (an event) to a client; dropped (counted, logged) if it is not keeping up.

        Raises:
            CarrierError: not connected.
        """
        conn = self._admitted(clientid)
        if conn is not None:
            conn.post(message, self.call_timeout)

    def post_signal(self, clientid: ClientId, listener_id: int, info: dict[str, Any], data: Any) -> None:
        """:meth:`post` of a signal to a remote listener, its frame made by template (no message dict)."""
        conn = self._admitted(clientid)
        if conn is None:
            return
        if conn.pipelined:
            conn.post_frame(signal_frame(listener_id, info, data), "signal", self.call_timeout)
        else:
            conn.post(signal_message(listener_id, info, data), self.call_timeout)

    def _admitted(self, clientid: ClientId) -> Connection | None:
        """The connection an event goes to; None: dropped, the client is not keeping up (counted, logged).

        Raises:
            CarrierError: not connected.
        """
        conn = self._connections.get(clientid)
        if conn is None:
            raise CarrierError("not connected to %r" % (clientid,))
        overflow = self.overflow  # no client behind and room: admit() would say yes
        if (not overflow._episodes and len(conn.peer.messages) < conn.max_queue) or overflow.admit(conn):
            return conn
        return None

    def clients(self) -> list[ClientId]:
        """Return the ids of the peers connected now."""
        return list(self._connections)

    def _serve(self, stream: Stream, peer: str) -> Connection:
        """Adopt a freshly accepted stream as a new peer."""
        clientid = "%s#%d" % (peer, next(self._ids))
        conn = self._new_connection(clientid, stream, clientid, self._closed, client=False)
        with self._lock:
            self._connections[clientid] = conn
        logger.info("[%s] client connected", clientid)
        self.handle_client_connected(clientid)
        conn.start()
        return conn

    def _closed(self, conn: Connection) -> None:
        with self._lock:
            self._connections.pop(conn.clientid, None)
        dropped = self.overflow.forget(conn.clientid)
        if dropped:
            logger.warning("[%s] %d event(s) were dropped for this client: it did not keep up", conn.clientid, dropped)
        logger.info("[%s] client disconnected (%s)", conn.clientid, conn.close_reason)
        self.handle_client_disconnected(conn.clientid)

    def _close_all(self, timeout: float = 5.0, flush_timeout: float = 1.0) -> None:
        with self._lock:
            connections = list(self._connections.values())
        deadline = time.monotonic() + flush_timeout
        for conn in connections:  # what is queued (e.g. #disconnect of the server's senders) goes first
            conn.drain(max(0.0, deadline - time.monotonic()))
        for conn in connections:
            conn.close("server stopping")
        for conn in connections:
            conn.join(timeout)


class StreamClientCarrier(_StreamCarrier):
    """The client side: one peer (the server), with the handshake and auto-reconnect.

    ``username`` + ``password``, or ``token``: credentials sent (RPC ``auth``) right after
    the handshake of every (re)connection, before anything is registered, to a server
    that checks them; never logged.

    Attributes:
        on_connected: called with no argument after each (re)connection.
        on_disconnected: called with no argument after each lost connection.
    """

    def __init__(
        self,
        *,
        handshake_timeout: float = 5.0,
        reconnect_min: float = 0.1,
        reconnect_max: float = 1.0,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        **settings: Any,
    ) -> None:
        super().__init__(**settings)
        if token is not None and (username is not None or password is not None):
            raise InvalidArgumentError("give a username and password, or a token, not both")
        if (username is None) != (password is None):
            raise InvalidArgumentError("a username needs a password (and a password a username)")
        self._credentials: dict[str, str] | None = (
            {"token": token} if token is not None
            else {"user": username, "password": password} if username is not None and password is not None
            else None
        )
        self._auth_refusals = 0
        self.on_connected: Callable[[], Any] | None = None
        self.on_disconnected: Callable[[], Any] | None = None
        self.auto_reconnect = False
        self.handshake_timeout = handshake_timeout
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self.clientid = "client-%x" % id(self)
        self.server_version: Any = None
        #: Why the last attempt failed: the stream could not be opened, or the server refused our
        #: credentials (an :class:`~sig.AccessDeniedError`); None: it succeeded.
        self.last_error: OSError | None = None
        self._conn: Connection | None = None
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._reconnect_thread: threading.Thread | None = None

    # -- to be provided by the concrete carrier ------------------------------

    def _open(self) -> tuple[Stream, str]:
        """Open the byte stream to the server; return it and a name for logs."""
        raise NotImplementedError

    # -- connection --------------------------------------------------------------

    def _connection(self, clientid: ClientId) -> Connection | None:
        return self._conn

    def isConnected(self) -> bool:
        """Tell whether the carrier is connected to the server now."""
        conn = self._conn
        return conn is not None and not conn.closed.is_set()

    def _start(self, auto_reconnect: bool) -> bool:
        self.auto_reconnect = auto_reconnect
        self._stopping.clear()
        if self.isConnected():
            return False
        if self._connect_once():
            return True
        if auto_reconnect:
            self._start_reconnect()
        return False

    def _target(self) -> str:
        """What this carrier connects to, for log lines."""
        return "?"

    def _connect_once(self) -> bool:
        with self._lock:
            if self.isConnected():
                return True
            try:
                stream, name = self._open()
            except OSError as exc:
                self.last_error = exc
                logger.info("connecting failed (%s): %s", self._target(), exc)
                return False
            self.last_error = None
            conn = self._new_connection(self.clientid, stream, name, self._closed, client=True)
            conn.start()
            try:
                reply = conn.call(
                    {"method": "get_version", "params": {"capabilities": list(CAPABILITIES)}}
                ).result(self.handshake_timeout)
            except Exception as exc:
                # no join here: its dispatcher ends in _closed, which waits for self._lock
                conn.close("no answer to get_version: %s" % (str(exc) or type(exc).__name__))
                logger.warning("[%s] handshake failed: %s", name, str(exc) or type(exc).__name__)
                return False
            response = reply.get("response") if reply.get("status") == Status.OK else None
            if isinstance(response, dict):
                conn.negotiate(response.get("capabilities"))
                self.server_version = response.get("version")
            else:
                self.server_version = response  # a pysig 0.7.3 server answers "1.01": lock-step
            refused = self._authenticate(conn, name, response)
            if refused is not None:
                self.last_error = refused
                conn.close(str(refused))
                return False
            logger.info("[%s] connected (server %s, %s)", name, self.server_version,
                        "pipelined" if conn.pipelined else "lock-step")
            self._conn = conn
        self.handle_client_connected(self.clientid)
        if self.on_connected is not None:
            try:
                self.on_connected()
            except Exception:
                logger.exception("on_connected callback failed")
        self.handle_client_ready(self.clientid)
        return True

    def _authenticate(self, conn: Connection, name: str, response: Any) -> OSError | None:
        """Send our credentials if the server checks them; return why it refused us, if it did."""
        offered = response.get("capabilities") if isinstance(response, dict) else None
        checks = isinstance(offered, list) and "auth" in offered
        credentials = self._credentials
        if not checks:
            if credentials is not None:
                logger.warning("[%s] the server does not check credentials (no access control, or pysig 0.7.3): "
                               "none sent", name)
            return None
        assert isinstance(response, dict)
        if credentials is None:
            if response.get("anonymous") is False:
                return self._refused(name, AccessDeniedError(
                    "the server %s requires authentication: give a username and password, or a token" % name))
            return None
        try:
            reply = conn.call({"method": "auth", "params": credentials}).result(self.handshake_timeout)
        except Exception as exc:
            logger.warning("[%s] no answer to auth: %s", name, str(exc) or type(exc).__name__)
            return TimeoutError("no answer to auth from %s" % name)
        if reply.get("status") != Status.OK:
            why = reply.get("exception") or "status %s" % reply.get("status")
            return self._refused(name, AccessDeniedError("authentication refused by %s: %s" % (name, why)))
        result = reply.get("response")
        self._auth_refusals = 0
        logger.info("[%s] authenticated as %r", name, result.get("user") if isinstance(result, dict) else None)
        return None

    def _refused(self, name: str, error: AccessDeniedError) -> AccessDeniedError:
        """Log a refusal: info when :meth:`connect` returns it (False, ``last_error``); from the
        background reconnection a warning the first time, then at debug level."""
        self._auth_refusals += 1
        if threading.current_thread() is not self._reconnect_thread:
            level = logging.INFO
        else:
            level = logging.WARNING if self._auth_refusals == 1 else logging.DEBUG
        logger.log(level, "[%s] %s", name, error)
        return error

    def _closed(self, conn: Connection) -> None:
        with self._lock:
            if self._conn is not conn:
                return  # a handshake that failed
            self._conn = None
        self.handle_client_disconnected(self.clientid)
        if self.on_disconnected is not None:
            try:
                self.on_disconnected()
            except Exception:
                logger.exception("on_disconnected callback failed")
        if self.auto_reconnect and not self._stopping.is_set():
            self._start_reconnect()

    def _start_reconnect(self) -> None:
        with self._lock:
            if self._reconnect_thread is not None and self._reconnect_thread.is_alive():
                return
            thread = threading.Thread(target=self._reconnect_loop, name="sig-reconnect", daemon=True)
            thread.start()  # before _stop() can see it: joining a thread not yet started raises
            self._reconnect_thread = thread

    def _reconnect_loop(self) -> None:
        delay = self.reconnect_min
        while self.auto_reconnect and not self._stopping.wait(delay):
            if self._connect_once():
                return
            delay = min(delay * 2, self.reconnect_max)

    def _stop(self, flush_timeout: float = 10.0) -> None:
        self.auto_reconnect = False
        self._stopping.set()
        thread = self._reconnect_thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.handshake_timeout + 1.0)
        conn = self._conn
        if conn is not None:
            if not conn.drain(flush_timeout):
                logger.warning("[%s] %s", conn.name, "not everything was sent before disconnecting")
            conn.close("disconnected by the client")
            conn.join(flush_timeout)
