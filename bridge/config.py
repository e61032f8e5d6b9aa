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
mean 'field'?)``. tomllib gives no line numbers, so :class:`_Lines` finds them by
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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
]

logger = logging.getLogger("sig.bridge.config")

INBOUND_PAYLOADS = ("auto", "json", "number", "text")
OUTBOUND_PAYLOADS = ("json", "text")
LOG_LEVELS = ("trace", "debug", "info", "warning", "error", "critical", "none")


class ConfigError(ValueError):
    """A mistake in the config file; the message is ``FILE:LINE: what is wrong``."""

    def __init__(self, filename: str, line: int | None, message: str) -> None:
        self.filename = filename
        self.line = line
        self.detail = message
        super().__init__("%s:%s: %s" % (filename, line, message) if line else "%s: %s" % (filename, message))


@dataclass(frozen=True)
class Placeholder:
    """A ``{name}`` in a template: ``"1"``..``"n"``, ``"#"``, ``"sender"`` or ``"event"``."""

    name: str


#: A parsed template: literal text and placeholders, in order.
Template = tuple[str | Placeholder, ...]


@dataclass(frozen=True)
class BridgeSection:
    """The ``[bridge]`` table; a key that is absent is ``None`` (the command's default applies)."""

    listen: str | None = None
    mqtt: str | None = None
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


# -- topics and templates (pure helpers, also used by bridge.rules) ------------------------------------


def check_filter(topic_filter: str) -> str | None:
    """Return why ``topic_filter`` is not a valid MQTT subscription filter, or ``None`` when it is."""
    if not topic_filter:
        return "it is empty"
    if "\x00" in topic_filter:
        return "it holds a NUL character"
    if len(topic_filter.encode("utf-8", "surrogatepass")) > 65535:
        return "it is longer than 65535 bytes"
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            return "'#' must be the whole last level"
        if "+" in level and level != "+":
            return "'+' must be a whole level"
    return None


def check_topic_text(text: str) -> str | None:
    """Return why literal ``text`` cannot be part of an MQTT topic name, or ``None`` when it can."""
    if "+" in text or "#" in text:
        return "a topic name cannot hold '+' or '#'"
    if "\x00" in text:
        return "a topic name cannot hold a NUL character"
    return None


_TEMPLATE_PART = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


def parse_template(text: str, allowed: Callable[[str], str | None]) -> Template:
    """Split ``text`` into literals and placeholders; ``allowed(name)`` says why a name is refused, or ``None``.

    Raises:
        ValueError: a lone brace or a placeholder ``allowed`` refuses.
    """
    parts: list[str | Placeholder] = []
    literal: list[str] = []
    pos = 0
    for match in _TEMPLATE_PART.finditer(text):
        literal.append(text[pos:match.start()])
        pos = match.end()
        token = match.group()
        if token in ("{{", "}}"):
            literal.append(token[0])
        elif token in ("{", "}"):
            raise ValueError("lone %r (write %s for a literal brace)" % (token, token * 2))
        else:
            name = match.group(1).strip()
            why = allowed(name)
            if why is not None:
                raise ValueError(why)
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(Placeholder(name))
    literal.append(text[pos:])
    if "".join(literal):
        parts.append("".join(literal))
    return tuple(p for p in parts if p != "")


def template_text(template: Template) -> str:
    """Write a parsed template back as text (for messages)."""
    return "".join(
        "{%s}" % p.name if isinstance(p, Placeholder) else p.replace("{", "{{").replace("}", "}}") for p in template
    )


