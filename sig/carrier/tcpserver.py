"""``CarrierTCPServer``: the TCP (optionally TLS) carrier of a :class:`~sig.ServerRouter`.

    tcp_server = CarrierTCPServer()
    router = sig.ServerRouter(tcp_server)
    tcp_server.start("127.0.0.1", 3000)
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from typing import Any

from .._errors import CarrierError
from ._socket import socket_stream, tune
from ._stream import StreamServerCarrier

__all__ = ["CarrierTCPServer"]

logger = logging.getLogger("sig.carrier.tcpserver")


class CarrierTCPServer(StreamServerCarrier):
    """Serve pysig clients (sig and pysig 0.7.3 alike) over TCP.

    Args:
        ssl_context: a server-side :class:`ssl.SSLContext` to serve TLS.
        max_frame: largest frame accepted from a client (default 1 MiB).
        max_queue: most messages queued for one client; a client that stops
            reading past it is disconnected.
        ping_interval: idle seconds before pinging a sig client.
        call_timeout: seconds to wait for a client's reply.
    """

    def __init__(self, ssl_context: ssl.SSLContext | None = None, **settings: Any) -> None:
        super().__init__(**settings)
        self.ssl_context = ssl_context
        self.host: str | None = None
        self.port: int | None = None
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None

    def start(self, host: str = "127.0.0.1", port: int = 3000) -> None:
        """Listen on ``host:port`` (port 0: any free port, then read :attr:`port`).

        Raises:
            CarrierError: the address cannot be bound (e.g. the port is busy).
        """
        if self._listener is not None:
            raise CarrierError("server already listening on %s:%s" % (self.host, self.port))
        logger.info("[TCP_SRV] Starting to listen on %s:%s", host, port)
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
            family, _, _, _, address = infos[0]
            listener = socket.socket(family, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(address)
            listener.listen(128)
        except OSError as exc:
            raise CarrierError("cannot listen on %s:%s: %s" % (host, port, exc.strerror or exc)) from exc
        self._listener = listener
        self.host, self.port = listener.getsockname()[:2]
        self._accept_thread = threading.Thread(target=self._accept_loop, name="sig-tcp-accept", daemon=True)
        self._accept_thread.start()

    def stop(self) -> None:
        """Stop listening and disconnect every client (their senders disconnect)."""
        listener, self._listener = self._listener, None
        if listener is not None:
            logger.info("[TCP_SRV] Stopping server on %s:%s", self.host, self.port)
            try:
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()
        if self._accept_thread is not None:
            self._accept_thread.join(5.0)
            self._accept_thread = None
        self._close_all()

    def _accept_loop(self) -> None:
        listener = self._listener
        while listener is not None and self._listener is listener:
            try:
                sock, address = listener.accept()
            except OSError:
                break  # stopped
            threading.Thread(
                target=self._setup, args=(sock, "%s:%s" % address[:2]), name="sig-tcp-setup", daemon=True
            ).start()

    def _setup(self, sock: socket.socket, peer: str) -> None:
        try:
            tune(sock)
            if self.ssl_context is not None:
                sock.settimeout(10.0)
                sock = self.ssl_context.wrap_socket(sock, server_side=True)
                sock.settimeout(None)
        except (OSError, ssl.SSLError) as exc:
            logger.warning("[TCP_SRV] dropped %s: %s", peer, exc)
            sock.close()
            return
        self._serve(socket_stream(sock), peer)
