"""Run the web event log: a :class:`WebLogger` over a connected ClientRouter, served by aiohttp."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Iterable

from aiohttp import web

from sig import CarrierError, ClientRouter, Ident, StateError

from ..options import format_address
from ._app import WebState, make_app
from ._eventlog import DEFAULT_LIMIT, EventLog
from ._guard import HostGuard
from ._subs import Subscriptions

__all__ = ["WebLogger", "DEFAULT_HTTP_PORT"]

logger = logging.getLogger("sig.web.serve")

#: The port ``sig web`` serves on by default (as the documented web_events_logger.py).
DEFAULT_HTTP_PORT = 8080


class WebLogger:
    """The documented web_events_logger: the last events of some subscriptions, on a web page and a REST API.

    Args:
        router: a connected :class:`~sig.ClientRouter` (reconnecting by itself is best).
        limit: how many events to keep (the documented "Queue limit", default 20).
        server: the sig server's address, shown in ``/config``.
        allow_hosts: more ``Host`` names to answer for (``name`` or ``name:port``), e.g. behind a reverse proxy.

    Raises:
        ValueError: a bad ``limit`` or host name.

    Example::

        weblog = WebLogger(router, limit=200)
        weblog.subscribe("keros", "ir")
        weblog.run("127.0.0.1", 8080)  # until Ctrl-C or SIGTERM
    """

    def __init__(self, router: ClientRouter, limit: int = DEFAULT_LIMIT, server: str = "",
                 allow_hosts: Iterable[str] = ()) -> None:
        self.router = router
        self.log = EventLog(limit)
        self.subscriptions = Subscriptions(router, self.log)
        self.state = WebState(self.log, self.subscriptions, server)
        self.allow_hosts = list(allow_hosts)
        HostGuard("127.0.0.1", 0, self.allow_hosts)  # check them now
        self.address: tuple[str, int] | None = None

    def subscribe(self, sender: Ident | None, event: Ident | None) -> None:
        """Subscribe to ``(sender, event)`` (``None`` = any); it blocks while the server answers."""
        self.subscriptions.add(sender, event)

    @property
    def url(self) -> str:
        """The page's address once serving (``http://HOST:PORT/``)."""
        if self.address is None:
            raise StateError("not serving yet")
        return "http://%s/" % format_address(*self.address)

    async def serve(self, host: str = "127.0.0.1", port: int = DEFAULT_HTTP_PORT, stop: asyncio.Event | None = None,
                    ready: Callable[[str], None] | None = None) -> None:
        """Serve on ``host``:``port`` (0 picks a free port) until ``stop`` is set; call ``ready(url)`` once up.

        Raises:
            CarrierError: cannot listen there.
        """
        runner = web.AppRunner(make_app(self.state), handle_signals=False, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            try:
                await site.start()
            except OSError as exc:
                raise CarrierError("cannot listen on %s: %s" % (format_address(host, port),
                                                                 exc.strerror or exc)) from None
            bound_port = int(runner.addresses[0][1])
            self.address = (host, bound_port)
            self.state.guard = HostGuard(host, bound_port, self.allow_hosts)
            self.state.http = format_address(host, bound_port)
            self.state.streams.start(asyncio.get_running_loop())
            logger.info("Serving the event log on %s", self.url)
            if ready is not None:
                ready(self.url)
            link = asyncio.ensure_future(self.state.streams.watch_link(self.router.carrier.isConnected))
            try:
                await (stop or asyncio.Event()).wait()
            finally:
                link.cancel()
        finally:
            await runner.cleanup()

    def run(self, host: str = "127.0.0.1", port: int = DEFAULT_HTTP_PORT,
            ready: Callable[[str], None] | None = None) -> None:
        """Serve until SIGINT or SIGTERM (call it from the main thread); see :meth:`serve`."""

        async def main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stop.set)
            await self.serve(host, port, stop, ready)

        asyncio.run(main())
