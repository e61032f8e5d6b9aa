"""``EmbeddedBroker``: an amqtt MQTT 3.1.1 broker in its own thread and event loop.

For tests and first runs (``sig-bridge`` starts one when no broker answers):

    with EmbeddedBroker("127.0.0.1", 0) as broker:
        carrier.connect("127.0.0.1", broker.port)

amqtt 0.12.1 speaks MQTT 3.1.1 only (sig's carriers fall back to it by
themselves) and keeps nothing on disk.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from types import TracebackType
from typing import Any

__all__ = ["EmbeddedBroker"]

logger = logging.getLogger("sig_mqtt.broker")

_START_TIMEOUT = 10.0


class EmbeddedBroker:
    """An amqtt broker on ``host:port`` (port 0: a free one, see :attr:`port`).

    Args:
        host: the address to bind (loopback by default).
        port: the TCP port; 0 picks a free one.
        allow_anonymous: accept clients without credentials.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, allow_anonymous: bool = True) -> None:
        self.host = host
        self.port = port
        self.allow_anonymous = allow_anonymous
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._broker: Any = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        """``mqtt://host:port``."""
        return "mqtt://%s:%d" % (self.host, self.port)

    def start(self) -> EmbeddedBroker:
        """Start serving; return ``self``.

        Raises:
            OSError: the address cannot be bound (e.g. the port is busy).
            RuntimeError: the broker did not start in time.
        """
        if self._thread is not None:
            return self
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=self._run, name="sig-mqtt-broker", daemon=True)
        self._thread.start()
        if not self._ready.wait(_START_TIMEOUT):
            raise RuntimeError("the embedded MQTT broker did not start in %.0f s" % _START_TIMEOUT)
        if self._error is not None:
            self._thread.join(2.0)
            self._thread = None
            error = self._error
            cause = error.__cause__ or error
            if isinstance(cause, OSError):
                reason = os.strerror(cause.errno) if cause.errno else str(cause)
                raise OSError(cause.errno, "cannot listen on %s:%s: %s" % (self.host, self.port, reason.lower()))
            raise RuntimeError("the embedded MQTT broker failed to start: %s" % error)
        logger.info("embedded MQTT broker listening on %s:%s", self.host, self.port)
        return self

    def stop(self) -> None:
        """Stop serving (idempotent; waits a few seconds at most)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if self._broker is not None and loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(self._broker.shutdown(), loop).result(5.0)
            except Exception as exc:  # a broker that is half-down still has to let go
                logger.debug("embedded broker shutdown: %s", exc)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(5.0)
        self._thread = None
        self._loop = None
        self._broker = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # -- the broker's thread ------------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._start())
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            self._close_loop(loop)

    @staticmethod
    def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
        """Cancel what amqtt left running and close client transports, so nothing leaks."""
        tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        transports = getattr(loop, "_transports", {})
        for transport in list(transports.values()):
            if transport is not None and not transport.is_closing():
                transport.close()
        loop.run_until_complete(asyncio.sleep(0))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    async def _start(self) -> None:
        from amqtt.broker import Broker

        config = {
            "listeners": {"default": {"type": "tcp", "bind": "%s:%d" % (self.host, self.port)}},
            # Only authentication: no $SYS publisher, no packet loggers.
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": self.allow_anonymous}},
        }
        broker = Broker(config)  # must be made inside the running loop
        amqtt_logger = logging.getLogger("amqtt.broker")
        amqtt_logger.disabled = True  # start() logs a traceback for a busy port; we raise a clear error
        try:
            await broker.start()
        finally:
            amqtt_logger.disabled = False
        self._broker = broker
        # amqtt has no public API for the bound port.
        server = broker._servers["default"].instance
        self.port = server.sockets[0].getsockname()[1]