# -- line numbers -------------------------------------------------------------------------------------

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*(\]\]?)\s*(?:#.*)?$")
_KEY = re.compile(r"""^\s*("(?:[^"\\]|\\.)*"|'[^']*'|[A-Za-z0-9_\-]+)\s*[=.]""")


_STRING_OR_COMMENT = re.compile(r"""("(?:[^"\\]|\\.)*"|'[^']*'|#.*)""")


def _depth(text: str) -> int:
    """How many brackets ``text`` leaves open (strings and comments skipped)."""
    bare = _STRING_OR_COMMENT.sub("", text)
    return bare.count("[") + bare.count("{") - bare.count("]") - bare.count("}")


def _unquote_key(key: str) -> str:
    if key[:1] in "\"'":
        return key[1:-1]
    return key


class _Lines:
    """Line numbers of tables and keys, found by scanning the TOML text."""

    def __init__(self, text: str) -> None:
        self.tables: dict[tuple[str, int], int] = {}
        self.keys: dict[tuple[str, int, str], int] = {}
        counts: dict[str, int] = {}
        current = ("", 0)
        in_multiline: str | None = None
        depth = 0  # open brackets of a multi-line array or inline table value
        for number, line in enumerate(text.splitlines(), start=1):
            if in_multiline is not None:
                if line.count(in_multiline) % 2 == 1:
                    in_multiline = None
                continue
            if depth > 0:
                depth = max(0, depth + _depth(line))
                continue
            header = _HEADER.match(line)
            if header:
                name = ".".join(_unquote_key(p.strip()) for p in header.group(2).split("."))
                if header.group(1) == "[[":
                    index = counts.get(name, 0)
                    counts[name] = index + 1
                else:
                    index = 0
                current = (name, index)
                self.tables.setdefault(current, number)
                continue
            key = _KEY.match(line)
            if key:
                self.keys.setdefault((current[0], current[1], _unquote_key(key.group(1))), number)
                for quote in ('"""', "'''"):
                    if line.count(quote) % 2 == 1:
                        in_multiline = quote
                if in_multiline is None:
                    depth = max(0, _depth(line[line.index("="):] if "=" in line else ""))

    def table(self, name: str, index: int = 0) -> int | None:
        """The line of the header of the ``index``-th ``name`` table."""
        return self.tables.get((name, index))

    def key(self, name: str, index: int, key: str) -> int | None:
        """The line of ``key`` in the ``index``-th ``name`` table (else the table's header)."""
        found = self.keys.get((name, index, key))
        return found if found is not None else self.table(name, index)


# -- the reader -----------------------------------------------------------------------------------------

_BRIDGE_KEYS = ("listen", "mqtt", "broker_listen", "embedded", "prefix", "node_id", "log_level", "password_file",
                "heartbeat")
_INBOUND_KEYS = ("topic", "sender", "event", "field", "payload", "republish", "availability", "online", "offline")
_OUTBOUND_KEYS = ("sender", "event", "topic", "retain", "qos", "payload", "field")
_AUTH_KEYS = ("anonymous", "users")
_USER_KEYS = ("name", "password", "token")
_ACL_KEYS = ("user", "senders", "listen", "request")
_TOP_KEYS = ("bridge", "inbound", "outbound", "auth", "acl")
_TYPE_NAMES = {bool: "a boolean", str: "a string", int: "an integer", float: "a number", list: "a list",
               dict: "a table"}


class _Table:
    """One table being read: typed getters that raise :class:`ConfigError` with file, line and key."""

    def __init__(self, reader: _Reader, name: str, index: int, data: Mapping[str, Any], header: str) -> None:
        self.reader = reader
        self.name = name
        self.index = index
        self.data = data
        self.header = header
        self.line = reader.lines.table(name, index) or 0

    def fail(self, key: str | None, message: str) -> ConfigError:
        line = self.reader.lines.key(self.name, self.index, key) if key else self.line
        where = "%s key '%s'" % (self.header, key) if key else self.header
        return ConfigError(self.reader.filename, line, "%s %s" % (where, message))

    def check_keys(self, known: tuple[str, ...]) -> None:
        for key in self.data:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
                hint = " (did you mean '%s'?)" % close[0] if close else " (known: %s)" % ", ".join(known)
                raise self.fail(key, "is unknown" + hint)

    def get(self, key: str, kind: type, default: Any = None, required: bool = False) -> Any:
        if key not in self.data:
            if required:
                raise self.fail(None, "needs key '%s'" % key)
            return default
        value = self.data[key]
        ok = isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            ok, value = True, float(value)
        if not ok:
            raise self.fail(key, "must be %s, not %r" % (_TYPE_NAMES[kind], value))
        return value

    def text(self, key: str, default: str | None = None, required: bool = False, empty: bool = False) -> Any:
        value = self.get(key, str, default, required)
        if value is not None and not value and not empty:
            raise self.fail(key, "must not be empty")
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value: str = self.get(key, str, default)
        if value not in choices:
            raise self.fail(key, "must be one of %s, not %r" % (", ".join(choices), value))
        return value

    def patterns(self, key: str) -> tuple[str, ...]:
        value = self.get(key, list, [])
        for item in value:
            if not isinstance(item, str) or not item:
                raise self.fail(key, "must be a list of non-empty strings (glob patterns), not %r" % (value,))
        return tuple(value)

    def field_path(self, key: str) -> tuple[str, ...] | None:
        value = self.text(key)
        if value is None:
            return None
        path = tuple(value.split("."))
        if "" in path:
            raise self.fail(key, "must be a key or a dotted path of keys such as 'a.b', not %r" % value)
        return path


class _Reader:
    def __init__(self, text: str, filename: str) -> None:
        self.filename = filename
        self.lines = _Lines(text)
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

    def tables(self, key: str, header: str) -> list[_Table]:
        value = self.data.get(key, [])
        if isinstance(value, dict):
            raise self.top_fail(key, "'%s' must be an array of tables: write %s" % (key, header))
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise self.top_fail(key, "'%s' must be an array of tables: write %s" % (key, header))
        return [_Table(self, key, index, item, header) for index, item in enumerate(value)]

    def table(self, key: str) -> _Table:
        value = self.data.get(key, {})
        if not isinstance(value, dict):
            raise self.top_fail(key, "'%s' must be a table: write [%s]" % (key, key))
        return _Table(self, key, 0, value, "[%s]" % key)

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
        )

    def bridge(self, table: _Table) -> BridgeSection:
        table.check_keys(_BRIDGE_KEYS)
        addresses = {}
        for key in ("listen", "broker_listen"):
            addresses[key] = value = table.text(key)
            if value is not None:
                why = _check_address(value)
                if why:
                    raise table.fail(key, "%s: %r (expected HOST:PORT or [IPv6]:PORT)" % (why, value))
        mqtt = table.text("mqtt")
        if mqtt is not None:
            why = _check_url(mqtt)
            if why:
                raise table.fail(key="mqtt", message="%s: %r" % (why, mqtt))
        prefix = table.text("prefix", "sig")
        why = _check_prefix(prefix)
        if why:
            raise table.fail("prefix", "%s: %r" % (why, prefix))
        node_id = table.text("node_id")
        if node_id is not None and ("+" in node_id or "#" in node_id or "/" in node_id or "\x00" in node_id):
            raise table.fail("node_id", "cannot hold '/', '+', '#' or NUL: %r" % node_id)
        log_level = table.get("log_level", str)
        if log_level is not None and log_level not in LOG_LEVELS:
            raise table.fail("log_level", "must be one of %s, not %r" % (", ".join(LOG_LEVELS), log_level))
        heartbeat = table.get("heartbeat", float)
        if heartbeat is not None and not heartbeat > 0:
            raise table.fail("heartbeat", "must be a number of seconds above 0, not %r" % heartbeat)
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

    def inbound(self, table: _Table) -> InboundSpec:
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

    def outbound(self, table: _Table) -> OutboundSpec:
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

    def auth(self, table: _Table) -> AuthSpec:
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

    def tables_in(self, parent: _Table, key: str, header: str) -> list[_Table]:
        value = parent.data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise parent.fail(key, "must be an array of tables: write %s" % header)
        name = "%s.%s" % (parent.name, key)
        return [_Table(self, name, index, item, header) for index, item in enumerate(value)]

    def acl(self, table: _Table) -> AclEntry:
        table.check_keys(_ACL_KEYS)
        return AclEntry(
            user=table.text("user", required=True),
            senders=table.patterns("senders"),
            listen=table.patterns("listen"),
            request=table.patterns("request"),
        )


