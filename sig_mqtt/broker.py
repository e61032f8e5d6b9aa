"""``EmbeddedBroker``: an amqtt MQTT 3.1.1 broker in its own thread and event loop.

For tests and first runs (``sig-bridge`` starts one when no broker is configured)::

    with EmbeddedBroker("127.0.0.1", 0) as broker:
        carrier.connect(broker.host, broker.port)

amqtt 0.12.1 speaks MQTT 3.1.1 only (sig's carriers fall back to it by themselves),
keeps nothing on disk and runs no ``$SYS`` publisher here: its only plugin is the
anonymous-authentication one. Known amqtt quirks (retained messages of other clients'
subscriptions pushed on connect, QoS 0 upgraded to a subscription's QoS, no persistent
sessions) are listed in MQTT-NOTES.md §4; tests on it assert broker-agnostic things.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import threading
from types import TracebackType
from typing import Any

from sig import MissingExtraError, StateError

__all__ = ["EmbeddedBroker"]

logger = logging.getLogger("sig.mqtt.broker")

#: how long :meth:`EmbeddedBroker.start` waits for the broker to listen, in seconds
START_TIMEOUT = 10.0
#: how long :meth:`EmbeddedBroker.stop` waits for amqtt's shutdown and then for its thread
STOP_TIMEOUT = 5.0


class EmbeddedBroker:
    """An amqtt MQTT 3.1.1 broker listening on ``host:port``, served by its own thread.

    Args:
        host: the address to bind (loopback by default; IPv6 literals without brackets;
            ``""`` or ``0.0.0.0`` for every IPv4 interface). A name binds its first address.
        port: the TCP port; 0 picks a free one, see :attr:`port` after :meth:`start`.
        allow_anonymous: accept clients without a user name. When false, a client must send
            a user name (any password is accepted: this is not access control).

    :meth:`start` returns ``self``; :meth:`stop` is idempotent; both are bounded in time.
    It is also a context manager. A stopped broker can be started again (on the same port
    when it was given, else on a new free one).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, allow_anonymous: bool = True) -> None:
        self.host = host
        self.port = port
        self.allow_anonymous = allow_anonymous
        self._requested_port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._broker: Any = None  # amqtt.broker.Broker (amqtt has no type information)
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._connections: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def __repr__(self) -> str:
        return "<EmbeddedBroker %s%s>" % (self.url, "" if self.is_running else " stopped")

    @property
    def url(self) -> str:
        """``mqtt://host:port`` (an IPv6 host in brackets)."""
        host = "[%s]" % self.host if ":" in self.host else self.host
        return "mqtt://%s:%d" % (host, self.port)

    @property
    def is_running(self) -> bool:
        """Whether it has started and not stopped."""
        return self._thread is not None and self._thread.is_alive() and self._broker is not None

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> EmbeddedBroker:
        """Start serving (no-op when running); return ``self`` once it accepts connections.

        Raises:
            OSError: the address cannot be bound (the port is busy, the address is not
                local...); the message names ``host:port``.
            sig.StateError: amqtt failed otherwise, or did not start within
                :data:`START_TIMEOUT` seconds (also a ``RuntimeError``).
            sig.MissingExtraError: amqtt is not installed (``sig[broker]``).
        """
        if self._thread is not None:
            if self._thread.is_alive():
                return self
            self._thread = None
        try:
            import amqtt  # noqa: F401 (imported again, for real, in the broker's thread)
        except ImportError:
            raise MissingExtraError("the embedded MQTT broker needs amqtt: pip install 'sig[broker]'") from None
        self.port = self._requested_port
        self._ready.clear()
        self._error = None
        self._broker = None
        thread = threading.Thread(target=self._run, name="sig-mqtt-broker %s:%d" % (self.host, self.port),
                                  daemon=True)
        self._thread = thread
        thread.start()
        if not self._ready.wait(START_TIMEOUT):
            self.stop()
            raise StateError("the embedded MQTT broker on %s:%d did not start within %.0f s"
                               % (self.host, self.port, START_TIMEOUT))
        if self._error is not None:
            thread.join(STOP_TIMEOUT)
            self._thread = None
            self._loop = None
            raise self._start_error(self._error)
        logger.info("embedded MQTT broker listening on %s", self.url)
        return self

    def _start_error(self, error: BaseException) -> Exception:
        """The exception :meth:`start` raises for what amqtt raised."""
        cause: BaseException | None = error
        while cause is not None and not isinstance(cause, OSError):
            cause = cause.__cause__ or cause.__context__
        where = "%s:%d" % (self.host, self.port)
        if isinstance(cause, OSError):
            code = cause.errno or errno.EADDRINUSE
            reason = os.strerror(code) if cause.errno else (cause.strerror or str(cause))
            return OSError(code, "the embedded MQTT broker cannot listen on %s: %s" % (where, reason))
        return StateError("the embedded MQTT broker on %s failed to start: %s" % (where, error))

    def stop(self) -> None:
        """Stop serving and end the thread (idempotent; about 2 x :data:`STOP_TIMEOUT` s at most).

        Connected clients are disconnected.
        """
        loop, thread, broker = self._loop, self._thread, self._broker
        if thread is None:
            return
        if loop is not None and not loop.is_closed():
            if broker is not None:
                try:
                    asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(STOP_TIMEOUT)
                except Exception as exc:
                    logger.debug("embedded MQTT broker shutdown: %r", exc)
            try:
                loop.call_soon_threadsafe(loop.stop)
            except RuntimeError:  # closed meanwhile
                pass
        thread.join(STOP_TIMEOUT)
        if thread.is_alive():
            logger.warning("the embedded MQTT broker's thread did not end within %.0f s", STOP_TIMEOUT)
        else:
            logger.info("embedded MQTT broker on %s stopped", self.url)
        self._thread = None
        self._loop = None
        self._broker = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- the broker's thread ------------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.SelectorEventLoop()  # add_reader() (Windows' default Proactor loop has none)
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            try:
                loop.run_until_complete(self._start())
            except BaseException as exc:  # reported by start()
                self._error = exc
                return
            finally:
                self._ready.set()
            loop.run_forever()
        finally:
            self._close_loop(loop)
            asyncio.set_event_loop(None)

    @staticmethod
    def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
        """Cancel what amqtt left running and close client transports, so nothing leaks."""
        try:
            tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            transports = getattr(loop, "_transports", {})  # selector loops: fd -> transport
            for transport in list(transports.values()):
                if transport is not None and not transport.is_closing():
                    transport.close()
            loop.run_until_complete(asyncio.sleep(0))
            loop.run_until_complete(loop.shutdown_asyncgens())
        except Exception as exc:
            logger.debug("embedded MQTT broker loop cleanup: %r", exc)
        finally:
            loop.close()

    async def _start(self) -> None:
        from amqtt.broker import Broker

        config = {
            # "external": amqtt binds nothing; our own listener below hands it each connection
            # (so the bound port is known without amqtt's private attributes, bind errors are
            # plain OSErrors, and every connection is closed however amqtt ends with it).
            "listeners": {"default": {"type": "external"}},
            # This replaces amqtt's default plugin set (event and packet loggers, and a $SYS
            # publisher every 20 s): authentication only.
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": self.allow_anonymous}},
        }
        listener = self._listen()
        try:
            broker = Broker(config)  # must be made inside the running loop (it calls get_running_loop)
            await broker.start()
        except BaseException:
            listener.close()
            raise
        self._listener = listener
        self._broker = broker
        self.port = int(listener.getsockname()[1])
        asyncio.get_running_loop().add_reader(listener.fileno(), self._accept, listener)

    def _listen(self) -> socket.socket:
        """Bind one listening socket to the first address of ``host:port``."""
        infos = socket.getaddrinfo(self.host or "0.0.0.0", self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            if os.name == "posix":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio's servers do
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(128)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    def _accept(self, listener: socket.socket) -> None:
        """Accept the pending connections (called by the loop when the listener is readable).

        Our own accept rather than asyncio.start_server, whose close() can leak a socket
        accepted at that moment (Python 3.11), and rather than loop.sock_accept, whose
        cancellation can lose one: here each accepted socket is owned at once.
        """
        loop = asyncio.get_running_loop()
        for _ in range(64):
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. out of file descriptors: keep serving the others
                logger.warning("embedded MQTT broker cannot accept a connection: %s", exc)
                return
            conn.setblocking(False)
            self._sockets.add(conn)
            task = loop.create_task(self._serve(conn))
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)

    async def _serve(self, conn: socket.socket) -> None:
        """One client connection, for its whole life."""
        from amqtt.adapters import StreamReaderAdapter, StreamWriterAdapter

        try:
            reader, writer = await asyncio.open_connection(sock=conn)
        except BaseException:
            self._sockets.discard(conn)
            conn.close()
            raise
        self._sockets.discard(conn)  # the transport owns it now
        self._writers.add(writer)
        try:
            broker = self._broker
            if broker is not None:
                await broker.external_connected(StreamReaderAdapter(reader), StreamWriterAdapter(writer), "default")
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # amqtt logs its own errors; a connection never brings the broker down
            logger.debug("embedded MQTT broker connection ended: %r", exc)
        finally:
            self._writers.discard(writer)
            writer.close()  # amqtt leaves some connections open (e.g. one that sent no CONNECT)
            try:
                await writer.wait_closed()
            except (OSError, asyncio.CancelledError):
                pass

    async def _shutdown(self) -> None:
        """Stop accepting, stop amqtt, then close the connections it left."""
        listener, broker = self._listener, self._broker
        self._listener = None
        if listener is not None:
            asyncio.get_running_loop().remove_reader(listener.fileno())
            listener.close()
        if broker is not None:
            try:
                await broker.shutdown()
            except Exception as exc:  # a broker that is half-down still has to let go
                logger.debug("embedded MQTT broker shutdown: %r", exc)
        for writer in list(self._writers):
            writer.close()
        connections = list(self._connections)
        for task in connections:
            task.cancel()
        await asyncio.gather(*connections, return_exceptions=True)
        for conn in list(self._sockets):  # accepted, but their task was cancelled before it began
            conn.close()
        self._sockets.clear()
