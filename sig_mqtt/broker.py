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
import threading
from types import TracebackType
from typing import Any

__all__ = ["EmbeddedBroker"]

logger = logging.getLogger(__name__)

#: how long :meth:`EmbeddedBroker.start` waits for the broker to listen, in seconds
START_TIMEOUT = 10.0
#: how long :meth:`EmbeddedBroker.stop` waits for amqtt's shutdown and then for its thread
STOP_TIMEOUT = 5.0


class _DropStartupFailure(logging.Filter):
    """Drops amqtt's "Broker startup failed" traceback logged on one thread: start() raises
    a clear error instead."""

    def __init__(self, thread_id: int | None) -> None:
        super().__init__()
        self.thread_id = thread_id

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.thread == self.thread_id and record.msg == "Broker startup failed")


class EmbeddedBroker:
    """An amqtt MQTT 3.1.1 broker listening on ``host:port``, served by its own thread.

    Args:
        host: the IP address to bind (loopback by default; IPv6 literals without brackets).
            With port 0, use one address, not a name or ``0.0.0.0`` that binds several
            sockets (each would get its own port; :attr:`port` reports the first).
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
            RuntimeError: amqtt failed otherwise, or did not start within
                :data:`START_TIMEOUT` seconds.
        """
        if self._thread is not None:
            if self._thread.is_alive():
                return self
            self._thread = None
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
            raise RuntimeError("the embedded MQTT broker on %s:%d did not start within %.0f s"
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
        return RuntimeError("the embedded MQTT broker on %s failed to start: %s" % (where, error))

    def stop(self) -> None:
        """Stop serving and end the thread (idempotent; about 2 x :data:`STOP_TIMEOUT` s at most).

        Connected clients are disconnected (without their Will: amqtt closes them cleanly).
        """
        loop, thread, broker = self._loop, self._thread, self._broker
        if thread is None:
            return
        if loop is not None and not loop.is_closed():
            if broker is not None:
                try:
                    asyncio.run_coroutine_threadsafe(broker.shutdown(), loop).result(STOP_TIMEOUT)
                except Exception as exc:  # a broker that is half-down still has to let go
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
        loop = asyncio.new_event_loop()
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
            "listeners": {"default": {"type": "tcp", "bind": "%s:%d" % (self.host, self.port)}},
            # This replaces amqtt's default plugin set (event and packet loggers, and a $SYS
            # publisher every 20 s): authentication only.
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": self.allow_anonymous}},
        }
        broker = Broker(config)  # must be made inside the running loop (it calls get_running_loop)
        quiet = _DropStartupFailure(threading.get_ident())
        amqtt_logger = logging.getLogger("amqtt.broker")
        amqtt_logger.addFilter(quiet)
        try:
            await broker.start()
        finally:
            amqtt_logger.removeFilter(quiet)
        self._broker = broker
        # amqtt has no public API for the bound port.
        server = broker._servers["default"].instance
        self.port = int(server.sockets[0].getsockname()[1])
