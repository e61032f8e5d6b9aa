"""Which ``Host`` and ``Origin`` headers ``sig web`` answers.

The documented state-changing endpoints are GETs, so a page on another site
could trigger them from the user's browser (CSRF), or reach a server bound
to 127.0.0.1 through a name it controls (DNS rebinding). Both send a
``Host`` or an ``Origin`` that is not this server's own address: refuse them.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from sig import InvalidArgumentError

__all__ = ["HostGuard"]

_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_WILDCARDS = frozenset({"", "0.0.0.0", "::"})


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _split(netloc: str, default_port: int) -> tuple[str, int] | None:
    """Split ``host[:port]`` / ``[v6][:port]``; None when it does not parse."""
    try:
        parts = urlsplit("//" + netloc)
        port = parts.port
    except ValueError:
        return None
    if parts.hostname is None or parts.username is not None or parts.path or parts.query:
        return None
    return parts.hostname.rstrip(".").lower(), (default_port if port is None else port)


class HostGuard:
    """Tell whether a request's ``Host`` and ``Origin`` name this server.

    Args:
        host: the address the server is bound to.
        port: the port it listens on.
        allow: more host names (``name`` or ``name:port``) to accept, e.g. for a reverse proxy.

    Accepted names: the bound address; ``localhost``, ``127.0.0.1`` and ``[::1]``
    when bound to a loopback or wildcard address; with a wildcard bind, also any
    IP address (a name is what DNS rebinding needs) and this machine's names.
    """

    def __init__(self, host: str, port: int, allow: Iterable[str] = ()) -> None:
        self.port = port
        bound = host.strip("[]").lower()
        names = {bound}
        self.any_ip = bound in _WILDCARDS
        if self.any_ip or (_is_ip(bound) and ipaddress.ip_address(bound).is_loopback) or bound == "localhost":
            names |= _LOOPBACK_NAMES
        if self.any_ip:
            names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
        self.names = frozenset(names)
        self.extra: set[tuple[str, int | None]] = set()
        for item in allow:
            split = _split(item, -1)
            if split is None:
                raise InvalidArgumentError("bad host name to allow: %r" % item)
            name, extra_port = split
            self.extra.add((name, None if extra_port == -1 else extra_port))

    def _allowed(self, name: str, port: int) -> bool:
        if (name, port) in self.extra or (name, None) in self.extra:
            return True
        if port != self.port:
            return False
        return name in self.names or (self.any_ip and _is_ip(name))

    def host_ok(self, header: str | None) -> bool:
        """Tell whether a ``Host`` header names this server (a missing one does not)."""
        if not header:
            return False
        split = _split(header.strip(), 80)
        return split is not None and self._allowed(*split)

    def origin_ok(self, header: str | None) -> bool:
        """Tell whether an ``Origin`` header is this server's own pages (no header: not from a browser page)."""
        if header is None:
            return True
        try:
            parts = urlsplit(header.strip())
        except ValueError:
            return False
        if parts.scheme not in ("http", "https") or parts.path not in ("", "/"):
            return False
        split = _split(parts.netloc, 443 if parts.scheme == "https" else 80)
        return split is not None and self._allowed(*split)
