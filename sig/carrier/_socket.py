"""A connected socket as a :class:`~sig._connection.Stream`."""

from __future__ import annotations

import select
import socket
import ssl
import threading

__all__ = ["SocketStream", "TLSSocketStream", "socket_stream", "tune"]


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


class TLSSocketStream:
    """Wraps a TLS socket so that only one thread at a time touches its SSL state.

    OpenSSL does not allow one SSL object to be used by two threads at once, and a
    connection reads in one thread while it writes in another (TLS 1.3 session
    tickets arrive while the first message goes out). So the socket is non-blocking,
    every SSL call holds a lock, and the waiting (``select``) happens outside it.
    """

    #: Most seconds a waiting ``recv`` sleeps before it looks whether the stream was closed.
    POLL = 0.25

    def __init__(self, sock: ssl.SSLSocket) -> None:
        self.sock = sock
        sock.setblocking(False)
        self._lock = threading.Lock()
        self._closed = False

    def recv(self, size: int) -> bytes:
        """Receive up to ``size`` bytes; ``b""`` when the peer or this side closed."""
        while not self._closed:
            with self._lock:
                try:
                    return self.sock.recv(size)
                except ssl.SSLZeroReturnError:
                    return b""
                except (ssl.SSLWantReadError, BlockingIOError):
                    readable, writable = True, False
                except ssl.SSLWantWriteError:
                    readable, writable = False, True
            self._wait(readable, writable)
        return b""

    def sendall(self, data: bytes) -> None:
        """Send all of ``data`` (raises :class:`OSError` when the stream fails or closes)."""
        view = memoryview(data)
        while view:
            if self._closed:
                raise OSError("TLS stream closed")
            with self._lock:
                try:
                    view = view[self.sock.send(view) :]
                    continue
                except (ssl.SSLWantWriteError, BlockingIOError):
                    readable, writable = False, True
                except ssl.SSLWantReadError:
                    readable, writable = True, False
            self._wait(readable, writable)

    def _wait(self, readable: bool, writable: bool) -> None:
        try:
            select.select([self.sock] if readable else [], [self.sock] if writable else [], [], self.POLL)
        except (OSError, ValueError):  # closed under our feet
            self._closed = True

    def close(self) -> None:
        """Close the socket; a waiting ``recv`` returns within :attr:`POLL` seconds."""
        self._closed = True
        with self._lock:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.sock.close()


def socket_stream(sock: socket.socket) -> SocketStream | TLSSocketStream:
    """Return the stream for a connected socket, plain or TLS."""
    return TLSSocketStream(sock) if isinstance(sock, ssl.SSLSocket) else SocketStream(sock)
