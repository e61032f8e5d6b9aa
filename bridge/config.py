"""The ``sig-bridge`` TOML config file, read into frozen dataclasses (pure: no I/O but :func:`load_config`).

    config = load_config("bridge.toml")      # or parse_config(text, filename="bridge.toml")
    config.bridge.prefix                     # the [bridge] table (None where a key is absent)
    config.inbound, config.outbound          # tuples of InboundSpec / OutboundSpec
    config.access_dict()                     # [auth] + [[acl]] as plain data for sig.AccessControl

Tables: ``[bridge]`` (listen, mqtt, broker_listen, embedded, prefix, node_id,
log_level, password_file, heartbeat), ``[[inbound]]`` (a foreign MQTT topic -> a
pysig event), ``[[outbound]]`` (a pysig event -> a plain topic), ``[auth]`` with
``[[auth.users]]``, and ``[[acl]]``. See ``compose/bridge.toml`` for an example.

Every mistake is a :class:`ConfigError` whose message names the file, the line
and the key, e.g. ``bridge.toml:12: [[inbound]] key 'feild' is unknown (did you
mean 'field'?)``. tomllib gives no line numbers, so :class:`~bridge._syntax.TomlLines` finds them by
scanning the text (the n-th ``[[inbound]]`` header, then the key inside it).

Templates: inbound ``sender`` / ``event`` are literal text with ``{1}``..``{n}``
(the n-th ``+`` level of the filter) and ``{#}`` (the levels ``#`` matched);
outbound ``topic`` has ``{sender}`` and ``{event}``. ``{{`` and ``}}`` are literal
braces. Templates are parsed here into tuples of literal strings and
:class:`Placeholder` objects that :mod:`bridge.rules` fills in.
"""

from __future__ import annotations

import difflib
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sig

from ._hass_config import HassSection, read_hass_section
from ._syntax import (
    Placeholder,
    Template,
    TomlLines,
    check_address,
    check_filter,
    check_prefix,
    check_topic_text,
    check_url,
    parse_template,
    template_text,
)
from ._table import ConfigError, Table

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef,import-not-found,unused-ignore]

__all__ = [
    "AclEntry",
    "AuthSpec",
    "BridgeConfig",
    "BridgeSection",
    "ConfigError",
    "InboundSpec",
    "OutboundSpec",
    "Placeholder",
    "Template",
    "UserSpec",
    "check_filter",
    "load_config",
    "parse_config",
    "parse_template",
    "template_text",
]

logger = logging.getLogger("sig.bridge.config")

INBOUND_PAYLOADS = ("auto", "json", "number", "text")
OUTBOUND_PAYLOADS = ("json", "text")
LOG_LEVEL_NAMES = tuple(sig.LOG_LEVELS.BY_NAME)  # the one table of level names


@dataclass(frozen=True)
class BridgeSection:
    """The ``[bridge]`` table; a key that is absent is ``None`` (the command's default applies)."""

    listen: str | None = None
    mqtt: str | tuple[str, ...] | None = None  # several URLs: the members of a clustered broker
    broker_listen: str | None = None
    embedded: bool = False
    prefix: str = "sig"
    node_id: str | None = None
    log_level: str | None = None
    password_file: str | None = None
    heartbeat: float | None = None


@dataclass(frozen=True)
class InboundSpec:
    """One ``[[inbound]]`` rule: a foreign MQTT topic filter -> a pysig event."""

    topic: str
    sender: Template
    event: Template
    field: tuple[str, ...] | None = None
    payload: str = "auto"
    republish: bool = False
    availability: bool = False
    online: str = "online"
    offline: str = "offline"
    line: int = 0


@dataclass(frozen=True)
class OutboundSpec:
    """One ``[[outbound]]`` rule: a pysig event (``None`` = any) -> a plain topic."""

    topic: Template
    sender: str | None = None
    event: str | None = None
    retain: bool = False
    qos: int = 1
    payload: str = "json"
    field: tuple[str, ...] | None = None
    line: int = 0


