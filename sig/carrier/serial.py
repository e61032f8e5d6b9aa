"""Serial carriers: a :class:`~sig.ServerRouter` and one :class:`~sig.ClientRouter` on a serial line.

    # one end of the line (e.g. the SBC)
    line = CarrierSerialServer("/dev/ttyS0", 115200)
    router = sig.ServerRouter(line)
    line.start()

    # the other end
    serial_client = CarrierSerialClient()
    client = sig.ClientRouter(serial_client)
    serial_client.connect("/dev/ttyUSB0", 115200)

The wire is the TCP one (newline-framed JSON, handshake, pipelining). A port
may also be a pyserial URL (``socket://host:port``, ``rfc2217://...``,
``loop://``). Needs pyserial: ``pip install 'sig[serial]'``.

A serial line has no connection to open or close, so two sig-only frames,
pings without an ``id`` (that any sig peer ignores), stand for what TCP
tells by itself: ``{"method": "ping", "params": {"line": "bye"}}`` from a
client that disconnects cleanly, and ``{"method": "ping", "params": {"line":
"reconnect"}}`` from a server (e.g. restarted) that hears a client it holds no
session of. Writes to a serial line never fail, so silence is the only sign of
a vanished peer: each side pings a sig peer it has heard nothing from for
``ping_interval`` (even while it keeps sending) and drops it after twice that.
A new client on the line starts a new session with its ``get_version``, and
the server serves the line again, for the next client, whenever a session ends.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from .._carrier import ClientId
from .._connection import Connection
from .._errors import CarrierError, InvalidArgumentError
from ._serialport import SerialStream, close_port, open_port, pyserial
from ._stream import StreamClientCarrier, StreamServerCarrier

__all__ = ["CarrierSerialServer", "CarrierSerialClient", "SerialStream"]

logger = logging.getLogger("sig.carrier.serial")

_BYE = {"method": "ping", "params": {"line": "bye"}}
_RECONNECT = {"method": "ping", "params": {"line": "reconnect"}}
_PING_ID = "line"  # the id of the watchdog's pings (a string: never one of the connection's own ids)
_PING = {"method": "ping", "params": {}, "id": _PING_ID}


class _LineConnection(Connection):
    """A connection over a serial line: line-control pings and a watchdog.

    The watchdog pings a sig peer that was silent for ``ping_interval`` (even
    while this side keeps sending, when the connection's own ping would wait)
    and closes the connection after twice that: writes to a serial line never
    fail, so silence is the only sign of a vanished peer. On a server
    (``nudge``) it also asks a client that talks before any ``get_version``
    (a client of an earlier session) to reconnect.
    """

    greeted = False  # a get_version arrived (reader thread)
    nudged = False
    sessions = 0  # get_version calls handled (dispatcher thread)

    @property
    def nudge(self) -> bool:
        """A server's connection (one that does not block when full) nudges stray clients."""
        return not self.block_when_full

    def start(self) -> None:
        """Start the connection's threads and its watchdog."""
        super().start()
        if self.ping_interval > 0:
            threading.Thread(target=self._watch, name="sig-%s-watch" % self.name, daemon=True).start()

    def _watch(self) -> None:
        interval, pinged = self.ping_interval, 0.0
        stream: SerialStream = self.stream  # type: ignore[assignment]
        while not self.closed.wait(interval / 4):
            if "ping" not in self.capabilities:
                continue  # a 0.7.3 peer cannot answer
            now = time.monotonic()
            silent = now - stream.last_rx
            if silent >= 2 * interval:
                self.close("peer vanished: nothing heard for %.1f s" % silent)
            elif silent >= interval and now - pinged >= interval:
                pinged = now
                self.send_reply(_PING)  # ahead of what is queued

    def _on_frames(self, frames: list[Any]) -> None:
        for frame in frames:  # one at a time: line control acts between frames
            if self._screen(frame):
                super()._on_frames([frame])

    def _screen(self, frame: Any) -> bool:
        """Act on line control; return whether the frame is for the connection too."""
        if isinstance(frame, dict):
            method = frame.get("method")
            params = frame.get("params")
            line = params.get("line") if method == "ping" and isinstance(params, dict) else None
            if line in ("bye", "reconnect") and "id" not in frame:
                self.close("the peer left the line" if line == "bye" else "the server asked to reconnect")
                return False
            if frame.get("id") == _PING_ID and method is None:
                return False  # the answer to the watchdog
            if method == "get_version":
                self.greeted = True
            elif self.nudge and not self.greeted and not self.nudged:
                self.nudged = True
                logger.info("[SERIAL_SRV] [%s] a client of an earlier session talks: asking it to reconnect",
                            self.name)
                self.send_reply(_RECONNECT)  # a notification, ahead of what is queued
        return True


class CarrierSerialServer(StreamServerCarrier):
    """Serve the :class:`~sig.ClientRouter` at the other end of a serial line.

    Args:
        port: the device (``/dev/ttyS0``, ``COM3``) or pyserial URL; may be given to :meth:`start`.
        baudrate: bits per second.
        serial_options: more ``serial.Serial`` settings (``parity``, ``rtscts`` ...).
        reopen_min, reopen_max: backoff, in seconds, while the port cannot be opened again
            (e.g. a USB adapter unplugged).
        **settings: those of the TCP carriers (``max_frame``, ``ping_interval``, ``call_timeout`` ...).
    """

    connection_class = _LineConnection

    def __init__(self, port: str | None = None, baudrate: int = 115200, serial_options: dict[str, Any] | None = None,
                 reopen_min: float = 0.1, reopen_max: float = 2.0, **settings: Any) -> None:
        pyserial()
        super().__init__(**settings)
        self.port = port
        self.baudrate = baudrate
        self.serial_options = dict(serial_options or {})
        self.reopen_min = reopen_min
        self.reopen_max = reopen_max
        self._stopping = threading.Event()
        self._serving = threading.Lock()  # no session starts while stop() closes them
        self._thread: threading.Thread | None = None

    def start(self, port: str | None = None, baudrate: int | None = None) -> None:
        """Open the port and serve the line until :meth:`stop`.

        Raises:
            CarrierError: the port cannot be opened, or the server runs already.
            ValueError: no port given.
        """
        if self._thread is not None:
            raise CarrierError("server already serving %s" % self.port)
        self.port = port if port is not None else self.port
        self.baudrate = baudrate if baudrate is not None else self.baudrate
        if self.port is None:
            raise InvalidArgumentError("no serial port given")
        logger.info("[SERIAL_SRV] Opening %s at %s baud", self.port, self.baudrate)
        try:
            port = open_port(self.port, self.baudrate, self.serial_options)
        except OSError as exc:
            raise CarrierError("cannot open %s: %s" % (self.port, exc)) from exc
        self._stopping.clear()
        self._thread = threading.Thread(target=self._line_loop, args=(port,), name="sig-serial-line", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Close the line (the client's senders disconnect) and stop serving it."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        logger.info("[SERIAL_SRV] Stopping server on %s", self.port)
        with self._serving:
            self._stopping.set()
        self._close_all()
        thread.join(5.0)

    def handleRX(self, clientid: ClientId, message: dict[str, Any]) -> dict[str, Any] | None:
        """Handle a message; a second ``get_version`` on the line is a new client: drop the old one's state."""
        if message.get("method") == "get_version":
            conn = self._connections.get(clientid)
            if isinstance(conn, _LineConnection):
                conn.sessions += 1
                if conn.sessions > 1 or conn.nudged:  # what was registered before belongs to another client
                    logger.info("[SERIAL_SRV] [%s] a new client on the line: dropping the previous one", clientid)
                    self.handle_client_disconnected(clientid)
                    self.handle_client_connected(clientid)
        return super().handleRX(clientid, message)

    def _line_loop(self, port: Any) -> None:
        """Serve the line, one session after another, until :meth:`stop`."""
        delay = self.reopen_min
        while not self._stopping.is_set():
            if port is None:
                try:
                    port = open_port(str(self.port), self.baudrate, self.serial_options)
                except OSError as exc:
                    logger.warning("[SERIAL_SRV] cannot open %s again: %s (retrying in %.1f s)", self.port, exc, delay)
                    self._stopping.wait(delay)
                    delay = min(delay * 2, self.reopen_max)
                    continue
                delay = self.reopen_min
            stream = SerialStream(port, owns_port=False)
            with self._serving:
                if self._stopping.is_set():
                    break
                conn = self._serve(stream, str(self.port))
            conn.closed.wait()
            conn.join(self.call_timeout)
            if stream.failed or not stream.idle(2.0):
                logger.info("[SERIAL_SRV] %s failed: opening it again", self.port)
                close_port(port)
                port = None
            elif not self._stopping.is_set():
                logger.info("[SERIAL_SRV] %s is free: serving it again", self.port)
        if port is not None:
            close_port(port)


class CarrierSerialClient(StreamClientCarrier):
    """Connect a :class:`~sig.ClientRouter` to the server at the other end of a serial line.

    Args:
        serial_options: more ``serial.Serial`` settings (``parity``, ``rtscts`` ...).
        handshake_timeout: seconds to wait for the server's answer to ``get_version``.
        **settings: those of the TCP client (``reconnect_min``, ``reconnect_max``,
            ``ping_interval``, ``call_timeout`` ...).
    """

    connection_class = _LineConnection

    def __init__(self, serial_options: dict[str, Any] | None = None, handshake_timeout: float = 2.0,
                 **settings: Any) -> None:
        pyserial()
        super().__init__(handshake_timeout=handshake_timeout, **settings)
        self.serial_options = dict(serial_options or {})
        self.port: str | None = None
        self.baudrate = 115200
        self.flush_timeout = 10.0

    def connect(self, port: str, baudrate: int = 115200, auto_reconnect: bool = True) -> bool:
        """Open ``port`` (a device or pyserial URL) and shake hands with the server there.

        Returns:
            True when connected; False at once when the port cannot be opened, or
            after ``handshake_timeout`` when nobody answers on the line (with
            ``auto_reconnect`` the carrier keeps trying in the background, with
            backoff, and calls ``on_connected`` when it succeeds).
        """
        self.port, self.baudrate = port, baudrate
        logger.info("[SERIAL_CL] Connecting to %s at %s baud", port, baudrate)
        return self._start(auto_reconnect)

    def disconnect(self) -> None:
        """Send what is queued, tell the server, close the port and stop reconnecting."""
        conn = self._conn
        if (conn is not None and "ping" in conn.capabilities and not conn.closed.is_set()
                and conn.drain(self.flush_timeout)):
            conn.send_reply(_BYE)  # after everything else
        logger.info("[SERIAL_CL] Disconnecting from %s", self.port)
        self._stop(self.flush_timeout)

    def _open(self) -> tuple[SerialStream, str]:
        assert self.port is not None
        stream = SerialStream.open(self.port, self.baudrate, self.serial_options)
        try:
            stream.sendall(b"\n")  # ends whatever half frame an earlier client left in the server
        except OSError:
            stream.close()
            raise
        return stream, str(self.port)
