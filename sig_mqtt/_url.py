"""MQTT URLs: ``mqtt[s]://[user[:pass]@]host[:port][,host[:port]...][/prefix]``.

Several hosts are the members of a clustered broker: the node fails over among
them (see :mod:`._failover`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from sig import InvalidArgumentError

__all__ = ["BrokerURL", "join_urls", "parse_url", "read_password_file", "url_settings"]

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
    brokers: tuple[tuple[str, int], ...] = ()  # every host of the URL, the first being (host, port)

    def __str__(self) -> str:
        user = "" if self.username is None else self.username + ("@" if self.password is None else ":***@")
        path = "" if self.prefix is None else "/" + self.prefix
        hosts = ",".join(_hostport(*address) for address in self.brokers or ((self.host, self.port),))
        return "%s://%s%s%s" % ("mqtts" if self.tls else "mqtt", user, hosts, path)


def _hostport(host: str, port: int) -> str:
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


def _split_hosts(netloc: str, default_port: int, url: str) -> list[tuple[str, int]]:
    """``h1:1883,[::1]:1884,h3`` -> ``[("h1", 1883), ("::1", 1884), ("h3", default_port)]``."""
    brokers = []
    for item in netloc.rpartition("@")[2].split(","):
        try:
            parts = urlsplit("//" + item)
            port = parts.port or default_port
        except ValueError:
            raise InvalidArgumentError("bad port in MQTT URL %r" % (url,)) from None
        if item and not parts.hostname:
            raise InvalidArgumentError("bad host %r in MQTT URL %r" % (item, url))
        brokers.append((parts.hostname or "127.0.0.1", port))
    return brokers


def parse_url(url: str) -> BrokerURL:
    """Read an MQTT URL; the password may also come from ``$SIG_MQTT_PASSWORD``.

    Raises:
        ValueError: not an ``mqtt://`` / ``mqtts://`` URL, or a bad port.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise InvalidArgumentError("not an MQTT URL (mqtt://host:port or mqtts://...): %r" % (url,))
    tls = parts.scheme in ("mqtts", "ssl")
    brokers = _split_hosts(parts.netloc, 8883 if tls else 1883, url)
    host, port = brokers[0]
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if password is None and username is not None:
        password = os.environ.get(PASSWORD_ENV)
    prefix = unquote(parts.path.strip("/")) or None
    return BrokerURL(host, port, tls, username, password, prefix, tuple(brokers))


def url_settings(url: str, settings: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, int]]]:
    """A carrier's settings from an MQTT URL (explicit ``settings`` win) and the brokers' addresses."""
    parsed = parse_url(url)
    settings = dict(settings)
    settings.setdefault("username", parsed.username)
    settings.setdefault("password", parsed.password)
    if parsed.tls:
        settings.setdefault("tls", True)
    if parsed.prefix is not None:
        settings.setdefault("prefix", parsed.prefix)
    return settings, list(parsed.brokers)


def join_urls(urls: list[str]) -> str:
    """One URL with the hosts of several (repeated ``sig-bridge --mqtt``).

    The first URL gives the scheme, the credentials and the prefix; the others may
    leave them out, and must agree with it where they give them.

    Raises:
        InvalidArgumentError: the URLs differ in scheme, user or prefix.
    """
    parsed = [parse_url(url) for url in urls]
    first = parsed[0]
    for other in parsed[1:]:
        if other.tls != first.tls or other.username not in (None, first.username) or other.prefix not in (
                None, first.prefix):
            raise InvalidArgumentError("the MQTT URLs of one cluster differ in scheme, user or prefix: %s, %s"
                                       % (first, other))
    head = urlsplit(urls[0])
    userinfo = head.netloc.rpartition("@")[0]
    hosts = ",".join(_hostport(*address) for item in parsed for address in item.brokers)
    return "%s://%s%s%s" % (head.scheme, userinfo + "@" if userinfo else "", hosts, head.path)


def read_password_file(path: str) -> str:
    """The first line of a password file, without its line end."""
    with open(path, encoding="utf-8") as file:
        return file.readline().rstrip("\r\n")