@dataclass(frozen=True)
class UserSpec:
    """One ``[[auth.users]]`` entry. Secrets stay out of the ``repr``."""

    name: str
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class AuthSpec:
    """The ``[auth]`` table: pysig TCP authentication."""

    anonymous: bool = True
    users: tuple[UserSpec, ...] = ()


@dataclass(frozen=True)
class AclEntry:
    """One ``[[acl]]`` entry: glob patterns of what ``user`` may do."""

    user: str
    senders: tuple[str, ...] = ()
    listen: tuple[str, ...] = ()
    request: tuple[str, ...] = ()


@dataclass(frozen=True)
class BridgeConfig:
    """The whole config file."""

    bridge: BridgeSection = field(default_factory=BridgeSection)
    inbound: tuple[InboundSpec, ...] = ()
    outbound: tuple[OutboundSpec, ...] = ()
    auth: AuthSpec = field(default_factory=AuthSpec)
    acl: tuple[AclEntry, ...] = ()
    filename: str = "<string>"
    homeassistant: HassSection = field(default_factory=HassSection)

    def access_dict(self) -> dict[str, Any]:
        """The ``[auth]`` and ``[[acl]]`` tables as plain data (the shape ``sig.AccessControl.from_dict`` reads).

        ``{"anonymous": bool, "users": {name: {"password": str|None, "token": str|None}},
        "acl": [{"user", "senders", "listen", "request"}]}`` (lists of glob patterns).
        """
        return {
            "anonymous": self.auth.anonymous,
            "users": {user.name: {"password": user.password, "token": user.token} for user in self.auth.users},
            "acl": [
                {"user": e.user, "senders": list(e.senders), "listen": list(e.listen), "request": list(e.request)}
                for e in self.acl
            ],
        }


# -- the reader -----------------------------------------------------------------------------------------

_BRIDGE_KEYS = ("listen", "mqtt", "broker_listen", "embedded", "prefix", "node_id", "log_level", "password_file",
                "heartbeat")
