"""``LocalCarrier``: joins a ServerRouter and a ClientRouter in one process, for tests and demos.

    server_side, client_side = LocalCarrier(), LocalCarrier()
    server = sig.ServerRouter(server_side)
    client = sig.ClientRouter(client_side)
    client_side.connect(server_side)

Messages are handed over as dicts, on the calling thread; ``pack`` / ``unpack``
run on each one so that what crosses is exactly what JSON can carry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from .._carrier import Carrier, ClientId
from .._errors import CarrierError

__all__ = ["LocalCarrier"]

logger = logging.getLogger("sig.carrier.local")


class LocalCarrier(Carrier):
    """One end of an in-process link; :meth:`connect` joins it to the other end."""

    def __init__(self) -> None:
        super().__init__()
        self.connected_carrier: LocalCarrier | None = None
        self.on_connected: Callable[[], Any] | None = None
        self.on_disconnected: Callable[[], Any] | None = None
        self.clientid = "local-%x" % id(self)

    def connect(self, carrier: LocalCarrier) -> bool:
        """Join this end to ``carrier``; both routers hear that the other connected."""
        if self.connected_carrier is not None:
            return False
        self.connected_carrier, carrier.connected_carrier = carrier, self
        for end, peer in ((self, carrier), (carrier, self)):
            end.handle_client_connected(peer.clientid)
            if end.on_connected is not None:
                end.on_connected()
            end.handle_client_ready(peer.clientid)
        return True

    def disconnect(self) -> None:
        """Part the two ends; both routers hear that the other disconnected."""
        carrier = self.connected_carrier
        if carrier is None:
            return
        self.connected_carrier = carrier.connected_carrier = None
        for end, peer in ((self, carrier), (carrier, self)):
            end.handle_client_disconnected(peer.clientid)
            if end.on_disconnected is not None:
                end.on_disconnected()

    def isConnected(self) -> bool:
        """Tell whether the two ends are joined."""
        return self.connected_carrier is not None

    def RX(self, clientid: ClientId, data: Any) -> dict[str, Any] | None:
        """Receive packed data from the other end and return the reply."""
        message = self.unpack(data)
        if message is None:
            raise CarrierError("the other end sent data that does not unpack")
        return self.handleRX(clientid, message)

    def handleTX(self, clientid: ClientId, message: dict[str, Any]) -> dict[str, Any] | None:
        """Hand ``message`` to the other end and return its reply."""
        carrier = self.connected_carrier
        if carrier is None:
            raise CarrierError("local carrier is not connected")
        data = self.pack(message)
        if data is None:
            raise CarrierError("message does not pack: %.200r" % (message,))
        reply = carrier.RX(self.clientid, data)
        return None if reply is None else self.unpack(self.pack(reply))

    is_connected = isConnected
