"""MQTT URLs: ``mqtt[s]://[user[:pass]@]host[:port][/prefix]``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from sig import InvalidArgumentError

__all__ = ["BrokerURL", "parse_url", "read_password_file", "url_settings"]

PASSWORD_ENV = "SIG_MQTT_PASSWORD"


@dataclass(frozen=True)
class BrokerURL:
    """What an MQTT URL says. ``prefix`` is ``None`` when the URL has no path."""

    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None
    prefix: str | None = None

    def __str__(self) -> str:
        user = "" if self.username is None else self.username + ("@" if self.password is None else ":***@")
        path = "" if self.prefix is None else "/" + self.prefix
        return "%s://%s%s:%d%s" % ("mqtts" if self.tls else "mqtt", user, self.host, self.port, path)


def parse_url(url: str) -> BrokerURL:
    """Read an MQTT URL; the password may also come from ``$SIG_MQTT_PASSWORD``.

    Raises:
        ValueError: not an ``mqtt://`` / ``mqtts://`` URL, or a bad port.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise InvalidArgumentError("not an MQTT URL (mqtt://host:port or mqtts://...): %r" % (url,))
    tls = parts.scheme in ("mqtts", "ssl")
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError:
        raise InvalidArgumentError("bad port in MQTT URL %r" % (url,)) from None
    host = parts.hostname or "127.0.0.1"
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if password is None and username is not None:
        password = os.environ.get(PASSWORD_ENV)
    prefix = unquote(parts.path.strip("/")) or None
    return BrokerURL(host, port, tls, username, password, prefix)


def url_settings(url: str, settings: dict[str, Any]) -> tuple[dict[str, Any], tuple[str, int]]:
    """A carrier's settings from an MQTT URL (explicit ``settings`` win) and the broker's address."""
    parsed = parse_url(url)
    settings = dict(settings)
    settings.setdefault("username", parsed.username)
    settings.setdefault("password", parsed.password)
    if parsed.tls:
        settings.setdefault("tls", True)
    if parsed.prefix is not None:
        settings.setdefault("prefix", parsed.prefix)
    return settings, (parsed.host, parsed.port)


def read_password_file(path: str) -> str:
    """The first line of a password file, without its line end."""
    with open(path, encoding="utf-8") as file:
        return file.readline().rstrip("\r\n")