_INBOUND_KEYS = ("topic", "sender", "event", "field", "payload", "republish", "availability", "online", "offline")
_OUTBOUND_KEYS = ("sender", "event", "topic", "retain", "qos", "payload", "field")
_AUTH_KEYS = ("anonymous", "users")
_USER_KEYS = ("name", "password", "token")
_ACL_KEYS = ("user", "senders", "listen", "request")
_TOP_KEYS = ("bridge", "inbound", "outbound", "auth", "acl", "homeassistant")
class _Reader:
    def __init__(self, text: str, filename: str) -> None:
        self.filename = filename
        self.lines = TomlLines(text)
        try:
            self.data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            message = str(exc)
            found = re.search(r"\(at line (\d+), column \d+\)", message)
            line = int(found.group(1)) if found else None
            if found:
                message = message[:found.start()].strip()
            raise ConfigError(filename, line, "not valid TOML: %s" % message) from None

    def top_fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(self.filename, self.lines.table(key) or self.lines.key("", 0, key), message)

    def tables(self, key: str, header: str) -> list[Table]:
        value = self.data.get(key, [])
        if isinstance(value, dict):
            raise self.top_fail(key, "'%s' must be an array of tables: write %s" % (key, header))
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise self.top_fail(key, "'%s' must be an array of tables: write %s" % (key, header))
        return [Table(self, key, index, item, header) for index, item in enumerate(value)]

    def table(self, key: str) -> Table:
        value = self.data.get(key, {})
        if not isinstance(value, dict):
            raise self.top_fail(key, "'%s' must be a table: write [%s]" % (key, key))
        return Table(self, key, 0, value, "[%s]" % key)

    def read(self) -> BridgeConfig:
        for key in self.data:
            if key not in _TOP_KEYS:
                close = difflib.get_close_matches(key, _TOP_KEYS, n=1, cutoff=0.6)
                hint = " (did you mean '%s'?)" % close[0] if close else " (known: %s)" % ", ".join(_TOP_KEYS)
                raise self.top_fail(key, "table '%s' is unknown%s" % (key, hint))
        return BridgeConfig(
            bridge=self.bridge(self.table("bridge")),
            inbound=tuple(self.inbound(table) for table in self.tables("inbound", "[[inbound]]")),
            outbound=tuple(self.outbound(table) for table in self.tables("outbound", "[[outbound]]")),
            auth=self.auth(self.table("auth")),
            acl=tuple(self.acl(table) for table in self.tables("acl", "[[acl]]")),
            filename=self.filename,
            homeassistant=read_hass_section(self.table("homeassistant")),
        )

    def bridge(self, table: Table) -> BridgeSection:
        table.check_keys(_BRIDGE_KEYS)
        addresses = {}
        for key in ("listen", "broker_listen"):
            addresses[key] = value = table.text(key)
            if value is not None:
                why = check_address(value)
                if why:
                    raise table.fail(key, "%s: %r (expected HOST:PORT or [IPv6]:PORT)" % (why, value))
        mqtt = table.data.get("mqtt")
        if isinstance(mqtt, list) and mqtt and all(isinstance(item, str) for item in mqtt):
            mqtt = tuple(mqtt)  # the members of a clustered broker
        elif mqtt is not None:
            mqtt = table.text("mqtt")
        for url in (mqtt,) if isinstance(mqtt, str) else mqtt or ():
            why = check_url(url)
            if why:
                raise table.fail(key="mqtt", message="%s: %r" % (why, url))
        prefix = table.text("prefix", "sig")
        why = check_prefix(prefix)
        if why:
            raise table.fail("prefix", "%s: %r" % (why, prefix))
        node_id = table.text("node_id")
        if node_id is not None and ("+" in node_id or "#" in node_id or "/" in node_id or "\x00" in node_id):
            raise table.fail("node_id", "cannot hold '/', '+', '#' or NUL: %r" % node_id)
        log_level = table.get("log_level", str)
        if log_level is not None and log_level not in LOG_LEVEL_NAMES:
            raise table.fail("log_level", "must be one of %s, not %r" % (", ".join(LOG_LEVEL_NAMES), log_level))
        heartbeat = table.get("heartbeat", float)
        if heartbeat is not None and not 0 < heartbeat < float("inf"):
            raise table.fail("heartbeat", "must be a finite number of seconds above 0, not %r" % heartbeat)
        return BridgeSection(
            listen=addresses["listen"],
            mqtt=mqtt,
            broker_listen=addresses["broker_listen"],
            embedded=table.get("embedded", bool, False),
            prefix=prefix,
            node_id=node_id,
            log_level=log_level,
            password_file=table.text("password_file"),
            heartbeat=heartbeat,
        )

    def inbound(self, table: Table) -> InboundSpec:
        table.check_keys(_INBOUND_KEYS)
        topic = table.text("topic", required=True)
        why = check_filter(topic)
        if why:
            raise table.fail("topic", "is not a valid MQTT filter (%s): %r" % (why, topic))
        levels = topic.split("/")
        plus = levels.count("+")
        hash_last = levels[-1] == "#"

        def allowed(name: str) -> str | None:
            if name == "#":
                return None if hash_last else "uses {#} but the filter %r does not end with '#'" % topic
            if name.isdigit() and name.isascii():
                number = int(name)
                if 1 <= number <= plus:
                    return None
                if plus == 0:
                    return "uses {%s} but the filter %r has no '+' level" % (name, topic)
                return "uses {%s} but the filter %r has %d '+' level%s ({1}..{%d})" % (
                    name, topic, plus, "" if plus == 1 else "s", plus)
            return "has an unknown placeholder {%s} (use {1}..{n} for '+' levels, {#} for what '#' matched)" % name

        availability = table.get("availability", bool, False)
        templates: dict[str, Template] = {}
        for key in ("sender", "event"):
            required = key == "sender" or not availability
            text = table.text(key, required=required)
            if text is None:
                templates[key] = ()
                continue
            try:
                templates[key] = parse_template(text, allowed)
            except ValueError as exc:
                raise table.fail(key, str(exc)) from None
        online = table.text("online", "online")
        offline = table.text("offline", "offline")
        if online == offline:
            raise table.fail("offline", "must differ from online (%r)" % online)
        return InboundSpec(
            topic=topic,
            sender=templates["sender"],
            event=templates["event"],
            field=table.field_path("field"),
            payload=table.choice("payload", INBOUND_PAYLOADS, "auto"),
            republish=table.get("republish", bool, False),
            availability=availability,
            online=online,
            offline=offline,
            line=table.line,
        )

    def outbound(self, table: Table) -> OutboundSpec:
        table.check_keys(_OUTBOUND_KEYS)
        text = table.text("topic", required=True)

        def allowed(name: str) -> str | None:
            if name in ("sender", "event"):
                return None
            return "has an unknown placeholder {%s} (use {sender} and {event})" % name

        try:
            topic = parse_template(text, allowed)
        except ValueError as exc:
            raise table.fail("topic", str(exc)) from None
        for part in topic:
            if isinstance(part, str):
                why = check_topic_text(part)
                if why:
                    raise table.fail("topic", "%s: %r" % (why, text))
        if isinstance(topic[0], str) and topic[0].startswith("$"):
            raise table.fail("topic", "must not start with '$' (broker topics): %r" % text)
        qos = table.get("qos", int, 1)
        if qos not in (0, 1, 2):
            raise table.fail("qos", "must be 0, 1 or 2, not %r" % qos)
        return OutboundSpec(
            topic=topic,
            sender=table.text("sender", empty=True),
            event=table.text("event", empty=True),
            retain=table.get("retain", bool, False),
            qos=qos,
            payload=table.choice("payload", OUTBOUND_PAYLOADS, "json"),
            field=table.field_path("field"),
            line=table.line,
        )

    def auth(self, table: Table) -> AuthSpec:
        table.check_keys(_AUTH_KEYS)
        anonymous = table.get("anonymous", bool, True)
        users: list[UserSpec] = []
        seen: set[str] = set()
        for user in self.tables_in(table, "users", "[[auth.users]]"):
            user.check_keys(_USER_KEYS)
            name = user.text("name", required=True)
            if name in seen:
                raise user.fail("name", "%r is given twice" % name)
            if name in ("*", "anonymous"):
                raise user.fail("name", "%r is reserved for [[acl]] entries" % name)
            seen.add(name)
            password = user.text("password")
            token = user.text("token")
            if password is None and token is None:
                raise user.fail(None, "needs a 'password' or a 'token'")
            users.append(UserSpec(name, password, token))
        return AuthSpec(anonymous=anonymous, users=tuple(users))

    def tables_in(self, parent: Table, key: str, header: str) -> list[Table]:
        value = parent.data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise parent.fail(key, "must be an array of tables: write %s" % header)
        name = "%s.%s" % (parent.name, key)
        return [Table(self, name, index, item, header) for index, item in enumerate(value)]

    def acl(self, table: Table) -> AclEntry:
        table.check_keys(_ACL_KEYS)
        return AclEntry(
            user=table.text("user", required=True),
            senders=table.patterns("senders"),
            listen=table.patterns("listen"),
            request=table.patterns("request"),
        )


def parse_config(text: str, filename: str = "<string>") -> BridgeConfig:
    """Read a config from TOML ``text``; ``filename`` is only used in error messages.

    Raises:
        ConfigError: the text is not TOML, or a table or key is unknown, of the wrong type,
            or has a bad value (filter, topic, placeholder, choice, HOST:PORT, URL).
    """
    config = _Reader(text, filename).read()
    logger.debug("[BRIDGE] config %s: %d inbound, %d outbound rules, %d users, %d ACL entries", filename,
                 len(config.inbound), len(config.outbound), len(config.auth.users), len(config.acl))
    return config


def load_config(path: str | Path) -> BridgeConfig:
    """Read the TOML config file at ``path``.

    Raises:
        OSError: the file cannot be read.
        ConfigError: see :func:`parse_config` (also a file that is not UTF-8).
    """
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ConfigError(str(path), line, "not UTF-8 text") from None
    return parse_config(text, str(path))
