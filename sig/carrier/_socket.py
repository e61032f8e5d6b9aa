"""A connected socket as a :class:`~sig._connection.Stream`."""

from __future__ import annotations

import socket
import ssl

__all__ = ["SocketStream", "tune"]


def tune(sock: socket.socket) -> None:
    """Set TCP_NODELAY (one message per segment) and keepalive (spot dead 0.7.3 peers)."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3)):
        option = getattr(socket, name, None)
        if option is not None:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)


class SocketStream:
    """Wraps a connected (possibly TLS) socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def recv(self, size: int) -> bytes:
        """Receive up to ``size`` bytes; ``b""`` when the peer closed."""
        try:
            return self.sock.recv(size)
        except ssl.SSLZeroReturnError:
            return b""

    def sendall(self, data: bytes) -> None:
        """Send all of ``data``."""
        self.sock.sendall(data)

    def close(self) -> None:
        """Shut the socket down (waking a blocked ``recv``) and close it."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