def _check_address(text: str) -> str | None:
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return "missing ']'"
        host, rest = text[1:end], text[end + 1:]
        if not rest.startswith(":"):
            return "no port"
        port = rest[1:]
    else:
        if text.count(":") != 1:
            return "not HOST:PORT"
        host, port = text.split(":")
    if not host:
        return "no host"
    if not (port.isdigit() and port.isascii()) or not 0 <= int(port) <= 65535:
        return "the port must be a number from 0 to 65535"
    return None


def _check_url(url: str) -> str | None:
    match = re.match(r"^(mqtts?)://(?:([^@/]*)@)?([^/@]*)(/.*)?$", url)
    if not match:
        return "not an MQTT URL (mqtt[s]://[user[:pass]@]host[:port][/prefix])"
    hostport = match.group(3)
    if not hostport:
        return "no host"
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            return "missing ']'"
        rest = hostport[end + 1:]
        if rest and (not rest.startswith(":") or _bad_port(rest[1:])):
            return "bad port"
    elif ":" in hostport:
        host, port = hostport.rsplit(":", 1)
        if not host or ":" in host:
            return "bad host"
        if _bad_port(port):
            return "the port must be a number from 1 to 65535"
    path = (match.group(4) or "").strip("/")
    if path:
        return _check_prefix(path)
    return None


def _bad_port(port: str) -> bool:
    return not (port.isdigit() and port.isascii()) or not 1 <= int(port) <= 65535


def _check_prefix(prefix: str) -> str | None:
    if prefix.startswith("$"):
        return "a prefix must not start with '$'"
    if re.search("[+#\x00-\x1f\x7f-\x9f]", prefix):
        return "a prefix cannot hold '+', '#' or control characters"
    if "" in prefix.split("/"):
        return "a prefix cannot have an empty level"
    return None


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
