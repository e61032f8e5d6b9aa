"""What a connection needs from a byte stream, and how a caller's thread writes to one without blocking."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["Stream", "nonblocking_send"]


class Stream(Protocol):
    """What a connection needs from a byte stream (a socket, a serial port ...)."""

    def recv(self, size: int) -> bytes:
        """Block until some bytes arrive; ``b""`` at end of stream."""

    def sendall(self, data: bytes) -> None:
        """Send every byte or raise :class:`OSError`."""

    def close(self) -> None:
        """Close the stream; a ``recv`` blocked in another thread must return."""


def nonblocking_send(stream: Any) -> Callable[[bytes], int] | None:
    """Return ``send(data) -> bytes taken`` that never blocks, if ``stream`` wraps a plain socket."""
    sock = getattr(stream, "sock", None)
    flag = getattr(socket, "MSG_DONTWAIT", 0)
    if not flag or not isinstance(sock, socket.socket) or isinstance(sock, ssl.SSLSocket):
        return None

    def send(data: bytes) -> int:
        try:
            return sock.send(data, flag)
        except (BlockingIOError, InterruptedError):
            return 0

    return send
