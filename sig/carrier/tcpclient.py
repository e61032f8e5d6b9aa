"""``CarrierTCPClient``: the TCP (optionally TLS) carrier of a :class:`~sig.ClientRouter`.

    tcpclient = CarrierTCPClient()
    client = sig.ClientRouter(tcpclient)
    tcpclient.on_connected = register_on_connect
    tcpclient.connect("localhost", 3000)
"""

from __future__ import annotations

import logging
import socket
import ssl
from typing import Any

from .._connection import Stream
from ._socket import socket_stream, tune
from ._stream import StreamClientCarrier

__all__ = ["CarrierTCPClient"]

logger = logging.getLogger("sig.carrier.tcpclient")


class CarrierTCPClient(StreamClientCarrier):
    """Connect a :class:`~sig.ClientRouter` to a pysig server (sig or pysig 0.7.3) over TCP.

    Args:
        ssl_context: a client-side :class:`ssl.SSLContext` to speak TLS.
        connect_timeout: seconds to wait for the TCP (and TLS) connection.
        server_hostname: the name to check the server certificate against
            (default: the host given to :meth:`connect`).
        reconnect_min, reconnect_max: the auto-reconnect backoff, in seconds.
        username, password: credentials sent (RPC ``auth``) after the handshake of every
            (re)connection to a server that checks them; or
        token: a token sent instead of a username and password.

    A server that refuses the credentials makes :meth:`connect` return False with an
    :class:`~sig.AccessDeniedError` in :attr:`last_error` (and a log line without the secret).
    """

    def __init__(
        self,
        ssl_context: ssl.SSLContext | None = None,
        connect_timeout: float = 5.0,
        server_hostname: str | None = None,
        **settings: Any,
    ) -> None:
        super().__init__(**settings)
        self.ssl_context = ssl_context
        self.connect_timeout = connect_timeout
        self.server_hostname = server_hostname
        self.server_address: tuple[str, int] | None = None

    def connect(self, host: str, port: int, auto_reconnect: bool = True) -> bool:
        """Connect to ``host:port``.

        Returns:
            True when connected; False at once when the server cannot be reached
            (with ``auto_reconnect`` the carrier keeps trying in the background,
            with backoff, and calls ``on_connected`` when it succeeds).
        """
        self.server_address = (host, port)
        logger.info("[TCP_CL] Connecting to %s:%s", host, port)
        return self._start(auto_reconnect)

    def disconnect(self) -> None:
        """Send what is queued, then close the connection and stop reconnecting."""
        self._stop()

    def _target(self) -> str:
        host, port = self.server_address or ("?", 0)
        return "%s:%s" % (host, port)

    def _open(self) -> tuple[Stream, str]:
        assert self.server_address is not None
        host, port = self.server_address
        sock = socket.create_connection((host, port), timeout=self.connect_timeout)
        try:
            tune(sock)
            if self.ssl_context is not None:
                sock = self.ssl_context.wrap_socket(sock, server_hostname=self.server_hostname or host)
            sock.settimeout(None)
        except (OSError, ssl.SSLError):
            sock.close()
            raise
        return socket_stream(sock), "%s:%s" % (host, port)
