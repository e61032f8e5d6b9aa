"""A serial port (pyserial) as a :class:`~sig._connection.Stream`, for the serial carriers."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from .._errors import MissingExtraError

__all__ = ["SerialStream", "open_port", "close_port", "pyserial"]

logger = logging.getLogger("sig.carrier.serial")


def pyserial() -> Any:
    """Import pyserial, or say how to install it."""
    try:
        import serial  # type: ignore[import-untyped, unused-ignore]
    except ImportError as exc:
        raise MissingExtraError("the serial carrier needs pyserial: pip install 'sig[serial]'") from exc
    if not hasattr(serial, "serial_for_url"):
        raise MissingExtraError("the module 'serial' found is not pyserial: pip install 'sig[serial]'")
    return serial


def open_port(url: str, baudrate: int, options: dict[str, Any] | None = None, poll_interval: float = 0.1) -> Any:
    """Open a serial port by name or pyserial URL, dropping stale input (raises ``OSError``)."""
    port = pyserial().serial_for_url(url, baudrate=baudrate, timeout=poll_interval, write_timeout=None,
                                      **(options or {}))
    try:
        port.reset_input_buffer()  # bytes of an earlier session
    except Exception:
        port.close()
        raise
    return port


class SerialStream:
    """A serial port (a ``serial.Serial`` or what ``serial_for_url`` opens) as a byte stream.

    ``recv`` polls with the port's read timeout, so :meth:`close` from another
    thread makes it return ``b""`` within ``poll_interval``. With
    ``owns_port=False`` closing the stream leaves the port open for the next one
    (a server serving its line again), unless the port failed (:attr:`failed`).
    """

    def __init__(self, port: Any, poll_interval: float = 0.1, owns_port: bool = True) -> None:
        self.port = port
        self.poll_interval = poll_interval
        self.owns_port = owns_port
        self.failed = False  # the port raised, or was interrupted mid-write: open it again
        self.last_rx = time.monotonic()  # when bytes last arrived
        self._native = isinstance(port, pyserial().Serial)  # its in_waiting is exact
        self._closed = threading.Event()
        self._read_lock = threading.RLock()
        self._write_lock = threading.RLock()

    @classmethod
    def open(cls, url: str, baudrate: int, options: dict[str, Any] | None = None,
             poll_interval: float = 0.1) -> SerialStream:
        """Open a port (see :func:`open_port`) as a stream that owns it."""
        return cls(open_port(url, baudrate, options, poll_interval), poll_interval)

    def recv(self, size: int) -> bytes:
        """Wait for at least one byte; return what is there (up to ``size``); ``b""`` once closed."""
        while not self._closed.is_set():
            with self._read_lock:
                if self._closed.is_set():
                    break
                try:
                    data = self.port.read(1)
                    if data and size > 1:
                        data += self._read_more(size - 1)
                except Exception as exc:
                    if self._closed.is_set():
                        break
                    raise self._failure(exc) from exc
                if data:
                    self.last_rx = time.monotonic()
                    return data  # type: ignore[no-any-return]
        return b""

    def _read_more(self, size: int) -> bytes:
        if self._native:
            waiting = self.port.in_waiting
            return self.port.read(min(waiting, size)) if waiting else b""
        self.port.timeout = 0  # URL handlers: in_waiting is not a count; read what is there
        try:
            return self.port.read(size)  # type: ignore[no-any-return]
        finally:
            self.port.timeout = self.poll_interval

    def sendall(self, data: bytes) -> None:
        """Write all of ``data`` and wait until it is out (raises ``OSError``)."""
        with self._write_lock:
            if self._closed.is_set():
                raise OSError("serial port closed")
            try:
                written = self.port.write(data)
                if written is not None and written < len(data):
                    raise OSError("write interrupted after %d of %d bytes" % (written, len(data)))
                self.port.flush()
            except Exception as exc:
                if self._closed.is_set():
                    raise OSError("serial port closed") from exc
                raise self._failure(exc) from exc

    def _failure(self, exc: Exception) -> OSError:
        self.failed = True
        return OSError(str(exc) or type(exc).__name__)

    def close(self) -> None:
        """Stop reading and writing, waking a blocked ``recv`` or ``sendall`` (idempotent)."""
        if self._closed.is_set():
            return
        self._closed.set()
        _cancel(self.port, "cancel_read")  # at worst a stale cancel makes one read return early
        if self._write_lock.acquire(blocking=False):
            self._write_lock.release()
        else:  # a write is under way: interrupt it; the port's state is unsure afterwards
            self.failed = True
            _cancel(self.port, "cancel_write")
        if self.owns_port:
            self.idle(2.0)
            close_port(self.port)

    def idle(self, timeout: float) -> bool:
        """After :meth:`close`: wait until no read or write is under way; False on timeout."""
        if not self._read_lock.acquire(timeout=timeout):
            return False
        try:
            if not self._write_lock.acquire(timeout=timeout):
                return False
            self._write_lock.release()
            return True
        finally:
            self._read_lock.release()


def _cancel(port: Any, name: str) -> None:
    try:
        cancel = getattr(port, name, None)
        if cancel is not None:
            cancel()
    except Exception:
        pass


def close_port(port: Any) -> None:
    """Close a port, logging (not raising) what goes wrong."""
    try:
        port.close()
    except Exception as exc:
        logger.debug("closing %s: %s", getattr(port, "name", "port"), exc)
